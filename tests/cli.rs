//! The command line as a user meets it: prompt from stdin, clean stdout, quiet llama.cpp, JSON output.

use std::io::Write;
use std::process::Stdio;

use serde_json::Value;

use crate::util::*;

fn text_model() -> std::path::PathBuf {
    converted("tiny-medgemma-text", "f32").model
}

#[test]
fn prompt_from_stdin_equals_prompt_from_argument() {
    let model = text_model();
    let from_arg = ok(medgemma()
        .arg("run")
        .arg("-m")
        .arg(&model)
        .args(["-n", "8", "What is sepsis?"]));
    for dash in [true, false] {
        let mut cmd = medgemma();
        cmd.arg("run").arg("-m").arg(&model).args(["-n", "8"]);
        if dash {
            cmd.arg("-");
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(b"What is sepsis?").unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        assert_eq!(String::from_utf8(out.stdout).unwrap(), from_arg);
    }
}

#[test]
fn stdout_has_only_the_answer_and_llama_cpp_is_quiet() {
    let model = text_model();
    let (out, stdout, stderr) = output(medgemma().arg("run").arg("-m").arg(&model).args(["-n", "8", "Hello"]));
    assert!(out.status.success());
    assert!(
        stderr.is_empty(),
        "stderr should be empty without --verbose, got: {stderr}"
    );
    assert!(!stdout.contains("llama") && !stdout.contains("ggml"), "{stdout}");
    let (out, stdout_v, stderr_v) =
        output(
            medgemma()
                .arg("run")
                .arg("-m")
                .arg(&model)
                .args(["-n", "8", "--verbose", "Hello"]),
        );
    assert!(out.status.success());
    assert_eq!(stdout_v, stdout, "--verbose must not change stdout");
    assert!(stderr_v.contains("llama"), "llama.cpp logs expected with --verbose");
    assert!(
        stderr_v.contains("tokens/s") && stderr_v.contains("time to first token"),
        "{stderr_v}"
    );
}

#[test]
fn json_output_is_one_object() {
    let model = text_model();
    let stdout = ok(medgemma()
        .arg("run")
        .arg("-m")
        .arg(&model)
        .args(["-n", "5", "--json", "Hello"]));
    assert_eq!(stdout.lines().count(), 1);
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert!(v["text"].is_string());
    assert!(["stop", "length"].contains(&v["finish_reason"].as_str().unwrap()));
    let generated = v["generated_token_ids"].as_array().unwrap().len();
    assert!((1..=5).contains(&generated));
    assert_eq!(
        v["prompt_tokens"].as_u64().unwrap() as usize,
        v["prompt_token_ids"].as_array().unwrap().len()
    );
}

#[test]
fn sampling_is_reproducible_with_a_seed() {
    let model = text_model();
    let run = |seed: &str| {
        ok(medgemma()
            .arg("run")
            .arg("-m")
            .arg(&model)
            .args(["-n", "12", "--temp", "1.5", "--seed", seed, "Hello"]))
    };
    assert_eq!(run("7"), run("7"));
}

#[test]
fn conversation_file_with_relative_image() {
    let gguf = converted("tiny-medgemma-mm", "f32");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixtures().join("images/chest.png"), dir.path().join("scan.png")).unwrap();
    let conv = dir.path().join("conv.json");
    std::fs::write(&conv, r#"{"messages":[{"role":"system","content":"You are an expert radiologist."},{"role":"user","content":"Describe.","images":["scan.png"]}]}"#).unwrap();
    let stdout = ok(medgemma()
        .arg("run")
        .arg("-m")
        .arg(&gguf.model)
        .arg("--mmproj")
        .arg(gguf.mmproj.unwrap())
        .arg("--messages")
        .arg(&conv)
        .args(["--json", "-n", "3"]));
    let v: Value = serde_json::from_str(&stdout).unwrap();
    let image_positions = v["prompt_token_ids"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x.as_i64() == Some(-1))
        .count();
    assert_eq!(
        image_positions as u64,
        reference("tiny-medgemma-mm")["tokens_per_image"].as_u64().unwrap()
    );
}
