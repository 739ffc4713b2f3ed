//! `medgemma eval`: a model measured on the user's own labelled data. Three modes: run the labelled items
//! (`--input`, `--output`), recompute a folder's report (`--report`), compare two runs (`--compare`).
//!
//! Owns: choosing the mode and printing the report or comparison (stdout: the table or JSON only; notices on
//! stderr). Must not: compute metrics or know the files' formats (`crate::eval` does).

use std::io::Write;
use std::path::Path;

use anyhow::Result;

use crate::cli::EvalArgs;
use crate::eval::compare::{format_p, Comparison};
use crate::eval::{self, Report};

pub fn run(args: EvalArgs) -> Result<()> {
    if let Some(dir) = &args.report {
        return report(dir, args.json);
    }
    if let [a, b] = args.compare.as_slice() {
        return compare(a, b, args.json);
    }
    super::eval_run::run(args)
}

/// `--report DIR`: recompute and write DIR's report files, then print the summary (or the report as JSON).
pub(crate) fn report(dir: &Path, json: bool) -> Result<()> {
    let report = eval::write_report(dir)?;
    let mut written = vec![eval::REPORT_JSON, eval::REPORT_MD, eval::CONFUSION_PNG];
    if report.metrics.calibration.is_some() {
        written.push(eval::RELIABILITY_PNG);
    }
    eprintln!("medgemma eval: wrote {} in {}", written.join(", "), dir.display());
    super::print_report(json, &report, write_report_table)
}

/// `--compare A B`: both runs over their common items, with McNemar's test.
fn compare(a: &Path, b: &Path, json: bool) -> Result<()> {
    let comparison = eval::compare_runs(a, b)?;
    if comparison.only_in_a + comparison.only_in_b > 0 {
        eprintln!(
            "medgemma eval: {} items are in only one run and are left out ({} only in A, {} only in B)",
            comparison.only_in_a + comparison.only_in_b,
            comparison.only_in_a,
            comparison.only_in_b
        );
    }
    let named = Named {
        run_a: a.display().to_string(),
        run_b: b.display().to_string(),
        comparison: &comparison,
    };
    super::print_report(json, &named, write_compare_table)
}

fn fixed(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_string(), |v| format!("{v:.4}"))
}

fn write_report_table(out: &mut dyn Write, r: &Report) -> std::io::Result<()> {
    let m = &r.metrics;
    let unknown = |v: &Option<String>| v.clone().unwrap_or_else(|| "?".into());
    writeln!(
        out,
        "model      {} ({}, input {})",
        unknown(&r.model),
        unknown(&r.mode),
        unknown(&r.input)
    )?;
    writeln!(
        out,
        "items      {} ({} correct, {} without an answer, counted wrong)",
        m.n, m.correct, m.no_answer
    )?;
    let [lo, hi] = m.accuracy_ci95;
    writeln!(out, "accuracy   {:.4} (95% CI {lo:.4} to {hi:.4})", m.accuracy)?;
    writeln!(out, "macro F1   {:.4}", m.macro_f1)?;
    writeln!(out, "kappa      {}", fixed(m.cohen_kappa))?;
    if let (Some(auc), Some(positive)) = (m.roc_auc, &m.roc_auc_positive) {
        let left_out = if m.roc_auc_excluded > 0 {
            format!("; {} items without probabilities left out", m.roc_auc_excluded)
        } else {
            String::new()
        };
        writeln!(out, "ROC AUC    {auc:.4} (positive class {positive}{left_out})")?;
    }
    if let Some(c) = &m.calibration {
        writeln!(
            out,
            "ECE        {:.4} (10 bins, {} items; Brier {:.4})",
            c.ece, c.n, c.brier
        )?;
    }
    let width = m.classes.iter().map(|c| c.chars().count()).max().unwrap_or(0).max(5);
    writeln!(out, "\n{:<width$}  precision  recall     F1  support", "class")?;
    for (label, s) in &m.per_class.0 {
        writeln!(
            out,
            "{label:<width$}  {:>9.4}  {:>6.4}  {:>5.4}  {:>7}",
            s.precision, s.recall, s.f1, s.support
        )?;
    }
    writeln!(out, "\n{}", r.caution)
}

/// The comparison with the folders it came from (the JSON's `run_a` and `run_b`).
#[derive(serde::Serialize)]
struct Named<'a> {
    run_a: String,
    run_b: String,
    #[serde(flatten)]
    comparison: &'a Comparison,
}

fn write_compare_table(out: &mut dyn Write, n: &Named) -> std::io::Result<()> {
    let c = n.comparison;
    writeln!(out, "A  {}\nB  {}\n", n.run_a, n.run_b)?;
    writeln!(out, "{} items in both runs", c.paired)?;
    writeln!(out, "{:<12} {:>28} {:>28}", "", "A", "B")?;
    let ci = |v: f64, [lo, hi]: [f64; 2]| format!("{v:.4} ({lo:.4} to {hi:.4})");
    writeln!(
        out,
        "{:<12} {:>28} {:>28}",
        "accuracy",
        ci(c.a.accuracy, c.a.accuracy_ci95),
        ci(c.b.accuracy, c.b.accuracy_ci95)
    )?;
    writeln!(
        out,
        "{:<12} {:>28} {:>28}",
        "macro F1",
        format!("{:.4}", c.a.macro_f1),
        format!("{:.4}", c.b.macro_f1)
    )?;
    writeln!(
        out,
        "{:<12} {:>28} {:>28}",
        "kappa",
        fixed(c.a.cohen_kappa),
        fixed(c.b.cohen_kappa)
    )?;
    writeln!(out, "{:<12} {:>28} {:>28}", "no answer", c.a.no_answer, c.b.no_answer)?;
    writeln!(out)?;
    writeln!(out, "A right, B wrong (b)   {}", c.a_right_b_wrong)?;
    writeln!(out, "A wrong, B right (c)   {}", c.a_wrong_b_right)?;
    writeln!(
        out,
        "accuracy B - A         {}",
        ci(c.accuracy_difference, c.accuracy_difference_ci95)
    )?;
    writeln!(out, "McNemar exact p        {}", format_p(c.mcnemar_exact_p))?;
    writeln!(
        out,
        "McNemar chi-square p   {} (chi-square {:.4}, continuity corrected)",
        format_p(c.mcnemar_chi_square_p),
        c.mcnemar_chi_square
    )?;
    writeln!(out, "\n{}", c.reading)
}
