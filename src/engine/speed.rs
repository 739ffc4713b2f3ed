//! Speed measurement for `medgemma bench`: prompt processing and generation on random tokens (as llama.cpp's
//! llama-bench does; the content does not change the work), and the vision tower's encoding time for one image.

use std::time::{Duration, Instant};

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::mtmd::{MtmdBitmap, MtmdInputChunkType, MtmdInputText};
use llama_cpp_2::token::LlamaToken;

use super::error::EngineError;
use super::model::Engine;
use super::session::new_context;
use crate::image_input::ImageInput;
use crate::settings::ContextSettings;

/// A context for timing `n_prompt` prompt tokens followed by `n_gen` generated ones.
pub struct SpeedTest<'e> {
    ctx: LlamaContext<'e>,
    n_batch: usize,
    n_vocab: i32,
    bos: LlamaToken,
    rng: u64,
}

/// How long one repetition took.
#[derive(Debug, Clone, Copy)]
pub struct SpeedSample {
    pub prompt: Duration,
    pub generation: Duration,
}

impl<'e> SpeedTest<'e> {
    pub fn new(engine: &'e Engine, settings: &ContextSettings, n_ctx: u32) -> Result<SpeedTest<'e>, EngineError> {
        let (ctx, n_batch) = new_context(engine, settings, n_ctx, 1, false, false)?;
        Ok(SpeedTest {
            ctx,
            n_batch: n_batch as usize,
            n_vocab: engine.model.n_vocab(),
            bos: engine.model.vocab().bos(),
            rng: 0x9E37_79B9_7F4A_7C15,
        })
    }

    fn random_token(&mut self) -> LlamaToken {
        // xorshift64*: deterministic, uniform enough over the vocabulary.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
        LlamaToken((r % self.n_vocab.max(1) as u64) as i32)
    }

    /// Empties the cache, evaluates `n_prompt` tokens (BOS then random ones) in batches, then generates `n_gen`
    /// tokens one decode at a time after them; times both phases.
    pub fn run(&mut self, n_prompt: usize, n_gen: usize) -> Result<SpeedSample, EngineError> {
        self.ctx.clear_kv_cache();
        let decode_err = |e: llama_cpp_2::DecodeError| EngineError::Decode(e.to_string());
        let add_err = |e: llama_cpp_2::llama_batch::BatchAddError| EngineError::Decode(e.to_string());
        let mut tokens = Vec::with_capacity(n_prompt);
        if n_prompt > 0 {
            tokens.push(self.bos);
        }
        while tokens.len() < n_prompt {
            let t = self.random_token();
            tokens.push(t);
        }
        let mut batch = LlamaBatch::new(self.n_batch.max(1), 1);
        let started = Instant::now();
        for (c, chunk) in tokens.chunks(self.n_batch).enumerate() {
            batch.clear();
            for (j, &t) in chunk.iter().enumerate() {
                let i = c * self.n_batch + j;
                batch.add(t, i as i32, &[0], i + 1 == n_prompt).map_err(add_err)?;
            }
            self.ctx.decode(&mut batch).map_err(decode_err)?;
        }
        let prompt = started.elapsed();
        let started = Instant::now();
        for i in 0..n_gen {
            let t = self.random_token();
            batch.clear();
            batch.add(t, (n_prompt + i) as i32, &[0], true).map_err(add_err)?;
            self.ctx.decode(&mut batch).map_err(decode_err)?;
        }
        Ok(SpeedSample {
            prompt,
            generation: started.elapsed(),
        })
    }
}

impl Engine {
    /// Runs the vision tower on `image` (preprocessing and encoding, not decoding the embeddings into a context)
    /// and returns how long the encoding took.
    pub fn time_image_encoding(&self, image: &ImageInput) -> Result<Duration, EngineError> {
        let vision = self.vision.as_ref().ok_or(EngineError::ImagesWithoutMmproj)?;
        let encode_err = |reason: String| EngineError::ImageEncode {
            path: image.path.clone(),
            reason,
        };
        let (w, h) = image.rgb.dimensions();
        let bitmap = MtmdBitmap::from_image_data(w, h, image.rgb.as_raw()).map_err(|e| encode_err(e.to_string()))?;
        let text = MtmdInputText {
            text: llama_cpp_2::mtmd::mtmd_default_marker().to_string(),
            add_special: false,
            parse_special: true,
        };
        let mut mtmd = vision.ctx.borrow_mut();
        let chunks = mtmd.tokenize(text, &[&bitmap]).map_err(|e| encode_err(e.to_string()))?;
        let mut elapsed = Duration::ZERO;
        for i in 0..chunks.len() {
            let chunk = chunks.get(i).expect("index in range");
            if chunk.chunk_type() == MtmdInputChunkType::Text {
                continue;
            }
            let started = Instant::now();
            mtmd.encode_chunk(&chunk).map_err(|e| encode_err(e.to_string()))?;
            elapsed += started.elapsed();
        }
        Ok(elapsed)
    }
}
