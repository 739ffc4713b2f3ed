//! An image's embeddings, computed once: the vision projector runs on an image the first time this process or the
//! on-disk cache sees it; afterwards its rows come from memory (the same process: batch jobs, server requests and
//! chat turns about the same image, whatever precedes it) or from the disk cache (the next `run`).
//!
//! Owns: the keys (the exact pixels given to mtmd, and the projector's identity: its SHA-256, remembered by path,
//! size and modification time; plus the compute backend), the in-memory LRU, the encoder call (`mtmd_encode_chunk`
//! and `mtmd_get_output_embd` through the sys crate), what was encoded or reused (for `--verbose` and `--json`),
//! and noting once on stderr when the disk cache cannot be used. Decoding the rows into a sequence is
//! `Context::eval_image`'s. Must not: fail an answer because of the cache.

use std::cell::{Cell, OnceCell, RefCell};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use llama_cpp_2::mtmd::{MtmdContext, MtmdInputChunk};
use sha2::{Digest, Sha256};

use super::error::EngineError;
use crate::image_cache::{DiskCache, Lookup};

/// Images' rows kept in memory (all of them, for one process): a 4B image is 2.6 MB, a 27B one 5.5 MB.
const MEMORY_MAX_BYTES: usize = 512 << 20;

/// Where the compute happened: embeddings from another backend differ in their last bits, so they do not share
/// entries.
const COMPUTE: &str = if cfg!(feature = "cuda") {
    "cuda"
} else if cfg!(feature = "vulkan") {
    "vulkan"
} else if cfg!(feature = "metal") {
    "metal"
} else {
    "cpu"
};

/// How the images of this process were turned into embeddings.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct ImageUse {
    /// Images run through the vision encoder.
    pub encoded: u64,
    /// Images whose embeddings this process had computed or read already.
    pub from_memory: u64,
    /// Images whose embeddings came from the on-disk cache.
    pub from_disk: u64,
    /// Time in the vision encoder.
    pub encode_ms: f64,
    /// Time finding the images' rows on disk (reading and checking entries, hits and misses), and the first
    /// SHA-256 of the projector file when it was not remembered yet.
    pub cache_ms: f64,
}

/// The SHA-256 key of the exact pixels mtmd is given: width, height and the RGB bytes.
pub(crate) fn pixels_key(width: u32, height: u32, rgb: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(b"rgb8\0");
    h.update(width.to_le_bytes());
    h.update(height.to_le_bytes());
    h.update(rgb);
    crate::files::hex(&h.finalize())
}

/// The on-disk key: the projector's identity, the backend and the pixels.
fn disk_key(projector_sha256: &str, pixels: &str) -> String {
    let mut h = Sha256::new();
    for part in ["medgemma image embedding v1", projector_sha256, COMPUTE, pixels] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    crate::files::hex(&h.finalize())
}

pub(super) struct ImageEncoder {
    projector: PathBuf,
    disk: Option<DiskCache>,
    /// The projector's SHA-256 (None when it could not be read: no disk cache then).
    projector_sha256: OnceCell<Option<String>>,
    /// Most recently used last.
    memory: RefCell<Vec<(String, Arc<[f32]>)>>,
    usage: Cell<ImageUse>,
    warned: Cell<bool>,
    verbose: bool,
}

impl ImageEncoder {
    pub(super) fn new(projector: PathBuf, disk: Option<DiskCache>, verbose: bool) -> ImageEncoder {
        ImageEncoder {
            projector,
            disk,
            projector_sha256: OnceCell::new(),
            memory: RefCell::new(Vec::new()),
            usage: Cell::new(ImageUse::default()),
            warned: Cell::new(false),
            verbose,
        }
    }

    pub(super) fn usage(&self) -> ImageUse {
        self.usage.get()
    }

    fn count(&self, f: impl FnOnce(&mut ImageUse)) {
        let mut u = self.usage.get();
        f(&mut u);
        self.usage.set(u);
    }

    /// Notes a cache problem on stderr, once per process (paths of the cache only: never the image's).
    fn warn(&self, what: &str) {
        if !self.warned.replace(true) {
            eprintln!("medgemma: note: {what}; going on without the image cache (--no-image-cache turns it off)");
        }
    }

    fn remembered(&self, key: &str) -> Option<Arc<[f32]>> {
        let mut memory = self.memory.borrow_mut();
        let i = memory.iter().position(|(k, _)| k == key)?;
        let entry = memory.remove(i);
        let rows = entry.1.clone();
        memory.push(entry);
        Some(rows)
    }

    fn remember(&self, key: &str, rows: Arc<[f32]>) {
        let mut memory = self.memory.borrow_mut();
        memory.retain(|(k, _)| k != key);
        memory.push((key.to_string(), rows));
        let mut total: usize = memory.iter().map(|(_, r)| r.len() * 4).sum();
        while total > MEMORY_MAX_BYTES && memory.len() > 1 {
            total -= memory.remove(0).1.len() * 4;
        }
    }

    fn disk_key(&self, pixels: &str) -> Option<String> {
        self.disk.as_ref()?;
        let sha = self.projector_sha256.get_or_init(|| {
            match crate::batch::sha256_cache::Sha256Cache::from_env().sha256(&self.projector) {
                Ok((sha, _)) => Some(sha),
                Err(e) => {
                    self.warn(&format!("{e}"));
                    None
                }
            }
        });
        Some(disk_key(sha.as_deref()?, pixels))
    }

    /// The embeddings of the image `chunk` (`width` floats per image token): from memory, from the disk cache, or
    /// computed now. `pixels` is [`pixels_key`] of the image; `path` names it in errors.
    pub(super) fn embeddings(
        &self,
        mtmd: &mut MtmdContext,
        chunk: &MtmdInputChunk<'_>,
        pixels: &str,
        width: usize,
        path: &Path,
    ) -> Result<Arc<[f32]>, EngineError> {
        if let Some(rows) = self.remembered(pixels) {
            self.count(|u| u.from_memory += 1);
            return Ok(rows);
        }
        let n_tokens = chunk.n_tokens();
        let looking = Instant::now();
        let disk_key = self.disk_key(pixels);
        if let (Some(disk), Some(key)) = (&self.disk, &disk_key) {
            let found = disk.get(key, n_tokens, width);
            let ms = looking.elapsed().as_secs_f64() * 1000.0;
            self.count(|u| u.cache_ms += ms);
            match found {
                Lookup::Hit(values) => {
                    let rows: Arc<[f32]> = values.into();
                    self.remember(pixels, rows.clone());
                    self.count(|u| u.from_disk += 1);
                    return Ok(rows);
                }
                Lookup::Damaged(reason) if self.verbose => {
                    eprintln!("medgemma: an image cache entry was damaged ({reason}); encoding the image again")
                }
                _ => {}
            }
        }
        let started = Instant::now();
        let rows = encode(mtmd, chunk, n_tokens, width, path)?;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        self.count(|u| {
            u.encoded += 1;
            u.encode_ms += ms;
        });
        if let (Some(disk), Some(key)) = (&self.disk, &disk_key) {
            if let Err(e) = disk.put(key, n_tokens, width, &rows) {
                self.warn(&e.to_string());
            }
        }
        let rows: Arc<[f32]> = rows.into();
        self.remember(pixels, rows.clone());
        Ok(rows)
    }
}

/// Runs the vision encoder on `chunk` and copies out its `n_tokens` rows of `width` floats.
fn encode(
    mtmd: &mut MtmdContext,
    chunk: &MtmdInputChunk<'_>,
    n_tokens: usize,
    width: usize,
    path: &Path,
) -> Result<Vec<f32>, EngineError> {
    let err = |reason: String| EngineError::ImageEncode {
        path: path.to_path_buf(),
        reason,
    };
    mtmd.encode_chunk(chunk).map_err(|e| err(e.to_string()))?;
    let len = n_tokens
        .checked_mul(width)
        .filter(|&n| n > 0)
        .ok_or_else(|| err(format!("{n_tokens} image tokens")))?;
    // SAFETY: after a successful encode, mtmd's output buffer holds n_tokens rows of its projector width, which
    // mtmd's init checked to equal the text model's input width (`width`, Gemma 3: n_embd); it is read before any
    // other call on the context.
    let rows = unsafe {
        let out = llama_cpp_sys_2::mtmd_get_output_embd(mtmd.as_raw_mut());
        if out.is_null() {
            return Err(err("no embeddings came out".into()));
        }
        std::slice::from_raw_parts(out, len).to_vec()
    };
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cover_the_pixels_the_shape_and_the_projector() {
        let a = pixels_key(2, 1, &[1, 2, 3, 4, 5, 6]);
        assert_ne!(a, pixels_key(1, 2, &[1, 2, 3, 4, 5, 6]), "same bytes, other shape");
        assert_ne!(a, pixels_key(2, 1, &[1, 2, 3, 4, 5, 7]), "one pixel value");
        assert_eq!(a, pixels_key(2, 1, &[1, 2, 3, 4, 5, 6]));
        assert_ne!(disk_key("p1", &a), disk_key("p2", &a));
        assert_eq!(disk_key("p1", &a).len(), 64);
    }

    #[test]
    fn memory_keeps_the_most_recent_within_its_cap() {
        let enc = ImageEncoder::new(PathBuf::from("x.gguf"), None, false);
        let big = MEMORY_MAX_BYTES / 4 / 3 + 1; // three of these do not fit
        for k in ["a", "b"] {
            enc.remember(k, vec![0.0f32; big].into());
        }
        assert!(enc.remembered("a").is_some()); // "b" is now the oldest
        enc.remember("c", vec![0.0f32; big].into());
        assert!(enc.remembered("b").is_none());
        assert!(enc.remembered("a").is_some() && enc.remembered("c").is_some());
    }
}
