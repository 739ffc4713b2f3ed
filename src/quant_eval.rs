//! The measures of quantisation quality that llama.cpp's perplexity tool reports, over next-token distributions:
//! perplexity of each model, the KL divergence from the reference distribution to the quantised one, and top-1
//! agreement. Pure arithmetic (f64 accumulation) on rows of logits, unit tested.

use serde::Serialize;

/// Log-probabilities of a row of logits (a numerically stable log-softmax, in f64).
pub fn log_softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x)) as f64;
    let sum: f64 = logits.iter().map(|&x| (x as f64 - max).exp()).sum();
    let log_z = max + sum.ln();
    logits.iter().map(|&x| x as f64 - log_z).collect()
}

/// KL(P || Q) = sum_i p_i (log p_i - log q_i), from log-probabilities; P is the reference.
pub fn kl_divergence(p_log: &[f64], q_log: &[f64]) -> f64 {
    p_log
        .iter()
        .zip(q_log)
        .map(|(&p, &q)| if p == f64::NEG_INFINITY { 0.0 } else { p.exp() * (p - q) })
        .sum::<f64>()
        .max(0.0)
}

/// The index of the largest value (the first one on ties).
pub fn argmax(values: &[f64]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best
}

/// Mean and standard error of the mean.
fn mean_and_stderr(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    if values.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (mean, f64::NAN);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, (var / n).sqrt())
}

/// Perplexity exp(mean NLL) with its standard error (delta method, as llama.cpp reports it).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Perplexity {
    pub value: f64,
    pub stderr: f64,
}

fn perplexity(nll: &[f64]) -> Perplexity {
    let (mean, se) = mean_and_stderr(nll);
    let value = mean.exp();
    Perplexity {
        value,
        stderr: value * se,
    }
}

/// The negative log-likelihoods of the observed next tokens under one model.
#[derive(Debug, Default, Clone)]
pub struct Likelihood {
    nll: Vec<f64>,
}

impl Likelihood {
    /// Adds one position: the model's log-probabilities and the token that came next.
    pub fn add(&mut self, log_probs: &[f64], next: usize) {
        self.nll.push(-log_probs[next]);
    }

    pub fn perplexity(&self) -> Perplexity {
        perplexity(&self.nll)
    }
}

/// A quantised model compared with the reference, position by position.
#[derive(Debug, Default, Clone)]
pub struct Comparison {
    likelihood: Likelihood,
    kl: Vec<f64>,
    same_top1: Vec<f64>,
}

impl Comparison {
    /// Adds one position: reference and quantised log-probabilities and the token that came next.
    pub fn add(&mut self, reference: &[f64], quantised: &[f64], next: usize) {
        self.likelihood.add(quantised, next);
        self.kl.push(kl_divergence(reference, quantised));
        self.same_top1.push(if argmax(reference) == argmax(quantised) {
            1.0
        } else {
            0.0
        });
    }

    pub fn report(&self, reference: &Likelihood) -> QuantQuality {
        let (kl_mean, kl_stderr) = mean_and_stderr(&self.kl);
        let mut sorted = self.kl.clone();
        sorted.sort_by(f64::total_cmp);
        let (top1, top1_stderr) = mean_and_stderr(&self.same_top1);
        let ppl = self.likelihood.perplexity();
        let base = reference.perplexity();
        QuantQuality {
            positions: self.kl.len(),
            perplexity: ppl,
            perplexity_ratio: ppl.value / base.value,
            kl_mean,
            kl_stderr,
            kl_median: quantile(&sorted, 0.5),
            kl_p99: quantile(&sorted, 0.99),
            kl_max: sorted.last().copied().unwrap_or(f64::NAN),
            top1_agreement: top1,
            top1_stderr,
        }
    }
}

/// The q-quantile of sorted values (linear interpolation between neighbours).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let pos = q.clamp(0.0, 1.0) * (n - 1) as f64;
            let lo = pos.floor() as usize;
            let hi = pos.ceil() as usize;
            sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
        }
    }
}

/// How far a quantised model is from its reference.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuantQuality {
    pub positions: usize,
    pub perplexity: Perplexity,
    /// Quantised perplexity / reference perplexity.
    pub perplexity_ratio: f64,
    /// Mean KL(reference || quantised) per position, in nats.
    pub kl_mean: f64,
    pub kl_stderr: f64,
    pub kl_median: f64,
    pub kl_p99: f64,
    pub kl_max: f64,
    /// Fraction of positions where both models rank the same token first.
    pub top1_agreement: f64,
    pub top1_stderr: f64,
}

/// Splits a token stream into whole chunks of `len` tokens, each starting with `bos` in place of its first token
/// (llama.cpp's perplexity tool does the same); the tail that does not fill a chunk is dropped.
pub fn chunks(tokens: &[i32], len: usize, bos: i32, max_chunks: Option<usize>) -> Vec<Vec<i32>> {
    tokens
        .chunks_exact(len)
        .take(max_chunks.unwrap_or(usize::MAX))
        .map(|c| {
            let mut c = c.to_vec();
            c[0] = bos;
            c
        })
        .collect()
}

/// How close a quantised vision projector's image embeddings are to the reference's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EmbeddingFidelity {
    /// Cosine similarity of the whole embedding (all tokens as one vector).
    pub cosine: f64,
    /// The lowest cosine similarity of any one image token's embedding.
    pub min_token_cosine: f64,
    pub max_abs_diff: f64,
    /// Root-mean-square difference divided by the reference's root-mean-square value.
    pub relative_rms_error: f64,
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x as f64, y as f64);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 && bb == 0.0 {
        return 1.0;
    }
    ab / (aa.sqrt() * bb.sqrt())
}

/// Compares embeddings of `width` floats per token (the same image through two projectors).
pub fn embedding_fidelity(reference: &[f32], other: &[f32], width: usize) -> EmbeddingFidelity {
    assert_eq!(reference.len(), other.len(), "embeddings of different sizes");
    let width = width.max(1);
    let min_token_cosine = reference
        .chunks(width)
        .zip(other.chunks(width))
        .map(|(a, b)| cosine(a, b))
        .fold(f64::INFINITY, f64::min);
    let mut max_abs_diff = 0f64;
    let (mut diff2, mut ref2) = (0f64, 0f64);
    for (&x, &y) in reference.iter().zip(other) {
        let d = (x as f64 - y as f64).abs();
        max_abs_diff = max_abs_diff.max(d);
        diff2 += d * d;
        ref2 += (x as f64) * (x as f64);
    }
    EmbeddingFidelity {
        cosine: cosine(reference, other),
        min_token_cosine,
        max_abs_diff,
        relative_rms_error: if ref2 > 0.0 { (diff2 / ref2).sqrt() } else { 0.0 },
    }
}

/// How many leading tokens two generations share.
pub fn common_prefix(a: &[i32], b: &[i32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_softmax_normalises_and_survives_large_logits() {
        let lp = log_softmax(&[1000.0, 1000.0, 0.0]);
        let total: f64 = lp.iter().map(|x| x.exp()).sum();
        assert!((total - 1.0).abs() < 1e-12);
        assert!((lp[0] - 0.5f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn kl_of_a_distribution_with_itself_is_zero_and_known_values_match() {
        let p = log_softmax(&[0.0, 1.0, 2.0]);
        assert!(kl_divergence(&p, &p).abs() < 1e-15);
        // P = (1/2, 1/2), Q = (1/4, 3/4): KL = 1/2 ln 2 + 1/2 ln(2/3).
        let p = [0.5f64.ln(), 0.5f64.ln()];
        let q = [0.25f64.ln(), 0.75f64.ln()];
        let expected = 0.5 * 2f64.ln() + 0.5 * (2.0f64 / 3.0).ln();
        assert!((kl_divergence(&p, &q) - expected).abs() < 1e-15);
        assert!(kl_divergence(&q, &p) > 0.0 && (kl_divergence(&q, &p) - expected).abs() > 1e-3);
    }

    #[test]
    fn perplexity_of_a_uniform_model_is_the_vocabulary_size() {
        let mut l = Likelihood::default();
        let uniform = log_softmax(&[0.0; 8]);
        for next in 0..8 {
            l.add(&uniform, next);
        }
        let ppl = l.perplexity();
        assert!((ppl.value - 8.0).abs() < 1e-9);
        assert!(ppl.stderr.abs() < 1e-9);
    }

    #[test]
    fn comparison_counts_top1_agreement_and_kl() {
        let reference = log_softmax(&[3.0, 1.0, 0.0]);
        let close = log_softmax(&[2.9, 1.1, 0.0]);
        let flipped = log_softmax(&[1.0, 3.0, 0.0]);
        let mut base = Likelihood::default();
        let mut c = Comparison::default();
        for (q, next) in [(&close, 0), (&flipped, 0), (&close, 1), (&close, 0)] {
            base.add(&reference, next);
            c.add(&reference, q, next);
        }
        let r = c.report(&base);
        assert_eq!(r.positions, 4);
        assert!((r.top1_agreement - 0.75).abs() < 1e-12);
        assert!(r.kl_max == kl_divergence(&reference, &flipped));
        assert!(r.kl_mean > 0.0 && r.kl_median < r.kl_mean);
        assert!(r.perplexity_ratio > 1.0);
    }

    #[test]
    fn embedding_fidelity_of_known_vectors() {
        let a = [1.0f32, 0.0, 0.0, 1.0];
        let same = embedding_fidelity(&a, &a, 2);
        assert!((same.cosine - 1.0).abs() < 1e-15 && (same.min_token_cosine - 1.0).abs() < 1e-15);
        assert_eq!(same.max_abs_diff, 0.0);
        // The second token turned by 90 degrees: whole-vector cosine 1/2, worst token 0.
        let b = [1.0f32, 0.0, 1.0, 0.0];
        let f = embedding_fidelity(&a, &b, 2);
        assert!((f.cosine - 0.5).abs() < 1e-12);
        assert!(f.min_token_cosine.abs() < 1e-12);
        assert_eq!(f.max_abs_diff, 1.0);
        assert!((f.relative_rms_error - 1.0).abs() < 1e-12);
        assert_eq!(common_prefix(&[1, 2, 3], &[1, 2, 4, 5]), 2);
    }

    #[test]
    fn quantiles_interpolate() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(quantile(&v, 0.5), 3.0);
        assert_eq!(quantile(&v, 1.0), 5.0);
        assert!((quantile(&v, 0.99) - 4.96).abs() < 1e-12);
        assert!(quantile(&[], 0.5).is_nan());
    }

    #[test]
    fn chunks_start_with_bos_and_drop_the_tail() {
        let tokens: Vec<i32> = (10..21).collect();
        let c = chunks(&tokens, 4, 2, None);
        assert_eq!(c, vec![vec![2, 11, 12, 13], vec![2, 15, 16, 17]]);
        assert_eq!(chunks(&tokens, 4, 2, Some(1)).len(), 1);
        assert!(chunks(&tokens, 12, 2, None).is_empty());
    }
}
