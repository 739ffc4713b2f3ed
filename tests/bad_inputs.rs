//! Issue 14's bad-input matrix: `scripts/make_bad_inputs.py` writes malformed GGUF models and mmprojs, broken
//! images, hostile flags, batch JSONL, `--messages` files, piped chat input and output paths, with a manifest of
//! what medgemma must do with each; this test runs every case against the real binary and checks, case by case:
//! the exit status (never a signal, never a hang), the words the error must contain (the flag, key, tensor or
//! file, and the fix), no crash text (panic, GGML_ASSERT, abort, backtrace), nothing on stdout on failure, the
//! protected files (model, mmproj, inputs, existing outputs) byte for byte as before, and no file left behind but
//! the ones the case may create. Every failure is collected and shown in one table at the end.
//! `BAD_INPUTS_ONLY=TEXT` runs only the cases whose name contains TEXT.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::util::*;

/// The longest a case may run: most exit before a model loads; the tiny model loads and answers in well under a
/// second, so anything near this is a hang.
const CASE_TIMEOUT: Duration = Duration::from_secs(60);

/// Text that means a crash, whatever the exit status.
const CRASH_TEXT: [&str; 6] = [
    "panicked",
    "GGML_ASSERT",
    "Aborted",
    "core dumped",
    "stack backtrace",
    "Segmentation fault",
];

#[derive(Debug, Deserialize)]
struct Manifest {
    placeholders: BTreeMap<String, String>,
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
struct Case {
    name: String,
    kind: String,
    args: Vec<String>,
    exit: i32,
    #[serde(default)]
    contains: Vec<String>,
    #[serde(default)]
    not_contains: Vec<String>,
    #[serde(default)]
    protected: Vec<String>,
    stdin: Option<String>,
    stdin_hex: Option<String>,
    #[serde(default)]
    creates: Vec<String>,
    #[serde(default)]
    output_contains: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    stdout_nonempty: bool,
}

/// What a case left on disk: a regular file by its SHA-256 (large files by size and modification time), anything
/// else by its kind. Never opens a FIFO or a device.
fn fingerprint(path: &Path) -> String {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return "missing".into();
    };
    if meta.file_type().is_symlink() {
        return format!("link to {:?}", std::fs::read_link(path).ok());
    }
    if !meta.is_file() {
        return format!("{:?}", meta.file_type());
    }
    if meta.len() > 64 << 20 {
        return format!("{} bytes, modified {:?}", meta.len(), meta.modified().ok());
    }
    let bytes = std::fs::read(path).unwrap_or_default();
    format!("sha256 {:x}", Sha256::digest(&bytes))
}

/// Every path under `dir` (not following links), relative to it.
fn listing(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            out.insert(p.strip_prefix(dir).unwrap().to_path_buf());
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(p);
            }
        }
    }
    out
}

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// Runs one case in `dir`; returns what was wrong with it (empty when clean).
fn check(
    case: &Case,
    dir: &Path,
    placeholders: &BTreeMap<String, String>,
    expand: &dyn Fn(&str) -> String,
) -> Vec<String> {
    let mut wrong = Vec::new();
    let protected: Vec<PathBuf> = case.protected.iter().map(|p| PathBuf::from(expand(p))).collect();
    let before: Vec<String> = protected.iter().map(|p| fingerprint(p)).collect();
    let files_before = listing(dir);
    let stdin = match (&case.stdin, &case.stdin_hex) {
        (Some(text), _) => expand(text).into_bytes(),
        (None, Some(hex)) => {
            let bytes = placeholders.iter().fold(unhex(hex), |bytes, (from, to)| {
                replace_bytes(&bytes, from.as_bytes(), expand(to).as_bytes())
            });
            replace_bytes(&bytes, b"{dir}", expand("{dir}").as_bytes())
        }
        (None, None) => Vec::new(),
    };
    let mut cmd = medgemma();
    cmd.current_dir(dir).args(case.args.iter().map(|a| expand(a)));
    let out = run_with_deadline(&mut cmd, stdin, CASE_TIMEOUT);
    match &out.exit {
        Err(why) => wrong.push(why.clone()),
        Ok(code) if *code != case.exit => wrong.push(format!("exit {code}, expected {}", case.exit)),
        Ok(_) => {}
    }
    for part in &case.contains {
        let part = expand(part);
        if !out.stderr.contains(&part) {
            wrong.push(format!("stderr lacks {part:?}"));
        }
    }
    for part in CRASH_TEXT
        .iter()
        .map(|s| s.to_string())
        .chain(case.not_contains.iter().map(|p| expand(p)))
    {
        if out.stderr.contains(&part) || out.stdout.contains(&part) {
            wrong.push(format!("output has {part:?}"));
        }
    }
    if out.exit != Ok(0) && !out.stdout.is_empty() {
        wrong.push(format!("stdout not empty on failure: {:?}", first_line(&out.stdout)));
    }
    if case.stdout_nonempty && out.stdout.trim().is_empty() {
        wrong.push("no answer on stdout".into());
    }
    for (p, was) in protected.iter().zip(&before) {
        if &fingerprint(p) != was {
            wrong.push(format!("{} changed", p.display()));
        }
    }
    let allowed: BTreeSet<PathBuf> = case.creates.iter().map(PathBuf::from).collect();
    let created: BTreeSet<PathBuf> = listing(dir).difference(&files_before).cloned().collect();
    for file in case.output_contains.keys() {
        if !created.contains(Path::new(file)) {
            wrong.push(format!("did not write {file}"));
        }
    }
    for new in &created {
        if !allowed.contains(new) {
            wrong.push(format!("left {} behind", new.display()));
        }
        let path = dir.join(new);
        if let Some(words) = case.output_contains.get(new.to_str().unwrap()) {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for w in words {
                if !text.contains(w.as_str()) {
                    wrong.push(format!("{} lacks {w:?}", new.display()));
                }
            }
        }
        let _ = std::fs::remove_file(&path).or_else(|_| std::fs::remove_dir_all(&path));
    }
    if !wrong.is_empty() {
        wrong.push(format!("stderr: {}", first_line(&out.stderr)));
    }
    wrong
}

fn replace_bytes(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

/// The first line that says something (an `error:` line when there is one), shortened.
fn first_line(text: &str) -> String {
    let line = text
        .lines()
        .find(|l| l.contains("error"))
        .or_else(|| text.lines().find(|l| !l.trim().is_empty()))
        .unwrap_or("");
    line.chars().take(160).collect()
}

/// The Python that runs scripts/ (as tests/util.rs finds it for the converter).
fn python() -> PathBuf {
    std::env::var_os("MEDGEMMA_PYTHON").map_or_else(
        || {
            let venv = root().join(".venv/bin/python");
            if venv.exists() {
                venv
            } else {
                PathBuf::from("python3")
            }
        },
        PathBuf::from,
    )
}

#[test]
fn every_bad_input_gets_a_clean_refusal() {
    let g = converted("tiny-medgemma-mm", "f32");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bad-inputs");
    let status = Command::new(python())
        .arg(root().join("scripts/make_bad_inputs.py"))
        .arg(&g.model)
        .arg(g.mmproj.as_ref().unwrap())
        .arg(&dir)
        .output()
        .expect("cannot run scripts/make_bad_inputs.py");
    assert!(
        status.status.success(),
        "make_bad_inputs.py failed:\n{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let manifest: Manifest =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    assert!(manifest.cases.len() >= 150, "only {} cases", manifest.cases.len());
    let dir_text = dir.display().to_string();
    let expand = |s: &str| {
        let mut s = s.to_string();
        for (from, to) in &manifest.placeholders {
            s = s.replace(from, to);
        }
        s.replace("{dir}", &dir_text)
    };
    let only = std::env::var("BAD_INPUTS_ONLY").ok();
    let started = Instant::now();
    let mut failures = Vec::new();
    let mut times = Vec::new();
    let mut kinds = BTreeMap::<&str, (usize, usize)>::new();
    for case in &manifest.cases {
        if only.as_deref().is_some_and(|o| !case.name.contains(o)) {
            continue;
        }
        let case_started = Instant::now();
        let wrong = check(case, &dir, &manifest.placeholders, &expand);
        times.push((case_started.elapsed(), case.name.as_str()));
        let k = kinds.entry(case.kind.as_str()).or_default();
        k.0 += 1;
        if !wrong.is_empty() {
            k.1 += 1;
            failures.push((case.name.clone(), wrong));
        }
    }
    eprintln!(
        "bad inputs: {} cases in {:.1} s; by kind (cases, failing): {kinds:?}",
        kinds.values().map(|k| k.0).sum::<usize>(),
        started.elapsed().as_secs_f64()
    );
    times.sort();
    let slowest: Vec<String> = times
        .iter()
        .rev()
        .take(8)
        .map(|(t, n)| format!("{n} {:.1} s", t.as_secs_f64()))
        .collect();
    eprintln!("slowest: {}", slowest.join(", "));
    if !failures.is_empty() {
        let mut table = format!("{} of the bad-input cases failed:\n", failures.len());
        for (name, wrong) in &failures {
            table.push_str(&format!("{name:<45} {}\n", wrong.join("; ")));
        }
        panic!("{table}");
    }
}
