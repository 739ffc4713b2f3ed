//! The SHA-256 of a model file without reading all of it on every `batch` start (minutes for a 27B model).
//!
//! Owns: knowing a file's SHA-256 in the cheapest honest way: a blob of the Hugging Face cache
//! (`.../models--owner--name/blobs/<sha256>`, or a snapshot link to one) is named by it; any other file is hashed
//! once and remembered in `sha256.json` (see [`cache_file_from_vars`]) by canonical path, size and modification
//! time, so a changed file is hashed again. Must not: fail a run because the memory cannot be read or written
//! (a damaged one is ignored, a failed write only noted on stderr).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use crate::files::{sha256_of_file, write_atomically};
use crate::hub::download::is_sha256;

/// How the SHA-256 of a file became known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sha256Source {
    /// The file is a blob of the Hugging Face cache, named by its SHA-256.
    BlobName,
    /// Remembered from an earlier run, for a file of the same size and modification time.
    Remembered,
    /// Read and hashed now.
    Computed,
}

/// Why the SHA-256 of a file could not be known.
#[derive(Debug, thiserror::Error)]
pub enum Sha256Error {
    #[error("cannot read {} to compute its SHA-256", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One remembered file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    size: u64,
    modified_secs: u64,
    modified_nanos: u32,
    sha256: String,
}

/// The file `sha256.json` holds.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Remembered {
    files: BTreeMap<PathBuf, Entry>,
}

/// The SHA-256 of files, remembered in one JSON file (or nowhere, when no folder for it is known).
#[derive(Debug, Clone)]
pub struct Sha256Cache {
    file: Option<PathBuf>,
}

/// Where the memory lives: `$MEDGEMMA_HOME/cache/sha256.json` when MEDGEMMA_HOME is set (everything medgemma
/// writes then stays in that folder), else `$XDG_CACHE_HOME/medgemma/sha256.json`, else
/// `~/.cache/medgemma/sha256.json`.
pub fn cache_file_from_vars(var: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    cache_root_from_vars(var).map(|dir| dir.join("sha256.json"))
}

/// The folder for what medgemma can rebuild (this memory, the image cache): `$MEDGEMMA_HOME/cache`, else
/// `$XDG_CACHE_HOME/medgemma`, else `~/.cache/medgemma`.
pub fn cache_root_from_vars(var: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let get = |k: &str| var(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    get("MEDGEMMA_HOME")
        .map(|h| h.join("cache"))
        .or_else(|| get("XDG_CACHE_HOME").map(|c| c.join("medgemma")))
        .or_else(|| get("HOME").map(|h| h.join(".cache/medgemma")))
}

/// The SHA-256 a path names when it is (or links to) a blob of the Hugging Face cache layout.
pub fn blob_sha256(path: &Path) -> Option<String> {
    let real = std::fs::canonicalize(path).ok()?;
    let name = real.file_name()?.to_str()?;
    let blobs = real.parent()?;
    let repo = blobs.parent()?.file_name()?.to_str()?;
    (blobs.file_name()? == "blobs" && repo.starts_with("models--") && is_sha256(name))
        .then(|| name.to_ascii_lowercase())
}

impl Sha256Cache {
    /// The memory named by the process environment.
    pub fn from_env() -> Sha256Cache {
        Sha256Cache {
            file: cache_file_from_vars(|k| std::env::var_os(k)),
        }
    }

    /// The memory in `file`.
    #[cfg(test)]
    pub fn at(file: PathBuf) -> Sha256Cache {
        Sha256Cache { file: Some(file) }
    }

    /// The SHA-256 of `path` as lower-case hex, and how it became known.
    pub fn sha256(&self, path: &Path) -> Result<(String, Sha256Source), Sha256Error> {
        if let Some(sha) = blob_sha256(path) {
            return Ok((sha, Sha256Source::BlobName));
        }
        let read_error = |source| Sha256Error::Read {
            path: path.to_path_buf(),
            source,
        };
        let real = std::fs::canonicalize(path).map_err(read_error)?;
        let meta = std::fs::metadata(&real).map_err(read_error)?;
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .unwrap_or_default();
        let mut remembered = self.read();
        let stamp = |sha256: String| Entry {
            size: meta.len(),
            modified_secs: modified.as_secs(),
            modified_nanos: modified.subsec_nanos(),
            sha256,
        };
        if let Some(entry) = remembered.files.get(&real) {
            if *entry == stamp(entry.sha256.clone()) {
                return Ok((entry.sha256.clone(), Sha256Source::Remembered));
            }
        }
        if let Some(file) = &self.file {
            eprintln!(
                "medgemma: computing the SHA-256 of {} (once: it is remembered in {})",
                path.display(),
                file.display()
            );
        }
        let sha = sha256_of_file(&real).map_err(read_error)?;
        remembered.files.retain(|p, _| p.exists());
        remembered.files.insert(real, stamp(sha.clone()));
        self.write(&remembered);
        Ok((sha, Sha256Source::Computed))
    }

    fn read(&self) -> Remembered {
        self.file
            .as_deref()
            .and_then(|f| std::fs::read(f).ok())
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    fn write(&self, remembered: &Remembered) {
        let Some(file) = &self.file else { return };
        let bytes = serde_json::to_vec_pretty(remembered).expect("plain data serialises");
        let written = match file.parent() {
            Some(dir) => std::fs::create_dir_all(dir),
            None => Ok(()),
        }
        .and_then(|()| write_atomically(file, &bytes));
        if let Err(e) = written {
            eprintln!(
                "medgemma: cannot remember the SHA-256 in {} ({e}); the next run computes it again",
                file.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    const XYZ: &str = "3608bca1e44ea6c4d268eb6db02260269892c0b42b86bbf1e77a6fa16c3c9282";

    #[test]
    fn remembers_until_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Sha256Cache::at(dir.path().join("cache/sha256.json"));
        let model = dir.path().join("model.gguf");
        std::fs::write(&model, b"abc").unwrap();
        assert_eq!(cache.sha256(&model).unwrap(), (ABC.into(), Sha256Source::Computed));
        assert_eq!(cache.sha256(&model).unwrap(), (ABC.into(), Sha256Source::Remembered));

        // Same size, new content and modification time: hashed again.
        std::fs::write(&model, b"xyz").unwrap();
        let file = std::fs::File::options().write(true).open(&model).unwrap();
        file.set_modified(SystemTime::now() + Duration::from_secs(5)).unwrap();
        assert_eq!(cache.sha256(&model).unwrap(), (XYZ.into(), Sha256Source::Computed));

        // Another size: hashed again too.
        std::fs::write(&model, b"abcd").unwrap();
        let (sha, how) = cache.sha256(&model).unwrap();
        assert_eq!((sha.len(), how), (64, Sha256Source::Computed));
        assert_eq!(cache.sha256(&model).unwrap().1, Sha256Source::Remembered);
    }

    #[test]
    fn a_damaged_or_missing_memory_only_costs_a_hash() {
        let dir = tempfile::tempdir().unwrap();
        let memory = dir.path().join("sha256.json");
        std::fs::write(&memory, "{not json").unwrap();
        let model = dir.path().join("m.gguf");
        std::fs::write(&model, b"abc").unwrap();
        let cache = Sha256Cache::at(memory.clone());
        assert_eq!(cache.sha256(&model).unwrap(), (ABC.into(), Sha256Source::Computed));
        assert_eq!(cache.sha256(&model).unwrap().1, Sha256Source::Remembered);
        let nowhere = Sha256Cache { file: None };
        assert_eq!(nowhere.sha256(&model).unwrap(), (ABC.into(), Sha256Source::Computed));
        let err = cache.sha256(&dir.path().join("gone.gguf")).unwrap_err().to_string();
        assert!(err.contains("gone.gguf"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn hugging_face_blobs_are_named_by_their_sha256() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("models--google--medgemma-4b-it");
        let name = "a".repeat(64);
        std::fs::create_dir_all(repo.join("blobs")).unwrap();
        std::fs::create_dir_all(repo.join("snapshots/c1")).unwrap();
        // Content that does not match the name: proof that nothing was read.
        std::fs::write(repo.join("blobs").join(&name), b"abc").unwrap();
        let link = repo.join("snapshots/c1/model.gguf");
        std::os::unix::fs::symlink(format!("../../blobs/{name}"), &link).unwrap();
        let cache = Sha256Cache::at(dir.path().join("sha256.json"));
        assert_eq!(cache.sha256(&link).unwrap(), (name.clone(), Sha256Source::BlobName));
        assert_eq!(
            cache.sha256(&repo.join("blobs").join(&name)).unwrap().1,
            Sha256Source::BlobName
        );
        assert!(!dir.path().join("sha256.json").exists());

        // A 40-digit blob (a git hash of a small file) or a blob outside a models-- folder is hashed.
        let small = repo.join("blobs").join("b".repeat(40));
        std::fs::write(&small, b"abc").unwrap();
        assert_eq!(cache.sha256(&small).unwrap(), (ABC.into(), Sha256Source::Computed));
        let loose = dir.path().join("blobs");
        std::fs::create_dir_all(&loose).unwrap();
        std::fs::write(loose.join(&name), b"abc").unwrap();
        assert_eq!(cache.sha256(&loose.join(&name)).unwrap().0, ABC);
    }

    #[test]
    fn memory_location_follows_the_environment() {
        let at = |vars: &[(&str, &str)]| {
            cache_file_from_vars(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| OsString::from(v)))
        };
        assert_eq!(
            at(&[("HOME", "/h")]),
            Some(PathBuf::from("/h/.cache/medgemma/sha256.json"))
        );
        assert_eq!(
            at(&[("HOME", "/h"), ("XDG_CACHE_HOME", "/x")]),
            Some(PathBuf::from("/x/medgemma/sha256.json"))
        );
        assert_eq!(
            at(&[("HOME", "/h"), ("XDG_CACHE_HOME", "/x"), ("MEDGEMMA_HOME", "/m")]),
            Some(PathBuf::from("/m/cache/sha256.json"))
        );
        assert_eq!(at(&[("HOME", "")]), None);
    }
}
