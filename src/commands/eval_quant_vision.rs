//! `medgemma eval-quant` on vision projectors: each image is encoded by the reference mmproj and by each quantised
//! one; reports the fidelity of the image embeddings (cosine similarity, worst token, max abs difference), the
//! encoding time, and how many greedy tokens after the image agree with the reference's.

use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::eval_quant::file_type;
use crate::cli::EvalQuantArgs;
use crate::conversation::Conversation;
use crate::engine::{image_embedding, Engine, ImageEmbedding, LoadOptions, NoObserver, Session};
use crate::image_input::{ImageFit, ImageInput};
use crate::quant_eval::{common_prefix, embedding_fidelity, EmbeddingFidelity};
use crate::settings::{default_threads, ContextSettings, SamplingSettings};
use crate::terminal;

/// The question asked after each image when comparing generations.
const QUESTION: &str = "Describe this image.";
const SYSTEM: &str = "You are an expert radiologist.";

#[derive(Serialize)]
struct Report {
    model: PathBuf,
    gen_tokens: usize,
    base: Projector,
    quants: Vec<Projector>,
}

#[derive(Serialize)]
struct Projector {
    file: PathBuf,
    file_type: String,
    images: Vec<ImageResult>,
}

#[derive(Serialize)]
struct ImageResult {
    image: PathBuf,
    encode_ms: f64,
    /// Absent for the reference itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    fidelity: Option<EmbeddingFidelity>,
    generated_token_ids: Vec<i32>,
    /// Leading generated tokens equal to the reference's (absent for the reference).
    #[serde(skip_serializing_if = "Option::is_none")]
    same_first_tokens: Option<usize>,
}

/// The model with `mmproj`, loaded once per projector for the greedy comparisons (None when there are none).
fn load_for_generation(model: &Path, mmproj: &Path, n: usize, threads: i32, verbose: bool) -> Result<Option<Engine>> {
    if n == 0 {
        return Ok(None);
    }
    Ok(Some(Engine::load(&LoadOptions {
        model: model.to_path_buf(),
        mmproj: Some(mmproj.to_path_buf()),
        // Measured on the CPU: the reference for every quantisation is the same arithmetic.
        gpu: crate::engine::GpuOptions {
            layers: crate::gpu_plan::GpuLayers::Count(0),
            ..Default::default()
        },
        threads,
        verbose,
        // Projectors are being compared: every image is encoded by the one under test.
        image_cache: None,
    })?))
}

/// The first `n` greedy tokens after the image (none without an engine).
fn generate(engine: Option<&Engine>, image: &ImageInput, n: usize, threads: i32) -> Result<Vec<i32>> {
    let Some(engine) = engine else {
        return Ok(Vec::new());
    };
    let conversation = Conversation::single(Some(SYSTEM.into()), QUESTION.into(), vec![image.path.clone()]);
    let prompt = engine.prepare(&conversation, std::slice::from_ref(image))?;
    let settings = ContextSettings {
        ctx_size: Some((prompt.n_tokens() + n + 1) as u32),
        threads,
        ..ContextSettings::default()
    };
    let mut session = Session::new(engine, &settings)?;
    session.evaluate(&prompt, &mut NoObserver)?;
    let sampling = SamplingSettings {
        max_tokens: n,
        ..SamplingSettings::default()
    };
    Ok(session.generate(&sampling, &mut |_| ControlFlow::Continue(()))?.tokens)
}

/// One image's embedding and the token ids generated from it.
type Embedded = (ImageEmbedding, Vec<i32>);

pub fn run(args: &EvalQuantArgs) -> Result<()> {
    let Some(model) = &args.model else {
        bail!(
            "--base {} is a vision projector: give its language model with -m MODEL.gguf and images with --image",
            args.base.display()
        );
    };
    if args.images.is_empty() {
        bail!(
            "--base {} is a vision projector: give at least one --image FILE to encode",
            args.base.display()
        );
    }
    let model_header = crate::gguf_check::read_checked(model).with_context(|| format!("-m {}", model.display()))?;
    for q in std::iter::once(&args.base).chain(&args.quants) {
        let h = crate::gguf_check::read_checked(q).with_context(|| format!("--quant {}", q.display()))?;
        if h.is_mmproj() {
            crate::model_info::check_headers_fit(&model_header, &h)?;
        }
        if !h.is_mmproj() {
            bail!(
                "--quant {} is not a vision projector, but --base {} is: compare an mmproj with mmprojs",
                q.display(),
                args.base.display()
            );
        }
    }
    let threads = crate::settings::threads(args.threads, default_threads);
    let images = args
        .images
        .iter()
        .map(|p| ImageInput::load(p, ImageFit::Pad, crate::image_input::DEFAULT_IMAGE_SIDE))
        .collect::<Result<Vec<_>, _>>()?;

    let measure = |mmproj: &Path, reference: Option<&[Embedded]>| -> Result<(Projector, Vec<Embedded>)> {
        let mut results = Vec::new();
        let mut kept = Vec::new();
        let engine = load_for_generation(model, mmproj, args.gen_tokens, threads, args.verbose)?;
        for (i, image) in images.iter().enumerate() {
            let spinner = terminal::spinner(format!("encoding {} with {}", image.path.display(), mmproj.display()));
            let embedding = image_embedding(model, mmproj, image, threads, args.verbose);
            let tokens = embedding
                .as_ref()
                .ok()
                .map(|_| generate(engine.as_ref(), image, args.gen_tokens, threads));
            if let Some(s) = spinner {
                s.finish_and_clear();
            }
            let embedding = embedding?;
            let tokens = tokens.expect("set when the embedding succeeded")?;
            let (fidelity, same) = match reference {
                Some(r) => {
                    let (ref_embedding, ref_tokens) = &r[i];
                    if ref_embedding.values.len() != embedding.values.len() {
                        bail!(
                            "{} gives {} image tokens of width {}, {} gives {} of width {}: not the same projector",
                            mmproj.display(),
                            embedding.n_tokens,
                            embedding.width,
                            args.base.display(),
                            ref_embedding.n_tokens,
                            ref_embedding.width
                        );
                    }
                    (
                        Some(embedding_fidelity(
                            &ref_embedding.values,
                            &embedding.values,
                            embedding.width,
                        )),
                        Some(common_prefix(ref_tokens, &tokens)),
                    )
                }
                None => (None, None),
            };
            results.push(ImageResult {
                image: image.path.clone(),
                encode_ms: embedding.encode_time.as_secs_f64() * 1000.0,
                fidelity,
                generated_token_ids: tokens.clone(),
                same_first_tokens: same,
            });
            kept.push((embedding, tokens));
        }
        Ok((
            Projector {
                file: mmproj.to_path_buf(),
                file_type: file_type(mmproj),
                images: results,
            },
            kept,
        ))
    };

    let (base, reference) = measure(&args.base, None)?;
    let mut quants = Vec::new();
    for q in &args.quants {
        quants.push(measure(q, Some(&reference))?.0);
    }
    let report = Report {
        model: model.clone(),
        gen_tokens: args.gen_tokens,
        base,
        quants,
    };
    super::print_report(args.json, &report, write_table)
}

fn write_table(out: &mut dyn Write, r: &Report) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<6} {:<24} {:>10} {:>10} {:>12} {:>13} {:>12}  file",
        "type", "image", "encode ms", "cosine", "worst token", "max abs diff", "same tokens"
    )?;
    let name = |p: &Path| {
        p.file_name()
            .map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into_owned())
    };
    for p in std::iter::once(&r.base).chain(&r.quants) {
        for i in &p.images {
            let (cos, worst, diff) = match &i.fidelity {
                Some(f) => (
                    format!("{:.6}", f.cosine),
                    format!("{:.6}", f.min_token_cosine),
                    format!("{:.3e}", f.max_abs_diff),
                ),
                None => ("1 (ref)".into(), "-".into(), "-".into()),
            };
            let same = match i.same_first_tokens {
                _ if r.gen_tokens == 0 => "-".into(),
                Some(n) => format!("{n}/{}", r.gen_tokens),
                None => "(ref)".into(),
            };
            writeln!(
                out,
                "{:<6} {:<24} {:>10.0} {:>10} {:>12} {:>13} {:>12}  {}",
                p.file_type,
                name(&i.image),
                i.encode_ms,
                cos,
                worst,
                diff,
                same,
                p.file.display()
            )?;
        }
    }
    Ok(())
}
