//! The sidecar `RESULTS.jsonl.meta.json` beside a batch's results: what produced them (medgemma version, model
//! and mmproj with their SHA-256, sampling, context, shard), so that they can be reproduced, and so that a rerun
//! with another model is refused instead of mixing two models' answers in one file.
//!
//! Owns: describing a run, the refusal, and writing the sidecar atomically. Must not: read or write the results
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

    /// Refuses to add to `output` when its sidecar says another model (another SHA-256) made its results. A
    /// missing results file, or a missing or unreadable sidecar, is no reason to refuse.
    pub fn check_compatible(&self, output: &Path) -> Result<(), SidecarError> {
        if !output.exists() {
            return Ok(());
        }
        let old = std::fs::read_to_string(Self::path_for(output))
            .ok()
            .and_then(|text| serde_json::from_str::<Sidecar>(&text).ok());
        match old {
            Some(old) if old.model.sha256 != self.model.sha256 => Err(SidecarError::OtherModel {
                output: output.to_path_buf(),
                model: old.model.path,
            }),
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
        first.check_compatible(&output).unwrap();
        std::fs::write(&output, "").unwrap();
        first.check_compatible(&output).unwrap();
        first.write(&output).unwrap();
        first.check_compatible(&output).unwrap();
        sidecar("aa", "/elsewhere/same.gguf").check_compatible(&output).unwrap();
        let err = sidecar("bb", "/m/second.gguf").check_compatible(&output).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{} holds results of another model (/m/first.gguf); use another --output, or --overwrite to start \
                 again",
                output.display()
            )
        );
    }
}
