//! What can go wrong between medgemma and the Hugging Face hub or its cache, each with the next step in its text.
//!
//! Owns: the hub's error enum. Pure data: nothing here talks to the network or the disk.

use std::path::PathBuf;

/// An error from finding, downloading or removing a model.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(
        "{repo} refused the download (HTTP {status}): the repository is gated or private. Accept its licence at \
         {licence_page} while logged in to Hugging Face, then give medgemma a token with access: set \
         HF_TOKEN=hf_... or run `huggingface-cli login` (it writes the token file {token_file}){token_note}"
    )]
    Gated {
        repo: String,
        status: u16,
        licence_page: String,
        token_file: PathBuf,
        /// Says where the token in use came from, when one was sent.
        token_note: String,
    },

    #[error("{file} was not found in {repo} (HTTP 404 from {url}): check the repository and the file name")]
    NotFound { repo: String, file: String, url: String },

    #[error(
        "{repo}/{file} is not in the Hugging Face cache ({cache}) and downloads are off ({why}); run `{command}` \
         while online"
    )]
    NotCached {
        repo: String,
        file: String,
        cache: PathBuf,
        why: String,
        command: String,
    },

    #[error("cannot reach {url}: {reason}. {next}")]
    Network { url: String, reason: String, next: String },

    #[error("{url} answered HTTP {status}{detail}")]
    Http { url: String, status: u16, detail: String },

    #[error(
        "{url} did not send the {header} header: is HF_ENDPOINT ({endpoint}) a Hugging Face hub or a mirror of one?"
    )]
    MissingHeader {
        url: String,
        header: &'static str,
        endpoint: String,
    },

    #[error(
        "the download of {repo}/{file} is corrupt: its SHA-256 is {actual}, the hub says {expected}. The file was \
         deleted and is not used; run the same command again to download it afresh"
    )]
    HashMismatch {
        repo: String,
        file: String,
        expected: String,
        actual: String,
    },

    #[error(
        "the download of {repo}/{file} stopped at {got} of {expected} bytes ({reason}); run the same command again \
         to resume it"
    )]
    Interrupted {
        repo: String,
        file: String,
        got: u64,
        expected: u64,
        reason: String,
    },

    #[error(
        "not enough disk space for {repo}/{file}: it needs {needed} more and {dir} has {available} free; free some \
         space or point HF_HUB_CACHE (or HF_HOME) at a larger disk"
    )]
    DiskFull {
        repo: String,
        file: String,
        needed: String,
        available: String,
        dir: PathBuf,
    },

    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl HubError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> HubError {
        let path = path.into();
        move |source| HubError::Io { path, source }
    }
}
