//! A small, defensive reader for GGUF file headers (metadata and tensor table).
//!
//! Owns: telling a GGUF model from an mmproj from a file that is not GGUF at all or has been cut short, before
//! llama.cpp sees it (llama.cpp aborts or returns a bare null on such files), and refusing a header whose layout
//! cannot be computed (`general.alignment` 0, not a power of two, or huge). What llama.cpp reads from a header that
//! parses is checked by `gguf_check`. Pure Rust: it never calls llama.cpp
//! and never reads tensor data, only the header and the file length.

use std::collections::BTreeMap;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

/// One metadata value of a GGUF header.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<GgufValue>),
}

impl GgufValue {
    /// The value as an unsigned integer, when it is any integer type holding a non-negative number.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            GgufValue::U8(v) => Some(v.into()),
            GgufValue::U16(v) => Some(v.into()),
            GgufValue::U32(v) => Some(v.into()),
            GgufValue::U64(v) => Some(v),
            GgufValue::I8(v) => u64::try_from(v).ok(),
            GgufValue::I16(v) => u64::try_from(v).ok(),
            GgufValue::I32(v) => u64::try_from(v).ok(),
            GgufValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a float, when it is a float or an integer.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            GgufValue::F32(v) => Some(v.into()),
            GgufValue::F64(v) => Some(v),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            GgufValue::Bool(b) => Some(b),
            _ => None,
        }
    }
}

/// One entry of the tensor table.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufTensorInfo {
    pub name: String,
    pub dims: Vec<u64>,
    pub ggml_type: u32,
    pub offset: u64,
}

impl GgufTensorInfo {
    /// The number of elements. [`GgufHeader::read`] refuses a tensor whose count overflows u64, so this only
    /// saturates for a table built by hand.
    pub fn n_elements(&self) -> u64 {
        self.checked_n_elements().unwrap_or(u64::MAX)
    }

    /// The number of elements, or `None` when the product of the dimensions overflows u64.
    pub fn checked_n_elements(&self) -> Option<u64> {
        self.dims.iter().try_fold(1u64, |n, &d| n.checked_mul(d))
    }

    /// Bytes the tensor occupies, when its type is known (saturating: a size past u64 reads as `u64::MAX`,
    /// which no file holds).
    pub fn n_bytes(&self) -> Option<u64> {
        let (block, size) = ggml_type_block(self.ggml_type)?;
        let n = self.n_elements();
        Some((n / block).saturating_mul(size))
    }
}

/// The parsed header of a GGUF file.
#[derive(Debug, Clone)]
pub struct GgufHeader {
    pub path: PathBuf,
    pub metadata: BTreeMap<String, GgufValue>,
    pub tensors: Vec<GgufTensorInfo>,
    pub data_offset: u64,
    pub file_len: u64,
    /// Where each metadata entry (key, type and value) lies in the file, in file order.
    pub kv_spans: Vec<KvSpan>,
}

/// The bytes of one metadata entry in the file: `start..end`.
#[derive(Debug, Clone, PartialEq)]
pub struct KvSpan {
    pub key: String,
    pub start: u64,
    pub end: u64,
}

/// Why a file could not be read as GGUF.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    // `error`, not `source`: the text already holds it, and a source would print it twice in the error chain.
    #[error("cannot read {}: {error}", path.display())]
    Io { path: PathBuf, error: std::io::Error },
    #[error("{} is not a GGUF file (it starts with {magic:?}, not \"GGUF\"); convert the checkpoint with scripts/convert_hf_to_gguf.py or download a .gguf build", path.display())]
    NotGguf { path: PathBuf, magic: String },
    #[error("{} is a GGUF file of version {version}, which this build does not read (versions 2 and 3 are supported)", path.display())]
    Version { path: PathBuf, version: u32 },
    #[error("{} is damaged or truncated: {what}; download or convert it again", path.display())]
    Damaged { path: PathBuf, what: HeaderFault },
}

/// What is wrong inside a damaged header (the text follows the file name in [`GgufError::Damaged`]).
#[derive(Debug, thiserror::Error)]
pub enum HeaderFault {
    #[error("the header needs {needed} more bytes at offset {at} but the file ends at {end}")]
    Short { needed: u64, at: u64, end: u64 },
    #[error("read failed at offset {at}: {error}")]
    Read { at: u64, error: std::io::Error },
    #[error("a string before offset {at} is not UTF-8")]
    NotUtf8 { at: u64 },
    #[error("the header would need {needed} more bytes at offset {at}, past the {MAX_HEADER_BYTES} bytes a GGUF header may take (a real 27B model's takes about 6 MB)")]
    HeaderTooLarge { at: u64, needed: u64 },
    #[error("arrays nested too deeply")]
    NestedTooDeep,
    #[error("an array claims {count} items, more than the file can hold or the {MAX_ARRAY_ITEMS} a header may have")]
    ArrayTooLong { count: u64 },
    #[error("unknown metadata value type {ty} at offset {at}")]
    UnknownValueType { ty: u32, at: u64 },
    #[error("the header claims {n_tensors} tensors and {n_kv} metadata keys")]
    AbsurdCounts { n_tensors: u64, n_kv: u64 },
    #[error("metadata key {key:?}: {fault}")]
    BadValue { key: String, fault: Box<HeaderFault> },
    #[error("tensor {name:?} claims {n_dims} dimensions")]
    TooManyDimensions { name: String, n_dims: u32 },
    #[error("its tensors need {needed} bytes but the file has {len} (tensor {name:?} ends past the end)")]
    DataMissing { needed: u64, len: u64, name: String },
    #[error("metadata key {key:?} appears twice")]
    DuplicateKey { key: String },
    #[error("tensor {name:?} appears twice in the tensor table")]
    DuplicateTensor { name: String },
    #[error("tensor {name:?} claims dimensions {dims:?}, more elements than a 64-bit count holds")]
    TooManyElements { name: String, dims: Vec<u64> },
    #[error("the element counts of the tensors overflow a 64-bit count at tensor {name:?}")]
    TooManyParameters { name: String },
    #[error(
        "metadata key \"general.alignment\" is {value}, but it must be a u32 power of two from 1 to {MAX_ALIGNMENT}"
    )]
    BadAlignment { value: String },
}

/// The largest `general.alignment` accepted. ggml takes any power of two; writers use 32, and a larger value only
/// pads the file (a huge one is a published way to make readers seek past the end).
pub const MAX_ALIGNMENT: u64 = 1 << 20;

/// `general.alignment` as ggml reads it: a u32 power of two (32 when absent); any other value as text.
fn valid_alignment(value: Option<&GgufValue>) -> Result<u64, String> {
    match value {
        None => Ok(32),
        Some(GgufValue::U32(a)) if a.is_power_of_two() && u64::from(*a) <= MAX_ALIGNMENT => Ok((*a).into()),
        Some(GgufValue::U32(a)) => Err(a.to_string()),
        Some(other) => Err(format!("{other:?} (not a u32)")),
    }
}

/// The number of elements in one block of a ggml type, and the block's size in bytes (`None` for a type ggml does
/// not know, or one removed from GGUF files).
pub fn ggml_type_block(t: u32) -> Option<(u64, u64)> {
    // (elements per block, bytes per block), from ggml's type traits.
    Some(match t {
        0 => (1, 4),      // F32
        1 => (1, 2),      // F16
        2 => (32, 18),    // Q4_0
        3 => (32, 20),    // Q4_1
        6 => (32, 22),    // Q5_0
        7 => (32, 24),    // Q5_1
        8 => (32, 34),    // Q8_0
        9 => (32, 36),    // Q8_1
        10 => (256, 84),  // Q2_K
        11 => (256, 110), // Q3_K
        12 => (256, 144), // Q4_K
        13 => (256, 176), // Q5_K
        14 => (256, 210), // Q6_K
        15 => (256, 292), // Q8_K
        16 => (256, 66),  // IQ2_XXS
        17 => (256, 74),  // IQ2_XS
        18 => (256, 98),  // IQ3_XXS
        19 => (256, 50),  // IQ1_S
        20 => (32, 18),   // IQ4_NL
        21 => (256, 110), // IQ3_S
        22 => (256, 82),  // IQ2_S
        23 => (256, 136), // IQ4_XS
        24 => (1, 1),     // I8
        25 => (1, 2),     // I16
        26 => (1, 4),     // I32
        27 => (1, 8),     // I64
        28 => (1, 8),     // F64
        29 => (256, 56),  // IQ1_M
        30 => (1, 2),     // BF16
        34 => (256, 54),  // TQ1_0
        35 => (256, 66),  // TQ2_0
        39 => (32, 17),   // MXFP4
        40 => (64, 36),   // NVFP4
        41 => (128, 18),  // Q1_0
        42 => (64, 18),   // Q2_0
        _ => return None,
    })
}

/// The name of a ggml tensor type, as llama.cpp prints it.
pub fn ggml_type_name(t: u32) -> String {
    let name = match t {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        6 => "Q5_0",
        7 => "Q5_1",
        8 => "Q8_0",
        9 => "Q8_1",
        10 => "Q2_K",
        11 => "Q3_K",
        12 => "Q4_K",
        13 => "Q5_K",
        14 => "Q6_K",
        15 => "Q8_K",
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        24 => "I8",
        25 => "I16",
        26 => "I32",
        27 => "I64",
        28 => "F64",
        29 => "IQ1_M",
        30 => "BF16",
        34 => "TQ1_0",
        35 => "TQ2_0",
        39 => "MXFP4",
        40 => "NVFP4",
        41 => "Q1_0",
        42 => "Q2_0",
        other => return format!("type {other}"),
    };
    name.to_string()
}

/// The most bytes of metadata and tensor table read from one file: strings and arrays are read whole into memory, so
/// a damaged length in a large file must not be followed (a real 27B model's header is about 6 MB).
const MAX_HEADER_BYTES: u64 = 256 << 20;
/// The most items one metadata array may hold (a vocabulary of 262,144 tokens is the largest MedGemma's).
const MAX_ARRAY_ITEMS: u64 = 1 << 23;

struct Cursor<R: Read> {
    inner: R,
    pos: u64,
    limit: u64,
}

impl<R: Read> Cursor<R> {
    fn bytes(&mut self, n: u64) -> Result<Vec<u8>, HeaderFault> {
        if self.pos.saturating_add(n) > MAX_HEADER_BYTES && self.pos.saturating_add(n) <= self.limit {
            return Err(HeaderFault::HeaderTooLarge {
                at: self.pos,
                needed: n,
            });
        }
        if self.pos.saturating_add(n) > self.limit {
            return Err(HeaderFault::Short {
                needed: n,
                at: self.pos,
                end: self.limit,
            });
        }
        let mut buf = vec![0u8; n as usize];
        self.inner
            .read_exact(&mut buf)
            .map_err(|error| HeaderFault::Read { at: self.pos, error })?;
        self.pos += n;
        Ok(buf)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], HeaderFault> {
        let v = self.bytes(N as u64)?;
        Ok(v.try_into().expect("length checked"))
    }
    fn u32(&mut self) -> Result<u32, HeaderFault> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, HeaderFault> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn string(&mut self) -> Result<String, HeaderFault> {
        let len = self.u64()?;
        let bytes = self.bytes(len)?;
        String::from_utf8(bytes).map_err(|_| HeaderFault::NotUtf8 { at: self.pos })
    }
    fn value(&mut self, ty: u32, depth: u32) -> Result<GgufValue, HeaderFault> {
        Ok(match ty {
            0 => GgufValue::U8(self.array::<1>()?[0]),
            1 => GgufValue::I8(self.array::<1>()?[0] as i8),
            2 => GgufValue::U16(u16::from_le_bytes(self.array()?)),
            3 => GgufValue::I16(i16::from_le_bytes(self.array()?)),
            4 => GgufValue::U32(self.u32()?),
            5 => GgufValue::I32(i32::from_le_bytes(self.array()?)),
            6 => GgufValue::F32(f32::from_le_bytes(self.array()?)),
            7 => GgufValue::Bool(self.array::<1>()?[0] != 0),
            8 => GgufValue::String(self.string()?),
            9 => {
                if depth > 2 {
                    return Err(HeaderFault::NestedTooDeep);
                }
                let inner = self.u32()?;
                let count = self.u64()?;
                if count > self.limit.saturating_sub(self.pos) || count > MAX_ARRAY_ITEMS {
                    return Err(HeaderFault::ArrayTooLong { count });
                }
                let mut items = Vec::with_capacity(count.min(1 << 20) as usize);
                for _ in 0..count {
                    items.push(self.value(inner, depth + 1)?);
                }
                GgufValue::Array(items)
            }
            10 => GgufValue::U64(self.u64()?),
            11 => GgufValue::I64(i64::from_le_bytes(self.array()?)),
            12 => GgufValue::F64(f64::from_le_bytes(self.array()?)),
            other => {
                return Err(HeaderFault::UnknownValueType {
                    ty: other,
                    at: self.pos,
                })
            }
        })
    }
}

impl GgufHeader {
    /// Reads and checks the header of `path`: magic, version, metadata, tensor table, and that the file is long
    /// enough to hold every tensor the table lists.
    pub fn read(path: &Path) -> Result<GgufHeader, GgufError> {
        let io = |error| GgufError::Io {
            path: path.to_path_buf(),
            error,
        };
        let file = crate::files::open_regular(path).map_err(io)?;
        let file_len = file.metadata().map_err(io)?.len();
        GgufHeader::parse(BufReader::with_capacity(1 << 20, file), file_len, path)
    }

    /// Reads a header from `reader`, the start of a file of `file_len` bytes named `path` (the name is only used in
    /// messages). The checks are those of [`GgufHeader::read`]; this form lets tests and fuzzing work in memory.
    pub fn parse(reader: impl Read, file_len: u64, path: &Path) -> Result<GgufHeader, GgufError> {
        let damaged = |what: HeaderFault| GgufError::Damaged {
            path: path.to_path_buf(),
            what,
        };
        let mut cur = Cursor {
            inner: reader,
            pos: 0,
            limit: file_len,
        };
        let magic = cur.bytes(4.min(file_len)).map_err(damaged)?;
        if magic != b"GGUF" {
            return Err(GgufError::NotGguf {
                path: path.to_path_buf(),
                magic: String::from_utf8_lossy(&magic).escape_debug().to_string(),
            });
        }
        let version = cur.u32().map_err(damaged)?;
        if !(2..=3).contains(&version) {
            return Err(GgufError::Version {
                path: path.to_path_buf(),
                version,
            });
        }
        let n_tensors = cur.u64().map_err(damaged)?;
        let n_kv = cur.u64().map_err(damaged)?;
        if n_tensors > file_len || n_kv > file_len {
            return Err(damaged(HeaderFault::AbsurdCounts { n_tensors, n_kv }));
        }
        let mut metadata = BTreeMap::new();
        let mut kv_spans = Vec::with_capacity(n_kv.min(1 << 16) as usize);
        for _ in 0..n_kv {
            let start = cur.pos;
            let key = cur.string().map_err(damaged)?;
            let ty = cur.u32().map_err(damaged)?;
            let value = cur.value(ty, 0).map_err(|fault| {
                damaged(HeaderFault::BadValue {
                    key: key.clone(),
                    fault: Box::new(fault),
                })
            })?;
            if metadata.contains_key(&key) {
                return Err(damaged(HeaderFault::DuplicateKey { key }));
            }
            kv_spans.push(KvSpan {
                key: key.clone(),
                start,
                end: cur.pos,
            });
            metadata.insert(key, value);
        }
        // Grown as entries are read, never reserved from the claimed count: a damaged count in a large file would
        // otherwise ask for terabytes before the first entry shows the file is wrong.
        let mut tensors = Vec::with_capacity(n_tensors.min(1 << 12) as usize);
        let mut names = std::collections::HashSet::with_capacity(n_tensors.min(1 << 12) as usize);
        let mut parameters = 0u64;
        for _ in 0..n_tensors {
            let name = cur.string().map_err(damaged)?;
            let n_dims = cur.u32().map_err(damaged)?;
            if n_dims > 8 {
                return Err(damaged(HeaderFault::TooManyDimensions { name, n_dims }));
            }
            let dims = (0..n_dims)
                .map(|_| cur.u64())
                .collect::<Result<Vec<_>, _>>()
                .map_err(damaged)?;
            let ggml_type = cur.u32().map_err(damaged)?;
            let offset = cur.u64().map_err(damaged)?;
            if !names.insert(name.clone()) {
                return Err(damaged(HeaderFault::DuplicateTensor { name }));
            }
            let Some(n) = dims.iter().try_fold(1u64, |n, &d| n.checked_mul(d)) else {
                return Err(damaged(HeaderFault::TooManyElements { name, dims }));
            };
            parameters = match parameters.checked_add(n) {
                Some(p) => p,
                None => return Err(damaged(HeaderFault::TooManyParameters { name })),
            };
            tensors.push(GgufTensorInfo {
                name,
                dims,
                ggml_type,
                offset,
            });
        }
        let alignment = valid_alignment(metadata.get("general.alignment"))
            .map_err(|value| damaged(HeaderFault::BadAlignment { value }))?;
        let data_offset = cur.pos.div_ceil(alignment) * alignment;
        let header = GgufHeader {
            path: path.to_path_buf(),
            metadata,
            tensors,
            data_offset,
            file_len,
            kv_spans,
        };
        let needed = header.data_end();
        if needed > file_len {
            let name = header
                .tensors
                .iter()
                .find(|t| {
                    t.n_bytes()
                        .map(|n| data_offset.saturating_add(t.offset).saturating_add(n))
                        == Some(needed)
                })
                .map(|t| t.name.clone())
                .unwrap_or_default();
            return Err(damaged(HeaderFault::DataMissing {
                needed,
                len: file_len,
                name,
            }));
        }
        Ok(header)
    }

    /// The end of the last tensor's data, as the tensor table describes it.
    pub fn data_end(&self) -> u64 {
        self.tensors
            .iter()
            .filter_map(|t| {
                t.n_bytes()
                    .map(|n| self.data_offset.saturating_add(t.offset).saturating_add(n))
            })
            .max()
            .unwrap_or(self.data_offset)
    }

    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.get(key)
    }

    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(GgufValue::as_str)
    }

    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(GgufValue::as_u64)
    }

    /// `general.architecture`, e.g. `gemma3` for a MedGemma text model and `clip` for an mmproj.
    pub fn architecture(&self) -> Option<&str> {
        self.get_str("general.architecture")
    }

    /// A value of the model's own architecture namespace, e.g. `arch_u64("embedding_length")`.
    pub fn arch_u64(&self, key: &str) -> Option<u64> {
        let arch = self.architecture()?;
        self.get_u64(&format!("{arch}.{key}"))
    }

    /// True when this file is a vision projector (mmproj) rather than a language model.
    pub fn is_mmproj(&self) -> bool {
        self.architecture() == Some("clip")
    }

    /// `general.alignment` (32 when absent; [`GgufHeader::parse`] refuses a value that is not a power of two up to
    /// [`MAX_ALIGNMENT`], so this is the one the data section was laid out with).
    pub fn alignment(&self) -> u64 {
        valid_alignment(self.get("general.alignment")).unwrap_or(32)
    }
}

/// A metadata entry holding a u32, encoded as in a GGUF file.
pub fn encode_kv_u32(key: &str, value: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 16);
    out.extend_from_slice(&(key.len() as u64).to_le_bytes());
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(&4u32.to_le_bytes());
    out.extend_from_slice(&value.to_le_bytes());
    out
}

/// The layout of a copy of a GGUF file with the same metadata (some entries replaced) and tensors (some of a new
/// type): the header bytes to write first, then each tensor's data at `data_offset + offsets[i]`.
#[derive(Debug, Clone)]
pub struct RetypedLayout {
    pub header: Vec<u8>,
    pub offsets: Vec<u64>,
    pub sizes: Vec<u64>,
}

impl RetypedLayout {
    /// Plans the copy. `kv_bytes(span)` returns the original bytes of a metadata entry; `replace` holds whole
    /// encoded entries that take the place of the entry with the same key; `types` gives each tensor's new type.
    pub fn plan(
        source: &GgufHeader,
        kv_bytes: &mut dyn FnMut(&KvSpan) -> std::io::Result<Vec<u8>>,
        replace: &[(&str, Vec<u8>)],
        types: &[u32],
    ) -> std::io::Result<RetypedLayout> {
        assert_eq!(types.len(), source.tensors.len(), "one type per tensor");
        let alignment = source.alignment();
        let mut header = Vec::new();
        header.extend_from_slice(b"GGUF");
        header.extend_from_slice(&3u32.to_le_bytes());
        header.extend_from_slice(&(source.tensors.len() as u64).to_le_bytes());
        header.extend_from_slice(&(source.kv_spans.len() as u64).to_le_bytes());
        for span in &source.kv_spans {
            match replace.iter().find(|(k, _)| *k == span.key) {
                Some((_, bytes)) => header.extend_from_slice(bytes),
                None => header.extend_from_slice(&kv_bytes(span)?),
            }
        }
        let mut offsets = Vec::with_capacity(types.len());
        let mut sizes = Vec::with_capacity(types.len());
        let mut offset = 0u64;
        for (t, &ty) in source.tensors.iter().zip(types) {
            let info = GgufTensorInfo {
                ggml_type: ty,
                ..t.clone()
            };
            let size = info.n_bytes().ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("tensor {}: unknown type {ty}", t.name),
                )
            })?;
            header.extend_from_slice(&(t.name.len() as u64).to_le_bytes());
            header.extend_from_slice(t.name.as_bytes());
            header.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                header.extend_from_slice(&d.to_le_bytes());
            }
            header.extend_from_slice(&ty.to_le_bytes());
            header.extend_from_slice(&offset.to_le_bytes());
            offsets.push(offset);
            sizes.push(size);
            offset = (offset + size).div_ceil(alignment) * alignment;
        }
        let padded = (header.len() as u64).div_ceil(alignment) * alignment;
        header.resize(padded as usize, 0);
        Ok(RetypedLayout { header, offsets, sizes })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }

    /// A minimal valid GGUF: one string key, one u32 key, one F32 tensor of 4 elements.
    fn tiny_gguf() -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&1u64.to_le_bytes());
        out.extend_from_slice(&2u64.to_le_bytes());
        string(&mut out, "general.architecture");
        out.extend_from_slice(&8u32.to_le_bytes());
        string(&mut out, "gemma3");
        string(&mut out, "gemma3.embedding_length");
        out.extend_from_slice(&4u32.to_le_bytes());
        out.extend_from_slice(&64u32.to_le_bytes());
        string(&mut out, "w");
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&4u64.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes());
        while !out.len().is_multiple_of(32) {
            out.push(0);
        }
        out.extend_from_slice(&[0u8; 16]);
        out
    }

    /// A copy planned with the same types and no replacement reproduces the file's header byte for byte; a
    /// replaced entry and a new tensor type read back as written.
    #[test]
    fn retyped_layout_round_trips() {
        let bytes = tiny_gguf();
        let f = write(&bytes);
        let h = GgufHeader::read(f.path()).unwrap();
        assert_eq!(h.kv_spans.len(), 2);
        let mut kv = |s: &KvSpan| Ok(bytes[s.start as usize..s.end as usize].to_vec());
        let same = RetypedLayout::plan(&h, &mut kv, &[], &[0]).unwrap();
        assert_eq!(same.header, bytes[..h.data_offset as usize]);
        assert_eq!((same.offsets.clone(), same.sizes.clone()), (vec![0], vec![16]));

        let replaced = encode_kv_u32("gemma3.embedding_length", 128);
        let l = RetypedLayout::plan(&h, &mut kv, &[("gemma3.embedding_length", replaced)], &[1]).unwrap();
        let mut out = l.header.clone();
        out.extend_from_slice(&[0u8; 8]); // 4 F16 values
        let g = write(&out);
        let h2 = GgufHeader::read(g.path()).unwrap();
        assert_eq!(h2.get_u64("gemma3.embedding_length"), Some(128));
        assert_eq!(h2.get_str("general.architecture"), Some("gemma3"));
        assert_eq!(h2.tensors[0].ggml_type, 1);
        assert_eq!(h2.data_offset, l.header.len() as u64);
        assert_eq!(h2.data_end(), out.len() as u64);
    }

    fn write(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        f
    }

    #[test]
    fn reads_a_valid_header() {
        let f = write(&tiny_gguf());
        let h = GgufHeader::read(f.path()).unwrap();
        assert_eq!(h.architecture(), Some("gemma3"));
        assert_eq!(h.arch_u64("embedding_length"), Some(64));
        assert_eq!(h.tensors.len(), 1);
        assert_eq!(h.data_end(), h.file_len);
        assert!(!h.is_mmproj());
    }

    #[test]
    fn truncated_data_is_damaged() {
        let bytes = tiny_gguf();
        let f = write(&bytes[..bytes.len() - 4]);
        let err = GgufHeader::read(f.path()).unwrap_err();
        assert!(
            matches!(
                err,
                GgufError::Damaged {
                    what: HeaderFault::DataMissing { .. },
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("truncated"));
        assert!(err.to_string().contains("its tensors need"), "{err}");
    }

    #[test]
    fn truncated_header_is_damaged_at_every_cut() {
        let bytes = tiny_gguf();
        for cut in 4..bytes.len() - 16 {
            let f = write(&bytes[..cut]);
            assert!(
                matches!(GgufHeader::read(f.path()), Err(GgufError::Damaged { .. })),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn other_files_are_not_gguf() {
        let f = write(b"\x89PNG\r\n\x1a\n....");
        assert!(matches!(GgufHeader::read(f.path()), Err(GgufError::NotGguf { .. })));
        let empty = write(b"");
        assert!(matches!(GgufHeader::read(empty.path()), Err(GgufError::NotGguf { .. })));
    }

    /// The tiny GGUF with its tensor table replaced: `tensors` are (name, dims) of F32 tensors at offset 0.
    fn with_tensors(tensors: &[(&str, &[u64])]) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes());
        for (name, dims) in tensors {
            string(&mut out, name);
            out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
            for d in *dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&0u32.to_le_bytes());
            out.extend_from_slice(&0u64.to_le_bytes());
        }
        while !out.len().is_multiple_of(32) {
            out.push(0);
        }
        out.extend_from_slice(&[0u8; 16]);
        out
    }

    fn fault(bytes: &[u8]) -> String {
        let f = write(bytes);
        match GgufHeader::read(f.path()) {
            Err(err @ GgufError::Damaged { .. }) => err.to_string(),
            other => panic!("expected a damaged header, got {other:?}"),
        }
    }

    #[test]
    fn duplicate_keys_and_tensors_are_refused() {
        let mut bytes = tiny_gguf();
        // Rename the second key to the first's name (its length prefix too; the header gets 3 bytes shorter).
        let second = bytes.windows(23).position(|w| w == b"gemma3.embedding_length").unwrap();
        bytes[second - 8..second].copy_from_slice(&20u64.to_le_bytes());
        bytes.splice(second..second + 23, b"general.architecture".iter().copied());
        let e = fault(&bytes);
        assert!(e.contains("metadata key \"general.architecture\" appears twice"), "{e}");

        let e = fault(&with_tensors(&[("w", &[2]), ("v", &[1]), ("w", &[1])]));
        assert!(e.contains("tensor \"w\" appears twice"), "{e}");
    }

    #[test]
    fn element_counts_that_overflow_are_refused() {
        let e = fault(&with_tensors(&[("w", &[1]), ("huge", &[1 << 32, 1 << 32])]));
        assert!(
            e.contains("tensor \"huge\" claims dimensions [4294967296, 4294967296]"),
            "{e}"
        );
        let half = 1u64 << 63;
        let e = fault(&with_tensors(&[("a", &[half]), ("b", &[half])]));
        assert!(e.contains("overflow a 64-bit count at tensor \"b\""), "{e}");
        let ok = write(&with_tensors(&[("a", &[2, 2])]));
        assert_eq!(GgufHeader::read(ok.path()).unwrap().tensors[0].n_elements(), 4);
    }

    #[test]
    fn absurd_counts_do_not_allocate() {
        let mut bytes = b"GGUF".to_vec();
        bytes.extend_from_slice(&3u32.to_le_bytes());
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        let f = write(&bytes);
        assert!(matches!(GgufHeader::read(f.path()), Err(GgufError::Damaged { .. })));
    }
}
