//! One file per subcommand; each is a short orchestration of library parts.

pub mod batch;
pub mod bench;
pub mod cache;
pub mod chat;
pub mod doctor;
pub mod eval;
pub mod eval_quant;
pub mod eval_quant_vision;
pub mod eval_run;
pub mod info;
pub mod list;
pub mod preview;
pub mod pull;
pub mod quantize;
pub mod rm;
pub mod run;
pub mod serve;

/// The context length `model` was trained for, from its GGUF header; `None` when the header does not say or cannot be
/// read (loading the model then reports what is wrong with the file).
pub(crate) fn trained_length(model: &std::path::Path) -> Option<u64> {
    let header = crate::gguf::GgufHeader::read(model).ok()?;
    crate::model_info::ModelInfo::from_header(&header).context_length
}

/// The model files of a command that writes results (batch, eval), resolved and checked before anything is
/// written: the model exists, and `-c/--ctx-size` is within its trained length.
pub(crate) fn resolve_for_results(
    model: &crate::cli::ModelArgs,
    context: &crate::cli::ContextArgs,
) -> anyhow::Result<crate::hub::ModelFiles> {
    let files = model.resolve()?;
    if !files.model.exists() {
        return Err(crate::engine::EngineError::ModelMissing {
            path: files.model.clone(),
        }
        .into());
    }
    check_ctx_size(&files.model, context)?;
    Ok(files)
}

/// The KV cache of a context of `parallel` sequences of `-c` positions each (or the default context size), for
/// the GPU fit; `swa_full` when the command keeps whole caches for prefix reuse (chat, batch, serve, eval).
pub(crate) fn kv_cache(
    model: &std::path::Path,
    context: &crate::settings::ContextSettings,
    parallel: u32,
    swa_full: bool,
) -> crate::gpu_plan::KvCache {
    use crate::settings::CacheType;
    crate::gpu_plan::KvCache {
        positions: context
            .ctx_size
            .map_or_else(|| trained_length(model).unwrap_or(8192).min(8192), u64::from),
        sequences: u64::from(parallel.max(1)),
        swa_full,
        ubatch: u64::from(context.batch_size.max(512)),
        bytes_per_32: match context.cache_type {
            CacheType::F16 => 64,
            CacheType::F32 => 128,
            CacheType::Q8_0 => 34,
        },
    }
}

/// Refuses `-c/--ctx-size` beyond the model's trained length unless `--allow-long-context` (run, chat, batch),
/// before anything is loaded or written.
pub(crate) fn check_ctx_size(model: &std::path::Path, context: &crate::cli::ContextArgs) -> anyhow::Result<()> {
    if let Some(n) = context.ctx_size {
        crate::settings::check_trained_length(
            u64::from(n),
            trained_length(model),
            context.allow_long_context,
            || format!("-c/--ctx-size {n}"),
            "-c/--ctx-size",
        )?;
    }
    Ok(())
}

/// Prints a command's report on stdout: one pretty JSON object with `--json`, else the table `write_table` draws.
pub(crate) fn print_report<R: serde::Serialize>(
    json: bool,
    report: &R,
    write_table: fn(&mut dyn std::io::Write, &R) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, report)?;
        writeln!(out)?;
    } else {
        write_table(&mut out, report)?;
    }
    out.flush()?;
    Ok(())
}

/// What to add when a prompt has images or series but no vision projector was given.
pub(crate) const NEEDS_MMPROJ: &str =
    "images and series need a vision projector: add --mmproj MMPROJ.gguf (the mmproj \
     file published with the model), or use a multimodal model by name (e.g. -m medgemma-4b-it)";
