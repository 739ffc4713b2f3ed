//! Tests of the eval folder's files: reading, refusals with the file and line, and the report files written.

use super::*;

fn folder(classes: &[&str], lines: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let meta = EvalMeta {
        version: META_VERSION,
        classes: classes.iter().map(|s| s.to_string()).collect(),
        mode: "choices".into(),
        field: None,
        model: Some("model.gguf".into()),
        input: Some("labelled.jsonl".into()),
        extra: serde_json::Map::new(),
    };
    meta.write(dir.path()).unwrap();
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(dir.path().join(PREDICTIONS_JSONL), text).unwrap();
    dir
}

const TWO: &[&str] = &[
    r#"{"id": "1", "label": "normal", "prediction": "normal", "probabilities": {"normal": 0.9, "pneumonia": 0.1}, "finish": "stop"}"#,
    r#"{"id": "2", "label": "pneumonia", "prediction": "pneumonia", "probabilities": {"normal": 0.3, "pneumonia": 0.7}}"#,
    r#"{"id": "3", "label": "pneumonia", "prediction": null, "finish": "error", "error": "image unreadable"}"#,
];

#[test]
fn writes_every_report_file() {
    let dir = folder(&["normal", "pneumonia"], TWO);
    let report = write_report(dir.path()).unwrap();
    assert_eq!(
        (report.metrics.n, report.metrics.correct, report.metrics.no_answer),
        (3, 2, 1)
    );
    assert_eq!(report.metrics.roc_auc, Some(1.0));
    assert_eq!((report.metrics.roc_auc_items, report.metrics.roc_auc_excluded), (2, 1));
    for name in [REPORT_JSON, REPORT_MD, CONFUSION_PNG, RELIABILITY_PNG] {
        assert!(dir.path().join(name).is_file(), "{name}");
    }
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join(REPORT_JSON)).unwrap()).unwrap();
    for key in [
        "n",
        "accuracy",
        "accuracy_ci95",
        "no_answer",
        "classes",
        "confusion_matrix",
        "per_class",
        "macro_f1",
        "cohen_kappa",
        "roc_auc",
        "roc_auc_positive",
        "calibration",
        "caution",
        "model",
        "input",
        "mode",
    ] {
        assert!(json.get(key).is_some(), "report.json lacks {key}");
    }
    assert_eq!(json["confusion_matrix"]["no_answer"], serde_json::json!([0, 1]));
    assert_eq!(json["roc_auc_positive"], "pneumonia");
    // per_class keeps the class order.
    let order: Vec<&String> = json["per_class"].as_object().unwrap().keys().collect();
    assert_eq!(order, ["normal", "pneumonia"]);
    let md = std::fs::read_to_string(dir.path().join(REPORT_MD)).unwrap();
    assert!(md.contains(CAUTION) && md.contains("(confusion-matrix.png)") && md.contains("| pneumonia | 0 | 1 | 1 |"));
    let png = image::open(dir.path().join(CONFUSION_PNG)).unwrap();
    assert_eq!((png.width(), png.height()), plots::confusion_size(2, true));
}

#[test]
fn without_probabilities_there_is_no_reliability_plot() {
    let dir = folder(&["a", "b", "c"], &[r#"{"id": "x", "label": "a", "prediction": "c"}"#]);
    std::fs::write(dir.path().join(RELIABILITY_PNG), b"stale").unwrap();
    let report = write_report(dir.path()).unwrap();
    assert!(report.metrics.calibration.is_none() && report.metrics.roc_auc.is_none());
    assert!(!dir.path().join(RELIABILITY_PNG).exists());
}

#[test]
fn refusals_name_the_file_line_and_fix() {
    let empty = tempfile::tempdir().unwrap();
    let e = write_report(empty.path()).unwrap_err().to_string();
    assert!(
        e.starts_with("not an eval folder") && e.contains("medgemma eval --output DIR"),
        "{e}"
    );

    let dir = folder(
        &["a", "b"],
        &[
            r#"{"id": "1", "label": "a", "prediction": "a"}"#,
            r#"{"id": "1", "label": "b", "prediction": null}"#,
        ],
    );
    let e = write_report(dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("line 2") && e.contains("\"1\"") && e.contains("line 1"),
        "{e}"
    );

    let dir = folder(&["a", "b"], &[r#"{"id": "1", "label": "c", "prediction": "a"}"#]);
    let e = write_report(dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("predictions.jsonl line 1") && e.contains("label \"c\""),
        "{e}"
    );

    let dir = folder(
        &["a", "b"],
        &[r#"{"id": "1", "label": "a", "prediction": "a", "probabilities": {"a": 1.5, "b": 0}}"#],
    );
    assert!(write_report(dir.path())
        .unwrap_err()
        .to_string()
        .contains("not in [0, 1]"));

    let dir = folder(&["a", "b"], &[]);
    let e = write_report(dir.path()).unwrap_err().to_string();
    assert!(e.contains("holds no predictions"), "{e}");

    let dir = folder(&["a"], &[]);
    std::fs::write(
        dir.path().join(PREDICTIONS_JSONL),
        "{\"id\": \"1\", \"label\": \"a\", \"prediction\": \"a\"}\n{\"id\": \"2\", \"la",
    )
    .unwrap();
    let e = write_report(dir.path()).unwrap_err().to_string();
    assert!(e.contains("line 2") && e.contains("cut last line"), "{e}");

    std::fs::remove_file(dir.path().join(PREDICTIONS_JSONL)).unwrap();
    let e = write_report(dir.path()).unwrap_err().to_string();
    assert!(e.contains("is missing") && e.contains("--output"), "{e}");

    std::fs::write(
        dir.path().join(META_JSON),
        r#"{"version": 2, "classes": ["a"], "mode": "choices"}"#,
    )
    .unwrap();
    assert!(write_report(dir.path()).unwrap_err().to_string().contains("version 2"));
    std::fs::write(
        dir.path().join(META_JSON),
        r#"{"version": 1, "classes": ["a", "a"], "mode": "choices"}"#,
    )
    .unwrap();
    assert!(write_report(dir.path())
        .unwrap_err()
        .to_string()
        .contains("listed twice"));
}

#[test]
fn meta_round_trips_with_unknown_keys() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"{"version": 1, "classes": ["x", "y"], "mode": "schema", "field": "finding", "model": "m.gguf",
                   "input": "in.jsonl", "seed": 7}"#;
    std::fs::write(dir.path().join(META_JSON), text).unwrap();
    let meta = EvalMeta::read(dir.path()).unwrap();
    assert_eq!(meta.field.as_deref(), Some("finding"));
    assert_eq!(meta.extra["seed"], 7);
    meta.write(dir.path()).unwrap();
    assert_eq!(EvalMeta::read(dir.path()).unwrap(), meta);
}

#[test]
fn predictions_round_trip() {
    let dir = folder(&["normal", "pneumonia"], TWO);
    let records = read_predictions(&dir.path().join(PREDICTIONS_JSONL)).unwrap();
    assert_eq!(records.len(), 3);
    assert_eq!(records[2].error.as_deref(), Some("image unreadable"));
    let line = serde_json::to_string(&records[2]).unwrap();
    assert_eq!(serde_json::from_str::<Prediction>(&line).unwrap(), records[2]);
    assert!(!line.contains("probabilities"));
}

#[test]
fn compares_two_folders_and_refuses_other_classes() {
    let a = folder(&["normal", "pneumonia"], TWO);
    let b = folder(
        &["normal", "pneumonia"],
        &[
            r#"{"id": "3", "label": "pneumonia", "prediction": "pneumonia"}"#,
            r#"{"id": "1", "label": "normal", "prediction": "pneumonia"}"#,
        ],
    );
    let c = compare_runs(a.path(), b.path()).unwrap();
    assert_eq!(
        (c.paired, c.only_in_a, c.only_in_b, c.a_right_b_wrong, c.a_wrong_b_right),
        (2, 1, 0, 1, 1)
    );
    let other = folder(&["pneumonia", "normal"], TWO);
    let e = compare_runs(a.path(), other.path()).unwrap_err().to_string();
    assert!(e.contains("different classes"), "{e}");
}
