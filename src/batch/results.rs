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

/// What can go wrong with the results file (`--output`); each names the file and, where there is one, the fix.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    /// `action` is what failed: create, read, open, repair, write to.
    #[error("cannot {action} --output {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--output {} line {line}: not a result record ({reason}); use another file or --overwrite", path.display())]
    NotResults { path: PathBuf, line: usize, reason: String },
    #[error("--output {} line {line}: a record without an id; use another file or --overwrite", path.display())]
    NoId { path: PathBuf, line: usize },
    #[error("cannot encode the record of job {id:?} as JSON")]
    Encode {
        id: String,
        #[source]
        source: serde_json::Error,
    },
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ResultsError {
    let path = path.to_path_buf();
    move |source| ResultsError::Io { action, path, source }
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
    pub fn open(path: &Path, overwrite: bool) -> Result<ResultsFile, ResultsError> {
        let mut done = HashMap::new();
        if overwrite || !path.exists() {
            File::create(path).map_err(io_error("create", path))?;
        } else {
            let bytes = std::fs::read(path).map_err(io_error("read", path))?;
            let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            for (n, line) in bytes[..complete].split(|&b| b == b'\n').enumerate() {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let value: serde_json::Value = serde_json::from_slice(line).map_err(|e| ResultsError::NotResults {
                    path: path.to_path_buf(),
                    line: n + 1,
                    reason: e.to_string(),
                })?;
                let id = value
                    .get("id")
                    .and_then(|v| v.as_str())
                    .ok_or_else(|| ResultsError::NoId {
                        path: path.to_path_buf(),
                        line: n + 1,
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
                    .map_err(io_error("open", path))?;
                f.set_len(complete as u64).map_err(io_error("repair", path))?;
                eprintln!(
                    "medgemma: removed an incomplete last record from {} (a previous run was stopped mid-write)",
                    path.display()
                );
            }
        }
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(io_error("open", path))?;
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
    pub fn append(&mut self, result: &JobResult) -> Result<(), ResultsError> {
        let mut line = serde_json::to_vec(result).map_err(|source| ResultsError::Encode {
            id: result.id.clone(),
            source,
        })?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .and_then(|()| self.file.flush())
            .map_err(io_error("write to", &self.path))?;
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
        let err = ResultsFile::open(&p, false).unwrap_err();
        assert!(matches!(err, ResultsError::NotResults { line: 1, .. }), "{err}");
        assert!(err.to_string().contains("--overwrite"), "{err}");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "my precious notes\n");
    }
}
