//! Speed measurement for `medgemma bench`: prompt processing and generation on random tokens (as llama.cpp's
//! llama-bench does; the content does not change the work), and the vision tower's encoding time for one image.

use std::time::{Duration, Instant};

use llama_cpp_2::mtmd::MtmdInputChunkType;
use llama_cpp_2::token::LlamaToken;

use super::context::Context;
use super::error::EngineError;
use super::model::Engine;
use super::prepare::image_chunks;
use crate::image_input::ImageInput;
use crate::settings::ContextSettings;

/// A context for timing `n_prompt` prompt tokens followed by `n_gen` generated ones.
pub struct SpeedTest<'e> {
    ctx: Context<'e>,
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
        Ok(SpeedTest {
            ctx: Context::new(engine, settings, n_ctx, 1, false)?,
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
        self.ctx.clear();
        let mut tokens = Vec::with_capacity(n_prompt);
        if n_prompt > 0 {
            tokens.push(self.bos);
        }
        while tokens.len() < n_prompt {
            let t = self.random_token();
            tokens.push(t);
        }
        let last = |i: usize| i + 1 == n_prompt;
        let started = Instant::now();
        self.ctx
            .decode_tokens(0, 0, &tokens, &last, &mut |_, _, _| {})
            .map_err(|(_, e)| e)?;
        // On a GPU the last batch may still be running: the prompt's time ends when it has finished.
        self.ctx.synchronize();
        let prompt = started.elapsed();
        let started = Instant::now();
        for i in 0..n_gen {
            let t = self.random_token();
            self.ctx
                .decode_tokens(0, n_prompt + i, &[t], &|_| true, &mut |_, _, _| {})
                .map_err(|(_, e)| e)?;
        }
        self.ctx.synchronize();
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
        let chunks = image_chunks(self, image)?.chunks;
        let mut mtmd = vision.ctx.borrow_mut();
        let mut elapsed = Duration::ZERO;
        for i in 0..chunks.len() {
            let chunk = chunks.get(i).expect("index in range");
            if chunk.chunk_type() == MtmdInputChunkType::Text {
                continue;
            }
            let started = Instant::now();
            mtmd.encode_chunk(&chunk).map_err(|e| EngineError::ImageEncode {
                path: image.path.clone(),
                reason: e.to_string(),
            })?;
            elapsed += started.elapsed();
        }
        Ok(elapsed)
    }
}
