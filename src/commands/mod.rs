//! One file per subcommand; each is a short orchestration of library parts.

pub mod batch;
pub mod chat;
pub mod info;
pub mod quantize;
pub mod run;
