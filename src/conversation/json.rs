//! Reading a conversation's JSON: a bare list of messages or `{"messages": [...]}`, each message's fields and its
//! content as a string or a list of parts (Hugging Face's `{"type": "image", "image": ...}`, OpenAI's
//! `{"type": "image_url", "image_url": {"url": ...}}`, ours `{"type": "series", "series": DIR}`).
//!
//! Owns: the schema errors, which say which message (and part) and which field is wrong, and the refusal of web
//! and `data:` URLs (medgemma reads local files only). Must not: validate the conversation's order (that is
//! [`Conversation::from_messages`](super::Conversation::from_messages)) or read any file.

use std::path::PathBuf;

use serde::Deserialize;

use super::{Content, Message, Part, Role};

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

/// What is wrong with the shape of a conversation's JSON. Messages (and parts) are counted from 1.
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
    #[error("message {number}: \"images\" cannot be combined with a list \"content\": put each image in the list, where it belongs, as {{\"type\": \"image\", \"image\": \"PATH\"}}")]
    ImagesWithPartList { number: usize },
    #[error("message {number}, part {part}: {problem}")]
    BadPart {
        number: usize,
        part: usize,
        problem: PartProblem,
    },
}

/// What is wrong with one part of a message's content list.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PartProblem {
    #[error("must be an object {{\"type\": \"text\", \"text\": \"...\"}}, found {found}")]
    NotAnObject { found: &'static str },
    #[error("missing \"type\" ({PART_TYPES})")]
    MissingType,
    #[error("unknown part type {found} ({PART_TYPES})")]
    UnknownType { found: String },
    #[error("a \"{kind}\" part needs \"{field}\"")]
    Missing { kind: &'static str, field: &'static str },
    #[error("\"{field}\" must be {expected}, found {found}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
        found: &'static str,
    },
    #[error("unknown field \"{field}\" in a \"{kind}\" part")]
    UnknownField { kind: &'static str, field: String },
    #[error("an image part takes one of \"image\", \"path\" or \"url\", not several")]
    TwoSources,
    #[error("{url:?} is a web address: medgemma works offline; download the image and give its path")]
    RemoteUrl { url: String },
    #[error("data: URLs are not supported: save the image to a file and give its path")]
    DataUrl,
    #[error("{url:?} is not a local file URL ({reason}): give a path, or file:///absolute/path")]
    BadFileUrl { url: String, reason: &'static str },
}

const PART_TYPES: &str = "use text, image, image_url or series";

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
        None | Some(Value::Null) => Content::default(),
        Some(Value::String(s)) => Content::Text(s.clone()),
        Some(Value::Array(items)) => Content::Parts(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    part_from_value(item).map_err(|problem| SchemaError::BadPart {
                        number,
                        part: i + 1,
                        problem,
                    })
                })
                .collect::<Result<_, _>>()?,
        ),
        Some(other) => return Err(wrong("content", "a string or a list of parts", other)),
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
    if !images.is_empty() && matches!(content, Content::Parts(_)) {
        return Err(SchemaError::ImagesWithPartList { number });
    }
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

/// One part of a content list: `{"type": "text", "text": ...}`; `{"type": "image", "image" | "path" | "url":
/// PATH}` (Hugging Face); `{"type": "image_url", "image_url": {"url": PATH}}` (OpenAI); `{"type": "series",
/// "series": DIR}`. An image may be given as a `file://` URL; web and `data:` URLs are refused.
fn part_from_value(value: &serde_json::Value) -> Result<Part, PartProblem> {
    use serde_json::Value;
    let Value::Object(object) = value else {
        return Err(PartProblem::NotAnObject { found: kind(value) });
    };
    let kind_name = match object.get("type") {
        None => return Err(PartProblem::MissingType),
        Some(Value::String(t)) => t.as_str(),
        Some(other) => {
            return Err(PartProblem::UnknownType {
                found: other.to_string(),
            })
        }
    };
    let (ty, fields): (&'static str, &[&str]) = match kind_name {
        "text" => ("text", &["type", "text"]),
        "image" => ("image", &["type", "image", "path", "url"]),
        "image_url" => ("image_url", &["type", "image_url"]),
        "series" => ("series", &["type", "series"]),
        other => {
            return Err(PartProblem::UnknownType {
                found: format!("{other:?}"),
            })
        }
    };
    if let Some(field) = object.keys().find(|k| !fields.contains(&k.as_str())) {
        return Err(PartProblem::UnknownField {
            kind: ty,
            field: field.clone(),
        });
    }
    let string = |field: &'static str, v: &Value| match v {
        Value::String(s) => Ok(s.clone()),
        other => Err(PartProblem::WrongType {
            field,
            expected: "a string",
            found: kind(other),
        }),
    };
    let required = |field: &'static str| object.get(field).ok_or(PartProblem::Missing { kind: ty, field });
    match ty {
        "text" => Ok(Part::Text(string("text", required("text")?)?)),
        "series" => Ok(Part::Series(local_path(&string("series", required("series")?)?)?)),
        "image" => {
            let mut given = ["image", "path", "url"]
                .into_iter()
                .filter_map(|f| object.get(f).map(|v| (f, v)));
            let (field, v) = given.next().ok_or(PartProblem::Missing {
                kind: ty,
                field: "image",
            })?;
            if given.next().is_some() {
                return Err(PartProblem::TwoSources);
            }
            Ok(Part::Image(local_path(&string(field, v)?)?))
        }
        _ => {
            let url = match required("image_url")? {
                Value::Object(inner) => {
                    if let Some(field) = inner.keys().find(|k| !["url", "detail"].contains(&k.as_str())) {
                        return Err(PartProblem::UnknownField {
                            kind: ty,
                            field: format!("image_url.{field}"),
                        });
                    }
                    let url = inner.get("url").ok_or(PartProblem::Missing {
                        kind: ty,
                        field: "image_url.url",
                    })?;
                    string("image_url.url", url)?
                }
                other => string("image_url", other)?,
            };
            Ok(Part::Image(local_path(&url)?))
        }
    }
}

/// A local path from a path or a `file://` URL (percent-decoded). Web addresses and `data:` URLs are refused.
fn local_path(text: &str) -> Result<PathBuf, PartProblem> {
    let lower = text.get(..8).unwrap_or(text).to_ascii_lowercase();
    if lower.starts_with("data:") {
        return Err(PartProblem::DataUrl);
    }
    let Some(rest) = lower.starts_with("file://").then(|| &text[7..]) else {
        if text.contains("://") {
            return Err(PartProblem::RemoteUrl { url: text.into() });
        }
        return Ok(PathBuf::from(text));
    };
    let bad = |reason| PartProblem::BadFileUrl {
        url: text.into(),
        reason,
    };
    let rest = rest.strip_prefix("localhost").unwrap_or(rest);
    if !rest.starts_with('/') {
        return Err(bad("another host"));
    }
    let mut bytes = Vec::with_capacity(rest.len());
    let mut input = rest.bytes();
    while let Some(b) = input.next() {
        if b == b'%' {
            let hex = [input.next(), input.next()];
            let digit = |d: Option<u8>| d.and_then(|d| char::from(d).to_digit(16));
            match hex.map(digit) {
                [Some(hi), Some(lo)] => bytes.push((hi * 16 + lo) as u8),
                _ => return Err(bad("a % not followed by two hex digits")),
            }
        } else {
            bytes.push(b);
        }
    }
    String::from_utf8(bytes)
        .map(PathBuf::from)
        .map_err(|_| bad("not UTF-8 once decoded"))
}

#[cfg(test)]
mod tests {
    use super::super::Conversation;
    use super::*;

    fn parts_of(json: &str) -> Vec<Part> {
        let file: ConversationFile = serde_json::from_str(json).unwrap();
        let c = Conversation::from_messages(file.into_messages()).unwrap();
        c.turns.last().unwrap().parts.clone()
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
            e.starts_with("message 1: \"content\" must be a string or a list of parts, found a number"),
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
    fn every_part_shape_is_read() {
        let parts = parts_of(
            r#"[{"role": "user", "content": [
                {"type": "text", "text": "Compare"},
                {"type": "image", "image": "a.png"},
                {"type": "image", "path": "b.png"},
                {"type": "image", "url": "file:///scans/c%20d.png"},
                {"type": "image_url", "image_url": {"url": "file://localhost/e.png", "detail": "high"}},
                {"type": "image_url", "image_url": "f.png"},
                {"type": "series", "series": "ct/"},
                {"type": "text", "text": "now"}
            ]}]"#,
        );
        assert_eq!(
            parts,
            vec![
                Part::Text("Compare".into()),
                Part::Image("a.png".into()),
                Part::Image("b.png".into()),
                Part::Image("/scans/c d.png".into()),
                Part::Image("/e.png".into()),
                Part::Image("f.png".into()),
                Part::Series("ct/".into()),
                Part::Text("now".into()),
            ]
        );
        // A list of texts on a model turn, and one text part as the system prompt (as OpenAI clients send them).
        let file: ConversationFile = serde_json::from_str(
            r#"[{"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]"#,
        )
        .unwrap();
        let c = Conversation::from_messages(file.into_messages()).unwrap();
        assert_eq!(c.system.as_deref(), Some("Be brief."));
        assert_eq!(c.turns[1].text(), "ab");
    }

    #[test]
    fn bad_parts_are_refused_with_the_message_and_part_number() {
        let cases = [
            (
                r#"{"type": "image", "image": "https://example.com/x.png"}"#,
                "message 2, part 2: \"https://example.com/x.png\" is a web address: medgemma works offline; download the image and give its path",
            ),
            (
                r#"{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}"#,
                "message 2, part 2: data: URLs are not supported: save the image to a file and give its path",
            ),
            (
                r#"{"type": "audio", "audio": "x.wav"}"#,
                "message 2, part 2: unknown part type \"audio\" (use text, image, image_url or series)",
            ),
            (r#"{"text": "x"}"#, "message 2, part 2: missing \"type\""),
            (r#""x""#, "message 2, part 2: must be an object"),
            (r#"{"type": "text"}"#, "message 2, part 2: a \"text\" part needs \"text\""),
            (
                r#"{"type": "text", "text": 5}"#,
                "message 2, part 2: \"text\" must be a string, found a number",
            ),
            (
                r#"{"type": "image", "image": "a.png", "path": "b.png"}"#,
                "message 2, part 2: an image part takes one of",
            ),
            (
                r#"{"type": "image", "imgae": "a.png"}"#,
                "message 2, part 2: unknown field \"imgae\" in a \"image\" part",
            ),
            (
                r#"{"type": "image", "url": "file://server/share/a.png"}"#,
                "message 2, part 2: \"file://server/share/a.png\" is not a local file URL (another host)",
            ),
            (
                r#"{"type": "image", "url": "file:///a%2.png"}"#,
                "is not a local file URL (a % not followed by two hex digits)",
            ),
        ];
        for (part, expected) in cases {
            let json = format!(
                r#"[{{"role": "system", "content": "s"}}, {{"role": "user", "content": [{{"type": "text", "text": "q"}}, {part}]}}]"#
            );
            let e = schema_error(&json);
            assert!(e.contains(expected), "{part}: {e}");
        }
        let e = schema_error(r#"[{"role": "user", "content": [{"type": "text", "text": "q"}], "images": ["a.png"]}]"#);
        assert!(
            e.starts_with("message 1: \"images\" cannot be combined with a list \"content\""),
            "{e}"
        );
    }
}
