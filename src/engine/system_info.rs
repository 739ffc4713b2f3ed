//! What this build of llama.cpp is: its own system-info line (the CPU features ggml was compiled with), the
//! backends registered (CPU, and any GPU backend compiled in), and whether it can offload to a GPU. For `doctor`.
//!
//! Must not: load a model, start threads, or print.

use std::ffi::CStr;

/// The llama.cpp bindings this binary is built with (the versions pinned in Cargo.toml).
pub const BINDINGS: &str = "llama-cpp-2 0.1.160, llama-cpp-sys-2 0.1.161";

/// Facts about the compiled llama.cpp.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SystemInfo {
    /// `llama_print_system_info()`: e.g. "CPU : SSE3 = 1 | AVX = 1 | ... | OPENMP = 1 | REPACK = 1 |".
    pub system_info: String,
    /// The registered ggml backends, e.g. ["CPU"] (a GPU build adds "CUDA", "Vulkan" or "Metal").
    pub backends: Vec<String>,
    /// Whether llama.cpp can offload layers to a GPU in this build.
    pub gpu_offload: bool,
    /// Whether ggml's CPU kernels include AMX (INT8) code.
    pub amx_compiled: bool,
}

/// Reads the facts; cheap, and safe before any model is loaded.
pub fn system_info() -> SystemInfo {
    // SAFETY: these calls take no arguments beyond indices below the count llama.cpp reports, and return static
    // strings (or null, handled) owned by llama.cpp for the whole process.
    unsafe {
        let text = llama_cpp_sys_2::llama_print_system_info();
        let system_info = if text.is_null() {
            String::new()
        } else {
            CStr::from_ptr(text).to_string_lossy().trim().to_string()
        };
        let backends = (0..llama_cpp_sys_2::ggml_backend_reg_count())
            .filter_map(|i| {
                let reg = llama_cpp_sys_2::ggml_backend_reg_get(i);
                let name = llama_cpp_sys_2::ggml_backend_reg_name(reg);
                (!name.is_null()).then(|| CStr::from_ptr(name).to_string_lossy().into_owned())
            })
            .collect();
        SystemInfo {
            system_info,
            backends,
            gpu_offload: llama_cpp_sys_2::llama_supports_gpu_offload(),
            amx_compiled: llama_cpp_sys_2::ggml_cpu_has_amx_int8() != 0,
        }
    }
}
