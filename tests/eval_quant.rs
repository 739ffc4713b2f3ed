//! `medgemma eval-quant`: on the calibrated tiny checkpoint (logits spread like a trained model's), q8_0 stays
//! closer to its f32 source than q4_k_m and q4_0 do; a model compared with itself is exactly identical.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::util::*;

fn notes() -> PathBuf {
    fixtures().join("text/clinical-notes.txt")
}

fn quantized(source: &Path, dir: &Path, ty: &str) -> PathBuf {
    let out = dir.join(format!("calibrated-{ty}.gguf"));
    ok(medgemma()
        .arg("quantize")
        .arg(source)
        .arg(&out)
        .args(["--type", ty, "-t", "2"]));
    out
}

fn eval(base: &Path, quants: &[&Path], extra: &[&str]) -> Value {
    let mut cmd = medgemma();
    cmd.arg("eval-quant").arg("--base").arg(base);
    for q in quants {
        cmd.arg("--quant").arg(q);
    }
    cmd.arg("--text")
        .arg(notes())
        .args(["-c", "128", "-t", "2", "--json"])
        .args(extra);
    serde_json::from_str(&ok(&mut cmd)).unwrap()
}

#[test]
fn q8_0_is_closer_to_the_source_than_4_bit_types() {
    let dir = tempfile::tempdir().unwrap();
    let f32 = converted("tiny-medgemma-calibrated", "f32").model;
    let q8 = quantized(&f32, dir.path(), "q8_0");
    let q4km = quantized(&f32, dir.path(), "q4_k_m");
    let q40 = quantized(&f32, dir.path(), "q4_0");
    let r = eval(&f32, &[&q8, &q4km, &q40], &[]);

    let chunks = r["chunks"].as_u64().unwrap();
    assert!(chunks >= 8, "the notes fill at least 8 chunks of 128 tokens: {r}");
    // The second half of each chunk is scored, less its last position (nothing follows it).
    assert_eq!(r["scored_positions"].as_u64().unwrap(), chunks * 63);
    let base_ppl = r["base"]["perplexity"]["value"].as_f64().unwrap();
    assert!(base_ppl.is_finite() && base_ppl > 1.0, "{r}");
    assert_eq!(r["base"]["file_type"], "F32");

    let q = r["quants"].as_array().unwrap();
    let get = |i: usize, k: &str| q[i][k].as_f64().unwrap();
    assert_eq!(q[0]["file_type"], "Q8_0");
    assert_eq!(q[2]["file_type"], "Q4_0");
    for (i, quant) in q.iter().enumerate().take(3) {
        assert!(get(i, "kl_mean") > 0.0, "quantisation changes the distributions: {r}");
        assert_eq!(quant["positions"], r["scored_positions"]);
    }
    // Each mean is over ~1000 positions; demand separation by 3 standard errors of both means, not just order.
    let separated = |a: usize, b: usize| {
        get(a, "kl_mean") + 3.0 * get(a, "kl_stderr") < get(b, "kl_mean") - 3.0 * get(b, "kl_stderr")
    };
    assert!(separated(0, 1), "KL(q8_0) < KL(q4_k_m): {r}");
    assert!(separated(0, 2), "KL(q8_0) < KL(q4_0): {r}");
    assert!(get(0, "top1_agreement") > get(2, "top1_agreement"), "{r}");
    assert!(get(0, "kl_p99") >= get(0, "kl_median"));
}

#[test]
fn a_model_against_an_identical_copy_is_exactly_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let f32 = converted("tiny-medgemma-calibrated", "f32").model;
    let copy = dir.path().join("copy.gguf");
    std::fs::copy(&f32, &copy).unwrap();
    let r = eval(&f32, &[&copy], &["--chunks", "2"]);
    assert_eq!(r["chunks"], 2);
    let q = &r["quants"][0];
    assert_eq!(q["kl_mean"].as_f64().unwrap(), 0.0, "{r}");
    assert_eq!(q["kl_max"].as_f64().unwrap(), 0.0, "{r}");
    assert_eq!(q["top1_agreement"].as_f64().unwrap(), 1.0);
    assert_eq!(q["perplexity"], r["base"]["perplexity"]);
}

#[test]
fn refusals_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let f32 = converted("tiny-medgemma-calibrated", "f32").model;
    let short = dir.path().join("short.txt");
    std::fs::write(&short, "Chest pain.").unwrap();
    let run = |args: &[&std::ffi::OsStr]| {
        let (out, stdout, stderr) = output(medgemma().arg("eval-quant").args(args));
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stdout.is_empty());
        stderr
    };
    let e = run(&[
        "--base".as_ref(),
        f32.as_os_str(),
        "--quant".as_ref(),
        f32.as_os_str(),
        "--text".as_ref(),
        notes().as_os_str(),
    ]);
    assert!(e.contains("is the --base file itself"), "{e}");
    let copy = dir.path().join("copy.gguf");
    std::fs::copy(&f32, &copy).unwrap();
    let e = run(&[
        "--base".as_ref(),
        f32.as_os_str(),
        "--quant".as_ref(),
        copy.as_os_str(),
        "--text".as_ref(),
        short.as_os_str(),
    ]);
    assert!(e.contains("short.txt") && e.contains("smaller --ctx-size"), "{e}");
    let binary = dir.path().join("binary.txt");
    std::fs::write(&binary, [0xff, 0xfe, 0x00, 0x80]).unwrap();
    let e = run(&[
        "--base".as_ref(),
        f32.as_os_str(),
        "--quant".as_ref(),
        copy.as_os_str(),
        "--text".as_ref(),
        binary.as_os_str(),
    ]);
    assert!(e.contains("binary.txt") && e.contains("not UTF-8"), "{e}");
}
