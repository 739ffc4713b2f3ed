//! Talking to the Hugging Face hub (or a mirror at HF_ENDPOINT): asking what a file is (commit, ETag, size),
//! downloading it resumably into the shared cache, and listing a repository's files.
//!
//! hf-hub 0.4's sync API covers the cache layout but not what a multi-GB medical model needs (checked in its
//! source): it reads neither HF_TOKEN nor HF_HUB_CACHE nor HF_HUB_OFFLINE, never checks the SHA-256, moves a
//! `.part` file into the blob path without checking that a resumed response really is a 206 for the right
//! offset, turns 401/403/404 into a bare "request error", and checks no disk space. So this module does the HTTP
//! itself over ureq (the client hf-hub uses) while keeping hf-hub's and huggingface_hub's layout ([`HubCache`]).
//!
//! Owns: the HTTP requests and the download protocol: a `HEAD` on `/{repo}/resolve/main/{file}` (X-Repo-Commit,
//! X-Linked-Etag or ETag, X-Linked-Size or Content-Length), then a `GET` with `Range: bytes=N-` into
//! `blobs/<etag>.incomplete`, a SHA-256 check against the ETag of LFS files, and only then the move into
//! `blobs/<etag>` and the snapshot link. A file that fails the check is deleted, never linked. Progress goes to
//! stderr only.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::cache::HubCache;
use super::error::HubError;
use super::progress::DownloadProgress;
use super::settings::{HubSettings, TokenSource};
use crate::files::sha256_of_file;
use crate::model_info::human_bytes;

/// What the hub says about a file before it is downloaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    pub commit: String,
    /// The blob name: the SHA-256 of LFS files, a git hash for small ones.
    pub etag: String,
    pub size: Option<u64>,
}

/// How many times a download that breaks off resumes on its own before giving up.
const RESUME_ATTEMPTS: u32 = 3;

/// A connection to the hub with its cache.
pub struct Hub {
    settings: HubSettings,
    cache: HubCache,
    /// Follows no redirects: the hub's answer to a HEAD carries the metadata, the CDN's does not.
    head_agent: ureq::Agent,
    /// Follows redirects (to the CDN), keeping the token only on the same host.
    get_agent: ureq::Agent,
}

impl Hub {
    pub fn new(settings: HubSettings) -> Hub {
        let builder = || {
            ureq::AgentBuilder::new()
                .try_proxy_from_env(true)
                .timeout_connect(Duration::from_secs(20))
                .timeout_read(Duration::from_secs(60))
                .user_agent(concat!("medgemma/", env!("CARGO_PKG_VERSION")))
        };
        Hub {
            cache: HubCache::new(settings.cache_dir.clone()),
            head_agent: builder().redirects(0).build(),
            get_agent: builder()
                .redirects(8)
                .redirect_auth_headers(ureq::RedirectAuthHeaders::SameHost)
                .build(),
            settings,
        }
    }

    pub fn cache(&self) -> &HubCache {
        &self.cache
    }

    pub fn is_offline(&self) -> bool {
        self.settings.offline.is_some()
    }

    fn url(&self, repo: &str, file: &str) -> String {
        format!("{}/{repo}/resolve/main/{file}", self.settings.endpoint)
    }

    fn authorise(&self, request: ureq::Request) -> ureq::Request {
        match &self.settings.token {
            Some((token, _)) => request.set("Authorization", &format!("Bearer {token}")),
            None => request,
        }
    }

    /// The error when `repo`/`file` is needed, not cached, and downloads are off.
    pub fn not_cached(&self, repo: &str, file: &str, command: &str) -> HubError {
        HubError::NotCached {
            repo: repo.to_string(),
            file: file.to_string(),
            cache: self.cache.root().to_path_buf(),
            why: self.settings.offline.clone().unwrap_or_default(),
            command: command.to_string(),
        }
    }

    /// The local path of `repo`/`file`: up to date with the hub when online (a HEAD request; the file is
    /// downloaded only when the cache does not hold this version), from the cache alone when offline.
    /// `command` is what the user should run to fetch it, for the offline error.
    pub fn file(&self, repo: &str, file: &str, command: &str) -> Result<PathBuf, HubError> {
        if self.is_offline() {
            return self
                .cache
                .cached(repo, "main", file)
                .ok_or_else(|| self.not_cached(repo, file, command));
        }
        let remote = self.metadata(repo, file)?;
        let entry = self.cache.snapshot(repo, &remote.commit, file);
        if !entry.is_file() {
            if !self.cache.blob(repo, &remote.etag).is_file() {
                self.download(repo, file, &remote)?;
            }
            self.cache
                .link(repo, &remote.commit, file, &remote.etag)
                .map_err(HubError::io(&entry))?;
        }
        self.cache
            .write_ref(repo, "main", &remote.commit)
            .map_err(HubError::io(self.cache.repo_dir(repo)))?;
        Ok(entry)
    }

    /// Asks the hub about a file without downloading it.
    pub fn metadata(&self, repo: &str, file: &str) -> Result<RemoteFile, HubError> {
        let mut url = self.url(repo, file);
        let mut response = None;
        for _ in 0..5 {
            let request = self
                .authorise(self.head_agent.head(&url))
                .set("Accept-Encoding", "identity");
            let r = request.call().map_err(|e| self.request_error(repo, file, &url, e))?;
            let relative = r
                .header("Location")
                .filter(|l| l.starts_with('/') && (300..400).contains(&r.status()))
                .map(str::to_string);
            match relative {
                // A renamed repository: the hub redirects within itself; follow it.
                Some(location) => url = format!("{}{location}", self.settings.endpoint),
                None => {
                    response = Some(r);
                    break;
                }
            }
        }
        let r = response.ok_or_else(|| HubError::Http {
            url: url.clone(),
            status: 310,
            detail: ": too many redirects".into(),
        })?;
        let missing = |header| HubError::MissingHeader {
            url: url.clone(),
            header,
            endpoint: self.settings.endpoint.clone(),
        };
        let commit = r
            .header("X-Repo-Commit")
            .ok_or_else(|| missing("X-Repo-Commit"))?
            .to_string();
        let etag = r
            .header("X-Linked-Etag")
            .or_else(|| r.header("ETag"))
            .map(|e| e.trim_start_matches("W/").trim_matches('"').to_string())
            .filter(|e| !e.is_empty() && !e.contains(['/', '\\', '.']))
            .ok_or_else(|| missing("ETag"))?;
        let size = r
            .header("X-Linked-Size")
            .or_else(|| r.header("Content-Length"))
            .and_then(|s| s.trim().parse().ok());
        Ok(RemoteFile { commit, etag, size })
    }

    /// The files of a repository (the hub's `/api/models/{repo}/revision/main` route).
    pub fn repo_files(&self, repo: &str) -> Result<Vec<String>, HubError> {
        let url = format!("{}/api/models/{repo}/revision/main", self.settings.endpoint);
        let response = self
            .authorise(self.get_agent.get(&url))
            .call()
            .map_err(|e| self.request_error(repo, "", &url, e))?;
        let body: serde_json::Value = response.into_json().map_err(|e| HubError::Http {
            url: url.clone(),
            status: 200,
            detail: format!(" that is not JSON: {e}"),
        })?;
        let files = body["siblings"]
            .as_array()
            .map(|s| {
                s.iter()
                    .filter_map(|f| f["rfilename"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        Ok(files)
    }

    /// Downloads `remote` into `blobs/<etag>` (through `<etag>.incomplete`), resuming a partial file, checking
    /// the size and the SHA-256.
    fn download(&self, repo: &str, file: &str, remote: &RemoteFile) -> Result<(), HubError> {
        let blob = self.cache.blob(repo, &remote.etag);
        let part = self.cache.incomplete(repo, &remote.etag);
        let blobs = blob.parent().expect("blobs folder").to_path_buf();
        std::fs::create_dir_all(&blobs).map_err(HubError::io(&blobs))?;
        let _lock = self.lock(repo, file, &remote.etag)?;
        if blob.is_file() {
            return Ok(()); // another process finished it while we waited
        }
        let mut have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
        if remote.size.is_some_and(|size| have > size) {
            std::fs::remove_file(&part).map_err(HubError::io(&part))?;
            have = 0;
        }
        if let Some(size) = remote.size {
            check_disk_space(repo, file, &blobs, size - have)?;
        }

        let url = self.url(repo, file);
        let mut progress = DownloadProgress::start(repo, file, &self.settings.endpoint, remote.size, have);
        let mut attempt = 0;
        loop {
            let before = have;
            match self.fetch(repo, file, &url, &part, &mut have, remote.size, &mut progress) {
                Ok(()) => break,
                Err(e @ HubError::Interrupted { .. }) if attempt < RESUME_ATTEMPTS && have > before => {
                    attempt += 1;
                    progress.note(&format!(
                        "{e}; resuming at {} (try {attempt} of {RESUME_ATTEMPTS})",
                        human_bytes(have)
                    ));
                    std::thread::sleep(Duration::from_millis(500 * u64::from(attempt)));
                }
                Err(e) => {
                    progress.abandon();
                    return Err(e);
                }
            }
        }
        progress.finish();

        if is_sha256(&remote.etag) {
            let actual = sha256_of_file(&part).map_err(HubError::io(&part))?;
            if actual != remote.etag.to_ascii_lowercase() {
                std::fs::remove_file(&part).map_err(HubError::io(&part))?;
                return Err(HubError::HashMismatch {
                    repo: repo.to_string(),
                    file: file.to_string(),
                    expected: remote.etag.clone(),
                    actual,
                });
            }
        }
        std::fs::rename(&part, &blob).map_err(HubError::io(&blob))?;
        Ok(())
    }

    /// One GET from byte `have` on, appended to `part`. A 200 answer to a ranged request starts the file again.
    #[allow(clippy::too_many_arguments)]
    fn fetch(
        &self,
        repo: &str,
        file: &str,
        url: &str,
        part: &Path,
        have: &mut u64,
        size: Option<u64>,
        progress: &mut DownloadProgress,
    ) -> Result<(), HubError> {
        let interrupted = |got: u64, reason: String| HubError::Interrupted {
            repo: repo.to_string(),
            file: file.to_string(),
            got,
            expected: size.unwrap_or(0),
            reason,
        };
        let mut request = self
            .authorise(self.get_agent.get(url))
            .set("Accept-Encoding", "identity");
        if *have > 0 {
            request = request.set("Range", &format!("bytes={have}-"));
        }
        let response = match request.call() {
            Ok(r) => r,
            // The range is the whole file: the part is complete but was never verified.
            Err(ureq::Error::Status(416, _)) if size == Some(*have) => return Ok(()),
            Err(ureq::Error::Transport(t)) if *have > 0 => return Err(interrupted(*have, t.to_string())),
            Err(e) => return Err(self.request_error(repo, file, url, e)),
        };
        let mut out = match response.status() {
            206 => {
                let start = response
                    .header("Content-Range")
                    .and_then(|r| r.strip_prefix("bytes "))
                    .and_then(|r| r.split('-').next())
                    .and_then(|s| s.trim().parse::<u64>().ok());
                if start != Some(*have) {
                    return Err(HubError::Http {
                        url: url.to_string(),
                        status: 206,
                        detail: format!(
                            " with Content-Range {:?} for a request from byte {have}",
                            response.header("Content-Range")
                        ),
                    });
                }
                OpenOptions::new().append(true).open(part).map_err(HubError::io(part))?
            }
            _ => {
                *have = 0;
                progress.restart();
                File::create(part).map_err(HubError::io(part))?
            }
        };
        let mut reader = response.into_reader();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    out.flush().map_err(HubError::io(part))?;
                    return Err(interrupted(*have, e.to_string()));
                }
            };
            out.write_all(&buf[..n]).map_err(HubError::io(part))?;
            *have += n as u64;
            progress.set(*have);
        }
        out.sync_all().map_err(HubError::io(part))?;
        match size {
            Some(size) if *have < size => Err(interrupted(*have, "the connection closed early".into())),
            Some(size) if *have > size => {
                drop(out);
                std::fs::remove_file(part).map_err(HubError::io(part))?;
                Err(HubError::Http {
                    url: url.to_string(),
                    status: 200,
                    detail: format!(" with {have} bytes where the hub announced {size}; the download was deleted"),
                })
            }
            _ => Ok(()),
        }
    }

    /// Holds the cache's lock for one blob (shared with other medgemma processes).
    fn lock(&self, repo: &str, file: &str, etag: &str) -> Result<File, HubError> {
        let path = self.cache.lock_file(repo, etag);
        std::fs::create_dir_all(path.parent().expect("locks folder")).map_err(HubError::io(&path))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(HubError::io(&path))?;
        if lock.try_lock().is_err() {
            eprintln!("medgemma: another process is downloading {repo}/{file}; waiting for it");
            lock.lock().map_err(HubError::io(&path))?;
        }
        Ok(lock)
    }

    /// Maps a failed request to an error that says what to do.
    fn request_error(&self, repo: &str, file: &str, url: &str, e: ureq::Error) -> HubError {
        match e {
            ureq::Error::Status(status @ (401 | 403), _) => HubError::Gated {
                repo: repo.to_string(),
                status,
                licence_page: self.settings.repo_page(repo),
                token_file: self.settings.token_file.clone(),
                token_note: match &self.settings.token {
                    Some((_, TokenSource::EnvVar)) => ". A token from HF_TOKEN was sent: its account has no access to \
                         this repository yet"
                        .into(),
                    Some((_, TokenSource::File)) => format!(
                        ". A token from {} was sent: its account has no access to this repository yet",
                        self.settings.token_file.display()
                    ),
                    None => ". No token was sent".into(),
                },
            },
            ureq::Error::Status(404, _) => HubError::NotFound {
                repo: repo.to_string(),
                file: if file.is_empty() {
                    "the repository".into()
                } else {
                    file.to_string()
                },
                url: url.to_string(),
            },
            ureq::Error::Status(status, r) => HubError::Http {
                url: url.to_string(),
                status,
                detail: r
                    .header("X-Error-Message")
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default(),
            },
            ureq::Error::Transport(t) => HubError::Network {
                url: url.to_string(),
                // ureq's text starts with the URL, which the message already names.
                reason: t.to_string().trim_start_matches(&format!("{url}: ")).to_string(),
                next:
                    "Check the connection (and HF_ENDPOINT, proxies), or work offline with HF_HUB_OFFLINE=1 and files \
                       already in the cache"
                        .into(),
            },
        }
    }
}

/// True for a 64-digit hex ETag: the SHA-256 of an LFS file.
pub fn is_sha256(etag: &str) -> bool {
    etag.len() == 64 && etag.chars().all(|c| c.is_ascii_hexdigit())
}

/// Refuses a download that cannot fit (with 64 MiB to spare) where the cache lives.
fn check_disk_space(repo: &str, file: &str, dir: &Path, needed: u64) -> Result<(), HubError> {
    const SPARE: u64 = 64 << 20;
    match available_bytes(dir) {
        Some(available) if available < needed.saturating_add(SPARE) => Err(HubError::DiskFull {
            repo: repo.to_string(),
            file: file.to_string(),
            needed: human_bytes(needed),
            available: human_bytes(available),
            dir: dir.to_path_buf(),
        }),
        _ => Ok(()),
    }
}

/// Free bytes for this user on the file system holding `dir` (`None` where it cannot be asked).
pub fn available_bytes(dir: &Path) -> Option<u64> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
        let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `c` is a valid NUL-terminated path and `stat` a writable statvfs.
        if unsafe { libc::statvfs(c.as_ptr(), &mut stat) } != 0 {
            return None;
        }
        #[allow(clippy::unnecessary_cast)]
        Some(stat.f_bavail as u64 * stat.f_frsize as u64)
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_etags() {
        assert!(is_sha256(&"a".repeat(64)));
        assert!(!is_sha256(&"a".repeat(40)), "a git hash (small, non-LFS file)");
        assert!(!is_sha256(&"g".repeat(64)));
    }

    #[test]
    fn disk_space_is_known_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let free = available_bytes(dir.path());
        #[cfg(unix)]
        assert!(free.is_some_and(|f| f > 0));
        if let Some(free) = free {
            let err = check_disk_space("a/b", "f.gguf", dir.path(), free + (1 << 30)).unwrap_err();
            assert!(err.to_string().contains("not enough disk space") && err.to_string().contains("HF_HUB_CACHE"));
            check_disk_space("a/b", "f.gguf", dir.path(), 1).unwrap();
        }
    }
}
