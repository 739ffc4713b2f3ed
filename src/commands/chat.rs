//! `medgemma chat`: an interactive conversation (or a scripted one from a pipe) on one engine session, keeping
//! earlier turns and images in the KV cache so that each turn evaluates only what is new.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::ops::ControlFlow;
use std::path::PathBuf;

use anyhow::{bail, Result};

use crate::chat::command::{self, ChatInput, Setting};
use crate::chat::input::{Input, InputSource};
use crate::chat::transcript;
use crate::cli::ChatArgs;
use crate::conversation::{Conversation, Role, Turn};
use crate::engine::{Engine, EngineError, FinishReason, Session, SessionStats};
use crate::image_input::{ImageFit, ImageInput};
use crate::interrupt;
use crate::settings::SamplingSettings;
use crate::terminal::{self, ImageProgress};

pub fn run(args: ChatArgs) -> Result<()> {
    let files = args.model.resolve()?;
    if !args.images.is_empty() && files.mmproj.is_none() {
        bail!("--image needs a vision projector: add --mmproj MMPROJ.gguf (the mmproj file published with the model), or use a multimodal model by name (e.g. -m medgemma-4b-it)");
    }
    let interactive = std::io::stdin().is_terminal();
    eprintln!("{}", terminal::NOTICE);
    let context = args.context.settings();
    let engine = Engine::load(&args.model.load_options(&files, context.threads))?;
    let session = Session::for_conversation(&engine, &context)?;
    let keep_history =
        !args.no_history && std::env::var_os("MEDGEMMA_NO_HISTORY").is_none_or(|v| v.is_empty() || v == "0");
    let mut input = InputSource::new(interactive, keep_history).map_err(anyhow::Error::msg)?;
    let mut chat = Chat {
        engine: &engine,
        session,
        conversation: Conversation {
            system: args.system.clone(),
            turns: Vec::new(),
        },
        pending_images: Vec::new(),
        image_cache: HashMap::new(),
        sampling: args.sampling.settings(),
        show_thinking: false,
        image_fit: args.image_fit,
        verbose: args.model.verbose,
        retries: 0,
        last_stats: None,
    };
    if !args.images.is_empty() {
        chat.attach(args.images.clone()).map_err(anyhow::Error::msg)?;
    }
    if interactive {
        eprintln!("Type a message, /help for commands, /quit or Ctrl-D to leave.");
    }
    interrupt::install();
    let mut interrupts_at_prompt = 0;
    loop {
        match input.read() {
            Input::Eof => return Ok(()),
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
                        }
                    }
                    Err(e) => eprintln!("error: {e}"),
                }
            }
        }
    }
}

struct Chat<'e> {
    engine: &'e Engine,
    session: Session<'e>,
    conversation: Conversation,
    pending_images: Vec<PathBuf>,
    image_cache: HashMap<PathBuf, ImageInput>,
    sampling: SamplingSettings,
    show_thinking: bool,
    image_fit: ImageFit,
    verbose: bool,
    retries: u32,
    last_stats: Option<SessionStats>,
}

impl Chat<'_> {
    fn handle(&mut self, cmd: ChatInput) -> Result<(), String> {
        match cmd {
            ChatInput::Message(text) => self.send(text),
            ChatInput::Help => {
                eprintln!("{}", command::HELP);
                Ok(())
            }
            ChatInput::Image(paths) => self.attach(paths).map_err(|e| e.to_string()),
            ChatInput::System(text) => {
                self.conversation.system = (!text.is_empty()).then_some(text);
                eprintln!(
                    "system prompt {}",
                    if self.conversation.system.is_some() {
                        "set"
                    } else {
                        "removed"
                    }
                );
                Ok(())
            }
            ChatInput::Clear => {
                self.conversation.turns.clear();
                self.pending_images.clear();
                self.session.truncate(0);
                eprintln!("conversation cleared");
                Ok(())
            }
            ChatInput::Undo => {
                if self.conversation.turns.last().is_some_and(|t| t.role == Role::Model) {
                    self.conversation.turns.pop();
                }
                match self.conversation.turns.pop() {
                    Some(_) => {
                        self.drop_stale_kv();
                        eprintln!("last exchange removed");
                        Ok(())
                    }
                    None => Err("nothing to undo".into()),
                }
            }
            ChatInput::Retry => {
                if self.conversation.turns.last().is_none_or(|t| t.role != Role::Model) {
                    return Err("nothing to retry: no answer yet".into());
                }
                self.conversation.turns.pop();
                self.retries += 1;
                self.answer()
            }
            ChatInput::Drop => {
                if self.conversation.turns.len() < 2 {
                    return Err("no earlier exchange to drop".into());
                }
                self.conversation.turns.drain(..2);
                eprintln!("oldest exchange dropped ({} turns left)", self.conversation.turns.len());
                Ok(())
            }
            ChatInput::Save(path) => {
                transcript::save(&self.conversation, &path)?;
                eprintln!("saved to {}", path.display());
                Ok(())
            }
            ChatInput::Load(path) => {
                let loaded = transcript::load(&path)?;
                for image in loaded.images() {
                    self.image(image)?;
                }
                self.conversation = loaded;
                self.pending_images.clear();
                self.retries = 0;
                if self.conversation.turns.last().is_some_and(|t| t.role == Role::User) {
                    return self.answer();
                }
                eprintln!("loaded {} turns from {}", self.conversation.turns.len(), path.display());
                Ok(())
            }
            ChatInput::Set(setting) => {
                self.set(setting);
                Ok(())
            }
            ChatInput::Show => {
                self.show();
                Ok(())
            }
            ChatInput::Stats => {
                match &self.last_stats {
                    Some(s) => eprintln!("{}", terminal::stats_line(s)),
                    None => eprintln!("no answer yet"),
                }
                Ok(())
            }
            ChatInput::Quit => Ok(()),
        }
    }

    /// Reads (once) and checks an image.
    fn image(&mut self, path: &PathBuf) -> Result<ImageInput, String> {
        if let Some(img) = self.image_cache.get(path) {
            return Ok(img.clone());
        }
        let side = self.engine.image_size().unwrap_or(896);
        let img = ImageInput::load(path, self.image_fit, side).map_err(|e| e.to_string())?;
        self.image_cache.insert(path.clone(), img.clone());
        Ok(img)
    }

    fn attach(&mut self, paths: Vec<PathBuf>) -> Result<(), String> {
        if !self.engine.has_vision() {
            return Err(EngineError::ImagesWithoutMmproj.to_string());
        }
        for p in &paths {
            self.image(p)?;
        }
        eprintln!("{} image(s) attached to the next message", paths.len());
        self.pending_images.extend(paths);
        Ok(())
    }

    fn send(&mut self, text: String) -> Result<(), String> {
        if text.trim().is_empty() && self.pending_images.is_empty() {
            return Ok(());
        }
        let images = std::mem::take(&mut self.pending_images);
        self.conversation.turns.push(Turn::user(text, images));
        self.retries = 0;
        if let Err(e) = self.answer() {
            if let Some(turn) = self.conversation.turns.pop() {
                self.pending_images = turn.images;
            }
            return Err(e);
        }
        Ok(())
    }

    /// After the conversation shrank: drop the KV positions that no longer belong to it.
    fn drop_stale_kv(&mut self) {
        if self.conversation.turns.is_empty() {
            self.session.truncate(0);
        }
        // Otherwise the next evaluation keeps the common prefix and drops the rest.
    }

    /// Answers the conversation's last user turn, streaming to stdout.
    fn answer(&mut self) -> Result<(), String> {
        let images = self
            .conversation
            .images()
            .cloned()
            .collect::<Vec<_>>()
            .iter()
            .map(|p| self.image(p))
            .collect::<Result<Vec<_>, _>>()?;
        let prompt = self
            .session
            .prepare(&self.conversation, &images)
            .map_err(|e| e.to_string())?;
        if prompt.n_tokens() + 1 > self.session.ctx_size() as usize {
            return Err(format!(
                "the conversation no longer fits in the context ({} tokens of {}): /drop forgets the oldest exchange \
                 (the system prompt stays), /clear starts over, or restart with a larger -c/--ctx-size",
                prompt.n_tokens(),
                self.session.ctx_size()
            ));
        }
        self.session
            .evaluate(&prompt, &mut ImageProgress::new(images.len(), self.verbose))
            .map_err(|e| e.to_string())?;
        let mut sampling = self.sampling.clone();
        if !sampling.is_greedy() {
            sampling.seed = sampling.seed.wrapping_add(self.retries);
        }
        interrupt::reset();
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        let show_thinking = self.show_thinking;
        let mut on_token = |t: &crate::engine::GeneratedToken| {
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
        let generation = self
            .session
            .generate(&sampling, &mut on_token)
            .map_err(|e| e.to_string())?;
        interrupt::reset();
        let _ = writeln!(out);
        let _ = out.flush();
        let interrupted = generation.finish == FinishReason::Interrupted;
        if interrupted {
            eprintln!("[interrupted: the partial answer stays in the conversation]");
        }
        if generation.finish == FinishReason::ContextFull {
            eprintln!("[the context is full: /drop or /clear to go on]");
        }
        self.conversation.turns.push(Turn::model(
            generation.text.trim(),
            Some(generation.in_context.clone()),
            interrupted,
        ));
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

    fn set(&mut self, setting: Setting) {
        match setting {
            Setting::Temperature(v) => self.sampling.temperature = v,
            Setting::TopK(v) => self.sampling.top_k = v,
            Setting::TopP(v) => self.sampling.top_p = v,
            Setting::MinP(v) => self.sampling.min_p = v,
            Setting::Seed(v) => self.sampling.seed = v,
            Setting::MaxTokens(v) => self.sampling.max_tokens = v,
            Setting::Thinking(v) => self.show_thinking = v,
        }
        eprintln!("ok");
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
        eprintln!("system:    {}", self.conversation.system.as_deref().unwrap_or("(none)"));
        eprintln!("turns:     {}", self.conversation.turns.len());
        let p = &self.sampling;
        eprintln!(
            "sampling:  temp {} top-k {} top-p {} min-p {} seed {} max-tokens {}",
            p.temperature, p.top_k, p.top_p, p.min_p, p.seed, p.max_tokens
        );
        eprintln!("thinking:  {}", if self.show_thinking { "shown" } else { "hidden" });
    }
}
