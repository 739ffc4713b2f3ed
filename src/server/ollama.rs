//! ollama's chat API: `POST /api/chat` parsed into an [`Ask`], the answer rendered as NDJSON lines (streamed by
//! default, as ollama does) or one object with `"stream": false`; and `GET /api/tags`.
//!
//! Owns: which request fields are read (model, messages with `images` as base64, stream, format "json" or a JSON
//! Schema, options temperature / top_p / top_k / seed / num_predict / stop) and the 400 for each wrong one. ollama's
//! errors are `{"error": "..."}`: its clients read that string. Must not: touch the engine or log request content.

use serde_json::{json, Value};

use super::error::ApiError;
use super::openai::{number, schema_format, seed, stop_strings};
use super::request::{
    decode_base64, field_error, json_object, message_list, role, Ask, Messages, Outcome, RequestRules,
};
use crate::conversation::{Part, Role};
use crate::settings::Allowed;
use crate::structured::OutputFormat;

pub struct ChatRequest {
    pub ask: Ask,
    pub stream: bool,
}

/// Parses an `/api/chat` body; images are decoded here.
pub fn parse(body: &[u8], rules: &RequestRules) -> Result<ChatRequest, ApiError> {
    let req = json_object(body)?;
    rules.check_model(req.get("model").and_then(Value::as_str))?;
    let stream = match req.get("stream") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(field_error("stream", "must be true or false")),
    };
    let mut sampling = rules.defaults.clone();
    let mut stop = Vec::new();
    let mut num_predict = None;
    match req.get("options") {
        None | Some(Value::Null) => {}
        Some(Value::Object(o)) => {
            if let Some(t) = number(o.get("temperature"), "options.temperature", Allowed::ZeroOrMore)? {
                sampling.temperature = t;
            }
            if let Some(p) = number(o.get("top_p"), "options.top_p", Allowed::ZeroToOne)? {
                sampling.top_p = p;
            }
            if let Some(k) = o.get("top_k").filter(|v| !v.is_null()) {
                sampling.top_k = k
                    .as_u64()
                    .and_then(|k| i32::try_from(k).ok())
                    .ok_or_else(|| field_error("options.top_k", "must be an integer of 0 or more"))?;
            }
            if let Some(s) = seed(o.get("seed"), "options.seed")? {
                sampling.seed = s;
            }
            // ollama: -1 means no limit (here: the server's limit); -2 means until the context is full.
            num_predict = match o.get("num_predict") {
                None | Some(Value::Null) => None,
                Some(v) => match v.as_i64() {
                    Some(-1) | Some(-2) => Some(rules.limits.max_tokens as u64),
                    Some(n) if n > 0 => Some(n as u64),
                    _ => return Err(field_error("options.num_predict", "must be a positive integer (or -1)")),
                },
            };
            stop = stop_strings(o.get("stop"), "options.stop")?;
        }
        Some(_) => return Err(field_error("options", "must be an object")),
    }
    sampling.max_tokens = rules.max_tokens(num_predict, "options.num_predict")?;
    let format = match req.get("format") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s == "json" => Some(OutputFormat::JsonObject),
        Some(Value::String(s)) if s.is_empty() => None,
        Some(schema @ Value::Object(_)) => Some(schema_format(schema, "format")?),
        Some(_) => return Err(field_error("format", "must be \"json\" or a JSON Schema object")),
    };
    Ok(ChatRequest {
        ask: Ask::new(messages(req.get("messages"), rules)?, sampling, format, stop)?,
        stream,
    })
}

fn messages(value: Option<&Value>, rules: &RequestRules) -> Result<Messages, ApiError> {
    let list = message_list(value)?;
    let n_images: usize = list
        .iter()
        .filter_map(|m| m.get("images").and_then(Value::as_array))
        .map(Vec::len)
        .sum();
    rules.check_image_count(n_images)?;
    let mut system = None;
    let mut turns = Vec::new();
    let mut images = Vec::new();
    for (i, message) in list.iter().enumerate() {
        let at = format!("messages[{i}]");
        let role = role(message, &at)?;
        let text = match message.get("content") {
            Some(Value::String(text)) => text.clone(),
            None | Some(Value::Null) => String::new(),
            Some(_) => return Err(field_error(&format!("{at}.content"), "must be a string")),
        };
        let mut parts = Vec::new();
        match message.get("images") {
            None | Some(Value::Null) => {}
            Some(Value::Array(list)) => {
                if role != Role::User && !list.is_empty() {
                    return Err(field_error(
                        &format!("{at}.images"),
                        "only user messages can carry images",
                    ));
                }
                for (j, item) in list.iter().enumerate() {
                    let data = item
                        .as_str()
                        .ok_or_else(|| field_error(&format!("{at}.images[{j}]"), "must be a base64 string"))?;
                    let label = format!("request image {} ({at}.images[{j}])", images.len() + 1);
                    let bytes = decode_base64(data).map_err(|why| field_error(&format!("{at}.images[{j}]"), &why))?;
                    images.push(rules.image_bytes(&bytes, &label)?);
                    // ollama puts a message's images before its text.
                    parts.push(Part::Image(label.into()));
                }
            }
            Some(_) => return Err(field_error(&format!("{at}.images"), "must be a list of base64 strings")),
        }
        if role == Role::System {
            if i != 0 {
                return Err(field_error(&at, "a system message is only allowed first"));
            }
            system = Some(text);
            continue;
        }
        if !text.is_empty() || parts.is_empty() {
            parts.push(Part::Text(text));
        }
        turns.push((role, parts));
    }
    Ok((system, turns, images))
}

/// One streamed line with a piece of the answer.
pub fn piece(model: &str, text: &str) -> Value {
    json!({
        "model": model,
        "created_at": now_rfc3339(),
        "message": {"role": "assistant", "content": text},
        "done": false,
    })
}

/// The last line (streamed) or the whole answer (`"stream": false`, with `content` the whole text).
pub fn done(model: &str, content: &str, outcome: &Outcome, total_ms: f64) -> Value {
    let ns = |ms: f64| (ms * 1e6) as u64;
    json!({
        "model": model,
        "created_at": now_rfc3339(),
        "message": {"role": "assistant", "content": content},
        "done": true,
        "done_reason": outcome.finish_reason,
        "total_duration": ns(total_ms),
        "load_duration": 0,
        "prompt_eval_count": outcome.prompt_tokens,
        "prompt_eval_duration": ns(outcome.prompt_ms),
        "eval_count": outcome.completion_tokens,
        "eval_duration": ns(outcome.generation_ms),
    })
}

/// An error as ollama's clients read it.
pub fn error_body(e: &ApiError) -> Value {
    json!({"error": e.message})
}

/// The time now as RFC 3339 in UTC (`2026-12-04T05:23:47.123Z`).
pub fn now_rfc3339() -> String {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(since.as_secs(), since.subsec_millis())
}

fn rfc3339(secs: u64, millis: u32) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> RequestRules {
        crate::server::request::test_rules(4)
    }

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_796_362_227, 5), "2026-12-04T05:30:27.005Z");
        assert_eq!(rfc3339(951_782_400, 0), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn a_request_with_options() {
        let body = json!({"model": "m:latest", "messages": [{"role": "system", "content": "s"},
            {"role": "user", "content": "q"}], "options": {"temperature": 0.2, "num_predict": 7, "seed": 3,
            "stop": ["x"], "top_k": 5}, "format": "json"});
        let r = parse(body.to_string().as_bytes(), &rules()).unwrap();
        assert!(r.stream, "ollama streams unless told not to");
        assert_eq!(r.ask.sampling.max_tokens, 7);
        assert_eq!(r.ask.sampling.top_k, 5);
        assert_eq!(r.ask.stop, ["x"]);
        assert_eq!(r.ask.format, Some(OutputFormat::JsonObject));
        assert_eq!(r.ask.conversation.system.as_deref(), Some("s"));
    }

    #[test]
    fn bad_fields() {
        for (body, field) in [
            (
                json!({"messages": [{"role": "user", "content": "q"}], "options": {"num_predict": 0}}),
                "options.num_predict",
            ),
            (
                json!({"messages": [{"role": "user", "content": "q"}], "format": 3}),
                "format",
            ),
            (
                json!({"messages": [{"role": "user", "content": 1}]}),
                "messages[0].content",
            ),
            (
                json!({"messages": [{"role": "user", "content": "q", "images": ["@@"]}]}),
                "messages[0].images[0]",
            ),
        ] {
            let e = parse(body.to_string().as_bytes(), &rules()).err().unwrap();
            assert!(e.message.starts_with(field), "{field}: {}", e.message);
        }
    }
}
