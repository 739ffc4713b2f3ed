//! Saving and loading a chat: the conversation as JSON, with each image by path and SHA-256 so that a changed or
//! missing image is noticed on load.
//!
//! Owns: the file format `{"format": "medgemma-chat/1", "messages": [...], "images": [{"path", "sha256"}]}` and
//! its checks. Writes atomically; never touches the model.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::conversation::{Conversation, Message};
use crate::files::write_atomically;

const FORMAT: &str = "medgemma-chat/1";

#[derive(Debug, Serialize, Deserialize)]
struct ImageRecord {
    path: PathBuf,
    sha256: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Transcript {
    format: String,
    messages: Vec<Message>,
    #[serde(default)]
    images: Vec<ImageRecord>,
}

fn sha256_of(path: &Path) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("image {}: {e}", path.display()))?;
    Ok(Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect())
}

/// Saves `conversation` to `path` (image paths made absolute).
pub fn save(conversation: &Conversation, path: &Path) -> Result<(), String> {
    let mut conversation = conversation.clone();
    for turn in &mut conversation.turns {
        for image in &mut turn.images {
            if let Ok(abs) = std::path::absolute(&*image) {
                *image = abs;
            }
        }
    }
    let images = conversation
        .images()
        .map(|p| {
            Ok(ImageRecord {
                path: p.clone(),
                sha256: sha256_of(p)?,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let transcript = Transcript {
        format: FORMAT.into(),
        messages: conversation.to_messages(),
        images,
    };
    let json = serde_json::to_vec_pretty(&transcript).map_err(|e| e.to_string())?;
    write_atomically(path, &json).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Loads a conversation saved by [`save`] (or a plain conversation JSON), checking that images are unchanged.
pub fn load(path: &Path) -> Result<Conversation, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
    let (messages, images) = if value.get("format").is_some() {
        let t: Transcript =
            serde_json::from_value(value).map_err(|e| format!("{}: not a saved chat: {e}", path.display()))?;
        if t.format != FORMAT {
            return Err(format!(
                "{}: unknown format {:?} (expected {FORMAT})",
                path.display(),
                t.format
            ));
        }
        (t.messages, t.images)
    } else {
        let f: crate::conversation::ConversationFile =
            serde_json::from_value(value).map_err(|e| format!("{}: not a conversation: {e}", path.display()))?;
        (f.into_messages(), Vec::new())
    };
    let mut conversation = Conversation::from_messages(messages).map_err(|e| format!("{}: {e}", path.display()))?;
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
            return Err(format!(
                "image {} changed since the chat was saved (SHA-256 differs)",
                p.display()
            ));
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
        assert!(load(&file).unwrap_err().contains("changed"));
    }

    #[test]
    fn bad_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("bad.json");
        std::fs::write(&f, "{oops").unwrap();
        assert!(load(&f).unwrap_err().contains("not JSON"));
        assert!(load(&dir.path().join("missing.json"))
            .unwrap_err()
            .contains("cannot read"));
    }
}
