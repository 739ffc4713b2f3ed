//! The pre-check of a GGUF header before llama.cpp sees the file (issue 14).
//!
//! Owns: [`check`], the one rule book every command that loads or describes a GGUF applies after
//! [`GgufHeader::read`]: the type of every metadata value llama.cpp reads for `gemma3` and `clip` (its typed getters
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

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::gguf::{ggml_type_block, ggml_type_name, GgufError, GgufHeader, GgufTensorInfo, GgufValue};

/// llama.cpp's LLAMA_MAX_LAYERS: hyper-parameter arrays are sized by it, and `load_hparams` asserts on it.
pub const MAX_LAYERS: u32 = 512;
/// ggml's GGML_MAX_DIMS.
const MAX_DIMS: usize = 4;
/// ggml's GGML_MAX_NAME, the terminating NUL included.
const MAX_NAME: usize = 64;
/// llama.cpp's token types (LLAMA_TOKEN_TYPE_UNDEFINED = 0 .. LLAMA_TOKEN_TYPE_BYTE = 6).
const TOKEN_TYPE_BYTE: i32 = 6;
/// The rope scaling types llama.cpp knows; any other string trips an assertion in `load_hparams`.
const ROPE_SCALING_TYPES: [&str; 4] = ["none", "linear", "yarn", "longrope"];

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
        "gemma3" => check_gemma3(&m, &Tensors::new(h, "gemma3")),
        "clip" => check_clip(&m, &Tensors::new(h, "clip")),
        _ if h.get("tokenizer.ggml.tokens").is_some() => check_tokenizer(&m).map(|_| ()),
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Metadata values, typed as llama.cpp reads them.

/// The header's metadata, read with the exact types llama.cpp's getters demand.
struct Meta<'a>(&'a GgufHeader);

/// How a value is named in messages: "a u32 (5)", "an array of 3 f32".
fn describe(v: &GgufValue) -> String {
    match v {
        GgufValue::String(s) if s.len() > 40 => "a string".into(),
        GgufValue::String(s) => format!("the string {s:?}"),
        GgufValue::Array(items) => match items.first() {
            Some(first) => format!("an array of {} {}", items.len(), scalar_type(first)),
            None => "an empty array".into(),
        },
        other => format!("{} ({})", scalar_type(other), scalar_text(other)),
    }
}

fn scalar_type(v: &GgufValue) -> &'static str {
    match v {
        GgufValue::U8(_) => "u8",
        GgufValue::I8(_) => "i8",
        GgufValue::U16(_) => "u16",
        GgufValue::I16(_) => "i16",
        GgufValue::U32(_) => "u32",
        GgufValue::I32(_) => "i32",
        GgufValue::U64(_) => "u64",
        GgufValue::I64(_) => "i64",
        GgufValue::F32(_) => "f32",
        GgufValue::F64(_) => "f64",
        GgufValue::Bool(_) => "bool",
        GgufValue::String(_) => "string",
        GgufValue::Array(_) => "array",
    }
}

fn scalar_text(v: &GgufValue) -> String {
    match v {
        GgufValue::F32(x) => x.to_string(),
        GgufValue::F64(x) => x.to_string(),
        GgufValue::Bool(b) => b.to_string(),
        other => other.as_u64().map_or_else(
            || match other {
                GgufValue::I8(x) => x.to_string(),
                GgufValue::I16(x) => x.to_string(),
                GgufValue::I32(x) => x.to_string(),
                GgufValue::I64(x) => x.to_string(),
                _ => String::new(),
            },
            |n| n.to_string(),
        ),
    }
}

fn wrong(key: &str, expected: &'static str, found: &GgufValue) -> Fault {
    Fault::WrongType {
        key: key.to_string(),
        expected,
        found: describe(found),
    }
}

fn out_of_range(key: &str, value: impl ToString, rule: impl Into<String>) -> Fault {
    Fault::OutOfRange {
        key: key.to_string(),
        value: value.to_string(),
        rule: rule.into(),
    }
}

impl Meta<'_> {
    /// The value of `key`; a missing key is an error when `required`.
    fn get(&self, key: &str, required: bool) -> Result<Option<&GgufValue>, Fault> {
        match self.0.get(key) {
            Some(v) => Ok(Some(v)),
            None if required => Err(Fault::MissingKey { key: key.to_string() }),
            None => Ok(None),
        }
    }

    fn u32(&self, key: &str, required: bool) -> Result<Option<u32>, Fault> {
        match self.get(key, required)? {
            Some(GgufValue::U32(v)) => Ok(Some(*v)),
            Some(other) => Err(wrong(key, "a u32", other)),
            None => Ok(None),
        }
    }

    fn i32(&self, key: &str) -> Result<Option<i32>, Fault> {
        match self.get(key, false)? {
            Some(GgufValue::I32(v)) => Ok(Some(*v)),
            Some(other) => Err(wrong(key, "an i32", other)),
            None => Ok(None),
        }
    }

    fn f32(&self, key: &str, required: bool) -> Result<Option<f32>, Fault> {
        match self.get(key, required)? {
            Some(GgufValue::F32(v)) => Ok(Some(*v)),
            Some(other) => Err(wrong(key, "an f32", other)),
            None => Ok(None),
        }
    }

    fn bool(&self, key: &str) -> Result<Option<bool>, Fault> {
        match self.get(key, false)? {
            Some(GgufValue::Bool(v)) => Ok(Some(*v)),
            Some(other) => Err(wrong(key, "a bool", other)),
            None => Ok(None),
        }
    }

    fn string(&self, key: &str, required: bool) -> Result<Option<&str>, Fault> {
        match self.get(key, required)? {
            Some(GgufValue::String(v)) => Ok(Some(v)),
            Some(other) => Err(wrong(key, "a string", other)),
            None => Ok(None),
        }
    }

    /// An array whose items all have the type `is_item` accepts (an empty array passes the type test).
    fn array(
        &self,
        key: &str,
        required: bool,
        expected: &'static str,
        is_item: fn(&GgufValue) -> bool,
    ) -> Result<Option<&[GgufValue]>, Fault> {
        match self.get(key, required)? {
            Some(v @ GgufValue::Array(items)) => {
                if items.first().is_some_and(|first| !is_item(first)) {
                    return Err(wrong(key, expected, v));
                }
                Ok(Some(items))
            }
            Some(other) => Err(wrong(key, expected, other)),
            None => Ok(None),
        }
    }

    /// A u32 in `lo..=hi`.
    fn u32_in(&self, key: &str, required: bool, lo: u32, hi: u32, why: &str) -> Result<Option<u32>, Fault> {
        let v = self.u32(key, required)?;
        match v {
            Some(n) if n < lo || n > hi => Err(out_of_range(key, n, format!("it must be from {lo} to {hi} ({why})"))),
            _ => Ok(v),
        }
    }

    /// An f32 that is finite and, when `positive`, above zero (else at least zero).
    fn f32_finite(&self, key: &str, required: bool, positive: bool) -> Result<Option<f32>, Fault> {
        let v = self.f32(key, required)?;
        match v {
            Some(x) if !x.is_finite() || x < 0.0 || (positive && x == 0.0) => Err(out_of_range(
                key,
                x,
                if positive {
                    "it must be a finite number above 0"
                } else {
                    "it must be a finite number, 0 or more"
                },
            )),
            _ => Ok(v),
        }
    }

    /// A per-layer count as llama.cpp's `get_key_or_arr` reads it: one u32 for every layer, or an array of u32/i32
    /// with one entry per layer. Each value must be at least `min`.
    fn per_layer(&self, key: &str, required: bool, n_layer: u32, min: u32) -> Result<Option<Vec<u32>>, Fault> {
        let values = match self.get(key, required)? {
            None => return Ok(None),
            Some(GgufValue::U32(v)) => vec![*v; n_layer as usize],
            Some(v @ GgufValue::Array(items)) => {
                if items.len() != n_layer as usize {
                    return Err(Fault::ArrayLength {
                        key: key.to_string(),
                        len: items.len(),
                        expected: n_layer.into(),
                        why: "one per layer, as block_count says".into(),
                    });
                }
                items
                    .iter()
                    .map(|item| match item {
                        GgufValue::U32(n) => Ok(*n),
                        GgufValue::I32(n) => {
                            u32::try_from(*n).map_err(|_| out_of_range(key, n, "it must not be negative"))
                        }
                        _ => Err(wrong(key, "a u32 or an array of u32/i32, one per layer", v)),
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }
            Some(other) => return Err(wrong(key, "a u32 or an array of u32/i32, one per layer", other)),
        };
        if let Some((i, n)) = values.iter().enumerate().find(|(_, &n)| n < min) {
            return Err(out_of_range(key, n, format!("it must be at least {min} (layer {i})")));
        }
        Ok(Some(values))
    }
}

fn is_i32(v: &GgufValue) -> bool {
    matches!(v, GgufValue::I32(_))
}
fn is_f32(v: &GgufValue) -> bool {
    matches!(v, GgufValue::F32(_))
}
fn is_string(v: &GgufValue) -> bool {
    matches!(v, GgufValue::String(_))
}
fn is_layer_flag(v: &GgufValue) -> bool {
    matches!(v, GgufValue::Bool(_) | GgufValue::U32(_) | GgufValue::I32(_))
}

// ---------------------------------------------------------------------------------------------------------------
// The tensor table.

fn tensor_fault(t: &GgufTensorInfo, what: TensorFault) -> Fault {
    Fault::Tensor {
        name: t.name.clone(),
        what,
    }
}

/// Bytes of a tensor of a known type whose rows hold whole blocks, or the fault.
fn tensor_bytes(t: &GgufTensorInfo) -> Result<u64, Fault> {
    if t.name.len() >= MAX_NAME {
        return Err(tensor_fault(t, TensorFault::NameTooLong { len: t.name.len() }));
    }
    if t.dims.len() > MAX_DIMS {
        return Err(tensor_fault(t, TensorFault::TooManyDimensions { n_dims: t.dims.len() }));
    }
    if t.dims.contains(&0) {
        return Err(tensor_fault(t, TensorFault::ZeroDimension { dims: t.dims.clone() }));
    }
    let Some((block, block_bytes)) = ggml_type_block(t.ggml_type) else {
        return Err(tensor_fault(t, TensorFault::UnknownType { ty: t.ggml_type }));
    };
    let ne0 = t.dims.first().copied().unwrap_or(1);
    if ne0 % block != 0 {
        return Err(tensor_fault(
            t,
            TensorFault::RowNotWholeBlocks {
                ne0,
                ty: ggml_type_name(t.ggml_type),
                block,
            },
        ));
    }
    // ggml counts elements in int64_t and bytes in size_t.
    let too_large = || tensor_fault(t, TensorFault::TooLarge { dims: t.dims.clone() });
    let n = t
        .checked_n_elements()
        .filter(|&n| n <= i64::MAX as u64)
        .ok_or_else(too_large)?;
    (n / block)
        .checked_mul(block_bytes)
        .filter(|&b| b <= i64::MAX as u64)
        .ok_or_else(too_large)
}

/// Every tensor: a known type, at most 4 non-zero dimensions, whole blocks per row, a size that fits, and data at
/// the offset llama.cpp's `gguf.cpp` demands: aligned, right after the previous tensor's padded data, inside the file.
fn check_tensor_table(h: &GgufHeader) -> Result<(), Fault> {
    let alignment = h.alignment();
    let mut expected = 0u64;
    let mut previous: Option<&GgufTensorInfo> = None;
    for t in &h.tensors {
        let bytes = tensor_bytes(t)?;
        if t.offset % alignment != 0 {
            return Err(tensor_fault(
                t,
                TensorFault::Misaligned {
                    offset: t.offset,
                    alignment,
                },
            ));
        }
        if t.offset != expected {
            let what = match previous {
                Some(p) if t.offset < expected => TensorFault::Overlaps {
                    offset: t.offset,
                    expected,
                    previous: p.name.clone(),
                },
                _ => TensorFault::Gap {
                    offset: t.offset,
                    expected,
                },
            };
            return Err(tensor_fault(t, what));
        }
        // Checked sums: the sizes of several tensors may together overflow 64 bits (a published exploit).
        let overflows = || tensor_fault(t, TensorFault::EndOverflows { offset: t.offset });
        let end = h
            .data_offset
            .checked_add(t.offset)
            .and_then(|e| e.checked_add(bytes))
            .ok_or_else(overflows)?;
        if end > h.file_len {
            return Err(tensor_fault(t, TensorFault::PastEnd { end, len: h.file_len }));
        }
        // `bytes` is below 2^63 and the alignment at most 2^20, so only the sum can overflow.
        expected = t
            .offset
            .checked_add(bytes.div_ceil(alignment) * alignment)
            .ok_or_else(overflows)?;
        previous = Some(t);
    }
    Ok(())
}

/// The tensor table by name, and the shape checks of an architecture's tensors.
struct Tensors<'a> {
    by_name: HashMap<&'a str, &'a GgufTensorInfo>,
    arch: &'static str,
}

impl<'a> Tensors<'a> {
    fn new(h: &'a GgufHeader, arch: &'static str) -> Tensors<'a> {
        Tensors {
            by_name: h.tensors.iter().map(|t| (t.name.as_str(), t)).collect(),
            arch,
        }
    }

    fn has(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// The tensor `name` with the dimensions `dims` (ggml order; trailing 1s are ignored, as llama.cpp does).
    fn shaped(&self, name: &str, dims: &[u64], required: bool) -> Result<Option<&'a GgufTensorInfo>, Fault> {
        let Some(t) = self.by_name.get(name).copied() else {
            if required {
                return Err(Fault::Tensor {
                    name: name.to_string(),
                    what: TensorFault::Missing { arch: self.arch },
                });
            }
            return Ok(None);
        };
        if !same_shape(&t.dims, dims) {
            return Err(tensor_fault(
                t,
                TensorFault::Shape {
                    expected: dims.to_vec(),
                    found: t.dims.clone(),
                },
            ));
        }
        Ok(Some(t))
    }

    fn need(&self, name: &str, dims: &[u64]) -> Result<(), Fault> {
        self.shaped(name, dims, true).map(|_| ())
    }

    fn allow(&self, name: &str, dims: &[u64]) -> Result<(), Fault> {
        self.shaped(name, dims, false).map(|_| ())
    }
}

fn same_shape(found: &[u64], expected: &[u64]) -> bool {
    (0..MAX_DIMS.max(found.len())).all(|i| found.get(i).unwrap_or(&1) == expected.get(i).unwrap_or(&1))
}

// ---------------------------------------------------------------------------------------------------------------
// The tokenizer.

/// The tokenizer's keys as `llama-vocab.cpp` reads them; returns the vocabulary size.
fn check_tokenizer(m: &Meta) -> Result<usize, Fault> {
    m.string("tokenizer.ggml.model", true)?;
    m.string("tokenizer.ggml.pre", false)?;
    m.string("tokenizer.chat_template", false)?;
    m.u32("tokenizer.ggml.token_type_count", false)?;
    for key in [
        "tokenizer.ggml.add_bos_token",
        "tokenizer.ggml.add_eos_token",
        "tokenizer.ggml.add_sep_token",
        "tokenizer.ggml.add_space_prefix",
        "tokenizer.ggml.remove_extra_whitespaces",
    ] {
        m.bool(key)?;
    }
    let tokens_key = "tokenizer.ggml.tokens";
    let tokens = m
        .array(tokens_key, true, "an array of strings", is_string)?
        .unwrap_or_default();
    let n = tokens.len();
    if n == 0 || n > i32::MAX as usize {
        return Err(out_of_range(
            tokens_key,
            format!("an array of {n} tokens"),
            "a vocabulary holds from 1 to 2147483647 tokens",
        ));
    }
    let same_length = |key: &str, len: usize| {
        if len == n {
            Ok(())
        } else {
            Err(Fault::ArrayLength {
                key: key.to_string(),
                len,
                expected: n as u64,
                why: "one per token of tokenizer.ggml.tokens".into(),
            })
        }
    };
    if let Some(scores) = m.array("tokenizer.ggml.scores", false, "an array of f32", is_f32)? {
        same_length("tokenizer.ggml.scores", scores.len())?;
    }
    let types = match m.array("tokenizer.ggml.token_type", false, "an array of i32", is_i32)? {
        Some(types) => {
            same_length("tokenizer.ggml.token_type", types.len())?;
            types
        }
        None => &[],
    };
    m.array("tokenizer.ggml.merges", false, "an array of strings", is_string)?;

    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(n);
    let mut renamed = Vec::new();
    for (id, token) in tokens.iter().enumerate() {
        let text = token.as_str().unwrap_or_default();
        let ty = match types.get(id) {
            Some(GgufValue::I32(t)) => *t,
            _ => 1,
        };
        if !(0..=TOKEN_TYPE_BYTE).contains(&ty) {
            return Err(Fault::UnknownTokenType { id, value: ty.into() });
        }
        if ty == TOKEN_TYPE_BYTE && !is_byte_token(text) {
            return Err(Fault::BadByteToken {
                id,
                text: text.to_string(),
            });
        }
        if text.is_empty() {
            // llama.cpp names an empty token "[EMPTY_<id>]"; checked against the others below.
            renamed.push((id, format!("[EMPTY_{id}]")));
            continue;
        }
        if let Some(first) = seen.insert(text, id) {
            // llama.cpp asserts that every token text is distinct (its maps would disagree).
            return Err(Fault::DuplicateToken {
                id,
                first,
                text: text.to_string(),
            });
        }
    }
    for (id, text) in &renamed {
        if let Some(&first) = seen.get(text.as_str()) {
            return Err(Fault::DuplicateToken {
                id: *id,
                first,
                text: String::new(),
            });
        }
    }

    for suffix in [
        "bos",
        "eos",
        "eot",
        "eom",
        "unknown",
        "seperator",
        "padding",
        "cls",
        "mask",
        "fim_pre",
        "fim_suf",
        "fim_mid",
        "fim_pad",
        "fim_rep",
        "fim_sep",
        "prefix",
        "suffix",
        "middle",
    ] {
        let key = format!("tokenizer.ggml.{suffix}_token_id");
        if let Some(id) = m.u32(&key, false)? {
            if id as usize >= n {
                return Err(Fault::TokenOutOfVocab {
                    key,
                    id: id.into(),
                    n_vocab: n,
                });
            }
        }
    }
    Ok(n)
}

/// `<0xNN>` with exactly two hex digits, as llama.cpp parses a byte token (`substr(3, 2)` then `strtol`).
fn is_byte_token(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 6 && b.starts_with(b"<0x") && b[5] == b'>' && b[3].is_ascii_hexdigit() && b[4].is_ascii_hexdigit()
}

// ---------------------------------------------------------------------------------------------------------------
// gemma3 (llama-model.cpp `load_hparams`, models/gemma3.cpp).

fn check_gemma3(m: &Meta, tensors: &Tensors) -> Result<(), Fault> {
    let k = |s: &str| format!("gemma3.{s}");
    let n_layer = m
        .u32_in(
            &k("block_count"),
            true,
            1,
            MAX_LAYERS,
            "llama.cpp's LLAMA_MAX_LAYERS is 512",
        )?
        .unwrap_or(1);
    let n_embd = m
        .u32_in(
            &k("embedding_length"),
            true,
            1,
            i32::MAX as u32,
            "a positive 32-bit count",
        )?
        .unwrap_or(1) as u64;
    m.u32_in(
        &k("context_length"),
        true,
        1,
        i32::MAX as u32,
        "llama.cpp reports it as a 32-bit int",
    )?;
    let n_head = m
        .per_layer(&k("attention.head_count"), true, n_layer, 1)?
        .unwrap_or_default();
    let n_head_kv = m
        .per_layer(&k("attention.head_count_kv"), false, n_layer, 1)?
        .unwrap_or_else(|| n_head.clone());
    for (i, (&q, &kv)) in n_head.iter().zip(&n_head_kv).enumerate() {
        if q % kv != 0 {
            return Err(out_of_range(
                &k("attention.head_count_kv"),
                kv,
                format!("it must divide gemma3.attention.head_count ({q} in layer {i})"),
            ));
        }
    }
    let n_ff = m
        .per_layer(&k("feed_forward_length"), true, n_layer, 1)?
        .unwrap_or_default();
    // llama.cpp's gemma3 sizes every layer's tensors by layer 0's values.
    let (n_head, n_head_kv, n_ff) = (n_head[0] as u64, n_head_kv[0] as u64, n_ff[0] as u64);
    let default_head = n_embd / n_head;
    let head_k = m
        .u32_in(
            &k("attention.key_length"),
            false,
            1,
            u32::MAX,
            "a head has at least one dimension",
        )?
        .map_or(default_head, u64::from);
    let head_v = m
        .u32_in(
            &k("attention.value_length"),
            false,
            1,
            u32::MAX,
            "a head has at least one dimension",
        )?
        .map_or(default_head, u64::from);
    if head_k == 0 {
        return Err(out_of_range(
            &k("embedding_length"),
            n_embd,
            format!("it gives heads of 0 dimensions with {n_head} heads; set gemma3.attention.key_length"),
        ));
    }
    m.u32_in(
        &k("rope.dimension_count"),
        false,
        1,
        head_k as u32,
        "rope turns at most the key length's dimensions",
    )?;
    for key in [
        "attention.key_length_swa",
        "attention.value_length_swa",
        "rope.dimension_count_swa",
    ] {
        m.u32_in(&k(key), false, 1, u32::MAX, "a head has at least one dimension")?;
    }
    m.f32_finite(&k("attention.layer_norm_rms_epsilon"), true, true)?;
    m.f32_finite(&k("rope.freq_base"), false, true)?;
    m.f32_finite(&k("rope.freq_base_swa"), false, true)?;
    if let Some(t) = m.string(&k("rope.scaling.type"), false)? {
        if !ROPE_SCALING_TYPES.contains(&t) {
            return Err(out_of_range(
                &k("rope.scaling.type"),
                format!("{t:?}"),
                "llama.cpp knows only none, linear, yarn and longrope (it aborts on others)",
            ));
        }
    }
    for key in [
        "rope.scaling.factor",
        "rope.scale_linear",
        "rope.scaling.attn_factor",
        "final_logit_softcapping",
        "attn_logit_softcapping",
    ] {
        m.f32_finite(&k(key), false, false)?;
    }
    m.u32(&k("rope.scaling.original_context_length"), false)?;
    m.bool(&k("rope.scaling.finetuned"))?;
    m.u32(&k("attention.sliding_window"), false)?;
    match m.get(&k("attention.sliding_window_pattern"), false)? {
        Some(GgufValue::Array(_)) => {
            let key = k("attention.sliding_window_pattern");
            let flags = m
                .array(&key, false, "a u32 or an array of bool, one per layer", is_layer_flag)?
                .unwrap_or_default();
            if flags.len() != n_layer as usize {
                return Err(Fault::ArrayLength {
                    key,
                    len: flags.len(),
                    expected: n_layer.into(),
                    why: "one per layer, as block_count says".into(),
                });
            }
        }
        _ => {
            m.u32(&k("attention.sliding_window_pattern"), false)?;
        }
    }
    // gemma3 has no experts and no next-token layers; llama.cpp asserts on inconsistent expert counts.
    for key in [
        "expert_count",
        "expert_used_count",
        "expert_group_count",
        "expert_group_used_count",
        "nextn_predict_layers",
    ] {
        if let Some(n) = m.u32(&k(key), false)? {
            if n != 0 {
                return Err(out_of_range(&k(key), n, "gemma3 has none, so it must be 0"));
            }
        }
    }
    let vocab_size = m.u32(&k("vocab_size"), false)?;
    let n_vocab = check_tokenizer(m)? as u64;
    if let Some(v) = vocab_size {
        if u64::from(v) != n_vocab {
            return Err(out_of_range(
                &k("vocab_size"),
                v,
                format!("tokenizer.ggml.tokens holds {n_vocab} tokens"),
            ));
        }
    }

    let t = tensors;
    t.need("token_embd.weight", &[n_embd, n_vocab])?;
    t.need("output_norm.weight", &[n_embd])?;
    t.allow("output.weight", &[n_embd, n_vocab])?;
    let (q, kv_k, kv_v) = (head_k * n_head, head_k * n_head_kv, head_v * n_head_kv);
    for i in 0..n_layer {
        let b = |s: &str| format!("blk.{i}.{s}.weight");
        t.need(&b("attn_norm"), &[n_embd])?;
        if t.has(&b("attn_qkv")) {
            t.need(&b("attn_qkv"), &[n_embd, q + kv_k + kv_v])?;
        } else {
            t.need(&b("attn_q"), &[n_embd, q])?;
            t.need(&b("attn_k"), &[n_embd, kv_k])?;
            t.need(&b("attn_v"), &[n_embd, kv_v])?;
        }
        t.need(&b("attn_output"), &[q, n_embd])?;
        t.need(&b("post_attention_norm"), &[n_embd])?;
        t.need(&b("attn_k_norm"), &[head_k])?;
        t.need(&b("attn_q_norm"), &[head_k])?;
        t.need(&b("ffn_norm"), &[n_embd])?;
        t.need(&b("ffn_gate"), &[n_embd, n_ff])?;
        t.need(&b("ffn_up"), &[n_embd, n_ff])?;
        t.need(&b("ffn_down"), &[n_ff, n_embd])?;
        t.need(&b("post_ffw_norm"), &[n_embd])?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// clip with the gemma3 projector (tools/mtmd/clip.cpp `load_hparams`, `load_tensors`, models/siglip.cpp).

fn check_clip(m: &Meta, tensors: &Tensors) -> Result<(), Fault> {
    // clip.cpp's getters abort on a value of the wrong type, so every key it reads is checked here.
    for key in [
        "clip.has_vision_encoder",
        "clip.has_audio_encoder",
        "clip.has_gen_audio_encoder",
        "clip.use_gelu",
        "clip.use_silu",
    ] {
        m.bool(key)?;
    }
    if m.bool("clip.use_gelu")? == Some(true) && m.bool("clip.use_silu")? == Some(true) {
        return Err(out_of_range(
            "clip.use_silu",
            true,
            "clip.use_gelu is true too, and a projector has one activation",
        ));
    }
    m.i32("clip.minicpmv_version")?;
    m.u32("clip.minicpmv_query_num", false)?;
    m.string("clip.vision.mm_patch_merge_type", false)?;
    let mut projector = ("clip.projector_type", m.string("clip.projector_type", false)?);
    if projector.1.is_none_or(str::is_empty) {
        projector = (
            "clip.vision.projector_type",
            m.string("clip.vision.projector_type", false)?,
        );
    }
    match projector.1 {
        Some("gemma3") => {}
        Some(other) => {
            return Err(Fault::UnknownProjector {
                key: projector.0.into(),
                value: other.into(),
            })
        }
        None => {
            return Err(Fault::MissingKey {
                key: "clip.projector_type".into(),
            })
        }
    }

    let v = |s: &str| format!("clip.vision.{s}");
    let int = i32::MAX as u32;
    let positive = "a positive 32-bit count";
    let n_embd = m.u32_in(&v("embedding_length"), true, 1, int, positive)?.unwrap_or(1) as u64;
    let n_head = m
        .u32_in(&v("attention.head_count"), true, 1, int, positive)?
        .unwrap_or(1) as u64;
    let d_head = match m.u32_in(&v("attention.head_dim"), false, 1, int, positive)? {
        Some(d) => d as u64,
        None if n_embd % n_head != 0 => {
            return Err(out_of_range(
                &v("attention.head_count"),
                n_head,
                format!("it must divide clip.vision.embedding_length ({n_embd})"),
            ))
        }
        None => n_embd / n_head,
    };
    let n_head_kv = m
        .u32_in(&v("attention.head_count_kv"), false, 1, int, positive)?
        .map_or(n_head, u64::from);
    if n_head % n_head_kv != 0 {
        return Err(out_of_range(
            &v("attention.head_count_kv"),
            n_head_kv,
            format!("it must divide clip.vision.attention.head_count ({n_head})"),
        ));
    }
    let n_ff = m
        .u32_in(&v("feed_forward_length"), true, 1, int, positive)?
        .unwrap_or(1) as u64;
    let n_layer = m
        .u32_in(
            &v("block_count"),
            true,
            1,
            MAX_LAYERS,
            "a vision encoder of 1 to 512 layers",
        )?
        .unwrap_or(1);
    m.u32_in(&v("projection_dim"), true, 1, int, positive)?;
    m.f32_finite(&v("attention.layer_norm_epsilon"), true, true)?;
    let image_size = m.u32_in(&v("image_size"), true, 1, int, positive)?.unwrap_or(1) as u64;
    let patch_size = m.u32_in(&v("patch_size"), true, 1, int, positive)?.unwrap_or(1) as u64;
    if image_size % patch_size != 0 {
        return Err(out_of_range(
            &v("patch_size"),
            patch_size,
            format!("it must divide clip.vision.image_size ({image_size})"),
        ));
    }
    let per_side = image_size / patch_size;
    // clip.cpp's default for gemma3 is 4 patches a side per image token.
    let merge = m
        .u32_in(&v("projector.scale_factor"), false, 1, int, positive)?
        .map_or(4, u64::from);
    if per_side % merge != 0 {
        return Err(out_of_range(
            &v("projector.scale_factor"),
            merge,
            format!("it must divide the {per_side} patches a side (clip.vision.image_size / clip.vision.patch_size)"),
        ));
    }
    for key in [v("image_mean"), v("image_std")] {
        let values = m.array(&key, true, "an array of 3 f32", is_f32)?.unwrap_or_default();
        if values.len() != 3 {
            return Err(Fault::ArrayLength {
                key,
                len: values.len(),
                expected: 3,
                why: "one per colour channel".into(),
            });
        }
        let is_std = key.ends_with("std");
        for x in values {
            let x = x.as_f64().unwrap_or(f64::NAN);
            if !x.is_finite() || (is_std && x == 0.0) {
                let rule = if is_std {
                    "each entry must be a finite number other than 0"
                } else {
                    "each entry must be a finite number"
                };
                return Err(out_of_range(&key, x, rule));
            }
        }
    }
    for key in [v("feature_layer"), v("image_grid_pinpoints")] {
        m.array(&key, false, "an array of i32", is_i32)?;
    }

    let t = tensors;
    t.need("v.patch_embd.weight", &[patch_size, patch_size, 3, n_embd])?;
    t.allow("v.patch_embd.bias", &[n_embd])?;
    t.need("v.position_embd.weight", &[n_embd, per_side * per_side])?;
    let (q, kv) = (n_head * d_head, n_head_kv * d_head);
    for i in 0..n_layer {
        let b = |s: &str, what: &str| format!("v.blk.{i}.{s}.{what}");
        if t.has(&b("attn_qkv", "weight")) {
            t.need(&b("attn_qkv", "weight"), &[n_embd, q + 2 * kv])?;
            t.allow(&b("attn_qkv", "bias"), &[q + 2 * kv])?;
        } else {
            for (name, width) in [("attn_q", q), ("attn_k", kv), ("attn_v", kv)] {
                t.need(&b(name, "weight"), &[n_embd, width])?;
                t.allow(&b(name, "bias"), &[width])?;
            }
        }
        t.need(&b("attn_out", "weight"), &[q, n_embd])?;
        t.allow(&b("attn_out", "bias"), &[n_embd])?;
        // clip.cpp asserts a per-head q/k norm's width; a whole-width one is applied before the heads split.
        for name in ["attn_q_norm", "attn_k_norm"] {
            let width = if t
                .by_name
                .get(b(name, "weight").as_str())
                .is_some_and(|x| x.dims.first() == Some(&d_head))
            {
                d_head
            } else {
                n_embd
            };
            t.allow(&b(name, "weight"), &[width])?;
        }
        for name in ["ln1", "ln2"] {
            t.need(&b(name, "weight"), &[n_embd])?;
            t.allow(&b(name, "bias"), &[n_embd])?;
        }
        // Older conversions swap ffn_up and ffn_down; clip.cpp swaps them back when ffn_down is [n_embd, n_ff].
        let swapped = t
            .by_name
            .get(b("ffn_down", "weight").as_str())
            .is_some_and(|x| x.dims.first() == Some(&n_embd) && n_embd != n_ff);
        let (up, down) = if swapped {
            ("ffn_down", "ffn_up")
        } else {
            ("ffn_up", "ffn_down")
        };
        t.need(&b(up, "weight"), &[n_embd, n_ff])?;
        t.allow(&b(up, "bias"), &[n_ff])?;
        t.need(&b(down, "weight"), &[n_ff, n_embd])?;
        t.allow(&b(down, "bias"), &[n_embd])?;
    }
    t.need("v.post_ln.weight", &[n_embd])?;
    t.allow("v.post_ln.bias", &[n_embd])?;
    let projection_dim = m.u32(&v("projection_dim"), true)?.unwrap_or(1) as u64;
    t.need("mm.input_projection.weight", &[projection_dim, n_embd])?;
    t.need("mm.soft_emb_norm.weight", &[n_embd])?;
    Ok(())
}

#[cfg(test)]
mod tests;
