//! `medgemma serve` on the command line: what it refuses before serving, the warning for an exposed address, and
//! a model that fails to load ending the server. The HTTP API itself is tested with real clients in
//! tests/python/test_serve.py (the official `openai` package).

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::util::*;

fn tiny() -> Gguf {
    converted("tiny-medgemma-text", "f32")
}

#[test]
fn a_taken_port_is_refused_before_loading() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let g = tiny();
    let err = fails(medgemma().args(["serve", "-m"]).arg(&g.model).args(["--port", &port]));
    assert!(err.contains(&format!("cannot listen on 127.0.0.1:{port}")), "{err}");
    assert!(err.contains("--port"), "{err}");
    assert!(!err.contains("model loaded"), "{err}");
}

#[test]
fn bad_flags_name_themselves() {
    let g = tiny();
    let err =
        fails(
            medgemma()
                .args(["serve", "-m"])
                .arg(&g.model)
                .args(["--port", "0", "--allow-path", "/no/such/folder"]),
        );
    assert!(err.contains("--allow-path /no/such/folder: no such folder"), "{err}");
    let err = fails(
        medgemma()
            .args(["serve", "-m"])
            .arg(&g.model)
            .args(["--port", "0"])
            .env("MEDGEMMA_API_KEY", ""),
    );
    assert!(err.contains("--api-key (or MEDGEMMA_API_KEY) is empty"), "{err}");
    let err = fails(medgemma().args(["serve", "-m", "/no/such/model.gguf", "--port", "0"]));
    assert!(err.contains("/no/such/model.gguf"), "{err}");
    let err = fails(
        medgemma()
            .args(["serve", "-m"])
            .arg(&g.model)
            .args(["--host", "no such host!", "--port", "0"]),
    );
    assert!(err.contains("--host no such host!"), "{err}");
}

/// Reads the server's stderr until `want` appears (or it exits, or 60 s pass); returns what it read.
fn stderr_until(child: &mut std::process::Child, want: &str) -> String {
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Reads to the end, whoever listens: the server's last lines must find their pipe open.
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
                if line.contains(want) {
                    break;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(_) => break,
        }
    }
    seen
}

#[test]
fn an_exposed_address_without_a_key_is_warned_about() {
    let g = tiny();
    let mut child = medgemma()
        .args(["serve", "-m"])
        .arg(&g.model)
        .args(["--host", "0.0.0.0", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let seen = stderr_until(&mut child, "model loaded");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(seen.contains("WARNING: listening on 0.0.0.0:"), "{seen}");
    assert!(seen.contains("WITHOUT an API key"), "{seen}");
    assert_eq!(status.code(), Some(0), "{seen}");
}

#[test]
fn a_model_that_cannot_load_ends_the_server_with_its_error() {
    let dir = tempfile::tempdir().unwrap();
    let g = tiny();
    // A header that passes the pre-check but whose tensor data is cut short: llama.cpp refuses it while loading.
    let bytes = std::fs::read(&g.model).unwrap();
    let cut = dir.path().join("cut.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() - 4096]).unwrap();
    let (out, stdout, stderr) = output(medgemma().args(["serve", "-m"]).arg(&cut).args(["--port", "0"]));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stdout.is_empty());
    assert!(stderr.contains("cut.gguf"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
