//! `medgemma eval` end to end on the tiny model: predictions from label choices (each equal to `run --choices` on
//! the same item), the report files, resuming after kill -9, schema mode with --field, --compare of two runs, and
//! the refusals of bad labelled data before any model work.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::util::*;

const CHOICES: &str = "normal,abnormal";

/// `n` labelled items, text and image, labels alternating; returns the file.
fn labelled(dir: &Path, n: usize) -> PathBuf {
    std::fs::copy(fixtures().join("images/chest.png"), dir.join("chest.png")).unwrap();
    std::fs::copy(fixtures().join("images/skin.png"), dir.join("skin.png")).unwrap();
    let questions = ["Is this normal?", "Any finding?", "Normal or abnormal?"];
    let lines: Vec<String> = (0..n)
        .map(|i| {
            let label = if i % 3 == 0 { "abnormal" } else { "normal" };
            let q = questions[i % questions.len()];
            match i % 2 {
                0 => json!({"id": format!("item-{i}"), "prompt": q, "images": [if i % 4 == 0 { "chest.png" } else { "skin.png" }], "label": label}),
                _ => json!({"id": format!("item-{i}"), "prompt": format!("{q} Patient {i}."), "label": label}),
            }
            .to_string()
        })
        .collect();
    let path = dir.join("labelled.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

fn eval_cmd(g: &Gguf, input: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut cmd = medgemma();
    cmd.arg("eval").arg("-m").arg(&g.model);
    if let Some(mmproj) = &g.mmproj {
        cmd.arg("--mmproj").arg(mmproj);
    }
    cmd.arg("--input")
        .arg(input)
        .arg("--output")
        .arg(out)
        .args(["-t", "2"])
        .args(extra);
    cmd
}

fn predictions(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("predictions.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn choices_eval_end_to_end() {
    let g = converted("tiny-medgemma-mm", "f32");
    let dir = tempfile::tempdir().unwrap();
    let input = labelled(dir.path(), 8);
    let out = dir.path().join("run");
    let stdout = ok(&mut eval_cmd(
        &g,
        &input,
        &out,
        &["--choices", CHOICES, "--parallel", "2"],
    ));
    assert!(stdout.contains("accuracy"), "{stdout}");
    let preds = predictions(&out);
    assert_eq!(preds.len(), 8);
    let items: HashMap<String, Value> = std::fs::read_to_string(&input)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["id"].as_str().unwrap().to_string(), v)
        })
        .collect();
    let mut correct = 0;
    for p in &preds {
        let item = &items[p["id"].as_str().unwrap()];
        assert_eq!(p["label"], item["label"]);
        let probs = &p["probabilities"];
        let (pn, pa) = (probs["normal"].as_f64().unwrap(), probs["abnormal"].as_f64().unwrap());
        assert!((pn + pa - 1.0).abs() <= 1e-12);
        let argmax = if pa > pn { "abnormal" } else { "normal" };
        assert_eq!(p["prediction"], argmax);
        if p["prediction"] == p["label"] {
            correct += 1;
        }
        // The same item through `run --choices`: the same label and probabilities. The prompt's beginning may
        // have come from another item's cache in eval (another chunking of the same float32 sums: relative
        // differences ~1e-6 in the logits, so ~1e-5 in log-probabilities of a few tokens); 1e-4 holds that.
        let mut cmd = medgemma();
        cmd.arg("run")
            .arg("-m")
            .arg(&g.model)
            .arg("--mmproj")
            .arg(g.mmproj.as_ref().unwrap());
        cmd.args(["-t", "2", "--choices", CHOICES, "--json"]);
        for image in item["images"].as_array().into_iter().flatten() {
            cmd.arg("--image").arg(dir.path().join(image.as_str().unwrap()));
        }
        cmd.arg(item["prompt"].as_str().unwrap());
        let run: Value = serde_json::from_str(ok(&mut cmd).trim()).unwrap();
        assert_eq!(run["choice"], p["prediction"]);
        let rn = run["probabilities"]["normal"].as_f64().unwrap();
        assert!((rn - pn).abs() <= 1e-4, "{}: eval {pn} vs run {rn}", p["id"]);
    }
    let report: Value = serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["n"], 8);
    assert!((report["accuracy"].as_f64().unwrap() - correct as f64 / 8.0).abs() < 1e-12);
    for key in [
        "accuracy_ci95",
        "confusion_matrix",
        "per_class",
        "macro_f1",
        "cohen_kappa",
        "roc_auc",
        "calibration",
    ] {
        assert!(report.get(key).is_some(), "report.json has no {key}: {report}");
    }
    let matrix = &report["confusion_matrix"]["matrix"];
    let total: u64 = matrix
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap())
        .map(|c| c.as_u64().unwrap())
        .sum();
    assert_eq!(total, 8);
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("training data"), "the contamination caution: {md}");
    for png in ["confusion-matrix.png", "reliability.png"] {
        let bytes = std::fs::read(out.join(png)).unwrap_or_else(|e| panic!("{png}: {e}"));
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{png}");
    }
    // --report DIR recomputes the same report without a model.
    let mut cmd = medgemma();
    cmd.arg("eval").arg("--report").arg(&out).arg("--json");
    let again: Value = serde_json::from_str(ok(&mut cmd).trim()).unwrap();
    assert_eq!(again["accuracy"], report["accuracy"]);
    assert_eq!(again["confusion_matrix"], report["confusion_matrix"]);

    // A second run on the same folder has nothing left to do.
    let (status, _, stderr) = output(&mut eval_cmd(&g, &input, &out, &["--choices", CHOICES]));
    assert!(status.status.success(), "{stderr}");
    assert!(stderr.contains("8 of 8 items already"), "{stderr}");
    assert_eq!(predictions(&out).len(), 8);
}

#[test]
fn eval_resumes_after_kill() {
    let g = converted("tiny-medgemma-mm", "f32");
    let dir = tempfile::tempdir().unwrap();
    let input = labelled(dir.path(), 40);
    let out = dir.path().join("run");
    let file = out.join("predictions.jsonl");
    let mut child = eval_cmd(&g, &input, &out, &["--choices", CHOICES])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        let lines = std::fs::read_to_string(&file).map_or(0, |t| t.lines().count());
        if lines >= 2 || started.elapsed() > Duration::from_secs(60) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = std::fs::read_to_string(&file).unwrap().lines().count();
    assert!(before < 40, "killed too late to test resuming ({before} done)");
    let (status, _, stderr) = output(&mut eval_cmd(&g, &input, &out, &["--choices", CHOICES]));
    assert!(status.status.success(), "{stderr}");
    let preds = predictions(&out);
    let ids: std::collections::HashSet<&str> = preds.iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!((preds.len(), ids.len()), (40, 40), "every item exactly once");
}

#[test]
fn schema_eval_and_compare() {
    let f32 = converted("tiny-medgemma-mm", "f32");
    let f16 = converted("tiny-medgemma-mm", "f16");
    let dir = tempfile::tempdir().unwrap();
    let input = labelled(dir.path(), 6);
    let schema = dir.path().join("s.json");
    std::fs::write(
        &schema,
        json!({"type": "object", "properties": {"finding": {"enum": ["normal", "abnormal"]}},
               "required": ["finding"], "additionalProperties": false})
        .to_string(),
    )
    .unwrap();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    let schema_args = [
        "--json-schema",
        schema.to_str().unwrap(),
        "--field",
        "finding",
        "-n",
        "64",
    ];
    ok(&mut eval_cmd(&f32, &input, &a, &schema_args));
    ok(&mut eval_cmd(&f16, &input, &b, &schema_args));
    let meta: Value = serde_json::from_slice(&std::fs::read(a.join("eval.json")).unwrap()).unwrap();
    assert_eq!(
        meta["classes"],
        json!(["normal", "abnormal"]),
        "the field's enum gives the classes"
    );
    for p in predictions(&a) {
        match p["prediction"].as_str() {
            Some(v) => assert!(v == "normal" || v == "abnormal"),
            None => assert!(p["error"].is_string(), "{p}"),
        }
    }
    let mut cmd = medgemma();
    cmd.arg("eval").arg("--compare").arg(&a).arg(&b).arg("--json");
    let cmp: Value = serde_json::from_str(ok(&mut cmd).trim()).unwrap();
    let right = |dir: &Path| -> HashMap<String, bool> {
        predictions(dir)
            .iter()
            .map(|p| (p["id"].as_str().unwrap().to_string(), p["prediction"] == p["label"]))
            .collect()
    };
    let (ra, rb) = (right(&a), right(&b));
    let only_a = ra.iter().filter(|(id, &r)| r && !rb[*id]).count();
    let only_b = ra.iter().filter(|(id, &r)| !r && rb[*id]).count();
    assert_eq!(cmp["paired"], 6, "{cmp}");
    assert_eq!(cmp["a_right_b_wrong"], only_a, "{cmp}");
    assert_eq!(cmp["a_wrong_b_right"], only_b, "{cmp}");
    let p = cmp["mcnemar_exact_p"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&p), "{cmp}");
    if only_a + only_b == 0 {
        assert_eq!(p, 1.0);
    }
}

#[test]
fn bad_labelled_data_is_refused_before_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let missing_model = dir.path().join("no-such-model.gguf");
    let write = |name: &str, lines: &[Value]| {
        let p = dir.path().join(name);
        std::fs::write(
            &p,
            lines.iter().map(Value::to_string).collect::<Vec<_>>().join("\n") + "\n",
        )
        .unwrap();
        p
    };
    let no_label = write(
        "a.jsonl",
        &[
            json!({"id": "1", "prompt": "q", "label": "normal"}),
            json!({"id": "2", "prompt": "q"}),
        ],
    );
    let other = write("b.jsonl", &[json!({"id": "1", "prompt": "q", "label": "pneumothorax"})]);
    let schema = dir.path().join("s.json");
    std::fs::write(
        &schema,
        r#"{"type": "object", "properties": {"finding": {"type": "string"}}}"#,
    )
    .unwrap();
    let good = write("c.jsonl", &[json!({"id": "1", "prompt": "q", "label": "normal"})]);
    // A folder with other files in it is not taken as an eval folder: nothing there is written over.
    let busy = dir.path().join("busy");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("report.md"), "my notes").unwrap();
    let g = converted("tiny-medgemma-mm", "f32");
    let mut cmd = medgemma();
    cmd.arg("eval")
        .arg("-m")
        .arg(&g.model)
        .arg("--input")
        .arg(&good)
        .arg("--output")
        .arg(&busy);
    cmd.args(["--choices", CHOICES]);
    let stderr = fails(&mut cmd);
    assert!(stderr.contains("not an eval folder"), "{stderr}");
    assert_eq!(std::fs::read_to_string(busy.join("report.md")).unwrap(), "my notes");
    assert_eq!(std::fs::read_dir(&busy).unwrap().count(), 1);
    let cases: Vec<(PathBuf, Vec<&str>, Vec<&str>)> = vec![
        (no_label, vec!["--choices", CHOICES], vec!["a.jsonl", "\"2\"", "label"]),
        (
            other,
            vec!["--choices", CHOICES],
            vec!["b.jsonl", "pneumothorax", "normal, abnormal"],
        ),
        (good.clone(), vec!["--choices", "normal,normal"], vec!["--choices"]),
        (
            good,
            vec!["--json-schema", schema.to_str().unwrap(), "--field", "diagnosis"],
            vec!["--field", "diagnosis"],
        ),
    ];
    for (input, args, expected) in cases {
        let mut cmd = medgemma();
        cmd.arg("eval").arg("-m").arg(&missing_model).arg("--input").arg(&input);
        cmd.arg("--output").arg(dir.path().join("out")).args(&args);
        let stderr = fails(&mut cmd);
        assert!(
            !stderr.contains("no-such-model"),
            "{args:?}: the model was looked at first:\n{stderr}"
        );
        for e in expected {
            assert!(stderr.contains(e), "{args:?}: expected {e:?} in:\n{stderr}");
        }
        assert!(!dir.path().join("out").exists(), "nothing written for refused input");
    }
}
