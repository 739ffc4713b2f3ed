//! The engine: the only code that touches llama.cpp (through `llama-cpp-2` and `llama-cpp-sys-2`).
//!
//! Owns: loading a MedGemma GGUF and its vision projector (with checks that name the file and the fix), turning
//! prompt pieces into tokens and image chunks, and the one core every command drives: a pure prompt layout and
//! sequence ledger, one llama.cpp context wrapper (the one decode and image-evaluation call), one decoder per
//! answer, and one scheduler ([`Scheduler`]; [`Session`] is its one-sequence case). Also quantising a model file.
//! It must not print to stdout: results go back to the caller through return values and callbacks. See
//! ARCHITECTURE.md for the layers and the data flow.

mod backend;
mod choices;
mod constrained;
mod context;
mod decoder;
mod error;
mod gpu;
mod image_embedding;
mod image_encoder;
mod layout;
mod ledger;
mod logging;
mod model;
mod prepare;
mod quantize;
mod quantize_mmproj;
mod sampling;
mod scheduler;
mod score;
mod session;
mod speed;
mod system_info;
mod token_text;

pub use choices::ChoiceScores;
pub use decoder::{FinishReason, GeneratedToken, Generation, SessionStats};
pub use error::EngineError;
pub use gpu::{devices, Device, GpuOptions};
pub use image_embedding::{image_embedding, ImageEmbedding};
pub use image_encoder::ImageUse;
pub use model::{Engine, LoadOptions};
pub use prepare::{PreparedPrompt, PromptItem};
pub use quantize::{quantize, QuantizeOptions};
pub use quantize_mmproj::quantize_mmproj;
pub use scheduler::{EvalObserver, Finished, LlamaScheduler, NoObserver, Scheduler};
pub use score::Scorer;
pub use session::Session;
pub use speed::SpeedTest;
pub use system_info::{system_info, BINDINGS};
