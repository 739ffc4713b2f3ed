//! OpenAI's chat completions API: `POST /v1/chat/completions` parsed into an [`Ask`], and the answer rendered as
//! one `chat.completion` or as `chat.completion.chunk` server-sent events ending with `data: [DONE]`.
//!
//! Owns: which request fields are read (model, messages with text and `image_url` parts, stream,
//! stream_options.include_usage, max_tokens / max_completion_tokens, temperature, top_p, seed, stop, n = 1,
//! response_format text / json_object / json_schema) and the 400 for each wrong one, naming the field. Fields it
//! does not use are ignored, as OpenAI's clients send many. Must not: touch the engine or log request content.

use serde_json::{json, Value};

use super::error::ApiError;
use super::request::{field_error, json_object, message_list, role, Ask, Messages, Outcome, RequestRules};
use crate::conversation::{Part, Role};
use crate::settings::{Allowed, SamplingSettings};
use crate::structured::{OutputFormat, Schema};

/// A parsed chat completion request.
pub struct ChatRequest {
    pub ask: Ask,
    pub stream: bool,
    pub include_usage: bool,
}

/// Parses a chat completion request body; images are decoded here (the caller runs this off the async threads).
pub fn parse(body: &[u8], rules: &RequestRules) -> Result<ChatRequest, ApiError> {
    let req = json_object(body)?;
    let model = match req.get("model") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(field_error("model", "must be a string")),
    };
    rules.check_model(model)?;
    if let Some(n) = req.get("n").filter(|v| !v.is_null()) {
        if n.as_u64() != Some(1) {
            return Err(field_error("n", "only n = 1 is supported (one answer per request)"));
        }
    }
    let stream = optional_bool(&req, "stream")?.unwrap_or(false);
    let include_usage = match req.get("stream_options") {
        Some(Value::Object(o)) => o.get("include_usage").and_then(Value::as_bool).unwrap_or(false),
        _ => false,
    };
    let mut sampling = rules.defaults.clone();
    sampling_fields(&req, rules, &mut sampling)?;
    let stop = stop_strings(req.get("stop"), "stop")?;
    let format = response_format(req.get("response_format"))?;
    Ok(ChatRequest {
        ask: Ask::new(messages(req.get("messages"), rules)?, sampling, format, stop)?,
        stream,
        include_usage,
    })
}

fn optional_bool(req: &serde_json::Map<String, Value>, field: &str) -> Result<Option<bool>, ApiError> {
    match req.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(field_error(field, "must be true or false")),
    }
}

/// A number field within `allowed`, if present.
pub fn number(value: Option<&Value>, field: &str, allowed: Allowed) -> Result<Option<f32>, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            let x = v.as_f64().ok_or_else(|| field_error(field, "must be a number"))?;
            crate::settings::checked_f32(x, allowed)
                .map(Some)
                .map_err(|e| field_error(field, &e.to_string()))
        }
    }
}

/// A seed: an integer from 0 to 4294967295.
pub fn seed(value: Option<&Value>, field: &str) -> Result<Option<u32>, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| field_error(field, "must be an integer from 0 to 4294967295")),
    }
}

fn sampling_fields(
    req: &serde_json::Map<String, Value>,
    rules: &RequestRules,
    sampling: &mut SamplingSettings,
) -> Result<(), ApiError> {
    let (field, asked) = match (req.get("max_completion_tokens"), req.get("max_tokens")) {
        (Some(v), _) if !v.is_null() => ("max_completion_tokens", Some(v)),
        (_, Some(v)) if !v.is_null() => ("max_tokens", Some(v)),
        _ => ("max_tokens", None),
    };
    let asked = match asked {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .ok_or_else(|| field_error(field, "must be a positive integer"))?,
        ),
    };
    sampling.max_tokens = rules.max_tokens(asked, field)?;
    if let Some(t) = number(req.get("temperature"), "temperature", Allowed::ZeroOrMore)? {
        sampling.temperature = t;
    }
    if let Some(p) = number(req.get("top_p"), "top_p", Allowed::ZeroToOne)? {
        sampling.top_p = p;
    }
    if let Some(s) = seed(req.get("seed"), "seed")? {
        sampling.seed = s;
    }
    Ok(())
}

/// `stop`: a string or a list of up to 4 strings.
pub fn stop_strings(value: Option<&Value>, field: &str) -> Result<Vec<String>, ApiError> {
    let list = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| field_error(field, "must be a string or a list of strings"))?,
        Some(_) => return Err(field_error(field, "must be a string or a list of strings")),
    };
    if list.len() > 4 {
        return Err(field_error(field, "at most 4 stop strings"));
    }
    Ok(list)
}

/// `response_format`: `{"type": "text"}`, `{"type": "json_object"}` or `{"type": "json_schema", "json_schema":
/// {"schema": {...}}}`.
fn response_format(value: Option<&Value>) -> Result<Option<OutputFormat>, ApiError> {
    let Some(value) = value.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let kind = value.get("type").and_then(Value::as_str);
    match kind {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(OutputFormat::JsonObject)),
        Some("json_schema") => {
            let schema = value
                .get("json_schema")
                .and_then(|s| s.get("schema"))
                .ok_or_else(|| field_error("response_format.json_schema.schema", "missing"))?;
            schema_format(schema, "response_format.json_schema.schema").map(Some)
        }
        _ => Err(field_error(
            "response_format.type",
            "must be \"text\", \"json_object\" or \"json_schema\"",
        )),
    }
}

/// A JSON Schema given in a request, checked as `--json-schema` checks a file.
pub fn schema_format(schema: &Value, field: &str) -> Result<OutputFormat, ApiError> {
    Schema::from_value(schema)
        .map(OutputFormat::Schema)
        .map_err(|e| field_error(field, &e.to_string()))
}

fn messages(value: Option<&Value>, rules: &RequestRules) -> Result<Messages, ApiError> {
    let list = message_list(value)?;
    let n_images: usize = list
        .iter()
        .filter_map(|m| m.get("content").and_then(Value::as_array))
        .map(|parts| {
            parts
                .iter()
                .filter(|p| p.get("type").and_then(Value::as_str) == Some("image_url"))
                .count()
        })
        .sum();
    rules.check_image_count(n_images)?;
    let mut system = None;
    let mut turns = Vec::new();
    let mut images = Vec::new();
    for (i, message) in list.iter().enumerate() {
        let at = format!("messages[{i}]");
        let role = role(message, &at)?;
        let mut parts = Vec::new();
        match message.get("content") {
            Some(Value::String(text)) => parts.push(Part::Text(text.clone())),
            Some(Value::Array(items)) => {
                for (j, item) in items.iter().enumerate() {
                    let at = format!("{at}.content[{j}]");
                    match item.get("type").and_then(Value::as_str) {
                        Some("text") => {
                            let text = item
                                .get("text")
                                .and_then(Value::as_str)
                                .ok_or_else(|| field_error(&format!("{at}.text"), "must be a string"))?;
                            parts.push(Part::Text(text.to_string()));
                        }
                        Some("image_url") => {
                            if role != Role::User {
                                return Err(field_error(&at, "only user messages can carry images"));
                            }
                            let url = match item.get("image_url") {
                                Some(Value::String(url)) => url.as_str(),
                                Some(Value::Object(o)) => o.get("url").and_then(Value::as_str).unwrap_or_default(),
                                _ => "",
                            };
                            if url.is_empty() {
                                return Err(field_error(&format!("{at}.image_url.url"), "missing"));
                            }
                            let label = format!("request image {} ({at})", images.len() + 1);
                            images.push(rules.image(url, &label)?);
                            parts.push(Part::Image(label.into()));
                        }
                        _ => return Err(field_error(&format!("{at}.type"), "must be \"text\" or \"image_url\"")),
                    }
                }
            }
            None | Some(Value::Null) if role == Role::Model => {}
            _ => {
                return Err(field_error(
                    &format!("{at}.content"),
                    "must be a string or a list of parts",
                ))
            }
        }
        if role == Role::System {
            if i != 0 {
                return Err(field_error(&at, "a system message is only allowed first"));
            }
            let text: Option<String> = parts
                .into_iter()
                .map(|p| match p {
                    Part::Text(t) => Some(t),
                    _ => None,
                })
                .collect();
            system = text;
        } else {
            turns.push((role, parts));
        }
    }
    Ok((system, turns, images))
}

/// The `usage` object.
pub fn usage(outcome: &Outcome) -> Value {
    json!({
        "prompt_tokens": outcome.prompt_tokens,
        "completion_tokens": outcome.completion_tokens,
        "total_tokens": outcome.prompt_tokens + outcome.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": outcome.cached_tokens},
    })
}

/// The whole answer as one `chat.completion`.
pub fn completion(id: &str, model: &str, created: u64, outcome: &Outcome) -> Value {
    json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "system_fingerprint": fingerprint(),
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": outcome.text},
            "logprobs": null,
            "finish_reason": outcome.finish_reason,
        }],
        "usage": usage(outcome),
    })
}

/// A `chat.completion.chunk` with `choices` (and `usage`, on the last with `stream_options.include_usage`).
fn chunk_with(id: &str, model: &str, created: u64, choices: Value, usage: Option<Value>) -> Value {
    let mut chunk = json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "system_fingerprint": fingerprint(),
        "choices": choices,
    });
    if let Some(usage) = usage {
        chunk["usage"] = usage;
    }
    chunk
}

/// One `chat.completion.chunk`: a delta, and the finish reason on the last.
pub fn chunk(id: &str, model: &str, created: u64, delta: Value, finish_reason: Option<&str>) -> Value {
    let choices = json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}]);
    chunk_with(id, model, created, choices, None)
}

/// The chunk that carries `usage` after the last (with `stream_options.include_usage`).
pub fn usage_chunk(id: &str, model: &str, created: u64, outcome: &Outcome) -> Value {
    chunk_with(id, model, created, json!([]), Some(usage(outcome)))
}

fn fingerprint() -> String {
    format!("medgemma-{}", env!("CARGO_PKG_VERSION"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> RequestRules {
        crate::server::request::test_rules(1)
    }

    fn parse_json(v: Value) -> Result<ChatRequest, ApiError> {
        parse(v.to_string().as_bytes(), &rules())
    }

    #[test]
    fn a_plain_request() {
        let r = parse_json(json!({"model": "m", "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "Findings?"}],
            "max_tokens": 5, "temperature": 0.5, "seed": 7, "stop": ["\n"], "stream": true}))
        .unwrap();
        assert!(r.stream);
        assert_eq!(r.ask.conversation.system.as_deref(), Some("Be brief."));
        assert_eq!(r.ask.conversation.turns.len(), 3);
        assert_eq!(r.ask.sampling.max_tokens, 5);
        assert_eq!(r.ask.sampling.temperature, 0.5);
        assert_eq!(r.ask.sampling.seed, 7);
        assert_eq!(r.ask.stop, ["\n"]);
    }

    #[test]
    fn max_completion_tokens_wins() {
        let r = parse_json(json!({"messages": [{"role": "user", "content": "a"}],
            "max_tokens": 9, "max_completion_tokens": 3}))
        .unwrap();
        assert_eq!(r.ask.sampling.max_tokens, 3);
    }

    #[test]
    fn wrong_fields_name_themselves() {
        let cases = [
            (json!({"messages": []}), "messages"),
            (
                json!({"messages": [{"role": "robot", "content": "a"}]}),
                "messages[0].role",
            ),
            (json!({"messages": [{"role": "user", "content": "a"}], "n": 2}), "n"),
            (
                json!({"messages": [{"role": "user", "content": "a"}], "temperature": -1}),
                "temperature",
            ),
            (
                json!({"messages": [{"role": "user", "content": "a"}], "seed": -1}),
                "seed",
            ),
            (
                json!({"messages": [{"role": "user", "content": "a"}], "stop": [1]}),
                "stop",
            ),
            (
                json!({"messages": [{"role": "user", "content": "a"}], "max_tokens": 65}),
                "max_tokens",
            ),
            (
                json!({"messages": [{"role": "user", "content": "a"}], "response_format": {"type": "xml"}}),
                "response_format.type",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "audio"}]}]}),
                "messages[0].content[0].type",
            ),
        ];
        for (body, field) in cases {
            let e = parse_json(body.clone())
                .err()
                .unwrap_or_else(|| panic!("accepted {body}"));
            assert_eq!(e.status, 400);
            assert!(e.message.starts_with(field), "{field}: {}", e.message);
        }
    }

    #[test]
    fn not_json_and_unknown_model() {
        let e = parse(b"{", &rules()).err().unwrap();
        assert!(e.message.contains("not valid JSON"));
        let e = parse_json(json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "a"}]}))
            .err()
            .unwrap();
        assert_eq!(e.status, 404);
    }

    #[test]
    fn images_count_and_need_a_projector() {
        let img = json!({"type": "image_url", "image_url": {"url": "data:image/png;base64,aGk="}});
        let e = parse_json(json!({"messages": [{"role": "user", "content": [img.clone(), img.clone()]}]}))
            .err()
            .unwrap();
        assert_eq!(e.status, 413);
        let e = parse_json(json!({"messages": [{"role": "user", "content": [img]}]}))
            .err()
            .unwrap();
        assert!(e.message.contains("--mmproj"), "{}", e.message);
    }

    #[test]
    fn response_formats() {
        let base = |f: Value| json!({"messages": [{"role": "user", "content": "a"}], "response_format": f});
        assert!(parse_json(base(json!({"type": "text"}))).unwrap().ask.format.is_none());
        assert_eq!(
            parse_json(base(json!({"type": "json_object"}))).unwrap().ask.format,
            Some(OutputFormat::JsonObject)
        );
        let schema = json!({"type": "json_schema", "json_schema": {"name": "x", "schema":
            {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}}});
        assert!(matches!(
            parse_json(base(schema)).unwrap().ask.format,
            Some(OutputFormat::Schema(_))
        ));
    }
}
