//! Label choices: each label scored over its whole token sequence after the prompt (the prompt evaluated once),
//! and the probabilities of the labels among themselves.
//!
//! Owns: a label's token sequence, the log-softmax of a row of logits, and the normalisation of label scores. The
//! decoding itself is the scheduler's (`Scheduler::score_continuations`).

use llama_cpp_2::token::LlamaToken;

use super::error::EngineError;
use super::model::Engine;
use super::session::Session;
use crate::prompt::ControlToken;

/// The scores of a set of labels after one prompt.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ChoiceScores {
    /// The label's whole answer: its tokens, then the end of the turn.
    pub log_probs: Vec<f64>,
    /// The labels' probabilities among themselves (a softmax of `log_probs`): they sum to 1.
    pub probabilities: Vec<f64>,
    /// The most probable label (the first of equals).
    pub best: usize,
}

/// log softmax(row)[token] in f64: the row's log-sum-exp around its maximum.
pub(crate) fn log_softmax_at(row: &[f32], token: LlamaToken) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = row.iter().map(|&l| (l as f64 - max).exp()).sum();
    let at = row.get(token.0.max(0) as usize).copied().unwrap_or(f32::NEG_INFINITY) as f64;
    at - max - sum.ln()
}

/// The labels' probabilities among themselves, from their log-probabilities (a softmax around the maximum).
pub(crate) fn normalise(log_probs: &[f64]) -> Vec<f64> {
    let max = log_probs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let weights: Vec<f64> = log_probs.iter().map(|&l| (l - max).exp()).collect();
    let sum: f64 = weights.iter().sum();
    weights.iter().map(|w| w / sum).collect()
}

impl Engine {
    /// A label as a whole answer: its text tokenized as plain text (control-token texts stay text), then the
    /// end-of-turn token, so that a label that begins another ("effusion" and "effusion, small") is scored as
    /// the complete answer.
    pub fn choice_tokens(&self, label: &str) -> Result<Vec<i32>, EngineError> {
        let mut tokens = self.tokenize_plain(label);
        if tokens.is_empty() {
            return Err(EngineError::Decode(format!("the label {label:?} has no tokens")));
        }
        tokens.push(self.controls[ControlToken::EndOfTurn.text()].0);
        Ok(tokens)
    }
}

impl ChoiceScores {
    pub(crate) fn from_log_probs(log_probs: Vec<f64>) -> ChoiceScores {
        let probabilities = normalise(&log_probs);
        let best = (0..log_probs.len()).fold(0, |best, i| if log_probs[i] > log_probs[best] { i } else { best });
        ChoiceScores {
            log_probs,
            probabilities,
            best,
        }
    }
}

impl Session<'_> {
    /// Scores every label (as [`Engine::choice_tokens`]) after the evaluated prompt; `on_row(label, j, logits)`
    /// sees the logits that score token j of each label.
    pub fn score_choices(
        &mut self,
        labels: &[Vec<i32>],
        on_row: &mut dyn FnMut(usize, usize, &[f32]),
    ) -> Result<ChoiceScores, EngineError> {
        let log_probs = self.scheduler.score_continuations(0, labels, on_row)?;
        Ok(ChoiceScores::from_log_probs(log_probs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_softmax_matches_the_definition() {
        let row = [1.0f32, 2.0, 3.0, -1.0];
        let z: f64 = row.iter().map(|&l| (l as f64).exp()).sum();
        for (i, &l) in row.iter().enumerate() {
            let expected = (l as f64).exp().ln() - z.ln();
            assert!((log_softmax_at(&row, LlamaToken(i as i32)) - expected).abs() < 1e-12);
        }
        // Large logits do not overflow.
        let big = [1000.0f32, 1000.0];
        assert!((log_softmax_at(&big, LlamaToken(0)) - (0.5f64).ln()).abs() < 1e-12);
    }

    #[test]
    fn probabilities_sum_to_one_and_keep_the_order() {
        let scores = ChoiceScores::from_log_probs(vec![-3.0, -1.0, -2.0, -800.0]);
        let sum: f64 = scores.probabilities.iter().sum();
        assert!((sum - 1.0).abs() < 1e-12);
        assert_eq!(scores.best, 1);
        let direct: Vec<f64> = [-3.0f64, -1.0, -2.0, -800.0].iter().map(|l| l.exp()).collect();
        let z: f64 = direct.iter().sum();
        for (p, d) in scores.probabilities.iter().zip(&direct) {
            assert!((p - d / z).abs() < 1e-15);
        }
        assert_eq!(ChoiceScores::from_log_probs(vec![-1.0, -1.0]).best, 0);
    }
}
