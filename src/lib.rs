//! medgemma: run Google's MedGemma models locally from GGUF files through llama.cpp.
//!
//! For research only: not for clinical diagnosis. The binary (`src/main.rs`) only parses arguments and calls
//! [`commands`]; everything that touches llama.cpp lives in [`engine`]; prompt building ([`prompt`]) and the
//! other pure parts are unit tested without a model.

pub mod batch;
pub mod chat;
pub mod cli;
pub mod commands;
pub mod conversation;
pub mod engine;
pub mod files;
pub mod gguf;
pub mod hub;
pub mod image_input;
pub mod interrupt;
pub mod model_info;
pub mod prompt;
pub mod quant_eval;
pub mod settings;
pub mod terminal;
pub mod thinking;
pub mod utf8_stream;

/// Runs a parsed command line.
pub fn run(cli: cli::Cli) -> anyhow::Result<()> {
    match cli.command {
        cli::Command::Run(args) => commands::run::run(args),
        cli::Command::Chat(args) => commands::chat::run(args),
        cli::Command::Batch(args) => commands::batch::run(args),
        cli::Command::Info(args) => commands::info::run(args),
        cli::Command::Quantize(args) => commands::quantize::run(args),
        cli::Command::EvalQuant(args) => commands::eval_quant::run(args),
        cli::Command::Bench(args) => commands::bench::run(args),
        cli::Command::Pull(args) => commands::pull::run(args),
        cli::Command::List(args) => commands::list::run(args),
        cli::Command::Rm(args) => commands::rm::run(args),
    }
}
