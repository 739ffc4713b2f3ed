//! What a parsed request asks of the engine ([`Ask`]), and what the engine tells the request's handler while it
//! answers ([`Event`]). Both APIs (OpenAI's and ollama's) parse into an `Ask` and render the same events.
//!
//! Owns: the server's request limits and the rules shared by both parsers (the model's name, images read from
//! `data:` URLs or allowed local paths, never fetched from the web). Must not: touch the engine or HTTP.

use std::path::{Path, PathBuf};

use base64::Engine as _;

use super::error::ApiError;
use crate::conversation::{Conversation, Part, Role, Turn};
use crate::image_input::ImageInput;
use crate::prompt_images::ImageOptions;
use crate::settings::SamplingSettings;
use crate::structured::OutputFormat;

/// One request's work: the conversation (its images named `request image N`) with its images in prompt order,
/// how to sample, the answer's shape and its stop strings.
pub struct Ask {
    pub conversation: Conversation,
    pub images: Vec<ImageInput>,
    pub sampling: SamplingSettings,
    pub format: Option<OutputFormat>,
    pub stop: Vec<String>,
}

impl Ask {
    /// A request's work from its parsed messages (validated into a conversation here) and settings.
    pub fn new(
        messages: Messages,
        sampling: SamplingSettings,
        format: Option<OutputFormat>,
        stop: Vec<String>,
    ) -> Result<Ask, ApiError> {
        let (system, turns, images) = messages;
        Ok(Ask {
            conversation: conversation(system, turns)?,
            images,
            sampling,
            format,
            stop,
        })
    }
}

/// What the engine reports about one request, in order: `Text` pieces, then `Done` or `Failed`.
#[derive(Debug)]
pub enum Event {
    Text(String),
    Done(Outcome),
    Failed(ApiError),
}

/// A finished answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The whole answer (a stop string cut off).
    pub text: String,
    /// `stop` (the model ended its turn, or a stop string) or `length` (max tokens, or the context is full).
    pub finish_reason: &'static str,
    pub prompt_tokens: usize,
    /// Prompt positions taken from the KV cache (a shared system prompt or image).
    pub cached_tokens: usize,
    pub completion_tokens: usize,
    pub prompt_ms: f64,
    pub generation_ms: f64,
}

/// The server's limits on what one request may carry.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Bytes of request body.
    pub max_body: usize,
    /// Images in one request.
    pub max_images: usize,
    /// The largest max_tokens a request may ask for.
    pub max_tokens: usize,
}

/// What every request is parsed against: the model's names, the defaults and the limits.
#[derive(Debug, Clone)]
pub struct RequestRules {
    /// The model's id (`GET /v1/models`).
    pub model_id: String,
    /// Other names that mean the same model (the file's name, its stem).
    pub aliases: Vec<String>,
    pub defaults: SamplingSettings,
    pub limits: Limits,
    pub images: ImageOptions,
    /// Folders whose files a request may name as images (`--allow-path`); canonical paths.
    pub allowed_paths: Vec<PathBuf>,
    pub has_vision: bool,
}

impl RequestRules {
    /// Refuses a model name this server does not serve (an absent name means this one).
    pub fn check_model(&self, asked: Option<&str>) -> Result<(), ApiError> {
        let Some(asked) = asked else { return Ok(()) };
        let bare = asked.strip_suffix(":latest").unwrap_or(asked);
        if bare == self.model_id || self.aliases.iter().any(|a| a == bare) {
            Ok(())
        } else {
            Err(ApiError::model_not_found(asked, &self.model_id))
        }
    }

    /// The answer length a request asked for, within the server's limit.
    pub fn max_tokens(&self, asked: Option<u64>, field: &str) -> Result<usize, ApiError> {
        match asked {
            None => Ok(self.defaults.max_tokens.min(self.limits.max_tokens)),
            Some(0) => Err(ApiError::bad_request(format!("{field} must be at least 1"))),
            Some(n) if n > self.limits.max_tokens as u64 => Err(ApiError::bad_request(format!(
                "{field} is {n}; this server allows at most {} (medgemma serve --max-tokens)",
                self.limits.max_tokens
            ))),
            Some(n) => Ok(n as usize),
        }
    }

    /// An image given by a request: a `data:` URL (base64), or a local path under `--allow-path`. Web URLs are
    /// refused: the server never fetches anything. `label` names the image in messages.
    pub fn image(&self, source: &str, label: &str) -> Result<ImageInput, ApiError> {
        if !self.has_vision {
            return Err(ApiError::bad_request(
                "this server has no vision projector: images need `medgemma serve --mmproj MMPROJ.gguf`",
            ));
        }
        let name = PathBuf::from(label);
        let o = &self.images;
        let loaded = if let Some(rest) = source.strip_prefix("data:") {
            let bytes = data_url_bytes(rest).map_err(|why| ApiError::bad_request(format!("{label}: {why}")))?;
            return self.image_bytes(&bytes, label);
        } else if source.starts_with("http://") || source.starts_with("https://") {
            return Err(ApiError::bad_request(format!(
                "{label}: web URLs are refused (this server never fetches anything): send the image as a data URL \
                 (data:image/png;base64,...)"
            )));
        } else {
            let path = self.allowed_file(source, label)?;
            ImageInput::load_with(&path, o.fit, o.side, &o.dicom).map(|mut image| {
                image.path = name;
                image
            })
        };
        loaded.map_err(|e| ApiError::bad_request(e.to_string()))
    }

    /// An image given as bytes (ollama's base64 `images`).
    pub fn image_bytes(&self, bytes: &[u8], label: &str) -> Result<ImageInput, ApiError> {
        if !self.has_vision {
            return Err(ApiError::bad_request(
                "this server has no vision projector: images need `medgemma serve --mmproj MMPROJ.gguf`",
            ));
        }
        let o = &self.images;
        ImageInput::from_bytes(Path::new(label), bytes, o.fit, o.side, &o.dicom)
            .map_err(|e| ApiError::bad_request(e.to_string()))
    }

    /// A local image path (or `file://` URL), allowed only beneath a `--allow-path` folder.
    fn allowed_file(&self, source: &str, label: &str) -> Result<PathBuf, ApiError> {
        let raw = source.strip_prefix("file://").unwrap_or(source);
        let refused = || {
            ApiError::bad_request(format!(
                "{label}: local files are readable only beneath a folder the server allows (medgemma serve \
                 --allow-path DIR); send the image as a data URL (data:image/png;base64,...) instead"
            ))
        };
        if self.allowed_paths.is_empty() || !Path::new(raw).is_absolute() {
            return Err(refused());
        }
        let path = std::fs::canonicalize(raw)
            .map_err(|_| ApiError::bad_request(format!("{label}: no such file beneath the allowed folders")))?;
        if self.allowed_paths.iter().any(|dir| path.starts_with(dir)) {
            Ok(path)
        } else {
            Err(refused())
        }
    }

    /// Checks the count of images against the limit.
    pub fn check_image_count(&self, n: usize) -> Result<(), ApiError> {
        if n > self.limits.max_images {
            return Err(ApiError::too_large(format!(
                "the request has {n} images; this server takes at most {} per request (medgemma serve --max-images)",
                self.limits.max_images
            )));
        }
        Ok(())
    }
}

/// Rules for unit tests: model `m` (alias `tiny.gguf`), at most `max_images` images and 64 tokens, no projector.
#[cfg(test)]
pub fn test_rules(max_images: usize) -> RequestRules {
    RequestRules {
        model_id: "m".into(),
        aliases: vec!["tiny.gguf".into()],
        defaults: SamplingSettings::default(),
        limits: Limits {
            max_body: 1 << 20,
            max_images,
            max_tokens: 64,
        },
        images: ImageOptions {
            side: 896,
            ..ImageOptions::default()
        },
        allowed_paths: Vec::new(),
        has_vision: false,
    }
}

/// A wrong field of a request: `FIELD: WHAT` (400).
pub fn field_error(field: &str, what: &str) -> ApiError {
    ApiError::bad_request(format!("{field}: {what}"))
}

/// A request body as a JSON object.
pub fn json_object(body: &[u8]) -> Result<serde_json::Map<String, serde_json::Value>, ApiError> {
    match serde_json::from_slice(body) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::bad_request("the request body must be a JSON object")),
        Err(e) => Err(ApiError::bad_request(format!(
            "the request body is not valid JSON ({e})"
        ))),
    }
}

/// A request's messages as parsed: the system prompt, the turns (role and parts), the images in prompt order.
pub type Messages = (Option<String>, Vec<(Role, Vec<Part>)>, Vec<ImageInput>);

/// The `messages` field: a non-empty list.
pub fn message_list(value: Option<&serde_json::Value>) -> Result<&Vec<serde_json::Value>, ApiError> {
    use serde_json::Value;
    match value {
        Some(Value::Array(list)) if !list.is_empty() => Ok(list),
        Some(Value::Array(_)) => Err(field_error("messages", "is empty: send at least one user message")),
        None | Some(Value::Null) => Err(field_error("messages", "missing")),
        Some(_) => Err(field_error("messages", "must be a list of messages")),
    }
}

/// A message's `role`: system (also `developer` for OpenAI), user, assistant (also `model`).
pub fn role(message: &serde_json::Value, at: &str) -> Result<Role, ApiError> {
    match message.get("role").and_then(serde_json::Value::as_str) {
        Some("system") | Some("developer") => Ok(Role::System),
        Some("user") => Ok(Role::User),
        Some("assistant") | Some("model") => Ok(Role::Model),
        Some(other) => Err(field_error(
            &format!("{at}.role"),
            &format!("{other:?} is not one of system, user, assistant"),
        )),
        None => Err(field_error(&format!("{at}.role"), "missing")),
    }
}

/// The bytes of a `data:` URL after `data:`: `[MEDIATYPE][;base64],DATA`. Only base64 data is taken.
fn data_url_bytes(rest: &str) -> Result<Vec<u8>, String> {
    let (meta, data) = rest
        .split_once(',')
        .ok_or("a data URL needs a comma before its data (data:image/png;base64,...)")?;
    if !meta.split(';').any(|p| p.eq_ignore_ascii_case("base64")) {
        return Err("the data URL is not base64 (data:image/png;base64,...)".into());
    }
    decode_base64(data)
}

/// Standard base64 with or without padding, whitespace ignored (ollama's `images` and data URLs).
pub fn decode_base64(data: &str) -> Result<Vec<u8>, String> {
    let compact: String = data.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    engine
        .decode(compact.as_bytes())
        .map_err(|e| format!("the image is not valid base64 ({e})"))
}

/// Builds the validated conversation of a request: `turns` as (role, parts) in order, the system prompt first.
pub fn conversation(system: Option<String>, turns: Vec<(Role, Vec<Part>)>) -> Result<Conversation, ApiError> {
    let mut conversation = Conversation {
        system,
        turns: Vec::new(),
    };
    for (index, (role, parts)) in turns.into_iter().enumerate() {
        let expected = if index % 2 == 0 { Role::User } else { Role::Model };
        if role != expected {
            return Err(ApiError::bad_request(format!(
                "messages: roles must alternate user, assistant, user, ... after an optional system message \
                 (message {} is {})",
                index + 1 + usize::from(conversation.system.is_some()),
                match role {
                    Role::User => "user",
                    Role::Model => "assistant",
                    Role::System => "system",
                }
            )));
        }
        conversation.turns.push(match role {
            Role::Model => Turn::model(
                parts
                    .iter()
                    .filter_map(|p| match p {
                        Part::Text(t) => Some(t.as_str()),
                        _ => None,
                    })
                    .collect::<String>(),
                None,
                false,
            ),
            _ => Turn::user_parts(parts),
        });
    }
    conversation
        .check_ready_to_answer()
        .map_err(|e| ApiError::bad_request(format!("messages: {e}")))?;
    Ok(conversation)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> RequestRules {
        RequestRules {
            model_id: "medgemma-4b-it".into(),
            has_vision: true,
            limits: Limits {
                max_tokens: 100,
                ..test_rules(2).limits
            },
            ..test_rules(2)
        }
    }

    #[test]
    fn model_names() {
        let r = rules();
        assert!(r.check_model(None).is_ok());
        assert!(r.check_model(Some("medgemma-4b-it")).is_ok());
        assert!(r.check_model(Some("medgemma-4b-it:latest")).is_ok());
        assert!(r.check_model(Some("tiny.gguf")).is_ok());
        assert_eq!(r.check_model(Some("gpt-4")).unwrap_err().status, 404);
    }

    #[test]
    fn max_tokens_bounds() {
        let r = rules();
        assert_eq!(r.max_tokens(None, "max_tokens").unwrap(), 100);
        assert_eq!(r.max_tokens(Some(7), "max_tokens").unwrap(), 7);
        assert!(r.max_tokens(Some(0), "max_tokens").is_err());
        let e = r.max_tokens(Some(101), "max_tokens").unwrap_err();
        assert!(e.message.contains("at most 100"), "{}", e.message);
    }

    #[test]
    fn data_urls() {
        assert_eq!(data_url_bytes("image/png;base64,aGk=").unwrap(), b"hi");
        assert_eq!(data_url_bytes("image/png;base64,aGk").unwrap(), b"hi");
        assert!(data_url_bytes("image/png,hi").is_err());
        assert!(data_url_bytes("image/png;base64").is_err());
        assert!(data_url_bytes("image/png;base64,@@@").is_err());
    }

    #[test]
    fn web_urls_and_paths_are_refused() {
        let r = rules();
        let e = r.image("https://example.org/x.png", "image 1").unwrap_err();
        assert!(e.message.contains("never fetches"), "{}", e.message);
        let e = r.image("/etc/passwd", "image 1").unwrap_err();
        assert!(e.message.contains("--allow-path"), "{}", e.message);
        let e = r.image("data:image/png;base64,aGk=", "image 1").unwrap_err();
        assert!(
            e.message.starts_with("image image 1") || e.message.contains("image 1"),
            "{}",
            e.message
        );
    }

    #[test]
    fn allowed_paths_are_checked_after_resolving_links() {
        let dir = tempfile::tempdir().unwrap();
        let inside = dir.path().join("in");
        std::fs::create_dir(&inside).unwrap();
        std::fs::write(dir.path().join("secret.png"), b"x").unwrap();
        let mut r = rules();
        r.allowed_paths = vec![std::fs::canonicalize(&inside).unwrap()];
        let sneaky = format!("{}/../secret.png", inside.display());
        let e = r.image(&sneaky, "image 1").unwrap_err();
        assert!(e.message.contains("--allow-path"), "{}", e.message);
    }

    #[test]
    fn roles_must_alternate() {
        let user = |t: &str| (Role::User, vec![Part::Text(t.into())]);
        assert!(conversation(None, vec![user("a")]).is_ok());
        assert!(conversation(None, vec![user("a"), user("b")]).is_err());
        assert!(conversation(None, vec![(Role::Model, vec![Part::Text("a".into())])]).is_err());
        assert!(conversation(Some("s".into()), vec![]).is_err());
    }
}
