//! Test harness: the real `medgemma` binary, tiny real checkpoints converted by our own converter, and the
//! reference outputs recorded from Hugging Face transformers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};

use serde_json::Value;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixtures() -> PathBuf {
    root().join("tests/fixtures")
}

/// The Python interpreter that has scripts/requirements.txt installed (scripts/test sets MEDGEMMA_PYTHON).
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("MEDGEMMA_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = root().join(".venv/bin/python");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

/// A converted fixture: the model GGUF and, for the multimodal checkpoint, its mmproj.
#[derive(Debug, Clone)]
pub struct Gguf {
    pub model: PathBuf,
    pub mmproj: Option<PathBuf>,
}

/// Converts `tests/fixtures/hf/<checkpoint>` to `outtype` with scripts/convert_hf_to_gguf.py (once per test
/// process) and returns the files.
pub fn converted(checkpoint: &str, outtype: &str) -> Gguf {
    static CACHE: OnceLock<Mutex<HashMap<(String, String), Gguf>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    let key = (checkpoint.to_string(), outtype.to_string());
    if let Some(g) = cache.get(&key) {
        return g.clone();
    }
    let src = fixtures().join("hf").join(checkpoint);
    assert!(
        src.join("config.json").exists(),
        "missing fixture {}: run scripts/make_fixtures.py",
        src.display()
    );
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("gguf")
        .join(checkpoint)
        .join(outtype);
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let status = Command::new(python())
        .arg(root().join("scripts/convert_hf_to_gguf.py"))
        .arg(&src)
        .args(["--outtype", outtype, "--outdir"])
        .arg(&out)
        .stdout(Stdio::null())
        .output()
        .expect("cannot run the converter: is Python set up (scripts/setup-python)?");
    assert!(
        status.status.success(),
        "converting {checkpoint} to {outtype} failed:\n{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let model = out.join(format!("{checkpoint}-{outtype}.gguf"));
    assert!(model.exists(), "converter did not write {}", model.display());
    let mmproj = std::fs::read_dir(&out)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("mmproj-"));
    let g = Gguf { model, mmproj };
    cache.insert(key, g.clone());
    g
}

/// The recorded reference outputs of a checkpoint.
pub fn reference(checkpoint: &str) -> Value {
    let path = fixtures().join("reference").join(format!("{checkpoint}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// The binary under test: this build's, or the one MEDGEMMA_TEST_BIN names (a GPU build made elsewhere, tested on
/// a machine with a GPU and no Rust toolchain: scripts/cuda-check-prebuilt).
pub fn binary() -> PathBuf {
    std::env::var_os("MEDGEMMA_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_medgemma")))
}

/// The binary under test, with a clean environment: no model from the environment, and no way to reach the real
/// Hugging Face hub (downloads off, an empty HF_HOME and medgemma folder of its own); tests/hub.rs points it at a
/// local hub.
pub fn medgemma() -> Command {
    let mut cmd = Command::new(binary());
    let nowhere = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("no-hub");
    cmd.env_remove("MEDGEMMA_MODEL")
        .env_remove("MEDGEMMA_MMPROJ")
        .env_remove("MEDGEMMA_REGISTRY")
        .env_remove("HF_TOKEN")
        .env_remove("HF_TOKEN_PATH")
        .env_remove("HF_HUB_CACHE")
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .env("HF_HOME", nowhere.join("hf"))
        .env("MEDGEMMA_HOME", nowhere.join("medgemma"))
        .stdin(Stdio::null());
    cmd
}

/// Runs the command and returns its output, with stdout/stderr as text.
pub fn output(cmd: &mut Command) -> (Output, String, String) {
    let out = cmd.output().expect("cannot run medgemma");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

/// Runs the command, asserts success, returns stdout.
pub fn ok(cmd: &mut Command) -> String {
    let (out, stdout, stderr) = output(cmd);
    assert!(
        out.status.success(),
        "medgemma failed ({:?}):\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    stdout
}

/// Runs the command, asserts a clean failure (exit code 1, an `error:` line, no panic), returns stderr.
pub fn fails(cmd: &mut Command) -> String {
    let (out, stdout, stderr) = output(cmd);
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected exit 1:\nstdout: {stdout}\nstderr: {stderr}"
    );
    assert!(stderr.contains("error:"), "no error line:\n{stderr}");
    assert!(!stderr.contains("panicked"), "panic:\n{stderr}");
    assert!(stdout.is_empty(), "stdout should be empty on error: {stdout}");
    stderr
}

/// Writes a case's messages to a JSON file with absolute image paths, for `run --messages`.
pub fn messages_file(dir: &Path, case: &Value) -> PathBuf {
    let mut messages = case["messages"].clone();
    for m in messages.as_array_mut().unwrap() {
        if let Some(images) = m.get_mut("images").and_then(Value::as_array_mut) {
            for img in images {
                *img = Value::String(fixtures().join(img.as_str().unwrap()).display().to_string());
            }
        }
    }
    let path = dir.join(format!("{}.json", case["name"].as_str().unwrap()));
    std::fs::write(&path, serde_json::to_vec_pretty(&messages).unwrap()).unwrap();
    path
}

/// The id of a special token, read from the checkpoint's own tokenizer_config.json.
pub fn special_token_id(checkpoint: &str, text: &str) -> i64 {
    let path = fixtures().join("hf").join(checkpoint).join("tokenizer_config.json");
    let config: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let decoder = config["added_tokens_decoder"].as_object().unwrap();
    decoder
        .iter()
        .find(|(_, v)| v["content"] == text)
        .map(|(k, _)| k.parse().unwrap())
        .unwrap_or_else(|| panic!("{text} not in {checkpoint}'s added_tokens_decoder"))
}

/// A copy of `gguf`'s mmproj whose projection width (clip.vision.projection_dim) is patched to differ from the
/// model's hidden size (by +32), written to `dir/mmproj-other.gguf`.
pub fn mismatched_mmproj(gguf: &Gguf, dir: &Path) -> PathBuf {
    let mut bytes = std::fs::read(gguf.mmproj.as_ref().expect("a multimodal fixture")).unwrap();
    let key = b"clip.vision.projection_dim";
    let at = bytes
        .windows(key.len())
        .position(|w| w == key)
        .expect("projection_dim key")
        + key.len();
    let ty = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    assert_eq!(ty, 4, "projection_dim is a u32");
    let old = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap());
    bytes[at + 4..at + 8].copy_from_slice(&(old + 32).to_le_bytes());
    let p = dir.join("mmproj-other.gguf");
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Runs the command with `stdin` and a deadline: a command still running after `secs` seconds is killed and the
/// test fails (for inputs that could block, such as a FIFO). Asserts it exited by itself with no panic or signal;
/// returns its exit code, stdout and stderr.
pub fn within(cmd: &mut Command, stdin: &str, secs: u64) -> (i32, String, String) {
    let out = run_with_deadline(cmd, stdin.as_bytes().to_vec(), std::time::Duration::from_secs(secs));
    assert!(!out.stderr.contains("panicked"), "panic:\n{}", out.stderr);
    let code = out
        .exit
        .unwrap_or_else(|why| panic!("medgemma {why}: {cmd:?}\n{}", out.stderr));
    (code, out.stdout, out.stderr)
}

/// How one run ended.
pub struct Outcome {
    /// The exit code, or why there is none.
    pub exit: Result<i32, String>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` with `stdin`, killing it after `limit` (a hang is an outcome, not a test failure).
pub fn run_with_deadline(cmd: &mut Command, stdin: Vec<u8>, limit: std::time::Duration) -> Outcome {
    use std::io::{Read, Write};
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run medgemma");
    let mut input = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let reader = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = r.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = reader(Box::new(child.stdout.take().unwrap()));
    let stderr = reader(Box::new(child.stderr.take().unwrap()));
    let deadline = std::time::Instant::now() + limit;
    let exit = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code().ok_or_else(|| format!("killed by a signal ({status:?})"));
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break Err(format!("still running after {} s: a hang", limit.as_secs()));
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    let _ = writer.join();
    Outcome {
        exit,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// A PNG file from its chunks (kind, data), with valid lengths and CRCs: for images whose header says what the test
/// needs (a size of 0x0, a size far larger than the data) without the encoder refusing to write them.
pub fn png(chunks: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in chunks {
        out.extend((data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        let mut crc = !0u32;
        for &b in &body {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        out.extend(&body);
        out.extend((!crc).to_be_bytes());
    }
    out
}

/// The 13 bytes of a PNG IHDR chunk for an 8-bit RGB image of `width` x `height`.
pub fn png_header(width: u32, height: u32) -> Vec<u8> {
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    ihdr
}

// Byte edits of a converted GGUF fixture (names and values keep their lengths, so every offset holds).

/// Where the key or tensor-table entry `name` ends in `bytes`: just after its length-prefixed name.
pub fn entry(bytes: &[u8], name: &str) -> usize {
    let mut pat = (name.len() as u64).to_le_bytes().to_vec();
    pat.extend_from_slice(name.as_bytes());
    let at = bytes
        .windows(pat.len())
        .position(|w| w == pat)
        .unwrap_or_else(|| panic!("{name} not in the GGUF"));
    assert!(
        bytes[at + 1..].windows(pat.len()).all(|w| w != pat),
        "{name} appears twice"
    );
    at + pat.len()
}

/// A copy of `src` in `dir`, named `name`, with `edit` applied to its bytes.
pub fn edited(src: &Path, dir: &Path, name: &str, edit: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let mut bytes = std::fs::read(src).unwrap();
    edit(&mut bytes);
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Renames the key, tensor or string value `old` to `new` (same length, so every offset holds).
pub fn rename(bytes: &mut [u8], old: &str, new: &str) {
    assert_eq!(old.len(), new.len());
    let end = entry(bytes, old);
    bytes[end - old.len()..end].copy_from_slice(new.as_bytes());
}

/// Reshapes the 2-D tensor `name` from [a, b] to [2a, b/2]: the same size, so the file stays valid GGUF.
pub fn reshape(bytes: &mut [u8], name: &str) {
    let at = entry(bytes, name);
    assert_eq!(
        u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()),
        2,
        "{name} is 2-D"
    );
    let dim = |b: &[u8], i: usize| u64::from_le_bytes(b[at + 4 + 8 * i..at + 12 + 8 * i].try_into().unwrap());
    let (a, b) = (dim(bytes, 0), dim(bytes, 1));
    bytes[at + 4..at + 12].copy_from_slice(&(a * 2).to_le_bytes());
    bytes[at + 12..at + 20].copy_from_slice(&(b / 2).to_le_bytes());
}

/// The first candidate interpreter that can import pydicom and numpy (the DICOM fixture scripts need them):
/// MEDGEMMA_DICOM_PYTHON, MEDGEMMA_PYTHON, then .venv-fixtures or .venv in the repository.
pub fn pydicom_python() -> PathBuf {
    let candidates: Vec<PathBuf> = ["MEDGEMMA_DICOM_PYTHON", "MEDGEMMA_PYTHON"]
        .iter()
        .filter_map(std::env::var_os)
        .map(PathBuf::from)
        .chain([
            root().join(".venv-fixtures/bin/python"),
            root().join(".venv/bin/python"),
        ])
        .collect();
    candidates
        .iter()
        .find(|p| {
            Command::new(p)
                .args(["-c", "import pydicom, numpy"])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "no Python with pydicom and numpy among {candidates:?}: `scripts/setup-python`, or set \
                 MEDGEMMA_DICOM_PYTHON"
            )
        })
}

/// Runs `scripts/<script> DIR` (a DICOM fixture writer) into a fresh folder; returns it with its manifest.json.
pub fn dicom_fixtures(script: &str) -> (tempfile::TempDir, Value) {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new(pydicom_python())
        .arg(root().join("scripts").join(script))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success(), "{script} failed");
    let manifest = std::fs::read_to_string(dir.path().join("manifest.json")).unwrap();
    (dir, serde_json::from_str(&manifest).unwrap())
}
