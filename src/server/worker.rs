//! The engine thread of `medgemma serve`: it loads the model, then takes requests from the queue into the
//! engine's scheduler (the one batch uses) as sequences free up, and decodes every running answer together, one
//! token of each per step (continuous batching). A sequence keeps what it holds after its answer, so a later
//! request with the same system prompt or image starts from it.
//!
//! Owns: the queue's far end, the request's events (text pieces as they come, then the outcome or the error),
//! cancellation (a client that went away, or the server stopping, ends its answer at the next token and frees its
//! sequence), one stderr line per request without any of its text. Must not: parse HTTP or JSON.

use std::cell::RefCell;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;

use super::error::{from_engine, ApiError};
use super::request::{Ask, Event, Outcome};
use super::stop::StopStrings;
use crate::engine::{
    Engine, FinishReason, Finished, GeneratedToken, LlamaScheduler, LoadOptions, PreparedPrompt, Scheduler,
};
use crate::server::log;
use crate::settings::{ContextSettings, Grammar, SamplingSettings};

/// A request on its way to the engine, with where its events go.
pub struct Work {
    pub id: u64,
    pub ask: Ask,
    pub events: UnboundedSender<Event>,
}

/// What the HTTP side and the engine thread share.
#[derive(Default)]
pub struct Shared {
    /// The model is loaded and requests are taken.
    pub ready: AtomicBool,
    /// SIGINT/SIGTERM: answers in flight end at their next token, queued requests are refused.
    pub stopping: AtomicBool,
    /// Why loading failed, for `/health` in the moment before the server exits.
    pub load_error: Mutex<Option<String>>,
    next_id: AtomicU64,
}

/// The HTTP side's end of the queue.
#[derive(Clone)]
pub struct Queue {
    sender: SyncSender<Work>,
    pub shared: Arc<Shared>,
}

impl Queue {
    /// Hands a request to the engine, or refuses it at once when the queue is full (503 with Retry-After).
    pub fn send(&self, ask: Ask, events: UnboundedSender<Event>) -> Result<u64, ApiError> {
        if !self.shared.ready.load(Ordering::Acquire) {
            return Err(ApiError::busy(
                "the model is still loading; try again shortly (GET /health)",
                5,
            ));
        }
        if self.shared.stopping.load(Ordering::Acquire) {
            return Err(ApiError::busy("the server is shutting down", 5));
        }
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        match self.sender.try_send(Work { id, ask, events }) {
            Ok(()) => Ok(id),
            Err(TrySendError::Full(_)) => Err(ApiError::busy(
                "every sequence is busy and the queue is full; try again shortly (medgemma serve --parallel and \
                 --queue set how many requests are taken)",
                1,
            )),
            Err(TrySendError::Disconnected(_)) => Err(ApiError::busy("the engine has stopped", 5)),
        }
    }
}

/// A queue with no engine behind it, for tests of the HTTP side: the receiver gets what is sent.
#[cfg(test)]
pub fn test_queue(capacity: usize) -> (Queue, Receiver<Work>) {
    let (sender, receiver) = std::sync::mpsc::sync_channel(capacity);
    let queue = Queue {
        sender,
        shared: Arc::new(Shared::default()),
    };
    (queue, receiver)
}

/// What the engine thread needs to start.
pub struct EngineSetup {
    pub load: LoadOptions,
    pub context: ContextSettings,
    pub parallel: usize,
    /// Requests waiting for a sequence beyond the ones being answered.
    pub queue: usize,
}

/// Starts the engine thread: it loads the model and serves the queue until the server stops. The thread's
/// result is the load (or context) error, if any.
pub fn spawn(setup: EngineSetup) -> (Queue, std::thread::JoinHandle<Result<(), crate::engine::EngineError>>) {
    let (sender, receiver) = std::sync::mpsc::sync_channel(setup.queue);
    let shared = Arc::new(Shared::default());
    let thread_shared = shared.clone();
    let handle = std::thread::Builder::new()
        .name("medgemma-engine".into())
        .spawn(move || {
            let result = serve(&setup, receiver, &thread_shared);
            if let Err(e) = &result {
                *thread_shared.load_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
            }
            thread_shared.stopping.store(true, Ordering::Release);
            result
        })
        .expect("the engine thread starts");
    (Queue { sender, shared }, handle)
}

/// One answer in the scheduler: where its events go, its stop strings, its prompt's size and start.
struct Answering {
    id: u64,
    events: UnboundedSender<Event>,
    stop: RefCell<StopStrings>,
    prompt_tokens: usize,
    started: Instant,
}

fn serve(setup: &EngineSetup, queue: Receiver<Work>, shared: &Shared) -> Result<(), crate::engine::EngineError> {
    let started = Instant::now();
    let engine = Engine::load(&setup.load)?;
    let parallel = setup.parallel.max(1);
    let mut scheduler: LlamaScheduler<Answering> = Scheduler::new(&engine, &setup.context, parallel, true)?;
    shared.ready.store(true, Ordering::Release);
    log!(
        "model loaded in {:.1} s; {parallel} sequence(s) of {} positions",
        started.elapsed().as_secs_f64(),
        scheduler.ctx_size()
    );
    let stopping = &shared.stopping;
    let mut on_token = |tag: &Answering, token: &GeneratedToken| -> ControlFlow<()> {
        if stopping.load(Ordering::Acquire) || tag.events.is_closed() {
            return ControlFlow::Break(());
        }
        if token.thinking || token.text.is_empty() {
            return ControlFlow::Continue(());
        }
        let piece = tag.stop.borrow_mut().push(&token.text);
        if !piece.text.is_empty() && tag.events.send(Event::Text(piece.text)).is_err() {
            return ControlFlow::Break(());
        }
        if piece.stopped {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    };
    loop {
        if stopping.load(Ordering::Acquire) {
            while let Ok(work) = queue.try_recv() {
                let _ = work
                    .events
                    .send(Event::Failed(ApiError::busy("the server is shutting down", 5)));
            }
            if scheduler.active() == 0 {
                break;
            }
        } else {
            // The requests waiting for the free sequences are prepared and submitted together (their prompts are
            // evaluated in shared batches).
            let (mut tags, mut prompts) = (Vec::new(), Vec::new());
            while scheduler.active() + tags.len() < parallel {
                let work = if scheduler.active() + tags.len() == 0 {
                    match queue.recv_timeout(Duration::from_millis(100)) {
                        Ok(work) => work,
                        Err(RecvTimeoutError::Timeout) => break,
                        Err(RecvTimeoutError::Disconnected) => return Ok(()),
                    }
                } else {
                    match queue.try_recv() {
                        Ok(work) => work,
                        Err(_) => break,
                    }
                };
                if let Some((tag, prompt, sampling)) = admit(&engine, &scheduler, work) {
                    tags.push(tag);
                    prompts.push((prompt, sampling));
                }
            }
            let waiting = tags.into_iter().zip(&prompts).map(|(t, (p, s))| (t, p, s)).collect();
            for outcome in scheduler.submit_many(waiting, &mut on_token) {
                match outcome {
                    Ok(Some(done)) => report(done, stopping),
                    Ok(None) => {}
                    Err((tag, e)) => {
                        let e = from_engine(&e);
                        log!("request {}: refused ({}): {}", tag.id, e.status.as_u16(), e.message);
                        let _ = tag.events.send(Event::Failed(e));
                    }
                }
            }
        }
        for done in scheduler.step(&mut on_token) {
            report(done, stopping);
        }
    }
    if let Some(line) = engine.image_use().and_then(|u| crate::terminal::image_use_line(&u)) {
        log!("{line}");
    }
    Ok(())
}

/// Prepares a request's prompt for a free sequence; a request that cannot be answered is refused here (and gives
/// None).
fn admit(
    engine: &Engine,
    scheduler: &LlamaScheduler<Answering>,
    work: Work,
) -> Option<(Answering, PreparedPrompt, SamplingSettings)> {
    let Work { id, ask, events } = work;
    if events.is_closed() {
        log!("request {id}: the client left before it started");
        return None;
    }
    let fail = |e: ApiError| {
        log!("request {id}: refused ({}): {}", e.status.as_u16(), e.message);
        let _ = events.send(Event::Failed(e));
    };
    let mut sampling = ask.sampling;
    if let Some(format) = &ask.format {
        let grammar = format.grammar();
        if let Err(e) = engine.check_grammar(&grammar) {
            fail(ApiError::bad_request(format!("response_format: {e}")));
            return None;
        }
        sampling.grammar = Some(Grammar::new(&grammar));
    }
    let prompt = match engine.prepare(&ask.conversation, &ask.images) {
        Ok(prompt) => prompt,
        Err(e) => {
            fail(from_engine(&e));
            return None;
        }
    };
    if let Err(e) = scheduler.check_fits(&prompt) {
        fail(from_engine(&e));
        return None;
    }
    let tag = Answering {
        id,
        events: events.clone(),
        stop: RefCell::new(StopStrings::new(ask.stop)),
        prompt_tokens: prompt.n_tokens(),
        started: Instant::now(),
    };
    Some((tag, prompt, sampling))
}

/// Sends a finished answer's last text and outcome (or its error) to its request.
fn report(done: Finished<Answering>, stopping: &AtomicBool) {
    let Answering {
        id,
        events,
        stop,
        prompt_tokens,
        started,
    } = done.tag;
    let generation = match done.result {
        Ok(generation) => generation,
        Err(e) => {
            let e = from_engine(&e);
            log!("request {id}: failed: {}", e.message);
            let _ = events.send(Event::Failed(e));
            return;
        }
    };
    let mut stop = stop.into_inner();
    if generation.finish == FinishReason::Interrupted && !stop.stopped() {
        if stopping.load(Ordering::Acquire) {
            log!("request {id}: cancelled (the server is stopping)");
            let _ = events.send(Event::Failed(ApiError::busy(
                "the server is shutting down; the answer was not finished",
                5,
            )));
        } else {
            log!(
                "request {id}: cancelled after {} tokens (the client went away); its sequence is free",
                generation.tokens.len()
            );
        }
        return;
    }
    let rest = stop.finish();
    if !rest.is_empty() {
        let _ = events.send(Event::Text(rest));
    }
    let finish_reason = if stop.stopped() || generation.finish == FinishReason::Stop {
        "stop"
    } else {
        "length"
    };
    let outcome = Outcome {
        text: stop.text().to_string(),
        finish_reason,
        prompt_tokens,
        cached_tokens: prompt_tokens.saturating_sub(done.stats.prompt_tokens),
        completion_tokens: generation.tokens.len(),
        prompt_ms: done.stats.prompt_ms,
        generation_ms: done.stats.generation_ms,
    };
    log!(
        "request {id}: {} prompt positions ({} cached), {} tokens, {finish_reason}, {:.2} s",
        outcome.prompt_tokens,
        outcome.cached_tokens,
        outcome.completion_tokens,
        started.elapsed().as_secs_f64()
    );
    let _ = events.send(Event::Done(outcome));
}
