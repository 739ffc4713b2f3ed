//! Routes llama.cpp, ggml and mtmd logging: silent by default, to stderr with `--verbose`. Keeps the last error
//! line either way, and while a [`LoadCapture`] is alive collects every error line, so that a failure llama.cpp only
//! reports through its log (a model, projector or context it refuses) can still be explained in our error.
//!
//! Must not: print anything without `--verbose`, or be given prompt text (only loads are captured).

use std::ffi::CStr;
use std::io::Write;
use std::os::raw::{c_char, c_void};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once};

static VERBOSE: AtomicBool = AtomicBool::new(false);
static INSTALL: Once = Once::new();
static LAST_ERROR: Mutex<String> = Mutex::new(String::new());
/// Error lines logged while a [`LoadCapture`] is alive; `None` when no capture is running.
static CAPTURED: Mutex<Option<Vec<String>>> = Mutex::new(None);
/// The most error lines a capture keeps (the last ones: llama.cpp's reason comes just before it gives up).
const CAPTURE_LINES: usize = 16;
/// The longest reason put into an error message, in characters.
const REASON_CHARS: usize = 300;

extern "C" fn log_to_stderr(level: llama_cpp_sys_2::ggml_log_level, text: *const c_char, _data: *mut c_void) {
    if text.is_null() {
        return;
    }
    // SAFETY: llama.cpp passes a valid NUL-terminated string for the duration of the call.
    let text = unsafe { CStr::from_ptr(text) };
    if level == llama_cpp_sys_2::GGML_LOG_LEVEL_ERROR {
        let line = text.to_string_lossy().trim().to_string();
        if let Ok(mut captured) = CAPTURED.lock() {
            if let Some(lines) = captured.as_mut() {
                if lines.len() == CAPTURE_LINES {
                    lines.remove(0);
                }
                lines.push(line.clone());
            }
        }
        if let Ok(mut last) = LAST_ERROR.lock() {
            *last = line;
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

/// Collects llama.cpp's error lines from its creation until [`LoadCapture::reason`] or drop. Wrap only loads in it
/// (model, projector, context): their log never holds prompt text.
pub(super) struct LoadCapture(());

impl LoadCapture {
    pub(super) fn start() -> LoadCapture {
        if let Ok(mut captured) = CAPTURED.lock() {
            *captured = Some(Vec::new());
        }
        LoadCapture(())
    }

    /// Ends the capture; llama.cpp's reason for the failure, cleaned of function names and generic "failed to
    /// load" lines, or empty when it logged none.
    pub(super) fn reason(self) -> String {
        let lines = CAPTURED.lock().ok().and_then(|mut c| c.take()).unwrap_or_default();
        reason_from(&lines)
    }
}

impl Drop for LoadCapture {
    fn drop(&mut self) {
        if let Ok(mut captured) = CAPTURED.lock() {
            *captured = None;
        }
    }
}

/// The reason in llama.cpp's error lines: the specific ones, cleaned and joined, at most [`REASON_CHARS`] long.
fn reason_from(lines: &[String]) -> String {
    let mut kept: Vec<String> = Vec::new();
    for line in lines {
        let line = clean(line);
        if line.is_empty() || is_generic(&line) || kept.contains(&line) {
            continue;
        }
        kept.push(line);
    }
    let mut reason = kept.join("; ");
    if reason.chars().count() > REASON_CHARS {
        // The last lines are the most specific: keep the end.
        let skip = reason.chars().count() - (REASON_CHARS - 3);
        reason = format!("...{}", reason.chars().skip(skip).collect::<String>());
    }
    reason
}

/// Strips the prefixes llama.cpp puts before its reasons (`llama_model_load: error loading model: `,
/// `clip_init: failed to load model 'FILE': operator(): `) and collapses runs of spaces.
fn clean(line: &str) -> String {
    let mut s = line.trim();
    loop {
        let before = s;
        if let Some(rest) = strip_function_name(s) {
            s = rest;
        }
        for phrase in ["error loading model: ", "error: "] {
            if let Some(rest) = s.strip_prefix(phrase) {
                s = rest;
            }
        }
        if s.starts_with("failed to load model '") {
            if let Some(at) = s.find("': ") {
                s = &s[at + 3..];
            }
        }
        if s == before {
            break;
        }
    }
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `rest` when `s` starts with a C function name and a colon (`check_tensor_dims: rest`, `operator(): rest`).
fn strip_function_name(s: &str) -> Option<&str> {
    let (name, rest) = s.split_once(": ")?;
    let name = name.strip_suffix("()").unwrap_or(name);
    let is_ident = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    is_ident.then_some(rest)
}

/// A line that only says that loading failed ("failed to load model", "Failed to load CLIP model from FILE").
fn is_generic(line: &str) -> bool {
    let lower = line.to_ascii_lowercase();
    lower.starts_with("failed to") && !lower.contains(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// Real llama.cpp output for a model whose blk.0.attn_q.weight was renamed.
    #[test]
    fn missing_tensor_reason() {
        let r = reason_from(&lines(&[
            "llama_model_load: error loading model: check_tensor_dims: tensor 'blk.0.attn_q.weight' not found",
            "llama_model_load_from_file_impl: failed to load model",
        ]));
        assert_eq!(r, "tensor 'blk.0.attn_q.weight' not found");
    }

    #[test]
    fn wrong_shape_reason_collapses_spaces() {
        let r = reason_from(&lines(&[
            "llama_model_load: error loading model: check_tensor_dims: tensor 'blk.0.attn_q.weight' has wrong shape; expected     64,     64, got    128,     32,      1,      1",
            "llama_model_load_from_file_impl: failed to load model",
        ]));
        assert_eq!(
            r,
            "tensor 'blk.0.attn_q.weight' has wrong shape; expected 64, 64, got 128, 32, 1, 1"
        );
    }

    #[test]
    fn missing_key_reason() {
        let r = reason_from(&lines(&[
            "llama_model_load: error loading model: error loading model hyperparameters: key not found in model: gemma3.block_count",
            "llama_model_load_from_file_impl: failed to load model",
        ]));
        assert_eq!(
            r,
            "error loading model hyperparameters: key not found in model: gemma3.block_count"
        );
    }

    /// Real clip/mtmd output for a projector without mm.input_projection.weight.
    #[test]
    fn clip_reason_drops_file_and_generic_line() {
        let r = reason_from(&lines(&[
            "clip_init: failed to load model '/tmp/x/mm.gguf': operator(): unable to find tensor mm.input_projection.weight",
            "mtmd_init_from_file: error: Failed to load CLIP model from /tmp/x/mm.gguf",
        ]));
        assert_eq!(r, "unable to find tensor mm.input_projection.weight");
    }

    #[test]
    fn only_generic_lines_give_no_reason() {
        assert_eq!(
            reason_from(&lines(&["llama_model_load_from_file_impl: failed to load model"])),
            ""
        );
        assert_eq!(reason_from(&[]), "");
    }

    #[test]
    fn long_reasons_keep_their_end() {
        let long = format!("tensor '{}' not found", "x".repeat(1000));
        let r = reason_from(&[long]);
        assert_eq!(r.chars().count(), REASON_CHARS);
        assert!(r.starts_with("...") && r.ends_with("' not found"));
    }
}
