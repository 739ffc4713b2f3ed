//! The decoder of one answer: sampling the next token, its text (thinking routed apart, characters split across
//! tokens joined), the finish reasons, and the timings. One `Decoder` per answer, whatever drives it (run, chat,
//! batch with any `--parallel`).
//!
//! Owns: the sampler chain of an answer, the answer's tokens and text, why it stopped. Must not: decode batches or
//! touch the KV cache (the scheduler does, and tells the decoder which tokens went into the context).

use std::ops::ControlFlow;
use std::time::Instant;

use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;

use super::constrained::Constrained;
use super::context::Context;
use super::error::EngineError;
use super::model::Engine;
use super::sampling::sampler;
use super::token_text::TokenText;
use crate::settings::SamplingSettings;

/// One generated token, as the caller sees it.
#[derive(Debug, Clone)]
pub struct GeneratedToken {
    /// Text to show: answer text, or thinking text (see `thinking`); empty for markers and partial characters.
    pub text: String,
    pub thinking: bool,
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model ended its turn.
    Stop,
    /// `--max-tokens` reached.
    Length,
    /// The context is full.
    ContextFull,
    /// The caller stopped it (Ctrl-C, a client that went away).
    Interrupted,
}

/// Timings of one prompt evaluation and the answer after it.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SessionStats {
    /// Prompt positions evaluated (the rest came from the cache).
    pub prompt_tokens: usize,
    pub prompt_ms: f64,
    pub generated_tokens: usize,
    pub generation_ms: f64,
    pub time_to_first_token_ms: f64,
    /// With an answer format: the time spent choosing tokens under the grammar (part of `generation_ms`), and
    /// at how many tokens the grammar had to run over the whole vocabulary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grammar_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grammar_full_scans: Option<usize>,
}

impl SessionStats {
    pub fn prompt_tokens_per_s(&self) -> f64 {
        per_second(self.prompt_tokens, self.prompt_ms)
    }
    pub fn generation_tokens_per_s(&self) -> f64 {
        per_second(self.generated_tokens.saturating_sub(1), self.generation_ms)
    }
}

fn per_second(n: usize, ms: f64) -> f64 {
    if ms > 0.0 {
        n as f64 * 1000.0 / ms
    } else {
        0.0
    }
}

/// The result of one generation.
#[derive(Debug, Clone)]
pub struct Generation {
    /// Every sampled token, including a final end-of-turn token.
    pub tokens: Vec<i32>,
    /// The tokens that went into the context (what a later turn continues from): every sampled token but the last,
    /// which is only decoded when generation goes on.
    pub in_context: Vec<i32>,
    /// The answer text (thinking excluded).
    pub text: String,
    pub thinking: String,
    pub finish: FinishReason,
}

/// Called with each token as it comes; `Break` stops that answer (finish reason `Interrupted`).
pub type OnToken<'a> = dyn FnMut(&GeneratedToken) -> ControlFlow<()> + 'a;

/// What comes after a sampled token.
pub(crate) enum Next {
    /// Decode this token into the context and sample again.
    Decode(LlamaToken),
    Finish(FinishReason),
}

/// How the next token is drawn: llama.cpp's chain, or the chain under a grammar.
enum Draw {
    Free(LlamaSampler),
    Constrained(Box<Constrained>),
}

pub(crate) struct Decoder {
    draw: Draw,
    text: TokenText,
    out: Generation,
    max_tokens: usize,
    stats: SessionStats,
    /// When the prompt's evaluation began (for the time to the first token).
    prompt_started: Instant,
    gen_started: Instant,
}

impl Decoder {
    /// A decoder for an answer whose prompt evaluation began at `prompt_started` and is described by `stats`; an
    /// error when llama.cpp cannot parse the answer's grammar.
    pub(crate) fn new(
        engine: &Engine,
        sampling: &SamplingSettings,
        prompt_started: Instant,
        stats: SessionStats,
    ) -> Result<Decoder, EngineError> {
        let draw = match &sampling.grammar {
            None => Draw::Free(sampler(sampling, engine.model.n_vocab())),
            Some(g) => Draw::Constrained(Box::new(Constrained::new(engine, sampling, g.text())?)),
        };
        Ok(Decoder {
            draw,
            text: TokenText::new(engine),
            out: Generation {
                tokens: Vec::new(),
                in_context: Vec::new(),
                text: String::new(),
                thinking: String::new(),
                finish: FinishReason::Length,
            },
            max_tokens: sampling.max_tokens,
            stats,
            prompt_started,
            gen_started: Instant::now(),
        })
    }

    /// True when the answer may not have any token (`max_tokens` 0).
    pub(crate) fn is_exhausted(&self) -> bool {
        self.out.tokens.len() >= self.max_tokens
    }

    /// Samples from the logits of the i-th token of the last batch; `n_past` positions are held of `n_ctx`.
    pub(crate) fn next(
        &mut self,
        ctx: &Context<'_>,
        i: i32,
        n_past: usize,
        n_ctx: usize,
        on_token: &mut OnToken<'_>,
    ) -> Next {
        let token = match &mut self.draw {
            Draw::Free(sampler) => ctx.sample(sampler, i),
            Draw::Constrained(c) => match c.sample(ctx.logits(i)) {
                Some(token) => token,
                // The grammar allows nothing more: the answer ends here, incomplete (its check says so).
                None => return Next::Finish(FinishReason::Stop),
            },
        };
        if self.out.tokens.is_empty() {
            self.stats.time_to_first_token_ms = self.prompt_started.elapsed().as_secs_f64() * 1000.0;
        }
        self.out.tokens.push(token.0);
        if ctx.engine.model.vocab().is_eog(token) {
            return Next::Finish(FinishReason::Stop);
        }
        let event = self.text.push(ctx.engine, token, &mut self.out);
        if on_token(&event).is_break() {
            return Next::Finish(FinishReason::Interrupted);
        }
        if self.out.tokens.len() >= self.max_tokens {
            return Next::Finish(FinishReason::Length);
        }
        if n_past >= n_ctx {
            return Next::Finish(FinishReason::ContextFull);
        }
        Next::Decode(token)
    }

    /// Records that `token` went into the context.
    pub(crate) fn decoded(&mut self, token: LlamaToken) {
        self.out.in_context.push(token.0);
    }

    /// Ends the answer; text held back (an incomplete character) goes to `on_token` first.
    pub(crate) fn finish(mut self, reason: FinishReason, on_token: &mut OnToken<'_>) -> (Generation, SessionStats) {
        self.out.finish = reason;
        if let Some(rest) = self.text.finish(&mut self.out) {
            let _ = on_token(&GeneratedToken {
                text: rest,
                thinking: false,
            });
        }
        self.stats.generated_tokens = self.out.tokens.len();
        self.stats.generation_ms = self.gen_started.elapsed().as_secs_f64() * 1000.0;
        if let Draw::Constrained(c) = &self.draw {
            self.stats.grammar_ms = Some(c.time.as_secs_f64() * 1000.0);
            self.stats.grammar_full_scans = Some(c.full_scans);
        }
        (self.out, self.stats)
    }
}
