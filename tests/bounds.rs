//! Inputs that cannot hang or explode (issue 14): images too large or too elongated are refused from their header,
//! before any pixel is decoded; a FIFO, directory or device named as a file is refused before it is opened; `-t`
//! is capped at the CPUs available, `-b` is bounded; a context past the model's trained length needs
//! `--allow-long-context`. Each command runs under a deadline, so a regression fails instead of hanging.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::util::*;

fn mm() -> Gguf {
    converted("tiny-medgemma-mm", "f32")
}

fn with_mmproj(cmd: &str, g: &Gguf) -> Command {
    let mut c = medgemma();
    c.arg(cmd)
        .arg("-m")
        .arg(&g.model)
        .arg("--mmproj")
        .arg(g.mmproj.as_ref().unwrap())
        .args(["-t", "2", "-n", "4"]);
    c
}

/// A clean failure within 60 s: exit 1, an `error:` line, nothing on stdout; returns stderr.
fn refused(cmd: &mut Command) -> String {
    let (code, stdout, stderr) = within(cmd, "", 60);
    assert_eq!(code, 1, "expected exit 1:\nstdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("error:") && stdout.is_empty(), "{stdout}\n{stderr}");
    stderr
}

/// A 1 x 100000 grey PNG: padded to a square it would be 100000 x 100000 pixels (30 GB as RGB).
fn thin_png(dir: &Path) -> PathBuf {
    let p = dir.join("thin.png");
    image::GrayImage::new(1, 100_000).save(&p).unwrap();
    p
}

/// A PNG whose header claims 20000 x 20000 pixels, followed by a few bytes of image data.
fn huge_png(dir: &Path) -> PathBuf {
    let idat = [0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01];
    let bytes = png(&[(b"IHDR", &png_header(20_000, 20_000)), (b"IDAT", &idat), (b"IEND", &[])]);
    let p = dir.join("huge.png");
    std::fs::write(&p, bytes).unwrap();
    p
}

fn fifo(dir: &Path) -> PathBuf {
    let p = dir.join("pipe");
    let status = Command::new("mkfifo").arg(&p).status().expect("mkfifo");
    assert!(status.success());
    p
}

#[test]
fn a_thin_image_is_refused_before_padding() {
    let dir = tempfile::tempdir().unwrap();
    let thin = thin_png(dir.path());
    let err = refused(with_mmproj("run", &mm()).arg("--image").arg(&thin).arg("Describe."));
    assert!(err.contains("thin.png") && err.contains("1x100000"), "{err}");
    assert!(err.contains("limit is 10:1") && err.contains("crop"), "{err}");
    let err = refused(
        with_mmproj("bench", &mm())
            .args(["-p", "8", "-r", "1"])
            .arg("--image")
            .arg(&thin),
    );
    assert!(err.contains("thin.png") && err.contains("10:1"), "{err}");
}

#[test]
fn a_header_claiming_20000x20000_is_refused_without_decoding() {
    let dir = tempfile::tempdir().unwrap();
    let huge = huge_png(dir.path());
    for fit in ["pad", "stretch"] {
        let err = refused(
            with_mmproj("run", &mm())
                .args(["--image-fit", fit, "--image"])
                .arg(&huge)
                .arg("Describe."),
        );
        assert!(err.contains("huge.png") && err.contains("20000x20000"), "{err}");
        assert!(err.contains("the limit is 67.1") && err.contains("downscale"), "{err}");
    }
}

#[test]
fn a_fifo_or_directory_is_refused_not_waited_on() {
    let g = mm();
    let dir = tempfile::tempdir().unwrap();
    let pipe = fifo(dir.path());
    let not_regular = |err: &str| err.contains("pipe") && err.contains("not a regular file but a named pipe");
    let mut run = medgemma();
    run.args(["run", "-m"]).arg(&pipe).arg("hi");
    assert!(not_regular(&refused(&mut run)));
    let mut run = medgemma();
    run.arg("run")
        .arg("-m")
        .arg(&g.model)
        .arg("--mmproj")
        .arg(&pipe)
        .arg("hi");
    assert!(not_regular(&refused(&mut run)));
    assert!(not_regular(&refused(
        with_mmproj("run", &g).arg("--image").arg(&pipe).arg("hi")
    )));
    let mut run = medgemma();
    run.arg("run").arg("-m").arg(&g.model).arg("--messages").arg(&pipe);
    let err = refused(&mut run);
    assert!(not_regular(&err) && err.contains("--messages"), "{err}");
    let out = dir.path().join("results.jsonl");
    let err = refused(
        with_mmproj("batch", &g)
            .arg("--input")
            .arg(&pipe)
            .arg("--output")
            .arg(&out),
    );
    assert!(not_regular(&err) && err.contains("--input"), "{err}");
    assert!(!out.exists(), "nothing is written for a refused --input");
    let mut run = medgemma();
    run.args(["run", "-m"]).arg(dir.path()).arg("hi");
    let err = refused(&mut run);
    assert!(err.contains("not a regular file but a directory"), "{err}");
}

#[test]
fn chat_image_and_load_errors_keep_the_session() {
    let g = mm();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let (thin, huge, pipe) = (thin_png(dir.path()), huge_png(dir.path()), fifo(dir.path()));
    let script = format!(
        "/image {}\n/image {}\n/image {}\n/load {}\nWhat is sepsis?\n",
        thin.display(),
        huge.display(),
        pipe.display(),
        pipe.display()
    );
    let mut cmd = with_mmproj("chat", &g);
    cmd.arg("--no-history");
    let (code, stdout, stderr) = within(&mut cmd, &script, 60);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("thin.png") && stderr.contains("10:1"), "{stderr}");
    assert!(
        stderr.contains("huge.png") && stderr.contains("20000x20000"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("not a regular file").count(), 2, "{stderr}");
    // The session went on: the answer equals a clean session's.
    let mut clean = with_mmproj("chat", &g);
    clean.arg("--no-history");
    let (_, expected, _) = within(&mut clean, "What is sepsis?\n", 60);
    assert!(!expected.is_empty());
    assert_eq!(stdout, expected);
}

#[test]
fn bad_images_in_batch_are_that_jobs_error_and_the_rest_run() {
    let g = mm();
    let dir = tempfile::tempdir().unwrap();
    let (thin, huge, pipe) = (thin_png(dir.path()), huge_png(dir.path()), fifo(dir.path()));
    std::fs::copy(fixtures().join("images/chest.png"), dir.path().join("chest.png")).unwrap();
    let jobs = [
        json!({"id": "first", "prompt": "What is sepsis?"}),
        json!({"id": "thin", "prompt": "Describe.", "images": [thin]}),
        json!({"id": "huge", "prompt": "Describe.", "images": [huge]}),
        json!({"id": "pipe", "prompt": "Describe.", "images": [pipe]}),
        json!({"id": "xray", "prompt": "Describe.", "images": ["chest.png"]}),
        json!({"id": "last", "prompt": "What is pneumonia?"}),
    ];
    let input = dir.path().join("jobs.jsonl");
    let lines: Vec<String> = jobs.iter().map(Value::to_string).collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let out = dir.path().join("results.jsonl");
    // The rerun resumes (the failed jobs are tried again) and fails the same way, not by aborting at a bad image.
    for _run in 0..2 {
        let mut cmd = with_mmproj("batch", &g);
        cmd.arg("--input").arg(&input).arg("--output").arg(&out);
        let (code, _, stderr) = within(&mut cmd, "", 120);
        assert_eq!(code, 1, "three jobs failed: {stderr}");
        assert!(stderr.contains("3 of 6 jobs failed"), "{stderr}");
        let recs: Vec<Value> = std::fs::read_to_string(&out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let ids: std::collections::HashSet<&str> = recs.iter().map(|r| r["id"].as_str().unwrap()).collect();
        assert_eq!(ids.len(), 6, "{recs:?}");
        let error_of = |id: &str| {
            let r = recs.iter().rev().find(|r| r["id"] == id).unwrap();
            (r["finish_reason"] == "error").then(|| r["error"].as_str().unwrap().to_string())
        };
        assert!(error_of("thin").unwrap().contains("10:1"));
        assert!(error_of("huge").unwrap().contains("20000x20000"));
        assert!(error_of("pipe").unwrap().contains("not a regular file"));
        for ok in ["first", "xray", "last"] {
            assert_eq!(error_of(ok), None, "{ok}");
        }
    }
}

#[test]
fn threads_beyond_the_cpus_are_capped_and_batch_size_is_bounded() {
    let g = mm();
    let mut cmd = medgemma();
    cmd.arg("run")
        .arg("-m")
        .arg(&g.model)
        .args(["-t", "100000", "-n", "2", "hi"]);
    let (code, stdout, stderr) = within(&mut cmd, "", 60);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stdout.is_empty());
    assert!(
        stderr.contains("-t 100000 is more than the") && stderr.contains("CPUs"),
        "{stderr}"
    );
    for command in ["run", "bench"] {
        let mut cmd = medgemma();
        cmd.arg(command).arg("-m").arg(&g.model).args(["-b", "4000000000"]);
        let (code, _, stderr) = within(&mut cmd, "", 30);
        assert_eq!(code, 2, "a usage error: {stderr}");
        assert!(
            stderr.contains("--batch-size") && stderr.contains("1..=8192"),
            "{stderr}"
        );
    }
}

#[test]
fn a_context_past_the_trained_length_needs_asking() {
    // The tiny model was trained for 2048 tokens.
    let g = mm();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results.jsonl");
    let jobs = dir.path().join("jobs.jsonl");
    std::fs::write(&jobs, json!({"id": "a", "prompt": "hi"}).to_string() + "\n").unwrap();
    let cases: [(&str, &[&str]); 5] = [
        ("run", &["-c", "4096", "hi"]),
        ("chat", &["-c", "4096"]),
        (
            "batch",
            &[
                "-c",
                "4096",
                "--input",
                jobs.to_str().unwrap(),
                "--output",
                out.to_str().unwrap(),
            ],
        ),
        ("bench", &["-p", "100000", "-r", "1"]),
        ("bench", &["-p", "2000", "-n", "100", "-r", "1"]),
    ];
    for (command, args) in cases {
        let mut cmd = medgemma();
        cmd.arg(command).arg("-m").arg(&g.model).args(["-t", "2"]).args(args);
        let err = refused(&mut cmd);
        assert!(
            err.contains("2048") && err.contains("--allow-long-context"),
            "{command}: {err}"
        );
        let flag = if command == "bench" {
            "-p/--prompt-tokens"
        } else {
            "-c/--ctx-size 4096"
        };
        assert!(err.contains(flag), "{command}: {err}");
    }
    assert!(!out.exists(), "a refused batch writes nothing");
    let mut cmd = medgemma();
    cmd.arg("run")
        .arg("-m")
        .arg(&g.model)
        .args(["-t", "2", "-n", "2", "-c", "4096", "--allow-long-context", "hi"]);
    let (code, stdout, stderr) = within(&mut cmd, "", 60);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stdout.is_empty());
}
