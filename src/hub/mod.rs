//! Models by name: the registry of MedGemma builds, the shared Hugging Face cache, downloads from the hub, and the
//! models on this machine (`pull`, `list`, `rm`, and `-m NAME[:QUANT]`).
//!
//! Owns: everything between a model name and files on disk. It never loads a model (the engine does), and it
//! writes to stdout never: progress and notes go to stderr.

pub mod cache;
pub mod convert;
pub mod download;
pub mod error;
pub mod local;
pub mod model_ref;
mod progress;
pub mod registry;
pub mod settings;

pub use download::Hub;
pub use local::ModelFiles;
pub use model_ref::ModelName;
pub use registry::Registry;
pub use settings::HubSettings;
