//! Scoring text: evaluates a chunk of plain-text tokens from an empty cache and hands back the logits at every
//! scored position, as llama.cpp's perplexity tool does (used by `eval-quant`).

use llama_cpp_2::token::LlamaToken;

use super::context::Context;
use super::error::EngineError;
use super::model::Engine;
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
    ctx: Context<'e>,
    chunk_len: usize,
}

impl<'e> Scorer<'e> {
    pub fn new(engine: &'e Engine, settings: &ContextSettings, chunk_len: u32) -> Result<Scorer<'e>, EngineError> {
        let ctx = Context::new(engine, settings, chunk_len, 1, false)?;
        Ok(Scorer {
            ctx,
            chunk_len: chunk_len as usize,
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
        self.ctx.clear();
        let n = tokens.len();
        let wanted = |i: usize| i >= first && i + 1 < n;
        let tokens: Vec<LlamaToken> = tokens.iter().map(|&t| LlamaToken(t)).collect();
        self.ctx
            .decode_tokens(0, 0, &tokens, &wanted, &mut |ctx, start, len| {
                for j in 0..len {
                    if wanted(start + j) {
                        row(start + j, ctx.logits(j as i32));
                    }
                }
            })
            .map_err(|(_, e)| e)
    }
}
