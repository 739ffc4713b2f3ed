//! Image embeddings as numbers: runs one mmproj's vision tower on an image and returns what it hands to the
//! language model (tokens x width floats), for `eval-quant` on vision projectors. The safe crate exposes no output
//! embeddings, so this goes through the sys crate with its own handles: the text model loaded vocabulary-only (mtmd
//! needs its tokens, not its weights) and an mtmd context, both freed before returning. The rows are read with the
//! width mtmd computes from the projector's weights, never from a metadata key. The caller checks that the
//! projector fits the model (a vocabulary-only model has no width for mtmd to check).

use std::ffi::CString;
use std::path::Path;
use std::time::{Duration, Instant};

use llama_cpp_sys_2 as sys;

use super::error::EngineError;
use super::logging::{self, LoadCapture};
use crate::image_input::ImageInput;

/// The embeddings of one image: `n_tokens` rows of `width` floats.
#[derive(Debug, Clone)]
pub struct ImageEmbedding {
    pub values: Vec<f32>,
    pub n_tokens: usize,
    pub width: usize,
    pub encode_time: Duration,
}

/// Frees the raw handles whatever happens.
struct Handles {
    model: *mut sys::llama_model,
    mtmd: *mut sys::mtmd_context,
    bitmap: *mut sys::mtmd_bitmap,
    chunks: *mut sys::mtmd_input_chunks,
}

impl Drop for Handles {
    fn drop(&mut self) {
        // SAFETY: each pointer is null or owned by us, created by the matching init function, freed once.
        unsafe {
            if !self.chunks.is_null() {
                sys::mtmd_input_chunks_free(self.chunks);
            }
            if !self.bitmap.is_null() {
                sys::mtmd_bitmap_free(self.bitmap);
            }
            if !self.mtmd.is_null() {
                sys::mtmd_free(self.mtmd);
            }
            if !self.model.is_null() {
                sys::llama_model_free(self.model);
            }
        }
    }
}

/// The width of the rows mtmd writes for a Gemma 3 projector: `mm.input_projection.weight`'s first dimension.
fn projector_width(mmproj: &Path) -> Option<usize> {
    let header = crate::gguf::GgufHeader::read(mmproj).ok()?;
    let tensor = header.tensors.iter().find(|t| t.name == "mm.input_projection.weight")?;
    let width = usize::try_from(*tensor.dims.first()?).ok()?;
    (width > 0).then_some(width)
}

fn c_path(path: &Path, err: &dyn Fn(String) -> EngineError) -> Result<CString, EngineError> {
    CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| err("the path contains a NUL byte".into()))
}

/// Encodes `image` with the vision projector `mmproj` (paired with the text model `model`) on `threads` threads.
pub fn image_embedding(
    model: &Path,
    mmproj: &Path,
    image: &ImageInput,
    threads: i32,
    verbose: bool,
) -> Result<ImageEmbedding, EngineError> {
    logging::configure(verbose);
    let _backend = super::model::backend();
    let err = |reason: String| EngineError::ImageEncode {
        path: image.path.clone(),
        reason: format!("with {}: {reason}", mmproj.display()),
    };
    let model_c = c_path(model, &err)?;
    let mmproj_c = c_path(mmproj, &err)?;
    let marker = CString::new(llama_cpp_2::mtmd::mtmd_default_marker()).expect("marker has no NUL");
    let mut h = Handles {
        model: std::ptr::null_mut(),
        mtmd: std::ptr::null_mut(),
        bitmap: std::ptr::null_mut(),
        chunks: std::ptr::null_mut(),
    };
    // SAFETY: plain FFI calls on handles created here and checked for null before use; strings and pixel data
    // outlive the calls; the embedding buffer is read within the size mtmd documents (tokens x model width)
    // before any other call on the context.
    unsafe {
        let mut params = sys::llama_model_default_params();
        params.vocab_only = true;
        params.n_gpu_layers = 0;
        let capture = LoadCapture::start();
        h.model = sys::llama_model_load_from_file(model_c.as_ptr(), params);
        if h.model.is_null() {
            return Err(EngineError::ModelLoad {
                path: model.to_path_buf(),
                reason: capture.reason(),
            });
        }
        drop(capture);
        let mut cp = sys::mtmd_context_params_default();
        cp.use_gpu = false;
        cp.print_timings = false;
        cp.n_threads = threads;
        cp.media_marker = marker.as_ptr();
        let capture = LoadCapture::start();
        h.mtmd = sys::mtmd_init_from_file(mmproj_c.as_ptr(), h.model, cp);
        if h.mtmd.is_null() {
            return Err(EngineError::MmprojLoad {
                path: mmproj.to_path_buf(),
                reason: capture.reason(),
            });
        }
        drop(capture);
        let (w, hgt) = image.rgb.dimensions();
        h.bitmap = sys::mtmd_bitmap_init(w, hgt, image.rgb.as_raw().as_ptr());
        h.chunks = sys::mtmd_input_chunks_init();
        if h.bitmap.is_null() || h.chunks.is_null() {
            return Err(err("out of memory".into()));
        }
        let text = sys::mtmd_input_text {
            text: marker.as_ptr(),
            text_len: marker.as_bytes().len(),
            add_special: false,
            parse_special: true,
        };
        let bitmaps = [h.bitmap as *const sys::mtmd_bitmap];
        let rc = sys::mtmd_tokenize(h.mtmd, h.chunks, &text, bitmaps.as_ptr(), 1);
        if rc != 0 {
            return Err(err(format!("tokenizing the image failed ({rc})")));
        }
        // mtmd writes rows of clip_n_mmproj_embd floats, which for Gemma 3's projector is the first dimension of
        // the mm.input_projection.weight tensor: read that (what mtmd computed with), not a metadata key.
        let width = projector_width(mmproj).ok_or_else(|| {
            err("the file has no mm.input_projection.weight tensor (not a Gemma 3 vision projector)".into())
        })?;
        for i in 0..sys::mtmd_input_chunks_size(h.chunks) {
            let chunk = sys::mtmd_input_chunks_get(h.chunks, i);
            if sys::mtmd_input_chunk_get_type(chunk) != sys::MTMD_INPUT_CHUNK_TYPE_IMAGE {
                continue;
            }
            let started = Instant::now();
            let rc = sys::mtmd_encode_chunk(h.mtmd, chunk);
            let encode_time = started.elapsed();
            if rc != 0 {
                return Err(err(format!("encoding failed ({rc})")));
            }
            let n_tokens = sys::mtmd_input_chunk_get_n_tokens(chunk);
            if n_tokens == 0 || n_tokens.checked_mul(width).is_none() {
                return Err(err(format!("mtmd reported {n_tokens} image tokens")));
            }
            let out = sys::mtmd_get_output_embd(h.mtmd);
            if out.is_null() {
                return Err(err("no embeddings came out".into()));
            }
            let values = std::slice::from_raw_parts(out, n_tokens * width).to_vec();
            return Ok(ImageEmbedding {
                values,
                n_tokens,
                width,
                encode_time,
            });
        }
    }
    Err(err("the prompt held no image chunk".into()))
}
