//! The tensor table as `gguf.cpp` demands it, and the shapes an architecture needs (`Tensors`).

use std::collections::HashMap;

use super::{Fault, TensorFault, MAX_DIMS, MAX_NAME};
use crate::gguf::{ggml_type_block, ggml_type_name, GgufHeader, GgufTensorInfo};

pub(super) fn tensor_fault(t: &GgufTensorInfo, what: TensorFault) -> Fault {
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
    if !ne0.is_multiple_of(block) {
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
pub(super) fn check_tensor_table(h: &GgufHeader) -> Result<(), Fault> {
    let alignment = h.alignment();
    let mut expected = 0u64;
    let mut previous: Option<&GgufTensorInfo> = None;
    for t in &h.tensors {
        let bytes = tensor_bytes(t)?;
        if !t.offset.is_multiple_of(alignment) {
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
pub(super) struct Tensors<'a> {
    pub(super) by_name: HashMap<&'a str, &'a GgufTensorInfo>,
    arch: &'static str,
}

impl<'a> Tensors<'a> {
    pub(super) fn new(h: &'a GgufHeader, arch: &'static str) -> Tensors<'a> {
        Tensors {
            by_name: h.tensors.iter().map(|t| (t.name.as_str(), t)).collect(),
            arch,
        }
    }

    pub(super) fn has(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// The tensor `name` with the dimensions `dims` (ggml order; trailing 1s are ignored, as llama.cpp does).
    pub(super) fn shaped(&self, name: &str, dims: &[u64], required: bool) -> Result<Option<&'a GgufTensorInfo>, Fault> {
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

    pub(super) fn need(&self, name: &str, dims: &[u64]) -> Result<(), Fault> {
        self.shaped(name, dims, true).map(|_| ())
    }

    pub(super) fn allow(&self, name: &str, dims: &[u64]) -> Result<(), Fault> {
        self.shaped(name, dims, false).map(|_| ())
    }
}

fn same_shape(found: &[u64], expected: &[u64]) -> bool {
    (0..MAX_DIMS.max(found.len())).all(|i| found.get(i).unwrap_or(&1) == expected.get(i).unwrap_or(&1))
}
