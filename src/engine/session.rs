//! A session: one llama.cpp context, its KV positions, prompt evaluation (text and images) and the generation
//! loop. Every command generates through [`Session::generate`].

use std::num::NonZeroU32;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use llama_cpp_2::context::params::{KvCacheType, LlamaContextParams};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::token::LlamaToken;

use super::error::EngineError;
use super::model::Engine;
use super::prepare::{part_len, Part, PreparedPrompt, Slot};
use super::sampling::sampler;
use super::token_text::TokenText;
use crate::conversation::Conversation;
use crate::image_input::ImageInput;
use crate::settings::{CacheType, ContextSettings, FlashAttention, SamplingSettings};

/// Told about slow steps while a prompt is evaluated (image encoding takes about a minute on a laptop CPU).
pub trait EvalObserver {
    fn image_started(&mut self, _index: usize, _path: &std::path::Path) {}
    fn image_finished(&mut self, _index: usize, _elapsed: Duration) {}
}

/// An observer that ignores everything.
pub struct NoObserver;
impl EvalObserver for NoObserver {}

/// One generated token, as the caller sees it.
#[derive(Debug, Clone)]
pub struct GeneratedToken {
    pub id: i32,
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
    /// The caller stopped it (Ctrl-C).
    Interrupted,
}

/// Timings of the last prompt evaluation and generation.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SessionStats {
    pub prompt_tokens: usize,
    pub prompt_ms: f64,
    pub generated_tokens: usize,
    pub generation_ms: f64,
    pub time_to_first_token_ms: f64,
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
    /// The tokens that went into the context (what a later turn continues from).
    pub in_context: Vec<i32>,
    /// The answer text (thinking excluded).
    pub text: String,
    pub thinking: String,
    pub finish: FinishReason,
}

/// The context size per sequence: `-c`, or the smaller of 8192 and the model's trained length.
pub(super) fn default_ctx(engine: &Engine, settings: &ContextSettings) -> u32 {
    let trained = engine.model.n_ctx_train().max(1);
    settings.ctx_size.unwrap_or(trained.min(8192)).max(16)
}

/// A llama.cpp context of `n_ctx` positions for each of `n_seq` sequences; returns it with its batch size.
pub(super) fn new_context<'e>(
    engine: &'e Engine,
    settings: &ContextSettings,
    n_ctx: u32,
    n_seq: u32,
    kv_unified: bool,
    swa_full: bool,
) -> Result<(LlamaContext<'e>, u32), EngineError> {
    // Gemma 3 image chunks are decoded non-causally in one micro-batch: it must hold a whole image.
    let n_batch = settings.batch_size.max(512);
    let flash = match settings.flash_attention {
        FlashAttention::Auto => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_AUTO,
        FlashAttention::On => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_ENABLED,
        FlashAttention::Off => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_DISABLED,
    };
    let total = n_ctx.saturating_mul(n_seq);
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(total))
        .with_n_batch(n_batch)
        .with_n_ubatch(n_batch)
        .with_n_seq_max(n_seq)
        .with_kv_unified(kv_unified)
        .with_n_threads(settings.threads)
        .with_n_threads_batch(settings.threads)
        .with_type_k(kv_type(settings.cache_type))
        .with_type_v(kv_type(settings.cache_type))
        .with_flash_attention_policy(flash)
        .with_swa_full(swa_full)
        .with_no_perf(true);
    let ctx = engine
        .model
        .new_context(&engine.backend, params)
        .map_err(|_| EngineError::Context { ctx_size: total })?;
    Ok((ctx, n_batch))
}

impl Generation {
    pub(super) fn empty() -> Self {
        Generation {
            tokens: Vec::new(),
            in_context: Vec::new(),
            text: String::new(),
            thinking: String::new(),
            finish: FinishReason::Length,
        }
    }
}

/// A context on a loaded model, with its KV positions.
pub struct Session<'e> {
    engine: &'e Engine,
    ctx: LlamaContext<'e>,
    n_ctx: u32,
    n_batch: u32,
    n_past: i32,
    /// What each KV position holds (positions 0..n_past).
    slots: Vec<Slot>,
    has_logits: bool,
    eval_started: Option<Instant>,
    stats: SessionStats,
}

pub(super) fn kv_type(t: CacheType) -> KvCacheType {
    match t {
        CacheType::F16 => KvCacheType::F16,
        CacheType::F32 => KvCacheType::F32,
        CacheType::Q8_0 => KvCacheType::Q8_0,
    }
}

impl<'e> Session<'e> {
    /// Creates a context. The context size defaults to the smaller of 8192 and the model's trained length.
    pub fn new(engine: &'e Engine, settings: &ContextSettings) -> Result<Session<'e>, EngineError> {
        Self::create(engine, settings, false)
    }

    /// Creates a context for a conversation that grows and shrinks turn by turn (chat): the sliding-window layers
    /// keep their whole KV cache, so that dropping the tail (`/undo`, `/retry`) leaves a valid cache.
    pub fn for_conversation(engine: &'e Engine, settings: &ContextSettings) -> Result<Session<'e>, EngineError> {
        Self::create(engine, settings, true)
    }

    fn create(engine: &'e Engine, settings: &ContextSettings, swa_full: bool) -> Result<Session<'e>, EngineError> {
        let n_ctx = default_ctx(engine, settings);
        let (ctx, n_batch) = new_context(engine, settings, n_ctx, 1, false, swa_full)?;
        Ok(Session {
            engine,
            ctx,
            n_ctx,
            n_batch,
            n_past: 0,
            slots: Vec::new(),
            has_logits: false,
            eval_started: None,
            stats: SessionStats::default(),
        })
    }

    /// The context size in tokens.
    pub fn ctx_size(&self) -> u32 {
        self.n_ctx
    }

    /// KV positions in use.
    pub fn used(&self) -> usize {
        self.n_past as usize
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
        if prompt.n_tokens() + 1 > self.n_ctx as usize {
            return Err(EngineError::PromptTooLong {
                prompt_tokens: prompt.n_tokens(),
                ctx_size: self.n_ctx,
                trained: self.engine.model.n_ctx_train(),
            });
        }
        Ok(())
    }

    /// Drops every KV position from `keep` on (`keep` = 0 forgets everything).
    pub fn truncate(&mut self, keep: usize) {
        if keep >= self.slots.len() {
            return;
        }
        let _ = self.ctx.kv_cache_seq_rm(0, Some(keep as u32), None);
        self.slots.truncate(keep);
        self.n_past = keep as i32;
        self.has_logits = false;
    }

    /// Evaluates `prompt`, the whole conversation so far. What the context already holds of it (the longest common
    /// prefix, image by image) is kept; only the rest is evaluated, after dropping what differs. Refuses a prompt
    /// that does not fit. Returns how many positions were evaluated.
    pub fn evaluate(&mut self, prompt: &PreparedPrompt, observer: &mut dyn EvalObserver) -> Result<usize, EngineError> {
        self.check_fits(prompt)?;
        let started = Instant::now();
        self.eval_started = Some(started);
        let keep = prompt.reusable_prefix(&self.slots);
        self.truncate(keep);
        let n_parts = prompt.parts.len();
        let mut image_index = 0;
        let mut start = 0usize;
        for (i, part) in prompt.parts.iter().enumerate() {
            let last = i + 1 == n_parts;
            let len = part_len(part);
            let end = start + len;
            if end <= keep {
                if let Part::Image { .. } = part {
                    image_index += 1;
                }
                start = end;
                continue;
            }
            match part {
                Part::Tokens(tokens) => self.decode_tokens(&tokens[keep.max(start) - start..], last)?,
                Part::Image { path, chunks } => {
                    let vision = self.engine.vision.as_ref().ok_or(EngineError::ImagesWithoutMmproj)?;
                    observer.image_started(image_index, path);
                    let t = Instant::now();
                    let mut mtmd = vision.ctx.borrow_mut();
                    self.n_past = chunks
                        .eval_chunks(&mut mtmd, &mut self.ctx, self.n_past, 0, self.n_batch as i32, last)
                        .map_err(|e| EngineError::ImageEncode {
                            path: path.clone(),
                            reason: e.to_string(),
                        })?;
                    self.has_logits = last;
                    observer.image_finished(image_index, t.elapsed());
                    image_index += 1;
                }
            }
            self.slots.extend(prompt.slots[keep.max(start)..end].iter().cloned());
            start = end;
        }
        debug_assert_eq!(self.slots.len(), self.n_past as usize);
        let evaluated = prompt.n_tokens() - keep;
        self.stats = SessionStats {
            prompt_tokens: evaluated,
            prompt_ms: started.elapsed().as_secs_f64() * 1000.0,
            ..SessionStats::default()
        };
        Ok(evaluated)
    }

    fn decode_tokens(&mut self, tokens: &[LlamaToken], logits_for_last: bool) -> Result<(), EngineError> {
        if tokens.is_empty() {
            return Ok(());
        }
        let mut batch = LlamaBatch::new(self.n_batch as usize, 1);
        let n = tokens.len();
        for (c, chunk) in tokens.chunks(self.n_batch as usize).enumerate() {
            batch.clear();
            for (j, token) in chunk.iter().enumerate() {
                let index = c * self.n_batch as usize + j;
                let logits = logits_for_last && index + 1 == n;
                batch
                    .add(*token, self.n_past + j as i32, &[0], logits)
                    .map_err(|e| EngineError::Decode(e.to_string()))?;
            }
            self.ctx
                .decode(&mut batch)
                .map_err(|e| EngineError::Decode(e.to_string()))?;
            self.n_past += chunk.len() as i32;
        }
        self.has_logits = logits_for_last;
        Ok(())
    }

    /// The logits at the last evaluated position (empty if the last evaluation produced none).
    pub fn last_logits(&self) -> Vec<f32> {
        if !self.has_logits {
            return Vec::new();
        }
        self.ctx.get_logits_ith(-1).to_vec()
    }

    /// Generates an answer after the evaluated prompt. `on_token` sees each token as it comes and may stop
    /// generation by returning `ControlFlow::Break`. Generated tokens stay in the context.
    pub fn generate(
        &mut self,
        sampling: &SamplingSettings,
        on_token: &mut dyn FnMut(&GeneratedToken) -> ControlFlow<()>,
    ) -> Result<Generation, EngineError> {
        let vocab = self.engine.model.vocab();
        let mut chain = sampler(sampling, self.engine.model.n_vocab());
        let mut text = TokenText::new(self.engine);
        let mut out = Generation::empty();
        let started = self.eval_started.take().unwrap_or_else(Instant::now);
        let gen_started = Instant::now();
        let mut batch = LlamaBatch::new(1, 1);
        while out.tokens.len() < sampling.max_tokens {
            if !self.has_logits {
                return Err(EngineError::Decode("no logits to sample from (empty prompt?)".into()));
            }
            let token = chain.sample(&self.ctx, -1);
            if out.tokens.is_empty() {
                self.stats.time_to_first_token_ms = started.elapsed().as_secs_f64() * 1000.0;
            }
            out.tokens.push(token.0);
            if vocab.is_eog(token) {
                out.finish = FinishReason::Stop;
                break;
            }
            let event = text.push(self.engine, token, &mut out);
            if on_token(&event).is_break() {
                out.finish = FinishReason::Interrupted;
                break;
            }
            if self.n_past as u32 >= self.n_ctx {
                out.finish = FinishReason::ContextFull;
                break;
            }
            batch.clear();
            batch
                .add(token, self.n_past, &[0], true)
                .map_err(|e| EngineError::Decode(e.to_string()))?;
            self.ctx
                .decode(&mut batch)
                .map_err(|e| EngineError::Decode(e.to_string()))?;
            self.n_past += 1;
            self.slots.push(Slot::Token(token.0));
            out.in_context.push(token.0);
            self.has_logits = true;
        }
        if let Some(rest) = text.finish(&mut out) {
            let _ = on_token(&GeneratedToken {
                id: -1,
                text: rest,
                thinking: false,
            });
        }
        self.stats.generated_tokens = out.tokens.len();
        self.stats.generation_ms = gen_started.elapsed().as_secs_f64() * 1000.0;
        Ok(out)
    }
}
