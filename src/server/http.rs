//! The HTTP side of `medgemma serve` (axum): the routes, the API key, the body limit, and turning the engine's
//! events into responses: one JSON object, server-sent events (OpenAI) or NDJSON lines (ollama).
//!
//! Owns: routing, authentication (a bearer key compared in constant time; `/health` needs none), reading bodies
//! within the limit (413 beyond it), parsing off the async threads (images are decoded there), and the rule that a
//! streamed answer's status is known before its first byte: the response starts with the answer's first piece, so
//! a prompt too long for the context is a 400, not an event inside a 200. A client that goes away drops its
//! receiver, which cancels its answer at the next token. Must not: touch the engine or log request content.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::StreamExt;

use super::error::ApiError;
use super::request::{Ask, Event, Outcome, RequestRules};
use super::worker::Queue;
use super::{ollama, openai};

/// The model as the listing endpoints show it.
#[derive(Debug, Clone)]
pub struct ModelListing {
    pub id: String,
    /// The model file's modification time (seconds since 1970).
    pub created: u64,
    pub size: u64,
    pub file_type: Option<String>,
    pub parameters: u64,
}

/// Everything the handlers share.
pub struct App {
    pub queue: Queue,
    pub rules: RequestRules,
    pub api_key: Option<String>,
    pub model: ModelListing,
}

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/models", get(models))
        .route("/api/chat", post(ollama_chat))
        .route("/api/tags", get(tags))
        .route("/health", get(health))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(app.clone(), authenticate))
        .with_state(app)
}

/// Equal bytes, in a time that depends on the lengths only.
fn same_key(given: &[u8], key: &[u8]) -> bool {
    let mut diff = given.len() ^ key.len();
    for (i, k) in key.iter().enumerate() {
        diff |= usize::from(given.get(i).copied().unwrap_or(0) ^ k);
    }
    diff == 0
}

async fn authenticate(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let Some(key) = &app.api_key else {
        return next.run(request).await;
    };
    if request.uri().path() == "/health" {
        return next.run(request).await;
    }
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .unwrap_or("");
    if same_key(given.trim().as_bytes(), key.as_bytes()) {
        next.run(request).await
    } else {
        let ollama = request.uri().path().starts_with("/api/");
        error_response(ApiError::unauthorized(), ollama)
    }
}

fn error_response(e: ApiError, ollama: bool) -> Response {
    if !ollama {
        return e.into_response();
    }
    let mut response = (e.status, Json(ollama::error_body(&e))).into_response();
    if let Some(s) = e.retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    response
}

async fn not_found(request: Request) -> Response {
    ApiError::not_found(request.uri().path()).into_response()
}

async fn health(State(app): State<Arc<App>>) -> Response {
    let shared = &app.queue.shared;
    if shared.ready.load(Ordering::Acquire) && !shared.stopping.load(Ordering::Acquire) {
        return Json(json!({"status": "ok"})).into_response();
    }
    let failed = shared.load_error.lock().map(|e| e.is_some()).unwrap_or(true);
    let status = if failed {
        "error"
    } else if shared.stopping.load(Ordering::Acquire) {
        "stopping"
    } else {
        "loading"
    };
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": status}))).into_response();
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(5));
    response
}

fn modalities(app: &App) -> Vec<&'static str> {
    if app.rules.has_vision {
        vec!["text", "image"]
    } else {
        vec!["text"]
    }
}

async fn models(State(app): State<Arc<App>>) -> Response {
    Json(json!({
        "object": "list",
        "data": [{
            "id": app.model.id,
            "object": "model",
            "created": app.model.created,
            "owned_by": "medgemma",
            "input_modalities": modalities(&app),
            "output_modalities": ["text"],
        }]
    }))
    .into_response()
}

async fn tags(State(app): State<Arc<App>>) -> Response {
    let m = &app.model;
    Json(json!({
        "models": [{
            "name": m.id,
            "model": m.id,
            "modified_at": ollama::now_rfc3339(),
            "size": m.size,
            "digest": "",
            "details": {
                "format": "gguf",
                "family": "gemma3",
                "families": ["gemma3"],
                "parameter_size": format!("{:.1}B", m.parameters as f64 / 1e9),
                "quantization_level": m.file_type.clone().unwrap_or_default(),
            },
            "capabilities": if app.rules.has_vision { json!(["completion", "vision"]) } else { json!(["completion"]) },
        }]
    }))
    .into_response()
}

/// Bytes of an over-long body read and dropped before answering 413, so that a client still sending gets the
/// answer rather than a reset connection.
const DRAIN_BYTES: u64 = 64 << 20;

/// The request body, within the server's limit.
async fn read_body(headers: &HeaderMap, body: Body, max: usize) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::too_large(format!(
            "the request body is larger than this server's limit of {} MiB (medgemma serve --max-body-mb)",
            max >> 20
        ))
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64 + DRAIN_BYTES) {
        return Err(too_large());
    }
    let mut stream = body.into_data_stream();
    let mut data = Vec::with_capacity(declared.map_or(0, |n| n.min(max as u64) as usize));
    let mut total = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("the request body could not be read ({e})")))?;
        total += chunk.len() as u64;
        if total > max as u64 {
            // Too long already: read on (and drop) a bounded amount, then answer.
            if total > max as u64 + DRAIN_BYTES {
                break;
            }
            continue;
        }
        data.extend_from_slice(&chunk);
    }
    if total > max as u64 {
        return Err(too_large());
    }
    Ok(Bytes::from(data))
}

/// Reads and parses a body off the async threads (decoding images takes a while), then queues its work.
async fn parse_and_queue<P: Send + 'static>(
    app: &Arc<App>,
    headers: &HeaderMap,
    body: Body,
    parse: fn(&[u8], &RequestRules) -> Result<P, ApiError>,
    ask_of: fn(&mut P) -> Ask,
) -> Result<(P, UnboundedReceiver<Event>), ApiError> {
    let bytes = read_body(headers, body, app.rules.limits.max_body).await?;
    let parser = app.clone();
    let mut parsed = tokio::task::spawn_blocking(move || parse(&bytes, &parser.rules))
        .await
        .map_err(|e| ApiError::server(format!("the request parser failed: {e}")))??;
    let (events, receiver) = unbounded_channel();
    app.queue.send(ask_of(&mut parsed), events)?;
    Ok((parsed, receiver))
}

/// Waits for the whole answer.
async fn whole_answer(receiver: &mut UnboundedReceiver<Event>) -> Result<Outcome, ApiError> {
    loop {
        match receiver.recv().await {
            Some(Event::Text(_)) => {}
            Some(Event::Done(outcome)) => return Ok(outcome),
            Some(Event::Failed(e)) => return Err(e),
            None => return Err(ApiError::server("the engine stopped before the answer was finished")),
        }
    }
}

/// Waits for the answer's first event, so that a refusal gets its own status before anything is streamed.
async fn first_event(receiver: &mut UnboundedReceiver<Event>) -> Result<Event, ApiError> {
    match receiver.recv().await {
        Some(Event::Failed(e)) => Err(e),
        Some(event) => Ok(event),
        None => Err(ApiError::server("the engine stopped before the answer began")),
    }
}

fn take_openai(p: &mut openai::ChatRequest) -> Ask {
    std::mem::replace(&mut p.ask, empty_ask())
}

fn take_ollama(p: &mut ollama::ChatRequest) -> Ask {
    std::mem::replace(&mut p.ask, empty_ask())
}

fn empty_ask() -> Ask {
    Ask {
        conversation: Default::default(),
        images: Vec::new(),
        sampling: Default::default(),
        format: None,
        stop: Vec::new(),
    }
}

fn created_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn chat_completions(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    match openai_answer(&app, &headers, body).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn openai_answer(app: &Arc<App>, headers: &HeaderMap, body: Body) -> Result<Response, ApiError> {
    let (parsed, mut receiver) = parse_and_queue(app, headers, body, openai::parse, take_openai).await?;
    let created = created_now();
    let id = format!("chatcmpl-{:x}{:08x}", created, rand_u32());
    let model = app.model.id.clone();
    if !parsed.stream {
        let outcome = whole_answer(&mut receiver).await?;
        return Ok(Json(openai::completion(&id, &model, created, &outcome)).into_response());
    }
    let first = first_event(&mut receiver).await?;
    let include_usage = parsed.include_usage;
    let sse = |value: Value| format!("data: {value}\n\n");
    let role = Bytes::from(sse(openai::chunk(
        &id,
        &model,
        created,
        json!({"role": "assistant", "content": ""}),
        None,
    )));
    let render = move |event: Event| -> Result<Bytes, Infallible> {
        let text = match event {
            Event::Text(piece) => sse(openai::chunk(&id, &model, created, json!({"content": piece}), None)),
            Event::Done(outcome) => {
                let mut out = sse(openai::chunk(
                    &id,
                    &model,
                    created,
                    json!({}),
                    Some(outcome.finish_reason),
                ));
                if include_usage {
                    out.push_str(&sse(openai::usage_chunk(&id, &model, created, &outcome)));
                }
                out.push_str("data: [DONE]\n\n");
                out
            }
            Event::Failed(e) => sse(e.body()),
        };
        Ok(Bytes::from(text))
    };
    let head = tokio_stream::iter([Ok(role), render(first)]);
    let stream = head.chain(UnboundedReceiverStream::new(receiver).map(render));
    Ok(streaming(stream, "text/event-stream"))
}

fn streaming(
    stream: impl tokio_stream::Stream<Item = Result<Bytes, Infallible>> + Send + 'static,
    content_type: &'static str,
) -> Response {
    let mut response = Body::from_stream(stream).into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

async fn ollama_chat(State(app): State<Arc<App>>, headers: HeaderMap, body: Body) -> Response {
    match ollama_answer(&app, &headers, body).await {
        Ok(response) => response,
        Err(e) => error_response(e, true),
    }
}

async fn ollama_answer(app: &Arc<App>, headers: &HeaderMap, body: Body) -> Result<Response, ApiError> {
    let started = Instant::now();
    let (parsed, mut receiver) = parse_and_queue(app, headers, body, ollama::parse, take_ollama).await?;
    let model = app.model.id.clone();
    if !parsed.stream {
        let outcome = whole_answer(&mut receiver).await?;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        return Ok(Json(ollama::done(&model, &outcome.text, &outcome, ms)).into_response());
    }
    let first = first_event(&mut receiver).await?;
    let render = move |event: Event| -> Result<Bytes, Infallible> {
        let value = match event {
            Event::Text(piece) => ollama::piece(&model, &piece),
            Event::Done(outcome) => ollama::done(&model, "", &outcome, started.elapsed().as_secs_f64() * 1000.0),
            Event::Failed(e) => ollama::error_body(&e),
        };
        Ok(Bytes::from(format!("{value}\n")))
    };
    let stream = tokio_stream::iter([render(first)]).chain(UnboundedReceiverStream::new(receiver).map(render));
    Ok(streaming(stream, "application/x-ndjson"))
}

/// A few random bits for ids (not security: ids only need to differ).
fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(capacity: usize) -> (Arc<App>, std::sync::mpsc::Receiver<super::super::worker::Work>) {
        let (queue, receiver) = super::super::worker::test_queue(capacity);
        let app = App {
            queue,
            rules: crate::server::request::test_rules(1),
            api_key: None,
            model: ModelListing {
                id: "m".into(),
                created: 0,
                size: 0,
                file_type: None,
                parameters: 0,
            },
        };
        (Arc::new(app), receiver)
    }

    async fn status_of(response: Response) -> (StatusCode, Value, Option<String>) {
        let status = response.status();
        let retry = response
            .headers()
            .get(header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_string());
        let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap(), retry)
    }

    #[test]
    fn health_says_loading_then_ok_then_stopping() {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let (app, _receiver) = app(1);
            let (status, body, retry) = status_of(health(State(app.clone())).await).await;
            assert_eq!(
                (status, body["status"].as_str(), retry.as_deref()),
                (StatusCode::SERVICE_UNAVAILABLE, Some("loading"), Some("5"))
            );
            app.queue.shared.ready.store(true, Ordering::Release);
            let (status, body, _) = status_of(health(State(app.clone())).await).await;
            assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("ok")));
            app.queue.shared.stopping.store(true, Ordering::Release);
            let (status, body, _) = status_of(health(State(app.clone())).await).await;
            assert_eq!(
                (status, body["status"].as_str()),
                (StatusCode::SERVICE_UNAVAILABLE, Some("stopping"))
            );
        });
    }

    #[test]
    fn requests_wait_for_the_model_and_a_full_queue_is_refused() {
        let (app, receiver) = app(1);
        let ask = || empty_ask();
        let (events, _) = unbounded_channel();
        let e = app.queue.send(ask(), events.clone()).unwrap_err();
        assert_eq!((e.status, e.retry_after), (StatusCode::SERVICE_UNAVAILABLE, Some(5)));
        assert!(e.message.contains("still loading"), "{}", e.message);
        app.queue.shared.ready.store(true, Ordering::Release);
        assert_eq!(app.queue.send(ask(), events.clone()).unwrap(), 1);
        let e = app.queue.send(ask(), events.clone()).unwrap_err();
        assert_eq!((e.status, e.retry_after), (StatusCode::SERVICE_UNAVAILABLE, Some(1)));
        assert_eq!(receiver.try_recv().unwrap().id, 1);
        assert!(
            app.queue.send(ask(), events).is_ok(),
            "a freed place takes the next request"
        );
    }

    #[test]
    fn keys() {
        assert!(same_key(b"secret", b"secret"));
        assert!(!same_key(b"secreT", b"secret"));
        assert!(!same_key(b"secret2", b"secret"));
        assert!(!same_key(b"", b"secret"));
        assert!(!same_key(b"secre", b"secret"));
    }
}
