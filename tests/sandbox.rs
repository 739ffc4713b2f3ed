//! Issue 14, "Hardened": commands that read models or user input run inside a sandbox (Landlock file rules and a
//! seccomp filter without sockets), on by default; `doctor` proves it refuses what it must on this machine.
//!
//! The proof that a real command is confined uses the test hook `MEDGEMMA_SANDBOX_PROBE` (a path to read, or
//! `tcp:HOST:PORT` to connect to, right after the command entered the sandbox; the outcome goes to stderr).

use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use serde_json::Value;

use crate::util::*;

fn text() -> Gguf {
    converted("tiny-medgemma-text", "f32")
}

fn mm() -> Gguf {
    converted("tiny-medgemma-mm", "f32")
}

fn answer(extra: &[&str]) -> (String, String) {
    let (out, stdout, stderr) = output(
        medgemma()
            .arg("run")
            .arg("-m")
            .arg(&text().model)
            .args(["-n", "4", "-t", "1"])
            .args(extra)
            .arg("Hello"),
    );
    assert!(out.status.success(), "run failed:\n{stderr}");
    (stdout, stderr)
}

#[test]
fn doctor_passes_and_its_proof_shows_the_sandbox_refusing() {
    let stdout = ok(medgemma().args(["doctor", "--json"]));
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["ok"], true, "{report:#}");
    let proof = &report["sandbox"]["proof"];
    assert_eq!(proof["enforcement"]["landlock"], "full", "{proof:#}");
    assert_eq!(proof["enforcement"]["seccomp"], true, "{proof:#}");
    let attempts = proof["attempts"].as_array().unwrap();
    let refused = attempts.iter().filter(|a| a["expected"] == "refused").count();
    assert!(refused >= 3, "a file, a file from a thread, a connection: {proof:#}");
    for a in attempts {
        assert_eq!(a["outcome"], a["expected"], "{a:#}");
    }
    assert!(attempts
        .iter()
        .any(|a| a["what"].as_str().unwrap().starts_with("connecting") && a["outcome"] == "refused"));
    // Text on stdout too, each check with ok/FAILED.
    let text = ok(medgemma().arg("doctor"));
    assert!(text.contains("ok     sandbox: connecting to 127.0.0.1:"), "{text}");
    assert!(!text.contains("FAILED"), "{text}");
}

#[test]
fn run_answers_the_same_with_and_without_the_sandbox() {
    let (default, stderr) = answer(&["-v"]);
    assert!(
        stderr.contains("medgemma: sandbox: run: Landlock ABI") && stderr.contains("(full)"),
        "{stderr}"
    );
    let (required, _) = answer(&["--sandbox"]);
    let (off, stderr) = answer(&["--no-sandbox", "-v"]);
    assert!(!stderr.contains("sandbox:"), "{stderr}");
    assert!(!default.trim().is_empty());
    assert_eq!(default, required);
    assert_eq!(default, off);
    // Quiet without --verbose when it is enforced.
    let (_, stderr) = answer(&[]);
    assert!(!stderr.contains("sandbox"), "{stderr}");
}

#[test]
fn sandbox_and_no_sandbox_conflict_and_unconfined_commands_refuse_sandbox() {
    let (out, _, stderr) = output(medgemma().args(["--sandbox", "--no-sandbox", "info", "x.gguf"]));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for args in [
        &["list", "--sandbox"][..],
        &["--sandbox", "rm", "x"],
        &["--sandbox", "pull", "x"],
    ] {
        let err = fails(medgemma().args(args));
        assert!(
            err.contains("is not sandboxed") && err.contains("without --sandbox"),
            "{err}"
        );
    }
}

#[test]
fn run_inside_the_sandbox_cannot_read_other_files_or_connect() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret.txt");
    std::fs::write(&secret, "not for the model").unwrap();
    let probe = |target: &str, extra: &[&str]| {
        let (out, _, stderr) = output(
            medgemma()
                .env("MEDGEMMA_SANDBOX_PROBE", target)
                .arg("run")
                .arg("-m")
                .arg(&text().model)
                .args(["-n", "2", "-t", "1"])
                .args(extra)
                .arg("Hello"),
        );
        assert!(out.status.success(), "{stderr}");
        stderr
    };
    let err = probe(secret.to_str().unwrap(), &[]);
    assert!(
        err.contains("sandbox probe:") && err.contains("denied") && err.contains("os error 13"),
        "{err}"
    );
    let err = probe(text().model.to_str().unwrap(), &[]);
    assert!(err.contains("sandbox probe:") && err.contains(": allowed ("), "{err}");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = format!("tcp:{}", listener.local_addr().unwrap());
    let err = probe(&target, &[]);
    assert!(err.contains("denied") && err.contains("os error 1"), "{err}");
    // The hook only runs inside the sandbox.
    let err = probe(secret.to_str().unwrap(), &["--no-sandbox"]);
    assert!(!err.contains("sandbox probe"), "{err}");
}

#[test]
fn logits_out_in_another_folder_is_written_inside_the_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logits.json");
    answer(&["--sandbox", "--logits-out", path.to_str().unwrap()]);
    let logits: Vec<f64> = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert!(!logits.is_empty());
    // Written over atomically a second time (a temporary file beside it, renamed).
    answer(&["--sandbox", "--force", "--logits-out", path.to_str().unwrap()]);
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(left.len(), 1, "only the output is left");
}

#[test]
fn batch_writes_its_results_inside_the_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    let jobs = dir.path().join("jobs.jsonl");
    std::fs::write(&jobs, "{\"id\": \"a\", \"prompt\": \"Hello\", \"max_tokens\": 2}\n").unwrap();
    let results = dir.path().join("out/results.jsonl");
    std::fs::create_dir(dir.path().join("out")).unwrap();
    ok(medgemma()
        .arg("--sandbox")
        .arg("batch")
        .arg("-m")
        .arg(&text().model)
        .arg("--input")
        .arg(&jobs)
        .arg("--output")
        .arg(&results)
        .args(["-t", "1"]));
    let text = std::fs::read_to_string(&results).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
}

/// chat reads and writes beneath the folder it was started in: /image of a file elsewhere is refused with a hint,
/// and the chat goes on.
#[test]
fn chat_image_outside_the_current_folder_is_refused_with_a_hint() {
    let gguf = mm();
    let cwd = tempfile::tempdir().unwrap();
    let inside = cwd.path().join("chest.png");
    let fixture = fixtures().join("images/chest.png");
    std::fs::copy(&fixture, &inside).unwrap();
    let script = format!("/image {}\n/image chest.png\nDescribe it.\n", fixture.display());
    let (code, stdout, stderr) = chat_in(&gguf, cwd.path(), &script);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("--no-sandbox"), "{stderr}");
    assert!(stderr.contains("1 image(s) attached"), "{stderr}");
    assert!(!stdout.trim().is_empty());
}

fn chat_in(gguf: &Gguf, cwd: &Path, script: &str) -> (i32, String, String) {
    let mut child = medgemma()
        .current_dir(cwd)
        .arg("chat")
        .arg("-m")
        .arg(&gguf.model)
        .arg("--mmproj")
        .arg(gguf.mmproj.as_ref().unwrap())
        .args(["-n", "3", "-t", "1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `preview` reads its images, then enters the sandbox: it writes its PNGs, and cannot read anything else.
#[test]
fn preview_writes_its_pngs_inside_the_sandbox_and_reads_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("a.png");
    image::RgbImage::from_pixel(40, 20, image::Rgb([200, 100, 50]))
        .save(&image)
        .unwrap();
    let secret = dir.path().join("secret.txt");
    std::fs::write(&secret, "not for preview").unwrap();
    let out = dir.path().join("out");
    let (result, _, stderr) = output(
        medgemma()
            .args(["--sandbox", "preview", "--image"])
            .arg(&image)
            .arg("--out")
            .arg(&out)
            .env("MEDGEMMA_SANDBOX_PROBE", &secret),
    );
    assert!(result.status.success(), "{stderr}");
    assert!(
        stderr.contains("sandbox probe") && stderr.contains("denied"),
        "{stderr}"
    );
    let written = image::open(out.join("001.png")).unwrap().to_rgb8();
    assert_eq!(written.dimensions(), (40, 40), "padded to a square");
}
