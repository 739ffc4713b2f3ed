//! Two runs on the same items, side by side: each run's metrics over the items both hold (paired by id), and
//! McNemar's test of the difference in accuracy on those pairs.
//!
//! With b = items A got right and B wrong, c = items A got wrong and B right: the exact p-value is the two-sided
//! binomial test of b out of b + c at ½, min(1, 2·P(X ≤ min(b, c))); the chi-square statistic with continuity
//! correction is max(0, |b − c| − 1)² / (b + c), its p-value the chi-square (1 degree of freedom) survival. The
//! difference in accuracy B − A = (c − b)/n has the Wald interval for a paired difference,
//! (c − b)/n ± z·√((b + c) − (c − b)²/n)/n. Both p-values are 1 when b + c = 0.
//!
//! Owns: the pairing and its refusals, and the test. Must not: read files (`src/eval.rs` does).

use std::collections::HashMap;

use serde::Serialize;

use super::metrics::{self, Item, Metrics, MetricsError, Z95};
use super::stats::{binomial_half_two_sided, chi_square_1_survival};

/// The significance level of the one-line reading.
pub const ALPHA: f64 = 0.05;

/// One run's figures over the paired items.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunFigures {
    pub n: u64,
    pub accuracy: f64,
    pub accuracy_ci95: [f64; 2],
    pub no_answer: u64,
    pub macro_f1: f64,
    pub cohen_kappa: Option<f64>,
}

impl From<&Metrics> for RunFigures {
    fn from(m: &Metrics) -> Self {
        RunFigures {
            n: m.n,
            accuracy: m.accuracy,
            accuracy_ci95: m.accuracy_ci95,
            no_answer: m.no_answer,
            macro_f1: m.macro_f1,
            cohen_kappa: m.cohen_kappa,
        }
    }
}

/// The comparison of run A with run B.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub a: RunFigures,
    pub b: RunFigures,
    /// Items in both runs (the pairs), and those only one run holds (left out).
    pub paired: u64,
    pub only_in_a: u64,
    pub only_in_b: u64,
    /// McNemar's discordant counts.
    pub a_right_b_wrong: u64,
    pub a_wrong_b_right: u64,
    /// Accuracy of B minus accuracy of A over the pairs, and its 95% Wald interval.
    pub accuracy_difference: f64,
    pub accuracy_difference_ci95: [f64; 2],
    pub mcnemar_exact_p: f64,
    pub mcnemar_chi_square: f64,
    pub mcnemar_chi_square_p: f64,
    /// One line for a person: is the difference significant at [`ALPHA`] by the exact test.
    pub reading: String,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CompareError {
    #[error("no item id is in both runs: they were not run on the same items")]
    NoOverlap,
    #[error(
        "item {id:?} has label {a:?} in run A and {b:?} in run B: the runs were not made from the same labelled data"
    )]
    LabelDiffers { id: String, a: String, b: String },
    #[error(transparent)]
    Metrics(#[from] MetricsError),
}

/// Compares the runs `a` and `b`, both (id, item) over the same `classes`; ids are unique within each run.
pub fn compare(classes: &[String], a: &[(String, Item)], b: &[(String, Item)]) -> Result<Comparison, CompareError> {
    let in_b: HashMap<&str, &Item> = b.iter().map(|(id, item)| (id.as_str(), item)).collect();
    let mut pairs_a = Vec::new();
    let mut pairs_b = Vec::new();
    for (id, item_a) in a {
        let Some(item_b) = in_b.get(id.as_str()) else { continue };
        if item_a.label != item_b.label {
            return Err(CompareError::LabelDiffers {
                id: id.clone(),
                a: classes[item_a.label].clone(),
                b: classes[item_b.label].clone(),
            });
        }
        pairs_a.push(item_a.clone());
        pairs_b.push((*item_b).clone());
    }
    if pairs_a.is_empty() {
        return Err(CompareError::NoOverlap);
    }
    let paired = pairs_a.len() as u64;
    let right = |i: &Item| i.prediction == Some(i.label);
    let (mut b_count, mut c_count) = (0u64, 0u64);
    for (x, y) in pairs_a.iter().zip(&pairs_b) {
        match (right(x), right(y)) {
            (true, false) => b_count += 1,
            (false, true) => c_count += 1,
            _ => {}
        }
    }
    let metrics_a = metrics::compute(classes, &pairs_a)?;
    let metrics_b = metrics::compute(classes, &pairs_b)?;
    let test = mcnemar(b_count, c_count, paired);
    let p = format_p(test.exact_p);
    let reading = if test.exact_p < ALPHA {
        let better = if c_count > b_count { "B" } else { "A" };
        format!("{better} is more accurate, significant at {ALPHA} (exact McNemar p = {p})")
    } else {
        format!("no significant difference at {ALPHA} (exact McNemar p = {p})")
    };
    Ok(Comparison {
        a: RunFigures::from(&metrics_a),
        b: RunFigures::from(&metrics_b),
        paired,
        only_in_a: a.len() as u64 - paired,
        only_in_b: b.len() as u64 - paired,
        a_right_b_wrong: b_count,
        a_wrong_b_right: c_count,
        accuracy_difference: test.difference,
        accuracy_difference_ci95: test.difference_ci95,
        mcnemar_exact_p: test.exact_p,
        mcnemar_chi_square: test.chi_square,
        mcnemar_chi_square_p: test.chi_square_p,
        reading,
    })
}

/// A p-value for a person: 4 decimals, or 3 significant digits below 0.0001 (so that it never reads 0.0000).
pub fn format_p(p: f64) -> String {
    if p >= 1e-4 || p == 0.0 {
        format!("{p:.4}")
    } else {
        format!("{p:.2e}")
    }
}

/// McNemar's test of discordant counts `b` (A right, B wrong) and `c` (A wrong, B right) among `n` pairs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct McNemar {
    pub exact_p: f64,
    pub chi_square: f64,
    pub chi_square_p: f64,
    pub difference: f64,
    pub difference_ci95: [f64; 2],
}

pub fn mcnemar(b: u64, c: u64, n: u64) -> McNemar {
    let discordant = b + c;
    let (exact_p, chi_square, chi_square_p) = if discordant == 0 {
        (1.0, 0.0, 1.0)
    } else {
        let corrected = (b.abs_diff(c) as f64 - 1.0).max(0.0);
        let chi_square = corrected * corrected / discordant as f64;
        (
            binomial_half_two_sided(b, discordant),
            chi_square,
            chi_square_1_survival(chi_square),
        )
    };
    let nf = n as f64;
    let diff = (c as f64 - b as f64) / nf;
    let spread = (discordant as f64 - (c as f64 - b as f64).powi(2) / nf).max(0.0).sqrt() / nf;
    McNemar {
        exact_p,
        chi_square,
        chi_square_p,
        difference: diff,
        difference_ci95: [diff - Z95 * spread, diff + Z95 * spread],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(outcomes: &[(&str, usize, Option<usize>)]) -> Vec<(String, Item)> {
        outcomes
            .iter()
            .map(|&(id, label, prediction)| {
                (
                    id.to_string(),
                    Item {
                        label,
                        prediction,
                        probabilities: None,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn pairs_by_id_and_counts_discordant_items() {
        let classes = vec!["x".to_string(), "y".to_string()];
        let a = run(&[
            ("1", 0, Some(0)),
            ("2", 1, Some(1)),
            ("3", 1, Some(0)),
            ("4", 0, None),
            ("only-a", 0, Some(0)),
        ]);
        let b = run(&[
            ("4", 0, Some(0)),
            ("3", 1, Some(1)),
            ("2", 1, Some(0)),
            ("1", 0, Some(0)),
            ("only-b", 1, None),
        ]);
        let c = compare(&classes, &a, &b).unwrap();
        assert_eq!((c.paired, c.only_in_a, c.only_in_b), (4, 1, 1));
        // Item 2: A right, B wrong; items 3 and 4: A wrong, B right.
        assert_eq!((c.a_right_b_wrong, c.a_wrong_b_right), (1, 2));
        assert_eq!((c.a.accuracy, c.b.accuracy), (0.5, 0.75));
        assert_eq!(c.accuracy_difference, 0.25);
        // b + c = 3, min 1: 2·(1 + 3)/8 = 1.
        assert_eq!(c.mcnemar_exact_p, 1.0);
        // (|1 − 2| − 1)² / 3 = 0.
        assert_eq!((c.mcnemar_chi_square, c.mcnemar_chi_square_p), (0.0, 1.0));
        assert_eq!(
            c.reading,
            "no significant difference at 0.05 (exact McNemar p = 1.0000)"
        );
        assert_eq!(
            (format_p(0.01234), format_p(3.6e-12)),
            ("0.0123".to_string(), "3.60e-12".to_string())
        );
    }

    #[test]
    fn refuses_differing_labels_and_no_overlap() {
        let classes = vec!["x".to_string(), "y".to_string()];
        let a = run(&[("1", 0, Some(0))]);
        let b = run(&[("1", 1, Some(0))]);
        assert!(matches!(compare(&classes, &a, &b), Err(CompareError::LabelDiffers { id, .. }) if id == "1"));
        assert_eq!(
            compare(&classes, &a, &run(&[("2", 0, None)])),
            Err(CompareError::NoOverlap)
        );
    }

    #[test]
    fn mcnemar_by_hand() {
        // b = 2, c = 12, n = 100: exact p = 2·(1 + 14 + 91)/2¹⁴ = 212/16384.
        let t = mcnemar(2, 12, 100);
        assert!((t.exact_p - 212.0 / 16384.0).abs() < 1e-17);
        // (10 − 1)²/14 = 81/14.
        assert_eq!(t.chi_square, 81.0 / 14.0);
        assert!((t.chi_square_p - super::super::stats::erfc((81.0f64 / 28.0).sqrt())).abs() == 0.0);
        // Difference 0.1, spread √(14 − 1)/100.
        assert_eq!(t.difference, 0.1);
        let half = Z95 * 13f64.sqrt() / 100.0;
        assert!(
            (t.difference_ci95[0] - (0.1 - half)).abs() < 1e-16 && (t.difference_ci95[1] - (0.1 + half)).abs() < 1e-16
        );
        // No discordant pairs: p = 1 and an interval of width 0.
        let t = mcnemar(0, 0, 10);
        assert_eq!((t.exact_p, t.chi_square_p, t.difference_ci95), (1.0, 1.0, [0.0, 0.0]));
    }
}
