//! The scheduler: N sequences in one context, each evaluating a prompt (from the longest prefix any sequence
//! holds) and then decoding an answer, all sequences' next tokens in one batch per step (continuous batching).
//! `run` and `chat` are its one-sequence case ([`super::Session`]); `batch --parallel N` and `serve` submit the
//! jobs (requests) waiting for the free sequences together, as sequences free up.
//!
//! Owns: the ledger of every sequence, the one prefill (text and image spans, one failure rule), the evaluation of
//! several text prompts in shared batches, the running answers and their decoders, the step. Must not: read files, know about jobs or commands (a caller's tag `T`
//! identifies an answer), or print.
//!
//! Failure rules. Prefill: the sequence keeps what was evaluated before the failing span or chunk, and the error
//! goes back to the caller. Step: when a batched decode fails, each sequence's token is decoded alone; a sequence
//! whose own decode fails finishes with that error, and the others go on.

use std::time::Instant;

use llama_cpp_2::token::LlamaToken;

use super::backend::{Backend, Row};
use super::context::{context_size, Context};
use super::decoder::{FinishReason, GeneratedToken, Generation, Next, SessionStats};
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

/// What submitting a prompt gave: an answer that finished at once, one that is running (None), or the tag back
/// with the error that kept the prompt from being evaluated.
pub type Submitted<T> = Result<Option<Finished<T>>, (T, EngineError)>;

/// What a prefill did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefilled {
    /// Positions evaluated.
    pub evaluated: usize,
    /// Positions taken from the cache (the sequence's own, or copied from another sequence).
    pub cached: usize,
}

/// A prompt of [`Scheduler::submit_many`] evaluated together with others: its tokens still to evaluate in `seq`
/// from position `from`, `done` of them so far.
struct Together<'p, T> {
    i: usize,
    tag: T,
    prompt: &'p PreparedPrompt,
    sampling: &'p SamplingSettings,
    seq: usize,
    started: Instant,
    from: usize,
    tokens: Vec<LlamaToken>,
    done: usize,
}

struct Running<T, A> {
    tag: T,
    answer: A,
    /// The last sampled token, decoded at the next step.
    pending: LlamaToken,
}

/// The scheduler over llama.cpp's context, as every command uses it.
pub type LlamaScheduler<'e, T> = Scheduler<T, Context<'e>>;

pub struct Scheduler<T, B: Backend> {
    backend: B,
    ledger: Ledger,
    running: Vec<Option<Running<T, B::Answer>>>,
    /// Sequences keep what they hold after an answer, for later prompts (needs the sliding-window layers' whole
    /// cache); without it every prompt starts from an empty sequence.
    keep_prefixes: bool,
    /// The sequence whose last evaluated position has logits at batch index -1, if any.
    logits_of: Option<usize>,
}

impl<'e, T> Scheduler<T, Context<'e>> {
    /// A llama.cpp context of `n_seq` sequences of the usual context size each (see [`ContextSettings`]).
    pub fn new(
        engine: &'e Engine,
        settings: &ContextSettings,
        n_seq: usize,
        keep_prefixes: bool,
    ) -> Result<Self, EngineError> {
        let n_seq = n_seq.max(1);
        let n_ctx = context_size(engine, settings);
        let ctx = Context::new(engine, settings, n_ctx, n_seq as u32, keep_prefixes)?;
        Ok(Scheduler::with_backend(ctx, n_seq, keep_prefixes))
    }
}

impl<T, B: Backend> Scheduler<T, B> {
    /// A scheduler of `n_seq` sequences over `backend` (whose sequences are empty).
    pub(crate) fn with_backend(backend: B, n_seq: usize, keep_prefixes: bool) -> Self {
        Scheduler {
            backend,
            ledger: Ledger::new(n_seq),
            running: (0..n_seq).map(|_| None).collect(),
            keep_prefixes,
            logits_of: None,
        }
    }

    /// The context size of each sequence.
    pub fn ctx_size(&self) -> u32 {
        self.backend.n_ctx() as u32
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
        if prompt.n_tokens() + 1 > self.backend.n_ctx() {
            return Err(EngineError::PromptTooLong {
                prompt_tokens: prompt.n_tokens(),
                ctx_size: self.ctx_size(),
                trained: self.backend.trained_ctx(),
            });
        }
        Ok(())
    }

    /// Drops sequence `seq`'s positions from `keep` on (`keep` = 0 forgets everything).
    pub fn truncate(&mut self, seq: usize, keep: usize) {
        if keep >= self.ledger.len(seq) {
            return;
        }
        let removed = self.backend.remove_from(seq, keep);
        if !removed {
            self.backend.clear_sequence(seq);
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
                let copied = self.backend.copy_stream(source, seq) && self.backend.remove_from(seq, keep);
                if !copied {
                    self.backend.clear_sequence(seq);
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
                Payload::Tokens(tokens) => self.backend.decode_tokens(seq, from, &tokens[from - s.start..], last),
                Payload::Image(image) => {
                    let path = &image.path;
                    observer.image_started(image_index, path);
                    let t = Instant::now();
                    let result = self.backend.eval_image(image, seq, from, last).and_then(|end| {
                        if end == s.end() {
                            Ok(())
                        } else {
                            Err(EngineError::Decode(format!(
                                "image {} took {} positions, its layout {}",
                                path.display(),
                                end.saturating_sub(from),
                                s.len
                            )))
                        }
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
                    self.keep_what_the_ledger_holds(seq);
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
        self.backend.logits(-1)
    }

    /// Scores continuations of sequence `seq`'s prefilled prompt: the log-probability of each whole token
    /// sequence after it (the first token from the prefill's logits, each next one from the logits after the
    /// ones before it). Each continuation but its last token is decoded after the prompt and removed again, so the
    /// sequence holds just the prompt afterwards. `on_row(c, j, logits)` sees the logits that score token j of
    /// continuation c.
    pub fn score_continuations(
        &mut self,
        seq: usize,
        continuations: &[Vec<i32>],
        on_row: &mut dyn FnMut(usize, usize, &[f32]),
    ) -> Result<Vec<f64>, EngineError> {
        if self.logits_of != Some(seq) {
            return Err(EngineError::Decode("no logits to score from (empty prompt?)".into()));
        }
        let first = self.backend.logits(-1);
        self.logits_of = None;
        let n_past = self.ledger.len(seq);
        let mut scores = Vec::with_capacity(continuations.len());
        for (c, tokens) in continuations.iter().enumerate() {
            let tokens: Vec<LlamaToken> = tokens.iter().map(|&t| LlamaToken(t)).collect();
            let Some((&head, _)) = tokens.split_first() else {
                return Err(EngineError::Decode("an empty continuation cannot be scored".into()));
            };
            if n_past + tokens.len() > self.backend.n_ctx() {
                return Err(EngineError::PromptTooLong {
                    prompt_tokens: n_past + tokens.len(),
                    ctx_size: self.backend.n_ctx() as u32,
                    trained: self.backend.trained_ctx(),
                });
            }
            on_row(c, 0, &first);
            let mut total = super::choices::log_softmax_at(&first, head);
            let rest =
                self.backend
                    .decode_logprobs(seq, n_past, &tokens[..tokens.len() - 1], &tokens[1..], &mut |j, row| {
                        on_row(c, j + 1, row)
                    });
            // Whatever happened, the sequence goes back to holding just the prompt.
            if !self.backend.remove_from(seq, n_past) {
                self.backend.clear_sequence(seq);
                self.ledger.truncated(seq, 0, false);
                return Err(EngineError::Decode(
                    "llama.cpp could not remove a scored continuation".into(),
                ));
            }
            total += rest?.iter().sum::<f64>();
            scores.push(total);
        }
        Ok(scores)
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
        // The prefill's logits are at the last row of the last decode; they are used once.
        let row = (self.logits_of == Some(seq)).then_some(-1);
        if row.is_some() {
            self.logits_of = None;
        }
        self.start_from_row(seq, tag, sampling, prompt_started, stats, on_token, row)
    }

    /// [`Self::start`] sampling from row `row` of the last decode (None: there are no logits to sample from).
    #[allow(clippy::too_many_arguments)]
    fn start_from_row(
        &mut self,
        seq: usize,
        tag: T,
        sampling: &SamplingSettings,
        prompt_started: Instant,
        stats: SessionStats,
        on_token: &mut OnAnswerToken<'_, T>,
        row: Option<i32>,
    ) -> Option<Finished<T>> {
        let mut answer = match self.backend.new_answer(sampling, prompt_started, stats.clone()) {
            Ok(answer) => answer,
            Err(e) => {
                return Some(Finished {
                    tag,
                    result: Err(e),
                    stats,
                })
            }
        };
        if B::is_exhausted(&answer) {
            return Some(self.finished(tag, answer, Ok(FinishReason::Length), on_token));
        }
        let Some(row) = row else {
            let e = EngineError::Decode("no logits to sample from (empty prompt?)".into());
            return Some(self.finished(tag, answer, Err(e), on_token));
        };
        let n_past = self.ledger.len(seq);
        let next = self.backend.next(&mut answer, row, n_past, &mut |t| on_token(&tag, t));
        match next {
            Next::Decode(pending) => {
                self.running[seq] = Some(Running { tag, answer, pending });
                None
            }
            Next::Finish(reason) => Some(self.finished(tag, answer, Ok(reason), on_token)),
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
    ) -> Submitted<T> {
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

    /// Submits prompts waiting together (jobs for the free sequences): the first is evaluated alone, so that the
    /// others can copy what they share with it (a system prompt) instead of evaluating it again; then what the
    /// other text prompts still need is evaluated together, in batches that mix sequences (as llama-server
    /// does), so that many short prompts cost a few large decodes rather than many small ones. Prompts with
    /// images are evaluated one by one. Results come in the order given. When a mixed batch fails, the prompts in
    /// it keep what they held before it and are evaluated one by one, so a failure ends only the prompt it is in.
    pub fn submit_many(
        &mut self,
        prompts: Vec<(T, &PreparedPrompt, &SamplingSettings)>,
        on_token: &mut OnAnswerToken<'_, T>,
    ) -> Vec<Submitted<T>> {
        let mut results: Vec<Option<Submitted<T>>> = prompts.iter().map(|_| None).collect();
        let mut prompts = prompts.into_iter().enumerate();
        if let Some((i, (tag, prompt, sampling))) = prompts.next() {
            results[i] = Some(self.submit(tag, prompt, sampling, on_token));
        }
        let mut group: Vec<Together<'_, T>> = Vec::new();
        let mut alone = Vec::new();
        for (i, (tag, prompt, sampling)) in prompts {
            let text_only = prompt.payloads.iter().all(|p| matches!(p, Payload::Tokens(_)));
            let free: Vec<bool> = (0..self.running.len())
                .map(|s| self.running[s].is_none() && group.iter().all(|g| g.seq != s))
                .collect();
            let seq = match best_free_sequence(&prompt.layout, &self.ledger.all(), &free) {
                Some(seq) if text_only => seq,
                Some(_) => {
                    alone.push((i, tag, prompt, sampling));
                    continue;
                }
                None => {
                    results[i] = Some(Err((tag, EngineError::Decode("no free sequence".into()))));
                    continue;
                }
            };
            if let Err(e) = self.check_fits(prompt) {
                results[i] = Some(Err((tag, e)));
                continue;
            }
            let started = Instant::now();
            let cached = self.reuse(seq, prompt);
            self.logits_of = None;
            let tokens: Vec<LlamaToken> = prompt
                .layout
                .pending(cached)
                .iter()
                .flat_map(|p| match &prompt.payloads[p.span] {
                    Payload::Tokens(t) => t[p.from - prompt.layout.spans()[p.span].start..].to_vec(),
                    Payload::Image(_) => unreachable!("text-only prompts"),
                })
                .collect();
            if tokens.is_empty() {
                alone.push((i, tag, prompt, sampling));
                continue;
            }
            group.push(Together {
                i,
                tag,
                prompt,
                sampling,
                seq,
                started,
                from: cached,
                tokens,
                done: 0,
            });
        }
        let mut group: Vec<Option<Together<'_, T>>> = group.into_iter().map(Some).collect();
        let n_batch = self.backend.n_batch().max(1);
        loop {
            // One batch: each waiting prompt's next tokens in turn, as many as fit.
            let (mut rows, mut logits, mut taken) = (Vec::new(), Vec::new(), Vec::new());
            for (m, g) in group.iter().enumerate() {
                let Some(g) = g else { continue };
                let take = (n_batch - rows.len()).min(g.tokens.len() - g.done);
                if take == 0 {
                    break;
                }
                for j in g.done..g.done + take {
                    rows.push(Row {
                        token: g.tokens[j],
                        pos: g.from + j,
                        seq: g.seq,
                    });
                    logits.push(j + 1 == g.tokens.len());
                }
                taken.push((m, take));
            }
            if rows.is_empty() {
                break;
            }
            if self.backend.decode_prompt_rows(&rows, &logits).is_err() {
                for (m, _) in taken {
                    let g = group[m].take().expect("in the batch");
                    self.keep_what_the_ledger_holds(g.seq);
                    alone.push((g.i, g.tag, g.prompt, g.sampling));
                }
                continue;
            }
            let mut row = 0;
            for (m, take) in taken {
                let g = group[m].as_mut().expect("in the batch");
                let positions = &g.prompt.layout.positions()[g.from + g.done..g.from + g.done + take];
                self.ledger.extend(g.seq, positions);
                g.done += take;
                row += take;
                if g.done == g.tokens.len() {
                    let g = group[m].take().expect("in the batch");
                    let stats = SessionStats {
                        prompt_tokens: g.tokens.len(),
                        prompt_ms: g.started.elapsed().as_secs_f64() * 1000.0,
                        ..SessionStats::default()
                    };
                    let last = Some(row as i32 - 1);
                    results[g.i] = Some(Ok(
                        self.start_from_row(g.seq, g.tag, g.sampling, g.started, stats, on_token, last)
                    ));
                }
            }
        }
        for (i, tag, prompt, sampling) in alone {
            results[i] = Some(self.submit(tag, prompt, sampling, on_token));
        }
        results
            .into_iter()
            .map(|r| r.expect("every prompt has an outcome"))
            .collect()
    }

    /// Decodes the next token of every running answer together; returns the answers that finished.
    pub fn step(&mut self, on_token: &mut OnAnswerToken<'_, T>) -> Vec<Finished<T>> {
        let order: Vec<usize> = (0..self.running.len()).filter(|&s| self.running[s].is_some()).collect();
        if order.is_empty() {
            return Vec::new();
        }
        let rows: Vec<Row> = order.iter().map(|&seq| self.row(seq)).collect();
        if self.backend.decode_rows(&rows).is_err() {
            // Find out whose token fails: each sequence alone (its logits are read before the next decode).
            let mut finished = Vec::new();
            let mut failed = Vec::new();
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

    /// The row that decodes sequence `seq`'s pending token.
    fn row(&self, seq: usize) -> Row {
        Row {
            token: self.running[seq].as_ref().expect("running").pending,
            pos: self.ledger.len(seq),
            seq,
        }
    }

    /// Decodes sequence `seq`'s pending token in a batch of its own and records it.
    fn decode_alone(&mut self, seq: usize) -> Result<(), EngineError> {
        self.backend.decode_rows(&[self.row(seq)])?;
        self.record_decoded(seq);
        Ok(())
    }

    fn record_decoded(&mut self, seq: usize) {
        let running = self.running[seq].as_mut().expect("running");
        B::decoded(&mut running.answer, running.pending);
        self.ledger.push(seq, Position::Token(running.pending.0));
    }

    /// Samples sequence `seq`'s next token from the i-th logits of the last batch.
    fn sample(&mut self, seq: usize, i: i32, on_token: &mut OnAnswerToken<'_, T>) -> Option<Finished<T>> {
        let n_past = self.ledger.len(seq);
        let mut running = self.running[seq].take().expect("running");
        let tag = &running.tag;
        match self
            .backend
            .next(&mut running.answer, i, n_past, &mut |t| on_token(tag, t))
        {
            Next::Decode(token) => {
                running.pending = token;
                self.running[seq] = Some(running);
                None
            }
            Next::Finish(reason) => Some(self.finished(running.tag, running.answer, Ok(reason), on_token)),
        }
    }

    /// After a failed decode: drops whatever `seq`'s cache holds beyond the ledger (clearing the sequence, and its
    /// ledger, when llama.cpp cannot remove a tail).
    fn keep_what_the_ledger_holds(&mut self, seq: usize) {
        let held = self.ledger.len(seq);
        let removed = self.backend.remove_from(seq, held);
        if !removed {
            self.backend.clear_sequence(seq);
        }
        self.ledger.truncated(seq, held, removed);
    }

    /// Ends the answers whose decode failed; the cache and ledger of each keep what was decoded before.
    fn fail(
        &mut self,
        failed: Vec<(usize, EngineError)>,
        mut finished: Vec<Finished<T>>,
        on_token: &mut OnAnswerToken<'_, T>,
    ) -> Vec<Finished<T>> {
        for (seq, e) in failed {
            self.keep_what_the_ledger_holds(seq);
            let running = self.running[seq].take().expect("running");
            finished.push(self.finished(running.tag, running.answer, Err(e), on_token));
        }
        finished
    }

    /// Decodes extra tokens at the end of sequence `seq` (no answer running there): a conversation puts its
    /// answer's last token into the cache, so that the next turn continues from all of it.
    pub fn append(&mut self, seq: usize, tokens: &[i32]) -> Result<(), EngineError> {
        let from = self.ledger.len(seq);
        let tokens: Vec<LlamaToken> = tokens.iter().map(|&t| LlamaToken(t)).collect();
        let result = self.backend.decode_tokens(seq, from, &tokens, false);
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
        answer: B::Answer,
        outcome: Result<FinishReason, EngineError>,
        on_token: &mut OnAnswerToken<'_, T>,
    ) -> Finished<T> {
        let (reason, error) = match outcome {
            Ok(r) => (r, None),
            Err(e) => (FinishReason::Interrupted, Some(e)),
        };
        let (generation, stats) = B::finish(answer, reason, &mut |t| on_token(&tag, t));
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

#[cfg(test)]
mod tests {
    //! The scheduler against a deterministic stand-in model: each sequence's cache is the list of tokens decoded at
    //! its positions (a decode must write exactly the next position), and the token "predicted" after a sequence
    //! depends on everything it holds, so a ledger that disagreed with the cache, a wrong row read, or a prefix
    //! taken from the wrong place would change the answers.

    use std::ops::ControlFlow;
    use std::time::Instant;

    use llama_cpp_2::mtmd::MtmdInputChunks;
    use llama_cpp_2::token::LlamaToken;

    use super::super::backend::{Backend, Row};
    use super::super::decoder::{FinishReason, GeneratedToken, Generation, Next, OnToken, SessionStats};
    use super::super::error::EngineError;
    use super::super::layout::PromptLayout;
    use super::super::prepare::{ImageChunks, Payload, PreparedPrompt};
    use super::{NoObserver, Scheduler};
    use crate::settings::SamplingSettings;

    const EOG: i32 = 3;
    const IMAGE: i32 = -1;

    #[derive(Default)]
    struct Fake {
        n_ctx: usize,
        n_batch: usize,
        image_len: usize,
        kv: Vec<Vec<i32>>,
        /// The token predicted after each row of the last decode.
        rows: Vec<i32>,
        /// Decodes that write this position fail (nothing is written).
        fail_at: Option<usize>,
        refuse_removal: bool,
        /// Predict the end of the turn once a sequence holds this many positions.
        eog_at: Option<usize>,
        /// Rows per `decode_rows` call, positions written by prefills, and the sequences of each mixed prompt batch,
        /// for assertions.
        step_rows: Vec<usize>,
        prefilled: usize,
        prompt_batches: Vec<Vec<usize>>,
    }

    fn fake(n_seq: usize, n_ctx: usize) -> Fake {
        Fake {
            n_ctx,
            n_batch: 4,
            image_len: 5,
            kv: vec![Vec::new(); n_seq],
            ..Fake::default()
        }
    }

    impl Fake {
        fn predict(&self, seq: usize) -> i32 {
            let held = &self.kv[seq];
            if self.eog_at == Some(held.len()) {
                return EOG;
            }
            let h = held
                .iter()
                .fold(17i64, |h, &t| (h * 31 + i64::from(t)).rem_euclid(1_000_003));
            10 + (h % 40) as i32
        }

        fn write(&mut self, seq: usize, pos: usize, token: i32) {
            assert_eq!(
                pos,
                self.kv[seq].len(),
                "sequence {seq} must be written at its next position"
            );
            self.kv[seq].push(token);
        }

        fn fails(&self, positions: impl IntoIterator<Item = usize>) -> Option<EngineError> {
            let at = self.fail_at?;
            positions
                .into_iter()
                .any(|p| p == at)
                .then(|| EngineError::Decode(format!("injected at {at}")))
        }
    }

    struct Answer {
        out: Generation,
        max_tokens: usize,
        n_ctx: usize,
    }

    impl Backend for Fake {
        type Answer = Answer;

        fn n_ctx(&self) -> usize {
            self.n_ctx
        }
        fn trained_ctx(&self) -> u32 {
            self.n_ctx as u32
        }
        fn decode_rows(&mut self, rows: &[Row]) -> Result<(), EngineError> {
            if let Some(e) = self.fails(rows.iter().map(|r| r.pos)) {
                return Err(e);
            }
            self.step_rows.push(rows.len());
            for r in rows {
                self.write(r.seq, r.pos, r.token.0);
            }
            self.rows = rows.iter().map(|r| self.predict(r.seq)).collect();
            Ok(())
        }
        fn n_batch(&self) -> usize {
            self.n_batch
        }
        fn decode_prompt_rows(&mut self, rows: &[Row], logits: &[bool]) -> Result<(), EngineError> {
            assert!(rows.len() <= self.n_batch, "a batch holds at most n_batch rows");
            if let Some(e) = self.fails(rows.iter().map(|r| r.pos)) {
                return Err(e);
            }
            for r in rows {
                self.write(r.seq, r.pos, r.token.0);
            }
            self.prefilled += rows.len();
            let mut seqs: Vec<usize> = rows.iter().map(|r| r.seq).collect();
            seqs.dedup();
            self.prompt_batches.push(seqs);
            // A row without logits reads as garbage: sampling from the wrong row changes the answer.
            self.rows = rows
                .iter()
                .zip(logits)
                .map(|(r, &l)| if l { self.predict(r.seq) } else { -1000 })
                .collect();
            Ok(())
        }
        fn decode_tokens(
            &mut self,
            seq: usize,
            start: usize,
            tokens: &[LlamaToken],
            logits_last: bool,
        ) -> Result<(), (usize, EngineError)> {
            for (c, chunk) in tokens.chunks(self.n_batch).enumerate() {
                let first = c * self.n_batch;
                if let Some(e) = self.fails((0..chunk.len()).map(|j| start + first + j)) {
                    return Err((first, e));
                }
                for (j, t) in chunk.iter().enumerate() {
                    self.write(seq, start + first + j, t.0);
                }
                self.prefilled += chunk.len();
            }
            self.rows = if logits_last {
                vec![self.predict(seq)]
            } else {
                Vec::new()
            };
            Ok(())
        }
        fn eval_image(
            &mut self,
            _: &ImageChunks,
            seq: usize,
            n_past: usize,
            logits_last: bool,
        ) -> Result<usize, EngineError> {
            if let Some(e) = self.fails(n_past..n_past + self.image_len) {
                return Err(e);
            }
            for k in 0..self.image_len {
                self.write(seq, n_past + k, IMAGE);
            }
            self.prefilled += self.image_len;
            self.rows = if logits_last {
                vec![self.predict(seq)]
            } else {
                Vec::new()
            };
            Ok(n_past + self.image_len)
        }
        fn remove_from(&mut self, seq: usize, from: usize) -> bool {
            if self.refuse_removal {
                return false;
            }
            self.kv[seq].truncate(from);
            true
        }
        fn clear_sequence(&mut self, seq: usize) {
            self.kv[seq].clear();
        }
        fn copy_stream(&mut self, src: usize, dst: usize) -> bool {
            self.kv[dst] = self.kv[src].clone();
            true
        }
        fn logits(&self, i: i32) -> Vec<f32> {
            let i = if i < 0 { self.rows.len() - 1 } else { i as usize };
            vec![self.rows[i] as f32]
        }
        fn decode_logprobs(
            &mut self,
            seq: usize,
            start: usize,
            tokens: &[LlamaToken],
            next: &[LlamaToken],
            _: &mut dyn FnMut(usize, &[f32]),
        ) -> Result<Vec<f64>, EngineError> {
            self.decode_tokens(seq, start, tokens, false).map_err(|(_, e)| e)?;
            Ok(next.iter().map(|t| -f64::from(t.0)).collect())
        }
        fn new_answer(&self, sampling: &SamplingSettings, _: Instant, _: SessionStats) -> Result<Answer, EngineError> {
            Ok(Answer {
                out: Generation {
                    tokens: Vec::new(),
                    in_context: Vec::new(),
                    text: String::new(),
                    thinking: String::new(),
                    finish: FinishReason::Length,
                },
                max_tokens: sampling.max_tokens,
                n_ctx: self.n_ctx,
            })
        }
        fn is_exhausted(a: &Answer) -> bool {
            a.out.tokens.len() >= a.max_tokens
        }
        fn next(&self, a: &mut Answer, i: i32, n_past: usize, on_token: &mut OnToken<'_>) -> Next {
            let token = self.logits(i)[0] as i32;
            a.out.tokens.push(token);
            if token == EOG {
                return Next::Finish(FinishReason::Stop);
            }
            let text = format!("{token} ");
            a.out.text.push_str(&text);
            if on_token(&GeneratedToken { text, thinking: false }).is_break() {
                return Next::Finish(FinishReason::Interrupted);
            }
            if a.out.tokens.len() >= a.max_tokens {
                return Next::Finish(FinishReason::Length);
            }
            if n_past >= a.n_ctx {
                return Next::Finish(FinishReason::ContextFull);
            }
            Next::Decode(LlamaToken(token))
        }
        fn decoded(a: &mut Answer, token: LlamaToken) {
            a.out.in_context.push(token.0);
        }
        fn finish(mut a: Answer, reason: FinishReason, _: &mut OnToken<'_>) -> (Generation, SessionStats) {
            a.out.finish = reason;
            let stats = SessionStats {
                generated_tokens: a.out.tokens.len(),
                ..SessionStats::default()
            };
            (a.out, stats)
        }
    }

    fn text(tokens: &[i32]) -> PreparedPrompt {
        let mut layout = PromptLayout::default();
        layout.push_tokens(tokens.iter().copied());
        PreparedPrompt {
            layout,
            payloads: vec![Payload::Tokens(tokens.iter().map(|&t| LlamaToken(t)).collect())],
        }
    }

    /// `before` tokens, an image of the fake's 5 positions (known by `sha`), then `after` tokens.
    fn with_image(before: &[i32], sha: &str, after: &[i32]) -> PreparedPrompt {
        use super::super::layout::Position;
        let mut layout = PromptLayout::default();
        layout.push_tokens(before.iter().copied());
        let sha: std::sync::Arc<str> = sha.into();
        layout.push_image((0..5).map(|k| Position::Image(sha.clone(), k)));
        layout.push_tokens(after.iter().copied());
        let tokens = |t: &[i32]| Payload::Tokens(t.iter().map(|&t| LlamaToken(t)).collect());
        PreparedPrompt {
            layout,
            payloads: vec![
                tokens(before),
                Payload::Image(ImageChunks {
                    path: "scan.png".into(),
                    pixels: sha.clone(),
                    chunks: std::sync::Arc::new(MtmdInputChunks::new()),
                }),
                tokens(after),
            ],
        }
    }

    fn sampling(max_tokens: usize) -> SamplingSettings {
        SamplingSettings {
            max_tokens,
            ..SamplingSettings::default()
        }
    }

    type Sched = Scheduler<usize, Fake>;

    fn quiet(_: &usize, _: &GeneratedToken) -> ControlFlow<()> {
        ControlFlow::Continue(())
    }

    /// Submits every prompt (as sequences free up) and steps until all answers are done; answers by prompt index.
    fn run_all(s: &mut Sched, prompts: &[PreparedPrompt], max_tokens: &[usize]) -> Vec<Result<Generation, String>> {
        run_waves(s, prompts, max_tokens, false)
    }

    /// Like [`run_all`], but the prompts for the free sequences are submitted together ([`Sched::submit_many`]).
    fn run_all_together(
        s: &mut Sched,
        prompts: &[PreparedPrompt],
        max_tokens: &[usize],
    ) -> Vec<Result<Generation, String>> {
        run_waves(s, prompts, max_tokens, true)
    }

    fn run_waves(
        s: &mut Sched,
        prompts: &[PreparedPrompt],
        max_tokens: &[usize],
        together: bool,
    ) -> Vec<Result<Generation, String>> {
        let mut out: Vec<Option<Result<Generation, String>>> = prompts.iter().map(|_| None).collect();
        let samplings: Vec<SamplingSettings> = max_tokens.iter().map(|&m| sampling(m)).collect();
        let mut next = 0;
        loop {
            let mut waiting = Vec::new();
            while s.active() + waiting.len() < s.running.len() && next < prompts.len() {
                waiting.push((next, &prompts[next], &samplings[next]));
                next += 1;
            }
            let outcomes = if together {
                s.submit_many(waiting, &mut quiet)
            } else {
                waiting
                    .into_iter()
                    .map(|(tag, p, sampling)| s.submit(tag, p, sampling, &mut quiet))
                    .collect()
            };
            for outcome in outcomes {
                match outcome {
                    Ok(Some(f)) => out[f.tag] = Some(f.result.map_err(|e| e.to_string())),
                    Ok(None) => {}
                    Err((tag, e)) => out[tag] = Some(Err(e.to_string())),
                }
            }
            if s.active() == 0 {
                if next >= prompts.len() {
                    break;
                }
                continue;
            }
            for f in s.step(&mut quiet) {
                out[f.tag] = Some(f.result.map_err(|e| e.to_string()));
            }
        }
        out.into_iter().map(|o| o.expect("every prompt answered")).collect()
    }

    /// Runs `prompts` at each of `n_seqs` sequences and checks that every answer is the prompt's answer alone;
    /// gives back each run's scheduler for further checks.
    fn check_answers_as_alone(
        prompts: &[PreparedPrompt],
        max: &[usize],
        n_seqs: &[usize],
        together: bool,
    ) -> Vec<Sched> {
        let reference: Vec<Vec<i32>> = prompts.iter().zip(max).map(|(p, &m)| alone(p, m)).collect();
        n_seqs
            .iter()
            .map(|&n_seq| {
                let mut s = Sched::with_backend(fake(n_seq, 64), n_seq, true);
                let got: Vec<Vec<i32>> = run_waves(&mut s, prompts, max, together)
                    .into_iter()
                    .map(|g| g.unwrap().tokens)
                    .collect();
                assert_eq!(got, reference, "--parallel {n_seq}");
                assert_ledger_matches(&s);
                s
            })
            .collect()
    }

    /// What one sequence alone answers: the reference for every multi-sequence run.
    fn alone(prompt: &PreparedPrompt, max_tokens: usize) -> Vec<i32> {
        let mut s = Sched::with_backend(fake(1, 64), 1, false);
        run_all(&mut s, std::slice::from_ref(prompt), &[max_tokens])
            .remove(0)
            .unwrap()
            .tokens
    }

    fn assert_ledger_matches(s: &Sched) {
        for seq in 0..s.running.len() {
            assert_eq!(
                s.used(seq),
                s.backend.kv[seq].len(),
                "sequence {seq}: ledger and cache disagree"
            );
        }
    }

    #[test]
    fn one_sequence_answers_from_its_prompt_and_keeps_the_answer_but_its_last_token() {
        let prompt = text(&[2, 40, 41, 42, 43, 44, 45]);
        let mut s = Sched::with_backend(fake(1, 64), 1, false);
        let g = run_all(&mut s, std::slice::from_ref(&prompt), &[6]).remove(0).unwrap();
        // The reference: predict, append, predict again.
        let mut f = fake(1, 64);
        f.kv[0] = vec![2, 40, 41, 42, 43, 44, 45];
        let mut expected = Vec::new();
        for _ in 0..6 {
            let t = f.predict(0);
            expected.push(t);
            f.kv[0].push(t);
        }
        assert_eq!(g.tokens, expected);
        assert_eq!(g.in_context, expected[..5], "the last token is sampled, not decoded");
        assert_eq!(g.finish, FinishReason::Length);
        assert_eq!(s.used(0), 7 + 5);
        assert_ledger_matches(&s);
    }

    #[test]
    fn answers_do_not_depend_on_how_many_sequences_run_together() {
        let prompts = [
            text(&[2, 50, 51]),
            text(&[2, 60, 61, 62, 63, 64]),
            text(&[2, 70]),
            text(&[2, 80, 81]),
        ];
        let max = [9, 4, 12, 7];
        let n_seqs = [1, 2, 3, 4];
        for (s, n_seq) in check_answers_as_alone(&prompts, &max, &n_seqs, false)
            .iter()
            .zip(n_seqs)
        {
            assert_eq!(
                s.backend.step_rows.iter().max().copied(),
                Some(n_seq),
                "steps batch every running answer"
            );
        }
    }

    #[test]
    fn a_shared_prefix_is_copied_from_another_sequence_not_evaluated_again() {
        let system: Vec<i32> = (100..120).collect();
        let a: Vec<i32> = system.iter().copied().chain([7, 8]).collect();
        let b: Vec<i32> = system.iter().copied().chain([9]).collect();
        let mut s = Sched::with_backend(fake(2, 64), 2, true);
        s.submit(0, &text(&a), &sampling(30), &mut quiet).unwrap();
        let before = s.backend.prefilled;
        s.submit(1, &text(&b), &sampling(5), &mut quiet).unwrap();
        assert_eq!(s.backend.prefilled - before, 1, "only the question is evaluated");
        assert_eq!(s.backend.kv[1][..20], s.backend.kv[0][..20]);
        let mut done = Vec::new();
        while s.active() > 0 {
            done.extend(s.step(&mut quiet));
        }
        let b_answer = done.into_iter().find(|f| f.tag == 1).unwrap().result.unwrap();
        assert_eq!(b_answer.tokens, alone(&text(&b), 5));
        assert_ledger_matches(&s);
    }

    #[test]
    fn a_job_takes_the_free_sequence_holding_its_prefix_and_a_whole_image() {
        let mut s = Sched::with_backend(fake(2, 64), 2, true);
        let first = with_image(&[2, 30, 31], "chest", &[40, 41]);
        run_all(&mut s, std::slice::from_ref(&first), &[3]);
        // Both sequences are free; sequence 0 holds the image: the next job with it goes there.
        let second = with_image(&[2, 30, 31], "chest", &[42]);
        let before = s.backend.prefilled;
        s.submit(1, &second, &sampling(2), &mut quiet).unwrap();
        assert_eq!(
            s.backend.prefilled - before,
            1,
            "BOS, text and image come from the cache"
        );
        assert_eq!(s.running.iter().position(Option::is_some), Some(0));
        // Another image after the same 3 tokens, in the other (empty) sequence: 3 shared positions are not worth
        // a copy, and the other image is evaluated whole.
        let other = with_image(&[2, 30, 31], "skin", &[42]);
        let before = s.backend.prefilled;
        s.submit(2, &other, &sampling(2), &mut quiet).unwrap();
        assert_eq!(s.backend.prefilled - before, 3 + 5 + 1);
        assert_ledger_matches(&s);
    }

    #[test]
    fn a_failing_step_ends_only_the_answer_that_fails() {
        let prompts = [
            text(&[2, 50]),
            text(&(0..12).map(|t| 20 + t).collect::<Vec<_>>()),
            text(&[2, 70, 71]),
        ];
        let max = [8, 8, 8];
        let mut f = fake(3, 64);
        // Only the 12-token prompt's answer reaches position 15 (the others stop at positions 8 and 9).
        f.fail_at = Some(15);
        let mut s = Sched::with_backend(f, 3, true);
        let got = run_all(&mut s, &prompts, &max);
        assert!(got[1].as_ref().unwrap_err().contains("injected at 15"), "{:?}", got[1]);
        assert_eq!(got[0].as_ref().unwrap().tokens, alone(&prompts[0], 8));
        assert_eq!(got[2].as_ref().unwrap().tokens, alone(&prompts[2], 8));
        assert_eq!(s.used(1), 15, "the failed sequence keeps what was decoded before");
        assert_ledger_matches(&s);
    }

    #[test]
    fn a_failing_prefill_keeps_what_was_evaluated_and_the_next_one_goes_on_from_there() {
        let prompt: Vec<i32> = (0..12).map(|t| 30 + t).collect();
        let mut f = fake(1, 64);
        f.fail_at = Some(9);
        let mut s = Sched::with_backend(f, 1, true);
        let err = s.prefill(0, &text(&prompt), &mut NoObserver).unwrap_err();
        assert!(err.to_string().contains("injected"));
        assert_eq!(s.used(0), 8, "the chunks before the failing one stay");
        assert_ledger_matches(&s);
        assert!(s.last_logits(0).is_empty());
        s.backend.fail_at = None;
        let p = s.prefill(0, &text(&prompt), &mut NoObserver).unwrap();
        assert_eq!((p.cached, p.evaluated), (8, 4));
        assert_ledger_matches(&s);
    }

    #[test]
    fn a_failing_image_keeps_the_text_before_it() {
        let mut f = fake(1, 64);
        f.fail_at = Some(4);
        let mut s = Sched::with_backend(f, 1, true);
        assert!(s
            .prefill(0, &with_image(&[2, 30, 31], "chest", &[40]), &mut NoObserver)
            .is_err());
        assert_eq!(s.used(0), 3);
        assert_ledger_matches(&s);
    }

    #[test]
    fn a_refused_removal_clears_the_sequence_instead_of_diverging() {
        let mut s = Sched::with_backend(fake(1, 64), 1, true);
        run_all(&mut s, &[text(&[2, 5, 6, 7, 8])], &[4]);
        s.backend.refuse_removal = true;
        let p = s.prefill(0, &text(&[2, 5, 6, 9]), &mut NoObserver).unwrap();
        assert_eq!(
            (p.cached, p.evaluated),
            (0, 4),
            "nothing reused once the tail could not be dropped"
        );
        assert_ledger_matches(&s);
    }

    #[test]
    fn no_tokens_a_full_context_an_end_of_turn_and_an_interruption() {
        let mut s = Sched::with_backend(fake(1, 64), 1, false);
        let g = run_all(&mut s, &[text(&[2, 5])], &[0]).remove(0).unwrap();
        assert!(g.tokens.is_empty() && g.finish == FinishReason::Length);

        let mut s = Sched::with_backend(fake(1, 8), 1, false);
        let g = run_all(&mut s, &[text(&[2, 5, 6, 7, 8, 9])], &[50]).remove(0).unwrap();
        assert_eq!((g.finish, g.tokens.len()), (FinishReason::ContextFull, 3));
        assert_eq!(s.used(0), 8);
        let err = s.prefill(0, &text(&[1; 8]), &mut NoObserver).unwrap_err();
        assert!(matches!(
            err,
            EngineError::PromptTooLong {
                prompt_tokens: 8,
                ctx_size: 8,
                ..
            }
        ));

        let mut f = fake(1, 64);
        f.eog_at = Some(5);
        let mut s = Sched::with_backend(f, 1, false);
        let g = run_all(&mut s, &[text(&[2, 5, 6])], &[50]).remove(0).unwrap();
        assert_eq!(
            (g.finish, g.tokens.len(), g.in_context.len()),
            (FinishReason::Stop, 3, 2)
        );

        let mut s = Sched::with_backend(fake(1, 64), 1, false);
        s.prefill(0, &text(&[2, 5]), &mut NoObserver).unwrap();
        let mut seen = 0;
        let mut stop_at_third = |_: &usize, _: &GeneratedToken| {
            seen += 1;
            if seen == 3 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        };
        let mut finished = s.start(
            0,
            0,
            &sampling(50),
            Instant::now(),
            SessionStats::default(),
            &mut stop_at_third,
        );
        while finished.is_none() {
            finished = s.step(&mut stop_at_third).pop();
        }
        let g = finished.unwrap().result.unwrap();
        assert_eq!((g.finish, g.tokens.len()), (FinishReason::Interrupted, 3));
    }

    #[test]
    fn prompts_submitted_together_share_batches_and_answer_as_alone() {
        let system: Vec<i32> = (100..110).collect();
        let with_system = |q: &[i32]| text(&system.iter().chain(q).copied().collect::<Vec<_>>());
        let prompts = [
            with_system(&[50, 51]),
            with_system(&[60, 61, 62, 63, 64, 65, 66]),
            with_system(&[70]),
            text(&[2, 80, 81, 82, 83, 84]),
            with_system(&[90, 91, 92]),
        ];
        let max = [6, 3, 9, 5, 7];
        check_answers_as_alone(&prompts, &max, &[1, 2, 3, 5], true);
        // Five sequences: the first prompt alone (10 + 2 positions), the others copy the system prompt from it and
        // evaluate only their questions (7 + 1 + 3) and the unrelated prompt (6), 17 positions in batches of 4
        // that mix sequences.
        let mut s = Sched::with_backend(fake(5, 64), 5, true);
        let mut waiting = Vec::new();
        let samplings: Vec<SamplingSettings> = max.iter().map(|&m| sampling(m)).collect();
        for (i, p) in prompts.iter().enumerate() {
            waiting.push((i, p, &samplings[i]));
        }
        let outcomes = s.submit_many(waiting, &mut quiet);
        assert!(outcomes.iter().all(|o| matches!(o, Ok(None))));
        assert_eq!(s.active(), 5);
        assert_eq!(s.backend.prefilled, 12 + 17);
        assert_eq!(
            s.backend.prompt_batches.len(),
            5,
            "17 positions in batches of 4: {:?}",
            s.backend.prompt_batches
        );
        assert!(
            s.backend.prompt_batches.iter().any(|b| b.len() > 1),
            "batches mix sequences"
        );
        for seq in 1..5 {
            if seq != 3 {
                assert_eq!(
                    s.backend.kv[seq][..10],
                    system[..],
                    "sequence {seq} holds the system prompt"
                );
            }
        }
        assert_ledger_matches(&s);
    }

    #[test]
    fn a_failing_mixed_batch_ends_only_the_prompt_that_fails() {
        let prompts = [
            text(&[2, 40, 41]),
            text(&[2, 50]),
            text(&(0..12).map(|t| 20 + t).collect::<Vec<_>>()),
            text(&[2, 70, 71]),
        ];
        let max = [3, 3, 3, 3];
        let mut f = fake(4, 64);
        // Only the 12-token prompt reaches position 10 while its prompt is evaluated.
        f.fail_at = Some(10);
        let mut s = Sched::with_backend(f, 4, true);
        let got = run_all_together(&mut s, &prompts, &max);
        assert!(got[2].as_ref().unwrap_err().contains("injected at 10"), "{:?}", got[2]);
        for i in [0, 1, 3] {
            assert_eq!(got[i].as_ref().unwrap().tokens, alone(&prompts[i], 3), "prompt {i}");
        }
        // The batch that failed held the failing prompt's last two tokens and the next prompt's: that one was
        // evaluated again alone, and answered as if nothing had happened.
        assert_eq!(s.backend.prompt_batches, [vec![1, 2], vec![2], vec![2]]);
        assert_ledger_matches(&s);
    }

    #[test]
    fn prompts_with_images_submitted_together_are_evaluated_one_by_one() {
        let prompts = [
            text(&[2, 30]),
            with_image(&[2, 30, 31], "chest", &[40, 41]),
            text(&[2, 33, 34]),
        ];
        check_answers_as_alone(&prompts, &[4, 4, 4], &[3], true);
    }
}
