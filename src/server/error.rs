//! The server's errors in OpenAI's shape, `{"error": {"message", "type", "code"}}`, with their HTTP status (ollama's
//! clients read the same body: they look for `error`).
//!
//! Owns: the status and type of every refusal, and the rule that messages name the field and the fix but never
//! quote the prompt or an image (patient data). Must not: log anything.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// A refused or failed request.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// OpenAI's error type: `invalid_request_error`, `authentication_error`, `not_found_error`, `server_error`, ...
    pub kind: &'static str,
    /// A short machine-readable code (`context_length_exceeded`, `model_not_found`, ...), if any.
    pub code: Option<&'static str>,
    /// Seconds to wait before trying again (a full queue, a model still loading).
    pub retry_after: Option<u32>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            kind,
            code: None,
            retry_after: None,
        }
    }

    /// 400: the request is wrong; `message` says which field and how to fix it.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    pub fn with_code(mut self, code: &'static str) -> ApiError {
        self.code = Some(code);
        self
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "missing or wrong API key: send the server's key as `Authorization: Bearer KEY`",
        )
        .with_code("invalid_api_key")
    }

    pub fn model_not_found(asked: &str, served: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found_error",
            format!("model {asked:?} is not served here; this server serves {served:?} (GET /v1/models)"),
        )
        .with_code("model_not_found")
    }

    pub fn not_found(path: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found_error",
            format!(
                "no such endpoint {path:?}; this server has POST /v1/chat/completions, GET /v1/models, POST /api/chat, \
                 GET /api/tags and GET /health"
            ),
        )
    }

    pub fn too_large(what: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "invalid_request_error", what).with_code("request_too_large")
    }

    /// 503 with Retry-After: every sequence is busy and the queue is full, or the model is still loading.
    pub fn busy(message: impl Into<String>, retry_after: u32) -> ApiError {
        ApiError {
            retry_after: Some(retry_after),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", message).with_code("server_busy")
        }
    }

    /// 500: the engine failed on a request that was well-formed.
    pub fn server(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    /// The error object as both APIs' clients read it.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": null,
                "code": self.code,
            }
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert("retry-after", HeaderValue::from(seconds));
        }
        response
    }
}

/// The engine's refusal of a prompt as the API reports it: too long for the context is the client's to fix (400
/// with the numbers); an image the projector cannot take likewise; anything else is the server's.
pub fn from_engine(error: &crate::engine::EngineError) -> ApiError {
    use crate::engine::EngineError;
    match error {
        EngineError::PromptTooLong {
            prompt_tokens,
            ctx_size,
            ..
        } => ApiError::bad_request(format!(
            "the prompt takes {prompt_tokens} positions (images count 256 each) and a sequence holds {ctx_size}; \
             shorten the conversation, or start the server with a larger -c/--ctx-size"
        ))
        .with_code("context_length_exceeded"),
        EngineError::ImagesWithoutMmproj => ApiError::bad_request(
            "this server has no vision projector: images need `medgemma serve --mmproj MMPROJ.gguf`",
        ),
        EngineError::Image(_)
        | EngineError::ForgedControlToken { .. }
        | EngineError::BadTokenId { .. }
        | EngineError::Grammar(_) => ApiError::bad_request(error.to_string()),
        other => ApiError::server(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_has_openai_shape() {
        let e = ApiError::bad_request("messages: missing").with_code("x");
        let body = e.body();
        assert_eq!(body["error"]["message"], "messages: missing");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["code"], "x");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn busy_says_when_to_retry() {
        let response = ApiError::busy("queue full", 2).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()["retry-after"], "2");
    }
}
