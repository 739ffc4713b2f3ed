//! Continuous batching: several sequences decoded together in one context, each job taking a free sequence as soon
//! as one finishes. Used by `batch --parallel N`; the prompt preparation, sampling chain and token-to-text steps
//! are the ones every other command uses.
//!
//! Each sequence keeps what it holds after its job finished. A new job starts from the longest common prefix (the
//! shared system prompt, an image placed first) that any sequence holds: its own, or another's, whose KV stream is
//! then copied into the job's sequence (llama.cpp copies whole streams; the tail beyond the prefix is dropped at
//! once), so a prefix shared by many jobs is evaluated once, not once per sequence. Sliding-window layers keep
//! their whole cache (swa_full), so that a copied or truncated stream holds every position the job attends to.
//! (Sharing cells of one unified cache instead gave answers that differed from --parallel 1 in tests.)

use std::time::Instant;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;

use super::error::EngineError;
use super::model::Engine;
use super::prepare::part_len;
use super::prepare::{Part, PreparedPrompt, Slot};
use super::sampling::sampler;
use super::session::{default_ctx, new_context, FinishReason, Generation, SessionStats};
use super::token_text::TokenText;
use crate::settings::{ContextSettings, SamplingSettings};

/// Copying a stream costs one pass over a sequence's whole KV buffer; below this many positions gained,
/// evaluating them again is as cheap.
const MIN_COPY_GAIN: usize = 8;

struct Active<T> {
    tag: T,
    n_past: i32,
    sampler: LlamaSampler,
    max_tokens: usize,
    /// The last sampled token, to be decoded in the next step.
    pending: LlamaToken,
    text: TokenText,
    out: Generation,
    stats: SessionStats,
    gen_started: Instant,
}

/// A finished job.
pub struct Finished<T> {
    pub tag: T,
    pub generation: Generation,
    pub stats: SessionStats,
}

/// N sequences in one context.
pub struct ParallelSession<'e, T> {
    engine: &'e Engine,
    ctx: LlamaContext<'e>,
    n_ctx: u32,
    n_batch: u32,
    slots: Vec<Option<Active<T>>>,
    /// What each sequence's KV positions hold.
    held: Vec<Vec<Slot>>,
}

impl<'e, T> ParallelSession<'e, T> {
    /// A context with `n_seq` sequences of the usual context size each.
    pub fn new(engine: &'e Engine, settings: &ContextSettings, n_seq: u32) -> Result<Self, EngineError> {
        let n_ctx = default_ctx(engine, settings);
        let n_seq = n_seq.max(1);
        let (ctx, n_batch) = new_context(engine, settings, n_ctx, n_seq, false, true)?;
        let slots = (0..n_seq).map(|_| None).collect();
        Ok(ParallelSession {
            engine,
            ctx,
            n_ctx,
            n_batch,
            slots,
            held: vec![Vec::new(); n_seq as usize],
        })
    }

    pub fn has_free_slot(&self) -> bool {
        self.slots.iter().any(Option::is_none)
    }

    pub fn active(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    /// The context size of each sequence.
    pub fn ctx_size(&self) -> u32 {
        self.n_ctx
    }

    /// Starts a job in a free sequence: evaluates its prompt and samples its first token. A job that ends at once
    /// (first token ends the turn, or `max_tokens` is 1) comes back finished.
    pub fn start(
        &mut self,
        tag: T,
        prompt: &PreparedPrompt,
        sampling: &SamplingSettings,
    ) -> Result<Option<Finished<T>>, (T, EngineError)> {
        let Some(seq) = self.slots.iter().position(Option::is_none) else {
            return Err((tag, EngineError::Decode("no free sequence".into())));
        };
        if prompt.n_tokens() + 1 > self.n_ctx as usize {
            let trained = self.engine.model.n_ctx_train();
            return Err((
                tag,
                EngineError::PromptTooLong {
                    prompt_tokens: prompt.n_tokens(),
                    ctx_size: self.n_ctx,
                    trained,
                },
            ));
        }
        let started = Instant::now();
        let seq_id = seq as i32;
        let keep = self.reuse_prefix(seq, prompt);
        let n_past = match self.prefill(prompt, seq_id, keep) {
            Ok(n) => n,
            Err(e) => {
                let _ = self.ctx.kv_cache_seq_rm(seq_id, None, None);
                self.held[seq].clear();
                return Err((tag, e));
            }
        };
        self.held[seq] = prompt.slots.clone();
        let mut active = Active {
            tag,
            n_past,
            sampler: sampler(sampling, self.engine.model.n_vocab()),
            max_tokens: sampling.max_tokens,
            pending: LlamaToken(0),
            text: TokenText::new(self.engine),
            out: Generation::empty(),
            stats: SessionStats {
                prompt_tokens: prompt.n_tokens() - keep,
                prompt_ms: started.elapsed().as_secs_f64() * 1000.0,
                ..Default::default()
            },
            gen_started: Instant::now(),
        };
        let token = active.sampler.sample(&self.ctx, -1);
        active.stats.time_to_first_token_ms = started.elapsed().as_secs_f64() * 1000.0;
        match self.accept(&mut active, token) {
            Some(finish) => Ok(Some(self.finish(active, finish))),
            None => {
                self.slots[seq] = Some(active);
                Ok(None)
            }
        }
    }

    /// Gives sequence `seq` the longest prefix of `prompt` that any sequence holds (copying another sequence's
    /// stream when that saves at least [`MIN_COPY_GAIN`] positions over its own); returns its length.
    fn reuse_prefix(&mut self, seq: usize, prompt: &PreparedPrompt) -> usize {
        let own = prompt.reusable_prefix(&self.held[seq]);
        let best_other = (0..self.held.len())
            .filter(|&o| o != seq)
            .map(|o| (o, prompt.reusable_prefix(&self.held[o])))
            .max_by_key(|&(o, k)| (k, std::cmp::Reverse(o)));
        if let Some((other, keep)) = best_other.filter(|&(_, k)| k >= own + MIN_COPY_GAIN) {
            let (src, dst) = (other as i32, seq as i32);
            let _ = self.ctx.kv_cache_seq_rm(dst, None, None);
            if self.ctx.copy_kv_cache_seq(src, dst, None, None).is_ok()
                && self.ctx.kv_cache_seq_rm(dst, Some(keep as u32), None).is_ok()
            {
                self.held[seq].truncate(0);
                return keep;
            }
            // A failed copy leaves nothing reused.
            let _ = self.ctx.kv_cache_seq_rm(dst, None, None);
            self.held[seq].truncate(0);
            return 0;
        }
        let _ = self.ctx.kv_cache_seq_rm(seq as i32, Some(own as u32), None);
        self.held[seq].truncate(0);
        own
    }

    /// Evaluates `prompt` from position `keep` on, in sequence `seq_id`.
    fn prefill(&mut self, prompt: &PreparedPrompt, seq_id: i32, keep: usize) -> Result<i32, EngineError> {
        let mut n_past = keep as i32;
        let n_parts = prompt.parts.len();
        let mut batch = LlamaBatch::new(self.n_batch as usize, 1);
        let mut start = 0usize;
        for (i, part) in prompt.parts.iter().enumerate() {
            let last = i + 1 == n_parts;
            let len = part_len(part);
            let end = start + len;
            if end <= keep {
                start = end;
                continue;
            }
            match part {
                Part::Tokens(tokens) => {
                    let tokens = &tokens[keep.max(start) - start..];
                    for (c, chunk) in tokens.chunks(self.n_batch as usize).enumerate() {
                        batch.clear();
                        for (j, token) in chunk.iter().enumerate() {
                            let logits = last && c * self.n_batch as usize + j + 1 == tokens.len();
                            batch
                                .add(*token, n_past + j as i32, &[seq_id], logits)
                                .map_err(|e| EngineError::Decode(e.to_string()))?;
                        }
                        self.ctx
                            .decode(&mut batch)
                            .map_err(|e| EngineError::Decode(e.to_string()))?;
                        n_past += chunk.len() as i32;
                    }
                }
                Part::Image { path, chunks } => {
                    let vision = self.engine.vision.as_ref().ok_or(EngineError::ImagesWithoutMmproj)?;
                    let mut mtmd = vision.ctx.borrow_mut();
                    n_past = chunks
                        .eval_chunks(&mut mtmd, &mut self.ctx, n_past, seq_id, self.n_batch as i32, last)
                        .map_err(|e| EngineError::ImageEncode {
                            path: path.clone(),
                            reason: e.to_string(),
                        })?;
                }
            }
            start = end;
        }
        Ok(n_past)
    }

    /// Records a sampled token; returns why the job ends, if it does.
    fn accept(&self, active: &mut Active<T>, token: LlamaToken) -> Option<FinishReason> {
        active.out.tokens.push(token.0);
        if self.engine.model.vocab().is_eog(token) {
            return Some(FinishReason::Stop);
        }
        active.text.push(self.engine, token, &mut active.out);
        if active.out.tokens.len() >= active.max_tokens {
            return Some(FinishReason::Length);
        }
        if active.n_past as u32 >= self.n_ctx {
            return Some(FinishReason::ContextFull);
        }
        active.pending = token;
        None
    }

    fn finish(&self, mut active: Active<T>, reason: FinishReason) -> Finished<T> {
        active.out.finish = reason;
        active.text.finish(&mut active.out);
        active.stats.generated_tokens = active.out.tokens.len();
        active.stats.generation_ms = active.gen_started.elapsed().as_secs_f64() * 1000.0;
        Finished {
            tag: active.tag,
            generation: active.out,
            stats: active.stats,
        }
    }

    /// Decodes the next token of every active sequence together; returns the jobs that finished.
    pub fn step(&mut self) -> Result<Vec<Finished<T>>, EngineError> {
        let mut batch = LlamaBatch::new(self.slots.len(), self.slots.len() as i32);
        let mut order = Vec::new();
        for (seq, slot) in self.slots.iter_mut().enumerate() {
            if let Some(active) = slot {
                batch
                    .add(active.pending, active.n_past, &[seq as i32], true)
                    .map_err(|e| EngineError::Decode(e.to_string()))?;
                active.out.in_context.push(active.pending.0);
                self.held[seq].push(Slot::Token(active.pending.0));
                active.n_past += 1;
                order.push(seq);
            }
        }
        if order.is_empty() {
            return Ok(Vec::new());
        }
        self.ctx
            .decode(&mut batch)
            .map_err(|e| EngineError::Decode(e.to_string()))?;
        let mut finished = Vec::new();
        for (i, seq) in order.into_iter().enumerate() {
            let mut active = self.slots[seq].take().expect("active slot");
            let token = active.sampler.sample(&self.ctx, i as i32);
            match self.accept(&mut active, token) {
                Some(reason) => finished.push(self.finish(active, reason)),
                None => self.slots[seq] = Some(active),
            }
        }
        Ok(finished)
    }
}
