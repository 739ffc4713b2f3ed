//! Bad input: a clear message naming the file or flag, exit code 1, no panic, nothing on stdout.

use std::path::Path;

use crate::util::*;

fn mm() -> Gguf {
    converted("tiny-medgemma-mm", "f32")
}

fn run_with(model: &Path, extra: &[&str]) -> String {
    let mut cmd = medgemma();
    cmd.arg("run").arg("-m").arg(model).args(extra);
    fails(&mut cmd)
}

#[test]
fn missing_model_file() {
    let err = run_with(Path::new("/nonexistent/medgemma.gguf"), &["hi"]);
    assert!(
        err.contains("/nonexistent/medgemma.gguf") && err.contains("not found"),
        "{err}"
    );
}

#[test]
fn no_model_at_all() {
    // Without -m the default model is used; offline and not downloaded, the error says how to get it.
    let err = fails(medgemma().args(["run", "hi"]));
    assert!(err.contains("-m/--model"), "{err}");
    assert!(err.contains("`medgemma pull medgemma-4b-it:q4_k_m`"), "{err}");
}

#[test]
fn file_that_is_not_gguf() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("model.gguf");
    std::fs::write(&p, "this is a text file, not a model").unwrap();
    let err = run_with(&p, &["hi"]);
    assert!(err.contains("model.gguf") && err.contains("not a GGUF file"), "{err}");
}

#[test]
fn truncated_gguf() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(&mm().model).unwrap();
    for cut in [bytes.len() / 2, bytes.len() - 1, 100] {
        let p = dir.path().join("cut.gguf");
        std::fs::write(&p, &bytes[..cut]).unwrap();
        let err = run_with(&p, &["hi"]);
        assert!(err.contains("cut.gguf") && err.contains("truncated"), "{err}");
    }
}

#[test]
fn mmproj_given_as_model_and_model_as_mmproj() {
    let g = mm();
    let err = run_with(g.mmproj.as_ref().unwrap(), &["hi"]);
    assert!(err.contains("vision projector") && err.contains("--mmproj"), "{err}");
    let mut cmd = medgemma();
    cmd.arg("run")
        .arg("-m")
        .arg(&g.model)
        .arg("--mmproj")
        .arg(&g.model)
        .args(["hi"]);
    let err = fails(&mut cmd);
    assert!(
        err.contains("not a vision projector") && err.contains("-m/--model"),
        "{err}"
    );
}

#[test]
fn mmproj_that_does_not_fit_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let bad = mismatched_mmproj(&mm(), dir.path());
    let mut cmd = medgemma();
    cmd.arg("run")
        .arg("-m")
        .arg(mm().model)
        .arg("--mmproj")
        .arg(&bad)
        .arg("hi");
    let err = fails(&mut cmd);
    assert!(
        err.contains("mmproj-other.gguf") && err.contains("do not belong together"),
        "{err}"
    );
}

fn run_image(image: &Path) -> String {
    let g = mm();
    let mut cmd = medgemma();
    cmd.arg("run")
        .arg("-m")
        .arg(&g.model)
        .arg("--mmproj")
        .arg(g.mmproj.unwrap())
        .arg("--image")
        .arg(image)
        .arg("hi");
    fails(&mut cmd)
}

#[test]
fn bad_images() {
    let dir = tempfile::tempdir().unwrap();
    let err = run_image(&dir.path().join("missing.png"));
    assert!(err.contains("missing.png") && err.contains("not found"), "{err}");
    let text = dir.path().join("report.png");
    std::fs::write(&text, "Findings: none").unwrap();
    let err = run_image(&text);
    assert!(err.contains("report.png") && err.contains("not a readable"), "{err}");
    let empty = dir.path().join("empty.png");
    std::fs::write(&empty, zero_size_png()).unwrap();
    let err = run_image(&empty);
    assert!(err.contains("empty.png") && err.contains("0x0"), "{err}");
}

/// A PNG whose header says 0x0 pixels (valid signature and chunk CRCs).
fn zero_size_png() -> Vec<u8> {
    png(&[(b"IHDR", &png_header(0, 0)), (b"IEND", &[])])
}

#[test]
fn image_without_mmproj() {
    let err = run_with(&mm().model, &["--image", "x.png", "hi"]);
    assert!(err.contains("--mmproj"), "{err}");
}

#[test]
fn prompt_longer_than_context_is_refused() {
    let long = "The patient reports chest pain radiating to the left arm. ".repeat(20);
    let err = run_with(&mm().model, &["-c", "64", &long]);
    assert!(err.contains("-c/--ctx-size") && err.contains("tokens"), "{err}");
}

#[test]
fn bad_conversation_files() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.json");
    let err = run_with(&mm().model, &["--messages", missing.to_str().unwrap()]);
    assert!(err.contains("nope.json"), "{err}");
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{not json").unwrap();
    let err = run_with(&mm().model, &["--messages", bad.to_str().unwrap()]);
    assert!(err.contains("bad.json") && err.contains("JSON"), "{err}");
    let order = dir.path().join("order.json");
    std::fs::write(
        &order,
        r#"[{"role":"user","content":"a"},{"role":"user","content":"b"}]"#,
    )
    .unwrap();
    let err = run_with(&mm().model, &["--messages", order.to_str().unwrap()]);
    assert!(err.contains("alternate"), "{err}");
}

#[test]
fn usage_errors_exit_2() {
    let out = medgemma().args(["run", "--temp=-3", "hi"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--temp"));
}
