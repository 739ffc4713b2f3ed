//! Where the hub is and how to talk to it, resolved from the environment the way Python's `huggingface_hub`
//! does, so both share one cache and one login: HF_ENDPOINT, HF_HOME, HF_HUB_CACHE, HF_TOKEN, HF_TOKEN_PATH
//! (the token file, default `$HF_HOME/token`), HF_HUB_OFFLINE, plus our `--offline` flag.
//!
//! Owns: turning those variables into [`HubSettings`]. Pure: it reads variables through a function and the
//! token file only when asked.

use std::ffi::OsString;
use std::path::PathBuf;

/// The public hub.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Where a token came from (for error messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    EnvVar,
    File,
}

#[derive(Debug, Clone)]
pub struct HubSettings {
    /// `https://huggingface.co` or a mirror, without a trailing slash.
    pub endpoint: String,
    /// The cache root holding `models--owner--name` folders.
    pub cache_dir: PathBuf,
    /// The file `huggingface-cli login` writes.
    pub token_file: PathBuf,
    pub token: Option<(String, TokenSource)>,
    /// Why downloads are off, when they are.
    pub offline: Option<String>,
}

impl HubSettings {
    /// From the process environment; `offline_flag` is `--offline`.
    pub fn from_env(offline_flag: bool) -> HubSettings {
        let mut s = HubSettings::from_vars(|k| std::env::var_os(k), offline_flag);
        if s.token.is_none() {
            s.token = read_token_file(&s.token_file).map(|t| (t, TokenSource::File));
        }
        s
    }

    /// From variables given by `var` (the token file is not read here).
    pub fn from_vars(var: impl Fn(&str) -> Option<OsString>, offline_flag: bool) -> HubSettings {
        let get = |k: &str| var(k).filter(|v| !v.is_empty());
        let hf_home = get("HF_HOME").map(PathBuf::from).unwrap_or_else(|| {
            let cache = get("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| get("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .or_else(|| get("USERPROFILE").map(|h| PathBuf::from(h).join(".cache")))
                .unwrap_or_else(|| PathBuf::from(".cache"));
            cache.join("huggingface")
        });
        let cache_dir = get("HF_HUB_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| hf_home.join("hub"));
        let token_file = get("HF_TOKEN_PATH")
            .map(PathBuf::from)
            .unwrap_or_else(|| hf_home.join("token"));
        let endpoint = get("HF_ENDPOINT")
            .map(|e| e.to_string_lossy().trim_end_matches('/').to_string())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        let token = get("HF_TOKEN")
            .map(|t| t.to_string_lossy().trim().to_string())
            .filter(|t| !t.is_empty())
            .map(|t| (t, TokenSource::EnvVar));
        let env_offline = get("HF_HUB_OFFLINE")
            .map(|v| v.to_string_lossy().to_ascii_lowercase())
            .is_some_and(|v| matches!(v.as_str(), "1" | "on" | "yes" | "true"));
        let offline = if offline_flag {
            Some("--offline".to_string())
        } else if env_offline {
            Some("HF_HUB_OFFLINE is set".to_string())
        } else {
            None
        };
        HubSettings {
            endpoint,
            cache_dir,
            token_file,
            token,
            offline,
        }
    }

    /// The page of a repository, where its licence is accepted.
    pub fn repo_page(&self, repo: &str) -> String {
        format!("{}/{repo}", self.endpoint)
    }
}

/// The token in a token file (`huggingface-cli login` writes one line), if any.
pub fn read_token_file(path: &std::path::Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)], offline: bool) -> HubSettings {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        HubSettings::from_vars(
            |k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| OsString::from(v)),
            offline,
        )
    }

    #[test]
    fn defaults_follow_huggingface_hub() {
        let s = settings(&[("HOME", "/home/a")], false);
        assert_eq!(s.cache_dir, PathBuf::from("/home/a/.cache/huggingface/hub"));
        assert_eq!(s.token_file, PathBuf::from("/home/a/.cache/huggingface/token"));
        assert_eq!(s.endpoint, "https://huggingface.co");
        assert!(s.token.is_none() && s.offline.is_none());
        assert_eq!(
            s.repo_page("google/medgemma-4b-it"),
            "https://huggingface.co/google/medgemma-4b-it"
        );
        let s = settings(&[("HOME", "/home/a"), ("XDG_CACHE_HOME", "/xdg")], false);
        assert_eq!(s.cache_dir, PathBuf::from("/xdg/huggingface/hub"));
    }

    #[test]
    fn variables_override() {
        let s = settings(
            &[
                ("HF_HOME", "/hf"),
                ("HF_ENDPOINT", "http://127.0.0.1:8080/"),
                ("HF_TOKEN", " hf_abc\n"),
                ("HF_HUB_OFFLINE", "1"),
            ],
            false,
        );
        assert_eq!(s.cache_dir, PathBuf::from("/hf/hub"));
        assert_eq!(s.token_file, PathBuf::from("/hf/token"));
        assert_eq!(s.endpoint, "http://127.0.0.1:8080");
        assert_eq!(s.token, Some(("hf_abc".into(), TokenSource::EnvVar)));
        assert_eq!(s.offline.as_deref(), Some("HF_HUB_OFFLINE is set"));
        let s = settings(
            &[("HF_HOME", "/hf"), ("HF_HUB_CACHE", "/c"), ("HF_TOKEN_PATH", "/t")],
            true,
        );
        assert_eq!((s.cache_dir, s.token_file), (PathBuf::from("/c"), PathBuf::from("/t")));
        assert_eq!(s.offline.as_deref(), Some("--offline"));
        assert!(settings(&[("HF_HUB_OFFLINE", "0")], false).offline.is_none());
        assert!(settings(&[("HF_HUB_OFFLINE", "TRUE")], false).offline.is_some());
    }

    #[test]
    fn token_file_is_read_when_no_variable() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "hf_file\n").unwrap();
        let home = dir.path().to_str().unwrap().to_string();
        let s = settings(&[("HF_HOME", &home)], false);
        assert!(s.token.is_none(), "from_vars leaves the file alone");
        assert_eq!(read_token_file(&s.token_file).as_deref(), Some("hf_file"));
        std::fs::write(dir.path().join("token"), "  \n").unwrap();
        assert_eq!(read_token_file(&s.token_file), None);
    }
}
