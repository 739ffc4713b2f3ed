//! The standard Hugging Face cache layout, shared with Python's `huggingface_hub`:
//!
//! ```text
//! <cache>/models--owner--name/blobs/<etag>              file contents, named by the hub's ETag (SHA-256 for LFS)
//! <cache>/models--owner--name/blobs/<etag>.incomplete   a download in progress (resumed from its length)
//! <cache>/models--owner--name/snapshots/<commit>/<file> relative symlink to ../../blobs/<etag>
//! <cache>/models--owner--name/refs/main                 the commit `main` pointed at when last asked
//! <cache>/.locks/models--owner--name/<etag>.lock        held while one process downloads that blob
//! ```
//!
//! Owns: paths in that layout, finding cached files, linking a finished blob into a snapshot and removing files.
//! It never talks to the network and never writes a blob's contents (the downloader does).

use std::collections::BTreeSet;
use std::io;
use std::path::{Component, Path, PathBuf};

/// A file present in a snapshot of the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedFile {
    pub repo: String,
    pub commit: String,
    /// The file's path inside the repository.
    pub file: String,
    /// The snapshot entry (what tools open).
    pub path: PathBuf,
    pub size: u64,
}

#[derive(Debug, Clone)]
pub struct HubCache {
    root: PathBuf,
}

impl HubCache {
    pub fn new(root: PathBuf) -> HubCache {
        HubCache { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `models--owner--name`.
    pub fn folder_name(repo: &str) -> String {
        hf_hub::Repo::model(repo.to_string()).folder_name()
    }

    /// The repository id of a `models--owner--name` folder.
    pub fn repo_of_folder(folder: &str) -> Option<String> {
        folder.strip_prefix("models--").map(|r| r.replace("--", "/"))
    }

    pub fn repo_dir(&self, repo: &str) -> PathBuf {
        self.root.join(Self::folder_name(repo))
    }

    pub fn blob(&self, repo: &str, etag: &str) -> PathBuf {
        self.repo_dir(repo).join("blobs").join(etag)
    }

    /// Where a download of `etag` is written until it is complete and verified.
    pub fn incomplete(&self, repo: &str, etag: &str) -> PathBuf {
        self.repo_dir(repo).join("blobs").join(format!("{etag}.incomplete"))
    }

    pub fn lock_file(&self, repo: &str, etag: &str) -> PathBuf {
        self.root
            .join(".locks")
            .join(Self::folder_name(repo))
            .join(format!("{etag}.lock"))
    }

    pub fn snapshot(&self, repo: &str, commit: &str, file: &str) -> PathBuf {
        self.repo_dir(repo).join("snapshots").join(commit).join(file)
    }

    pub fn read_ref(&self, repo: &str, revision: &str) -> Option<String> {
        let text = std::fs::read_to_string(self.repo_dir(repo).join("refs").join(revision)).ok()?;
        let commit = text.trim();
        (!commit.is_empty()).then(|| commit.to_string())
    }

    pub fn write_ref(&self, repo: &str, revision: &str, commit: &str) -> io::Result<()> {
        let path = self.repo_dir(repo).join("refs").join(revision);
        std::fs::create_dir_all(path.parent().expect("refs folder"))?;
        crate::files::write_atomically(&path, commit.as_bytes())
    }

    /// The cached file: in the snapshot `revision` points at, else in any other snapshot (newest first), so a
    /// file stays usable offline after the repository moved on.
    pub fn cached(&self, repo: &str, revision: &str, file: &str) -> Option<PathBuf> {
        if let Some(commit) = self.read_ref(repo, revision) {
            let p = self.snapshot(repo, &commit, file);
            if p.is_file() {
                return Some(p);
            }
        }
        let p = self.snapshot(repo, revision, file);
        if p.is_file() {
            return Some(p);
        }
        let mut others: Vec<(std::time::SystemTime, PathBuf)> = self
            .snapshot_dirs(repo)
            .into_iter()
            .map(|d| d.join(file))
            .filter(|p| p.is_file())
            .map(|p| {
                (
                    std::fs::metadata(&p)
                        .and_then(|m| m.modified())
                        .unwrap_or(std::time::UNIX_EPOCH),
                    p,
                )
            })
            .collect();
        others.sort();
        others.pop().map(|(_, p)| p)
    }

    fn snapshot_dirs(&self, repo: &str) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(self.repo_dir(repo).join("snapshots")) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect()
    }

    /// Points `snapshots/<commit>/<file>` at the finished blob `etag` (a relative symlink, as huggingface_hub
    /// makes; a copy where links are not available) and returns the snapshot path.
    pub fn link(&self, repo: &str, commit: &str, file: &str, etag: &str) -> io::Result<PathBuf> {
        let entry = self.snapshot(repo, commit, file);
        std::fs::create_dir_all(entry.parent().expect("snapshot folder"))?;
        if entry.symlink_metadata().is_ok() {
            std::fs::remove_file(&entry)?;
        }
        let depth = Path::new(file).components().count() - 1;
        let mut target = PathBuf::from("../..");
        for _ in 0..depth {
            target.push("..");
        }
        target.push("blobs");
        target.push(etag);
        #[cfg(unix)]
        std::os::unix::fs::symlink(&target, &entry)?;
        #[cfg(not(unix))]
        std::fs::copy(self.blob(repo, etag), &entry).map(|_| ())?;
        Ok(entry)
    }

    /// Every file of every snapshot of every model repository, one entry per (repository, file): the one in the
    /// snapshot `main` points at when it has it.
    pub fn files(&self) -> Vec<CachedFile> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut repos: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| Self::repo_of_folder(&e.file_name().to_string_lossy()))
            .collect();
        repos.sort();
        let mut out = Vec::new();
        for repo in repos {
            let mut seen = BTreeSet::new();
            let main = self.read_ref(&repo, "main");
            let mut dirs = self.snapshot_dirs(&repo);
            dirs.sort_by_key(|d| {
                d.file_name()
                    .map(|n| n.to_string_lossy() != main.as_deref().unwrap_or(""))
            });
            for dir in dirs {
                let commit = dir.file_name().unwrap_or_default().to_string_lossy().into_owned();
                for path in walk_files(&dir) {
                    let Ok(rel) = path.strip_prefix(&dir) else { continue };
                    let file = rel
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy())
                        .collect::<Vec<_>>()
                        .join("/");
                    if !seen.insert(file.clone()) {
                        continue;
                    }
                    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                    out.push(CachedFile {
                        repo: repo.clone(),
                        commit: commit.clone(),
                        file,
                        path,
                        size,
                    });
                }
            }
        }
        out
    }

    /// Removes `file` from every snapshot of `repo`, then the blobs no snapshot uses any more, then the repository
    /// folder when nothing is left in it. Returns the bytes freed.
    pub fn remove(&self, repo: &str, file: &str) -> io::Result<u64> {
        let mut blobs = BTreeSet::new();
        for dir in self.snapshot_dirs(repo) {
            let entry = dir.join(file);
            let Ok(meta) = entry.symlink_metadata() else { continue };
            if meta.file_type().is_symlink() {
                if let Ok(target) = std::fs::read_link(&entry) {
                    blobs.insert(normalise(&entry.parent().expect("snapshot folder").join(target)));
                }
            }
            std::fs::remove_file(&entry)?;
        }
        let in_use: BTreeSet<PathBuf> = self.snapshot_dirs(repo).iter().flat_map(|d| walk_links(d)).collect();
        let mut freed = 0;
        for blob in blobs.difference(&in_use) {
            if let Ok(meta) = std::fs::metadata(blob) {
                std::fs::remove_file(blob)?;
                freed += meta.len();
            }
        }
        for dir in self.snapshot_dirs(repo) {
            remove_empty_dirs(&dir);
        }
        if self.snapshot_dirs(repo).is_empty() && self.repo_dir(repo).exists() {
            std::fs::remove_dir_all(self.repo_dir(repo))?;
            let _ = std::fs::remove_dir_all(self.root.join(".locks").join(Self::folder_name(repo)));
        }
        Ok(freed)
    }
}

/// Regular files (or links to them) below `dir`.
fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.filter_map(|e| e.ok()) {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else if p.is_file() {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// The blobs the links below `dir` point at.
fn walk_links(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.filter_map(|e| e.ok()) {
        let p = e.path();
        if let Ok(target) = std::fs::read_link(&p) {
            out.push(normalise(&dir.join(target)));
        } else if p.is_dir() {
            out.extend(walk_links(&p));
        }
    }
    out
}

/// Resolves `..` lexically (the blob may already be gone, so no canonicalize).
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

fn remove_empty_dirs(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    let mut empty = true;
    for e in entries.filter_map(|e| e.ok()) {
        let p = e.path();
        if !(p.is_dir() && !p.is_symlink() && remove_empty_dirs(&p)) {
            empty = false;
        }
    }
    empty && std::fs::remove_dir(dir).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(cache: &HubCache, repo: &str, etag: &str, bytes: &[u8]) {
        let p = cache.blob(repo, etag);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }

    #[test]
    fn paths_follow_the_standard_layout() {
        let c = HubCache::new(PathBuf::from("/c"));
        assert_eq!(
            HubCache::folder_name("unsloth/medgemma-4b-it-GGUF"),
            "models--unsloth--medgemma-4b-it-GGUF"
        );
        assert_eq!(HubCache::repo_of_folder("models--a--b").as_deref(), Some("a/b"));
        assert_eq!(HubCache::repo_of_folder("datasets--a--b"), None);
        assert_eq!(c.blob("a/b", "e1"), PathBuf::from("/c/models--a--b/blobs/e1"));
        assert_eq!(
            c.incomplete("a/b", "e1"),
            PathBuf::from("/c/models--a--b/blobs/e1.incomplete")
        );
        assert_eq!(
            c.snapshot("a/b", "c1", "x/f.gguf"),
            PathBuf::from("/c/models--a--b/snapshots/c1/x/f.gguf")
        );
        assert_eq!(
            c.lock_file("a/b", "e1"),
            PathBuf::from("/c/.locks/models--a--b/e1.lock")
        );
    }

    #[cfg(unix)]
    #[test]
    fn link_find_list_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let c = HubCache::new(dir.path().to_path_buf());
        assert_eq!(c.cached("a/b", "main", "m.gguf"), None);
        blob(&c, "a/b", "e1", b"model");
        blob(&c, "a/b", "e2", b"proj");
        let m = c.link("a/b", "c1", "m.gguf", "e1").unwrap();
        c.link("a/b", "c1", "sub/p.gguf", "e2").unwrap();
        c.write_ref("a/b", "main", "c1").unwrap();
        assert_eq!(std::fs::read_link(&m).unwrap(), PathBuf::from("../../blobs/e1"));
        assert_eq!(
            std::fs::read(c.cached("a/b", "main", "sub/p.gguf").unwrap()).unwrap(),
            b"proj"
        );
        assert_eq!(c.cached("a/b", "main", "m.gguf"), Some(m.clone()));
        assert_eq!(
            c.cached("a/b", "c1", "m.gguf"),
            Some(m.clone()),
            "a commit works as a revision"
        );

        // main moves on: the old file stays findable.
        c.write_ref("a/b", "main", "c2").unwrap();
        assert_eq!(c.cached("a/b", "main", "m.gguf"), Some(m.clone()));
        c.link("a/b", "c2", "m.gguf", "e1").unwrap();
        let files = c.files();
        let names: Vec<_> = files
            .iter()
            .map(|f| (f.repo.as_str(), f.commit.as_str(), f.file.as_str(), f.size))
            .collect();
        assert_eq!(names, [("a/b", "c2", "m.gguf", 5), ("a/b", "c1", "sub/p.gguf", 4)]);

        // The blob of m.gguf is used by two snapshots: removing the file removes both links and then the blob.
        assert_eq!(c.remove("a/b", "m.gguf").unwrap(), 5);
        assert!(!c.blob("a/b", "e1").exists() && c.blob("a/b", "e2").exists());
        assert_eq!(c.cached("a/b", "main", "m.gguf"), None);
        assert_eq!(c.remove("a/b", "sub/p.gguf").unwrap(), 4);
        assert!(!c.repo_dir("a/b").exists(), "an empty repository folder goes");
        assert!(c.files().is_empty());
    }
}
