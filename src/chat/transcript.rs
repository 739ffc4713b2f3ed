//! Saving and loading a chat: the conversation as JSON, with each image by path and SHA-256 so that a changed or
//! missing image is noticed on load.
//!
//! Owns: the file format `{"format": "medgemma-chat/1", "messages": [...], "images": [{"path", "sha256"}]}` (the
//! messages as `run --messages` reads them: a turn with images then text in the old shape, an interleaved one as a
//! list of parts) and its checks, and which existing files a save may replace (only saved chats). Writes atomically; never touches
//! the model.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::conversation::{Conversation, ConversationError, ConversationFile, Message};
use crate::files::write_atomically;

const FORMAT: &str = "medgemma-chat/1";

/// Why a chat cannot be saved or loaded; each names the file at fault. The underlying error is part of the text
/// (not a separate source), so that it is printed once.
#[derive(Debug, thiserror::Error)]
pub enum TranscriptError {
    #[error("image {}: {error}", path.display())]
    ImageUnreadable { path: PathBuf, error: std::io::Error },
    #[error("image {} changed since the chat was saved (SHA-256 differs)", path.display())]
    ImageChanged { path: PathBuf },
    #[error("{error}")]
    Encode { error: serde_json::Error },
    #[error("cannot write {}: {error}", path.display())]
    Write { path: PathBuf, error: std::io::Error },
    #[error("cannot read {}: {error}", path.display())]
    Read { path: PathBuf, error: std::io::Error },
    #[error("{} is not JSON: {error}", path.display())]
    NotJson { path: PathBuf, error: serde_json::Error },
    #[error("{}: not a saved chat: {error}", path.display())]
    NotSavedChat { path: PathBuf, error: serde_json::Error },
    #[error("{}: unknown format {found:?} (expected {})", path.display(), FORMAT)]
    UnknownFormat { path: PathBuf, found: String },
    #[error("{}: not a conversation: {error}", path.display())]
    NotConversation { path: PathBuf, error: serde_json::Error },
    #[error("{}: {error}", path.display())]
    Invalid { path: PathBuf, error: ConversationError },
}

#[derive(Debug, Serialize, Deserialize)]
struct ImageRecord {
    path: PathBuf,
    sha256: String,
}

/// A saved chat as written.
#[derive(Debug, Serialize)]
struct SavedTranscript {
    format: &'static str,
    messages: Vec<Message>,
    images: Vec<ImageRecord>,
}

/// A saved chat as read: the messages through the conversation reader, so that a bad one is named.
#[derive(Debug, Deserialize)]
struct Transcript {
    format: String,
    messages: ConversationFile,
    #[serde(default)]
    images: Vec<ImageRecord>,
}

fn sha256_of(path: &Path) -> Result<String, TranscriptError> {
    crate::files::sha256_of_file(path).map_err(|error| TranscriptError::ImageUnreadable {
        path: path.to_path_buf(),
        error,
    })
}

/// Saves `conversation` to `path` (image paths made absolute).
pub fn save(conversation: &Conversation, path: &Path) -> Result<(), TranscriptError> {
    let mut conversation = conversation.clone();
    conversation.absolute_paths();
    let images = conversation
        .images()
        .map(|p| {
            Ok(ImageRecord {
                path: p.clone(),
                sha256: sha256_of(p)?,
            })
        })
        .collect::<Result<Vec<_>, TranscriptError>>()?;
    let transcript = SavedTranscript {
        format: FORMAT,
        messages: conversation.to_messages(),
        images,
    };
    let json = serde_json::to_vec_pretty(&transcript).map_err(|error| TranscriptError::Encode { error })?;
    write_atomically(path, &json).map_err(|error| TranscriptError::Write {
        path: path.to_path_buf(),
        error,
    })
}

/// Whether `path` is a chat saved by [`save`] (a regular file of our format): one `/save` may replace; any other
/// existing file is the user's and is left alone.
pub fn is_saved_chat(path: &Path) -> bool {
    const MAX_BYTES: u64 = 256 << 20;
    let small =
        crate::files::check_regular_file(path).is_ok() && std::fs::metadata(path).is_ok_and(|m| m.len() <= MAX_BYTES);
    small
        && std::fs::read(path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
            .is_some_and(|v| v.get("format").and_then(serde_json::Value::as_str) == Some(FORMAT))
}

/// Loads a conversation saved by [`save`] (or a plain conversation JSON), checking that images are unchanged.
pub fn load(path: &Path) -> Result<Conversation, TranscriptError> {
    let path_buf = || path.to_path_buf();
    let text = crate::files::read_regular_to_string(path).map_err(|error| TranscriptError::Read {
        path: path_buf(),
        error,
    })?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|error| TranscriptError::NotJson {
        path: path_buf(),
        error,
    })?;
    let (messages, images) = if value.get("format").is_some() {
        let t: Transcript = serde_json::from_value(value).map_err(|error| TranscriptError::NotSavedChat {
            path: path_buf(),
            error,
        })?;
        if t.format != FORMAT {
            return Err(TranscriptError::UnknownFormat {
                path: path_buf(),
                found: t.format,
            });
        }
        (t.messages.into_messages(), t.images)
    } else {
        let f: ConversationFile = serde_json::from_value(value).map_err(|error| TranscriptError::NotConversation {
            path: path_buf(),
            error,
        })?;
        (f.into_messages(), Vec::new())
    };
    let mut conversation = Conversation::from_messages(messages).map_err(|error| TranscriptError::Invalid {
        path: path_buf(),
        error,
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    conversation.resolve_images(base);
    for record in images {
        let p = if record.path.is_relative() {
            base.join(&record.path)
        } else {
            record.path.clone()
        };
        let now = sha256_of(&p)?;
        if now != record.sha256 {
            return Err(TranscriptError::ImageChanged { path: p });
        }
    }
    Ok(conversation)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conversation::Turn;

    #[test]
    fn round_trip_and_detects_changed_images() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("x.png");
        std::fs::write(&img, b"pixels").unwrap();
        let mut c = Conversation::single(Some("sys".into()), "q".into(), vec![img.clone()]);
        c.turns.push(Turn::model("a", Some(vec![5, 6]), true));
        let file = dir.path().join("chat.json");
        save(&c, &file).unwrap();
        assert_eq!(load(&file).unwrap(), c);
        std::fs::write(&img, b"other pixels").unwrap();
        let e = load(&file).unwrap_err();
        assert!(matches!(e, TranscriptError::ImageChanged { .. }), "{e}");
        assert_eq!(
            e.to_string(),
            format!(
                "image {} changed since the chat was saved (SHA-256 differs)",
                img.display()
            )
        );
    }

    /// An interleaved turn is saved as a list of parts and comes back the same; the plain turn keeps the old shape.
    #[test]
    fn interleaved_turns_round_trip() {
        use crate::conversation::Part;
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.png"), dir.path().join("b.png"));
        std::fs::write(&a, b"a").unwrap();
        std::fs::write(&b, b"b").unwrap();
        let mut c = Conversation::single(None, "q".into(), vec![a.clone()]);
        c.turns.push(Turn::model("ok", Some(vec![7]), false));
        c.turns.push(Turn::user_parts(vec![
            Part::Text("First".into()),
            Part::Image(b.clone()),
            Part::Text("SLICE 1".into()),
            Part::Image(a.clone()),
        ]));
        let file = dir.path().join("chat.json");
        save(&c, &file).unwrap();
        assert_eq!(load(&file).unwrap(), c);
        let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(saved["messages"][0]["content"], "q");
        assert_eq!(saved["messages"][2]["content"][1]["image"], b.display().to_string());
        assert_eq!(
            saved["images"].as_array().unwrap().len(),
            3,
            "each image of the prompt, in order"
        );
    }

    #[test]
    fn bad_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("bad.json");
        std::fs::write(&f, "{oops").unwrap();
        let e = load(&f).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{} is not JSON: ", f.display())), "{e}");
        let missing = dir.path().join("missing.json");
        let e = load(&missing).unwrap_err().to_string();
        assert!(e.starts_with(&format!("cannot read {}: ", missing.display())), "{e}");
        std::fs::write(&f, r#"{"format": "other/2", "messages": []}"#).unwrap();
        let e = load(&f).unwrap_err().to_string();
        assert_eq!(
            e,
            format!("{}: unknown format \"other/2\" (expected medgemma-chat/1)", f.display())
        );
        std::fs::write(&f, r#"[{"role": "model", "content": "hi"}]"#).unwrap();
        assert!(matches!(load(&f).unwrap_err(), TranscriptError::Invalid { .. }));
    }
}
