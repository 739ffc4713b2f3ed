//! The results file of a batch: one JSON record per job, appended and flushed as each job finishes.
//!
//! Owns: resuming (reading which ids are done, and cutting off a last line that a killed process left half
//! written), `--overwrite`, and appending records whole. A record is written with one `write` on a file opened
//! for appending, so a crash leaves at most one incomplete last line, which the next run removes.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// Token counts of a job.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Usage {
    pub prompt_tokens: usize,
    /// Prompt positions taken from the KV cache (a prefix another job already evaluated) instead of evaluated.
    pub cached_tokens: usize,
    pub completion_tokens: usize,
}

/// Time spent on a job, in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    pub prompt_ms: f64,
    pub generation_ms: f64,
    pub total_ms: f64,
}

/// One output line.
#[derive(Debug, Clone, Serialize)]
pub struct JobResult {
    pub id: String,
    pub text: String,
    /// `stop`, `length` or `error`.
    pub finish_reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub usage: Usage,
    pub timings: Timings,
}

/// The results file, open for appending.
#[derive(Debug)]
pub struct ResultsFile {
    path: PathBuf,
    file: File,
    /// Ids already in the file, and whether their record is an error.
    done: HashMap<String, bool>,
}

impl ResultsFile {
    /// Opens `path` for a batch: with `overwrite`, starts it empty; otherwise keeps its complete records (and drops
    /// an incomplete last line).
    pub fn open(path: &Path, overwrite: bool) -> Result<ResultsFile, String> {
        let name = path.display();
        let mut done = HashMap::new();
        if overwrite || !path.exists() {
            File::create(path).map_err(|e| format!("cannot create --output {name}: {e}"))?;
        } else {
            let bytes = std::fs::read(path).map_err(|e| format!("cannot read --output {name}: {e}"))?;
            let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            for (n, line) in bytes[..complete].split(|&b| b == b'\n').enumerate() {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let value: serde_json::Value = serde_json::from_slice(line).map_err(|e| {
                    format!(
                        "--output {name} line {}: not a result record ({e}); use another file or --overwrite",
                        n + 1
                    )
                })?;
                let id = value.get("id").and_then(|v| v.as_str()).ok_or_else(|| {
                    format!(
                        "--output {name} line {}: a record without an id; use another file or --overwrite",
                        n + 1
                    )
                })?;
                done.insert(
                    id.to_string(),
                    value.get("finish_reason").and_then(|v| v.as_str()) == Some("error"),
                );
            }
            if complete < bytes.len() {
                let f = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(|e| format!("cannot open --output {name}: {e}"))?;
                f.set_len(complete as u64)
                    .map_err(|e| format!("cannot repair --output {name}: {e}"))?;
                eprintln!(
                    "medgemma: removed an incomplete last record from {name} (a previous run was stopped mid-write)"
                );
            }
        }
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| format!("cannot open --output {name}: {e}"))?;
        Ok(ResultsFile {
            path: path.to_path_buf(),
            file,
            done,
        })
    }

    /// Whether a record for `id` is already in the file.
    pub fn is_done(&self, id: &str) -> bool {
        self.done.contains_key(id)
    }

    /// Whether the record for `id` is an error (None when there is none).
    pub fn failed(&self, id: &str) -> Option<bool> {
        self.done.get(id).copied()
    }

    /// Appends one record as a whole line and flushes it to the operating system.
    pub fn append(&mut self, result: &JobResult) -> Result<(), String> {
        let mut line = serde_json::to_vec(result).map_err(|e| e.to_string())?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .and_then(|()| self.file.flush())
            .map_err(|e| format!("cannot write to --output {}: {e}", self.path.display()))?;
        self.done.insert(result.id.clone(), result.finish_reason == "error");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(id: &str, error: bool) -> JobResult {
        JobResult {
            id: id.into(),
            text: "t".into(),
            finish_reason: if error { "error" } else { "stop" },
            error: error.then(|| "bad".into()),
            usage: Usage::default(),
            timings: Timings::default(),
        }
    }

    #[test]
    fn resumes_and_repairs_a_cut_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.jsonl");
        let mut f = ResultsFile::open(&p, false).unwrap();
        f.append(&result("a", false)).unwrap();
        f.append(&result("b", true)).unwrap();
        drop(f);
        let mut bytes = std::fs::read(&p).unwrap();
        bytes.extend_from_slice(b"{\"id\": \"c\", \"te");
        std::fs::write(&p, &bytes).unwrap();
        let mut f = ResultsFile::open(&p, false).unwrap();
        assert!(f.is_done("a") && f.is_done("b") && !f.is_done("c"));
        assert_eq!(f.failed("b"), Some(true));
        f.append(&result("c", false)).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text.lines().count(), 3);
        assert!(text
            .lines()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()));
        let f = ResultsFile::open(&p, true).unwrap();
        assert!(!f.is_done("a"));
        assert_eq!(std::fs::read(&p).unwrap().len(), 0);
    }

    #[test]
    fn refuses_a_file_that_is_not_results() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("notes.jsonl");
        std::fs::write(&p, "my precious notes\n").unwrap();
        assert!(ResultsFile::open(&p, false).unwrap_err().contains("--overwrite"));
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "my precious notes\n");
    }
}
