//! `medgemma quantize`: the f32 text fixture quantised through llama.cpp runs; refusals are clean and leave no
//! files behind.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::util::*;

fn f32_text() -> PathBuf {
    converted("tiny-medgemma-text", "f32").model
}

fn quantize(input: &Path, output: &Path, extra: &[&str]) -> std::process::Command {
    let mut cmd = medgemma();
    cmd.arg("quantize").arg(input).arg(output).args(extra);
    cmd
}

/// Only the given files are in `dir` (no temporary leftovers).
fn assert_only(dir: &Path, names: &[&str]) {
    let mut found: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    assert_eq!(found, names, "unexpected files in {}", dir.display());
}

#[test]
fn quantised_models_run() {
    let dir = tempfile::tempdir().unwrap();
    // Every type the issue lists; the tiny model's rows (64, 128) are not multiples of 256, so the K-quants fall
    // back to 32-block types for every matrix, as llama.cpp does for such rows.
    let types = [
        ("q8_0", "Q8_0"),
        ("q4_0", "Q4_0"),
        ("q4_k_m", "Q4_K_M"),
        ("q4_k_s", "Q4_K_S"),
        ("q5_k_m", "Q5_K_M"),
        ("q6_k", "Q6_K"),
    ];
    for (ty, ggml) in types {
        let out = dir.path().join(format!("tiny-{ty}.gguf"));
        let (status, stdout, stderr) = output(&mut quantize(&f32_text(), &out, &["--type", ty, "--threads", "2"]));
        assert!(status.status.success(), "{stderr}");
        assert!(stdout.is_empty(), "quantize prints nothing on stdout: {stdout}");
        assert!(
            stderr.contains(&format!("tiny-{ty}.gguf")) && stderr.contains("KB") && stderr.contains(ggml),
            "{stderr}"
        );
        assert!(
            !stderr.contains("llama_model_quantize"),
            "llama.cpp stays quiet without --verbose: {stderr}"
        );

        let info: Value = serde_json::from_str(&ok(medgemma().arg("info").arg("--json").arg(&out))).unwrap();
        assert_eq!(info["file_type"], ggml);
        let tensor_types: Vec<&str> = info["tensor_types"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["type"].as_str().unwrap())
            .collect();
        if ty.contains("_k") {
            let fallbacks = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "F16", "F32"];
            assert!(tensor_types.iter().all(|t| fallbacks.contains(t)), "{info}");
            assert!(tensor_types.iter().any(|t| t.starts_with('Q')), "{info}");
        } else {
            assert!(tensor_types.contains(&ggml), "{info}");
        }
        let original: Value = serde_json::from_str(&ok(medgemma().arg("info").arg("--json").arg(f32_text()))).unwrap();
        assert_eq!(
            info["parameters"], original["parameters"],
            "quantising keeps every weight"
        );
        assert!(std::fs::metadata(&out).unwrap().len() < std::fs::metadata(f32_text()).unwrap().len());

        let answer = ok(medgemma().arg("run").arg("-m").arg(&out).args(["-n", "4", "hi"]));
        assert!(!answer.is_empty());
    }
    let mut files: Vec<String> = types.iter().map(|(ty, _)| format!("tiny-{ty}.gguf")).collect();
    files.sort();
    assert_only(dir.path(), &files.iter().map(String::as_str).collect::<Vec<_>>());
}

#[test]
fn refusals() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.gguf");
    std::fs::copy(f32_text(), &input).unwrap();

    let err = fails(&mut quantize(
        &input,
        &dir.path().join(".").join("in.gguf"),
        &["--type", "q8_0", "--force"],
    ));
    assert!(err.contains("is the input file"), "{err}");

    let existing = dir.path().join("existing.gguf");
    std::fs::write(&existing, "keep me").unwrap();
    let err = fails(&mut quantize(&input, &existing, &["--type", "q8_0"]));
    assert!(err.contains("existing.gguf") && err.contains("--force"), "{err}");
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "keep me");

    let mmproj = converted("tiny-medgemma-mm", "f32").mmproj.unwrap();
    let err = fails(&mut quantize(
        &mmproj,
        &dir.path().join("mmproj-q4_k_m.gguf"),
        &["--type", "q4_k_m"],
    ));
    assert!(
        err.contains("256") && err.contains("q8_0"),
        "K-quants do not fit a vision tower: {err}"
    );
    assert!(!dir.path().join("mmproj-q4_k_m.gguf").exists());

    let q8 = converted("tiny-medgemma-text", "q8_0").model;
    let err = fails(&mut quantize(&q8, &dir.path().join("re.gguf"), &["--type", "q4_0"]));
    assert!(
        err.contains("already quantised") && err.contains("--allow-requantize"),
        "{err}"
    );

    let err = fails(&mut quantize(
        &dir.path().join("missing.gguf"),
        &dir.path().join("out.gguf"),
        &["--type", "q4_0"],
    ));
    assert!(err.contains("missing.gguf") && err.contains("not found"), "{err}");

    let text = dir.path().join("notes.gguf");
    std::fs::write(&text, "not a model").unwrap();
    let err = fails(&mut quantize(&text, &dir.path().join("out.gguf"), &["--type", "q4_0"]));
    assert!(err.contains("notes.gguf") && err.contains("not a GGUF file"), "{err}");

    assert_only(dir.path(), &["existing.gguf", "in.gguf", "notes.gguf"]);

    let out = medgemma()
        .arg("quantize")
        .arg(&input)
        .arg(dir.path().join("o.gguf"))
        .args(["--type", "q9_z"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("q4_k_m") && stderr.contains("q8_0"),
        "the types are listed: {stderr}"
    );
}

#[test]
fn requantize_and_force_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("re.gguf");
    std::fs::write(&out, "old").unwrap();
    let q8 = converted("tiny-medgemma-text", "q8_0").model;
    ok(&mut quantize(
        &q8,
        &out,
        &["--type", "q4_0", "--allow-requantize", "--force"],
    ));
    let info: Value = serde_json::from_str(&ok(medgemma().arg("info").arg("--json").arg(&out))).unwrap();
    assert_eq!(info["file_type"], "Q4_0");
    assert_only(dir.path(), &["re.gguf"]);
}

/// A vision projector quantises through our own rewriter: weight matrices change type, the tensors llama.cpp needs
/// wide keep theirs (and are named on stderr), and the result encodes images with embeddings close to the f32
/// projector's.
#[test]
fn vision_projectors_quantise_and_stay_close() {
    let dir = tempfile::tempdir().unwrap();
    let g = converted("tiny-medgemma-mm", "f32");
    let mmproj = g.mmproj.unwrap();
    let mut quantised = Vec::new();
    for (ty, ggml) in [("q8_0", "Q8_0"), ("f16", "F16"), ("bf16", "BF16"), ("q4_0", "Q4_0")] {
        let out = dir.path().join(format!("mmproj-{ty}.gguf"));
        let (status, stdout, stderr) = output(&mut quantize(&mmproj, &out, &["--type", ty, "-t", "2"]));
        assert!(status.status.success(), "{stderr}");
        assert!(stdout.is_empty());
        assert!(
            stderr.contains("v.patch_embd.weight")
                && (ty.starts_with('f') || ty.starts_with('b') || stderr.contains("mm.input_projection.weight")),
            "the tensors kept wide are named: {stderr}"
        );
        let info: Value = serde_json::from_str(&ok(medgemma().arg("info").arg("--json").arg(&out))).unwrap();
        assert_eq!(info["kind"], "mmproj");
        assert_eq!(info["file_type"], ggml);
        let types = info["tensor_types"].as_array().unwrap();
        let count = |t: &str| {
            types
                .iter()
                .find(|x| x["type"] == t)
                .map_or(0, |x| x["tensors"].as_u64().unwrap())
        };
        // 12 weight matrices take the type; the projector matrix too for a float type, F16 otherwise; the 24 norms
        // and biases and the 2 embeddings stay F32.
        let float = ty == "f16" || ty == "bf16";
        assert_eq!(count(ggml), if float { 13 } else { 12 }, "{info}");
        if !float {
            assert_eq!(count("F16"), 1, "the projector matrix: {info}");
        }
        assert_eq!(count("F32"), 26, "{info}");
        // An image still goes through: the model answers with it.
        ok(medgemma()
            .arg("run")
            .arg("-m")
            .arg(&g.model)
            .arg("--mmproj")
            .arg(&out)
            .arg("--image")
            .arg(fixtures().join("images/chest.png"))
            .args(["-n", "4", "-t", "2", "Describe this."]));
        quantised.push(out);
    }

    let mut cmd = medgemma();
    cmd.arg("eval-quant").arg("-m").arg(&g.model).arg("--base").arg(&mmproj);
    for q in &quantised {
        cmd.arg("--quant").arg(q);
    }
    cmd.arg("--image")
        .arg(fixtures().join("images/chest.png"))
        .args(["--gen-tokens", "8", "-t", "2", "--json"]);
    let r: Value = serde_json::from_str(&ok(&mut cmd)).unwrap();
    let fidelity = |i: usize, k: &str| r["quants"][i]["images"][0]["fidelity"][k].as_f64().unwrap();
    let cosines: Vec<f64> = (0..4).map(|i| fidelity(i, "cosine")).collect();
    // f16 and bf16 round each weight to 11 and 8 significant bits, q8_0 to 8 bits per 32-block scale, q4_0 to 4:
    // the error grows in that order, and only q4_0 is expected below the 0.999 the README's table asks for.
    assert!(cosines[1] > 0.99999 && cosines[2] > 0.9999 && cosines[0] > 0.999, "{r}");
    assert!(cosines[3] < cosines[0], "q4_0 is further from f32 than q8_0: {r}");
    assert!(
        fidelity(1, "max_abs_diff") < fidelity(0, "max_abs_diff"),
        "f16 is closer than q8_0: {r}"
    );
    assert_eq!(
        r["quants"][1]["images"][0]["same_first_tokens"], 8,
        "f16 changes no greedy token: {r}"
    );
    assert_eq!(
        r["base"]["images"][0]["generated_token_ids"].as_array().unwrap().len(),
        8
    );
}
