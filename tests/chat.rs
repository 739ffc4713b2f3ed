//! `medgemma chat`: piped (scripted) conversations, KV reuse asserted from the stats, and a real pseudo-terminal
//! for line editing, Ctrl-C and Ctrl-D.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::util::*;

fn mm() -> Gguf {
    converted("tiny-medgemma-mm", "f32")
}

/// Runs a piped chat; returns (exit code, stdout, stderr).
/// Files for /image, /load and /save live beneath cargo's working directory (the package root, e.g. in
/// CARGO_TARGET_TMPDIR): the sandbox confines chat to the folder it starts in (tests/sandbox.rs).
fn chat(model: &Gguf, extra: &[&str], script: impl AsRef<[u8]>) -> (i32, String, String) {
    let mut cmd = medgemma();
    cmd.arg("chat")
        .arg("-m")
        .arg(&model.model)
        .args(["-n", "8", "--no-history", "-t", "2"])
        .args(extra);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(script.as_ref()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    )
}

/// Prompt tokens evaluated per turn, from the `--verbose` stats lines.
fn evaluated_per_turn(stderr: &str) -> Vec<usize> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("medgemma: prompt: "))
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .collect()
}

fn run_messages(model: &Gguf, messages: &Value, extra: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("conv.json");
    std::fs::write(&f, serde_json::to_vec(messages).unwrap()).unwrap();
    let mut cmd = medgemma();
    cmd.arg("run")
        .arg("-m")
        .arg(&model.model)
        .args(["-n", "8", "--json", "-t", "2"])
        .args(extra)
        .arg("--messages")
        .arg(&f);
    serde_json::from_str(&ok(&mut cmd)).unwrap()
}

#[test]
fn piped_two_turns_reuse_the_kv_cache_and_match_a_fresh_session() {
    let g = mm();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let saved = dir.path().join("chat.json");
    let script = format!("What is sepsis?\nAnd pneumonia?\n/save {}\n", saved.display());
    let (code, stdout, stderr) = chat(&g, &["--verbose"], &script);
    assert_eq!(code, 0, "{stderr}");
    let answers: Vec<&str> = stdout.lines().collect();
    assert_eq!(answers.len(), 2, "two answers expected: {stdout:?}");

    let transcript: Value = serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    let messages = transcript["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 4);
    // Turn 2 must evaluate only what is new: the whole conversation's prompt minus turn 1's prompt and answer.
    let first = run_messages(&g, &Value::Array(messages[..1].to_vec()), &[]);
    let second = run_messages(&g, &Value::Array(messages[..3].to_vec()), &[]);
    let answer_tokens = messages[1]["tokens"].as_array().unwrap().len();
    let evaluated = evaluated_per_turn(&stderr);
    assert_eq!(evaluated.len(), 2, "{stderr}");
    assert_eq!(evaluated[0], first["prompt_tokens"].as_u64().unwrap() as usize);
    assert_eq!(
        evaluated[1],
        second["prompt_tokens"].as_u64().unwrap() as usize - evaluated[0] - answer_tokens
    );
    // A fresh process handed the whole conversation gives the same second answer.
    assert_eq!(second["text"].as_str().unwrap().trim(), answers[1].trim());
    assert_eq!(first["text"].as_str().unwrap().trim(), answers[0].trim());
}

#[test]
fn save_then_load_in_a_new_process_gives_the_same_next_answer() {
    let g = mm();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let saved = dir.path().join("chat.json");
    let (_, stdout, _) = chat(
        &g,
        &[],
        format!("What is sepsis?\n/save {}\nAnd pneumonia?\n", saved.display()),
    );
    let expected = stdout.lines().nth(1).unwrap().to_string();
    let (code, stdout, stderr) = chat(&g, &[], format!("/load {}\nAnd pneumonia?\n", saved.display()));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.lines().collect::<Vec<_>>(), vec![expected.as_str()]);
}

#[test]
fn undo_retry_and_clear_drop_only_what_they_must() {
    let g = mm();
    let script =
        "What is sepsis?\nAnd pneumonia?\n/retry\n/undo\nAnd pneumonia?\n/undo\nAnd asthma?\n/clear\nWhat is sepsis?\n";
    let (code, stdout, stderr) = chat(&g, &["--verbose"], script);
    assert_eq!(code, 0, "{stderr}");
    let a: Vec<&str> = stdout.lines().collect();
    assert_eq!(a.len(), 6, "{stdout:?}\n{stderr}");
    assert_eq!(a[1], a[2], "greedy /retry gives the same answer");
    assert_eq!(a[1], a[3], "after /undo the same message gives the same answer");
    assert_eq!(a[0], a[5], "after /clear the first message gives the first answer");
    let (_, fresh, _) = chat(&g, &[], "What is sepsis?\nAnd asthma?\n");
    assert_eq!(
        a[4],
        fresh.lines().nth(1).unwrap(),
        "after /undo a new message is answered as in a fresh chat"
    );
    let e = evaluated_per_turn(&stderr);
    // The template's first user turn is e[0] tokens; the first answer is 8 tokens.
    assert_eq!(e[2], 1, "/retry re-evaluates only the last prompt position: {e:?}");
    assert_eq!(
        e[3], 1,
        "/undo dropped nothing still valid: the same message re-uses its cached tokens: {e:?}"
    );
    assert!(
        e[4] > 1 && e[4] <= e[1],
        "after /undo a different message evaluates only the new tail: {e:?}"
    );
    assert_eq!(e[5], e[0], "after /clear the whole prompt is evaluated: {e:?}");
}

#[test]
fn image_attached_with_the_image_command() {
    let g = mm();
    let image = fixtures().join("images/chest.png");
    let script = format!("/image {}\nDescribe this chest X-ray.\n", image.display());
    let (code, stdout, stderr) = chat(
        &g,
        &["--mmproj", g.mmproj.as_ref().unwrap().to_str().unwrap(), "--verbose"],
        &script,
    );
    assert_eq!(code, 0, "{stderr}");
    let mut cmd = medgemma();
    cmd.arg("run")
        .arg("-m")
        .arg(&g.model)
        .arg("--mmproj")
        .arg(g.mmproj.as_ref().unwrap());
    cmd.arg("--image")
        .arg(&image)
        .args(["-n", "8", "-t", "2", "Describe this chest X-ray."]);
    assert_eq!(stdout, ok(&mut cmd));
    let tokens_per_image = reference("tiny-medgemma-mm")["tokens_per_image"].as_u64().unwrap() as usize;
    assert!(evaluated_per_turn(&stderr)[0] > tokens_per_image);
}

/// Issue 14: a piped line that is not UTF-8 is reported with its number and skipped; the chat goes on (before, it
/// silently ended the session) and exits 0, as for any other bad input of a piped chat.
#[test]
fn a_line_that_is_not_utf8_is_reported_and_skipped() {
    let g = mm();
    let (code, stdout, stderr) = chat(&g, &[], b"What is sepsis?\n\xff\xfe broken \xc3\nWhat is a stroke?\n");
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("error: line 2 of the input: not UTF-8 text"),
        "{stderr}"
    );
    let (_, clean, _) = chat(&g, &[], "What is sepsis?\nWhat is a stroke?\n");
    assert_eq!(stdout, clean, "both good lines are answered, as without the bad one");
}

#[test]
fn bad_input_keeps_the_session_going() {
    let g = mm();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let bad = dir.path().join("broken.json");
    std::fs::write(&bad, "{not json").unwrap();
    let script = format!(
        "What is sepsis?\n/frobnicate\n/set temp hot\n/image {}\n/load {}\n/load {}\nAnd pneumonia?\n",
        dir.path().join("missing.png").display(),
        bad.display(),
        dir.path().join("absent.json").display()
    );
    let (code, stdout, stderr) = chat(&g, &["--mmproj", g.mmproj.as_ref().unwrap().to_str().unwrap()], &script);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("unknown command /frobnicate"), "{stderr}");
    assert!(stderr.contains("\"hot\" is not a number"), "{stderr}");
    assert!(
        stderr.contains("missing.png") && stderr.contains("not found"),
        "{stderr}"
    );
    assert!(
        stderr.contains("broken.json") && stderr.contains("not JSON"),
        "{stderr}"
    );
    assert!(stderr.contains("absent.json"), "{stderr}");
    // The conversation is intact: the second answer equals a clean two-turn session's.
    let (_, clean, _) = chat(&g, &[], "What is sepsis?\nAnd pneumonia?\n");
    assert_eq!(stdout, clean);
}

#[test]
fn image_command_without_mmproj_is_an_error() {
    let (code, stdout, stderr) = chat(&mm(), &[], "/image x.png\nHello\n");
    assert_eq!(code, 0);
    assert!(stderr.contains("--mmproj"), "{stderr}");
    assert_eq!(stdout.lines().count(), 1);
}

#[test]
fn context_full_is_said_not_truncated() {
    let g = mm();
    let long = "The patient reports chest pain radiating to the left arm. ".repeat(10);
    let (code, stdout, stderr) = chat(&g, &["-c", "64"], format!("{long}\nHi\n"));
    assert_eq!(code, 0);
    assert!(
        stderr.contains("no longer fits") && stderr.contains("/clear"),
        "{stderr}"
    );
    assert_eq!(
        stdout.lines().count(),
        1,
        "the short message is still answered: {stdout:?}"
    );
}

fn pty_chat(model: &Path, extra: &[&str]) -> rexpect::session::PtySession {
    let mut cmd = Command::new(binary());
    cmd.arg("chat")
        .arg("-m")
        .arg(model)
        .args(["--no-history", "-t", "2"])
        .args(extra);
    rexpect::session::spawn_command(cmd, Some(30_000)).unwrap()
}

#[test]
fn terminal_two_turns_then_ctrl_d() {
    let g = mm();
    let mut p = pty_chat(&g.model, &["-n", "8"]);
    p.exp_string(">>> ").unwrap();
    p.send_line("What is sepsis?").unwrap();
    p.exp_string(">>> ").unwrap();
    p.send_line("And pneumonia?").unwrap();
    p.exp_string(">>> ").unwrap();
    p.send_control('d').unwrap();
    p.exp_eof().unwrap();
    let status = p.process().wait().unwrap();
    assert!(
        matches!(status, rexpect::process::WaitStatus::Exited(_, 0)),
        "{status:?}"
    );
}

#[test]
fn terminal_ctrl_c_stops_the_answer_and_the_chat_goes_on() {
    let g = mm();
    // A context far beyond the tiny model's needs (and its trained 2048), so that an unbounded answer takes seconds.
    let mut p = pty_chat(&g.model, &["-n", "100000", "-c", "32768", "--allow-long-context"]);
    p.exp_string(">>> ").unwrap();
    p.send_line("What is sepsis?").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    // While the model answers, the terminal's line discipline turns Ctrl-C into SIGINT; rexpect's pty is not the
    // child's controlling terminal, so deliver the signal the terminal would send.
    p.process_mut().signal(rexpect::process::Signal::SIGINT).unwrap();
    p.exp_string("[interrupted").unwrap();
    p.exp_string(">>> ").unwrap();
    p.send_line("/set max-tokens 4").unwrap();
    p.exp_string(">>> ").unwrap();
    p.send_line("And pneumonia?").unwrap();
    p.exp_string(">>> ").unwrap();
    p.send_control('c').unwrap();
    p.exp_string("Ctrl-C again").unwrap();
    p.send_control('c').unwrap();
    p.exp_eof().unwrap();
    let status = p.process().wait().unwrap();
    assert!(
        matches!(status, rexpect::process::WaitStatus::Exited(_, 130)),
        "{status:?}"
    );
}

#[test]
fn terminal_commands_image_clear_undo_retry_save_load() {
    let g = mm();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let saved = dir.path().join("conv.json");
    let image = fixtures().join("images/chest.png");
    let mut p = pty_chat(
        &g.model,
        &["-n", "6", "--mmproj", g.mmproj.as_ref().unwrap().to_str().unwrap()],
    );
    let say = |p: &mut rexpect::session::PtySession, line: &str, expect: &str| {
        p.send_line(line).unwrap();
        p.exp_string(expect).unwrap();
        p.exp_string(">>> ").unwrap();
    };
    p.exp_string(">>> ").unwrap();
    say(&mut p, &format!("/image {}", image.display()), "1 image(s) attached");
    say(&mut p, "Describe this chest X-ray.", "\n");
    say(&mut p, "Any effusion?", "\n");
    say(&mut p, "/retry", "\n");
    say(&mut p, "/undo", "last exchange removed");
    say(&mut p, &format!("/save {}", saved.display()), "saved to");
    say(&mut p, "/clear", "conversation cleared");
    say(&mut p, &format!("/load {}", saved.display()), "loaded 2 turns");
    say(&mut p, "/show", "context:");
    say(&mut p, "/nonsense", "unknown command /nonsense");
    p.send_line("/quit").unwrap();
    p.exp_eof().unwrap();
    let transcript: Value = serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    assert_eq!(transcript["messages"].as_array().unwrap().len(), 2);
    assert_eq!(transcript["images"][0]["sha256"].as_str().unwrap().len(), 64);
}

/// Issue 10: a chat loaded from a conversation with an interleaved turn answers it as `run --messages` does, and
/// `/save` writes that turn back as a list of parts (a plain turn keeps the old shape), which loads again.
#[test]
fn interleaved_turns_load_answer_and_save() {
    let g = mm();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let chest = fixtures().join("images/chest.png");
    let skin = fixtures().join("images/skin.png");
    let messages = serde_json::json!([
        {"role": "user", "content": "Look at this.", "images": [chest]},
        {"role": "model", "content": "I see it."},
        {"role": "user", "content": [
            {"type": "text", "text": "Now this one:"}, {"type": "image", "image": skin},
            {"type": "text", "text": "Is it the same?"}]}]);
    let conversation = dir.path().join("conv.json");
    std::fs::write(&conversation, messages.to_string()).unwrap();
    let mmproj = g.mmproj.as_ref().unwrap().to_str().unwrap();
    let saved = dir.path().join("saved.json");
    let (code, stdout, stderr) = chat(
        &g,
        &["--mmproj", mmproj],
        format!("/load {}\n/save {}\n", conversation.display(), saved.display()),
    );
    assert_eq!(code, 0, "{stderr}");
    let run = run_messages(&g, &messages, &["--mmproj", mmproj]);
    assert_eq!(stdout.trim_end(), run["text"].as_str().unwrap().trim_end());

    let file: Value = serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    let m = &file["messages"];
    assert_eq!(m[0]["content"], "Look at this.");
    assert_eq!(m[0]["images"], serde_json::json!([chest]));
    assert_eq!(m[2]["content"], messages[2]["content"]);
    assert_eq!(m[3]["role"], "model");
    let (code, _, stderr) = chat(&g, &["--mmproj", mmproj], format!("/load {}\n", saved.display()));
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("loaded 4 turns"), "{stderr}");
}
