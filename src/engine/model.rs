//! Loading: checks the model and mmproj files (exists, is GGUF, whole, the right kind, passes the header pre-check
//! of `gguf_check`, they fit together), then loads them into llama.cpp and reads what the prompt builder needs from
//! the vocabulary.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::mtmd::{mtmd_default_marker, MtmdContext, MtmdContextParams, MtmdInputChunks};
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::token_type::LlamaTokenAttr;

use super::error::EngineError;
use super::image_encoder::{ImageEncoder, ImageUse};
use super::logging::{self, LoadCapture};
use crate::gguf::GgufHeader;
use crate::prompt::{ControlToken, PROTECTED_TOKEN_TEXTS};

/// What to load.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub model: PathBuf,
    pub mmproj: Option<PathBuf>,
    /// What goes to the GPU (nothing on a CPU-only build).
    pub gpu: super::gpu::GpuOptions,
    /// Threads for the vision encoder.
    pub threads: i32,
    /// Show llama.cpp's own logging on stderr.
    pub verbose: bool,
    /// The on-disk image embedding cache (None: `--no-image-cache`).
    pub image_cache: Option<crate::image_cache::DiskCache>,
}

/// Facts about the loaded model, for `--verbose`, `/show` and result headers.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelSummary {
    pub model: PathBuf,
    pub mmproj: Option<PathBuf>,
    pub name: Option<String>,
    pub n_params: u64,
    pub n_layer: u32,
    pub hidden_size: u64,
    pub trained_ctx: u32,
    pub n_vocab: i32,
    pub image_size: Option<u32>,
}

pub(super) struct Vision {
    pub(super) ctx: RefCell<MtmdContext>,
    pub(super) image_size: u32,
    /// Computes (or finds) images' embeddings.
    pub(super) encoder: ImageEncoder,
    /// Preprocessed images by pixel key, most recently used last (see `prepare::PREPARED_IMAGES_KEPT`).
    pub(super) prepared: RefCell<Vec<(Arc<str>, Arc<MtmdInputChunks>)>>,
}

/// A loaded model (and vision projector, when given). Sessions borrow it.
pub struct Engine {
    pub(super) model: LlamaModel,
    pub(super) vision: Option<Vision>,
    pub(super) controls: HashMap<&'static str, LlamaToken>,
    /// Protected token texts that this vocabulary would match inside plain text (see `prompt::split_protected`).
    pub(super) split_literals: Vec<String>,
    /// Ids that must never come out of tokenizing user text.
    pub(super) protected_ids: Vec<(LlamaToken, String)>,
    pub(super) thinking: (Option<i32>, Option<i32>),
    pub(super) summary: ModelSummary,
    /// llama.cpp's backend, initialised once per process (several engines may be loaded at once: eval-quant).
    pub(super) backend: &'static LlamaBackend,
}

fn check_model_file(path: &Path) -> Result<GgufHeader, EngineError> {
    if !path.exists() {
        return Err(EngineError::ModelMissing {
            path: path.to_path_buf(),
        });
    }
    let header = GgufHeader::read(path)?;
    match header.architecture() {
        Some("clip") => Err(EngineError::MmprojGivenAsModel {
            path: path.to_path_buf(),
        }),
        Some("gemma3") => {
            crate::gguf_check::check(&header)?;
            Ok(header)
        }
        // No architecture, or one of the wrong type: the pre-check names the key and what is wrong with it.
        None => {
            crate::gguf_check::check(&header)?;
            Err(EngineError::UnsupportedArchitecture {
                path: path.to_path_buf(),
                arch: "(none)".to_string(),
            })
        }
        other => Err(EngineError::UnsupportedArchitecture {
            path: path.to_path_buf(),
            arch: other.unwrap_or("(none)").to_string(),
        }),
    }
}

fn check_mmproj_file(path: &Path, model: &GgufHeader) -> Result<GgufHeader, EngineError> {
    if !path.exists() {
        return Err(EngineError::MmprojMissing {
            path: path.to_path_buf(),
        });
    }
    let header = GgufHeader::read(path)?;
    if !header.is_mmproj() {
        let arch = header.architecture().unwrap_or("unknown").to_string();
        return Err(EngineError::ModelGivenAsMmproj {
            path: path.to_path_buf(),
            arch,
        });
    }
    crate::gguf_check::check(&header)?;
    let has_vision = header
        .get("clip.has_vision_encoder")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    if !has_vision {
        return Err(EngineError::NoVisionEncoder {
            path: path.to_path_buf(),
        });
    }
    crate::model_info::check_headers_fit(model, &header)?;
    Ok(header)
}

/// The process's llama.cpp backend: initialised on first use, never freed (llama.cpp allows one).
pub(super) fn backend() -> Option<&'static LlamaBackend> {
    static BACKEND: std::sync::OnceLock<LlamaBackend> = std::sync::OnceLock::new();
    if let Some(b) = BACKEND.get() {
        return Some(b);
    }
    let b = LlamaBackend::init().ok()?;
    Some(BACKEND.get_or_init(|| b))
}

impl Engine {
    /// Checks and loads the model and, when given, its vision projector.
    pub fn load(options: &LoadOptions) -> Result<Engine, EngineError> {
        logging::configure(options.verbose);
        let model_header = check_model_file(&options.model)?;
        let mmproj_header = match &options.mmproj {
            Some(p) => Some(check_mmproj_file(p, &model_header)?),
            None => None,
        };
        let capture = LoadCapture::start();
        let backend = backend().ok_or_else(|| EngineError::ModelLoad {
            path: options.model.clone(),
            reason: String::new(),
        })?;
        let mmproj_bytes = mmproj_header.as_ref().map(|h| h.file_len);
        let placement = super::gpu::placement(&options.gpu, &model_header, mmproj_bytes, options.verbose)?;
        let mut params = LlamaModelParams::default().with_n_gpu_layers(placement.layers);
        if let Some(device) = placement.device {
            params = params.with_devices(&[device]).map_err(|e| EngineError::ModelLoad {
                path: options.model.clone(),
                reason: format!("cannot select the GPU device: {e}"),
            })?;
        }
        let model = match LlamaModel::load_from_file(backend, &options.model, &params) {
            Ok(model) => model,
            Err(_) => {
                return Err(EngineError::ModelLoad {
                    path: options.model.clone(),
                    reason: capture.reason(),
                })
            }
        };
        drop(capture);

        let vision = match (&options.mmproj, &mmproj_header) {
            (Some(path), Some(header)) => {
                let params = MtmdContextParams {
                    use_gpu: placement.mmproj_on_gpu,
                    print_timings: options.verbose,
                    n_threads: options.threads,
                    media_marker: CString::new(mtmd_default_marker()).expect("marker has no NUL"),
                    image_min_tokens: -1,
                    image_max_tokens: -1,
                };
                let path_str = path.to_str().ok_or_else(|| EngineError::MmprojLoad {
                    path: path.clone(),
                    reason: "its path is not valid UTF-8; rename it".into(),
                })?;
                let capture = LoadCapture::start();
                let ctx = match MtmdContext::init_from_file(path_str, &model, &params) {
                    Ok(ctx) => ctx,
                    Err(_) => {
                        return Err(EngineError::MmprojLoad {
                            path: path.clone(),
                            reason: capture.reason(),
                        })
                    }
                };
                drop(capture);
                if !ctx.support_vision() {
                    return Err(EngineError::NoVisionEncoder { path: path.clone() });
                }
                let image_size = header
                    .get_u64("clip.vision.image_size")
                    .unwrap_or(u64::from(crate::image_input::DEFAULT_IMAGE_SIDE))
                    as u32;
                Some(Vision {
                    ctx: RefCell::new(ctx),
                    image_size,
                    encoder: ImageEncoder::new(path.clone(), options.image_cache.clone(), options.verbose),
                    prepared: RefCell::new(Vec::new()),
                })
            }
            _ => None,
        };

        let (controls, split_literals, protected_ids, thinking) = read_vocab(&model, &options.model)?;
        let summary = ModelSummary {
            model: options.model.clone(),
            mmproj: options.mmproj.clone(),
            name: model_header.get_str("general.name").map(str::to_string),
            n_params: model.n_params(),
            n_layer: model.n_layer(),
            hidden_size: model_header.arch_u64("embedding_length").unwrap_or(0),
            trained_ctx: model.n_ctx_train(),
            n_vocab: model.n_vocab(),
            image_size: vision.as_ref().map(|v| v.image_size),
        };
        Ok(Engine {
            model,
            vision,
            controls,
            split_literals,
            protected_ids,
            thinking,
            summary,
            backend,
        })
    }

    pub fn summary(&self) -> &ModelSummary {
        &self.summary
    }

    /// How this process's images became embeddings so far (None without a vision projector).
    pub fn image_use(&self) -> Option<ImageUse> {
        self.vision.as_ref().map(|v| v.encoder.usage())
    }

    /// True when a vision projector is loaded.
    pub fn has_vision(&self) -> bool {
        self.vision.is_some()
    }

    /// The side of the square images the vision projector takes (for `--image-fit stretch`).
    pub fn image_size(&self) -> Option<u32> {
        self.vision.as_ref().map(|v| v.image_size)
    }
}

type VocabFacts = (
    HashMap<&'static str, LlamaToken>,
    Vec<String>,
    Vec<(LlamaToken, String)>,
    (Option<i32>, Option<i32>),
);

/// Finds the template's control tokens, the protected tokens, and the thinking markers by their text.
fn read_vocab(model: &LlamaModel, path: &Path) -> Result<VocabFacts, EngineError> {
    let vocab = model.vocab();
    let wanted: Vec<&'static str> = PROTECTED_TOKEN_TEXTS
        .iter()
        .copied()
        .chain(["<unused94>", "<unused95>"])
        .collect();
    let mut found: HashMap<&'static str, LlamaToken> = HashMap::new();
    for token in vocab.tokens() {
        let Some(text) = vocab.text(token) else { continue };
        let bytes = text.to_bytes();
        if bytes.first() != Some(&b'<') {
            continue;
        }
        if let Some(w) = wanted.iter().find(|w| w.as_bytes() == bytes) {
            found.entry(w).or_insert(token);
        }
    }
    for control in [ControlToken::Bos, ControlToken::StartOfTurn, ControlToken::EndOfTurn] {
        if !found.contains_key(control.text()) {
            return Err(EngineError::MissingControlToken {
                path: path.to_path_buf(),
                token: control.text().into(),
            });
        }
    }
    let mut split_literals = Vec::new();
    let mut protected_ids = Vec::new();
    for text in PROTECTED_TOKEN_TEXTS {
        if let Some(&token) = found.get(text) {
            protected_ids.push((token, text.to_string()));
            let attrs = vocab.attr(token);
            let hidden_from_text = attrs.contains(LlamaTokenAttr::Control) || attrs.contains(LlamaTokenAttr::Unknown);
            if !hidden_from_text {
                split_literals.push(text.to_string());
            }
        }
    }
    let thinking = (
        found.get("<unused94>").map(|t| t.0),
        found.get("<unused95>").map(|t| t.0),
    );
    Ok((found, split_literals, protected_ids, thinking))
}
