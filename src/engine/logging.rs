//! Routes llama.cpp, ggml and mtmd logging: silent by default, to stderr with `--verbose`.

use std::ffi::CStr;
use std::io::Write;
use std::os::raw::{c_char, c_void};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;

static VERBOSE: AtomicBool = AtomicBool::new(false);
static INSTALL: Once = Once::new();

extern "C" fn log_to_stderr(_level: llama_cpp_sys_2::ggml_log_level, text: *const c_char, _data: *mut c_void) {
    if !VERBOSE.load(Ordering::Relaxed) || text.is_null() {
        return;
    }
    // SAFETY: llama.cpp passes a valid NUL-terminated string for the duration of the call.
    let text = unsafe { CStr::from_ptr(text) };
    let _ = std::io::stderr().write_all(text.to_bytes());
}

/// Installs the log callback (once per process) and sets whether llama.cpp's messages are shown.
pub fn configure(verbose: bool) {
    VERBOSE.store(verbose, Ordering::Relaxed);
    INSTALL.call_once(|| {
        // SAFETY: the callback is a plain function valid for the whole process; no user data is passed.
        unsafe {
            llama_cpp_sys_2::llama_log_set(Some(log_to_stderr), std::ptr::null_mut());
            llama_cpp_sys_2::mtmd_helper_log_set(Some(log_to_stderr), std::ptr::null_mut());
        }
    });
}
