//! Routes llama.cpp, ggml and mtmd logging: silent by default, to stderr with `--verbose`. Keeps the last error
//! line either way, so that a failure llama.cpp only reports through its log can still be explained.

use std::ffi::CStr;
use std::io::Write;
use std::os::raw::{c_char, c_void};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once};

static VERBOSE: AtomicBool = AtomicBool::new(false);
static INSTALL: Once = Once::new();
static LAST_ERROR: Mutex<String> = Mutex::new(String::new());

extern "C" fn log_to_stderr(level: llama_cpp_sys_2::ggml_log_level, text: *const c_char, _data: *mut c_void) {
    if text.is_null() {
        return;
    }
    // SAFETY: llama.cpp passes a valid NUL-terminated string for the duration of the call.
    let text = unsafe { CStr::from_ptr(text) };
    if level == llama_cpp_sys_2::GGML_LOG_LEVEL_ERROR {
        if let Ok(mut last) = LAST_ERROR.lock() {
            *last = text.to_string_lossy().trim().to_string();
        }
    }
    if VERBOSE.load(Ordering::Relaxed) {
        let _ = std::io::stderr().write_all(text.to_bytes());
    }
}

/// Takes the last error line llama.cpp logged since the previous call (empty when none).
pub fn take_last_error() -> String {
    LAST_ERROR
        .lock()
        .map(|mut s| std::mem::take(&mut *s))
        .unwrap_or_default()
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
