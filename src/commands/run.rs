//! `medgemma run`: answer one prompt (or one conversation from a JSON file), streaming the answer to stdout.

use std::io::{IsTerminal, Read, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::cli::RunArgs;
use crate::conversation::{Conversation, ConversationFile, Part, Turn};
use crate::engine::{Engine, FinishReason, ImageUse, PromptItem, Session, SessionStats};
use crate::files::write_atomically;
use crate::output_guard::OutputGuard;
use crate::prompt_images::{ImageLoader, ImageOptions};
use crate::terminal::{self, ImageProgress};

#[derive(Serialize)]
struct RunReport<'a> {
    text: &'a str,
    thinking: &'a str,
    finish_reason: FinishReason,
    prompt_tokens: usize,
    /// Prompt token ids in order; -1 marks an image-embedding position.
    prompt_token_ids: Vec<i64>,
    generated_token_ids: &'a [i32],
    timings: &'a SessionStats,
    /// With a vision projector: how the images became embeddings (encoded now, or from the image cache).
    #[serde(skip_serializing_if = "Option::is_none")]
    images: Option<ImageUse>,
    /// With an answer format: the answer parsed (JSON formats), and whether it passed the check.
    #[serde(skip_serializing_if = "Option::is_none")]
    json: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    valid: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    invalid_reason: Option<String>,
}

/// `--choices --json`: the chosen label and every label's probability.
#[derive(Serialize)]
struct ChoiceReport<'a> {
    choice: &'a str,
    /// Label -> probability among the labels (they sum to 1).
    probabilities: serde_json::Map<String, serde_json::Value>,
    /// Each label in the order given: its probability, the log-probability of its whole token sequence (the
    /// label, then the end of the turn) after the prompt, and those token ids.
    choices: Vec<ChoiceEntry<'a>>,
    prompt_tokens: usize,
    timings: &'a SessionStats,
}

#[derive(Serialize)]
struct ChoiceEntry<'a> {
    label: &'a str,
    probability: f64,
    log_prob: f64,
    token_ids: &'a [i32],
}

pub fn run(args: RunArgs) -> Result<()> {
    crate::settings::check_cache_type(args.context.cache_type, args.context.flash_attention)?;
    let conversation = read_conversation(&args)?;
    conversation
        .check_ready_to_answer()
        .with_context(|| match &args.messages {
            Some(path) => format!("--messages {}: cannot answer this conversation", path.display()),
            None => "cannot answer this conversation".into(),
        })?;
    if args.series_select.any() && !conversation.has_series() {
        bail!("--series-uid and --max-slices choose slices of a series: add --series DIR (or a series part in --messages)");
    }
    // The answer's shape is read and checked before any model work.
    let format = args.answer_format.load()?;
    let choices = match &args.choices {
        Some(arg) => Some(crate::structured::parse_choices(arg)?),
        None => None,
    };
    let mut sampling = args.sampling.settings();
    if let Some(format) = &format {
        sampling.grammar = Some(crate::settings::Grammar::new(&format.grammar()));
    }
    let files = args.model.resolve()?;
    super::check_ctx_size(&files.model, &args.context)?;
    if conversation.media_paths().next().is_some() && files.mmproj.is_none() {
        bail!(super::NEEDS_MMPROJ);
    }

    // Images and series are read (and checked) before the model loads.
    let mut loader = ImageLoader::new(ImageOptions {
        fit: args.image_fit,
        side: crate::prompt_images::projector_side(files.mmproj.as_deref()),
        dicom: args.dicom.options(args.model.verbose),
        series: args.series_select.options(),
    });
    let (conversation, images) = loader.load(&conversation)?;
    let n_images = images.len();
    if let Some(path) = &args.logits_out {
        // Checked before the model loads: nothing the run reads may be written over.
        let mut guard = OutputGuard::new();
        guard.protect(&files.model, "the model (-m/--model)");
        if let Some(mmproj) = &files.mmproj {
            guard.protect(mmproj, "the vision projector (--mmproj)");
        }
        if let Some(messages) = &args.messages {
            guard.protect(messages, "the conversation (--messages)");
        }
        for image in conversation.images() {
            guard.protect(image, "an image of the prompt");
        }
        guard.check("--logits-out", path)?;
        crate::output_guard::check_new("--logits-out", path, args.force, "", Some("--force"))?;
    }
    terminal::research_notice();

    let mut context = args.context.settings();
    let mut options = args.model.load_options(&files, context.threads)?;
    // One sequence; the sliding-window layers keep only the window (no prefix reuse in a single run).
    options.gpu.kv = Some(super::kv_cache(&files.model, &context, 1, false));
    crate::sandbox::Policy::new("run")
        .read_model(&files.model)
        .read_all(&files.mmproj)
        .write_beside_each(&args.logits_out)
        .image_cache(options.image_cache.as_ref())
        .verbose(args.model.verbose)
        .enter()?;
    let engine = Engine::load(&options)?;
    if let (Some(grammar), Some(format)) = (&sampling.grammar, &format) {
        engine
            .check_grammar(grammar.text())
            .with_context(|| format!("the answer format ({})", format.describe()))?;
    }
    let choice_tokens = match &choices {
        Some(labels) => Some(
            labels
                .iter()
                .map(|l| engine.choice_tokens(l))
                .collect::<Result<Vec<_>, _>>()
                .context("--choices")?,
        ),
        None => None,
    };
    let prompt = engine.prepare(&conversation, &images)?;
    context.ctx_size = crate::settings::fit_context(
        context.ctx_size,
        prompt.n_tokens(),
        n_images,
        args.sampling.max_tokens,
        super::trained_length(&files.model),
    )?;
    let mut session = Session::new(&engine, &context)?;
    session.check_fits(&prompt)?;
    session.evaluate(&prompt, &mut ImageProgress::new(n_images, args.model.verbose))?;

    if let (Some(labels), Some(tokens)) = (&choices, &choice_tokens) {
        return answer_choice(&mut session, labels, tokens, prompt.n_tokens(), &args);
    }
    if let Some(path) = &args.logits_out {
        let logits = session.last_logits();
        let json = serde_json::to_vec(&logits)?;
        write_atomically(path, &json).with_context(|| format!("cannot write --logits-out {}", path.display()))?;
    }

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut write_error: Option<std::io::Error> = None;
    let streaming = !args.json;
    let show_thinking = args.show_thinking;
    let mut on_token = |t: &crate::engine::GeneratedToken| {
        if t.thinking {
            if show_thinking && !t.text.is_empty() {
                eprint!("{}", t.text);
            }
            return ControlFlow::Continue(());
        }
        if streaming && !t.text.is_empty() {
            if let Err(e) = out.write_all(t.text.as_bytes()).and_then(|()| out.flush()) {
                write_error = Some(e);
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    };
    let generation = session.generate(&sampling, &mut on_token)?;
    if let Some(e) = write_error {
        return Err(e).context("cannot write the answer to stdout");
    }
    let checked = format
        .as_ref()
        .map(|f| check_answer(f, &generation, sampling.max_tokens));
    if streaming {
        if !generation.text.ends_with('\n') {
            writeln!(out)?;
        }
    } else {
        let report = RunReport {
            text: &generation.text,
            thinking: &generation.thinking,
            finish_reason: generation.finish,
            prompt_tokens: prompt.n_tokens(),
            prompt_token_ids: prompt
                .items()
                .iter()
                .map(|i| match i {
                    PromptItem::Token(t) => i64::from(*t),
                    PromptItem::ImageEmbedding => -1,
                })
                .collect(),
            generated_token_ids: &generation.tokens,
            timings: session.stats(),
            images: engine.image_use(),
            json: checked.as_ref().and_then(|c| c.as_ref().ok().cloned().flatten()),
            valid: checked.as_ref().map(Result::is_ok),
            invalid_reason: checked.as_ref().and_then(|c| c.as_ref().err().cloned()),
        };
        serde_json::to_writer(&mut out, &report)?;
        writeln!(out)?;
    }
    out.flush()?;
    if generation.finish == FinishReason::ContextFull {
        eprintln!(
            "medgemma: the answer stopped because the context is full ({} tokens); raise -c/--ctx-size",
            session.ctx_size()
        );
    }
    if args.model.verbose {
        eprintln!("medgemma: {}", terminal::stats_line(session.stats()));
        if let Some(line) = engine.image_use().and_then(|u| terminal::image_use_line(&u)) {
            eprintln!("medgemma: {line}");
        }
    }
    if let (Some(Err(reason)), Some(format)) = (checked, &format) {
        bail!("the answer does not follow {}: {reason}", format.describe());
    }
    Ok(())
}

/// Checks a finished answer against its format: the parsed JSON (`None` for a grammar), or why it fails. An
/// answer cut short is incomplete whatever it holds.
fn check_answer(
    format: &crate::structured::OutputFormat,
    generation: &crate::engine::Generation,
    max_tokens: usize,
) -> Result<Option<serde_json::Value>, String> {
    match generation.finish {
        FinishReason::Stop => format.check_answer(&generation.text).map_err(|e| e.to_string()),
        FinishReason::Length => Err(format!(
            "the answer is incomplete: it reached -n/--max-tokens ({max_tokens}) first; raise -n"
        )),
        FinishReason::ContextFull => Err("the answer is incomplete: the context filled up; raise -c/--ctx-size".into()),
        FinishReason::Interrupted => Err("the answer is incomplete: it was interrupted".into()),
    }
}

/// `--choices`: every label scored after the evaluated prompt; prints the most probable one (or the report).
fn answer_choice(
    session: &mut Session<'_>,
    labels: &[String],
    tokens: &[Vec<i32>],
    prompt_tokens: usize,
    args: &RunArgs,
) -> Result<()> {
    let prompt_logits = args.logits_out.as_ref().map(|_| session.last_logits());
    let mut rows: Vec<Vec<Vec<f32>>> = vec![Vec::new(); labels.len()];
    let keep_rows = args.logits_out.is_some();
    let scores = session.score_choices(tokens, &mut |c, _, row| {
        if keep_rows {
            rows[c].push(row.to_vec());
        }
    })?;
    if let (Some(path), Some(prompt_logits)) = (&args.logits_out, prompt_logits) {
        // Serialised as float32 (as the plain --logits-out is), so that equal logits read back equal.
        #[derive(Serialize)]
        struct LabelRows<'a> {
            label: &'a str,
            token_ids: &'a [i32],
            rows: &'a [Vec<f32>],
        }
        #[derive(Serialize)]
        struct Dump<'a> {
            prompt: Vec<f32>,
            labels: Vec<LabelRows<'a>>,
        }
        let dump = Dump {
            prompt: prompt_logits,
            labels: labels
                .iter()
                .zip(tokens)
                .zip(&rows)
                .map(|((label, token_ids), rows)| LabelRows { label, token_ids, rows })
                .collect(),
        };
        let json = serde_json::to_vec(&dump)?;
        write_atomically(path, &json).with_context(|| format!("cannot write --logits-out {}", path.display()))?;
    }
    let choice = &labels[scores.best];
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.json {
        let report = ChoiceReport {
            choice,
            probabilities: labels
                .iter()
                .zip(&scores.probabilities)
                .map(|(l, &p)| (l.clone(), serde_json::json!(p)))
                .collect(),
            choices: labels
                .iter()
                .enumerate()
                .map(|(i, l)| ChoiceEntry {
                    label: l,
                    probability: scores.probabilities[i],
                    log_prob: scores.log_probs[i],
                    token_ids: &tokens[i],
                })
                .collect(),
            prompt_tokens,
            timings: session.stats(),
        };
        serde_json::to_writer(&mut out, &report)?;
        writeln!(out)?;
    } else {
        writeln!(out, "{choice}")?;
    }
    out.flush()?;
    Ok(())
}

/// The conversation from --messages, or from PROMPT / stdin with --system and --image.
fn read_conversation(args: &RunArgs) -> Result<Conversation> {
    if let Some(path) = &args.messages {
        return read_messages_file(path);
    }
    let text = match args.prompt.as_deref() {
        Some("-") => read_stdin()?,
        Some(p) => p.to_string(),
        None if !std::io::stdin().is_terminal() => read_stdin()?,
        None => bail!("no prompt: give it as an argument (medgemma run \"question\"), on standard input, or with --messages FILE.json"),
    };
    if let Some(series) = &args.series {
        if text.trim().is_empty() {
            bail!(
                "the prompt is empty: give a question about --series {} (it comes after the slices)",
                series.display()
            );
        }
        // Google's layout: [instruction, slices with their labels, question]; without --series-instruction the
        // image loader puts Google's instruction first (see prompt_images).
        let mut parts: Vec<Part> = args.series_instruction.iter().cloned().map(Part::Text).collect();
        parts.push(Part::Series(series.clone()));
        parts.push(Part::Text(text));
        return Ok(Conversation {
            system: args.system.clone(),
            turns: vec![Turn::user_parts(parts)],
        });
    }
    if text.trim().is_empty() && args.images.is_empty() {
        bail!("the prompt is empty: give a question as an argument or on standard input");
    }
    Ok(Conversation::single(args.system.clone(), text, args.images.clone()))
}

fn read_stdin() -> Result<String> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("cannot read the prompt from standard input (is it UTF-8 text?)")?;
    Ok(text)
}

fn read_messages_file(path: &Path) -> Result<Conversation> {
    let bytes =
        crate::files::read_regular(path).with_context(|| format!("cannot read --messages {}", path.display()))?;
    let file: ConversationFile = serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "--messages {}: not a conversation in JSON ([{{\"role\": \"user\", \"content\": \"...\"}}, ...])",
            path.display()
        )
    })?;
    let mut conversation =
        Conversation::from_messages(file.into_messages()).with_context(|| format!("--messages {}", path.display()))?;
    let base = path.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    conversation.resolve_images(&base);
    Ok(conversation)
}
