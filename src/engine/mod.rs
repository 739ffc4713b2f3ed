//! The engine: the only code that touches llama.cpp (through `llama-cpp-2` and `llama-cpp-sys-2`).
//!
//! Owns: loading a MedGemma GGUF and its vision projector (with checks that name the file and the fix), a
//! [`Session`] that owns a context and its KV positions, turning prompt pieces into tokens and image embeddings,
//! the one generation loop every command (run, chat, batch, bench) uses, and quantising a model file. It must not
//! print to stdout: results go back to the caller through return values and callbacks.

mod context;
mod decoder;
mod error;
mod image_embedding;
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
mod token_text;

pub use decoder::{FinishReason, GeneratedToken, Generation, SessionStats};
pub use error::EngineError;
pub use image_embedding::{image_embedding, ImageEmbedding};
pub use model::{Engine, LoadOptions};
pub use prepare::{PreparedPrompt, PromptItem};
pub use quantize::{quantize, QuantizeOptions};
pub use quantize_mmproj::quantize_mmproj;
pub use scheduler::{EvalObserver, Finished, NoObserver, Scheduler};
pub use score::Scorer;
pub use session::Session;
pub use speed::SpeedTest;
