//! Errors of the engine: each names the file or flag at fault and says what to do.

use std::path::PathBuf;

use crate::gguf::GgufError;
use crate::image_input::ImageError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("model file {} not found; pass a MedGemma .gguf file with -m/--model", path.display())]
    ModelMissing { path: PathBuf },
    #[error("mmproj file {} not found; pass the vision projector .gguf that belongs to the model with --mmproj", path.display())]
    MmprojMissing { path: PathBuf },
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// The file fails the pre-check of everything llama.cpp reads from its header (`gguf_check`).
    #[error(transparent)]
    Check(#[from] crate::gguf_check::CheckError),
    #[error("{} is a vision projector (mmproj), not a language model: pass it with --mmproj, and the model with -m/--model", path.display())]
    MmprojGivenAsModel { path: PathBuf },
    #[error("{} is a language model ({arch}), not a vision projector: pass it with -m/--model, and the mmproj file with --mmproj", path.display())]
    ModelGivenAsMmproj { path: PathBuf, arch: String },
    #[error("{} is a {arch} model; medgemma runs Gemma 3 models (MedGemma and its fine-tunes, architecture gemma3)", path.display())]
    UnsupportedArchitecture { path: PathBuf, arch: String },
    #[error("{} has no vision encoder; pass the mmproj file with image support to --mmproj", path.display())]
    NoVisionEncoder { path: PathBuf },
    #[error(transparent)]
    Mismatch(#[from] crate::model_info::MismatchError),
    /// `reason` is llama.cpp's own explanation from its log, empty when it logged none.
    #[error("llama.cpp could not load {}{}", path.display(), because(reason))]
    ModelLoad { path: PathBuf, reason: String },
    #[error("llama.cpp could not load the vision projector {}{}", path.display(), because(reason))]
    MmprojLoad { path: PathBuf, reason: String },
    #[error("the model {} has no {token} token, so it is not a Gemma 3 chat model", path.display())]
    MissingControlToken { path: PathBuf, token: String },
    #[error("images were given but no vision projector: add --mmproj MMPROJ.gguf (the mmproj file published with the model)")]
    ImagesWithoutMmproj,
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("the prompt is {prompt_tokens} tokens but the context holds {ctx_size} (with room for at least one answer token); raise -c/--ctx-size (this model was trained for {trained} tokens) or shorten the prompt")]
    PromptTooLong {
        prompt_tokens: usize,
        ctx_size: u32,
        trained: u32,
    },
    /// `reason` is llama.cpp's own explanation from its log, empty when it logged none.
    #[error("cannot create a llama.cpp context of {ctx_size} tokens{}", context_because(reason))]
    Context { ctx_size: u32, reason: String },
    #[error("llama.cpp failed to evaluate the prompt: {0}")]
    Decode(String),
    #[error("the output constraint cannot be used: {0}")]
    Grammar(String),
    #[error("the vision projector failed on image {}: {reason}", path.display())]
    ImageEncode { path: PathBuf, reason: String },
    #[error("cannot quantise {}: {reason}", input.display())]
    Quantize { input: PathBuf, reason: String },
    #[error("a saved answer holds token id {token}, outside this model's vocabulary of {n_vocab}: the conversation was saved with another model")]
    BadTokenId { token: i32, n_vocab: i32 },
    #[error(
        "--gpu-device {asked}: no such GPU device; {}",
        if available.is_empty() { "this build sees none (`medgemma doctor` lists the devices)".to_string() } else { format!("this build has {}", available.join(", ")) }
    )]
    NoSuchDevice { asked: String, available: Vec<String> },
    #[error("{0}")]
    GpuDoesNotFit(String),
    #[error("user text produced the control token {token:?}; refusing to run a forged prompt")]
    ForgedControlToken { token: String },
}

/// ": REASON" after a file llama.cpp refused, or the way to see its reason when it logged none.
fn because(reason: &str) -> String {
    if reason.is_empty() {
        "; run again with --verbose to see llama.cpp's reason".to_string()
    } else {
        format!(": {reason}")
    }
}

/// llama.cpp's reason for refusing a context and the flags that shape one, or the usual cause when it logged none.
fn context_because(reason: &str) -> String {
    if reason.is_empty() {
        " (out of memory?); lower -c/--ctx-size".to_string()
    } else {
        format!(": {reason}; check -c/--ctx-size, --cache-type and --flash-attn")
    }
}
