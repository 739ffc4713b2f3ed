//! The sidecar `RESULTS.jsonl.meta.json` beside a batch's results: what produced them (medgemma version, model
//! and mmproj with their SHA-256, sampling, context, shard), so that they can be reproduced, and so that a rerun
//! with another model is refused instead of mixing two models' answers in one file.
//!
//! The sidecar is also what makes a results file ours: an existing `--output` without our sidecar is never
//! appended to nor overwritten (it may be someone's JSONL whose objects happen to have an `id`).
//!
//! Owns: describing a run, the refusals, and writing the sidecar atomically. Must not: read or write the results
//! themselves (`results.rs`) or load a model; the SHA-256 comes from [`Sha256Cache`], which hashes a file once.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::job::Shard;
use super::sha256_cache::{Sha256Cache, Sha256Error};
use crate::files::write_atomically;
use crate::gguf::{GgufError, GgufHeader};
use crate::settings::{ContextSettings, SamplingSettings};

/// The sidecar's contents (its field names are the file format: keep them).
#[derive(Debug, Serialize, Deserialize)]
pub struct Sidecar {
    pub medgemma_version: String,
    pub model: FileMeta,
    pub mmproj: Option<FileMeta>,
    pub sampling: serde_json::Value,
    pub context: serde_json::Value,
    pub shard: Option<String>,
}

/// One input file of the run.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct FileMeta {
    pub path: PathBuf,
    pub sha256: String,
    pub file_type: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SidecarError {
    #[error(transparent)]
    Header(#[from] GgufError),
    #[error(transparent)]
    Sha256(#[from] Sha256Error),
    #[error("cannot describe the run's settings as JSON")]
    Encode(#[source] serde_json::Error),
    #[error(
        "{} holds results of another model ({}); use another --output, or --overwrite to start again",
        output.display(),
        model.display()
    )]
    OtherModel { output: PathBuf, model: PathBuf },
    #[error(
        "{}",
        if *overwrite {
            format!(
                "--overwrite: --output {} is not a results file of medgemma (there is no sidecar {} of ours beside \
                 it) and it is not empty; --overwrite only starts again medgemma's own results or an empty file: give \
                 --output a new file name",
                output.display(),
                meta.display()
            )
        } else {
            format!(
                "--output {} already holds data that medgemma did not write (there is no sidecar {} of ours beside \
                 it); it is left as it is: give --output a new file name",
                output.display(),
                meta.display()
            )
        }
    )]
    NotOurs {
        output: PathBuf,
        meta: PathBuf,
        overwrite: bool,
    },
    #[error(
        "--output {}: its sidecar {} is a file that medgemma did not write; it is left as it is: give --output a new \
         file name",
        output.display(),
        meta.display()
    )]
    ForeignSidecar { output: PathBuf, meta: PathBuf },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl FileMeta {
    fn describe(path: &Path, hashes: &Sha256Cache) -> Result<FileMeta, SidecarError> {
        let header = GgufHeader::read(path)?;
        let (sha256, _) = hashes.sha256(path)?;
        Ok(FileMeta {
            path: std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
            sha256,
            file_type: header
                .get_u64("general.file_type")
                .map(crate::model_info::file_type_name),
            name: header.get_str("general.name").map(str::to_string),
        })
    }
}

impl Sidecar {
    /// The sidecar of the results file `output`: `output` with `.meta.json` added.
    pub fn path_for(output: &Path) -> PathBuf {
        let mut name = output.file_name().unwrap_or_default().to_os_string();
        name.push(".meta.json");
        output.with_file_name(name)
    }

    /// Describes a run (reads both files' headers; their SHA-256 from `hashes`).
    pub fn describe(
        model: &Path,
        mmproj: Option<&Path>,
        sampling: &SamplingSettings,
        context: &ContextSettings,
        shard: Option<Shard>,
        hashes: &Sha256Cache,
    ) -> Result<Sidecar, SidecarError> {
        Ok(Sidecar {
            medgemma_version: env!("CARGO_PKG_VERSION").into(),
            model: FileMeta::describe(model, hashes)?,
            mmproj: mmproj.map(|p| FileMeta::describe(p, hashes)).transpose()?,
            sampling: serde_json::to_value(sampling).map_err(SidecarError::Encode)?,
            context: serde_json::to_value(context).map_err(SidecarError::Encode)?,
            shard: shard.map(|s| format!("{}/{}", s.index, s.count)),
        })
    }

    /// The sidecar beside `output`, when there is one of ours (a file that parses as a sidecar).
    fn read(output: &Path) -> Option<Sidecar> {
        let text = std::fs::read_to_string(Self::path_for(output)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Decides whether this run may write `output` and its sidecar, before anything is written. A results file is
    /// ours when our sidecar is beside it: only then is it resumed (`overwrite`: started again). A new or empty
    /// file may be used; any other existing file is refused (whatever its lines look like), and so is a sidecar
    /// path that holds a file we did not write. Without `overwrite`, results of another model (another SHA-256)
    /// are refused too, instead of being mixed.
    pub fn check_output(&self, output: &Path, overwrite: bool) -> Result<(), SidecarError> {
        let meta = Self::path_for(output);
        let old = Self::read(output);
        let holds_data = std::fs::metadata(output).is_ok_and(|m| !m.is_file() || m.len() > 0);
        match old {
            None if holds_data => Err(SidecarError::NotOurs {
                output: output.to_path_buf(),
                meta,
                overwrite,
            }),
            None if meta.symlink_metadata().is_ok() => Err(SidecarError::ForeignSidecar {
                output: output.to_path_buf(),
                meta,
            }),
            Some(old) if !overwrite && output.exists() && old.model.sha256 != self.model.sha256 => {
                Err(SidecarError::OtherModel {
                    output: output.to_path_buf(),
                    model: old.model.path,
                })
            }
            _ => Ok(()),
        }
    }

    /// Writes the sidecar of `output` atomically.
    pub fn write(&self, output: &Path) -> Result<(), SidecarError> {
        let path = Self::path_for(output);
        let bytes = serde_json::to_vec_pretty(self).map_err(SidecarError::Encode)?;
        write_atomically(&path, &bytes).map_err(|source| SidecarError::Write { path, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sidecar(sha256: &str, model: &str) -> Sidecar {
        Sidecar {
            medgemma_version: "0".into(),
            model: FileMeta {
                path: model.into(),
                sha256: sha256.into(),
                file_type: None,
                name: None,
            },
            mmproj: None,
            sampling: serde_json::Value::Null,
            context: serde_json::Value::Null,
            shard: None,
        }
    }

    #[test]
    fn refuses_results_of_another_model() {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("results.jsonl");
        assert_eq!(Sidecar::path_for(&output), dir.path().join("results.jsonl.meta.json"));
        let first = sidecar("aa", "/m/first.gguf");
        first.check_output(&output, false).unwrap();
        std::fs::write(&output, "").unwrap();
        first.check_output(&output, false).unwrap();
        first.write(&output).unwrap();
        std::fs::write(&output, "{\"id\": \"a\"}\n").unwrap();
        first.check_output(&output, false).unwrap();
        sidecar("aa", "/elsewhere/same.gguf")
            .check_output(&output, false)
            .unwrap();
        let second = sidecar("bb", "/m/second.gguf");
        let err = second.check_output(&output, false).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{} holds results of another model (/m/first.gguf); use another --output, or --overwrite to start \
                 again",
                output.display()
            )
        );
        second.check_output(&output, true).unwrap();
    }

    /// Issue 14: a JSONL file of someone else's whose objects have an `id` is not taken for results.
    #[test]
    fn a_file_without_our_sidecar_is_never_ours() {
        let dir = tempfile::tempdir().unwrap();
        let output = dir.path().join("theirs.jsonl");
        std::fs::write(&output, "{\"id\": \"patient-1\", \"note\": \"precious\"}\n").unwrap();
        let run = sidecar("aa", "/m/model.gguf");
        let err = run.check_output(&output, false).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("theirs.jsonl.meta.json") && text.contains("new file name"),
            "{text}"
        );
        assert!(!text.contains("--overwrite"), "must not suggest destroying it: {text}");
        let err = run.check_output(&output, true).unwrap_err().to_string();
        assert!(
            err.starts_with("--overwrite:") && err.contains("an empty file"),
            "{err}"
        );
        // A sidecar that is not ours is not one either.
        std::fs::write(Sidecar::path_for(&output), "{\"mine\": true}").unwrap();
        assert!(matches!(
            run.check_output(&output, true),
            Err(SidecarError::NotOurs { .. })
        ));
        // An empty output may be used, but not over a sidecar path holding someone's file.
        std::fs::write(&output, "").unwrap();
        let err = run.check_output(&output, false).unwrap_err();
        assert!(matches!(err, SidecarError::ForeignSidecar { .. }), "{err}");
        std::fs::remove_file(Sidecar::path_for(&output)).unwrap();
        run.check_output(&output, false).unwrap();
        run.check_output(&output, true).unwrap();
    }
}
