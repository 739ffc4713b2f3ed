//! One file per subcommand; each is a short orchestration of library parts.

pub mod batch;
pub mod bench;
pub mod chat;
pub mod eval_quant;
pub mod eval_quant_vision;
pub mod info;
pub mod list;
pub mod pull;
pub mod quantize;
pub mod rm;
pub mod run;
