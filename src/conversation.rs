//! The conversation a prompt is built from: an optional system prompt and alternating user/model turns, each an
//! ordered list of parts (text, images and, for user turns, DICOM series folders).
//!
//! Owns: the conversation JSON format shared by `run --messages`, batch jobs and saved chats (content as a string
//! or as a list of parts, the shapes Hugging Face and OpenAI use; read in [`json`], written by
//! [`Conversation::to_messages`]), and its validation (roles alternate, the first
//! turn is the user's, only user turns carry images and series). Pure: no model, no files read except the JSON
//! itself. Must not: read images or series (`image_input` and the series loader do, through [`Conversation::images`]
//! and [`crate::prompt_images::ImageLoader::load`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod json;

pub use json::ConversationFile;

/// Who speaks in a turn. Gemma 3 calls the assistant `model`; `assistant` is accepted as a synonym.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    #[serde(alias = "assistant")]
    Model,
}

/// One part of a turn's content, in prompt order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Text(String),
    /// An image file (PNG, JPEG, DICOM, ...).
    Image(PathBuf),
    /// A folder of DICOM slices. It never reaches the prompt builder: [`crate::prompt_images::ImageLoader::load`] replaces it
    /// with the slices' images and texts first.
    Series(PathBuf),
}

impl Serialize for Part {
    /// `{"type": "text", "text": ...}`, `{"type": "image", "image": PATH}`, `{"type": "series", "series": DIR}`.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(2))?;
        match self {
            Part::Text(text) => {
                map.serialize_entry("type", "text")?;
                map.serialize_entry("text", text)?;
            }
            Part::Image(path) => {
                map.serialize_entry("type", "image")?;
                map.serialize_entry("image", path)?;
            }
            Part::Series(path) => {
                map.serialize_entry("type", "series")?;
                map.serialize_entry("series", path)?;
            }
        }
        map.end()
    }
}

/// A message's `content` as written in JSON: a string, or a list of parts.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<Part>),
}

impl Default for Content {
    fn default() -> Self {
        Content::Text(String::new())
    }
}

/// One message as written in JSON: `{"role": "user", "content": "...", "images": ["chest.png"]}`, or with the
/// content as a list of parts: `{"role": "user", "content": [{"type": "text", "text": "..."}, {"type": "image",
/// "image": "chest.png"}, ...]}`.
///
/// `images` means images before the content (today's shape); the JSON reader refuses it next to a list content
/// (ambiguous), and [`Conversation::from_messages`] puts such images first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    pub role: Role,
    pub content: Content,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<PathBuf>,
    /// For model turns: the token ids the model generated, so that a reloaded conversation puts exactly the same
    /// tokens back in the context (re-tokenizing the text need not give the same ids).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<Vec<i32>>,
    /// For model turns: the answer was stopped (Ctrl-C) before the model finished it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
}

impl Message {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Message {
            role,
            content: Content::Text(content.into()),
            images: Vec::new(),
            tokens: None,
            interrupted: false,
        }
    }
}

/// One turn of the conversation after validation.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    pub role: Role,
    /// The content in prompt order. Model turns hold only text parts.
    pub parts: Vec<Part>,
    /// Model turns: the generated token ids (see [`Message::tokens`]).
    pub tokens: Option<Vec<i32>>,
    pub interrupted: bool,
}

impl Turn {
    /// A user turn in today's shape: the images, then the text (always one text part, even empty).
    pub fn user(text: impl Into<String>, images: Vec<PathBuf>) -> Self {
        let mut parts: Vec<Part> = images.into_iter().map(Part::Image).collect();
        parts.push(Part::Text(text.into()));
        Turn {
            role: Role::User,
            parts,
            tokens: None,
            interrupted: false,
        }
    }

    /// A user turn with its parts in the given order.
    pub fn user_parts(parts: Vec<Part>) -> Self {
        Turn {
            role: Role::User,
            parts,
            tokens: None,
            interrupted: false,
        }
    }

    pub fn model(text: impl Into<String>, tokens: Option<Vec<i32>>, interrupted: bool) -> Self {
        Turn {
            role: Role::Model,
            parts: vec![Part::Text(text.into())],
            tokens,
            interrupted,
        }
    }

    /// The turn's text parts joined (as the template joins them: nothing in between), for display and checks.
    pub fn text(&self) -> String {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Text(t) => Some(t.as_str()),
                _ => None,
            })
            .collect()
    }

    /// The turn's image and series parts, in order (what goes with the next message when this one is taken back).
    pub fn media(&self) -> impl Iterator<Item = &Part> {
        self.parts.iter().filter(|p| !matches!(p, Part::Text(_)))
    }

    /// Whether the turn says nothing: no image or series, and its text is blank.
    fn is_empty(&self) -> bool {
        self.media().next().is_none() && self.text().trim().is_empty()
    }

    /// The content in today's shape (`images` then one text) when the parts have it: what is saved as a string.
    fn plain(&self) -> Option<(Vec<PathBuf>, &str)> {
        let (Part::Text(text), leading) = self.parts.split_last()? else {
            return None;
        };
        let images = leading
            .iter()
            .map(|p| match p {
                Part::Image(path) => Some(path.clone()),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?;
        Some((images, text))
    }
}

/// A validated conversation: the system prompt (Gemma 3 has no system role; it is prefixed to the first user turn)
/// and turns that alternate user, model, user, ...
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Conversation {
    pub system: Option<String>,
    pub turns: Vec<Turn>,
}

/// Why a conversation is not valid. `index` counts from 0; the text counts messages from 1, as people do.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConversationError {
    #[error("message {}: a system message is only allowed first", index + 1)]
    LateSystem { index: usize },
    #[error(
        "message {}: roles must alternate user, model, user, ... starting with user (found {found:?})",
        index + 1
    )]
    NotAlternating { index: usize, found: Role },
    #[error("message {}: only user messages can carry images or series", index + 1)]
    ImagesOnModelTurn { index: usize },
    #[error(
        "message {}: a system message's content must be text (a string, or a list of one text part)",
        index + 1
    )]
    SystemNotText { index: usize },
    #[error("message {}: only model messages can carry token ids", index + 1)]
    TokensOnUserTurn { index: usize },
    #[error("the conversation has no user message")]
    Empty,
    #[error("the last message must be the user's, for the model to answer it")]
    EndsWithModel,
    #[error("message {}: the user's message is empty and has no images: give it a question", index + 1)]
    EmptyLastMessage { index: usize },
}

impl Conversation {
    /// A one-question conversation.
    pub fn single(system: Option<String>, text: String, images: Vec<PathBuf>) -> Self {
        Conversation {
            system,
            turns: vec![Turn::user(text, images)],
        }
    }

    /// Validates a list of messages: an optional leading system message, then alternating user/model turns.
    pub fn from_messages(messages: Vec<Message>) -> Result<Self, ConversationError> {
        let mut conversation = Conversation::default();
        for (index, message) in messages.into_iter().enumerate() {
            let has_media = !message.images.is_empty()
                || match &message.content {
                    Content::Parts(parts) => parts.iter().any(|p| !matches!(p, Part::Text(_))),
                    Content::Text(_) => false,
                };
            match message.role {
                Role::System if index == 0 => {
                    if has_media {
                        return Err(ConversationError::ImagesOnModelTurn { index });
                    }
                    conversation.system = Some(match message.content {
                        Content::Text(text) => text,
                        Content::Parts(mut parts) => match (parts.pop(), parts.is_empty()) {
                            (Some(Part::Text(text)), true) => text,
                            _ => return Err(ConversationError::SystemNotText { index }),
                        },
                    });
                }
                Role::System => return Err(ConversationError::LateSystem { index }),
                role => {
                    let expected = if conversation.turns.len() % 2 == 0 {
                        Role::User
                    } else {
                        Role::Model
                    };
                    if role != expected {
                        return Err(ConversationError::NotAlternating { index, found: role });
                    }
                    if role == Role::Model && has_media {
                        return Err(ConversationError::ImagesOnModelTurn { index });
                    }
                    if role == Role::User && message.tokens.is_some() {
                        return Err(ConversationError::TokensOnUserTurn { index });
                    }
                    let mut parts: Vec<Part> = message.images.into_iter().map(Part::Image).collect();
                    match message.content {
                        Content::Text(text) => parts.push(Part::Text(text)),
                        Content::Parts(list) => parts.extend(list),
                    }
                    conversation.turns.push(Turn {
                        role,
                        parts,
                        tokens: message.tokens,
                        interrupted: message.interrupted,
                    });
                }
            }
        }
        Ok(conversation)
    }

    /// Checks that the model has a user message to answer.
    pub fn check_ready_to_answer(&self) -> Result<(), ConversationError> {
        match self.turns.last() {
            None => Err(ConversationError::Empty),
            Some(turn) if turn.role == Role::Model => Err(ConversationError::EndsWithModel),
            Some(turn) if turn.is_empty() => Err(ConversationError::EmptyLastMessage {
                index: self.turns.len() - 1 + usize::from(self.system.is_some()),
            }),
            Some(_) => Ok(()),
        }
    }

    /// Every image of the conversation, in prompt order (the order [`crate::prompt::render`] numbers them in).
    /// Series are not included: [`crate::prompt_images::ImageLoader::load`] turns them into images first.
    pub fn images(&self) -> impl Iterator<Item = &PathBuf> {
        self.turns.iter().flat_map(|t| &t.parts).filter_map(|p| match p {
            Part::Image(path) => Some(path),
            _ => None,
        })
    }

    /// Every image file and series (folder or file) the conversation names, in order (what a sandbox must let
    /// the command read).
    pub fn media_paths(&self) -> impl Iterator<Item = &PathBuf> {
        self.turns.iter().flat_map(|t| t.media()).filter_map(|p| match p {
            Part::Image(path) | Part::Series(path) => Some(path),
            Part::Text(_) => None,
        })
    }

    /// Whether a turn holds a series part (`--series-uid` and `--max-slices` need one).
    pub fn has_series(&self) -> bool {
        self.turns
            .iter()
            .flat_map(|t| &t.parts)
            .any(|p| matches!(p, Part::Series(_)))
    }

    /// Resolves relative image and series paths against `base` (the folder of the JSON file they came from).
    pub fn resolve_images(&mut self, base: &Path) {
        for turn in &mut self.turns {
            for part in &mut turn.parts {
                if let Part::Image(path) | Part::Series(path) = part {
                    if path.is_relative() {
                        *path = base.join(&*path);
                    }
                }
            }
        }
    }

    /// Makes image and series paths absolute (relative to the current folder), for saving.
    pub fn absolute_paths(&mut self) {
        for turn in &mut self.turns {
            for part in &mut turn.parts {
                if let Part::Image(path) | Part::Series(path) = part {
                    if let Ok(abs) = std::path::absolute(&*path) {
                        *path = abs;
                    }
                }
            }
        }
    }

    /// The conversation as messages again (for saving). A turn in today's shape (images, then one text) is written
    /// as `content` + `images`, so that older readers still read it; any other turn as a list of parts.
    pub fn to_messages(&self) -> Vec<Message> {
        let system = self.system.iter().map(|s| Message::new(Role::System, s.clone()));
        let turns = self.turns.iter().map(|t| {
            let (content, images) = match t.plain() {
                Some((images, text)) => (Content::Text(text.to_string()), images),
                None => (Content::Parts(t.parts.clone()), Vec::new()),
            };
            Message {
                role: t.role,
                content,
                images,
                tokens: t.tokens.clone(),
                interrupted: t.interrupted,
            }
        });
        system.chain(turns).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(role: Role, content: &str) -> Message {
        Message::new(role, content)
    }

    #[test]
    fn system_then_alternating_turns() {
        let c = Conversation::from_messages(vec![
            msg(Role::System, "Be brief."),
            msg(Role::User, "Hi"),
            msg(Role::Model, "Hello"),
            msg(Role::User, "Again"),
        ])
        .unwrap();
        assert_eq!(c.system.as_deref(), Some("Be brief."));
        assert_eq!(c.turns.len(), 3);
        c.check_ready_to_answer().unwrap();
        assert_eq!(c.to_messages().len(), 4);
    }

    #[test]
    fn rejects_bad_orders() {
        let late = Conversation::from_messages(vec![msg(Role::User, "a"), msg(Role::System, "b")]);
        assert_eq!(late, Err(ConversationError::LateSystem { index: 1 }));
        assert_eq!(
            late.unwrap_err().to_string(),
            "message 2: a system message is only allowed first"
        );
        let two_users = Conversation::from_messages(vec![msg(Role::User, "a"), msg(Role::User, "b")]);
        assert_eq!(
            two_users,
            Err(ConversationError::NotAlternating {
                index: 1,
                found: Role::User
            })
        );
        let model_first = Conversation::from_messages(vec![msg(Role::Model, "a")]);
        assert!(matches!(model_first, Err(ConversationError::NotAlternating { .. })));
        let ends = Conversation::from_messages(vec![msg(Role::User, "a"), msg(Role::Model, "b")]).unwrap();
        assert_eq!(ends.check_ready_to_answer(), Err(ConversationError::EndsWithModel));
        assert_eq!(
            Conversation::default().check_ready_to_answer(),
            Err(ConversationError::Empty)
        );
    }

    #[test]
    fn model_turns_cannot_carry_images() {
        let mut m = msg(Role::Model, "x");
        m.images.push("a.png".into());
        let r = Conversation::from_messages(vec![msg(Role::User, "a"), m]);
        assert_eq!(r, Err(ConversationError::ImagesOnModelTurn { index: 1 }));
    }

    #[test]
    fn saved_fields_read_back() {
        let mut m = Message::new(Role::Model, "ok");
        m.tokens = Some(vec![1, 2]);
        m.interrupted = true;
        let json = serde_json::to_string(&vec![Message::new(Role::User, "q"), m.clone()]).unwrap();
        let back: ConversationFile = serde_json::from_str(&json).unwrap();
        assert_eq!(back.into_messages()[1], m);
    }

    #[test]
    fn resolves_relative_images_and_series() {
        let mut c = Conversation::single(None, "q".into(), vec!["a.png".into(), "/abs/b.png".into()]);
        c.turns[0].parts.push(Part::Series("ct".into()));
        c.resolve_images(Path::new("/data/jobs"));
        let images: Vec<_> = c.images().cloned().collect();
        assert_eq!(
            images,
            vec![PathBuf::from("/data/jobs/a.png"), PathBuf::from("/abs/b.png")]
        );
        assert_eq!(c.turns[0].parts[3], Part::Series("/data/jobs/ct".into()));
    }

    #[test]
    fn parts_other_than_text_only_in_user_turns() {
        let read = |json: &str| {
            let file: ConversationFile = serde_json::from_str(json).unwrap();
            Conversation::from_messages(file.into_messages())
        };
        let e = read(
            r#"[{"role": "user", "content": "q"}, {"role": "model", "content": [{"type": "image", "image": "a.png"}]}]"#,
        );
        assert_eq!(e, Err(ConversationError::ImagesOnModelTurn { index: 1 }));
        let e = read(
            r#"[{"role": "system", "content": [{"type": "series", "series": "ct"}]}, {"role": "user", "content": "q"}]"#,
        );
        assert_eq!(e, Err(ConversationError::ImagesOnModelTurn { index: 0 }));
        let e =
            read(r#"[{"role": "system", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]"#);
        assert_eq!(
            e.unwrap_err().to_string(),
            "message 1: a system message's content must be text (a string, or a list of one text part)"
        );
        // A user turn of parts that say nothing cannot be answered; one image alone can.
        let c = read(r#"[{"role": "user", "content": [{"type": "text", "text": "  "}]}]"#).unwrap();
        assert_eq!(
            c.check_ready_to_answer(),
            Err(ConversationError::EmptyLastMessage { index: 0 })
        );
        let c = read(r#"[{"role": "user", "content": []}]"#).unwrap();
        assert!(c.check_ready_to_answer().is_err());
        let c = read(r#"[{"role": "user", "content": [{"type": "series", "series": "ct"}]}]"#).unwrap();
        assert_eq!(c.check_ready_to_answer(), Ok(()));
    }

    fn round_trip(c: &Conversation) -> Vec<serde_json::Value> {
        let json = serde_json::to_string(&c.to_messages()).unwrap();
        let back: ConversationFile = serde_json::from_str(&json).unwrap();
        assert_eq!(&Conversation::from_messages(back.into_messages()).unwrap(), c);
        serde_json::from_str(&json).unwrap()
    }

    #[test]
    fn plain_turns_save_in_the_old_shape_and_interleaved_ones_as_parts() {
        let mut c = Conversation::single(Some("s".into()), "q".into(), vec!["/a.png".into()]);
        c.turns.push(Turn::model("answer", Some(vec![4, 5]), false));
        c.turns.push(Turn::user_parts(vec![
            Part::Text("First".into()),
            Part::Image("/b.png".into()),
            Part::Text("SLICE 1".into()),
            Part::Series("/ct".into()),
        ]));
        let saved = round_trip(&c);
        assert_eq!(
            saved[1],
            serde_json::json!({"role": "user", "content": "q", "images": ["/a.png"]})
        );
        assert_eq!(saved[2]["content"], "answer");
        assert_eq!(
            saved[3]["content"],
            serde_json::json!([
                {"type": "text", "text": "First"},
                {"type": "image", "image": "/b.png"},
                {"type": "text", "text": "SLICE 1"},
                {"type": "series", "series": "/ct"},
            ])
        );
        // Shapes at the edges: an image without text, no parts at all, texts on a model turn.
        let c = Conversation {
            system: None,
            turns: vec![
                Turn::user_parts(vec![Part::Image("/a.png".into())]),
                Turn {
                    parts: vec![Part::Text("a".into()), Part::Text("b".into())],
                    ..Turn::model("", None, true)
                },
                Turn::user_parts(vec![]),
                Turn::model("", None, false),
                Turn::user("", vec![]),
            ],
        };
        let saved = round_trip(&c);
        assert_eq!(
            saved[0]["content"],
            serde_json::json!([{"type": "image", "image": "/a.png"}])
        );
        assert_eq!(saved[4], serde_json::json!({"role": "user", "content": ""}));
    }
}
