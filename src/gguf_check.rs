//! The pre-check of a GGUF header before llama.cpp sees the file (issue 14).
//!
//! Owns: [`check`], the one rule book every command that loads or describes a GGUF applies after
//! [`GgufHeader::read`] ([`read_checked`] does both; the engine calls the two itself): the type of every metadata value llama.cpp reads for `gemma3` and `clip` (its typed getters
//! abort on a mismatch), the tokenizer arrays against the vocabulary (lengths, byte tokens `<0xNN>`, repeated
//! tokens, special token ids), the hyper-parameters in the ranges llama.cpp asserts on, the whole tensor table
//! (known ggml types, dimensions, block sizes, sizes, alignment, offsets packed in table order inside the file), and
//! the tensors the architecture needs with the shapes its hyper-parameters imply. Every refusal names the file, the
//! metadata key or tensor, what is wrong and what to do.
//!
//! Must not: open files, read tensor data, or call llama.cpp (it works on a parsed header, so it is pure and fast on
//! a 27B header). The facts come from the llama.cpp vendored in llama-cpp-sys-2 0.1.161: `gguf.cpp`
//! (`gguf_init_from_file_impl`), `llama-model-loader.cpp` (typed getters), `llama-model.cpp` (`load_hparams`),
//! `models/gemma3.cpp`, `llama-vocab.cpp` (`load`) and `tools/mtmd/clip.cpp` (`load_hparams`, `load_tensors`).

mod clip;
mod gemma3;
mod meta;
mod tensors;
mod tokenizer;

use std::path::{Path, PathBuf};

use crate::gguf::{GgufError, GgufHeader};
use meta::Meta;
use tensors::{check_tensor_table, Tensors};

/// llama.cpp's LLAMA_MAX_LAYERS: hyper-parameter arrays are sized by it, and `load_hparams` asserts on it.
pub const MAX_LAYERS: u32 = 512;
/// ggml's GGML_MAX_DIMS.
const MAX_DIMS: usize = 4;
/// ggml's GGML_MAX_NAME, the terminating NUL included.
const MAX_NAME: usize = 64;

/// A file that fails the pre-check.
#[derive(Debug, thiserror::Error)]
#[error("{} cannot be loaded: {fault}; {}", path.display(), fault.fix())]
pub struct CheckError {
    pub path: PathBuf,
    pub fault: Fault,
}

/// What is wrong, naming the metadata key or tensor it is about.
#[derive(Debug, thiserror::Error)]
pub enum Fault {
    #[error("it lacks the metadata key {key:?}, which llama.cpp needs")]
    MissingKey { key: String },
    #[error("metadata key {key:?} holds {found}, but llama.cpp reads {expected}")]
    WrongType {
        key: String,
        expected: &'static str,
        found: String,
    },
    #[error("metadata key {key:?} is {value}, but {rule}")]
    OutOfRange { key: String, value: String, rule: String },
    #[error("metadata key {key:?} has {len} entries, but {expected} are needed ({why})")]
    ArrayLength {
        key: String,
        len: usize,
        expected: u64,
        why: String,
    },
    #[error("metadata key \"tokenizer.ggml.tokens\": token {id} is typed as a byte but its text {text:?} is not <0xNN> with two hex digits")]
    BadByteToken { id: usize, text: String },
    #[error("metadata key \"tokenizer.ggml.tokens\": token {id} {text:?} repeats token {first}")]
    DuplicateToken { id: usize, first: usize, text: String },
    #[error(
        "metadata key \"tokenizer.ggml.token_type\": token {id} has type {value}, not one of llama.cpp's types 0 to 6"
    )]
    UnknownTokenType { id: usize, value: i64 },
    #[error("metadata key {key:?} is {id}, outside the vocabulary of {n_vocab} tokens")]
    TokenOutOfVocab { key: String, id: u64, n_vocab: usize },
    #[error("metadata key {key:?} names the projector type {value:?}, but medgemma runs Gemma 3's projector (gemma3)")]
    UnknownProjector { key: String, value: String },
    #[error("tensor {name:?} {what}")]
    Tensor { name: String, what: TensorFault },
}

/// What is wrong with one tensor (the text follows the tensor's name in [`Fault::Tensor`]).
#[derive(Debug, thiserror::Error)]
pub enum TensorFault {
    #[error("has a name of {len} bytes; ggml allows at most {}", MAX_NAME - 1)]
    NameTooLong { len: usize },
    #[error("has {n_dims} dimensions; ggml allows at most {MAX_DIMS}")]
    TooManyDimensions { n_dims: usize },
    #[error("has a dimension of 0 in {dims:?}")]
    ZeroDimension { dims: Vec<u64> },
    #[error("has ggml type {ty}, which ggml does not know (negative or unknown)")]
    UnknownType { ty: u32 },
    #[error("has rows of {ne0} elements, not a multiple of the {block}-element blocks of its type {ty}")]
    RowNotWholeBlocks { ne0: u64, ty: String, block: u64 },
    #[error("with dimensions {dims:?} is too large for a 64-bit size")]
    TooLarge { dims: Vec<u64> },
    #[error("starts at data offset {offset}, not a multiple of the alignment {alignment}")]
    Misaligned { offset: u64, alignment: u64 },
    #[error("starts at data offset {offset}, inside tensor {previous:?} (which ends at {expected})")]
    Overlaps {
        offset: u64,
        expected: u64,
        previous: String,
    },
    #[error("starts at data offset {offset}, but llama.cpp expects {expected} (tensor data follows the table's order with no gaps)")]
    Gap { offset: u64, expected: u64 },
    #[error("ends at byte {end} but the file has only {len} bytes")]
    PastEnd { end: u64, len: u64 },
    #[error("starts at data offset {offset} and ends past what a 64-bit file offset can hold")]
    EndOverflows { offset: u64 },
    #[error("is missing; llama.cpp's {arch} needs it")]
    Missing { arch: &'static str },
    #[error("has shape {found:?}, but the metadata implies {expected:?}")]
    Shape { expected: Vec<u64>, found: Vec<u64> },
}

impl Fault {
    /// What the user can do about it.
    pub fn fix(&self) -> &'static str {
        match self {
            Fault::UnknownProjector { .. } => "use the mmproj file published with the MedGemma model",
            _ => "the file is damaged or was not written for llama.cpp; download or convert it again",
        }
    }
}

/// Why [`read_checked`] refused a file: it is not a whole GGUF file, or it fails the pre-check.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error(transparent)]
    Check(#[from] CheckError),
}

/// Reads the header of `path` and checks it ([`GgufHeader::read`], then [`check`]): what every command that loads or
/// describes a GGUF file calls first (the engine calls the two itself, to tell a wrong kind of file apart first).
pub fn read_checked(path: &Path) -> Result<GgufHeader, ReadError> {
    let header = GgufHeader::read(path)?;
    check(&header)?;
    Ok(header)
}

/// Checks a parsed header against everything llama.cpp reads from it: for architecture `gemma3` the model rules,
/// for `clip` the vision projector rules, for any file the general keys, the tokenizer (when it has one) and the
/// tensor table. Never reads tensor data.
pub fn check(header: &GgufHeader) -> Result<(), CheckError> {
    check_faults(header).map_err(|fault| CheckError {
        path: header.path.clone(),
        fault,
    })
}

fn check_faults(h: &GgufHeader) -> Result<(), Fault> {
    let m = Meta(h);
    let arch = m.string("general.architecture", true)?.unwrap_or_default();
    for key in ["general.name", "general.description"] {
        m.string(key, false)?;
    }
    for key in ["general.file_type", "general.quantization_version"] {
        m.u32(key, false)?;
    }
    check_tensor_table(h)?;
    match arch {
        "gemma3" => gemma3::check(&m, &Tensors::new(h, "gemma3")),
        "clip" => clip::check(&m, &Tensors::new(h, "clip")),
        _ if h.get("tokenizer.ggml.tokens").is_some() => tokenizer::check(&m).map(|_| ()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
