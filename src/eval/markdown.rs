//! report.md: the report of an eval run for a person: the caution, a summary table, the per-class table, the
//! confusion matrix as a table, the definitions that matter when reading it, and links to the plots.
//!
//! Owns: the text. Must not: compute metrics or write files.

use std::fmt::Write;

use super::{Report, CONFUSION_PNG, RELIABILITY_PNG};

/// The whole of report.md.
pub fn render(r: &Report) -> String {
    let mut s = String::new();
    // Writing to a String cannot fail.
    let _ = write_report(&mut s, r);
    s
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_string(), |v| format!("{v:.4}"))
}

/// A table cell: pipes escaped, so a label cannot break the table.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

fn write_report(s: &mut String, r: &Report) -> std::fmt::Result {
    let m = &r.metrics;
    writeln!(s, "# Eval report\n")?;
    writeln!(s, "> {}\n", r.caution)?;
    let or_unknown = |v: &Option<String>| v.clone().unwrap_or_else(|| "unknown".into());
    writeln!(s, "- Model: `{}`", or_unknown(&r.model))?;
    writeln!(s, "- Labelled data: `{}`", or_unknown(&r.input))?;
    let field = r.field.as_ref().map(|f| format!(" (field `{f}`)")).unwrap_or_default();
    writeln!(s, "- Answers: {}{field}\n", or_unknown(&r.mode))?;

    writeln!(s, "## Summary\n")?;
    writeln!(s, "| Metric | Value |\n|---|---|")?;
    writeln!(s, "| Items | {} |", m.n)?;
    writeln!(s, "| Correct | {} |", m.correct)?;
    writeln!(s, "| No answer (counted wrong) | {} |", m.no_answer)?;
    let [lo, hi] = m.accuracy_ci95;
    writeln!(s, "| Accuracy | {:.4} (95% Wilson CI {lo:.4} to {hi:.4}) |", m.accuracy)?;
    writeln!(s, "| Macro F1 | {:.4} |", m.macro_f1)?;
    writeln!(s, "| Weighted F1 | {:.4} |", m.weighted_f1)?;
    writeln!(s, "| Cohen's kappa | {} |", opt(m.cohen_kappa))?;
    match (&m.roc_auc_positive, m.roc_auc) {
        (Some(positive), Some(auc)) => writeln!(
            s,
            "| ROC AUC (positive class `{}`) | {auc:.4} ({} items; {} without probabilities left out) |",
            cell(positive),
            m.roc_auc_items,
            m.roc_auc_excluded
        )?,
        _ => writeln!(
            s,
            "| ROC AUC | n/a ({}) |",
            m.roc_auc_note.as_deref().unwrap_or("not computed")
        )?,
    }
    match &m.calibration {
        Some(c) => {
            writeln!(
                s,
                "| Expected calibration error | {:.4} ({} items with probabilities, 10 bins) |",
                c.ece, c.n
            )?;
            writeln!(s, "| Brier score | {:.4} |", c.brier)?;
        }
        None => writeln!(s, "| Calibration | n/a (no item has probabilities) |")?,
    }

    writeln!(s, "\n## Per class\n")?;
    writeln!(
        s,
        "| Class | Precision | Recall | F1 | Support |\n|---|---|---|---|---|"
    )?;
    for (label, c) in &m.per_class.0 {
        writeln!(
            s,
            "| {} | {:.4} | {:.4} | {:.4} | {} |",
            cell(label),
            c.precision,
            c.recall,
            c.f1,
            c.support
        )?;
    }

    writeln!(s, "\n## Confusion matrix\n")?;
    writeln!(s, "Rows: true label; columns: predicted label.\n")?;
    let labels: Vec<String> = m.classes.iter().map(|l| cell(l)).collect();
    writeln!(s, "| true \\ predicted | {} | no answer |", labels.join(" | "))?;
    writeln!(s, "|---|{}---|", "---|".repeat(labels.len()))?;
    for (i, row) in m.confusion_matrix.matrix.iter().enumerate() {
        let counts: Vec<String> = row.iter().map(u64::to_string).collect();
        writeln!(
            s,
            "| {} | {} | {} |",
            labels[i],
            counts.join(" | "),
            m.confusion_matrix.no_answer[i]
        )?;
    }
    writeln!(s, "\n![Confusion matrix]({CONFUSION_PNG})")?;
    if m.calibration.is_some() {
        writeln!(s, "\n![Reliability diagram]({RELIABILITY_PNG})")?;
    }

    writeln!(s, "\n## How these figures are computed\n")?;
    for line in DEFINITIONS {
        writeln!(s, "- {line}")?;
    }
    Ok(())
}

const DEFINITIONS: &[&str] = &[
    "An item without an answer (an error, an incomplete answer, or a value not among the classes) counts as wrong: \
     a false negative of its true class and a false positive of none.",
    "Accuracy's interval is the 95% Wilson score interval (z = 1.959964).",
    "Precision, recall and F1 are 0 where they would be 0/0 (a class never predicted, or without items), as \
     scikit-learn's `zero_division=0`; macro F1 is their plain mean over all classes, weighted F1 weights by support.",
    "Cohen's kappa treats \"no answer\" as one more category, so missing answers count as disagreements; with none \
     it is scikit-learn's `cohen_kappa_score`. It is n/a when every label and prediction is the same class (0/0).",
    "ROC AUC is computed for two classes only, the positive class being the second class of eval.json, scored by \
     its probability; ties take their average rank (Mann-Whitney), as scikit-learn's `roc_auc_score`.",
    "Calibration: confidence is the largest class probability and the predicted class its argmax; 10 equal-width \
     bins, bin i holding confidences in (i/10, (i+1)/10] (the first also 0); ECE = Σ |B|/n · |accuracy(B) − \
     confidence(B)|; the Brier score is the mean of Σ_k (p_k − [k = label])².",
];
