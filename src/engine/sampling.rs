//! Builds llama.cpp's sampler chain from [`SamplingSettings`]: the repetition penalty, then the draw. The
//! constrained draw (`constrained.rs`) uses the same two parts with the grammar between them.

use llama_cpp_2::sampling::LlamaSampler;

use crate::settings::SamplingSettings;

/// The sampler chain: repetition penalty, then greedy, or top-k, top-p, min-p, temperature and a seeded draw.
pub fn sampler(settings: &SamplingSettings, n_vocab: i32) -> LlamaSampler {
    let mut chain: Vec<LlamaSampler> = penalties(settings, n_vocab).into_iter().collect();
    chain.extend(draw(settings));
    LlamaSampler::chain_simple(chain)
}

/// The repetition penalty, when on.
pub(super) fn penalties(settings: &SamplingSettings, n_vocab: i32) -> Option<LlamaSampler> {
    ((settings.repeat_penalty - 1.0).abs() > f32::EPSILON)
        .then(|| LlamaSampler::penalties(n_vocab, settings.repeat_last_n, settings.repeat_penalty, 0.0, 0.0))
}

/// What picks the token: greedy, or top-k (when k > 0), top-p (below 1), min-p (above 0), temperature and a
/// seeded draw.
pub(super) fn draw(settings: &SamplingSettings) -> Vec<LlamaSampler> {
    if settings.is_greedy() {
        return vec![LlamaSampler::greedy()];
    }
    let mut chain = Vec::new();
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
    chain
}
