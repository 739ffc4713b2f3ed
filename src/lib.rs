//! medgemma: run Google's MedGemma models locally from GGUF files through llama.cpp.
//!
//! For research only: not for clinical diagnosis. The binary (`src/main.rs`) only parses arguments and calls
//! [`commands`]; everything that touches llama.cpp lives in [`engine`]; prompt building ([`prompt`]) and the
//! other pure parts are unit tested without a model. The library's only public surface is what the binary needs:
//! [`Cli`] and [`run`]; everything else is crate-private, so the compiler reports what nothing uses.

mod batch;
mod chat;
mod cli;
mod commands;
mod conversation;
mod dicom;
mod engine;
mod eval;
mod files;
#[cfg(test)]
mod fuzz;
mod gguf;
mod gguf_check;
mod gpu_plan;
mod hub;
mod image_cache;
mod image_input;
mod interrupt;
mod model_info;
mod output_guard;
mod prompt;
mod prompt_images;
mod quant_eval;
mod sandbox;
mod server;
mod settings;
mod structured;
mod terminal;
mod thinking;
mod utf8_stream;

pub use cli::Cli;

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    sandbox::set_mode(cli.sandbox_mode());
    if let (sandbox::Mode::Required, Some(name)) = (cli.sandbox_mode(), cli.command.unconfined()) {
        anyhow::bail!(
            "--sandbox: `medgemma {name}` is not sandboxed (it needs the network or the whole cache); run it without \
             --sandbox"
        );
    }
    match cli.command {
        cli::Command::Run(args) => commands::run::run(args),
        cli::Command::Chat(args) => commands::chat::run(args),
        cli::Command::Batch(args) => commands::batch::run(args),
        cli::Command::Serve(args) => commands::serve::run(args),
        cli::Command::Info(args) => commands::info::run(args),
        cli::Command::Quantize(args) => commands::quantize::run(args),
        cli::Command::EvalQuant(args) => commands::eval_quant::run(args),
        cli::Command::Eval(args) => commands::eval::run(args),
        cli::Command::Bench(args) => commands::bench::run(args),
        cli::Command::Pull(args) => commands::pull::run(args),
        cli::Command::List(args) => commands::list::run(args),
        cli::Command::Rm(args) => commands::rm::run(args),
        cli::Command::Cache(args) => commands::cache::run(args),
        cli::Command::Doctor(args) => commands::doctor::run(args),
        cli::Command::Preview(args) => commands::preview::run(args),
        cli::Command::SandboxProof(args) => commands::doctor::proof_child(args),
        cli::Command::AmxProbe => commands::doctor::amx_probe_child(),
    }
}
