//! The conversation a prompt is built from: an optional system prompt and alternating user/model turns, each
//! with text and, for user turns, images.
//!
//! Owns: the conversation JSON format shared by `run --messages`, batch jobs and saved chats, and its validation
//! (roles alternate, the first turn is the user's, only user turns carry images). Pure: no model, no files read
//! except the JSON itself.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Who speaks in a turn. Gemma 3 calls the assistant `model`; `assistant` is accepted as a synonym.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    #[serde(alias = "assistant")]
    Model,
}

/// One message as written in JSON: `{"role": "user", "content": "...", "images": ["chest.png"]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    #[serde(default)]
    pub content: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<PathBuf>,
    /// For model turns: the token ids the model generated, so that a reloaded conversation puts exactly the same
    /// tokens back in the context (re-tokenizing the text need not give the same ids).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<Vec<i32>>,
    /// For model turns: the answer was stopped (Ctrl-C) before the model finished it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
}

impl Message {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Message {
            role,
            content: content.into(),
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
    pub text: String,
    pub images: Vec<PathBuf>,
    /// Model turns: the generated token ids (see [`Message::tokens`]).
    pub tokens: Option<Vec<i32>>,
    pub interrupted: bool,
}

impl Turn {
    pub fn user(text: impl Into<String>, images: Vec<PathBuf>) -> Self {
        Turn {
            role: Role::User,
            text: text.into(),
            images,
            tokens: None,
            interrupted: false,
        }
    }

    pub fn model(text: impl Into<String>, tokens: Option<Vec<i32>>, interrupted: bool) -> Self {
        Turn {
            role: Role::Model,
            text: text.into(),
            images: Vec::new(),
            tokens,
            interrupted,
        }
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
    #[error("message {}: only user messages can carry images", index + 1)]
    ImagesOnModelTurn { index: usize },
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
            match message.role {
                Role::System if index == 0 => {
                    if !message.images.is_empty() {
                        return Err(ConversationError::ImagesOnModelTurn { index });
                    }
                    conversation.system = Some(message.content);
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
                    if role == Role::Model && !message.images.is_empty() {
                        return Err(ConversationError::ImagesOnModelTurn { index });
                    }
                    if role == Role::User && message.tokens.is_some() {
                        return Err(ConversationError::TokensOnUserTurn { index });
                    }
                    conversation.turns.push(Turn {
                        role,
                        text: message.content,
                        images: message.images,
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
            Some(turn) if turn.text.trim().is_empty() && turn.images.is_empty() => {
                Err(ConversationError::EmptyLastMessage {
                    index: self.turns.len() - 1 + usize::from(self.system.is_some()),
                })
            }
            Some(_) => Ok(()),
        }
    }

    /// Every image of the conversation, in prompt order.
    pub fn images(&self) -> impl Iterator<Item = &PathBuf> {
        self.turns.iter().flat_map(|t| t.images.iter())
    }

    /// Resolves relative image paths against `base` (the folder of the JSON file they came from).
    pub fn resolve_images(&mut self, base: &Path) {
        for turn in &mut self.turns {
            for image in &mut turn.images {
                if image.is_relative() {
                    *image = base.join(&*image);
                }
            }
        }
    }

    /// The conversation as messages again (for saving).
    pub fn to_messages(&self) -> Vec<Message> {
        let system = self.system.iter().map(|s| Message::new(Role::System, s.clone()));
        let turns = self.turns.iter().map(|t| Message {
            role: t.role,
            content: t.text.clone(),
            images: t.images.clone(),
            tokens: t.tokens.clone(),
            interrupted: t.interrupted,
        });
        system.chain(turns).collect()
    }
}

/// The JSON forms accepted for a conversation file: a bare list of messages, or `{"messages": [...]}`.
///
/// Read through [`messages_from_value`], so that a schema error says which message and which field is wrong
/// rather than serde's "did not match any variant".
#[derive(Debug, Clone)]
pub struct ConversationFile(Vec<Message>);

impl ConversationFile {
    pub fn into_messages(self) -> Vec<Message> {
        self.0
    }
}

impl<'de> Deserialize<'de> for ConversationFile {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        messages_from_value(value)
            .map(ConversationFile)
            .map_err(serde::de::Error::custom)
    }
}

/// What is wrong with the shape of a conversation's JSON. Messages are counted from 1.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SchemaError {
    #[error("expected a list of messages ([{{\"role\": \"user\", \"content\": \"...\"}}, ...]) or {{\"messages\": [...]}}, found {found}")]
    NotAList { found: &'static str },
    #[error("\"messages\" must be a list of messages, found {found}")]
    MessagesNotAList { found: &'static str },
    #[error("message {number}: must be an object {{\"role\": ..., \"content\": ...}}, found {found}")]
    NotAnObject { number: usize, found: &'static str },
    #[error("message {number}: missing \"role\" (use system, user or model)")]
    MissingRole { number: usize },
    #[error("message {number}: unknown role {role} (use system, user or model)")]
    UnknownRole { number: usize, role: String },
    #[error("message {number}: \"{field}\" must be {expected}, found {found}")]
    WrongType {
        number: usize,
        field: &'static str,
        expected: &'static str,
        found: &'static str,
    },
    #[error("message {number}: unknown field \"{field}\" (a message has role, content and images)")]
    UnknownField { number: usize, field: String },
}

fn kind(v: &serde_json::Value) -> &'static str {
    use serde_json::Value;
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Reads the messages of a conversation from JSON in either accepted form, checking each message's fields
/// (an unknown field is refused: a misspelt "images" would otherwise drop the images without a word).
pub fn messages_from_value(value: serde_json::Value) -> Result<Vec<Message>, SchemaError> {
    use serde_json::Value;
    let list = match value {
        Value::Array(list) => list,
        Value::Object(mut object) => match object.remove("messages") {
            Some(Value::Array(list)) => list,
            Some(other) => return Err(SchemaError::MessagesNotAList { found: kind(&other) }),
            None => {
                return Err(SchemaError::NotAList {
                    found: "an object without \"messages\"",
                })
            }
        },
        other => return Err(SchemaError::NotAList { found: kind(&other) }),
    };
    list.into_iter()
        .enumerate()
        .map(|(i, v)| message_from_value(i + 1, v))
        .collect()
}

fn message_from_value(number: usize, value: serde_json::Value) -> Result<Message, SchemaError> {
    use serde_json::Value;
    let Value::Object(object) = &value else {
        return Err(SchemaError::NotAnObject {
            number,
            found: kind(&value),
        });
    };
    let wrong = |field, expected, v: &Value| SchemaError::WrongType {
        number,
        field,
        expected,
        found: kind(v),
    };
    const FIELDS: [&str; 5] = ["role", "content", "images", "tokens", "interrupted"];
    if let Some(field) = object.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(SchemaError::UnknownField {
            number,
            field: field.clone(),
        });
    }
    let role = match object.get("role") {
        None => return Err(SchemaError::MissingRole { number }),
        Some(Value::String(r)) => match r.as_str() {
            "system" => Role::System,
            "user" => Role::User,
            "model" | "assistant" => Role::Model,
            _ => {
                return Err(SchemaError::UnknownRole {
                    number,
                    role: format!("{r:?}"),
                })
            }
        },
        Some(other) => {
            return Err(SchemaError::UnknownRole {
                number,
                role: other.to_string(),
            })
        }
    };
    let content = match object.get("content") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => return Err(wrong("content", "a string", other)),
    };
    let images = match object.get("images") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str()
                    .map(PathBuf::from)
                    .ok_or_else(|| wrong("images", "a list of file paths", i))
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(wrong("images", "a list of file paths", other)),
    };
    let tokens = match object.get("tokens") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .map(|t| {
                    t.as_i64()
                        .and_then(|t| i32::try_from(t).ok())
                        .ok_or_else(|| wrong("tokens", "a list of token ids", t))
                })
                .collect::<Result<_, _>>()?,
        ),
        Some(other) => return Err(wrong("tokens", "a list of token ids", other)),
    };
    let interrupted = match object.get("interrupted") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => return Err(wrong("interrupted", "true or false", other)),
    };
    Ok(Message {
        role,
        content,
        images,
        tokens,
        interrupted,
    })
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
    fn parses_both_json_forms_and_assistant_alias() {
        let a: ConversationFile =
            serde_json::from_str(r#"[{"role":"user","content":"hi","images":["x.png"]}]"#).unwrap();
        let b: ConversationFile = serde_json::from_str(
            r#"{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"yo"}]}"#,
        )
        .unwrap();
        assert_eq!(a.into_messages()[0].images, vec![PathBuf::from("x.png")]);
        assert_eq!(b.into_messages()[1].role, Role::Model);
    }

    fn schema_error(json: &str) -> String {
        let err = serde_json::from_str::<ConversationFile>(json).unwrap_err().to_string();
        assert!(!err.contains("variant"), "{err}");
        err
    }

    #[test]
    fn schema_errors_say_what_and_where() {
        let e = schema_error(r#"[{"role":"user","content":"a"},{"role":"robot","content":"b"}]"#);
        assert!(
            e.starts_with("message 2: unknown role \"robot\" (use system, user or model)"),
            "{e}"
        );
        let e = schema_error(r#"{"messages":[{"role":"user","content":5}]}"#);
        assert!(
            e.starts_with("message 1: \"content\" must be a string, found a number"),
            "{e}"
        );
        let e = schema_error(r#"[{"content":"hi"}]"#);
        assert!(e.starts_with("message 1: missing \"role\""), "{e}");
        let e = schema_error(r#"[{"role":"user","images":"a.png"}]"#);
        assert!(
            e.starts_with("message 1: \"images\" must be a list of file paths, found a string"),
            "{e}"
        );
        let e = schema_error(r#"["hi"]"#);
        assert!(e.starts_with("message 1: must be an object"), "{e}");
        let e = schema_error(r#"{"turns":[]}"#);
        assert!(e.contains("or {\"messages\": [...]}"), "{e}");
        let e = schema_error(r#"{"messages":"hi"}"#);
        assert!(e.starts_with("\"messages\" must be a list"), "{e}");
        let e = schema_error(r#"[{"role":"model","content":"x","tokens":[1,"a"]}]"#);
        assert!(e.contains("\"tokens\" must be a list of token ids"), "{e}");
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
    fn resolves_relative_images() {
        let mut c = Conversation::single(None, "q".into(), vec!["a.png".into(), "/abs/b.png".into()]);
        c.resolve_images(Path::new("/data/jobs"));
        let images: Vec<_> = c.images().cloned().collect();
        assert_eq!(
            images,
            vec![PathBuf::from("/data/jobs/a.png"), PathBuf::from("/abs/b.png")]
        );
    }
}
