//! `medgemma bench`: load time, prompt processing and generation tokens/s (mean ± standard deviation over
//! repetitions, after a warm-up), image encoding time with an mmproj, and peak memory; a table or `--json`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use serde::Serialize;

use crate::cli::BenchArgs;
use crate::engine::{Engine, SpeedTest};
use crate::gguf::GgufHeader;
use crate::image_input::{ImageFit, ImageInput};
use crate::model_info::{file_type_name, human_bytes};
use crate::settings::{physical_cores, ContextSettings};
use crate::terminal;

/// Mean and sample standard deviation of repeated measurements.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    pub mean: f64,
    pub stddev: f64,
    pub samples: usize,
}

impl Spread {
    pub fn of(values: &[f64]) -> Spread {
        let n = values.len();
        let mean = values.iter().sum::<f64>() / n.max(1) as f64;
        let stddev = if n > 1 {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        Spread {
            mean,
            stddev,
            samples: n,
        }
    }
}

#[derive(Serialize)]
struct Report {
    model: PathBuf,
    model_type: Option<String>,
    model_bytes: u64,
    mmproj: Option<PathBuf>,
    mmproj_type: Option<String>,
    threads: i32,
    batch_size: u32,
    flash_attention: String,
    cache_type: String,
    load_ms: f64,
    prompt_tokens: u32,
    gen_tokens: u32,
    prompt_tokens_per_s: Spread,
    gen_tokens_per_s: Spread,
    image_encode_ms: Option<Spread>,
    /// Peak resident memory of the process (Linux: VmHWM), bytes.
    peak_rss_bytes: Option<u64>,
}

/// A deterministic test pattern (gradients and a grid) of `side` x `side` pixels.
fn test_pattern(side: u32) -> ImageInput {
    let rgb = image::RgbImage::from_fn(side, side, |x, y| {
        let grid = if (x / 32 + y / 32) % 2 == 0 { 40 } else { 0 };
        image::Rgb([
            ((x * 255) / side.max(1)) as u8,
            ((y * 255) / side.max(1)) as u8,
            (((x + y) * 127) / side.max(1)) as u8 + grid,
        ])
    });
    ImageInput {
        path: PathBuf::from("(test pattern)"),
        rgb,
    }
}

/// Peak resident set size of this process, from /proc (Linux only).
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn file_type(path: &std::path::Path) -> Option<String> {
    GgufHeader::read(path)
        .ok()?
        .get_u64("general.file_type")
        .map(file_type_name)
}

pub fn run(args: BenchArgs) -> Result<()> {
    crate::settings::check_cache_type(args.cache_type, args.flash_attention)?;
    let files = args.model.resolve()?;
    let model = files.model.clone();
    let threads = crate::settings::threads(args.threads, physical_cores);
    // bench times the encoder itself: no image cache.
    let options = crate::engine::LoadOptions {
        image_cache: None,
        ..args.model.load_options(&files, threads)?
    };
    let (p, n) = (args.prompt_tokens, args.gen_tokens);
    let total = u64::from(p) + u64::from(n);
    crate::settings::check_trained_length(
        total,
        super::trained_length(&model),
        args.allow_long_context,
        || format!("-p/--prompt-tokens {p} plus -n/--gen-tokens {n}"),
        "-p/--prompt-tokens or -n/--gen-tokens",
    )?;
    let Ok(ctx_size) = u32::try_from(total) else {
        anyhow::bail!(
            "-p/--prompt-tokens {p} plus -n/--gen-tokens {n} is more tokens than any context holds; lower them"
        );
    };
    // Read and checked before the model loads: a bad image is refused at once, not after the text benchmark. Padding
    // keeps the image's own resolution, so the projector's input size is not needed yet.
    let image = match (&args.image, &options.mmproj) {
        (Some(path), Some(_)) => Some(ImageInput::load(
            path,
            ImageFit::Pad,
            crate::image_input::DEFAULT_IMAGE_SIDE,
        )?),
        (Some(path), None) => anyhow::bail!(
            "--image {} needs a vision projector: pass --mmproj MMPROJ.gguf to time image encoding",
            path.display()
        ),
        _ => None,
    };

    crate::sandbox::Policy::new("bench")
        .read_model(&options.model)
        .read_all(&options.mmproj)
        .verbose(args.model.verbose)
        .enter()?;
    let started = Instant::now();
    let engine = Engine::load(&options)?;
    let load_ms = started.elapsed().as_secs_f64() * 1000.0;

    let settings = ContextSettings {
        ctx_size: Some(ctx_size),
        threads,
        batch_size: args.batch_size,
        cache_type: args.cache_type,
        flash_attention: args.flash_attention,
    };
    let (p, n) = (p as usize, n as usize);
    let mut test = SpeedTest::new(&engine, &settings, ctx_size)?;
    let spinner = terminal::spinner("warming up".into());
    test.run(p.min(32), n.min(4))?;
    let (mut pp, mut tg) = (Vec::new(), Vec::new());
    for r in 0..args.repetitions {
        if let Some(s) = &spinner {
            s.set_message(format!(
                "prompt {p} + generation {n} tokens, repetition {}/{}",
                r + 1,
                args.repetitions
            ));
        }
        let sample = test.run(p, n)?;
        pp.push(p as f64 / sample.prompt.as_secs_f64());
        tg.push(n as f64 / sample.generation.as_secs_f64());
    }
    drop(test);

    let mut image_encode_ms = None;
    if engine.has_vision() {
        let side = engine.image_size().unwrap_or(crate::image_input::DEFAULT_IMAGE_SIDE);
        let input = image.unwrap_or_else(|| test_pattern(side));
        let reps = args.image_repetitions.unwrap_or(args.repetitions);
        let mut times = Vec::new();
        for r in 0..reps {
            if let Some(s) = &spinner {
                s.set_message(format!("encoding an image, repetition {}/{reps}", r + 1));
            }
            times.push(engine.time_image_encoding(&input)?.as_secs_f64() * 1000.0);
        }
        if !times.is_empty() {
            image_encode_ms = Some(Spread::of(&times));
        }
    }
    if let Some(s) = spinner {
        s.finish_and_clear();
    }

    let report = Report {
        model_type: file_type(&model),
        model_bytes: std::fs::metadata(&model).map(|m| m.len()).unwrap_or(0),
        model,
        mmproj_type: options.mmproj.as_deref().and_then(file_type),
        mmproj: options.mmproj.clone(),
        threads,
        batch_size: args.batch_size.max(512),
        flash_attention: format!("{:?}", args.flash_attention).to_lowercase(),
        cache_type: format!("{:?}", args.cache_type).to_lowercase(),
        load_ms,
        prompt_tokens: args.prompt_tokens,
        gen_tokens: args.gen_tokens,
        prompt_tokens_per_s: Spread::of(&pp),
        gen_tokens_per_s: Spread::of(&tg),
        image_encode_ms,
        peak_rss_bytes: peak_rss(),
    };
    super::print_report(args.json, &report, write_table)
}

fn write_table(out: &mut dyn Write, r: &Report) -> std::io::Result<()> {
    let kind = |t: &Option<String>| t.clone().unwrap_or_else(|| "?".into());
    writeln!(
        out,
        "model      {} ({}, {})",
        r.model.display(),
        kind(&r.model_type),
        human_bytes(r.model_bytes)
    )?;
    if let Some(m) = &r.mmproj {
        writeln!(out, "mmproj     {} ({})", m.display(), kind(&r.mmproj_type))?;
    }
    writeln!(
        out,
        "settings   {} threads, batch {}, flash attention {}, KV cache {}",
        r.threads, r.batch_size, r.flash_attention, r.cache_type
    )?;
    writeln!(out, "load       {:.0} ms", r.load_ms)?;
    let s = r.prompt_tokens_per_s;
    writeln!(
        out,
        "pp{:<8} {:.2} ± {:.2} tokens/s ({} repetitions)",
        r.prompt_tokens, s.mean, s.stddev, s.samples
    )?;
    let s = r.gen_tokens_per_s;
    writeln!(
        out,
        "tg{:<8} {:.2} ± {:.2} tokens/s ({} repetitions)",
        r.gen_tokens, s.mean, s.stddev, s.samples
    )?;
    if let Some(s) = r.image_encode_ms {
        writeln!(
            out,
            "image      {:.1} ± {:.1} ms per image ({} repetitions)",
            s.mean, s.stddev, s.samples
        )?;
    }
    if let Some(b) = r.peak_rss_bytes {
        writeln!(out, "peak RSS   {}", human_bytes(b))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_is_mean_and_sample_standard_deviation() {
        let s = Spread::of(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]);
        assert_eq!(s.mean, 5.0);
        assert!((s.stddev - (32.0f64 / 7.0).sqrt()).abs() < 1e-12);
        assert_eq!(Spread::of(&[3.0]).stddev, 0.0);
    }
}
