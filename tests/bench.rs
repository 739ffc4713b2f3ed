//! `medgemma bench`: the measurements are all there (prompt and generation speed with their spread, image
//! encoding, load time, peak memory) on the tiny model; stdout holds only the report. No speed is asserted here:
//! scripts/bench_report.py measures speed against llama.cpp.

use serde_json::Value;

use crate::util::*;

#[test]
fn json_report_has_every_measurement() {
    let g = converted("tiny-medgemma-mm", "f32");
    let mmproj = g.mmproj.unwrap();
    let (out, stdout, stderr) = output(
        medgemma()
            .arg("bench")
            .arg("-m")
            .arg(&g.model)
            .arg("--mmproj")
            .arg(&mmproj)
            .args(["-p", "64", "-n", "16", "-r", "2", "-t", "2", "--json"]),
    );
    assert!(out.status.success(), "{stderr}");
    let r: Value = serde_json::from_str(&stdout).expect("stdout is one JSON object");
    assert_eq!(r["threads"], 2);
    assert_eq!(r["model_type"], "F32");
    assert_eq!(r["mmproj_type"], "F32");
    assert_eq!(
        (r["prompt_tokens"].as_u64(), r["gen_tokens"].as_u64()),
        (Some(64), Some(16))
    );
    for k in ["prompt_tokens_per_s", "gen_tokens_per_s", "image_encode_ms"] {
        assert_eq!(r[k]["samples"], 2, "{k}: {r}");
        assert!(r[k]["mean"].as_f64().unwrap() > 0.0, "{k}: {r}");
        assert!(r[k]["stddev"].as_f64().unwrap() >= 0.0, "{k}: {r}");
    }
    assert!(r["load_ms"].as_f64().unwrap() > 0.0);
    assert!(r["peak_rss_bytes"].as_u64().unwrap() > g.model.metadata().unwrap().len());
    assert!(!stderr.contains("llama_"), "llama.cpp stays quiet: {stderr}");
}

#[test]
fn table_report_and_refusals() {
    let g = converted("tiny-medgemma-text", "f32");
    let stdout = ok(medgemma()
        .arg("bench")
        .arg("-m")
        .arg(&g.model)
        .args(["-p", "32", "-n", "8", "-r", "1", "-t", "1"]));
    assert!(
        stdout.contains("pp32") && stdout.contains("tg8") && stdout.contains("tokens/s"),
        "{stdout}"
    );
    assert!(!stdout.contains("image"), "no image line without an mmproj: {stdout}");

    let (out, stdout, stderr) = output(
        medgemma()
            .arg("bench")
            .arg("-m")
            .arg(&g.model)
            .arg("--image")
            .arg(fixtures().join("images/chest.png")),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout.is_empty());
    assert!(stderr.contains("--mmproj"), "{stderr}");
}
