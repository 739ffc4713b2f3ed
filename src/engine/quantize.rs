//! Quantising a language model GGUF with llama.cpp's `llama_model_quantize` (the sys crate; the safe crate does
//! not wrap it).
//!
//! Owns: mapping a [`QuantType`] to llama.cpp's file type and the one FFI call. It checks nothing about the files:
//! `commands::quantize` does that (exists, GGUF, not an mmproj, not already quantised) before calling here, and
//! writes to a temporary path it then renames. Must not print: llama.cpp's own logging follows `--verbose`.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use llama_cpp_sys_2 as sys;

use super::error::EngineError;
use super::logging;
use crate::settings::QuantType;

/// How to quantise.
#[derive(Debug, Clone)]
pub struct QuantizeOptions {
    pub quant_type: QuantType,
    /// Quantise tensors that are already quantised (loses quality).
    pub allow_requantize: bool,
    /// Worker threads (0 = llama.cpp's choice: all hardware threads).
    pub threads: i32,
    /// Show llama.cpp's own logs on stderr.
    pub verbose: bool,
}

/// llama.cpp's `llama_ftype` for a quantisation type.
pub fn ftype(t: QuantType) -> sys::llama_ftype {
    match t {
        QuantType::Q4_0 => sys::LLAMA_FTYPE_MOSTLY_Q4_0,
        QuantType::Q4_1 => sys::LLAMA_FTYPE_MOSTLY_Q4_1,
        QuantType::Q5_0 => sys::LLAMA_FTYPE_MOSTLY_Q5_0,
        QuantType::Q5_1 => sys::LLAMA_FTYPE_MOSTLY_Q5_1,
        QuantType::Q8_0 => sys::LLAMA_FTYPE_MOSTLY_Q8_0,
        QuantType::Q2K => sys::LLAMA_FTYPE_MOSTLY_Q2_K,
        QuantType::Q3KS => sys::LLAMA_FTYPE_MOSTLY_Q3_K_S,
        QuantType::Q3KM => sys::LLAMA_FTYPE_MOSTLY_Q3_K_M,
        QuantType::Q3KL => sys::LLAMA_FTYPE_MOSTLY_Q3_K_L,
        QuantType::Q4KS => sys::LLAMA_FTYPE_MOSTLY_Q4_K_S,
        QuantType::Q4KM => sys::LLAMA_FTYPE_MOSTLY_Q4_K_M,
        QuantType::Q5KS => sys::LLAMA_FTYPE_MOSTLY_Q5_K_S,
        QuantType::Q5KM => sys::LLAMA_FTYPE_MOSTLY_Q5_K_M,
        QuantType::Q6K => sys::LLAMA_FTYPE_MOSTLY_Q6_K,
        QuantType::F16 => sys::LLAMA_FTYPE_MOSTLY_F16,
        QuantType::Bf16 => sys::LLAMA_FTYPE_MOSTLY_BF16,
    }
}

fn c_path(path: &Path) -> Result<CString, EngineError> {
    CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| EngineError::Quantize {
        input: path.to_path_buf(),
        reason: "the path contains a NUL byte".into(),
    })
}

/// Quantises `input` into `output` (which llama.cpp creates or overwrites). Blocks until done.
pub fn quantize(input: &Path, output: &Path, options: &QuantizeOptions) -> Result<(), EngineError> {
    logging::configure(options.verbose);
    let _backend = super::model::backend();
    let inp = c_path(input)?;
    let out = c_path(output)?;
    // SAFETY: plain data returned by value.
    let mut params = unsafe { sys::llama_model_quantize_default_params() };
    params.ftype = ftype(options.quant_type);
    params.nthread = options.threads.max(0);
    params.allow_requantize = options.allow_requantize;
    logging::take_last_error();
    // SAFETY: both strings are NUL-terminated and outlive the call; params is a valid struct from llama.cpp's own
    // defaults with plain fields changed and its pointer fields left null.
    let rc = unsafe { sys::llama_model_quantize(inp.as_ptr(), out.as_ptr(), &params) };
    if rc != 0 {
        let mut reason = logging::take_last_error();
        if reason.is_empty() {
            reason = "llama.cpp gave no reason; run again with --verbose".into();
        }
        return Err(EngineError::Quantize {
            input: PathBuf::from(input),
            reason,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    /// Our file-type names (used by `medgemma info`) agree with the constants of the bindings.
    #[test]
    fn file_type_names_match_the_bindings() {
        for t in QuantType::value_variants() {
            assert_eq!(
                crate::model_info::file_type_name(u64::from(ftype(*t))),
                t.name(),
                "{t:?}"
            );
        }
    }
}
