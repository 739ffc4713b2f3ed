//! Quantising a vision projector (mmproj) GGUF. llama.cpp's quantiser only loads language models, so the file is
//! rewritten here: metadata copied as is (with the new `general.file_type`), each weight matrix whose rows fit the
//! type's block converted with ggml's own row quantiser (`ggml_quantize_chunk`), every other tensor kept as it was.
//!
//! Kept wide, and reported: 1-D tensors (norms, biases) and the patch-embedding convolution and position
//! embeddings keep their type; the Gemma 3 projector matrix `mm.input_projection.weight` (llama.cpp transposes it
//! in the graph, which a quantised tensor does not support) and matrices whose row length is not a multiple of the
//! block (SigLIP's FFN down projection has rows of 4304, not a multiple of 32) become F16 when they are F32, as
//! our converter writes them. K-quants need rows of 256, which no SigLIP matrix has.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use llama_cpp_sys_2 as sys;

use super::error::EngineError;
use super::quantize::{ftype, QuantizeOptions};
use crate::gguf::{encode_kv_u32, ggml_type_name, GgufHeader, RetypedLayout};
use crate::settings::QuantType;

/// Tensors that stay as they are whatever the type, with the reason.
const KEEP_WIDE: [(&str, &str); 3] = [
    ("v.patch_embd.weight", "patch-embedding convolution"),
    ("v.position_embd.weight", "position embeddings"),
    (
        "mm.input_projection.weight",
        "llama.cpp transposes the projector matrix, which needs a float type",
    ),
];

const F32: u32 = 0;
const F16: u32 = 1;
const BF16: u32 = 30;

/// What quantising an mmproj did.
#[derive(Debug, Clone)]
pub struct MmprojQuantized {
    pub converted: usize,
    /// Tensors not converted to the asked type, with the reason (and "F16" when they were narrowed to it).
    pub kept: Vec<(String, String)>,
}

/// Why a tensor of an mmproj cannot be converted; the text becomes the reason of [`EngineError::Quantize`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum MmprojTypeError {
    #[error(
        "{quant} needs rows that are multiples of 256, and no matrix of a SigLIP vision tower has them (1152, 4304); \
         use q8_0, q5_0, q5_1, q4_0, q4_1, f16 or bf16 for an mmproj"
    )]
    RowsTooShort { quant: String },
    #[error("ggml cannot convert {0} to f32")]
    NoConversionToF32(String),
}

/// The ggml tensor type an mmproj is converted to, or why the type does not suit a vision tower.
fn target_type(t: QuantType) -> Result<(u32, u64), MmprojTypeError> {
    Ok(match t {
        QuantType::F16 => (F16, 1),
        QuantType::Bf16 => (BF16, 1),
        QuantType::Q4_0 => (2, 32),
        QuantType::Q4_1 => (3, 32),
        QuantType::Q5_0 => (6, 32),
        QuantType::Q5_1 => (7, 32),
        QuantType::Q8_0 => (8, 32),
        _ => return Err(MmprojTypeError::RowsTooShort { quant: t.name() }),
    })
}

/// The type a tensor gets, and why when it is not `target`. Matrices that cannot take `target` (the projector,
/// rows not a multiple of the block) go to F16 when they are F32, as llama.cpp's and our converter do; everything
/// else that cannot be converted keeps its type.
fn new_type(
    name: &str,
    dims: &[u64],
    ty: u32,
    block: u64,
    target: u32,
    allow_requantize: bool,
) -> (u32, Option<String>) {
    let float_target = target == F16 || target == BF16;
    let narrow_or_keep = |why: String| -> (u32, Option<String>) {
        if ty == F32 && !float_target {
            (F16, Some(format!("{why}; F16")))
        } else {
            (ty, Some(why))
        }
    };
    if let Some((_, why)) = KEEP_WIDE.iter().find(|(n, _)| *n == name) {
        if name == "mm.input_projection.weight" && !float_target {
            return narrow_or_keep((*why).into());
        }
        if name != "mm.input_projection.weight" {
            return (ty, Some((*why).into()));
        }
    }
    if dims.len() != 2 {
        let why = if dims.len() == 1 {
            "1-D: norms and biases".into()
        } else {
            format!("{}-D", dims.len())
        };
        return (ty, Some(why));
    }
    if ty == target {
        return (ty, Some("already of that type".into()));
    }
    if ![F32, F16, BF16].contains(&ty) && !allow_requantize {
        return (ty, Some(format!("already quantised ({})", ggml_type_name(ty))));
    }
    if !dims[0].is_multiple_of(block) {
        return narrow_or_keep(format!("rows of {} are not a multiple of {block}", dims[0]));
    }
    (target, None)
}

/// Rows of any ggml type to f32.
fn to_f32(ty: u32, raw: &[u8], n: usize) -> Result<Vec<f32>, MmprojTypeError> {
    let mut out = vec![0f32; n];
    if ty == F32 {
        for (o, c) in out.iter_mut().zip(raw.chunks_exact(4)) {
            *o = f32::from_le_bytes(c.try_into().expect("4 bytes"));
        }
        return Ok(out);
    }
    // SAFETY: the traits table is static in ggml; to_float reads `n` elements of `ty` from `raw`, whose length
    // was computed from the same type (`GgufTensorInfo::n_bytes`), and writes `n` floats into `out`.
    unsafe {
        let traits = sys::ggml_get_type_traits(ty as sys::ggml_type);
        let to_float = traits
            .as_ref()
            .and_then(|t| t.to_float)
            .ok_or_else(|| MmprojTypeError::NoConversionToF32(ggml_type_name(ty)))?;
        to_float(raw.as_ptr().cast(), out.as_mut_ptr(), n as i64);
    }
    Ok(out)
}

/// Converts f32 rows to `target` with ggml's row quantiser, rows split over `threads`.
fn quantize_rows(target: u32, src: &[f32], n_per_row: usize, row_bytes: usize, threads: usize) -> Vec<u8> {
    let n_rows = src.len() / n_per_row;
    let mut dst = vec![0u8; n_rows * row_bytes];
    let per_thread = n_rows.div_ceil(threads.max(1)).max(1);
    std::thread::scope(|scope| {
        for (s, d) in src
            .chunks(per_thread * n_per_row)
            .zip(dst.chunks_mut(per_thread * row_bytes))
        {
            scope.spawn(move || {
                let rows = s.len() / n_per_row;
                // SAFETY: `s` holds `rows` rows of `n_per_row` floats and `d` exactly `rows` rows of the target
                // type (row size from ggml_row_size); start 0 addresses both from their beginnings; no imatrix.
                let written = unsafe {
                    sys::ggml_quantize_chunk(
                        target as sys::ggml_type,
                        s.as_ptr(),
                        d.as_mut_ptr().cast(),
                        0,
                        rows as i64,
                        n_per_row as i64,
                        std::ptr::null(),
                    )
                };
                debug_assert_eq!(written, d.len());
            });
        }
    });
    dst
}

/// Quantises the mmproj `input` (whose header is `header`) into `output`.
pub fn quantize_mmproj(
    input: &Path,
    header: &GgufHeader,
    output: &Path,
    options: &QuantizeOptions,
) -> Result<MmprojQuantized, EngineError> {
    let err = |reason: String| EngineError::Quantize {
        input: input.to_path_buf(),
        reason,
    };
    let io = |what: &str, e: std::io::Error| err(format!("{what}: {e}"));
    let (target, block) = target_type(options.quant_type).map_err(|e| err(e.to_string()))?;
    // SAFETY: initialises ggml's lookup tables for the types (needed by some quantisers); idempotent.
    unsafe {
        sys::ggml_quantize_init(target as sys::ggml_type);
        sys::ggml_quantize_init(F16 as sys::ggml_type);
    }

    let mut types = Vec::with_capacity(header.tensors.len());
    let mut kept = Vec::new();
    for t in &header.tensors {
        let (ty, why) = new_type(&t.name, &t.dims, t.ggml_type, block, target, options.allow_requantize);
        if let Some(why) = why {
            kept.push((t.name.clone(), why));
        }
        types.push(ty);
    }
    let converted = types
        .iter()
        .zip(&header.tensors)
        .filter(|(&ty, t)| ty == target && t.ggml_type != target)
        .count();

    let mut src = crate::files::open_regular(input).map_err(|e| io("cannot open the input", e))?;
    let file_type = encode_kv_u32("general.file_type", ftype(options.quant_type) as u32);
    let mut kv = |span: &crate::gguf::KvSpan| -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0u8; (span.end - span.start) as usize];
        src.seek(SeekFrom::Start(span.start))?;
        src.read_exact(&mut buf)?;
        Ok(buf)
    };
    let layout = RetypedLayout::plan(header, &mut kv, &[("general.file_type", file_type)], &types)
        .map_err(|e| io("cannot read the metadata", e))?;

    let out = File::create(output).map_err(|e| io("cannot write the output", e))?;
    let mut out = BufWriter::with_capacity(1 << 22, out);
    let write_err = |e: std::io::Error| err(format!("cannot write the output: {e}"));
    out.write_all(&layout.header).map_err(write_err)?;
    let mut written = 0u64;
    for (i, t) in header.tensors.iter().enumerate() {
        let pad = layout.offsets[i] - written;
        out.write_all(&vec![0u8; pad as usize]).map_err(write_err)?;
        let n_bytes = t
            .n_bytes()
            .ok_or_else(|| err(format!("tensor {}: unknown type", t.name)))?;
        let mut raw = vec![0u8; n_bytes as usize];
        src.seek(SeekFrom::Start(header.data_offset + t.offset))
            .and_then(|_| src.read_exact(&mut raw))
            .map_err(|e| io(&format!("cannot read tensor {}", t.name), e))?;
        let data = if types[i] == t.ggml_type {
            raw
        } else {
            let n = t.n_elements() as usize;
            let f = to_f32(t.ggml_type, &raw, n).map_err(|e| err(e.to_string()))?;
            let n_per_row = t.dims[0] as usize;
            // SAFETY: a pure size computation.
            let row_bytes = unsafe { sys::ggml_row_size(types[i] as sys::ggml_type, n_per_row as i64) };
            quantize_rows(types[i], &f, n_per_row, row_bytes, options.threads.max(1) as usize)
        };
        if data.len() as u64 != layout.sizes[i] {
            return Err(err(format!(
                "tensor {}: {} bytes converted, {} expected",
                t.name,
                data.len(),
                layout.sizes[i]
            )));
        }
        out.write_all(&data).map_err(write_err)?;
        written = layout.offsets[i] + layout.sizes[i];
    }
    out.flush().map_err(write_err)?;
    out.get_ref().sync_all().map_err(write_err)?;
    Ok(MmprojQuantized { converted, kept })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_tensors_change_type() {
        let q8 = |name: &str, dims: &[u64], ty: u32| new_type(name, dims, ty, 32, 8, false);
        assert_eq!(q8("v.blk.0.attn_q.weight", &[1152, 1152], F16), (8, None));
        assert_eq!(q8("v.blk.0.ffn_up.weight", &[1152, 4304], F32), (8, None));
        let (t, why) = q8("v.blk.0.ffn_down.weight", &[4304, 1152], F32);
        assert_eq!(t, F16);
        assert!(why.unwrap().contains("4304"));
        assert_eq!(q8("v.blk.0.ffn_down.weight", &[4304, 1152], F16).0, F16);
        assert_eq!(q8("v.blk.0.ln1.weight", &[1152], F32).0, F32);
        let (t, why) = q8("mm.input_projection.weight", &[2560, 1152], F32);
        assert_eq!(t, F16);
        assert!(why.unwrap().contains("transposes"));
        assert_eq!(q8("v.patch_embd.weight", &[14, 14, 3, 1152], F32).0, F32);
        assert_eq!(q8("v.position_embd.weight", &[1152, 4096], F32).0, F32);
        assert!(q8("v.blk.0.attn_q.weight", &[1152, 1152], 2)
            .1
            .unwrap()
            .contains("already quantised"));
        assert_eq!(
            new_type("v.blk.0.attn_q.weight", &[1152, 1152], 2, 32, 8, true),
            (8, None)
        );
        // Float targets take the projector and the odd rows too.
        assert_eq!(
            new_type("mm.input_projection.weight", &[2560, 1152], F32, 1, BF16, false),
            (BF16, None)
        );
        assert_eq!(
            new_type("v.blk.0.ffn_down.weight", &[4304, 1152], F32, 1, F16, false),
            (F16, None)
        );
    }

    #[test]
    fn k_quants_are_refused_for_a_vision_tower() {
        let err = target_type(QuantType::Q4KM).unwrap_err();
        assert_eq!(err, MmprojTypeError::RowsTooShort { quant: "Q4_K_M".into() });
        assert!(
            err.to_string()
                .starts_with("Q4_K_M needs rows that are multiples of 256"),
            "{err}"
        );
        assert_eq!(target_type(QuantType::Q8_0).unwrap(), (8, 32));
    }
}
