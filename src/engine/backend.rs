//! What the scheduler needs from a model: decode rows and token runs into sequences, evaluate an image, remove and
//! copy KV positions, and sample answers. llama.cpp's context ([`Context`]) is the real one; the scheduler's unit
//! tests drive a deterministic stand-in, so the scheduling rules are tested without a model.
//!
//! Owns: the trait and its llama.cpp implementation (a thin forwarding to `Context` and `Decoder`). Must not: hold
//! scheduling state.

use std::time::Instant;

use llama_cpp_2::token::LlamaToken;

use super::context::{Batch, Context};
use super::decoder::{Decoder, FinishReason, Generation, Next, OnToken, SessionStats};
use super::error::EngineError;
use super::prepare::ImageChunks;
use crate::settings::SamplingSettings;

/// One row of a decode step: `token` at position `pos` of sequence `seq`, with its logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Row {
    pub(crate) token: LlamaToken,
    pub(crate) pos: usize,
    pub(crate) seq: usize,
}

pub(crate) trait Backend {
    /// The state of one answer being decoded (sampler, text, timings).
    type Answer;

    /// Positions per sequence.
    fn n_ctx(&self) -> usize;
    /// The model's trained context length (for error messages).
    fn trained_ctx(&self) -> u32;

    /// Decodes one row per running answer, each with logits (row i's logits are read with index i).
    fn decode_rows(&mut self, rows: &[Row]) -> Result<(), EngineError>;
    /// Tokens per decode call (llama.cpp's `n_batch`).
    fn n_batch(&self) -> usize;
    /// Decodes prompt rows of several sequences in one batch (at most [`Backend::n_batch`]), with logits for the
    /// rows `logits` marks (row i's are read with index i).
    fn decode_prompt_rows(&mut self, rows: &[Row], logits: &[bool]) -> Result<(), EngineError>;
    /// Decodes `tokens` into `seq` from position `start` on; logits for the last one when `logits_last`. On failure,
    /// how many were decoded before the failing chunk.
    fn decode_tokens(
        &mut self,
        seq: usize,
        start: usize,
        tokens: &[LlamaToken],
        logits_last: bool,
    ) -> Result<(), (usize, EngineError)>;
    /// Decodes `tokens` into `seq` from position `start` on with logits for every row, and returns the
    /// log-probability that row j gives `next[j]`; `on_row(j, logits)` sees each row's logits.
    fn decode_logprobs(
        &mut self,
        seq: usize,
        start: usize,
        tokens: &[LlamaToken],
        next: &[LlamaToken],
        on_row: &mut dyn FnMut(usize, &[f32]),
    ) -> Result<Vec<f64>, EngineError>;
    /// Evaluates an image (its mtmd chunks) into `seq` at `n_past`; returns the position after it.
    fn eval_image(
        &mut self,
        image: &ImageChunks,
        seq: usize,
        n_past: usize,
        logits_last: bool,
    ) -> Result<usize, EngineError>;
    /// Removes `seq`'s positions from `from` on; false when that cannot be done (then clear the sequence).
    fn remove_from(&mut self, seq: usize, from: usize) -> bool;
    fn clear_sequence(&mut self, seq: usize);
    /// Replaces `dst`'s positions by a copy of `src`'s.
    fn copy_stream(&mut self, src: usize, dst: usize) -> bool;
    /// The logits of row `i` of the last decode (-1: its last row).
    fn logits(&self, i: i32) -> Vec<f32>;

    fn new_answer(
        &self,
        sampling: &SamplingSettings,
        prompt_started: Instant,
        stats: SessionStats,
    ) -> Result<Self::Answer, EngineError>;
    /// True when the answer may not have any token (`max_tokens` 0).
    fn is_exhausted(answer: &Self::Answer) -> bool;
    /// Samples the answer's next token from row `i` of the last decode; `n_past` of `n_ctx` positions are held.
    fn next(&self, answer: &mut Self::Answer, i: i32, n_past: usize, on_token: &mut OnToken<'_>) -> Next;
    /// Records that `token` went into the context.
    fn decoded(answer: &mut Self::Answer, token: LlamaToken);
    fn finish(answer: Self::Answer, reason: FinishReason, on_token: &mut OnToken<'_>) -> (Generation, SessionStats);
}

impl Backend for Context<'_> {
    type Answer = Decoder;

    fn n_ctx(&self) -> usize {
        Context::n_ctx(self) as usize
    }

    fn trained_ctx(&self) -> u32 {
        self.engine.model.n_ctx_train()
    }

    fn decode_rows(&mut self, rows: &[Row]) -> Result<(), EngineError> {
        let mut batch = Batch::new(rows.len(), rows.len());
        for r in rows {
            batch.add(r.token, r.pos, r.seq, true)?;
        }
        self.decode(&mut batch)
    }
    fn n_batch(&self) -> usize {
        self.n_batch as usize
    }
    fn decode_prompt_rows(&mut self, rows: &[Row], logits: &[bool]) -> Result<(), EngineError> {
        let mut batch = Batch::new(rows.len(), 1);
        for (r, &l) in rows.iter().zip(logits) {
            batch.add(r.token, r.pos, r.seq, l)?;
        }
        self.decode(&mut batch)
    }

    fn decode_tokens(
        &mut self,
        seq: usize,
        start: usize,
        tokens: &[LlamaToken],
        logits_last: bool,
    ) -> Result<(), (usize, EngineError)> {
        let n = tokens.len();
        Context::decode_tokens(
            self,
            seq,
            start,
            tokens,
            &|i| logits_last && i + 1 == n,
            &mut |_, _, _| {},
        )
    }

    fn decode_logprobs(
        &mut self,
        seq: usize,
        start: usize,
        tokens: &[LlamaToken],
        next: &[LlamaToken],
        on_row: &mut dyn FnMut(usize, &[f32]),
    ) -> Result<Vec<f64>, EngineError> {
        let mut out = vec![0.0; tokens.len()];
        Context::decode_tokens(self, seq, start, tokens, &|_| true, &mut |ctx, first, len| {
            for j in 0..len {
                let row = ctx.logits(j as i32);
                on_row(first + j, row);
                out[first + j] = super::choices::log_softmax_at(row, next[first + j]);
            }
        })
        .map_err(|(_, e)| e)?;
        Ok(out)
    }

    fn eval_image(
        &mut self,
        image: &ImageChunks,
        seq: usize,
        n_past: usize,
        logits_last: bool,
    ) -> Result<usize, EngineError> {
        Context::eval_image(self, image, seq, n_past, logits_last)
    }

    fn remove_from(&mut self, seq: usize, from: usize) -> bool {
        Context::remove_from(self, seq, from)
    }

    fn clear_sequence(&mut self, seq: usize) {
        Context::clear_sequence(self, seq);
    }

    fn copy_stream(&mut self, src: usize, dst: usize) -> bool {
        Context::copy_stream(self, src, dst)
    }

    fn logits(&self, i: i32) -> Vec<f32> {
        Context::logits(self, i).to_vec()
    }

    fn new_answer(
        &self,
        sampling: &SamplingSettings,
        prompt_started: Instant,
        stats: SessionStats,
    ) -> Result<Decoder, EngineError> {
        Decoder::new(self.engine, sampling, prompt_started, stats)
    }

    fn is_exhausted(answer: &Decoder) -> bool {
        answer.is_exhausted()
    }

    fn next(&self, answer: &mut Decoder, i: i32, n_past: usize, on_token: &mut OnToken<'_>) -> Next {
        answer.next(self, i, n_past, Context::n_ctx(self) as usize, on_token)
    }

    fn decoded(answer: &mut Decoder, token: LlamaToken) {
        answer.decoded(token);
    }

    fn finish(answer: Decoder, reason: FinishReason, on_token: &mut OnToken<'_>) -> (Generation, SessionStats) {
        answer.finish(reason, on_token)
    }
}
