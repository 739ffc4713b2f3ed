//! The metrics of one eval run, computed from the items' true labels, predictions and (when the run scored them)
//! class probabilities: accuracy with its Wilson interval, the confusion matrix, per-class precision/recall/F1,
//! macro- and weighted-F1, Cohen's kappa, the binary ROC AUC and calibration (ECE, Brier score).
//!
//! Every definition is the one scikit-learn uses, so that `tests/python/test_eval_metrics.py` can compare them
//! within rounding: precision, recall and F1 of a class are 0 where they would be 0/0 (`zero_division=0`); a missing
//! answer (no prediction) is a false negative of its true class and a false positive of none.
//!
//! Owns: the arithmetic, in f64 from exact integer counts. Must not: read or write files, or know the file formats
//! (`src/eval.rs` turns records into [`Item`]s).

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

/// The 97.5% quantile of the standard normal distribution, Φ⁻¹(0.975): the z of every two-sided 95% interval here.
pub const Z95: f64 = 1.959_963_984_540_054;

/// The number of equal-width confidence bins of the calibration (bin i holds confidences in (i/10, (i+1)/10]).
pub const CALIBRATION_BINS: usize = 10;

/// One labelled item, its classes as indices into the run's class list.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub label: usize,
    /// `None`: no valid answer (an error, an incomplete answer, or a value not among the classes).
    pub prediction: Option<usize>,
    /// One probability per class, in class order, when the run scored the classes.
    pub probabilities: Option<Vec<f64>>,
}

/// Rows: the true class; columns: the predicted class, both in class order. Items without an answer are counted
/// per true class in `no_answer` instead of in a column.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConfusionMatrix {
    pub labels: Vec<String>,
    pub matrix: Vec<Vec<u64>>,
    pub no_answer: Vec<u64>,
}

/// Precision, recall, F1 and support of one class.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ClassScores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: u64,
}

/// The per-class scores in class order, written as a JSON object {label: scores} in that order.
#[derive(Debug, Clone, PartialEq)]
pub struct PerClass(pub Vec<(String, ClassScores)>);

impl Serialize for PerClass {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (label, scores) in &self.0 {
            map.serialize_entry(label, scores)?;
        }
        map.end()
    }
}

/// One confidence bin of the calibration; `accuracy` and `confidence` are `None` for an empty bin.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CalibrationBin {
    pub lower: f64,
    pub upper: f64,
    pub count: u64,
    pub accuracy: Option<f64>,
    pub confidence: Option<f64>,
}

/// Calibration over the items with probabilities: confidence = the largest probability, the predicted class = the
/// first class with it (argmax).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Calibration {
    /// Items with probabilities.
    pub n: u64,
    /// Expected calibration error: Σ |B|/n · |accuracy(B) − confidence(B)| over the bins.
    pub ece: f64,
    /// Multiclass Brier score: the mean over items of Σ_k (p_k − [k = label])².
    pub brier: f64,
    pub bins: Vec<CalibrationBin>,
}

/// Everything [`compute`] measures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metrics {
    pub n: u64,
    pub correct: u64,
    pub accuracy: f64,
    pub accuracy_ci95: [f64; 2],
    pub no_answer: u64,
    pub classes: Vec<String>,
    pub confusion_matrix: ConfusionMatrix,
    pub per_class: PerClass,
    pub macro_f1: f64,
    pub weighted_f1: f64,
    /// `None` when the expected disagreement is 0 (every label and prediction the same class): kappa is 0/0.
    pub cohen_kappa: Option<f64>,
    pub roc_auc: Option<f64>,
    /// The positive class of `roc_auc` (the second class) when the run has exactly two classes.
    pub roc_auc_positive: Option<String>,
    /// Items the ROC AUC is computed from (those with probabilities), and those left out (without them).
    pub roc_auc_items: u64,
    pub roc_auc_excluded: u64,
    /// Why `roc_auc` is null, when it is.
    pub roc_auc_note: Option<String>,
    pub calibration: Option<Calibration>,
}

/// Why the metrics cannot be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricsError {
    #[error("no items to measure")]
    Empty,
    #[error("no classes")]
    NoClasses,
    #[error("an item's class index {index} is outside the {classes} classes")]
    ClassIndex { index: usize, classes: usize },
    #[error("an item has {got} probabilities for {classes} classes")]
    ProbabilityCount { got: usize, classes: usize },
}

/// All the metrics of `items` over `classes` (whose order is the report's order).
pub fn compute(classes: &[String], items: &[Item]) -> Result<Metrics, MetricsError> {
    check(classes.len(), items)?;
    let k = classes.len();
    let n = items.len() as u64;
    let confusion = confusion(k, items);
    let correct: u64 = (0..k).map(|i| confusion.matrix[i][i]).sum();
    let no_answer: u64 = confusion.no_answer.iter().sum();
    let per_class = per_class(&confusion);
    let macro_f1 = per_class.iter().map(|s| s.f1).sum::<f64>() / k as f64;
    let weighted_f1 = per_class.iter().map(|s| s.f1 * s.support as f64).sum::<f64>() / n as f64;
    let with_probabilities: Vec<&Item> = items.iter().filter(|i| i.probabilities.is_some()).collect();
    let (roc_auc, roc_auc_note) = if k != 2 {
        (
            None,
            Some(format!("ROC AUC is computed for two classes only; this run has {k}")),
        )
    } else if with_probabilities.is_empty() {
        (None, Some("no item has probabilities".to_string()))
    } else {
        match roc_auc_binary(&with_probabilities) {
            Some(auc) => (Some(auc), None),
            None => (
                None,
                Some("the items with probabilities hold only one of the two true classes".to_string()),
            ),
        }
    };
    Ok(Metrics {
        n,
        correct,
        accuracy: correct as f64 / n as f64,
        accuracy_ci95: wilson_interval(correct, n, Z95),
        no_answer,
        classes: classes.to_vec(),
        per_class: PerClass(classes.iter().cloned().zip(per_class).collect()),
        macro_f1,
        weighted_f1,
        cohen_kappa: cohen_kappa(&confusion),
        roc_auc,
        roc_auc_positive: (k == 2).then(|| classes[1].clone()),
        roc_auc_items: with_probabilities.len() as u64,
        roc_auc_excluded: n - with_probabilities.len() as u64,
        roc_auc_note,
        calibration: calibration(&with_probabilities),
        confusion_matrix: ConfusionMatrix {
            labels: classes.to_vec(),
            ..confusion
        },
    })
}

fn check(k: usize, items: &[Item]) -> Result<(), MetricsError> {
    if k == 0 {
        return Err(MetricsError::NoClasses);
    }
    if items.is_empty() {
        return Err(MetricsError::Empty);
    }
    for item in items {
        for index in std::iter::once(item.label).chain(item.prediction) {
            if index >= k {
                return Err(MetricsError::ClassIndex { index, classes: k });
            }
        }
        if let Some(p) = &item.probabilities {
            if p.len() != k {
                return Err(MetricsError::ProbabilityCount {
                    got: p.len(),
                    classes: k,
                });
            }
        }
    }
    Ok(())
}

/// The confusion matrix (labels left empty; the caller names them).
fn confusion(k: usize, items: &[Item]) -> ConfusionMatrix {
    let mut matrix = vec![vec![0u64; k]; k];
    let mut no_answer = vec![0u64; k];
    for item in items {
        match item.prediction {
            Some(p) => matrix[item.label][p] += 1,
            None => no_answer[item.label] += 1,
        }
    }
    ConfusionMatrix {
        labels: Vec::new(),
        matrix,
        no_answer,
    }
}

/// Precision tp/(tp+fp), recall tp/(tp+fn), F1 2tp/(2tp+fp+fn), each 0 where its denominator is 0 (scikit-learn's
/// `zero_division=0`); fn includes the class's items without an answer.
fn per_class(c: &ConfusionMatrix) -> Vec<ClassScores> {
    let k = c.matrix.len();
    (0..k)
        .map(|i| {
            let tp = c.matrix[i][i];
            let support = c.matrix[i].iter().sum::<u64>() + c.no_answer[i];
            let predicted: u64 = (0..k).map(|r| c.matrix[r][i]).sum();
            let (fp, fn_) = (predicted - tp, support - tp);
            ClassScores {
                precision: ratio_or_zero(tp, predicted),
                recall: ratio_or_zero(tp, support),
                f1: ratio_or_zero(2 * tp, 2 * tp + fp + fn_),
                support,
            }
        })
        .collect()
}

fn ratio_or_zero(num: u64, den: u64) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

/// Cohen's kappa with "no answer" as one more category (a column that no true label falls in), so a missing answer
/// counts as a disagreement; without missing answers this is scikit-learn's `cohen_kappa_score`. Computed as
/// scikit-learn does: 1 − observed disagreements / expected disagreements, the expected count of cell (i, j) being
/// row_i · column_j / n.
fn cohen_kappa(c: &ConfusionMatrix) -> Option<f64> {
    let k = c.matrix.len();
    let n: u64 = c.matrix.iter().flatten().sum::<u64>() + c.no_answer.iter().sum::<u64>();
    // Columns 0..k are the classes, column k is "no answer"; rows never fall in category k.
    let rows: Vec<u64> = (0..=k)
        .map(|i| {
            if i < k {
                c.matrix[i].iter().sum::<u64>() + c.no_answer[i]
            } else {
                0
            }
        })
        .collect();
    let columns: Vec<u64> = (0..=k)
        .map(|j| {
            if j < k {
                (0..k).map(|r| c.matrix[r][j]).sum()
            } else {
                c.no_answer.iter().sum()
            }
        })
        .collect();
    let observed = n - (0..k).map(|i| c.matrix[i][i]).sum::<u64>();
    let mut expected = 0.0;
    for (i, &row) in rows.iter().enumerate() {
        for (j, &column) in columns.iter().enumerate() {
            if i != j {
                expected += row as f64 * column as f64 / n as f64;
            }
        }
    }
    (expected > 0.0).then(|| 1.0 - observed as f64 / expected)
}

/// The Wilson score interval of `successes` out of `n` at normal quantile `z`:
/// (p + z²/2n ± z·√(p(1−p)/n + z²/4n²)) / (1 + z²/n), clamped to [0, 1] against rounding.
pub fn wilson_interval(successes: u64, n: u64, z: f64) -> [f64; 2] {
    if n == 0 {
        return [0.0, 1.0];
    }
    let (n, p) = (n as f64, successes as f64 / n as f64);
    let z2 = z * z;
    let denominator = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denominator;
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denominator;
    [(centre - half).max(0.0), (centre + half).min(1.0)]
}

/// ROC AUC of two classes, the positive class being the second, scored by its probability: the Mann-Whitney U
/// statistic over n_pos · n_neg, ties given their average rank (the area under the ROC curve with ties drawn as
/// diagonal steps, as scikit-learn's `roc_auc_score`). `None` when either class has no item.
fn roc_auc_binary(items: &[&Item]) -> Option<f64> {
    let mut scored: Vec<(f64, bool)> = items
        .iter()
        .filter_map(|i| i.probabilities.as_ref().map(|p| (p[1], i.label == 1)))
        .collect();
    let positives = scored.iter().filter(|(_, positive)| *positive).count() as f64;
    let negatives = scored.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return None;
    }
    scored.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Twice the rank sum of the positives, so that average ranks of ties stay integers: exact in f64.
    let mut twice_rank_sum = 0.0;
    let mut start = 0;
    while start < scored.len() {
        let mut end = start;
        while end + 1 < scored.len() && scored[end + 1].0 == scored[start].0 {
            end += 1;
        }
        // Ranks start+1 ..= end+1; their average, doubled, is start + end + 2.
        let tied_positives = scored[start..=end].iter().filter(|(_, positive)| *positive).count() as f64;
        twice_rank_sum += tied_positives * (start + end + 2) as f64;
        start = end + 1;
    }
    let u = twice_rank_sum / 2.0 - positives * (positives + 1.0) / 2.0;
    Some(u / (positives * negatives))
}

/// The bin of a confidence: bin i holds (i/10, (i+1)/10], bin 0 also holds 0. The edges are the doubles nearest
/// i/10 (`i as f64 / 10.0`), compared exactly, so a confidence of 0.3 falls in bin 2 as written.
pub fn calibration_bin(confidence: f64) -> usize {
    let edge = |i: usize| i as f64 / CALIBRATION_BINS as f64;
    let mut bin = ((confidence * CALIBRATION_BINS as f64).ceil().max(1.0) as usize - 1).min(CALIBRATION_BINS - 1);
    while bin > 0 && confidence <= edge(bin) {
        bin -= 1;
    }
    while bin + 1 < CALIBRATION_BINS && confidence > edge(bin + 1) {
        bin += 1;
    }
    bin
}

fn calibration(items: &[&Item]) -> Option<Calibration> {
    if items.is_empty() {
        return None;
    }
    let n = items.len() as f64;
    let mut count = [0u64; CALIBRATION_BINS];
    let mut hits = [0u64; CALIBRATION_BINS];
    let mut confidence_sum = [0.0f64; CALIBRATION_BINS];
    let mut brier = 0.0;
    for item in items {
        let p = item.probabilities.as_deref().unwrap_or_default();
        // argmax: the first class with the largest probability.
        let (argmax, confidence) =
            p.iter().copied().enumerate().fold(
                (0, f64::NEG_INFINITY),
                |best, (i, v)| if v > best.1 { (i, v) } else { best },
            );
        let bin = calibration_bin(confidence);
        count[bin] += 1;
        hits[bin] += u64::from(argmax == item.label);
        confidence_sum[bin] += confidence;
        brier += p
            .iter()
            .enumerate()
            .map(|(k, &v)| (v - f64::from(u8::from(k == item.label))).powi(2))
            .sum::<f64>();
    }
    let mut ece = 0.0;
    let bins = (0..CALIBRATION_BINS)
        .map(|i| {
            let (accuracy, confidence) = if count[i] == 0 {
                (None, None)
            } else {
                let (acc, conf) = (hits[i] as f64 / count[i] as f64, confidence_sum[i] / count[i] as f64);
                ece += count[i] as f64 / n * (acc - conf).abs();
                (Some(acc), Some(conf))
            };
            CalibrationBin {
                lower: i as f64 / CALIBRATION_BINS as f64,
                upper: (i + 1) as f64 / CALIBRATION_BINS as f64,
                count: count[i],
                accuracy,
                confidence,
            }
        })
        .collect();
    Some(Calibration {
        n: items.len() as u64,
        ece,
        brier: brier / n,
        bins,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classes(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn item(label: usize, prediction: Option<usize>) -> Item {
        Item {
            label,
            prediction,
            probabilities: None,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        // Hand-computed values are written to 15 significant digits.
        (a - b).abs() <= 1e-14 * b.abs().max(1.0)
    }

    #[test]
    fn three_classes_by_hand() {
        // true a: a a b ; true b: b b c ; true c: c a and one without an answer.
        let items = [
            item(0, Some(0)),
            item(0, Some(0)),
            item(0, Some(1)),
            item(1, Some(1)),
            item(1, Some(1)),
            item(1, Some(2)),
            item(2, Some(2)),
            item(2, Some(0)),
            item(2, None),
        ];
        let m = compute(&classes(&["a", "b", "c"]), &items).unwrap();
        assert_eq!((m.n, m.correct, m.no_answer), (9, 5, 1));
        assert_eq!(
            m.confusion_matrix.matrix,
            vec![vec![2, 1, 0], vec![0, 2, 1], vec![1, 0, 1]]
        );
        assert_eq!(m.confusion_matrix.no_answer, vec![0, 0, 1]);
        assert!(close(m.accuracy, 5.0 / 9.0));
        let s = &m.per_class.0;
        // a: tp 2, predicted 3, support 3; b: tp 2, predicted 3, support 3; c: tp 1, predicted 2, support 3.
        assert_eq!(
            s[0].1,
            ClassScores {
                precision: 2.0 / 3.0,
                recall: 2.0 / 3.0,
                f1: 4.0 / 6.0,
                support: 3
            }
        );
        assert_eq!(
            s[2].1,
            ClassScores {
                precision: 0.5,
                recall: 1.0 / 3.0,
                f1: 2.0 / 5.0,
                support: 3
            }
        );
        assert!(close(m.macro_f1, (2.0 / 3.0 + 2.0 / 3.0 + 0.4) / 3.0));
        // Kappa with the no-answer column: rows (3,3,3), columns (3,3,2,1), n 9. Expected agreement
        // (9+9+6)/81 = 24/81; expected disagreements 9 − 24/9 = 57/9; observed disagreements 4.
        assert!(close(m.cohen_kappa.unwrap(), 1.0 - 4.0 / (57.0 / 9.0)));
        assert!(m.roc_auc.is_none() && m.roc_auc_positive.is_none() && m.calibration.is_none());
    }

    #[test]
    fn a_class_never_predicted_scores_zero_not_nan() {
        let items = [item(0, Some(0)), item(1, Some(0)), item(0, Some(0))];
        let m = compute(&classes(&["x", "y"]), &items).unwrap();
        let y = m.per_class.0[1].1;
        assert_eq!((y.precision, y.recall, y.f1, y.support), (0.0, 0.0, 0.0, 1));
        assert!(close(m.per_class.0[0].1.precision, 2.0 / 3.0));
        // rows (2,1), columns (3,0): expected disagreements 2·0/3 + 1·3/3 = 1, observed 1: kappa 0.
        assert_eq!(m.cohen_kappa, Some(0.0));
        // A class with neither items nor predictions: all zeros, and it still counts in the macro average.
        let m = compute(&classes(&["x", "y", "z"]), &items).unwrap();
        assert_eq!(
            m.per_class.0[2].1,
            ClassScores {
                precision: 0.0,
                recall: 0.0,
                f1: 0.0,
                support: 0
            }
        );
        assert!(close(m.macro_f1, (0.8 + 0.0 + 0.0) / 3.0));
    }

    #[test]
    fn all_correct_and_single_class_degenerate_cases() {
        let items = [item(0, Some(0)), item(1, Some(1)), item(1, Some(1))];
        let m = compute(&classes(&["x", "y"]), &items).unwrap();
        assert_eq!(
            (m.accuracy, m.macro_f1, m.weighted_f1, m.cohen_kappa),
            (1.0, 1.0, 1.0, Some(1.0))
        );
        assert_eq!(m.accuracy_ci95[1], 1.0);
        // Every label and prediction the same class: kappa is 0/0, reported as none.
        let m = compute(&classes(&["x", "y"]), &[item(0, Some(0)), item(0, Some(0))]).unwrap();
        assert_eq!(m.cohen_kappa, None);
    }

    #[test]
    fn refuses_empty_input_and_bad_indices() {
        assert_eq!(compute(&classes(&["x"]), &[]), Err(MetricsError::Empty));
        assert_eq!(compute(&[], &[item(0, None)]), Err(MetricsError::NoClasses));
        assert_eq!(
            compute(&classes(&["x"]), &[item(0, Some(1))]),
            Err(MetricsError::ClassIndex { index: 1, classes: 1 })
        );
        let bad = Item {
            label: 0,
            prediction: None,
            probabilities: Some(vec![1.0, 0.0]),
        };
        assert_eq!(
            compute(&classes(&["x"]), &[bad]),
            Err(MetricsError::ProbabilityCount { got: 2, classes: 1 })
        );
    }

    #[test]
    fn wilson_interval_known_values() {
        // 8 of 10 at z = 1.96: the textbook interval, printed to 4 decimals, is 0.4902 to 0.9433.
        let [lo, hi] = wilson_interval(8, 10, 1.96);
        assert!((lo - 0.4902).abs() < 5e-5 && (hi - 0.9433).abs() < 5e-5, "{lo} {hi}");
        // 0 of n: the lower end is 0 exactly; n of n: the upper end is 1.
        assert_eq!(wilson_interval(0, 20, Z95)[0], 0.0);
        assert_eq!(wilson_interval(20, 20, Z95)[1], 1.0);
        // By hand, 0 of 20: upper = z²/n / (1 + z²/n) = z² / (n + z²).
        assert!(close(wilson_interval(0, 20, Z95)[1], Z95 * Z95 / (20.0 + Z95 * Z95)));
    }

    fn scored(label: usize, p1: f64) -> Item {
        Item {
            label,
            prediction: Some(usize::from(p1 > 0.5)),
            probabilities: Some(vec![1.0 - p1, p1]),
        }
    }

    #[test]
    fn roc_auc_with_ties_is_mann_whitney() {
        // Positives score 0.8, 0.4, 0.4; negatives 0.4, 0.1. Pairs (pos > neg): 0.8 beats both (2), each 0.4 beats
        // 0.1 (2) and ties 0.4 (2 × ½): U = 5 of 6.
        let items = [
            scored(1, 0.8),
            scored(1, 0.4),
            scored(1, 0.4),
            scored(0, 0.4),
            scored(0, 0.1),
        ];
        let m = compute(&classes(&["neg", "pos"]), &items).unwrap();
        assert!(close(m.roc_auc.unwrap(), 5.0 / 6.0));
        assert_eq!(m.roc_auc_positive.as_deref(), Some("pos"));
        // Items without probabilities are left out and counted.
        let mut more = items.to_vec();
        more.push(item(0, Some(1)));
        let m = compute(&classes(&["neg", "pos"]), &more).unwrap();
        assert!(close(m.roc_auc.unwrap(), 5.0 / 6.0));
        assert_eq!((m.roc_auc_items, m.roc_auc_excluded), (5, 1));
        // One true class only: undefined.
        let m = compute(&classes(&["neg", "pos"]), &[scored(1, 0.7), scored(1, 0.2)]).unwrap();
        assert!(m.roc_auc.is_none() && m.roc_auc_note.is_some());
    }

    #[test]
    fn calibration_bins_and_ece_by_hand() {
        assert_eq!(calibration_bin(0.0), 0);
        assert_eq!(calibration_bin(0.1), 0);
        assert_eq!(calibration_bin(0.3), 2); // 0.3 * 10 rounds to 3.0000000000000004; the edge decides
        assert_eq!(calibration_bin(0.30000000000000004), 3);
        assert_eq!(calibration_bin(0.7), 6);
        assert_eq!(calibration_bin(1.0), 9);
        // Confidences 0.9 (right), 0.9 (wrong), 0.6 (right): bin 8 acc ½ conf 0.9, bin 5 acc 1 conf 0.6.
        let items = [scored(1, 0.9), scored(0, 0.9), scored(0, 0.4)];
        let m = compute(&classes(&["neg", "pos"]), &items).unwrap();
        let c = m.calibration.unwrap();
        assert_eq!(c.n, 3);
        assert_eq!((c.bins[8].count, c.bins[5].count, c.bins[0].count), (2, 1, 0));
        assert_eq!(c.bins[0].accuracy, None);
        assert!(close(
            c.ece,
            2.0 / 3.0 * (0.5f64 - 0.9).abs() + 1.0 / 3.0 * (1.0f64 - 0.6).abs()
        ));
        // Brier: (0.1² + 0.1²) + (0.9² + 0.9²) + (0.4² + 0.4²), over 3.
        assert!(close(c.brier, (0.02 + 1.62 + 0.32) / 3.0));
    }
}
