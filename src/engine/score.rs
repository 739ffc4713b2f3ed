//! Scoring text: evaluates a chunk of plain-text tokens from an empty cache and hands back the logits at every
//! scored position, as llama.cpp's perplexity tool does (used by `eval-quant`).

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::token::LlamaToken;

use super::error::EngineError;
use super::model::Engine;
use super::session::new_context;
use crate::settings::ContextSettings;

impl Engine {
    /// Tokenizes plain text with special-token parsing off (control-token texts stay text), without BOS.
    pub fn tokenize_plain(&self, text: &str) -> Vec<i32> {
        self.model
            .vocab()
            .tokenize(text.as_bytes(), false, false)
            .into_iter()
            .map(|t| t.0)
            .collect()
    }

    /// The beginning-of-sequence token id.
    pub fn bos(&self) -> i32 {
        self.model.vocab().bos().0
    }

    /// The vocabulary size (the length of a row of logits).
    pub fn n_vocab(&self) -> usize {
        self.model.n_vocab().max(0) as usize
    }
}

/// A context for scoring chunks of `chunk_len` tokens.
pub struct Scorer<'e> {
    ctx: LlamaContext<'e>,
    chunk_len: usize,
    n_batch: usize,
}

impl<'e> Scorer<'e> {
    pub fn new(engine: &'e Engine, settings: &ContextSettings, chunk_len: u32) -> Result<Scorer<'e>, EngineError> {
        let (ctx, n_batch) = new_context(engine, settings, chunk_len, 1, false, false)?;
        Ok(Scorer {
            ctx,
            chunk_len: chunk_len as usize,
            n_batch: n_batch as usize,
        })
    }

    /// Evaluates `tokens` (one chunk, at most the context size) from an empty cache and calls `row(i, logits)` for
    /// every position `i` in `first..tokens.len() - 1`: the logits that predict token `i + 1`.
    pub fn score(
        &mut self,
        tokens: &[i32],
        first: usize,
        row: &mut dyn FnMut(usize, &[f32]),
    ) -> Result<(), EngineError> {
        assert!(tokens.len() <= self.chunk_len, "a chunk longer than the context");
        self.ctx.clear_kv_cache();
        let mut batch = LlamaBatch::new(self.n_batch, 1);
        for (c, chunk) in tokens.chunks(self.n_batch).enumerate() {
            let start = c * self.n_batch;
            batch.clear();
            for (j, &token) in chunk.iter().enumerate() {
                let i = start + j;
                let wanted = i >= first && i + 1 < tokens.len();
                batch
                    .add(LlamaToken(token), i as i32, &[0], wanted)
                    .map_err(|e| EngineError::Decode(e.to_string()))?;
            }
            self.ctx
                .decode(&mut batch)
                .map_err(|e| EngineError::Decode(e.to_string()))?;
            for j in 0..chunk.len() {
                let i = start + j;
                if i >= first && i + 1 < tokens.len() {
                    row(i, self.ctx.get_logits_ith(j as i32));
                }
            }
        }
        Ok(())
    }
}
