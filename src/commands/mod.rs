//! One file per subcommand; each is a short orchestration of library parts.

pub mod run;
