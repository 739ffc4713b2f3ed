//! `medgemma info`: header facts of the tiny fixtures checked against their Hugging Face config.json, the
//! model/mmproj fit check, and clean errors on damaged or non-GGUF files.

use std::path::Path;

use serde_json::Value;

use crate::util::*;

fn config(checkpoint: &str) -> Value {
    let path = fixtures().join("hf").join(checkpoint).join("config.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn info_json(files: &[&Path]) -> Value {
    let mut cmd = medgemma();
    cmd.arg("info").arg("--json").args(files);
    let stdout = ok(&mut cmd);
    assert_eq!(stdout.lines().count(), 1, "one JSON object: {stdout}");
    serde_json::from_str(&stdout).unwrap()
}

fn info_text(files: &[&Path]) -> String {
    let mut cmd = medgemma();
    cmd.arg("info").args(files);
    ok(&mut cmd)
}

/// The value of `key:` in aligned text output.
fn field<'a>(text: &'a str, key: &str) -> &'a str {
    let prefix = format!("{key}:");
    let line = text
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no {key:?} in:\n{text}"));
    line[prefix.len()..].trim()
}

fn check_model(v: &Value, text: &str, checkpoint: &str, c: &Value) {
    assert_eq!(v["kind"], "model");
    assert_eq!(v["architecture"], "gemma3");
    assert_eq!(v["name"], checkpoint);
    assert_eq!(v["file_type"], "F32");
    assert_eq!(v["hidden_size"], c["hidden_size"]);
    assert_eq!(v["ffn_size"], c["intermediate_size"]);
    assert_eq!(v["layers"], c["num_hidden_layers"]);
    assert_eq!(v["heads"], c["num_attention_heads"]);
    assert_eq!(v["kv_heads"], c["num_key_value_heads"]);
    assert_eq!(v["head_dim"], c["head_dim"]);
    assert_eq!(v["context_length"], c["max_position_embeddings"]);
    assert_eq!(v["sliding_window"], c["sliding_window"]);
    assert_eq!(v["vocab_size"], c["vocab_size"]);
    assert_eq!(v["rope_base"].as_f64(), c["rope_theta"].as_f64());
    assert_eq!(v["rope_base_local"].as_f64(), c["rope_local_base_freq"].as_f64());
    assert_eq!(v["rope_scaling"]["type"], c["rope_scaling"]["rope_type"]);
    assert_eq!(
        v["rope_scaling"]["factor"].as_f64(),
        c["rope_scaling"]["factor"].as_f64()
    );
    assert_eq!(v["eot"]["text"], "<end_of_turn>");
    assert_eq!(v["bos"]["text"], "<bos>");
    assert_eq!(v["chat_template"], true);
    let mix = v["tensor_types"].as_array().unwrap();
    assert_eq!(mix.len(), 1);
    assert_eq!(mix[0]["type"], "F32");
    assert_eq!(mix[0]["bytes"].as_u64().unwrap(), v["parameters"].as_u64().unwrap() * 4);
    // Every sixth layer is global (sliding_window_pattern 6 in config.json).
    let pattern: Vec<bool> = v["sliding_window_pattern"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_bool().unwrap())
        .collect();
    let period = c["sliding_window_pattern"].as_u64().unwrap() as usize;
    assert_eq!(
        pattern,
        (0..pattern.len()).map(|i| i % period < period - 1).collect::<Vec<_>>()
    );

    assert_eq!(field(text, "architecture"), "gemma3");
    assert_eq!(field(text, "hidden size"), c["hidden_size"].to_string());
    assert_eq!(field(text, "head dim"), c["head_dim"].to_string());
    assert_eq!(field(text, "eot"), "6 \"<end_of_turn>\"");
    assert_eq!(field(text, "chat template"), "yes");
    // Aligned: every value starts in the same column.
    let value_column = |line: &str| {
        let after_colon = &line[line.find(':').unwrap() + 1..];
        line.len() - after_colon.trim_start().len()
    };
    let columns: Vec<usize> = text.lines().map(value_column).collect();
    assert!(columns.windows(2).all(|w| w[0] == w[1]), "not aligned:\n{text}");
}

#[test]
fn text_model() {
    let model = converted("tiny-medgemma-text", "f32").model;
    check_model(
        &info_json(&[&model]),
        &info_text(&[&model]),
        "tiny-medgemma-text",
        &config("tiny-medgemma-text"),
    );
}

#[test]
fn multimodal_model() {
    let model = converted("tiny-medgemma-mm", "f32").model;
    let c = config("tiny-medgemma-mm");
    check_model(
        &info_json(&[&model]),
        &info_text(&[&model]),
        "tiny-medgemma-mm",
        &c["text_config"],
    );
}

#[test]
fn mmproj() {
    let mmproj = converted("tiny-medgemma-mm", "f32").mmproj.unwrap();
    let c = config("tiny-medgemma-mm");
    let vision = &c["vision_config"];
    let v = info_json(&[&mmproj]);
    assert_eq!(v["kind"], "mmproj");
    assert_eq!(v["projector_type"], "gemma3");
    assert_eq!(v["image_size"], vision["image_size"]);
    assert_eq!(v["patch_size"], vision["patch_size"]);
    assert_eq!(v["tokens_per_image"], c["mm_tokens_per_image"]);
    assert_eq!(v["vision_layers"], vision["num_hidden_layers"]);
    assert_eq!(v["vision_hidden_size"], vision["hidden_size"]);
    assert_eq!(v["projection_dim"], c["text_config"]["hidden_size"]);
    let text = info_text(&[&mmproj]);
    assert_eq!(field(&text, "tokens per image"), c["mm_tokens_per_image"].to_string());
    assert_eq!(field(&text, "projector type"), "gemma3");
}

#[test]
fn model_and_mmproj_fit_in_either_order() {
    let g = converted("tiny-medgemma-mm", "f32");
    let mmproj = g.mmproj.unwrap();
    for files in [[&g.model, &mmproj], [&mmproj, &g.model]] {
        let v = info_json(&[files[0], files[1]]);
        assert_eq!(v["fits"], true);
        assert_eq!(
            v["model"]["kind"],
            Value::Null,
            "the pair report names its parts instead"
        );
        assert_eq!(v["model"]["hidden_size"], v["mmproj"]["projection_dim"]);
        let text = info_text(&[files[0], files[1]]);
        assert!(text.contains("fits: yes"), "{text}");
    }
}

#[test]
fn mmproj_that_does_not_fit() {
    let g = converted("tiny-medgemma-mm", "f32");
    let dir = tempfile::tempdir().unwrap();
    let bad = mismatched_mmproj(&g, dir.path());
    for json in [false, true] {
        let mut cmd = medgemma();
        cmd.arg("info").arg(&g.model).arg(&bad);
        if json {
            cmd.arg("--json");
        }
        let err = fails(&mut cmd);
        assert!(
            err.contains("mmproj-other.gguf") && err.contains("do not belong together"),
            "{err}"
        );
        assert!(err.contains("96") && err.contains("64"), "both widths named: {err}");
    }
}

#[test]
fn two_models_are_not_a_pair() {
    let a = converted("tiny-medgemma-mm", "f32").model;
    let b = converted("tiny-medgemma-text", "f32").model;
    let err = fails(medgemma().arg("info").arg(&a).arg(&b));
    assert!(err.contains("one model and its mmproj"), "{err}");
}

#[test]
fn truncated_and_non_gguf_files() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(converted("tiny-medgemma-mm", "f32").model).unwrap();
    let cut = dir.path().join("cut.gguf");
    for len in [bytes.len() / 2, 100, 2] {
        std::fs::write(&cut, &bytes[..len]).unwrap();
        let err = fails(medgemma().arg("info").arg(&cut));
        assert!(
            err.contains("cut.gguf") && (err.contains("truncated") || err.contains("not a GGUF")),
            "{err}"
        );
    }
    let text = dir.path().join("notes.gguf");
    std::fs::write(&text, "Findings: none").unwrap();
    let err = fails(medgemma().arg("info").arg("--json").arg(&text));
    assert!(err.contains("notes.gguf") && err.contains("not a GGUF file"), "{err}");
    let err = fails(medgemma().arg("info").arg(dir.path().join("missing.gguf")));
    assert!(err.contains("missing.gguf"), "{err}");
}
