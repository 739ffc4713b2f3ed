//! Structured answers on the tiny model through real llama.cpp: `--format json`, `--json-schema`, `--grammar` (every
//! constrained answer parses and validates, also when sampling at temperature 1), `--choices` (label
//! probabilities equal a direct computation from the model's logits, and sum to 1), per-job formats in batch,
//! `/set format` in chat, and the refusals of bad schemas, grammars and choices before any model work.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::util::*;

fn tiny() -> Gguf {
    converted("tiny-medgemma-mm", "f32")
}

fn run_cmd(g: &Gguf, extra: &[&str]) -> std::process::Command {
    let mut cmd = medgemma();
    cmd.arg("run").arg("-m").arg(&g.model).args(["-t", "2"]).args(extra);
    cmd
}

/// A schema every part of which the grammar enforces (enums, booleans, bounded strings and arrays), so that every
/// complete answer must validate.
fn finding_schema(dir: &Path) -> PathBuf {
    let schema = json!({
        "type": "object",
        "properties": {
            "finding": {"enum": ["normal", "pneumonia", "effusion"]},
            "urgent": {"type": "boolean"},
            "note": {"type": "string", "maxLength": 12},
            "regions": {"type": "array", "items": {"enum": ["left", "right"]}, "maxItems": 2}
        },
        "required": ["finding", "urgent", "note", "regions"],
        "additionalProperties": false
    });
    let path = dir.join("finding.schema.json");
    std::fs::write(&path, schema.to_string()).unwrap();
    path
}

/// Checks one answer against the finding schema by hand (not through our validator).
fn check_finding(v: &Value) {
    let o = v.as_object().unwrap_or_else(|| panic!("not an object: {v}"));
    assert_eq!(o.len(), 4, "{v}");
    assert!(
        ["normal", "pneumonia", "effusion"].contains(&o["finding"].as_str().unwrap()),
        "{v}"
    );
    assert!(o["urgent"].is_boolean(), "{v}");
    assert!(o["note"].as_str().unwrap().chars().count() <= 12, "{v}");
    let regions = o["regions"].as_array().unwrap();
    assert!(
        regions.len() <= 2 && regions.iter().all(|r| r == "left" || r == "right"),
        "{v}"
    );
}

#[test]
fn schema_answers_validate_greedy_and_sampled() {
    let g = tiny();
    let dir = tempfile::tempdir().unwrap();
    let schema = finding_schema(dir.path());
    let mut complete = 0;
    for (temp, seed) in [("0", "0"), ("1", "1"), ("1", "2"), ("1", "3"), ("1", "4"), ("1", "5")] {
        let mut cmd = run_cmd(&g, &["--json-schema", schema.to_str().unwrap(), "--json", "-n", "200"]);
        cmd.args(["--temp", temp, "--seed", seed, "Report the finding."]);
        let (out, stdout, stderr) = output(&mut cmd);
        assert!(!stderr.contains("panicked"), "{stderr}");
        let report: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
        if report["finish_reason"] == "stop" {
            assert!(out.status.success(), "seed {seed}: {stderr}");
            assert_eq!(report["valid"], true, "seed {seed}: {report}");
            // The text itself parses to the same JSON.
            let parsed: Value = serde_json::from_str(report["text"].as_str().unwrap()).unwrap();
            assert_eq!(parsed, report["json"]);
            check_finding(&parsed);
            complete += 1;
        } else {
            assert_eq!(out.status.code(), Some(1), "seed {seed}: {stderr}");
            assert_eq!(report["valid"], false);
            assert!(stderr.contains("incomplete"), "{stderr}");
        }
    }
    assert!(
        complete >= 4,
        "only {complete} of 6 answers completed within 200 tokens"
    );
}

/// The fast draw (allowed candidates found in logit order) gives exactly what the grammar over the whole vocabulary
/// gives, greedy and sampled (top-k 64, top-p, min-p, a repetition penalty), token for token.
#[test]
fn fast_constrained_draw_equals_the_full_scan() {
    let g = tiny();
    let dir = tempfile::tempdir().unwrap();
    let schema = finding_schema(dir.path());
    let settings: [&[&str]; 4] = [
        &["--temp", "0"],
        &["--temp", "1", "--seed", "7"],
        &[
            "--temp",
            "0.8",
            "--seed",
            "3",
            "--min-p",
            "0.05",
            "--repeat-penalty",
            "1.3",
        ],
        &["--temp", "1", "--seed", "11", "--top-k", "5", "--top-p", "0.9"],
    ];
    for extra in settings {
        for format in [
            &["--json-schema", schema.to_str().unwrap()][..],
            &["--format", "json"][..],
        ] {
            let mut answers = Vec::new();
            for full in ["0", "1"] {
                let mut cmd = run_cmd(&g, &["--json", "-n", "120"]);
                cmd.args(format).args(extra).arg("Report the finding.");
                cmd.env("MEDGEMMA_GRAMMAR_FULL_SCAN", full);
                let (_, stdout, stderr) = output(&mut cmd);
                let report: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stderr}"));
                answers.push(report["generated_token_ids"].clone());
            }
            assert_eq!(answers[0], answers[1], "{format:?} {extra:?}");
        }
    }
}

#[test]
fn json_format_gives_a_json_object() {
    let g = tiny();
    let stdout = ok(&mut run_cmd(
        &g,
        &["--format", "json", "--json", "-n", "400", "Answer in JSON."],
    ));
    let report: Value = serde_json::from_str(stdout.trim()).unwrap();
    if report["finish_reason"] == "stop" {
        let parsed: Value = serde_json::from_str(report["text"].as_str().unwrap()).unwrap();
        assert!(parsed.is_object(), "{parsed}");
        assert_eq!(report["json"], parsed);
    }
    // Streamed (no --json): stdout is exactly the answer.
    let (out, streamed, stderr) = output(&mut run_cmd(&g, &["--format", "json", "-n", "400", "Answer in JSON."]));
    assert_eq!(out.status.success(), report["valid"] == true, "{stderr}");
    assert_eq!(streamed.trim_end_matches('\n'), report["text"].as_str().unwrap());
}

#[test]
fn grammar_file_constrains_every_answer() {
    let g = tiny();
    let dir = tempfile::tempdir().unwrap();
    let grammar = dir.path().join("yn.gbnf");
    std::fs::write(
        &grammar,
        "# yes or no\nroot ::= answer\nanswer ::= \"yes\" | \"no\" | \"uncertain\"\n",
    )
    .unwrap();
    for seed in ["1", "2", "3", "4"] {
        let stdout = ok(&mut run_cmd(
            &g,
            &[
                "--grammar",
                grammar.to_str().unwrap(),
                "--temp",
                "1",
                "--seed",
                seed,
                "Is it normal?",
            ],
        ));
        assert!(
            ["yes\n", "no\n", "uncertain\n"].contains(&stdout.as_str()),
            "{stdout:?}"
        );
    }
}

/// log softmax(row)[token] in f64, written here from the definition.
fn log_softmax(row: &[f64], token: usize) -> f64 {
    let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let z: f64 = row.iter().map(|l| (l - max).exp()).sum();
    row[token] - max - z.ln()
}

/// Logits as written: float32 in their shortest decimal form, read back to the exact float32 value (parsing the
/// decimal as f64 alone would be off by up to half a float32 step).
fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| f64::from(x.as_f64().unwrap() as f32))
        .collect()
}

fn check_choices(g: &Gguf, extra: &[&str], prompt: &str) {
    let dir = tempfile::tempdir().unwrap();
    let logits = dir.path().join("choices-logits.json");
    let labels = ["normal", "pneumonia", "pleural effusion", "pleural"];
    let choices = labels.join(",");
    let mut cmd = run_cmd(g, extra);
    cmd.args(["--choices", &choices, "--json", "--logits-out"])
        .arg(&logits)
        .arg(prompt);
    let report: Value = serde_json::from_str(ok(&mut cmd).trim()).unwrap();
    let dump: Value = serde_json::from_slice(&std::fs::read(&logits).unwrap()).unwrap();

    // The prompt's last logits are the same as a plain run's --logits-out on the same prompt.
    let plain = dir.path().join("plain.json");
    let mut cmd = run_cmd(g, extra);
    cmd.args(["-n", "1", "--logits-out"]).arg(&plain).arg(prompt);
    ok(&mut cmd);
    let plain: Value = serde_json::from_slice(&std::fs::read(&plain).unwrap()).unwrap();
    assert_eq!(floats(&plain), floats(&dump["prompt"]));

    let mut direct = Vec::new();
    for (i, label) in labels.iter().enumerate() {
        let entry = &dump["labels"][i];
        assert_eq!(entry["label"], *label);
        let tokens: Vec<usize> = entry["token_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_u64().unwrap() as usize)
            .collect();
        let rows = entry["rows"].as_array().unwrap();
        assert_eq!(rows.len(), tokens.len(), "one row of logits per token of {label:?}");
        // The label's tokens end with <end_of_turn> (id 6 in the tiny vocabulary).
        assert_eq!(
            *tokens.last().unwrap() as i64,
            special_token_id("tiny-medgemma-mm", "<end_of_turn>")
        );
        assert_eq!(
            floats(&rows[0]),
            floats(&dump["prompt"]),
            "the first token is scored from the prompt's logits"
        );
        let lp: f64 = tokens.iter().zip(rows).map(|(&t, r)| log_softmax(&floats(r), t)).sum();
        direct.push(lp);
        let reported = &report["choices"][i];
        assert_eq!(reported["label"], *label);
        assert_eq!(reported["token_ids"], entry["token_ids"]);
        // Both sums are over the same float32 logits in f64; they differ only in summation order.
        let got = reported["log_prob"].as_f64().unwrap();
        assert!((got - lp).abs() <= 1e-9 * lp.abs().max(1.0), "{label}: {got} vs {lp}");
    }
    let max = direct.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let z: f64 = direct.iter().map(|l| (l - max).exp()).sum();
    let mut sum = 0.0;
    for (i, label) in labels.iter().enumerate() {
        let p = (direct[i] - max).exp() / z;
        let got = report["probabilities"][label].as_f64().unwrap();
        assert!((got - p).abs() <= 1e-9, "{label}: {got} vs {p}");
        assert_eq!(report["choices"][i]["probability"].as_f64().unwrap(), got);
        sum += got;
    }
    assert!((sum - 1.0).abs() <= 1e-12, "probabilities sum to {sum}");
    let best = (0..labels.len()).fold(0, |b, i| if direct[i] > direct[b] { i } else { b });
    assert_eq!(report["choice"], labels[best]);

    // Without --json: the label alone on stdout.
    let mut cmd = run_cmd(g, extra);
    cmd.args(["--choices", &choices, prompt]);
    assert_eq!(ok(&mut cmd), format!("{}\n", labels[best]));
}

#[test]
fn choice_probabilities_equal_a_direct_computation() {
    check_choices(&tiny(), &[], "Is this chest normal?");
}

#[test]
fn choice_probabilities_with_an_image() {
    let g = tiny();
    let chest = fixtures().join("images/chest.png");
    let extra = [
        "--mmproj",
        g.mmproj.as_ref().unwrap().to_str().unwrap(),
        "--image",
        chest.to_str().unwrap(),
    ];
    check_choices(&g, &extra, "What does the X-ray show?");
}

#[test]
fn choices_from_a_file() {
    let g = tiny();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("labels.txt");
    std::fs::write(&file, "# classes\nnormal\n\nabnormal\n").unwrap();
    let stdout = ok(&mut run_cmd(
        &g,
        &["--choices", file.to_str().unwrap(), "--json", "Normal?"],
    ));
    let report: Value = serde_json::from_str(stdout.trim()).unwrap();
    let labels: Vec<&str> = report["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["normal", "abnormal"]);
}

#[test]
fn bad_formats_and_choices_are_refused_before_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let not_json = write("broken.json", "{\"type\": \"object\",");
    let unsupported = write(
        "pp.json",
        r#"{"type": "object", "properties": {"a": {"type": "string", "patternProperties": {}}}}"#,
    );
    let bad_type = write("t.json", r#"{"type": "strnig"}"#);
    let undefined = write("g.gbnf", "root ::= answer\nanswr ::= \"x\"\n");
    let syntax = write("s.gbnf", "root ::= \"unterminated\n");
    // A model that does not exist: the refusal must come before anything looks for it.
    let missing_model = dir.path().join("no-such-model.gguf");
    let cases: Vec<(Vec<String>, Vec<&str>)> = vec![
        (vec!["--json-schema".into(), not_json.clone()], vec!["broken.json"]),
        (
            vec!["--json-schema".into(), unsupported],
            vec!["patternProperties", "/properties/a"],
        ),
        (vec!["--json-schema".into(), bad_type], vec!["strnig"]),
        (
            vec![
                "--json-schema".into(),
                dir.path().join("nope.json").to_str().unwrap().into(),
            ],
            vec!["nope.json"],
        ),
        (vec!["--grammar".into(), undefined], vec!["g.gbnf", "answer"]),
        (vec!["--grammar".into(), syntax], vec!["s.gbnf"]),
        (vec!["--choices".into(), "a,,b".into()], vec!["--choices", "empty"]),
        (vec!["--choices".into(), "a,b,a".into()], vec!["--choices", "\"a\""]),
        (vec!["--choices".into(), "only".into()], vec!["--choices"]),
    ];
    for (args, expected) in cases {
        let mut cmd = medgemma();
        cmd.arg("run").arg("-m").arg(&missing_model).args(&args).arg("question");
        let stderr = fails(&mut cmd);
        assert!(
            !stderr.contains("no-such-model"),
            "{args:?}: the model was looked at first:\n{stderr}"
        );
        for e in expected {
            assert!(stderr.contains(e), "{args:?}: expected {e:?} in:\n{stderr}");
        }
    }
    // Two formats at once, and --choices with a format: clap refuses (exit 2).
    let mut cmd = medgemma();
    cmd.args(["run", "--format", "json", "--json-schema", &not_json, "q"]);
    assert_eq!(output(&mut cmd).0.status.code(), Some(2));
    let mut cmd = medgemma();
    cmd.args(["run", "--format", "json", "--choices", "a,b", "q"]);
    assert_eq!(output(&mut cmd).0.status.code(), Some(2));
}

#[test]
fn batch_jobs_carry_their_own_format() {
    let g = tiny();
    let dir = tempfile::tempdir().unwrap();
    let schema: Value = serde_json::from_slice(&std::fs::read(finding_schema(dir.path())).unwrap()).unwrap();
    let jobs = [
        json!({"id": "schema", "prompt": "Report the finding.", "format": schema, "max_tokens": 200}),
        json!({"id": "free", "prompt": "Say something.", "max_tokens": 8}),
        json!({"id": "json", "prompt": "Answer in JSON.", "format": "json", "max_tokens": 3}),
        json!({"id": "bad", "prompt": "x", "format": {"type": "object", "if": {}}}),
        json!({"id": "yaml", "prompt": "x", "format": "yaml"}),
    ];
    let input = dir.path().join("jobs.jsonl");
    std::fs::write(
        &input,
        jobs.iter().map(Value::to_string).collect::<Vec<_>>().join("\n") + "\n",
    )
    .unwrap();
    let output_path = dir.path().join("out.jsonl");
    let mut cmd = medgemma();
    cmd.arg("batch")
        .arg("-m")
        .arg(&g.model)
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&output_path);
    cmd.args(["-t", "2", "--parallel", "2"]);
    let (out, _, stderr) = output(&mut cmd);
    assert_eq!(out.status.code(), Some(1), "two jobs fail: {stderr}");
    let records: std::collections::HashMap<String, Value> = std::fs::read_to_string(&output_path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["id"].as_str().unwrap().to_string(), v)
        })
        .collect();
    let s = &records["schema"];
    if s["finish_reason"] == "stop" {
        assert_eq!(s["valid"], true, "{s}");
        check_finding(&s["json"]);
    } else {
        assert_eq!(s["incomplete"], true, "{s}");
    }
    assert!(records["free"].get("valid").is_none(), "a free answer has no check");
    let j = &records["json"];
    assert_eq!(j["finish_reason"], "length");
    assert_eq!(j["valid"], false);
    assert_eq!(j["incomplete"], true, "{j}");
    assert!(
        records["bad"]["error"].as_str().unwrap().contains("\"if\""),
        "{}",
        records["bad"]
    );
    assert!(
        records["yaml"]["error"].as_str().unwrap().contains("format"),
        "{}",
        records["yaml"]
    );
}

#[test]
fn chat_set_format() {
    let g = tiny();
    let dir = tempfile::tempdir().unwrap();
    let schema = finding_schema(dir.path());
    let input = format!(
        "/set format schema {}\n/show\nReport the finding.\n/set format off\n/show\n/set format yaml\n",
        schema.display()
    );
    let mut cmd = medgemma();
    cmd.arg("chat")
        .arg("-m")
        .arg(&g.model)
        .args(["-t", "2", "-n", "200", "--no-history"]);
    cmd.current_dir(dir.path());
    let (code, stdout, stderr) = within(&mut cmd, &input, 60);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("format:    JSON Schema"), "{stderr}");
    assert!(stderr.contains("format:    free text"), "{stderr}");
    assert!(stderr.contains("/set format: \"yaml\""), "{stderr}");
    // The one answer (the grammar allows newlines between JSON tokens): all of stdout.
    let answer = stdout.trim();
    if !stderr.contains("does not follow") {
        check_finding(&serde_json::from_str(answer).unwrap_or_else(|e| panic!("{e}: {answer:?}")));
    } else {
        assert!(stderr.contains("incomplete"), "{stderr}");
    }
}
