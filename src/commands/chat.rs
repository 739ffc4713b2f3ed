//! `medgemma chat`: an interactive conversation (or a scripted one from a pipe) on one engine session, keeping
//! earlier turns and images in the KV cache so that each turn evaluates only what is new.
//!
//! Owns: the read-command-answer loop, the chat's messages on stderr, answers streamed to stdout, the image cache.
//! What each message or command does to the conversation is decided by [`ChatState`]; this file carries it out on
//! the engine session. Must not: change the conversation other than through `ChatState`.

use std::io::{IsTerminal, Write};
use std::ops::ControlFlow;
use std::path::PathBuf;

use anyhow::{bail, Result};

use crate::chat::command::{self, ChatInput, FormatChoice, Setting};
use crate::chat::input::{Input, InputSource};
use crate::chat::state::{Answer, ChatState, ChatStateError};
use crate::chat::transcript::{self, TranscriptError};
use crate::cli::ChatArgs;
use crate::engine::{Engine, EngineError, FinishReason, GeneratedToken, Generation, Session, SessionStats};
use crate::interrupt;
use crate::output_guard::{OutputGuard, OutputInTheWay, OutputIsInput};
use crate::prompt_images::{ImageLoader, ImageOptions, PromptImageError};
use crate::settings::{Grammar, SamplingSettings};
use crate::structured::OutputFormat;
use crate::terminal::{self, ImageProgress};

pub fn run(args: ChatArgs) -> Result<()> {
    crate::settings::check_cache_type(args.context.cache_type, args.context.flash_attention)?;
    let files = args.model.resolve()?;
    super::check_ctx_size(&files.model, &args.context)?;
    if (!args.images.is_empty() || args.series.is_some()) && files.mmproj.is_none() {
        bail!(super::NEEDS_MMPROJ);
    }
    let format = args.answer_format.load()?;
    let interactive = std::io::stdin().is_terminal();
    eprintln!("{}", terminal::NOTICE);
    let mut context = args.context.settings();
    if args.series.is_some() && context.ctx_size.is_none() {
        // Room for the series, the question and an answer; later turns share what is left.
        let slices = args
            .series_select
            .max_slices
            .map_or(crate::dicom::series::GOOGLE_MAX_SLICES, |n| n as usize);
        let sampling = args.sampling.settings();
        context.ctx_size = Some(crate::settings::series_context(
            slices,
            sampling.max_tokens,
            super::trained_length(&files.model),
        ));
    }
    let keep_history =
        !args.no_history && std::env::var_os("MEDGEMMA_NO_HISTORY").is_none_or(|v| v.is_empty() || v == "0");
    let mut input = InputSource::new(interactive, keep_history)?;
    // /image, /load and /save work beneath the current folder; the history file keeps being written.
    let history_dir = crate::chat::input::history_path().filter(|_| keep_history);
    let mut options = args.model.load_options(&files, context.threads)?;
    options.gpu.kv = Some(super::kv_cache(&files.model, &context, 1, true));
    crate::sandbox::Policy::new("chat")
        .read_model(&files.model)
        .read_all(&files.mmproj)
        .read_all(&args.images)
        .read_all(&args.series)
        .write_beneath(".")
        .write_beside_each(&history_dir)
        .image_cache(options.image_cache.as_ref())
        .verbose(args.model.verbose)
        .enter()?;
    let engine = Engine::load(&options)?;
    let session = Session::for_conversation(&engine, &context)?;
    // What /save must never write over (the images read so far are added at each /save).
    let mut protected = OutputGuard::new();
    protected.protect(&files.model, "the model (-m/--model)");
    if let Some(mmproj) = &files.mmproj {
        protected.protect(mmproj, "the vision projector (--mmproj)");
    }
    if let Some(history) = crate::chat::input::history_path().filter(|_| keep_history) {
        protected.protect(&history, "the chat's input history");
    }
    let mut chat = Chat {
        protected,
        engine: &engine,
        session,
        state: ChatState::new(args.system.clone(), args.sampling.settings()),
        loader: ImageLoader::new(ImageOptions {
            fit: args.image_fit,
            side: engine.image_size().unwrap_or(crate::image_input::DEFAULT_IMAGE_SIDE),
            dicom: args.dicom.options(args.model.verbose),
            series: args.series_select.options(),
        }),
        verbose: args.model.verbose,
        format: None,
        last_stats: None,
    };
    chat.use_format(format)?;
    if !args.images.is_empty() {
        chat.attach(args.images.clone())?;
    }
    if let Some(series) = &args.series {
        chat.attach_series(series.clone())?;
    }
    if interactive {
        eprintln!("Type a message, /help for commands, /quit or Ctrl-D to leave.");
    }
    interrupt::install();
    let mut interrupts_at_prompt = 0;
    loop {
        match input.read() {
            Input::Eof => return Ok(()),
            // Reported like any other bad input; the session goes on with the next line.
            Input::NotUtf8 { line } => eprintln!("error: line {line} of the input: not UTF-8 text; skipped"),
            Input::Interrupted => {
                interrupts_at_prompt += 1;
                if interrupts_at_prompt >= 2 {
                    std::process::exit(130);
                }
                eprintln!("(Ctrl-C again, /quit or Ctrl-D to leave)");
            }
            Input::Text(text) => {
                interrupts_at_prompt = 0;
                match command::parse(&text) {
                    Ok(ChatInput::Quit) => return Ok(()),
                    Ok(cmd) => {
                        if let Err(e) = chat.handle(cmd) {
                            eprintln!("error: {e}");
                            if let Some(hint) = crate::sandbox::denied_hint(&e) {
                                eprintln!("  {hint}");
                            }
                        }
                    }
                    Err(e) => eprintln!("error: {e}"),
                }
            }
        }
    }
}

/// Why one chat input could not be carried out: printed, and the chat goes on (at start-up, the command fails).
#[derive(Debug, thiserror::Error)]
enum ChatError {
    #[error(transparent)]
    State(#[from] ChatStateError),
    #[error(transparent)]
    Transcript(#[from] TranscriptError),
    /// The image error's own text, without its source: that text already includes it, and `main` prints the chain.
    #[error("{0}")]
    Image(PromptImageError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Output(#[from] OutputIsInput),
    #[error(transparent)]
    InTheWay(#[from] OutputInTheWay),
    #[error("{0}")]
    Format(String),
    #[error(
        "the conversation no longer fits in the context ({prompt_tokens} tokens of {ctx_size}): /drop forgets the \
         oldest exchange (the system prompt stays), /clear starts over, or restart with a larger -c/--ctx-size"
    )]
    NoLongerFits { prompt_tokens: usize, ctx_size: u32 },
}

/// The chat on its engine session: carries out on the model what [`ChatState`] decides.
struct Chat<'e> {
    engine: &'e Engine,
    /// Files /save must not write over.
    protected: OutputGuard,
    session: Session<'e>,
    state: ChatState,
    /// Every image and series of the chat, read once.
    loader: ImageLoader,
    verbose: bool,
    /// The shape answers must take (`/set format`), checked after each answer too.
    format: Option<OutputFormat>,
    last_stats: Option<SessionStats>,
}

impl Chat<'_> {
    fn handle(&mut self, cmd: ChatInput) -> Result<(), ChatError> {
        match cmd {
            ChatInput::Message(text) => {
                if let Some(answer) = self.state.send(text) {
                    self.answer(answer)?;
                }
            }
            ChatInput::Help => eprintln!("{}", command::HELP),
            ChatInput::Image(paths) => self.attach(paths)?,
            ChatInput::Series(path) => self.attach_series(path)?,
            ChatInput::System(text) => {
                let set = self.state.set_system(text);
                eprintln!("system prompt {}", if set { "set" } else { "removed" });
            }
            ChatInput::Clear => {
                self.state.clear();
                self.session.truncate(0);
                eprintln!("conversation cleared");
            }
            ChatInput::Undo => {
                if self.state.undo()? == 0 {
                    self.session.truncate(0);
                }
                // Otherwise the next evaluation keeps the common prefix and drops the rest.
                eprintln!("last exchange removed");
            }
            ChatInput::Retry => {
                let answer = self.state.retry()?;
                self.answer(answer)?;
            }
            ChatInput::Drop => {
                let left = self.state.drop_oldest()?;
                eprintln!("oldest exchange dropped ({left} turns left)");
            }
            ChatInput::Save(path) => {
                let mut guard = self.protected.clone();
                for image in self.loader.image_paths() {
                    guard.protect(image, "an image of this chat");
                }
                guard.check("/save", &path)?;
                let ours = transcript::is_saved_chat(&path);
                crate::output_guard::check_new("/save", &path, ours, " and is not a saved chat", None)?;
                transcript::save(self.state.conversation(), &path)?;
                eprintln!("saved to {}", path.display());
            }
            ChatInput::Load(path) => {
                let loaded = transcript::load(&path)?;
                // Every image and series is read (and checked) before the loaded chat replaces this one.
                self.loader.load(&loaded).map_err(ChatError::Image)?;
                let turns = loaded.turns.len();
                match self.state.load(loaded) {
                    Some(answer) => self.answer(answer)?,
                    None => eprintln!("loaded {turns} turns from {}", path.display()),
                }
            }
            ChatInput::Set(Setting::Format(choice)) => {
                self.set_format(choice)?;
                eprintln!("ok");
            }
            ChatInput::Set(setting) => {
                self.state.set(setting);
                eprintln!("ok");
            }
            ChatInput::Show => self.show(),
            ChatInput::Stats => match &self.last_stats {
                Some(s) => eprintln!("{}", terminal::stats_line(s)),
                None => eprintln!("no answer yet"),
            },
            ChatInput::Quit => {}
        }
        Ok(())
    }

    fn attach(&mut self, paths: Vec<PathBuf>) -> Result<(), ChatError> {
        if !self.engine.has_vision() {
            return Err(EngineError::ImagesWithoutMmproj.into());
        }
        for p in &paths {
            self.loader.image(p).map_err(ChatError::Image)?;
        }
        let n = self.state.attach(paths);
        eprintln!("{n} image(s) attached to the next message");
        Ok(())
    }

    /// `/series DIR` (or `--series`): read and checked now, laid out with the next message.
    fn attach_series(&mut self, path: PathBuf) -> Result<(), ChatError> {
        if !self.engine.has_vision() {
            return Err(EngineError::ImagesWithoutMmproj.into());
        }
        let n = self.loader.series(&path).map_err(ChatError::Image)?.slices.len();
        self.state.attach_series(path);
        eprintln!("series of {n} slice(s) attached to the next message (type the question)");
        Ok(())
    }

    /// `/set format` (or --format, --json-schema, --grammar): read and checked now, used from the next answer on.
    fn set_format(&mut self, choice: FormatChoice) -> Result<(), ChatError> {
        let format = match choice {
            FormatChoice::Off => None,
            FormatChoice::Json => Some(OutputFormat::JsonObject),
            FormatChoice::Schema(path) => Some(OutputFormat::Schema(
                crate::structured::load_schema(&path).map_err(|e| ChatError::Format(e.to_string()))?,
            )),
            FormatChoice::Grammar(path) => {
                Some(crate::structured::load_grammar(&path).map_err(|e| ChatError::Format(e.to_string()))?)
            }
        };
        self.use_format(format)
    }

    fn use_format(&mut self, format: Option<OutputFormat>) -> Result<(), ChatError> {
        let grammar = format.as_ref().map(|f| Grammar::new(&f.grammar()));
        if let Some(g) = &grammar {
            self.engine.check_grammar(g.text())?;
        }
        self.state.set_grammar(grammar);
        self.format = format;
        Ok(())
    }

    /// Answers the conversation's last user message, streaming to stdout, and hands the outcome to the state.
    fn answer(&mut self, answer: Answer) -> Result<(), ChatError> {
        let generation = match self.generate(answer.sampling()) {
            Ok(generation) => generation,
            Err(e) => {
                self.state.answer_failed(answer);
                return Err(e);
            }
        };
        if let Some(format) = &self.format {
            let problem = match generation.finish {
                FinishReason::Stop => format.check_answer(&generation.text).err().map(|e| e.to_string()),
                _ => Some("the answer is incomplete".to_string()),
            };
            if let Some(problem) = problem {
                eprintln!("[the answer does not follow {}: {problem}]", format.describe());
            }
        }
        let interrupted = generation.finish == FinishReason::Interrupted;
        if interrupted {
            eprintln!("[interrupted: the partial answer stays in the conversation]");
        }
        if generation.finish == FinishReason::ContextFull {
            eprintln!("[the context is full: /drop or /clear to go on]");
        }
        self.state
            .answered(answer, &generation.text, generation.in_context, interrupted);
        let stats = self.session.stats().clone();
        if self.verbose {
            eprintln!("medgemma: {}", terminal::stats_line(&stats));
        }
        self.last_stats = Some(stats);
        let used = self.session.used();
        let size = self.session.ctx_size() as usize;
        if used * 10 >= size * 8 {
            eprintln!("[context {used}/{size} tokens used: /drop forgets the oldest exchange, /clear starts over]");
        }
        Ok(())
    }

    /// Evaluates what is new in the conversation and generates the answer: its text to stdout (ending with a
    /// newline), the thinking to stderr when shown. Ctrl-C stops it.
    fn generate(&mut self, sampling: &SamplingSettings) -> Result<Generation, ChatError> {
        let (conversation, images) = self.loader.load(self.state.conversation()).map_err(ChatError::Image)?;
        let prompt = self.session.prepare(&conversation, &images)?;
        if self.session.check_fits(&prompt).is_err() {
            return Err(ChatError::NoLongerFits {
                prompt_tokens: prompt.n_tokens(),
                ctx_size: self.session.ctx_size(),
            });
        }
        self.session
            .evaluate(&prompt, &mut ImageProgress::new(images.len(), self.verbose))?;
        interrupt::reset();
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        let show_thinking = self.state.shows_thinking();
        let mut on_token = |t: &GeneratedToken| {
            if t.thinking {
                if show_thinking && !t.text.is_empty() {
                    eprint!("{}", t.text);
                }
            } else if !t.text.is_empty() && out.write_all(t.text.as_bytes()).and_then(|()| out.flush()).is_err() {
                return ControlFlow::Break(());
            }
            if interrupt::requested() {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        };
        let generation = self.session.generate(sampling, &mut on_token)?;
        interrupt::reset();
        let _ = writeln!(out);
        let _ = out.flush();
        Ok(generation)
    }

    fn show(&self) {
        let s = self.engine.summary();
        eprintln!("model:     {}", s.model.display());
        eprintln!(
            "mmproj:    {}",
            s.mmproj.as_ref().map_or("(none)".into(), |p| p.display().to_string())
        );
        eprintln!(
            "context:   {}/{} tokens used",
            self.session.used(),
            self.session.ctx_size()
        );
        let conversation = self.state.conversation();
        eprintln!("system:    {}", conversation.system.as_deref().unwrap_or("(none)"));
        eprintln!("turns:     {}", conversation.turns.len());
        let p = self.state.sampling();
        eprintln!(
            "sampling:  temp {} top-k {} top-p {} min-p {} seed {} max-tokens {}",
            p.temperature, p.top_k, p.top_p, p.min_p, p.seed, p.max_tokens
        );
        eprintln!(
            "thinking:  {}",
            if self.state.shows_thinking() { "shown" } else { "hidden" }
        );
        eprintln!(
            "format:    {}",
            self.format.as_ref().map_or("free text".into(), OutputFormat::describe)
        );
    }
}
