//! One file per subcommand; each is a short orchestration of library parts.

pub mod batch;
pub mod chat;
pub mod info;
pub mod list;
pub mod pull;
pub mod quantize;
pub mod rm;
pub mod run;
