//! `medgemma eval-quant`: scores a text with the reference model and each quantised model, chunk by chunk, and
//! reports perplexity, KL divergence and top-1 agreement (the measures of llama.cpp's perplexity tool).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use indicatif::ProgressBar;
use serde::Serialize;

use crate::cli::EvalQuantArgs;
use crate::engine::{Engine, LoadOptions, Scorer};
use crate::gguf::GgufHeader;
use crate::model_info::file_type_name;
use crate::quant_eval::{chunks, log_softmax, Comparison, Likelihood, Perplexity, QuantQuality};
use crate::settings::{default_threads, ContextSettings};

#[derive(Serialize)]
struct Report {
    text: PathBuf,
    ctx_size: u32,
    chunks: usize,
    scored_positions: usize,
    base: BaseReport,
    quants: Vec<QuantReport>,
}

#[derive(Serialize)]
struct BaseReport {
    file: PathBuf,
    file_type: String,
    perplexity: Perplexity,
}

#[derive(Serialize)]
struct QuantReport {
    file: PathBuf,
    file_type: String,
    #[serde(flatten)]
    quality: QuantQuality,
}

fn load(path: &Path, threads: i32, verbose: bool) -> Result<Engine> {
    Ok(Engine::load(&LoadOptions {
        model: path.to_path_buf(),
        mmproj: None,
        // Measured on the CPU: the reference for every quantisation is the same arithmetic.
        gpu: crate::engine::GpuOptions {
            layers: crate::gpu_plan::GpuLayers::Count(0),
            ..Default::default()
        },
        threads,
        verbose,
        // Projectors are being compared: every image is encoded by the one under test.
        image_cache: None,
    })?)
}

pub(super) fn file_type(path: &Path) -> String {
    GgufHeader::read(path)
        .ok()
        .and_then(|h| h.get_u64("general.file_type"))
        .map_or_else(|| "?".into(), file_type_name)
}

pub fn run(args: EvalQuantArgs) -> Result<()> {
    crate::sandbox::Policy::new("eval-quant")
        .read_model(&args.base)
        .read_models(&args.quants)
        .read_all(&args.text)
        .read_models(&args.model)
        .read_all(&args.images)
        .verbose(args.verbose)
        .enter()?;
    for q in &args.quants {
        if q == &args.base {
            bail!(
                "--quant {} is the --base file itself; give the quantised file made from it",
                q.display()
            );
        }
    }
    let base_header =
        crate::gguf_check::read_checked(&args.base).with_context(|| format!("--base {}", args.base.display()))?;
    if base_header.is_mmproj() {
        if let Some(model) = &args.model {
            let n = args.gen_tokens;
            crate::settings::check_trained_length(
                n as u64,
                super::trained_length(model),
                args.allow_long_context,
                || format!("--gen-tokens {n}"),
                "--gen-tokens",
            )?;
        }
        return super::eval_quant_vision::run(&args);
    }
    // Checked before anything is loaded; every chunk is a context of -c tokens.
    let c = args.ctx_size;
    crate::settings::check_trained_length(
        u64::from(c),
        super::trained_length(&args.base),
        args.allow_long_context,
        || format!("-c/--ctx-size {c}"),
        "-c/--ctx-size",
    )?;
    let Some(text_path) = args.text.clone() else {
        bail!(
            "--base {} is a language model: give a text to score with --text FILE.txt (--image is for comparing \
             vision projectors)",
            args.base.display()
        );
    };
    let text = crate::files::read_regular(&text_path)
        .with_context(|| format!("cannot read the text file {}", text_path.display()))?;
    let text = String::from_utf8(text).map_err(|_| {
        anyhow::anyhow!(
            "{} is not UTF-8 text; give a plain-text file (convert it first, e.g. with iconv)",
            text_path.display()
        )
    })?;
    let threads = crate::settings::threads(args.threads, default_threads);
    let base = load(&args.base, threads, args.verbose)?;
    let quants = args
        .quants
        .iter()
        .map(|q| load(q, threads, args.verbose))
        .collect::<Result<Vec<_>>>()?;

    let tokens = base.tokenize_plain(&text);
    for (engine, path) in quants.iter().zip(&args.quants) {
        if engine.n_vocab() != base.n_vocab() || engine.tokenize_plain(&text) != tokens {
            bail!(
                "{} does not have the vocabulary of {}: compare a quantised file only with the model it was made from",
                path.display(),
                args.base.display()
            );
        }
    }
    let chunk_len = args.ctx_size as usize;
    let chunks = chunks(&tokens, chunk_len, base.bos(), args.chunks.map(|n| n as usize));
    if chunks.is_empty() {
        bail!(
            "{} has {} tokens, fewer than one chunk of --ctx-size {}: give a longer text or a smaller --ctx-size",
            text_path.display(),
            tokens.len(),
            args.ctx_size
        );
    }
    let first = chunk_len / 2;

    let settings = ContextSettings {
        ctx_size: Some(args.ctx_size),
        threads,
        ..ContextSettings::default()
    };
    let mut base_scorer = Scorer::new(&base, &settings, args.ctx_size)?;
    let mut quant_scorers = quants
        .iter()
        .map(|q| Scorer::new(q, &settings, args.ctx_size))
        .collect::<Result<Vec<_>, _>>()?;

    let progress = progress_bar((chunks.len() * (1 + quants.len())) as u64);
    let n_vocab = base.n_vocab();
    let mut reference = Likelihood::default();
    let mut comparisons = vec![Comparison::default(); quants.len()];
    // The reference logits of the scored positions of one chunk, as llama.cpp returned them (f32: a 4B chunk of
    // 512 holds 256 rows of 262,208); log-probabilities are computed from them in f64 when compared, so a model
    // compared with an identical copy gives exactly zero.
    let mut rows: Vec<f32> = Vec::with_capacity((chunk_len - first) * n_vocab);
    for chunk in &chunks {
        rows.clear();
        base_scorer.score(chunk, first, &mut |i, logits| {
            reference.add(&log_softmax(logits), chunk[i + 1] as usize);
            rows.extend_from_slice(logits);
        })?;
        progress.inc(1);
        for (scorer, comparison) in quant_scorers.iter_mut().zip(comparisons.iter_mut()) {
            scorer.score(chunk, first, &mut |i, logits| {
                let r = &rows[(i - first) * n_vocab..(i - first + 1) * n_vocab];
                comparison.add(&log_softmax(r), &log_softmax(logits), chunk[i + 1] as usize);
            })?;
            progress.inc(1);
        }
    }
    progress.finish_and_clear();

    let report = Report {
        text: text_path,
        ctx_size: args.ctx_size,
        chunks: chunks.len(),
        scored_positions: chunks.len() * (chunk_len - first - 1),
        base: BaseReport {
            file: args.base.clone(),
            file_type: file_type(&args.base),
            perplexity: reference.perplexity(),
        },
        quants: comparisons
            .iter()
            .zip(&args.quants)
            .map(|(c, path)| QuantReport {
                file: path.clone(),
                file_type: file_type(path),
                quality: c.report(&reference),
            })
            .collect(),
    };
    super::print_report(args.json, &report, write_table)
}

fn progress_bar(total: u64) -> ProgressBar {
    crate::terminal::bar(
        Some(total),
        "scoring {bar:30} {pos}/{len} chunk evaluations, {elapsed} (ETA {eta})",
    )
    .unwrap_or_else(ProgressBar::hidden)
}

fn write_table(out: &mut dyn Write, r: &Report) -> std::io::Result<()> {
    writeln!(
        out,
        "{} chunks of {} tokens from {} ({} positions scored: the second half of each chunk)",
        r.chunks,
        r.ctx_size,
        r.text.display(),
        r.scored_positions
    )?;
    writeln!(
        out,
        "{:<8} {:>18} {:>9} {:>22} {:>10} {:>10} {:>16}  file",
        "type", "perplexity", "PPL ratio", "KL mean (nats)", "KL median", "KL p99", "same top-1 (%)"
    )?;
    writeln!(
        out,
        "{:<8} {:>18} {:>9} {:>22} {:>10} {:>10} {:>16}  {}",
        r.base.file_type,
        format!("{:.4} ± {:.4}", r.base.perplexity.value, r.base.perplexity.stderr),
        "1",
        "-",
        "-",
        "-",
        "-",
        r.base.file.display()
    )?;
    for q in &r.quants {
        let v = &q.quality;
        writeln!(
            out,
            "{:<8} {:>18} {:>9.4} {:>22} {:>10.6} {:>10.6} {:>16}  {}",
            q.file_type,
            format!("{:.4} ± {:.4}", v.perplexity.value, v.perplexity.stderr),
            v.perplexity_ratio,
            format!("{:.6} ± {:.6}", v.kl_mean, v.kl_stderr),
            v.kl_median,
            v.kl_p99,
            format!("{:.2} ± {:.2}", 100.0 * v.top1_agreement, 100.0 * v.top1_stderr),
            q.file.display()
        )?;
    }
    Ok(())
}
