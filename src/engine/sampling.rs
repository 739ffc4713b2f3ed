//! Builds llama.cpp's sampler chain from [`SamplingSettings`].

use llama_cpp_2::sampling::LlamaSampler;

use crate::settings::SamplingSettings;

/// The sampler chain: repetition penalty, then greedy, or top-k, top-p, min-p, temperature and a seeded draw.
pub fn sampler(settings: &SamplingSettings, n_vocab: i32) -> LlamaSampler {
    let mut chain = Vec::new();
    if (settings.repeat_penalty - 1.0).abs() > f32::EPSILON {
        chain.push(LlamaSampler::penalties(
            n_vocab,
            settings.repeat_last_n,
            settings.repeat_penalty,
            0.0,
            0.0,
        ));
    }
    if settings.is_greedy() {
        chain.push(LlamaSampler::greedy());
    } else {
        if settings.top_k > 0 {
            chain.push(LlamaSampler::top_k(settings.top_k));
        }
        if settings.top_p < 1.0 {
            chain.push(LlamaSampler::top_p(settings.top_p, 1));
        }
        if settings.min_p > 0.0 {
            chain.push(LlamaSampler::min_p(settings.min_p, 1));
        }
        chain.push(LlamaSampler::temp(settings.temperature));
        chain.push(LlamaSampler::dist(settings.seed));
    }
    LlamaSampler::chain_simple(chain)
}
