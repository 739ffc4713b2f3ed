//! `medgemma batch`: run many jobs (JSONL in, JSONL out) on one loaded model, resumable and safe to kill.
//!
//! Jobs run on the engine's scheduler, `--parallel` sequences at a time; a job that shares a beginning (system
//! prompt, image) with what any sequence holds reuses it from the KV cache instead of evaluating it again.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::batch::job::{self, Job};
use crate::batch::results::{JobResult, ResultsFile, Timings, Usage};
use crate::batch::sha256_cache::Sha256Cache;
use crate::batch::sidecar::Sidecar;
use crate::cli::BatchArgs;
use crate::conversation::Conversation;
use crate::engine::{Engine, EngineError, FinishReason, Finished, LlamaScheduler, Scheduler};
use crate::interrupt;
use crate::output_guard::OutputGuard;
use crate::prompt_images::{ImageLoader, ImageOptions};
use crate::settings::{ContextSettings, Grammar, SamplingSettings};
use crate::structured::OutputFormat;
use crate::terminal::JobProgress;

pub fn run(args: BatchArgs) -> Result<()> {
    crate::settings::check_cache_type(args.context.cache_type, args.context.flash_attention)?;
    let files = super::resolve_for_results(&args.model, &args.context)?;
    let model = files.model.clone();
    let jobs = read_jobs(&args)?;
    // Nothing the run reads may be written over: the model, the mmproj, the jobs, their images.
    let guard = output_guard(&files, &args, &jobs);
    guard.check("--output", &args.output)?;
    guard.check("--output (its sidecar)", &Sidecar::path_for(&args.output))?;
    let shard = args.shard;
    let mine: Vec<Job> = jobs
        .into_iter()
        .filter(|j| shard.is_none_or(|s| s.takes(&j.id)))
        .collect();
    terminal_notice();

    // Describe the run before touching the results; refuse a file that is not ours, and results of another model.
    let format = args.answer_format.load()?;
    let mut sampling = args.sampling.settings();
    if let Some(format) = &format {
        sampling.grammar = Some(Grammar::new(&format.grammar()));
    }
    let mut context = args.context.settings();
    if context.ctx_size.is_none()
        && mine
            .iter()
            .any(|j| j.input.as_ref().is_ok_and(Conversation::has_series))
    {
        // Each sequence must hold a whole series prompt; sized from the jobs before anything runs, the same on
        // every resume (the sidecar records it).
        let slices = args
            .series_select
            .max_slices
            .map_or(crate::dicom::series::GOOGLE_MAX_SLICES, |n| n as usize);
        let estimate = crate::settings::series_context(slices, sampling.max_tokens, super::trained_length(&model));
        eprintln!(
            "medgemma: jobs with a series: {estimate} context positions per sequence (up to {slices} slices of about \
             {} positions; -c/--ctx-size to choose)",
            crate::settings::POSITIONS_PER_SLICE
        );
        context.ctx_size = Some(estimate);
    }
    let sidecar = Sidecar::describe(
        &model,
        files.mmproj.as_deref(),
        &sampling,
        &context,
        shard,
        &Sha256Cache::from_env(),
    )?;
    sidecar.check_output(&args.output, args.overwrite)?;
    let mut results = ResultsFile::open(&args.output, args.overwrite)?;
    sidecar.write(&args.output)?;

    let todo: Vec<&Job> = mine.iter().filter(|j| !results.is_done(&j.id)).collect();
    let skipped = mine.len() - todo.len();
    if skipped > 0 {
        eprintln!(
            "medgemma: {skipped} of {} jobs already in {}; running the other {}",
            mine.len(),
            args.output.display(),
            todo.len()
        );
    }
    if !todo.is_empty() {
        // The results file is open already; what is left to read is the model and the jobs' images.
        let mut options = args.model.load_options(&files, context.threads)?;
        options.gpu.kv = Some(super::kv_cache(&files.model, &context, args.parallel, true));
        crate::sandbox::Policy::new("batch")
            .read_model(&files.model)
            .read_all(&files.mmproj)
            .image_cache(options.image_cache.as_ref())
            .read_all(
                todo.iter()
                    .flat_map(|j| j.input.iter().flat_map(Conversation::media_paths)),
            )
            .verbose(args.model.verbose)
            .enter()?;
        interrupt::install();
        let engine = Engine::load(&options)?;
        let parallel = args.parallel.max(1) as usize;
        if let (Some(grammar), Some(format)) = (&sampling.grammar, &format) {
            engine
                .check_grammar(grammar.text())
                .with_context(|| format!("the answer format ({})", format.describe()))?;
        }
        let interrupted = run_jobs(
            &engine,
            &todo,
            &mut |result| Ok(results.append(&result)?),
            Answers {
                format: format.as_ref(),
                sampling: &sampling,
            },
            &context,
            parallel,
            &ImageOptions {
                fit: args.image_fit,
                side: crate::image_input::DEFAULT_IMAGE_SIDE,
                dicom: args.dicom.options(args.model.verbose),
                series: args.series_select.options(),
            },
        )?;
        if let Some(line) = engine.image_use().and_then(|u| crate::terminal::image_use_line(&u)) {
            eprintln!("medgemma: {line}");
        }
        if interrupted {
            let done = mine.iter().filter(|j| results.is_done(&j.id)).count();
            bail!(
                "interrupted: {done} of {} jobs have results; run the same command again to finish the rest",
                mine.len()
            );
        }
    }
    let failed = mine.iter().filter(|j| results.failed(&j.id) == Some(true)).count();
    eprintln!(
        "medgemma: {} jobs, {} ok, {failed} failed -> {}",
        mine.len(),
        mine.len() - failed,
        args.output.display()
    );
    if failed > 0 {
        bail!(
            "{failed} of {} jobs failed (their records have \"finish_reason\": \"error\")",
            mine.len()
        );
    }
    Ok(())
}

fn terminal_notice() {
    crate::terminal::research_notice();
}

fn output_guard(files: &crate::hub::ModelFiles, args: &BatchArgs, jobs: &[Job]) -> OutputGuard {
    let mut guard = OutputGuard::new();
    guard.protect(&files.model, "the model (-m/--model)");
    if let Some(mmproj) = &files.mmproj {
        guard.protect(mmproj, "the vision projector (--mmproj)");
    }
    if let Some(input) = &args.input {
        guard.protect(input, "the jobs file (--input)");
    }
    for job in jobs {
        for image in job.input.iter().flat_map(|c| c.images()) {
            guard.protect(image, format!("an image of job {:?}", job.id));
        }
    }
    guard
}

fn read_jobs(args: &BatchArgs) -> Result<Vec<Job>> {
    match (&args.input, &args.images, &args.prompt) {
        (Some(input), None, None) => {
            let text = crate::files::read_regular(input)
                .with_context(|| format!("cannot read --input {}", input.display()))?;
            let base = input.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf);
            Ok(job::parse_jobs(&text, &base))
        }
        (None, Some(dir), Some(prompt)) => Ok(job::image_folder_jobs(dir, prompt, args.system.as_deref())?),
        (None, Some(_), None) => bail!("--images needs --prompt (the question asked of every image)"),
        _ => bail!("give the jobs with --input JOBS.jsonl, or with --images DIR --prompt TEXT"),
    }
}

/// How jobs are answered unless they say otherwise: the answer format (checked after each answer) and sampling.
#[derive(Clone, Copy)]
pub(crate) struct Answers<'a> {
    pub(crate) format: Option<&'a OutputFormat>,
    pub(crate) sampling: &'a SamplingSettings,
}

/// Runs the jobs `--parallel` at a time in one context (continuous batching on the engine's scheduler; 1 runs
/// them one after another), handing each finished job's record to `on_result` (batch appends it to the results,
/// eval turns it into a prediction); returns true when stopped by Ctrl-C (jobs in flight are abandoned: no
/// record).
pub(crate) fn run_jobs(
    engine: &Engine,
    todo: &[&Job],
    on_result: &mut dyn FnMut(JobResult) -> Result<()>,
    answers: Answers<'_>,
    context: &ContextSettings,
    parallel: usize,
    images: &ImageOptions,
) -> Result<bool> {
    let Answers { format, sampling } = answers;
    let mut scheduler: LlamaScheduler<JobTag> = Scheduler::new(engine, context, parallel, true)?;
    let progress = JobProgress::new(todo.len() as u64);
    let (mut failed, mut generated) = (0u64, 0usize);
    let started = Instant::now();
    let mut record = |result: JobResult, failed: &mut u64, generated: &mut usize| -> Result<()> {
        if result.finish_reason == "error" {
            *failed += 1;
        }
        *generated += result.usage.completion_tokens;
        on_result(result)?;
        progress.update(*failed, *generated as f64 / started.elapsed().as_secs_f64().max(1e-9));
        Ok(())
    };
    let mut on_token = |_: &JobTag, _: &crate::engine::GeneratedToken| ControlFlow::Continue(());
    let mut next = 0usize;
    loop {
        if interrupt::requested() {
            progress.finish();
            return Ok(true);
        }
        // The jobs for the free sequences are prepared and submitted together (their prompts are evaluated in
        // shared batches).
        let mut waiting = Vec::new();
        while scheduler.active() + waiting.len() < parallel && next < todo.len() {
            let job = todo[next];
            let tag = JobTag {
                index: next,
                started: Instant::now(),
                prompt_tokens: 0,
            };
            next += 1;
            match prepare_job(engine, job, sampling, images) {
                Ok((prompt, job_sampling)) => {
                    let tag = JobTag {
                        prompt_tokens: prompt.n_tokens(),
                        ..tag
                    };
                    waiting.push((tag, prompt, job_sampling));
                }
                Err(e) => record(
                    error_result(job, format!("{e:#}"), tag.started),
                    &mut failed,
                    &mut generated,
                )?,
            }
        }
        let submitted = scheduler.submit_many(
            waiting.iter().map(|(tag, prompt, s)| (*tag, prompt, s)).collect(),
            &mut on_token,
        );
        for outcome in submitted {
            match outcome {
                Ok(Some(done)) => record(finished_result(todo, done, format), &mut failed, &mut generated)?,
                Ok(None) => {}
                Err((tag, e)) => {
                    let job = todo[tag.index];
                    record(
                        error_result(job, format!("{:#}", with_series_fix(job, e)), tag.started),
                        &mut failed,
                        &mut generated,
                    )?
                }
            }
        }
        if scheduler.active() == 0 {
            // Nothing running: every job submitted so far finished at once (or failed); take the next ones.
            if next >= todo.len() {
                break;
            }
            continue;
        }
        for done in scheduler.step(&mut on_token) {
            record(finished_result(todo, done, format), &mut failed, &mut generated)?;
        }
    }
    progress.finish();
    Ok(false)
}

/// A job's refusal by the engine; a series job too long for its sequence is told to take fewer slices (the
/// engine's own advice, a larger -c/--ctx-size, is refused past the trained length, where the sequences already
/// are for series jobs).
fn with_series_fix(job: &Job, e: EngineError) -> anyhow::Error {
    let series_too_long =
        matches!(e, EngineError::PromptTooLong { .. }) && job.input.as_ref().is_ok_and(Conversation::has_series);
    let e = anyhow::Error::from(e);
    if series_too_long {
        e.context("the series' slices do not fit the context: take fewer with --max-slices N")
    } else {
        e
    }
}

/// What the scheduler carries for a job: its index in the to-do list, when it started, its prompt's length.
#[derive(Clone, Copy)]
struct JobTag {
    index: usize,
    started: Instant,
    prompt_tokens: usize,
}

/// A finished job's record: its answer (checked against its format), or its error (a failed decode ends that job
/// only).
fn finished_result(todo: &[&Job], done: Finished<JobTag>, format: Option<&OutputFormat>) -> JobResult {
    let job = todo[done.tag.index];
    match done.result {
        Ok(generation) => {
            let format = job.format.as_ref().or(format);
            let mut result = job_result(
                &job.id,
                generation,
                &done.stats,
                done.tag.started,
                done.tag.prompt_tokens,
            );
            result.label = job.label.clone();
            if let Some(format) = format {
                check_result(&mut result, format);
            }
            result
        }
        Err(e) => error_result(job, format!("{:#}", anyhow::Error::from(e)), done.tag.started),
    }
}

/// Fills in a formatted answer's check: valid, or incomplete (cut short) or invalid with the reason.
fn check_result(result: &mut JobResult, format: &OutputFormat) {
    let checked = if result.finish_reason == "stop" {
        format.check_answer(&result.text).map_err(|e| e.to_string())
    } else {
        result.incomplete = Some(true);
        Err("the answer is incomplete: it reached max_tokens first".to_string())
    };
    result.valid = Some(checked.is_ok());
    match checked {
        Ok(json) => result.json = json,
        Err(reason) => result.invalid_reason = Some(reason),
    }
}

fn error_result(job: &Job, error: String, started: Instant) -> JobResult {
    JobResult {
        id: job.id.clone(),
        text: String::new(),
        finish_reason: "error",
        error: Some(error),
        label: job.label.clone(),
        valid: None,
        incomplete: None,
        json: None,
        invalid_reason: None,
        usage: Usage::default(),
        timings: Timings {
            total_ms: started.elapsed().as_secs_f64() * 1000.0,
            ..Timings::default()
        },
    }
}

fn job_result(
    id: &str,
    generation: crate::engine::Generation,
    stats: &crate::engine::SessionStats,
    started: Instant,
    prompt_tokens: usize,
) -> JobResult {
    let finish_reason = match generation.finish {
        FinishReason::Stop => "stop",
        _ => "length",
    };
    JobResult {
        id: id.to_string(),
        text: generation.text,
        finish_reason,
        error: None,
        label: None,
        valid: None,
        incomplete: None,
        json: None,
        invalid_reason: None,
        usage: Usage {
            prompt_tokens,
            cached_tokens: prompt_tokens.saturating_sub(stats.prompt_tokens),
            completion_tokens: generation.tokens.len(),
        },
        timings: Timings {
            prompt_ms: stats.prompt_ms,
            generation_ms: stats.generation_ms,
            total_ms: started.elapsed().as_secs_f64() * 1000.0,
        },
    }
}

/// A job's prompt (images read and checked) and its sampling settings.
fn prepare_job(
    engine: &Engine,
    job: &Job,
    defaults: &SamplingSettings,
    options: &ImageOptions,
) -> Result<(crate::engine::PreparedPrompt, SamplingSettings)> {
    let conversation = job.input.clone()?;
    if conversation.media_paths().next().is_some() && !engine.has_vision() {
        bail!("the job has images or a series but no --mmproj was given");
    }
    let side = engine.image_size().unwrap_or(crate::image_input::DEFAULT_IMAGE_SIDE);
    // One loader per job: a series' slices are not kept in memory after its job is prepared.
    let mut loader = ImageLoader::new(ImageOptions {
        side,
        ..options.clone()
    });
    let (conversation, images) = loader.load(&conversation)?;
    let prompt = engine.prepare(&conversation, &images)?;
    let mut sampling = defaults.clone();
    // Already held to the ranges of --max-tokens and --temp when the job was read.
    if let Some(n) = job.max_tokens {
        sampling.max_tokens = n;
    }
    if let Some(t) = job.temperature {
        sampling.temperature = t;
    }
    if let Some(s) = job.seed {
        sampling.seed = s;
    }
    if let Some(format) = &job.format {
        sampling.grammar = Some(Grammar::new(&format.grammar()));
    }
    Ok((prompt, sampling))
}
