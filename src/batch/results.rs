//! The results file of a batch: one JSON record per job, appended and flushed as each job finishes.
//!
//! Owns: resuming (reading which ids are done, and cutting off a last line that a killed process left half
//! written), `--overwrite`, and appending records whole. A record is written with one `write` on a file opened
//! for appending, so a crash leaves at most one incomplete last line, which the next run removes. The file is
//! locked (an advisory lock, released when the process ends, even when killed) while a batch writes it.
//!
//! Must not: decide whether an existing file may be taken as results at all: the sidecar (`sidecar.rs`) does.

use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
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
#[derive(Debug, Clone, Default, Serialize)]
pub struct JobResult {
    pub id: String,
    pub text: String,
    /// `stop`, `length` or `error`.
    pub finish_reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The job's "label", copied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// With an answer format: whether the answer passed its check after generation (an answer cut short by
    /// `max_tokens` is `incomplete` and not valid), the parsed JSON, or why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incomplete: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub json: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invalid_reason: Option<String>,
    pub usage: Usage,
    pub timings: Timings,
}

/// What can go wrong with the results file (`--output`); each names the file and, where there is one, the fix.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    /// `action` is what failed: open, lock, empty, read, repair, write to.
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
    #[error(
        "--output {} is being written by another medgemma batch (it holds the file's lock); wait for that batch to \
         finish, or give --output another file",
        path.display()
    )]
    Busy { path: PathBuf },
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
    /// Opens `path` for a batch and locks it for this process (a second batch on the same file is refused at once):
    /// with `overwrite`, starts it empty; otherwise keeps its complete records (and drops an incomplete last line).
    /// Whether the file may be written at all (it is ours, or new, or empty) is decided before, by the sidecar.
    pub fn open(path: &Path, overwrite: bool) -> Result<ResultsFile, ResultsError> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io_error("open", path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(ResultsError::Busy {
                    path: path.to_path_buf(),
                })
            }
            Err(TryLockError::Error(e)) => return Err(io_error("lock", path)(e)),
        }
        let mut done = HashMap::new();
        if overwrite {
            file.set_len(0).map_err(io_error("empty", path))?;
        } else {
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes).map_err(io_error("read", path))?;
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
                file.set_len(complete as u64).map_err(io_error("repair", path))?;
                eprintln!(
                    "medgemma: removed an incomplete last record from {} (a previous run was stopped mid-write)",
                    path.display()
                );
            }
        }
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
        self.append_record(&result.id, result.finish_reason == "error", result)
    }

    /// Appends any record with an `id` (e.g. `medgemma eval`'s predictions), whole, as [`Self::append`] does.
    pub fn append_record<T: Serialize>(&mut self, id: &str, failed: bool, record: &T) -> Result<(), ResultsError> {
        let mut line = serde_json::to_vec(record).map_err(|source| ResultsError::Encode {
            id: id.to_string(),
            source,
        })?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .and_then(|()| self.file.flush())
            .map_err(io_error("write to", &self.path))?;
        self.done.insert(id.to_string(), failed);
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
            ..JobResult::default()
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
        drop(f);
        let f = ResultsFile::open(&p, true).unwrap();
        assert!(!f.is_done("a"));
        assert_eq!(std::fs::read(&p).unwrap().len(), 0);
    }

    #[test]
    fn a_second_open_of_a_locked_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.jsonl");
        let mut first = ResultsFile::open(&p, false).unwrap();
        first.append(&result("a", false)).unwrap();
        let err = ResultsFile::open(&p, true).unwrap_err();
        assert!(matches!(err, ResultsError::Busy { .. }), "{err}");
        assert!(err.to_string().contains("another medgemma batch"), "{err}");
        assert_eq!(std::fs::read_to_string(&p).unwrap().lines().count(), 1);
        drop(first);
        assert!(ResultsFile::open(&p, false).unwrap().is_done("a"));
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
