//! `medgemma serve`'s library: a local HTTP API (OpenAI's chat completions and ollama's chat) over the engine's
//! scheduler, the same continuous batching as `batch --parallel`.
//!
//! Owns: [`request`] (what a request asks, the limits, images from data URLs or allowed paths), [`openai`] and
//! [`ollama`] (each API's fields and shapes), [`stop`] (stop strings), [`error`] (the error shape and statuses),
//! [`worker`] (the engine thread and its queue) and [`http`] (routes, keys, streaming). Must not: print answers on
//! stdout (the server's stdout is unused), or log prompt text or images.

pub mod error;
pub mod http;
pub mod ollama;
pub mod openai;
pub mod request;
pub mod stop;
pub mod worker;

/// Writes one line to stderr, ignoring a closed stderr: a server must not fall over because its log reader went
/// away (`eprintln!` would panic).
pub fn write_log(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "medgemma: {args}");
}

/// `log!("...", args)`: [`write_log`] with `format_args!`.
macro_rules! log {
    ($($arg:tt)*) => { $crate::server::write_log(format_args!($($arg)*)) };
}
pub(crate) use log;
