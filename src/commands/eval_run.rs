//! `medgemma eval --input LABELLED.jsonl --output DIR`: every labelled item answered like a batch job, with
//! `--choices` (each label scored over its whole token sequence, the prompt evaluated once) or with
//! `--json-schema` + `--field` (a constrained answer, the field compared with the label); the predictions are
//! appended to DIR/predictions.jsonl as they come (rerunning the same command resumes), then DIR's report is
//! written (`crate::eval`).
//!
//! Everything that can be wrong with the input (a line that does not parse, a missing label, a label that is not
//! one of the choices or of the field's enum, a schema without the field) is refused before any model work.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::batch::job::{self, Job};
use crate::batch::results::{JobResult, ResultsFile};
use crate::batch::sha256_cache::Sha256Cache;
use crate::batch::sidecar::Sidecar;
use crate::cli::EvalArgs;
use crate::conversation::Conversation;
use crate::engine::{Engine, LlamaScheduler, NoObserver, Scheduler};
use crate::eval::EvalMeta;
use crate::interrupt;
use crate::output_guard::OutputGuard;
use crate::prompt_images::{ImageLoader, ImageOptions};
use crate::settings::{ContextSettings, Grammar};
use crate::structured::OutputFormat;
use crate::terminal::JobProgress;

/// How items are answered.
enum Mode {
    Choices(Vec<String>),
    Schema { format: OutputFormat, field: String },
}

/// One line of DIR/predictions.jsonl.
#[derive(Serialize)]
struct PredictionRecord<'a> {
    id: &'a str,
    label: &'a str,
    /// The predicted class, or null: no answer (an error, an answer cut short or invalid, a value that is not a
    /// class).
    prediction: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    probabilities: Option<serde_json::Map<String, serde_json::Value>>,
    finish: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// Schema mode: the answer's text, as the model wrote it.
    #[serde(skip_serializing_if = "Option::is_none")]
    answer: Option<String>,
}

pub fn run(args: EvalArgs) -> Result<()> {
    let (Some(input), Some(dir)) = (&args.input, &args.output) else {
        bail!(
            "medgemma eval needs --input LABELLED.jsonl and --output DIR (or --report DIR to redo a report, or \
             --compare A B)"
        );
    };
    crate::settings::check_cache_type(args.context.cache_type, args.context.flash_attention)?;
    let mode = read_mode(&args)?;
    let items = read_items(input)?;
    let classes = classes_of(&mode, &items, input)?;
    let files = super::resolve_for_results(&args.model, &args.context)?;
    let model = files.model.clone();
    if items
        .iter()
        .any(|j| j.input.as_ref().is_ok_and(|c| c.media_paths().next().is_some()))
        && files.mmproj.is_none()
    {
        bail!(super::NEEDS_MMPROJ);
    }

    // The report's files are written over in DIR: only a new or empty folder, or one of our eval folders, is used.
    if dir.exists() && !dir.join(crate::eval::META_JSON).exists() {
        let empty = std::fs::read_dir(dir)
            .with_context(|| format!("--output {} is not a folder", dir.display()))?
            .next()
            .is_none();
        if !empty {
            bail!(
                "--output {} holds files and is not an eval folder (no {}); give a new or empty folder",
                dir.display(),
                crate::eval::META_JSON
            );
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create --output {}", dir.display()))?;
    let predictions = dir.join("predictions.jsonl");
    let mut guard = OutputGuard::new();
    guard.protect(&files.model, "the model (-m/--model)");
    if let Some(mmproj) = &files.mmproj {
        guard.protect(mmproj, "the vision projector (--mmproj)");
    }
    guard.protect(input, "the labelled data (--input)");
    for item in &items {
        for image in item.input.iter().flat_map(|c| c.images()) {
            guard.protect(image, format!("an image of item {:?}", item.id));
        }
    }
    guard.check("--output", &predictions)?;
    guard.check("--output (its sidecar)", &Sidecar::path_for(&predictions))?;
    for name in [
        crate::eval::META_JSON,
        crate::eval::REPORT_JSON,
        crate::eval::REPORT_MD,
        crate::eval::CONFUSION_PNG,
        crate::eval::RELIABILITY_PNG,
    ] {
        guard.check("--output (its report)", &dir.join(name))?;
    }

    let mut sampling = args.sampling.settings();
    if let Mode::Schema { format, .. } = &mode {
        sampling.grammar = Some(Grammar::new(&format.grammar()));
    }
    let context = args.context.settings();
    let meta = EvalMeta {
        version: crate::eval::META_VERSION,
        classes: classes.clone(),
        mode: match &mode {
            Mode::Choices(_) => "choices".into(),
            Mode::Schema { .. } => "schema".into(),
        },
        field: match &mode {
            Mode::Choices(_) => None,
            Mode::Schema { field, .. } => Some(field.clone()),
        },
        model: Some(file_name(&files.model)),
        input: Some(file_name(input)),
        extra: serde_json::Map::new(),
    };
    let sidecar = Sidecar::describe(
        &model,
        files.mmproj.as_deref(),
        &sampling,
        &context,
        None,
        &Sha256Cache::from_env(),
    )?;
    sidecar.check_output(&predictions, args.overwrite)?;
    if !args.overwrite {
        if let Ok(previous) = EvalMeta::read(dir) {
            if previous.classes != meta.classes || previous.mode != meta.mode || previous.field != meta.field {
                bail!(
                    "--output {} holds an eval with other classes, mode or field; use another folder or --overwrite",
                    dir.display()
                );
            }
        }
    }
    let mut results = ResultsFile::open(&predictions, args.overwrite)?;
    sidecar.write(&predictions)?;
    meta.write(dir)?;
    crate::terminal::research_notice();

    let todo: Vec<&Job> = items.iter().filter(|j| !results.is_done(&j.id)).collect();
    if todo.len() < items.len() {
        eprintln!(
            "medgemma: {} of {} items already in {}; running the other {}",
            items.len() - todo.len(),
            items.len(),
            predictions.display(),
            todo.len()
        );
    }
    if !todo.is_empty() {
        let mut options = args.model.load_options(&files, context.threads)?;
        options.gpu.kv = Some(super::kv_cache(&files.model, &context, args.parallel, true));
        crate::sandbox::Policy::new("eval")
            .read_model(&files.model)
            .write_beneath(dir)
            .image_cache(options.image_cache.as_ref())
            .read_all(&files.mmproj)
            .read_all(
                todo.iter()
                    .flat_map(|j| j.input.iter().flat_map(Conversation::media_paths)),
            )
            .verbose(args.model.verbose)
            .enter()?;
        interrupt::install();
        let engine = Engine::load(&options)?;
        let images = ImageOptions {
            fit: args.image_fit,
            side: engine.image_size().unwrap_or(crate::image_input::DEFAULT_IMAGE_SIDE),
            dicom: args.dicom.options(args.model.verbose),
            series: args.series_select.options(),
        };
        let parallel = args.parallel.max(1) as usize;
        let interrupted = match &mode {
            Mode::Choices(labels) => score_items(&engine, &todo, labels, &context, parallel, &images, &mut results)?,
            Mode::Schema { format, field } => {
                engine
                    .check_grammar(sampling.grammar.as_ref().expect("schema mode has a grammar").text())
                    .with_context(|| format!("--json-schema ({})", format.describe()))?;
                let labels: HashMap<&str, &str> = items
                    .iter()
                    .map(|j| (j.id.as_str(), j.label.as_deref().unwrap_or("")))
                    .collect();
                let mut on_result = |result: JobResult| -> Result<()> {
                    let label = labels.get(result.id.as_str()).copied().unwrap_or("");
                    let record = schema_prediction(&result, label, field, &classes);
                    results.append_record(&result.id, result.finish_reason == "error", &record)?;
                    Ok(())
                };
                super::batch::run_jobs(
                    &engine,
                    &todo,
                    &mut on_result,
                    super::batch::Answers {
                        format: Some(format),
                        sampling: &sampling,
                    },
                    &context,
                    parallel,
                    &images,
                )?
            }
        };
        if interrupted {
            let done = items.iter().filter(|j| results.is_done(&j.id)).count();
            bail!(
                "interrupted: {done} of {} items have predictions; run the same command again to finish the rest",
                items.len()
            );
        }
    }
    drop(results);
    super::eval::report(dir, args.json)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}

fn read_mode(args: &EvalArgs) -> Result<Mode> {
    match (&args.choices, &args.json_schema, &args.field) {
        (Some(choices), None, _) => Ok(Mode::Choices(crate::structured::parse_choices(choices)?)),
        (None, Some(path), Some(field)) => {
            let schema = crate::structured::load_schema(path).context("--json-schema")?;
            Ok(Mode::Schema {
                format: OutputFormat::Schema(schema),
                field: field.clone(),
            })
        }
        _ => bail!("give --choices LABELS (or a file), or --json-schema SCHEMA.json with --field NAME"),
    }
}

/// The labelled items; any line that cannot run, or has no label, is refused here (up to 10 listed).
fn read_items(input: &Path) -> Result<Vec<Job>> {
    let bytes =
        crate::files::read_regular(input).with_context(|| format!("cannot read --input {}", input.display()))?;
    let base = input.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let items = job::parse_jobs(&bytes, &base);
    if items.is_empty() {
        bail!(
            "--input {}: no items (one JSON object per line, each with a \"label\")",
            input.display()
        );
    }
    let problems: Vec<String> = items
        .iter()
        .filter_map(|j| match (&j.input, &j.label) {
            (Err(e), _) => Some(e.to_string()),
            (Ok(_), None) => Some(format!("item {:?}: no \"label\"", j.id)),
            (Ok(_), Some(_)) => None,
        })
        .collect();
    if !problems.is_empty() {
        let shown: Vec<&str> = problems.iter().take(10).map(String::as_str).collect();
        bail!(
            "--input {}: {} of {} items cannot be evaluated (fix them, or remove them):\n  {}{}",
            input.display(),
            problems.len(),
            items.len(),
            shown.join("\n  "),
            if problems.len() > 10 { "\n  ..." } else { "" }
        );
    }
    Ok(items)
}

/// The report's classes: the choices, or the field's enum in the schema, or else the labels seen (sorted). Every
/// label must be one of them.
fn classes_of(mode: &Mode, items: &[Job], input: &Path) -> Result<Vec<String>> {
    let classes = match mode {
        Mode::Choices(labels) => labels.clone(),
        Mode::Schema { format, field } => match field_enum(format, field) {
            Ok(Some(values)) => values,
            Ok(None) => {
                let mut labels: Vec<String> = items.iter().filter_map(|j| j.label.clone()).collect();
                labels.sort();
                labels.dedup();
                labels
            }
            Err(e) => bail!("--field {field}: {e}"),
        },
    };
    let unknown: Vec<String> = items
        .iter()
        .filter(|j| j.label.as_ref().is_some_and(|l| !classes.contains(l)))
        .map(|j| format!("item {:?}: label {:?}", j.id, j.label.as_deref().unwrap_or("")))
        .collect();
    if !unknown.is_empty() {
        let shown: Vec<&str> = unknown.iter().take(10).map(String::as_str).collect();
        bail!(
            "--input {}: {} labels are not among the classes ({}):\n  {}{}",
            input.display(),
            unknown.len(),
            classes.join(", "),
            shown.join("\n  "),
            if unknown.len() > 10 { "\n  ..." } else { "" }
        );
    }
    Ok(classes)
}

/// The values the schema allows for the top-level property `field` when it is an `enum` (or `const`) of strings or
/// numbers, else `None`; an error when the schema has no such property.
fn field_enum(format: &OutputFormat, field: &str) -> Result<Option<Vec<String>>, String> {
    use crate::structured::{Node, Target};
    let OutputFormat::Schema(schema) = format else {
        return Ok(None);
    };
    let Node::Rules(root) = &schema.root else {
        return Err("the schema's top level is not an object with properties".into());
    };
    let Some((_, node)) = root.properties.iter().find(|(name, _)| name == field) else {
        let names: Vec<&str> = root.properties.iter().map(|(n, _)| n.as_str()).collect();
        return Err(format!(
            "the schema's top level has no property {field:?} (it has: {}); --field must name one",
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        ));
    };
    let mut node = node;
    // One `$ref` to a definition is followed (a field's enum is often kept in $defs).
    if let Node::Rules(rules) = node {
        if let Some(Target::Def(i)) = rules.reference {
            node = &schema.defs[i].1;
        }
    }
    let Node::Rules(rules) = node else {
        return Ok(None);
    };
    let values = match (&rules.enumeration, &rules.constant) {
        (Some(values), _) => values.clone(),
        (None, Some(value)) => vec![value.clone()],
        (None, None) => return Ok(None),
    };
    Ok(values
        .iter()
        .map(|v| match v {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(_) | serde_json::Value::Bool(_) => Some(v.to_string()),
            _ => None,
        })
        .collect())
}

/// A schema-mode answer as a prediction, from batch's own check of it (`valid`, `json`, `invalid_reason`): the
/// field's value (a string, or a number or boolean as text) when the answer is complete and valid and the value is
/// a class; otherwise no prediction, with the reason.
fn schema_prediction<'a>(
    result: &'a JobResult,
    label: &'a str,
    field: &str,
    classes: &[String],
) -> PredictionRecord<'a> {
    let mut record = PredictionRecord {
        id: &result.id,
        label,
        prediction: None,
        probabilities: None,
        finish: result.finish_reason,
        error: result.error.clone(),
        answer: (result.finish_reason != "error").then(|| result.text.clone()),
    };
    if result.finish_reason == "error" {
        return record;
    }
    if result.incomplete == Some(true) {
        record.error = Some("the answer is incomplete: it reached max_tokens first (raise -n)".into());
        return record;
    }
    let Some(value) = result.json.as_ref().filter(|_| result.valid == Some(true)) else {
        record.error = Some(
            result
                .invalid_reason
                .clone()
                .unwrap_or_else(|| "the answer was not checked".into()),
        );
        return record;
    };
    let predicted = match value.get(field) {
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => Some(v.to_string()),
        _ => None,
    };
    match predicted {
        Some(p) if classes.contains(&p) => record.prediction = Some(p),
        Some(_) => record.error = Some(format!("the answer's {field:?} is not one of the classes")),
        None => record.error = Some(format!("the answer has no {field:?} string")),
    }
    record
}

/// `--choices`: each item's prompt evaluated (reusing what any of the `parallel` sequences holds of it), then
/// every label scored after it. Returns true when stopped by Ctrl-C.
fn score_items(
    engine: &Engine,
    todo: &[&Job],
    labels: &[String],
    context: &ContextSettings,
    parallel: usize,
    images: &ImageOptions,
    results: &mut ResultsFile,
) -> Result<bool> {
    let tokens: Vec<Vec<i32>> = labels
        .iter()
        .map(|l| engine.choice_tokens(l))
        .collect::<Result<_, _>>()
        .context("--choices")?;
    let mut scheduler: LlamaScheduler<()> = Scheduler::new(engine, context, parallel, true)?;
    let progress = JobProgress::new(todo.len() as u64);
    let started = Instant::now();
    let mut failed = 0u64;
    let mut scored = 0usize;
    for item in todo {
        if interrupt::requested() {
            progress.finish();
            return Ok(true);
        }
        let label = item.label.as_deref().unwrap_or("");
        let outcome = score_item(engine, &mut scheduler, item, &tokens, images);
        let record = match &outcome {
            Ok(scores) => PredictionRecord {
                id: &item.id,
                label,
                prediction: Some(labels[scores.best].clone()),
                probabilities: Some(
                    labels
                        .iter()
                        .zip(&scores.probabilities)
                        .map(|(l, &p)| (l.clone(), serde_json::json!(p)))
                        .collect(),
                ),
                finish: "stop",
                error: None,
                answer: None,
            },
            Err(e) => PredictionRecord {
                id: &item.id,
                label,
                prediction: None,
                probabilities: None,
                finish: "error",
                error: Some(format!("{e:#}")),
                answer: None,
            },
        };
        if outcome.is_err() {
            failed += 1;
        }
        scored += 1;
        results.append_record(&item.id, outcome.is_err(), &record)?;
        progress.update_rate(
            failed,
            scored as f64 / started.elapsed().as_secs_f64().max(1e-9),
            "items/s",
        );
    }
    progress.finish();
    Ok(false)
}

fn score_item(
    engine: &Engine,
    scheduler: &mut LlamaScheduler<()>,
    item: &Job,
    tokens: &[Vec<i32>],
    images: &ImageOptions,
) -> Result<crate::engine::ChoiceScores> {
    let conversation = item.input.clone()?;
    if conversation.media_paths().next().is_some() && !engine.has_vision() {
        bail!("the item has images or a series but no --mmproj was given");
    }
    let mut loader = ImageLoader::new(images.clone());
    let (conversation, images) = loader.load(&conversation)?;
    let prompt = engine.prepare(&conversation, &images)?;
    let seq = scheduler
        .free_sequence_for(&prompt)
        .context("no free sequence (a bug: eval runs one item at a time)")?;
    scheduler.prefill(seq, &prompt, &mut NoObserver)?;
    Ok(crate::engine::ChoiceScores::from_log_probs(
        scheduler.score_continuations(seq, tokens, &mut |_, _, _| {})?,
    ))
}
