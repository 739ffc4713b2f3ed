//! A session: the one-sequence case of the [`Scheduler`], for `run` and `chat` (and eval-quant's answers).
//! Evaluate a prompt (the whole conversation so far), then generate an answer with a callback per token.

use std::ops::ControlFlow;
use std::time::Instant;

use super::decoder::{FinishReason, GeneratedToken, Generation, SessionStats};
use super::error::EngineError;
use super::model::Engine;
use super::prepare::PreparedPrompt;
use super::scheduler::{EvalObserver, LlamaScheduler, Scheduler};
use crate::conversation::Conversation;
use crate::image_input::ImageInput;
use crate::settings::{ContextSettings, SamplingSettings};

/// One sequence on a loaded model.
pub struct Session<'e> {
    engine: &'e Engine,
    pub(super) scheduler: LlamaScheduler<'e, ()>,
    /// A conversation keeps every answer token in the cache (the next turn continues from all of it).
    conversation: bool,
    eval_started: Option<Instant>,
    stats: SessionStats,
}

impl<'e> Session<'e> {
    /// A session for one prompt (run). The context size defaults to the smaller of 8192 and the model's trained
    /// length.
    pub fn new(engine: &'e Engine, settings: &ContextSettings) -> Result<Session<'e>, EngineError> {
        Self::create(engine, settings, false)
    }

    /// A session for a conversation that grows and shrinks turn by turn (chat): what the cache holds of each new
    /// prompt is kept (the sliding-window layers keep their whole cache so that dropping a tail is valid).
    pub fn for_conversation(engine: &'e Engine, settings: &ContextSettings) -> Result<Session<'e>, EngineError> {
        Self::create(engine, settings, true)
    }

    fn create(engine: &'e Engine, settings: &ContextSettings, conversation: bool) -> Result<Session<'e>, EngineError> {
        Ok(Session {
            engine,
            scheduler: Scheduler::new(engine, settings, 1, conversation)?,
            conversation,
            eval_started: None,
            stats: SessionStats::default(),
        })
    }

    /// The context size in tokens.
    pub fn ctx_size(&self) -> u32 {
        self.scheduler.ctx_size()
    }

    /// KV positions in use.
    pub fn used(&self) -> usize {
        self.scheduler.used(0)
    }

    pub fn stats(&self) -> &SessionStats {
        &self.stats
    }

    /// Renders, tokenizes and preprocesses `conversation` (with its images already read, in prompt order).
    pub fn prepare(&self, conversation: &Conversation, images: &[ImageInput]) -> Result<PreparedPrompt, EngineError> {
        self.engine.prepare(conversation, images)
    }

    /// Checks that `prompt` (the whole conversation so far) fits in the context, with room for at least one
    /// answer token.
    pub fn check_fits(&self, prompt: &PreparedPrompt) -> Result<(), EngineError> {
        self.scheduler.check_fits(prompt)
    }

    /// Drops every KV position from `keep` on (`keep` = 0 forgets everything).
    pub fn truncate(&mut self, keep: usize) {
        self.scheduler.truncate(0, keep);
    }

    /// Evaluates `prompt`, the whole conversation so far; what the context already holds of it is kept. Refuses a
    /// prompt that does not fit. Returns how many positions were evaluated.
    pub fn evaluate(&mut self, prompt: &PreparedPrompt, observer: &mut dyn EvalObserver) -> Result<usize, EngineError> {
        let started = Instant::now();
        self.eval_started = Some(started);
        let prefilled = self.scheduler.prefill(0, prompt, observer)?;
        self.stats = SessionStats {
            prompt_tokens: prefilled.evaluated,
            prompt_ms: started.elapsed().as_secs_f64() * 1000.0,
            ..SessionStats::default()
        };
        Ok(prefilled.evaluated)
    }

    /// The logits at the last evaluated position (empty if the last evaluation produced none).
    pub fn last_logits(&self) -> Vec<f32> {
        self.scheduler.last_logits(0)
    }

    /// Generates an answer after the evaluated prompt. `on_token` sees each token as it comes and may stop
    /// generation by returning `ControlFlow::Break`.
    pub fn generate(
        &mut self,
        sampling: &SamplingSettings,
        on_token: &mut dyn FnMut(&GeneratedToken) -> ControlFlow<()>,
    ) -> Result<Generation, EngineError> {
        let started = self.eval_started.take().unwrap_or_else(Instant::now);
        let mut each = |_: &(), t: &GeneratedToken| on_token(t);
        let mut finished = self
            .scheduler
            .start(0, (), sampling, started, self.stats.clone(), &mut each);
        while finished.is_none() {
            finished = self.scheduler.step(&mut each).pop();
        }
        let finished = finished.expect("an answer finished");
        let mut generation = finished.result?;
        self.stats = finished.stats;
        if self.conversation && generation.finish == FinishReason::Length {
            // The answer's last token was shown but not decoded: put it in the cache, as the next turn's prompt
            // will hold it.
            if let Some(&last) = generation.tokens.last() {
                if self.used() < self.ctx_size() as usize {
                    self.scheduler.append(0, &[last])?;
                    generation.in_context.push(last);
                }
            }
        }
        Ok(generation)
    }
}
