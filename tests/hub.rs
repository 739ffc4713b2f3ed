//! Models by name against a local hub (tests/hub_server.rs) on 127.0.0.1, never the real one: pull by name and by
//! repo/file, a second pull downloads nothing, offline runs from the cache, resumed downloads, corrupted files
//! rejected, gated (401/403) and missing (404) files explained, `list` and `rm`, and `pull --convert`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::hub_server::{commit_of, sha256_hex, Fault, HubServer};
use crate::util::*;

const REPO: &str = "test/tiny-mm-GGUF";
const MODEL_F16: &str = "tiny-mm-F16.gguf";
const MODEL_Q8: &str = "tiny-mm-Q8_0.gguf";
const MMPROJ: &str = "mmproj-F16.gguf";

/// A fresh hub serving the tiny multimodal fixture (f16 and q8_0, one mmproj), a fresh HF_HOME and medgemma
/// folder, and a registry naming the fixture `tiny-mm`.
struct Setup {
    server: HubServer,
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let server = HubServer::start();
        let f16 = converted("tiny-medgemma-mm", "f16");
        server.add_path(REPO, MODEL_F16, &f16.model);
        server.add_path(REPO, MMPROJ, f16.mmproj.as_ref().unwrap());
        server.add_path(REPO, MODEL_Q8, &converted("tiny-medgemma-mm", "q8_0").model);
        let dir = tempfile::tempdir().unwrap();
        let registry = serde_json::json!({
            "default": "tiny-mm:q8_0",
            "default_quant": "q8_0",
            "models": [{
                "name": "tiny-mm",
                "licence": "test licence note",
                "repo": REPO,
                "quants": {
                    "f16": { "file": MODEL_F16, "approx_bytes": 1000 },
                    "q8_0": { "file": MODEL_Q8, "approx_bytes": 1000 }
                },
                "mmproj": { "file": MMPROJ, "approx_bytes": 1000 }
            }]
        });
        std::fs::write(dir.path().join("registry.json"), registry.to_string()).unwrap();
        Setup { server, dir }
    }

    fn hf_home(&self) -> PathBuf {
        self.dir.path().join("hf")
    }

    fn cache(&self) -> PathBuf {
        self.hf_home().join("hub")
    }

    fn repo_dir(&self, repo: &str) -> PathBuf {
        self.cache().join(format!("models--{}", repo.replace('/', "--")))
    }

    /// The binary, online, pointed at this hub.
    fn cmd(&self) -> Command {
        let mut cmd = medgemma();
        cmd.env("HF_HOME", self.hf_home())
            .env("HF_ENDPOINT", &self.server.endpoint)
            .env("MEDGEMMA_HOME", self.dir.path().join("medgemma"))
            .env("MEDGEMMA_REGISTRY", self.dir.path().join("registry.json"))
            .env_remove("HF_HUB_OFFLINE");
        cmd
    }

    /// The binary with downloads off, pointed at a port where nothing listens.
    fn offline_cmd(&self) -> Command {
        let mut cmd = self.cmd();
        cmd.env("HF_HUB_OFFLINE", "1").env("HF_ENDPOINT", "http://127.0.0.1:9");
        cmd
    }
}

#[test]
fn pull_by_name_then_a_second_pull_downloads_nothing_and_runs_offline() {
    let s = Setup::new();
    let (out, stdout, stderr) = output(s.cmd().args(["pull", "tiny-mm:f16"]));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.is_empty(), "pull prints nothing on stdout: {stdout}");
    assert!(
        stderr.contains(&format!("downloading {REPO}/{MODEL_F16}"))
            && stderr.contains(&format!("downloading {REPO}/{MMPROJ}")),
        "the download is shown: {stderr}"
    );
    assert!(stderr.contains("test licence note"), "{stderr}");

    // The standard layout: a blob named by its SHA-256, a relative link in the snapshot, refs/main.
    let bytes = std::fs::read(converted("tiny-medgemma-mm", "f16").model).unwrap();
    let repo_dir = s.repo_dir(REPO);
    let commit = commit_of(REPO);
    assert_eq!(std::fs::read_to_string(repo_dir.join("refs/main")).unwrap(), commit);
    let blob = repo_dir.join("blobs").join(sha256_hex(&bytes));
    assert_eq!(std::fs::read(&blob).unwrap(), bytes);
    let entry = repo_dir.join("snapshots").join(&commit).join(MODEL_F16);
    assert_eq!(
        std::fs::read_link(&entry).unwrap(),
        Path::new("../../blobs").join(sha256_hex(&bytes))
    );
    assert_eq!(s.server.file_gets().len(), 2, "model and mmproj");

    let (out, _, stderr) = output(s.cmd().args(["pull", "tiny-mm:f16"]));
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        s.server.file_gets().len(),
        2,
        "a second pull downloads nothing: {stderr}"
    );
    assert!(!stderr.contains("downloading"), "{stderr}");

    // Offline, by name, with the mmproj found on its own: the same answer as with the paths.
    let image = fixtures().join("images/chest.png");
    let image = image.to_str().unwrap();
    let by_path = ok(medgemma()
        .args(["run", "-n", "6", "--image", image, "-m"])
        .arg(&entry)
        .arg("--mmproj")
        .arg(repo_dir.join("snapshots").join(&commit).join(MMPROJ))
        .arg("Describe this."));
    assert!(!by_path.trim().is_empty());
    let offline_env = ok(s.offline_cmd().args([
        "run",
        "-n",
        "6",
        "-m",
        "tiny-mm:f16",
        "--image",
        image,
        "Describe this.",
    ]));
    assert_eq!(offline_env, by_path);
    let mut flag = s.cmd();
    flag.env("HF_ENDPOINT", "http://127.0.0.1:9");
    let offline_flag = ok(flag.args([
        "run",
        "--offline",
        "-n",
        "6",
        "-m",
        "tiny-mm:f16",
        "--image",
        image,
        "Describe this.",
    ]));
    assert_eq!(offline_flag, by_path);
    assert_eq!(s.server.file_gets().len(), 2);
}

#[test]
fn a_name_not_yet_local_is_pulled_on_first_use_and_the_default_model_needs_no_m() {
    let s = Setup::new();
    let (out, stdout, stderr) = output(s.cmd().args(["run", "-n", "4", "hi"]));
    assert!(out.status.success(), "{stderr}");
    assert!(!stdout.trim().is_empty());
    assert!(
        stderr.contains("tiny-mm:q8_0 is not downloaded yet")
            && stderr.contains(&format!("downloading {REPO}/{MODEL_Q8}")),
        "{stderr}"
    );
    let expected = ok(medgemma()
        .args(["run", "-n", "4", "-m"])
        .arg(converted("tiny-medgemma-mm", "q8_0").model)
        .arg("hi"));
    assert_eq!(stdout, expected);
    // From now on: no network at all.
    assert_eq!(ok(s.offline_cmd().args(["run", "-n", "4", "hi"])), expected);
    assert_eq!(
        ok(s.offline_cmd().args(["run", "-n", "4", "-m", "tiny-mm", "hi"])),
        expected
    );
}

#[test]
fn offline_and_not_cached_names_the_pull_command() {
    let s = Setup::new();
    let err = fails(s.offline_cmd().args(["run", "-m", "tiny-mm:f16", "hi"]));
    assert!(
        err.contains("`medgemma pull tiny-mm:f16`") && err.contains("HF_HUB_OFFLINE"),
        "{err}"
    );
    let err = fails(s.offline_cmd().args(["run", "hi"]));
    assert!(
        err.contains("no -m/--model given") && err.contains("`medgemma pull tiny-mm:q8_0`"),
        "{err}"
    );
    let err = fails(s.cmd().args(["run", "--offline", "-m", "tiny-mm", "hi"]));
    assert!(
        err.contains("--offline") && err.contains("medgemma pull tiny-mm:q8_0"),
        "{err}"
    );
    let err = fails(s.offline_cmd().args(["pull", "tiny-mm"]));
    assert!(err.contains("medgemma pull tiny-mm:q8_0"), "{err}");
    let err = fails(s.cmd().args(["run", "-m", "tiny-xl", "hi"]));
    assert!(
        err.contains("unknown model \"tiny-xl\"") && err.contains("tiny-mm"),
        "{err}"
    );
    assert!(s.server.seen().is_empty(), "nothing was asked of the hub");
}

#[test]
fn pull_by_repo_and_file() {
    let s = Setup::new();
    let text = converted("tiny-medgemma-text", "f16").model;
    s.server.add_path("someone/any-GGUF", "model-F16.gguf", &text);
    let f16 = converted("tiny-medgemma-mm", "f16");
    s.server
        .add_path("someone/any-GGUF", "proj.gguf", f16.mmproj.as_ref().unwrap());
    let (out, stdout, stderr) = output(s.cmd().args([
        "pull",
        "--repo",
        "someone/any-GGUF",
        "--file",
        "model-F16.gguf",
        "--mmproj-file",
        "proj.gguf",
    ]));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.is_empty());
    let path = s
        .repo_dir("someone/any-GGUF")
        .join("snapshots")
        .join(commit_of("someone/any-GGUF"))
        .join("model-F16.gguf");
    assert!(
        stderr.contains(&path.display().to_string()),
        "the path to use is named: {stderr}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), std::fs::read(&text).unwrap());
    assert!(!ok(medgemma().args(["run", "-n", "4", "-m"]).arg(&path).arg("hi"))
        .trim()
        .is_empty());

    // A model file given as the mmproj (or the other way round) is refused.
    let err = fails(
        s.cmd()
            .args(["pull", "--repo", "someone/any-GGUF", "--file", "proj.gguf"]),
    );
    assert!(err.contains("vision projector"), "{err}");

    let list: Value = serde_json::from_str(&ok(s.cmd().args(["list", "--json"]))).unwrap();
    let rows = list.as_array().unwrap();
    let quants: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap(),
                r["quant"].as_str().unwrap(),
                r["source"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        quants,
        [
            ("someone/any-GGUF", "f16", "hub"),
            ("someone/any-GGUF", "mmproj", "hub")
        ]
    );
    ok(s.cmd().args(["rm", "someone/any-GGUF"]));
    assert!(!s.repo_dir("someone/any-GGUF").exists());
}

#[test]
fn an_interrupted_download_resumes_with_a_range_request() {
    let s = Setup::new();
    let bytes = std::fs::read(converted("tiny-medgemma-mm", "q8_0").model).unwrap();
    let half = bytes.len() / 2;

    // The connection drops mid-file: the same pull resumes from where it stopped.
    s.server.fault(REPO, MODEL_Q8, vec![Fault::DropAfter(half)]);
    let (out, _, stderr) = output(s.cmd().args(["pull", "tiny-mm"]));
    assert!(out.status.success(), "{stderr}");
    let gets: Vec<_> = s
        .server
        .file_gets()
        .into_iter()
        .filter(|g| g.path.ends_with(MODEL_Q8))
        .collect();
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert_eq!(gets[0].range, None);
    assert_eq!(gets[1].range.as_deref(), Some(format!("bytes={half}-").as_str()));
    assert!(stderr.contains("resuming"), "{stderr}");
    let blob = s.repo_dir(REPO).join("blobs").join(sha256_hex(&bytes));
    assert_eq!(std::fs::read(&blob).unwrap(), bytes);

    // The process dies mid-file: the next pull resumes the .incomplete file.
    ok(s.cmd().args(["rm", "tiny-mm"]));
    s.server.fault(REPO, MODEL_Q8, vec![Fault::StallAfter(half)]);
    let mut child = s
        .cmd()
        .args(["pull", "tiny-mm"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let part = s
        .repo_dir(REPO)
        .join("blobs")
        .join(format!("{}.incomplete", sha256_hex(&bytes)));
    let start = Instant::now();
    while std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0) < half as u64 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the partial download never appeared"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!blob.exists(), "an unfinished download is never a blob");
    let before = s.server.file_gets().len();
    let (out, _, stderr) = output(s.cmd().args(["pull", "tiny-mm"]));
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("resuming at"), "{stderr}");
    let resumed: Vec<_> = s.server.file_gets()[before..]
        .iter()
        .filter(|g| g.path.ends_with(MODEL_Q8))
        .cloned()
        .collect();
    assert_eq!(resumed.len(), 1, "{resumed:?}");
    assert_eq!(resumed[0].range.as_deref(), Some(format!("bytes={half}-").as_str()));
    assert_eq!(std::fs::read(&blob).unwrap(), bytes);
    assert!(!part.exists());
}

#[test]
fn a_corrupted_download_is_rejected_and_not_used() {
    let s = Setup::new();
    s.server.fault(REPO, MODEL_Q8, vec![Fault::Corrupt]);
    let err = fails(s.cmd().args(["pull", "tiny-mm"]));
    assert!(
        err.contains("corrupt") && err.contains("SHA-256") && err.contains(MODEL_Q8) && err.contains("deleted"),
        "{err}"
    );
    let repo_dir = s.repo_dir(REPO);
    let snapshot = repo_dir.join("snapshots").join(commit_of(REPO));
    assert!(!snapshot.join(MODEL_Q8).exists(), "nothing corrupt in the snapshot");
    let blobs: Vec<String> = std::fs::read_dir(repo_dir.join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(blobs.is_empty(), "no blob, no .incomplete left: {blobs:?}");
    let err = fails(s.offline_cmd().args(["run", "-m", "tiny-mm", "hi"]));
    assert!(err.contains("medgemma pull tiny-mm:q8_0"), "{err}");
    // The next try gets the real file.
    ok(s.cmd().args(["pull", "tiny-mm"]));
    assert!(snapshot.join(MODEL_Q8).is_file());
}

#[test]
fn gated_repositories_explain_the_licence_and_the_token() {
    let s = Setup::new();
    for status in [401, 403] {
        s.server.set_status(REPO, status);
        let err = fails(s.cmd().args(["pull", "tiny-mm"]));
        assert!(
            err.contains(&format!("HTTP {status}"))
                && err.contains("gated")
                && err.contains(&format!("{}/{REPO}", s.server.endpoint))
                && err.contains("HF_TOKEN")
                && err.contains("huggingface-cli login")
                && err.contains("No token was sent"),
            "{err}"
        );
    }
    let err = fails(s.cmd().env("HF_TOKEN", "hf_from_env").args(["pull", "tiny-mm"]));
    assert!(err.contains("A token from HF_TOKEN was sent"), "{err}");
    assert_eq!(
        s.server.seen().last().unwrap().authorization.as_deref(),
        Some("Bearer hf_from_env")
    );
    std::fs::create_dir_all(s.hf_home()).unwrap();
    std::fs::write(s.hf_home().join("token"), "hf_from_file\n").unwrap();
    let err = fails(s.cmd().args(["pull", "tiny-mm"]));
    assert!(
        err.contains("token") && err.contains(&s.hf_home().join("token").display().to_string()),
        "{err}"
    );
    assert_eq!(
        s.server.seen().last().unwrap().authorization.as_deref(),
        Some("Bearer hf_from_file")
    );
    assert!(s.server.file_gets().is_empty(), "no GET after a refused HEAD");
}

#[test]
fn a_missing_file_names_the_repository_and_the_file() {
    let s = Setup::new();
    let err = fails(s.cmd().args(["pull", "--repo", REPO, "--file", "nope-Q4_K_M.gguf"]));
    assert!(
        err.contains("nope-Q4_K_M.gguf") && err.contains(REPO) && err.contains("404"),
        "{err}"
    );
    let err = fails(s.cmd().args(["pull", "--repo", "nobody/nothing", "--file", "x.gguf"]));
    assert!(err.contains("nobody/nothing") && err.contains("x.gguf"), "{err}");
}

#[test]
fn list_and_rm() {
    let s = Setup::new();
    let (out, stdout, stderr) = output(s.cmd().arg("list"));
    assert!(out.status.success() && stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("no models yet") && stderr.contains("medgemma pull tiny-mm:q8_0"),
        "{stderr}"
    );
    let available = ok(s.cmd().args(["list", "--available"]));
    assert!(
        available.contains("tiny-mm") && available.contains("q8_0") && available.contains(MODEL_F16),
        "{available}"
    );

    ok(s.cmd().args(["pull", "tiny-mm"]));
    ok(s.cmd().args(["pull", "tiny-mm:f16"]));
    let table = ok(s.cmd().arg("list"));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(
        lines[0].starts_with("NAME")
            && lines[0].contains("QUANT")
            && lines[0].contains("SIZE")
            && lines[0].contains("PATH")
    );
    assert!(
        lines[1].starts_with("tiny-mm ") && lines[1].contains("f16") && lines[1].contains(MODEL_F16),
        "{table}"
    );
    assert!(lines[2].contains("q8_0") && lines[2].contains("KB"), "{table}");
    let json: Value = serde_json::from_str(&ok(s.cmd().args(["list", "--json"]))).unwrap();
    let q8 = json.as_array().unwrap().iter().find(|r| r["quant"] == "q8_0").unwrap();
    assert_eq!(q8["source"], "registry");
    assert!(q8["mmproj"].as_str().unwrap().ends_with(MMPROJ));
    let model_size = std::fs::metadata(converted("tiny-medgemma-mm", "q8_0").model)
        .unwrap()
        .len();
    let mmproj_size = std::fs::metadata(converted("tiny-medgemma-mm", "f16").mmproj.unwrap())
        .unwrap()
        .len();
    assert_eq!(q8["size"], model_size + mmproj_size);

    // rm one quantisation: the shared mmproj stays for the other.
    let (out, stdout, stderr) = output(s.cmd().args(["rm", "tiny-mm:q8_0"]));
    assert!(out.status.success() && stdout.is_empty(), "{stderr}");
    assert!(stderr.contains("removed tiny-mm:q8_0"), "{stderr}");
    let json: Value = serde_json::from_str(&ok(s.cmd().args(["list", "--json"]))).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 1);
    assert_eq!(json[0]["quant"], "f16");
    assert!(Path::new(json[0]["mmproj"].as_str().unwrap()).is_file());
    ok(s.offline_cmd()
        .args(["run", "-n", "2", "-m", "tiny-mm:f16", "--image"])
        .arg(fixtures().join("images/chest.png"))
        .arg("hi"));

    let err = fails(s.cmd().args(["rm", "tiny-mm:q8_0"]));
    assert!(
        err.contains("tiny-mm:q8_0 is not on this machine") && err.contains("medgemma list"),
        "{err}"
    );
    ok(s.cmd().args(["rm", "tiny-mm"]));
    assert!(!s.repo_dir(REPO).exists(), "every blob is gone");
    assert!(ok(s.cmd().args(["list", "--json"])).trim() == "[]");
}

#[test]
fn pull_convert_builds_a_named_model_from_a_checkpoint() {
    let s = Setup::new();
    let checkpoint = fixtures().join("hf/tiny-medgemma-mm");
    for e in std::fs::read_dir(&checkpoint).unwrap() {
        let e = e.unwrap();
        s.server
            .add_path("google/tiny-medgemma-mm", &e.file_name().to_string_lossy(), &e.path());
    }
    s.server
        .add_file("google/tiny-medgemma-mm", "README.md", b"not needed".to_vec());
    let (out, stdout, stderr) = output(
        s.cmd()
            .env(
                "MEDGEMMA_PYTHON",
                std::env::var_os("MEDGEMMA_PYTHON").unwrap_or_else(|| root().join(".venv/bin/python").into()),
            )
            .args([
                "pull",
                "--convert",
                "google/tiny-medgemma-mm",
                "--quant",
                "q8_0",
                "--threads",
                "2",
            ]),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("built tiny-medgemma-mm:q8_0"), "{stderr}");
    assert!(
        !s.server.file_gets().iter().any(|g| g.path.ends_with("README.md")),
        "only the checkpoint's files are fetched"
    );
    let json: Value = serde_json::from_str(&ok(s.cmd().args(["list", "--json"]))).unwrap();
    let built = json
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["source"] == "converted")
        .unwrap();
    assert_eq!(
        (built["name"].as_str(), built["quant"].as_str()),
        (Some("tiny-medgemma-mm"), Some("q8_0"))
    );
    let info: Value = serde_json::from_str(&ok(medgemma()
        .args(["info", "--json"])
        .arg(built["model"].as_str().unwrap())))
    .unwrap();
    assert_eq!(info["file_type"], "Q8_0");
    // The mmproj is named and reported as the type the converter wrote (F32 by default), not F16.
    let mmproj = built["mmproj"].as_str().unwrap();
    assert!(mmproj.ends_with("/mmproj-F32.gguf"), "{mmproj}");
    let info: Value = serde_json::from_str(&ok(medgemma().args(["info", "--json"]).arg(mmproj))).unwrap();
    assert_eq!(info["file_type"], "F32");
    assert!(stderr.contains("vision projector F32 (mmproj-F32.gguf)"), "{stderr}");
    let answer = ok(s
        .offline_cmd()
        .args(["run", "-n", "4", "-m", "tiny-medgemma-mm:q8_0", "--image"])
        .arg(fixtures().join("images/chest.png"))
        .arg("hi"));
    assert!(!answer.trim().is_empty());
    ok(s.cmd().args(["rm", "tiny-medgemma-mm:q8_0"]));
    let json: Value = serde_json::from_str(&ok(s.cmd().args(["list", "--json"]))).unwrap();
    assert!(!json.as_array().unwrap().iter().any(|r| r["source"] == "converted"));
}
