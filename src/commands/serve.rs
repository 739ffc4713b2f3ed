//! `medgemma serve`: the model over HTTP on this machine (OpenAI's chat completions and ollama's chat), concurrent
//! requests decoded together on the engine's scheduler.
//!
//! Order of work: check the flags and files, bind the port (a taken port fails before any model work), enter the
//! sandbox (the listening socket stays; no new socket can be made, so the server can never fetch anything), start
//! the engine thread (it loads the model; `/health` says 503 until then), serve until SIGINT or SIGTERM, then stop
//! accepting, end the answers in flight at their next token and exit 0.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::cli::ServeArgs;
use crate::server::http::{router, App, ModelListing};
use crate::server::log;
use crate::server::request::{Limits, RequestRules};
use crate::server::worker::{self, EngineSetup, Shared};

/// Positions per sequence unless -c says otherwise (the other commands default to 8192).
const DEFAULT_CTX_SIZE: u32 = 4096;

/// How long answers in flight get to end after SIGINT/SIGTERM before the process exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

pub fn run(args: ServeArgs) -> Result<()> {
    crate::settings::check_cache_type(args.context.cache_type, args.context.flash_attention)?;
    let files = super::resolve_for_results(&args.model, &args.context)?;
    let allowed = allowed_paths(&args.allow_paths)?;
    if args.api_key.as_deref() == Some("") {
        bail!("--api-key (or MEDGEMMA_API_KEY) is empty: give a key, or leave it unset for no key");
    }
    let address = address(&args.host, args.port)?;
    let listener = std::net::TcpListener::bind(address).with_context(|| {
        format!(
            "cannot listen on {address}: is another server using port {}? Choose another with --port (0: any free \
             port)",
            args.port
        )
    })?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    crate::terminal::research_notice();
    if !local.ip().is_loopback() && args.api_key.is_none() {
        log!(
            "WARNING: listening on {local}, reachable from other machines, WITHOUT an API key: anyone who \
             can reach this port can use the model and send it patient data. Add --api-key KEY (or \
             MEDGEMMA_API_KEY), or serve on 127.0.0.1."
        );
    }

    let mut context = args.context.settings();
    if context.ctx_size.is_none() {
        // Each of --parallel sequences holds its own KV cache (the whole of it: prefixes are kept for later
        // requests): 4096 positions each keeps 4 sequences of the 4B model near 2.2 GiB of cache on a laptop.
        let trained = super::trained_length(&files.model).unwrap_or(DEFAULT_CTX_SIZE as u64);
        context.ctx_size = Some(DEFAULT_CTX_SIZE.min(trained as u32));
    }
    let mut options = args.model.load_options(&files, context.threads)?;
    options.gpu.kv = Some(super::kv_cache(&files.model, &context, args.parallel, true));
    crate::sandbox::Policy::new("serve")
        .read_model(&files.model)
        .read_all(&files.mmproj)
        .image_cache(options.image_cache.as_ref())
        .read_all(&allowed)
        .network(crate::sandbox::Network::KeepListening)
        .verbose(args.model.verbose)
        .enter()?;

    let sampling = args.sampling.settings();
    let rules = RequestRules {
        model_id: model_id(&args, &files.model),
        aliases: aliases(&args, &files.model),
        limits: Limits {
            max_body: (args.max_body_mb as usize) << 20,
            max_images: args.max_images as usize,
            max_tokens: sampling.max_tokens,
        },
        defaults: sampling,
        images: crate::prompt_images::ImageOptions {
            fit: args.image_fit,
            side: crate::prompt_images::projector_side(files.mmproj.as_deref()),
            ..Default::default()
        },
        allowed_paths: allowed,
        has_vision: files.mmproj.is_some(),
    };
    let model = listing(&rules.model_id, &files.model);
    let (queue, engine) = worker::spawn(EngineSetup {
        load: options,
        context,
        parallel: args.parallel as usize,
        queue: args.queue as usize,
    });
    let shared = queue.shared.clone();
    let app = Arc::new(App {
        queue,
        rules,
        api_key: args.api_key.clone(),
        model,
    });
    log!(
        "serving {} on http://{local} (OpenAI: /v1/chat/completions, ollama: /api/chat); loading the \
         model (GET /health says 200 when ready); Ctrl-C stops",
        app.model.id
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the HTTP runtime")?;
    runtime.block_on(serve(listener, app, shared.clone()))?;
    // The engine thread ends once its answers have; a long prompt evaluation cannot be interrupted, so wait a
    // little and then leave without it.
    let deadline = std::time::Instant::now() + SHUTDOWN_GRACE;
    while !engine.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if engine.is_finished() {
        engine
            .join()
            .map_err(|_| anyhow::anyhow!("the engine thread panicked"))?
            .context("the model could not be served")?;
    }
    log!("server stopped");
    Ok(())
}

async fn serve(listener: std::net::TcpListener, app: Arc<App>, shared: Arc<Shared>) -> Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let stopped = Arc::new(tokio::sync::Notify::new());
    let signal = {
        let shared = shared.clone();
        let stopped = stopped.clone();
        async move {
            stop_requested(&shared).await;
            shared.stopping.store(true, Ordering::Release);
            stopped.notify_one();
        }
    };
    let server = axum::serve(listener, router(app)).with_graceful_shutdown(signal);
    let grace = async {
        stopped.notified().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        result = server => result.context("the HTTP server failed")?,
        () = grace => log!("connections still open after {} s; stopping anyway", SHUTDOWN_GRACE.as_secs()),
    }
    Ok(())
}

/// SIGINT, SIGTERM, or the engine thread's end (a model that failed to load).
async fn stop_requested(shared: &Shared) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).ok();
    let engine_gone = async {
        while !shared.stopping.load(Ordering::Acquire) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => log!("stopping (SIGINT): answers in flight end now"),
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {
            log!("stopping (SIGTERM): answers in flight end now")
        }
        () = engine_gone => {}
    }
}

fn address(host: &str, port: u16) -> Result<SocketAddr> {
    let mut found = (host, port)
        .to_socket_addrs()
        .with_context(|| format!("--host {host}: not an address this machine can listen on (e.g. 127.0.0.1)"))?;
    found.next().with_context(|| format!("--host {host}: no address found"))
}

/// `--allow-path` folders as canonical paths (requests' paths are resolved the same way before the check).
fn allowed_paths(dirs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    dirs.iter()
        .map(|dir| {
            let path = std::fs::canonicalize(dir)
                .with_context(|| format!("--allow-path {}: no such folder", dir.display()))?;
            if !path.is_dir() {
                bail!("--allow-path {}: not a folder", dir.display());
            }
            Ok(path)
        })
        .collect()
}

/// The model's name in the API: the name it was asked by (`-m medgemma-4b-it`), or its file's stem.
fn model_id(args: &ServeArgs, model: &std::path::Path) -> String {
    match args.model.model.as_deref() {
        Some(name) if !name.ends_with(".gguf") && !name.contains('/') => name.to_string(),
        _ => model
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "medgemma".into()),
    }
}

fn aliases(args: &ServeArgs, model: &std::path::Path) -> Vec<String> {
    let mut names = Vec::new();
    if let Some(name) = &args.model.model {
        names.push(name.clone());
    }
    if let Some(file) = model.file_name() {
        names.push(file.to_string_lossy().into_owned());
    }
    if let Some(stem) = model.file_stem() {
        names.push(stem.to_string_lossy().into_owned());
    }
    names
}

fn listing(id: &str, model: &std::path::Path) -> ModelListing {
    let facts = crate::gguf::GgufHeader::read(model)
        .ok()
        .map(|h| crate::model_info::FileFacts::from_header(&h));
    let created = std::fs::metadata(model)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    ModelListing {
        id: id.to_string(),
        created,
        size: facts.as_ref().map_or(0, |f| f.file_size),
        file_type: facts.as_ref().and_then(|f| f.file_type.clone()),
        parameters: facts.as_ref().map_or(0, |f| f.parameters),
    }
}
