//! The llama.cpp context: the only place that decodes a batch, evaluates image chunks, and removes or copies KV
//! positions. Everything above it (the scheduler, bench, scoring) goes through these few calls.
//!
//! Owns: context creation from [`ContextSettings`], batched decoding in `n_batch` chunks, image evaluation through
//! mtmd, checked KV removal and stream copies. Must not: decide what a position holds (that is the scheduler's
//! ledger) or print anything.

use std::num::NonZeroU32;
use std::sync::OnceLock;

use llama_cpp_2::context::params::{KvCacheType, LlamaContextParams};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::mtmd::MtmdInputChunkType;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;

use super::error::EngineError;
use super::logging::LoadCapture;
use super::model::Engine;
use super::prepare::ImageChunks;
use crate::settings::{CacheType, ContextSettings, FlashAttention};

/// A batch of tokens for one decode, with the positions it writes (for the fault-injection hook).
pub(crate) struct Batch {
    inner: LlamaBatch<'static>,
    positions: Vec<i32>,
}

impl Batch {
    pub(crate) fn new(n_tokens: usize, n_seq: usize) -> Batch {
        Batch {
            inner: LlamaBatch::new(n_tokens.max(1), n_seq.max(1) as i32),
            positions: Vec::with_capacity(n_tokens),
        }
    }

    pub(crate) fn clear(&mut self) {
        self.inner.clear();
        self.positions.clear();
    }

    pub(crate) fn add(&mut self, token: LlamaToken, pos: usize, seq: usize, logits: bool) -> Result<(), EngineError> {
        self.inner
            .add(token, pos as i32, &[seq as i32], logits)
            .map_err(|e| EngineError::Decode(e.to_string()))?;
        self.positions.push(pos as i32);
        Ok(())
    }
}

/// Test hook: `MEDGEMMA_FAULT_DECODE_POSITION=N` makes every decode that writes KV position N fail, as a real
/// llama.cpp failure would (used by the tests that prove one failing job does not take the others down).
fn fault_position() -> Option<i32> {
    static FAULT: OnceLock<Option<i32>> = OnceLock::new();
    *FAULT.get_or_init(|| std::env::var("MEDGEMMA_FAULT_DECODE_POSITION").ok()?.parse().ok())
}

/// One llama.cpp context of `n_seq` sequences with `n_ctx` positions each.
pub(crate) struct Context<'e> {
    pub(crate) engine: &'e Engine,
    ctx: LlamaContext<'e>,
    n_ctx: u32,
    pub(super) n_batch: u32,
}

fn kv_type(t: CacheType) -> KvCacheType {
    match t {
        CacheType::F16 => KvCacheType::F16,
        CacheType::F32 => KvCacheType::F32,
        CacheType::Q8_0 => KvCacheType::Q8_0,
    }
}

/// The context size per sequence: `-c`, or the smaller of 8192 and the model's trained length.
pub(crate) fn context_size(engine: &Engine, settings: &ContextSettings) -> u32 {
    let trained = engine.model.n_ctx_train().max(1);
    settings.ctx_size.unwrap_or(trained.min(8192)).max(16)
}

impl<'e> Context<'e> {
    /// A context of `n_seq` sequences of `n_ctx` positions each. `swa_full` keeps the sliding-window layers' whole
    /// cache, which is what makes dropping a tail or copying a stream valid (prefix reuse).
    pub(crate) fn new(
        engine: &'e Engine,
        settings: &ContextSettings,
        n_ctx: u32,
        n_seq: u32,
        swa_full: bool,
    ) -> Result<Context<'e>, EngineError> {
        // Gemma 3 image chunks are decoded non-causally in one micro-batch: it must hold a whole image.
        let n_batch = settings.batch_size.max(512);
        let flash = match settings.flash_attention {
            FlashAttention::Auto => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_AUTO,
            FlashAttention::On => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_ENABLED,
            FlashAttention::Off => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_DISABLED,
        };
        let n_seq = n_seq.max(1);
        let total = n_ctx.saturating_mul(n_seq);
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(total))
            .with_n_batch(n_batch)
            .with_n_ubatch(n_batch)
            .with_n_seq_max(n_seq)
            // One KV stream per sequence: a sequence's cells never interleave with another's, so its attention
            // sees the same buffer layout whatever the other sequences do, and whole streams can be copied.
            .with_kv_unified(false)
            .with_n_threads(settings.threads)
            .with_n_threads_batch(settings.threads)
            .with_type_k(kv_type(settings.cache_type))
            .with_type_v(kv_type(settings.cache_type))
            .with_flash_attention_policy(flash)
            .with_swa_full(swa_full)
            .with_no_perf(true);
        let capture = LoadCapture::start();
        let ctx = match engine.model.new_context(engine.backend, params) {
            Ok(ctx) => ctx,
            Err(_) => {
                return Err(EngineError::Context {
                    ctx_size: total,
                    reason: capture.reason(),
                })
            }
        };
        drop(capture);
        Ok(Context {
            engine,
            ctx,
            n_ctx,
            n_batch,
        })
    }

    /// Positions per sequence.
    pub(crate) fn n_ctx(&self) -> u32 {
        self.n_ctx
    }

    /// The one call of llama.cpp's decode.
    pub(crate) fn decode(&mut self, batch: &mut Batch) -> Result<(), EngineError> {
        if let Some(p) = fault_position() {
            if batch.positions.contains(&p) {
                return Err(EngineError::Decode(format!(
                    "injected failure at position {p} (MEDGEMMA_FAULT_DECODE_POSITION)"
                )));
            }
        }
        self.ctx
            .decode(&mut batch.inner)
            .map_err(|e| EngineError::Decode(e.to_string()))
    }

    /// Waits until the work queued by earlier decodes has finished. llama.cpp's decode returns once the work is
    /// queued on a GPU backend (the CPU backend finishes first), and only reading logits waits for it; a timing
    /// that reads none must wait here or it stops the clock too early.
    pub(crate) fn synchronize(&self) {
        self.ctx.synchronize();
    }

    /// Decodes `tokens` into sequence `seq` from position `start` on, `n_batch` at a time. `wants_logits(i)` says
    /// whether token `i` (an index into `tokens`) must produce logits; after each chunk, `on_chunk(ctx, first, n)`
    /// may read them (`ctx.logits(j)` for the j-th token of the chunk). On failure returns how many tokens were
    /// decoded before the failing chunk.
    pub(crate) fn decode_tokens(
        &mut self,
        seq: usize,
        start: usize,
        tokens: &[LlamaToken],
        wants_logits: &dyn Fn(usize) -> bool,
        on_chunk: &mut dyn FnMut(&Context<'e>, usize, usize),
    ) -> Result<(), (usize, EngineError)> {
        let n_batch = self.n_batch as usize;
        let mut batch = Batch::new(n_batch.min(tokens.len()), 1);
        for (c, chunk) in tokens.chunks(n_batch).enumerate() {
            let first = c * n_batch;
            batch.clear();
            for (j, &token) in chunk.iter().enumerate() {
                batch
                    .add(token, start + first + j, seq, wants_logits(first + j))
                    .map_err(|e| (first, e))?;
            }
            self.decode(&mut batch).map_err(|e| (first, e))?;
            on_chunk(self, first, chunk.len());
        }
        Ok(())
    }

    /// The one evaluation of an image (its marker tokens and its embeddings) into sequence `seq` at position
    /// `n_past`; returns the position after it. The embeddings come from the engine's image encoder (computed now,
    /// or found in memory or on disk) and are decoded by mtmd's own helper, so a cached image gives the same KV as
    /// a fresh encoding, bit for bit.
    pub(crate) fn eval_image(
        &mut self,
        image: &ImageChunks,
        seq: usize,
        n_past: usize,
        logits_last: bool,
    ) -> Result<usize, EngineError> {
        let vision = self.engine.vision.as_ref().ok_or(EngineError::ImagesWithoutMmproj)?;
        let fail = |reason: String| EngineError::ImageEncode {
            path: image.path.clone(),
            reason,
        };
        // Gemma 3 (the only architecture the pre-check admits) takes image rows of its embedding width.
        let width = usize::try_from(self.engine.model.n_embd()).unwrap_or(0);
        let chunks = &image.chunks;
        let mut pos = n_past as i32;
        for i in 0..chunks.len() {
            let chunk = chunks.get(i).expect("index in range");
            let last = logits_last && i + 1 == chunks.len();
            let mut mtmd = vision.ctx.borrow_mut();
            let mut new_pos = pos;
            let rc = if chunk.chunk_type() == MtmdInputChunkType::Text {
                // SAFETY: live handles borrowed mutably for the call; mtmd's helper decodes the chunk's tokens.
                unsafe {
                    llama_cpp_sys_2::mtmd_helper_eval_chunk_single(
                        mtmd.as_raw_mut(),
                        self.ctx.as_raw_mut(),
                        chunk.as_raw(),
                        pos,
                        seq as i32,
                        self.n_batch as i32,
                        last,
                        &mut new_pos,
                    )
                }
            } else {
                let rows = vision
                    .encoder
                    .embeddings(&mut mtmd, &chunk, &image.pixels, width, &image.path)?;
                // mtmd's helper takes a mutable pointer but only reads the rows: give it its own copy.
                let mut rows = rows.to_vec();
                // SAFETY: live handles borrowed mutably for the call; `rows` holds the chunk's n_tokens x width
                // floats, the shape the helper reads, and outlives the call.
                unsafe {
                    llama_cpp_sys_2::mtmd_helper_decode_image_chunk(
                        mtmd.as_raw_mut(),
                        self.ctx.as_raw_mut(),
                        chunk.as_raw(),
                        rows.as_mut_ptr(),
                        pos,
                        seq as i32,
                        self.n_batch as i32,
                        &mut new_pos,
                        None,
                        std::ptr::null_mut(),
                    )
                }
            };
            if rc != 0 {
                return Err(fail(format!("llama.cpp could not evaluate it (error {rc})")));
            }
            pos = new_pos;
        }
        Ok(pos.max(0) as usize)
    }

    /// Removes sequence `seq`'s positions from `from` on. Returns false when llama.cpp cannot remove part of a
    /// sequence; the caller must then clear the whole sequence ([`Context::clear_sequence`] always succeeds).
    pub(crate) fn remove_from(&mut self, seq: usize, from: usize) -> bool {
        self.ctx.kv_cache_seq_rm(seq as i32, Some(from as u32), None).is_ok()
    }

    /// Forgets everything sequence `seq` holds.
    pub(crate) fn clear_sequence(&mut self, seq: usize) {
        // A whole-sequence removal cannot fail in llama.cpp.
        let _ = self.ctx.kv_cache_seq_rm(seq as i32, None, None);
    }

    /// Replaces sequence `dst`'s stream by a copy of `src`'s (done by llama.cpp at the next decode).
    pub(crate) fn copy_stream(&mut self, src: usize, dst: usize) -> bool {
        self.clear_sequence(dst);
        self.ctx.copy_kv_cache_seq(src as i32, dst as i32, None, None).is_ok()
    }

    /// Forgets every sequence.
    pub(crate) fn clear(&mut self) {
        self.ctx.clear_kv_cache();
    }

    /// The logits of the i-th token of the last decoded batch (-1: the last one). The caller asked for them.
    pub(crate) fn logits(&self, i: i32) -> &[f32] {
        self.ctx.get_logits_ith(i)
    }

    /// Samples (and accepts) the next token from the logits of the i-th token of the last batch.
    pub(crate) fn sample(&self, sampler: &mut LlamaSampler, i: i32) -> LlamaToken {
        sampler.sample(&self.ctx, i)
    }
}
