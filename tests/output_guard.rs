//! Issue 14, "nothing of the user's is ever destroyed": every command that writes a file the user names refuses a
//! path that is one of its inputs (the same path, written another way, a symbolic link or a hard link), says which
//! flag, what it would destroy and the fix, exits 1, and leaves the input's bytes as they were.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::util::*;

fn mm() -> Gguf {
    converted("tiny-medgemma-mm", "f32")
}

/// A folder on the same filesystem as the converted models, so that hard links to them can be made.
fn workdir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

fn symlink(target: &Path, link: &Path) -> PathBuf {
    std::os::unix::fs::symlink(target, link).unwrap();
    link.to_path_buf()
}

fn hard_link(target: &Path, link: &Path) -> PathBuf {
    std::fs::hard_link(target, link).unwrap();
    link.to_path_buf()
}

/// Runs a refused command; asserts exit 1, the message's parts, and that `protected` kept its bytes.
fn refused(cmd: &mut std::process::Command, protected: &Path, parts: &[&str]) -> String {
    let before = std::fs::read(protected).unwrap();
    let err = fails(cmd);
    for part in parts {
        assert!(err.contains(part), "{part:?} missing in:\n{err}");
    }
    assert_eq!(
        std::fs::read(protected).unwrap(),
        before,
        "{} changed",
        protected.display()
    );
    err
}

#[test]
fn run_logits_out_never_writes_over_an_input() {
    let g = mm();
    let dir = workdir();
    let image = dir.path().join("chest.png");
    std::fs::copy(fixtures().join("images/chest.png"), &image).unwrap();
    let messages = dir.path().join("conv.json");
    std::fs::write(&messages, r#"[{"role": "user", "content": "What is sepsis?"}]"#).unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let run = |extra: &[&Path]| {
        let mut cmd = medgemma();
        cmd.current_dir(dir.path())
            .arg("run")
            .arg("-m")
            .arg(&g.model)
            .arg("--mmproj")
            .arg(g.mmproj.as_ref().unwrap())
            .args(["-n", "2", "-t", "2"])
            .args(extra);
        cmd
    };
    let link = symlink(&g.model, &dir.path().join("logits.json"));
    refused(
        &mut run(&[Path::new("--logits-out"), &link, Path::new("hi")]),
        &g.model,
        &[
            "--logits-out",
            "logits.json",
            "the model (-m/--model)",
            "symbolic link",
            "another path",
        ],
    );
    let hard = hard_link(g.mmproj.as_ref().unwrap(), &dir.path().join("hard.json"));
    refused(
        &mut run(&[Path::new("--logits-out"), &hard, Path::new("hi")]),
        g.mmproj.as_ref().unwrap(),
        &["the vision projector (--mmproj)", "hard link"],
    );
    refused(
        &mut run(&[
            Path::new("--messages"),
            &messages,
            Path::new("--logits-out"),
            Path::new("sub/../conv.json"),
        ]),
        &messages,
        &["the conversation (--messages)", "sub/../conv.json"],
    );
    refused(
        &mut run(&[
            Path::new("--image"),
            Path::new("chest.png"),
            Path::new("--logits-out"),
            &image,
            Path::new("hi"),
        ]),
        &image,
        &["an image of the prompt"],
    );
}

#[test]
fn chat_save_never_writes_over_an_input_and_the_chat_goes_on() {
    let g = mm();
    let dir = workdir();
    let image = dir.path().join("chest.png");
    std::fs::copy(fixtures().join("images/chest.png"), &image).unwrap();
    let hard = hard_link(&g.model, &dir.path().join("chat.json"));
    let link = symlink(&image, &dir.path().join("saved.json"));
    let model_before = std::fs::read(&g.model).unwrap();
    let image_before = std::fs::read(&image).unwrap();
    let script = format!(
        "/image {}\nDescribe.\n/save {}\n/save {}\n",
        image.display(),
        hard.display(),
        link.display()
    );
    let mut child = medgemma()
        .arg("chat")
        .arg("-m")
        .arg(&g.model)
        .arg("--mmproj")
        .arg(g.mmproj.as_ref().unwrap())
        .args(["-n", "4", "--no-history", "-t", "2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), script.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Bad input in a piped chat is reported and the chat goes on (exit 0), as for any other bad command.
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!out.stdout.is_empty(), "the message was answered: {stderr}");
    assert!(
        stderr.contains("error: /save") && stderr.contains("the model (-m/--model)") && stderr.contains("hard link"),
        "{stderr}"
    );
    assert!(
        stderr.contains("an image of this chat") && stderr.contains("give /save another path"),
        "{stderr}"
    );
    assert!(!stderr.contains("saved to"), "{stderr}");
    assert_eq!(std::fs::read(&g.model).unwrap(), model_before);
    assert_eq!(std::fs::read(&image).unwrap(), image_before);
}

#[test]
fn quantize_never_writes_over_its_input_even_with_force() {
    let dir = workdir();
    let input = dir.path().join("in.gguf");
    std::fs::copy(converted("tiny-medgemma-text", "f32").model, &input).unwrap();
    for out in [
        hard_link(&input, &dir.path().join("hard.gguf")),
        symlink(&input, &dir.path().join("link.gguf")),
    ] {
        let mut cmd = medgemma();
        cmd.arg("quantize")
            .arg(&input)
            .arg(&out)
            .args(["--type", "q8_0", "--force"]);
        refused(&mut cmd, &input, &["OUT.gguf", "is the input file", "another path"]);
    }
}

/// A batch on `jobs` (one text job, one job with `chest.png`) written to `output`.
fn batch(jobs: &Path, output: &Path, extra: &[&str]) -> std::process::Command {
    let g = mm();
    let mut cmd = medgemma();
    cmd.arg("batch")
        .arg("-m")
        .arg(&g.model)
        .arg("--mmproj")
        .arg(g.mmproj.as_ref().unwrap())
        .arg("--input")
        .arg(jobs)
        .arg("--output")
        .arg(output)
        .args(["-n", "2", "-t", "2"])
        .args(extra);
    cmd
}

#[test]
fn batch_output_is_never_an_input_nor_a_file_of_someone_else() {
    let g = mm();
    let dir = workdir();
    let image = dir.path().join("chest.png");
    std::fs::copy(fixtures().join("images/chest.png"), &image).unwrap();
    let jobs = dir.path().join("jobs.jsonl");
    std::fs::write(
        &jobs,
        "{\"id\": \"a\", \"prompt\": \"What is sepsis?\"}\n{\"id\": \"b\", \"prompt\": \"Describe.\", \"images\": [\"chest.png\"]}\n",
    )
    .unwrap();
    let meta_of = |p: &Path| PathBuf::from(format!("{}.meta.json", p.display()));

    // --output is --input: refused before anything is written (not even the sidecar).
    refused(
        &mut batch(&jobs, &jobs, &[]),
        &jobs,
        &["--output", "the jobs file (--input)"],
    );
    refused(
        &mut batch(&jobs, &jobs, &["--overwrite"]),
        &jobs,
        &["the jobs file (--input)"],
    );
    assert!(!meta_of(&jobs).exists());
    // The model through a symbolic link, an image of a job through a hard link, the sidecar onto the model.
    let link = symlink(&g.model, &dir.path().join("link.jsonl"));
    refused(
        &mut batch(&jobs, &link, &["--overwrite"]),
        &g.model,
        &["the model (-m/--model)"],
    );
    let hard = hard_link(&image, &dir.path().join("hard.jsonl"));
    refused(
        &mut batch(&jobs, &hard, &[]),
        &image,
        &["an image of job \"b\"", "hard link"],
    );
    let out = dir.path().join("m.jsonl");
    symlink(&g.model, &meta_of(&out));
    refused(
        &mut batch(&jobs, &out, &[]),
        &g.model,
        &["--output (its sidecar)", "the model"],
    );
    assert!(!out.exists());

    // Someone's JSONL whose objects have an "id" is not taken for results: not appended to, not overwritten.
    let theirs = dir.path().join("theirs.jsonl");
    std::fs::write(&theirs, "{\"id\": \"a\", \"note\": \"precious\"}\n").unwrap();
    let err = refused(
        &mut batch(&jobs, &theirs, &[]),
        &theirs,
        &["theirs.jsonl", "new file name"],
    );
    assert!(!err.contains("--overwrite"), "must not suggest destroying it: {err}");
    refused(
        &mut batch(&jobs, &theirs, &["--overwrite"]),
        &theirs,
        &["--overwrite only starts again medgemma's own results or an empty file"],
    );
    assert!(!meta_of(&theirs).exists());
    // Nor is a sidecar path that holds someone's file.
    let fresh = dir.path().join("fresh.jsonl");
    std::fs::write(meta_of(&fresh), "my notes").unwrap();
    refused(
        &mut batch(&jobs, &fresh, &[]),
        &meta_of(&fresh),
        &["fresh.jsonl.meta.json", "did not write"],
    );
    assert!(!fresh.exists());

    // An empty file may be used; then it is ours, and --overwrite may start it again.
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    ok(&mut batch(&jobs, &empty, &[]));
    assert_eq!(std::fs::read_to_string(&empty).unwrap().lines().count(), 2);
    ok(&mut batch(&jobs, &empty, &["--overwrite"]));
    assert_eq!(std::fs::read_to_string(&empty).unwrap().lines().count(), 2);
}
