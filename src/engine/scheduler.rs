//! The scheduler: N sequences in one context, each evaluating a prompt (from the longest prefix any sequence
//! holds) and then decoding an answer, all sequences' next tokens in one batch per step (continuous batching).
//! `run` and `chat` are its one-sequence case ([`super::Session`]); `batch --parallel N` submits jobs as sequences
//! free up; a server would do the same with requests.
//!
//! Owns: the ledger of every sequence, the one prefill (text and image spans, one failure rule), the running
//! answers and their decoders, the step. Must not: read files, know about jobs or commands (a caller's tag `T`
//! identifies an answer), or print.
//!
//! Failure rules. Prefill: the sequence keeps what was evaluated before the failing span or chunk, and the error
//! goes back to the caller. Step: when a batched decode fails, each sequence's token is decoded alone; a sequence
//! whose own decode fails finishes with that error, and the others go on.

use std::time::Instant;

use llama_cpp_2::token::LlamaToken;

use super::context::{context_size, Batch, Context};
use super::decoder::{Decoder, FinishReason, GeneratedToken, Generation, Next, SessionStats};
use super::error::EngineError;
use super::layout::{best_free_sequence, Pending, Position, Reuse};
use super::ledger::Ledger;
use super::model::Engine;
use super::prepare::{Payload, PreparedPrompt};
use crate::settings::{ContextSettings, SamplingSettings};

/// Told about slow steps while a prompt is evaluated (image encoding takes about a minute on a laptop CPU).
pub trait EvalObserver {
    fn image_started(&mut self, _index: usize, _path: &std::path::Path) {}
    fn image_finished(&mut self, _index: usize, _elapsed: std::time::Duration) {}
}

/// An observer that ignores everything.
pub struct NoObserver;
impl EvalObserver for NoObserver {}

/// Called with each token of each answer; `Break` stops that answer (finish reason `Interrupted`).
pub type OnAnswerToken<'a, T> = dyn FnMut(&T, &GeneratedToken) -> std::ops::ControlFlow<()> + 'a;

/// A finished answer: its generation, or the error that ended it.
pub struct Finished<T> {
    pub tag: T,
    pub result: Result<Generation, EngineError>,
    pub stats: SessionStats,
}

/// What a prefill did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefilled {
    /// Positions evaluated.
    pub evaluated: usize,
    /// Positions taken from the cache (the sequence's own, or copied from another sequence).
    pub cached: usize,
}

struct Running<T> {
    tag: T,
    decoder: Decoder,
    /// The last sampled token, decoded at the next step.
    pending: LlamaToken,
}

pub struct Scheduler<'e, T> {
    engine: &'e Engine,
    ctx: Context<'e>,
    ledger: Ledger,
    running: Vec<Option<Running<T>>>,
    /// Sequences keep what they hold after an answer, for later prompts (needs the sliding-window layers' whole
    /// cache); without it every prompt starts from an empty sequence.
    keep_prefixes: bool,
    /// The sequence whose last evaluated position has logits at batch index -1, if any.
    logits_of: Option<usize>,
}

impl<'e, T> Scheduler<'e, T> {
    /// A context of `n_seq` sequences of the usual context size each (see [`ContextSettings`]).
    pub fn new(
        engine: &'e Engine,
        settings: &ContextSettings,
        n_seq: usize,
        keep_prefixes: bool,
    ) -> Result<Self, EngineError> {
        let n_seq = n_seq.max(1);
        let n_ctx = context_size(engine, settings);
        let ctx = Context::new(engine, settings, n_ctx, n_seq as u32, keep_prefixes)?;
        Ok(Scheduler {
            engine,
            ctx,
            ledger: Ledger::new(n_seq),
            running: (0..n_seq).map(|_| None).collect(),
            keep_prefixes,
            logits_of: None,
        })
    }

    pub fn engine(&self) -> &'e Engine {
        self.engine
    }

    /// The context size of each sequence.
    pub fn ctx_size(&self) -> u32 {
        self.ctx.n_ctx()
    }

    /// Positions sequence `seq` holds.
    pub fn used(&self, seq: usize) -> usize {
        self.ledger.len(seq)
    }

    /// Answers being decoded.
    pub fn active(&self) -> usize {
        self.running.iter().filter(|r| r.is_some()).count()
    }

    /// The free sequence best placed for `prompt` (the one holding the longest prefix of it), if any is free.
    pub fn free_sequence_for(&self, prompt: &PreparedPrompt) -> Option<usize> {
        let free: Vec<bool> = self.running.iter().map(Option::is_none).collect();
        best_free_sequence(&prompt.layout, &self.ledger.all(), &free)
    }

    /// The one "prompt fits" rule: the prompt and at least one answer token fit in a sequence.
    pub fn check_fits(&self, prompt: &PreparedPrompt) -> Result<(), EngineError> {
        if prompt.n_tokens() + 1 > self.ctx.n_ctx() as usize {
            return Err(EngineError::PromptTooLong {
                prompt_tokens: prompt.n_tokens(),
                ctx_size: self.ctx.n_ctx(),
                trained: self.engine.model.n_ctx_train(),
            });
        }
        Ok(())
    }

    /// Drops sequence `seq`'s positions from `keep` on (`keep` = 0 forgets everything).
    pub fn truncate(&mut self, seq: usize, keep: usize) {
        if keep >= self.ledger.len(seq) {
            return;
        }
        let removed = self.ctx.remove_from(seq, keep);
        if !removed {
            self.ctx.clear_sequence(seq);
        }
        self.ledger.truncated(seq, keep, removed);
        if self.logits_of == Some(seq) {
            self.logits_of = None;
        }
    }

    /// Gives `seq` the reusable prefix chosen by the layout (its own, or a copy of another sequence's stream);
    /// returns how many positions it holds.
    fn reuse(&mut self, seq: usize, prompt: &PreparedPrompt) -> usize {
        let plan = if self.keep_prefixes {
            prompt.layout.plan_reuse(seq, &self.ledger.all())
        } else {
            Reuse::Own { keep: 0 }
        };
        match plan {
            Reuse::Own { keep } => {
                self.truncate(seq, keep);
                self.ledger.len(seq)
            }
            Reuse::Copy { source, keep } => {
                let copied = self.ctx.copy_stream(source, seq) && self.ctx.remove_from(seq, keep);
                if !copied {
                    self.ctx.clear_sequence(seq);
                }
                if self.logits_of == Some(seq) {
                    self.logits_of = None;
                }
                self.ledger.copied(source, seq, keep, copied)
            }
        }
    }

    /// The one prefill: evaluates `prompt` (the whole conversation for this sequence) in sequence `seq`, keeping
    /// the longest prefix that can be reused. On failure the sequence keeps what was evaluated before the failing
    /// span or chunk.
    pub fn prefill(
        &mut self,
        seq: usize,
        prompt: &PreparedPrompt,
        observer: &mut dyn EvalObserver,
    ) -> Result<Prefilled, EngineError> {
        self.check_fits(prompt)?;
        let cached = self.reuse(seq, prompt);
        self.logits_of = None;
        let layout = &prompt.layout;
        let mut image_index = layout.spans().iter().filter(|s| s.image && s.end() <= cached).count();
        for Pending { span, from, last } in layout.pending(cached) {
            let s = layout.spans()[span];
            let positions = &layout.positions()[from..s.end()];
            let outcome = match &prompt.payloads[span] {
                Payload::Tokens(tokens) => {
                    let tokens = &tokens[from - s.start..];
                    let n = tokens.len();
                    let wants = |i: usize| last && i + 1 == n;
                    self.ctx.decode_tokens(seq, from, tokens, &wants, &mut |_, _, _| {})
                }
                Payload::Image { path, chunks } => {
                    observer.image_started(image_index, path);
                    let t = Instant::now();
                    let result = self.ctx.eval_image(chunks, path, seq, from, last).map(|end| {
                        debug_assert_eq!(end, s.end());
                    });
                    observer.image_finished(image_index, t.elapsed());
                    image_index += 1;
                    result.map_err(|e| (0, e))
                }
            };
            match outcome {
                Ok(()) => self.ledger.extend(seq, positions),
                Err((done, e)) => {
                    self.ledger.extend(seq, &positions[..done]);
                    let held = self.ledger.len(seq);
                    let removed = self.ctx.remove_from(seq, held);
                    if !removed {
                        self.ctx.clear_sequence(seq);
                    }
                    self.ledger.truncated(seq, held, removed);
                    return Err(e);
                }
            }
        }
        self.logits_of = Some(seq);
        Ok(Prefilled {
            evaluated: layout.n_positions() - cached,
            cached,
        })
    }

    /// The logits at sequence `seq`'s last evaluated position (empty when its last evaluation produced none).
    pub fn last_logits(&self, seq: usize) -> Vec<f32> {
        if self.logits_of != Some(seq) {
            return Vec::new();
        }
        self.ctx.logits(-1).to_vec()
    }

    /// Starts answering in sequence `seq` right after its prefill: samples the first token. An answer that ends at
    /// once comes back finished.
    pub fn start(
        &mut self,
        seq: usize,
        tag: T,
        sampling: &SamplingSettings,
        prompt_started: Instant,
        stats: SessionStats,
        on_token: &mut OnAnswerToken<'_, T>,
    ) -> Option<Finished<T>> {
        let mut decoder = Decoder::new(self.engine, sampling, prompt_started, stats);
        if decoder.is_exhausted() {
            return Some(self.finished(tag, decoder, Ok(FinishReason::Length), on_token));
        }
        if self.logits_of != Some(seq) {
            let e = EngineError::Decode("no logits to sample from (empty prompt?)".into());
            return Some(self.finished(tag, decoder, Err(e), on_token));
        }
        let n_past = self.ledger.len(seq);
        let n_ctx = self.ctx.n_ctx() as usize;
        let next = decoder.next(&self.ctx, -1, n_past, n_ctx, &mut |t| on_token(&tag, t));
        self.logits_of = None;
        match next {
            Next::Decode(pending) => {
                self.running[seq] = Some(Running { tag, decoder, pending });
                None
            }
            Next::Finish(reason) => Some(self.finished(tag, decoder, Ok(reason), on_token)),
        }
    }

    /// Checks the prompt, picks a free sequence, evaluates the prompt there and starts the answer. `Err` gives the
    /// tag back with the error when the prompt could not be evaluated.
    pub fn submit(
        &mut self,
        tag: T,
        prompt: &PreparedPrompt,
        sampling: &SamplingSettings,
        on_token: &mut OnAnswerToken<'_, T>,
    ) -> Result<Option<Finished<T>>, (T, EngineError)> {
        let Some(seq) = self.free_sequence_for(prompt) else {
            return Err((tag, EngineError::Decode("no free sequence".into())));
        };
        let started = Instant::now();
        let prefilled = match self.prefill(seq, prompt, &mut NoObserver) {
            Ok(p) => p,
            Err(e) => return Err((tag, e)),
        };
        let stats = SessionStats {
            prompt_tokens: prefilled.evaluated,
            prompt_ms: started.elapsed().as_secs_f64() * 1000.0,
            ..SessionStats::default()
        };
        Ok(self.start(seq, tag, sampling, started, stats, on_token))
    }

    /// Decodes the next token of every running answer together; returns the answers that finished.
    pub fn step(&mut self, on_token: &mut OnAnswerToken<'_, T>) -> Vec<Finished<T>> {
        let order: Vec<usize> = (0..self.running.len()).filter(|&s| self.running[s].is_some()).collect();
        if order.is_empty() {
            return Vec::new();
        }
        let mut batch = Batch::new(order.len(), order.len());
        let mut failed: Vec<(usize, EngineError)> = Vec::new();
        for &seq in &order {
            let pending = self.running[seq].as_ref().expect("running").pending;
            if let Err(e) = batch.add(pending, self.ledger.len(seq), seq, true) {
                failed.push((seq, e));
            }
        }
        if failed.is_empty() && self.ctx.decode(&mut batch).is_ok() {
        } else {
            // Find out whose token fails: each sequence alone (its logits are read before the next decode).
            let mut finished = Vec::new();
            failed.clear();
            for &seq in &order {
                match self.decode_alone(seq) {
                    Ok(()) => finished.extend(self.sample(seq, -1, on_token)),
                    Err(e) => failed.push((seq, e)),
                }
            }
            return self.fail(failed, finished, on_token);
        }
        let mut finished = Vec::new();
        for (i, seq) in order.into_iter().enumerate() {
            let i = i as i32;
            self.record_decoded(seq);
            if let Some(f) = self.sample(seq, i, on_token) {
                finished.push(f);
            }
        }
        finished
    }

    /// Decodes sequence `seq`'s pending token in a batch of its own and records it.
    fn decode_alone(&mut self, seq: usize) -> Result<(), EngineError> {
        let pending = self.running[seq].as_ref().expect("running").pending;
        let mut batch = Batch::new(1, 1);
        batch.add(pending, self.ledger.len(seq), seq, true)?;
        self.ctx.decode(&mut batch)?;
        self.record_decoded(seq);
        Ok(())
    }

    fn record_decoded(&mut self, seq: usize) {
        let running = self.running[seq].as_mut().expect("running");
        running.decoder.decoded(running.pending);
        self.ledger.push(seq, Position::Token(running.pending.0));
    }

    /// Samples sequence `seq`'s next token from the i-th logits of the last batch.
    fn sample(&mut self, seq: usize, i: i32, on_token: &mut OnAnswerToken<'_, T>) -> Option<Finished<T>> {
        let n_past = self.ledger.len(seq);
        let n_ctx = self.ctx.n_ctx() as usize;
        let mut running = self.running[seq].take().expect("running");
        let tag = &running.tag;
        match running
            .decoder
            .next(&self.ctx, i, n_past, n_ctx, &mut |t| on_token(tag, t))
        {
            Next::Decode(token) => {
                running.pending = token;
                self.running[seq] = Some(running);
                None
            }
            Next::Finish(reason) => Some(self.finished(running.tag, running.decoder, Ok(reason), on_token)),
        }
    }

    /// Ends the answers whose decode failed; the cache and ledger of each keep what was decoded before.
    fn fail(
        &mut self,
        failed: Vec<(usize, EngineError)>,
        mut finished: Vec<Finished<T>>,
        on_token: &mut OnAnswerToken<'_, T>,
    ) -> Vec<Finished<T>> {
        for (seq, e) in failed {
            let held = self.ledger.len(seq);
            let removed = self.ctx.remove_from(seq, held);
            if !removed {
                self.ctx.clear_sequence(seq);
            }
            self.ledger.truncated(seq, held, removed);
            let running = self.running[seq].take().expect("running");
            finished.push(self.finished(running.tag, running.decoder, Err(e), on_token));
        }
        finished
    }

    /// Decodes extra tokens at the end of sequence `seq` (no answer running there): a conversation puts its
    /// answer's last token into the cache, so that the next turn continues from all of it.
    pub fn append(&mut self, seq: usize, tokens: &[i32]) -> Result<(), EngineError> {
        let from = self.ledger.len(seq);
        let tokens: Vec<LlamaToken> = tokens.iter().map(|&t| LlamaToken(t)).collect();
        let result = self
            .ctx
            .decode_tokens(seq, from, &tokens, &|_| false, &mut |_, _, _| {});
        let done = match &result {
            Ok(()) => tokens.len(),
            Err((done, _)) => *done,
        };
        let positions: Vec<Position> = tokens[..done].iter().map(|t| Position::Token(t.0)).collect();
        self.ledger.extend(seq, &positions);
        self.logits_of = None;
        result.map_err(|(_, e)| e)
    }

    fn finished(
        &self,
        tag: T,
        decoder: Decoder,
        outcome: Result<FinishReason, EngineError>,
        on_token: &mut OnAnswerToken<'_, T>,
    ) -> Finished<T> {
        let (reason, error) = match outcome {
            Ok(r) => (r, None),
            Err(e) => (FinishReason::Interrupted, Some(e)),
        };
        let (generation, stats) = decoder.finish(reason, &mut |t| on_token(&tag, t));
        Finished {
            tag,
            result: match error {
                None => Ok(generation),
                Some(e) => Err(e),
            },
            stats,
        }
    }
}
