//! The on-disk image embedding cache: what the vision projector computed for an image, kept so that the next `run`
//! (or chat, batch, eval) about the same image skips the encoder (~30 s on a laptop CPU).
//!
//! Owns: where the cache lives (`$MEDGEMMA_HOME/cache/images`, else `$XDG_CACHE_HOME/medgemma/images`, else
//! `~/.cache/medgemma/images`), the entry file format (a header naming the key and shape, the float32 rows, a
//! SHA-256 of both), reading an entry (anything wrong with it, even one flipped bit or a missing byte, makes it a miss
//! and removes it: it is rebuilt, never used), writing one atomically (a temporary file renamed into place, mode 0600
//! in a 0700 folder: embeddings are derived from patient images), the size cap (least recently used entries go
//! first; a hit refreshes an entry's time), and what `medgemma cache` shows and clears. Must not: know how
//! embeddings are computed (the engine does) or fail an answer (every error here is reported to the caller, who
//! notes it once and goes on without the cache).
//!
//! The key is the caller's: a SHA-256 over the projector's identity and the exact pixels given to it (see
//! `engine::image_encoder`). File names are that key in hex, so nothing about the image or its path is in them.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

/// The entry format's first bytes.
const MAGIC: &[u8; 8] = b"MGIMGEMB";
/// The entry format's version: a change of layout (or of what the key covers) changes it.
const VERSION: u32 = 1;
/// magic, version, n_tokens, width, reserved, key.
const HEADER_LEN: usize = 8 + 4 * 4 + 32;
const CHECKSUM_LEN: usize = 32;
/// Entry files end with this; anything else in the folder is not ours and is left alone.
const SUFFIX: &str = ".emb";
/// The default size cap: about 800 images of MedGemma 4B (256 x 2560 floats, 2.6 MB each), 390 of 27B (5.5 MB).
pub const DEFAULT_MAX_BYTES: u64 = 2 << 30;

/// The cache folder named by the environment (see the module header), when a home for it is known.
pub fn dir_from_vars(var: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    crate::batch::sha256_cache::cache_root_from_vars(var).map(|root| root.join("images"))
}

/// The size cap from `MEDGEMMA_IMAGE_CACHE_SIZE` (bytes, or a number with K, M or G: 512M, 4G), else the default.
pub fn max_bytes_from_env() -> Result<u64, String> {
    match std::env::var("MEDGEMMA_IMAGE_CACHE_SIZE") {
        Ok(v) if !v.trim().is_empty() => parse_size(&v).ok_or_else(|| {
            format!("MEDGEMMA_IMAGE_CACHE_SIZE={v:?} is not a size: give bytes or a number with K, M or G (e.g. 4G)")
        }),
        _ => Ok(DEFAULT_MAX_BYTES),
    }
}

/// "4096", "512K", "512M", "4G" (binary units; a trailing B or iB is allowed).
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix("ib"))
        .or_else(|| t.strip_suffix(['B', 'b']))
        .unwrap_or(t);
    let (digits, shift) = match t.chars().last()? {
        'k' | 'K' => (&t[..t.len() - 1], 10),
        'm' | 'M' => (&t[..t.len() - 1], 20),
        'g' | 'G' => (&t[..t.len() - 1], 30),
        't' | 'T' => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let n: u64 = digits.trim().parse().ok()?;
    n.checked_mul(1u64 << shift)
}

/// Why the cache could not be used (never fatal: the caller goes on without it).
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cannot create the image cache folder {}: {source}", dir.display())]
    CreateDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a folder", dir.display())]
    NotADir { dir: PathBuf },
    #[error("cannot write to the image cache folder {}: {source}", dir.display())]
    Write {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup {
    Hit(Vec<f32>),
    Miss,
    /// An entry was there but damaged (the reason); it was removed and must be rebuilt.
    Damaged(String),
}

/// The cache folder and its cap.
#[derive(Debug, Clone)]
pub struct DiskCache {
    dir: PathBuf,
    max_bytes: u64,
}

/// What `medgemma cache` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    pub entries: u64,
    pub bytes: u64,
    /// Files in the folder that are not entries (temporary files of a write that did not finish, anything else).
    pub other_files: u64,
}

/// The file size of an entry of this shape.
fn entry_len(n_tokens: usize, width: usize) -> Option<u64> {
    let floats = n_tokens.checked_mul(width)?;
    let payload = floats.checked_mul(4)?;
    u64::try_from(HEADER_LEN + payload + CHECKSUM_LEN).ok()
}

fn key_bytes(key: &str) -> Option<[u8; 32]> {
    if key.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in key.as_bytes().chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

/// An entry file's bytes.
fn encode_entry(key: &[u8; 32], n_tokens: usize, width: usize, values: &[f32]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(HEADER_LEN + values.len() * 4 + CHECKSUM_LEN);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&VERSION.to_le_bytes());
    bytes.extend_from_slice(&(n_tokens as u32).to_le_bytes());
    bytes.extend_from_slice(&(width as u32).to_le_bytes());
    bytes.extend_from_slice(&0u32.to_le_bytes());
    bytes.extend_from_slice(key);
    for v in values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    let sum = Sha256::digest(&bytes);
    bytes.extend_from_slice(&sum);
    bytes
}

/// The rows of an entry file, or what is wrong with it.
fn decode_entry(bytes: &[u8], key: &[u8; 32], n_tokens: usize, width: usize) -> Result<Vec<f32>, String> {
    let expected = entry_len(n_tokens, width).ok_or("the shape is too large")?;
    if bytes.len() as u64 != expected {
        return Err(format!("{} bytes instead of {expected}", bytes.len()));
    }
    let (body, sum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
    if Sha256::digest(body).as_slice() != sum {
        return Err("its checksum does not match".into());
    }
    let u32_at = |at: usize| u32::from_le_bytes(body[at..at + 4].try_into().expect("4 bytes"));
    if &body[..8] != MAGIC || u32_at(8) != VERSION {
        return Err("not an entry of this version".into());
    }
    if u32_at(12) as usize != n_tokens || u32_at(16) as usize != width {
        return Err("its shape differs".into());
    }
    if &body[24..HEADER_LEN] != key {
        return Err("it holds another key".into());
    }
    Ok(body[HEADER_LEN..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect())
}

impl DiskCache {
    /// The cache in `dir` with a cap of `max_bytes`; nothing is created yet.
    pub fn new(dir: PathBuf, max_bytes: u64) -> DiskCache {
        DiskCache { dir, max_bytes }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Creates the folder (0700) when missing; checks that it is a folder we can write to.
    pub fn ensure_dir(&self) -> Result<(), CacheError> {
        use std::os::unix::fs::DirBuilderExt;
        match std::fs::metadata(&self.dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(CacheError::NotADir { dir: self.dir.clone() }),
            Err(_) => std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.dir)
                .map_err(|source| CacheError::CreateDir {
                    dir: self.dir.clone(),
                    source,
                })?,
        }
        Ok(())
    }

    fn path_of(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}{SUFFIX}"))
    }

    /// The entry for `key` when it is whole and of this shape. A damaged entry is removed (and reported).
    pub fn get(&self, key: &str, n_tokens: usize, width: usize) -> Lookup {
        let Some(kb) = key_bytes(key) else {
            return Lookup::Miss;
        };
        let path = self.path_of(key);
        // Only a regular file is opened (a FIFO would block).
        if !std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) {
            return Lookup::Miss;
        }
        let mut file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(_) => return Lookup::Miss,
        };
        let expected = entry_len(n_tokens, width).unwrap_or(0);
        let mut bytes = Vec::with_capacity(expected as usize);
        // Read at most one byte more than an entry of this shape has: a longer file is damaged, not read whole.
        if let Err(e) = (&mut file).take(expected + 1).read_to_end(&mut bytes) {
            return Lookup::Damaged(format!("cannot be read: {e}"));
        }
        match decode_entry(&bytes, &kb, n_tokens, width) {
            Ok(values) => {
                // Least recently used goes first: a hit makes the entry new again.
                let _ = file.set_modified(SystemTime::now());
                Lookup::Hit(values)
            }
            Err(reason) => {
                let _ = std::fs::remove_file(&path);
                Lookup::Damaged(reason)
            }
        }
    }

    /// Stores `values` (`n_tokens` rows of `width`) under `key`, then trims the cache to its cap, oldest first.
    /// An entry larger than the cap is not stored.
    pub fn put(&self, key: &str, n_tokens: usize, width: usize, values: &[f32]) -> Result<(), CacheError> {
        let write_err = |source| CacheError::Write {
            dir: self.dir.clone(),
            source,
        };
        let kb = key_bytes(key).ok_or_else(|| write_err(std::io::Error::other("the key is not a SHA-256")))?;
        if values.len() != n_tokens * width {
            return Err(write_err(std::io::Error::other("the rows do not match their shape")));
        }
        let len = entry_len(n_tokens, width).unwrap_or(u64::MAX);
        if len > self.max_bytes {
            return Ok(());
        }
        self.ensure_dir()?;
        let bytes = encode_entry(&kb, n_tokens, width, values);
        let mut tmp = tempfile::Builder::new()
            .prefix(".partial-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .tempfile_in(&self.dir)
            .map_err(write_err)?;
        tmp.write_all(&bytes).map_err(write_err)?;
        tmp.as_file().sync_all().map_err(write_err)?;
        tmp.persist(self.path_of(key)).map_err(|e| write_err(e.error))?;
        self.trim(Some(key));
        Ok(())
    }

    /// The entries as (path, size, last use), oldest first.
    fn entries(&self) -> Vec<(PathBuf, u64, SystemTime)> {
        let Ok(read) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut entries: Vec<_> = read
            .flatten()
            .filter(|e| is_entry_name(&e.file_name()))
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                meta.is_file()
                    .then(|| (e.path(), meta.len(), meta.modified().unwrap_or(SystemTime::UNIX_EPOCH)))
            })
            .collect();
        entries.sort_by(|a, b| a.2.cmp(&b.2).then_with(|| a.0.cmp(&b.0)));
        entries
    }

    /// Removes the least recently used entries until the cache fits its cap (`keep`, the entry just written, stays).
    fn trim(&self, keep: Option<&str>) {
        let entries = self.entries();
        let mut total: u64 = entries.iter().map(|e| e.1).sum();
        let kept = keep.map(|k| self.path_of(k));
        for (path, len, _) in &entries {
            if total <= self.max_bytes {
                break;
            }
            if Some(path) == kept.as_ref() {
                continue;
            }
            if std::fs::remove_file(path).is_ok() {
                total -= len;
            }
        }
    }

    /// How many entries and bytes the cache holds.
    pub fn usage(&self) -> Usage {
        let mut usage = Usage::default();
        for (_, len, _) in self.entries() {
            usage.entries += 1;
            usage.bytes += len;
        }
        if let Ok(read) = std::fs::read_dir(&self.dir) {
            usage.other_files = read.flatten().filter(|e| !is_entry_name(&e.file_name())).count() as u64;
        }
        usage
    }

    /// Removes every entry and every unfinished write (`.partial-*`); returns what was removed. Other files are
    /// left alone.
    pub fn clear(&self) -> std::io::Result<Usage> {
        let mut removed = Usage::default();
        let read = match std::fs::read_dir(&self.dir) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
            Err(e) => return Err(e),
        };
        for e in read.flatten() {
            let name = e.file_name();
            let partial = name.to_string_lossy().starts_with(".partial-");
            if !(is_entry_name(&name) || partial) {
                continue;
            }
            let len = e.metadata().map(|m| m.len()).unwrap_or(0);
            std::fs::remove_file(e.path())?;
            if partial {
                removed.other_files += 1;
            } else {
                removed.entries += 1;
                removed.bytes += len;
            }
        }
        Ok(removed)
    }
}

/// `<64 hex digits>.emb`
fn is_entry_name(name: &std::ffi::OsStr) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    name.strip_suffix(SUFFIX)
        .is_some_and(|k| k.len() == 64 && k.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "1111111111111111111111111111111111111111111111111111111111111111";
    const K2: &str = "2222222222222222222222222222222222222222222222222222222222222222";
    const K3: &str = "3333333333333333333333333333333333333333333333333333333333333333";

    fn rows(n: usize, w: usize, seed: f32) -> Vec<f32> {
        (0..n * w).map(|i| seed + i as f32 * 0.25 - 3.0).collect()
    }

    #[test]
    fn an_entry_comes_back_bit_for_bit() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::new(dir.path().join("images"), 1 << 20);
        let mut values = rows(4, 3, 0.5);
        values[1] = f32::MIN_POSITIVE / 3.0; // a subnormal survives too
        values[2] = -0.0;
        cache.put(K1, 4, 3, &values).unwrap();
        match cache.get(K1, 4, 3) {
            Lookup::Hit(back) => {
                assert_eq!(
                    back.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                    values.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(cache.get(K2, 4, 3), Lookup::Miss));
    }

    #[test]
    fn the_folder_and_entries_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::new(dir.path().join("a/images"), 1 << 20);
        cache.put(K1, 2, 2, &rows(2, 2, 1.0)).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(cache.dir()), 0o700);
        assert_eq!(mode(&cache.path_of(K1)), 0o600);
    }

    #[test]
    fn any_damage_is_a_miss_and_removes_the_entry() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::new(dir.path().to_path_buf(), 1 << 20);
        let values = rows(8, 4, 2.0);
        let len = entry_len(8, 4).unwrap() as usize;
        type Damage = Box<dyn Fn(&mut Vec<u8>)>;
        let damages: Vec<Damage> = vec![
            Box::new(|b| b[HEADER_LEN + 5] ^= 0x10), // a payload bit
            Box::new(|b| b[3] ^= 1),                 // the magic
            Box::new(|b| b[9] ^= 1),                 // the version
            Box::new(|b| b[30] ^= 1),                // the key
            Box::new(|b| {
                let n = b.len();
                b[n - 1] ^= 1 // the checksum
            }),
            Box::new(move |b| b.truncate(len - 1)), // one byte short (a write that did not finish)
            Box::new(|b| b.truncate(HEADER_LEN)),
            Box::new(|b| b.clear()),
            Box::new(|b| b.push(0)), // one byte too many
        ];
        for (i, damage) in damages.iter().enumerate() {
            cache.put(K1, 8, 4, &values).unwrap();
            let path = cache.path_of(K1);
            let mut bytes = std::fs::read(&path).unwrap();
            damage(&mut bytes);
            std::fs::write(&path, &bytes).unwrap();
            assert!(matches!(cache.get(K1, 8, 4), Lookup::Damaged(_)), "damage {i}");
            assert!(!path.exists(), "damage {i}: the entry must be removed");
        }
        // An entry of another shape under the same key is not used either.
        cache.put(K1, 8, 4, &values).unwrap();
        assert!(matches!(cache.get(K1, 4, 8), Lookup::Damaged(_)));
    }

    #[test]
    fn the_cap_evicts_the_least_recently_used() {
        let dir = tempfile::tempdir().unwrap();
        let one = entry_len(16, 16).unwrap();
        let cache = DiskCache::new(dir.path().to_path_buf(), one * 2 + one / 2);
        let t = |secs| SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        let set_time = |k: &str, secs| {
            std::fs::File::options()
                .write(true)
                .open(cache.path_of(k))
                .unwrap()
                .set_modified(t(secs))
                .unwrap()
        };
        cache.put(K1, 16, 16, &rows(16, 16, 1.0)).unwrap();
        set_time(K1, 1000);
        cache.put(K2, 16, 16, &rows(16, 16, 2.0)).unwrap();
        set_time(K2, 2000);
        // Using K1 makes it the most recent: K2 is now the oldest.
        assert!(matches!(cache.get(K1, 16, 16), Lookup::Hit(_)));
        cache.put(K3, 16, 16, &rows(16, 16, 3.0)).unwrap();
        assert!(matches!(cache.get(K2, 16, 16), Lookup::Miss));
        assert!(matches!(cache.get(K1, 16, 16), Lookup::Hit(_)));
        assert!(matches!(cache.get(K3, 16, 16), Lookup::Hit(_)));
        assert_eq!(cache.usage().entries, 2);
        assert!(cache.usage().bytes <= cache.max_bytes());
    }

    #[test]
    fn an_entry_larger_than_the_cap_is_not_stored() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::new(dir.path().to_path_buf(), 100);
        cache.put(K1, 16, 16, &rows(16, 16, 1.0)).unwrap();
        assert_eq!(cache.usage(), Usage::default());
    }

    #[test]
    fn clear_removes_entries_and_partial_writes_only() {
        let dir = tempfile::tempdir().unwrap();
        let cache = DiskCache::new(dir.path().to_path_buf(), 1 << 20);
        cache.put(K1, 2, 2, &rows(2, 2, 1.0)).unwrap();
        cache.put(K2, 2, 2, &rows(2, 2, 1.0)).unwrap();
        std::fs::write(dir.path().join(".partial-abc"), b"x").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"mine").unwrap();
        let usage = cache.usage();
        assert_eq!((usage.entries, usage.other_files), (2, 2));
        let removed = cache.clear().unwrap();
        assert_eq!((removed.entries, removed.other_files), (2, 1));
        assert!(dir.path().join("notes.txt").exists());
        assert_eq!(cache.usage().entries, 0);
        // Clearing a cache that was never made is not an error.
        assert_eq!(
            DiskCache::new(dir.path().join("never"), 1).clear().unwrap(),
            Usage::default()
        );
    }

    #[test]
    fn a_file_where_the_folder_should_be_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("images");
        std::fs::write(&file, b"x").unwrap();
        let cache = DiskCache::new(file, 1 << 20);
        assert!(matches!(cache.put(K1, 1, 1, &[1.0]), Err(CacheError::NotADir { .. })));
        assert!(matches!(cache.get(K1, 1, 1), Lookup::Miss));
    }

    #[test]
    fn sizes_parse_in_binary_units() {
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("512K"), Some(512 << 10));
        assert_eq!(parse_size("512MiB"), Some(512 << 20));
        assert_eq!(parse_size(" 4G "), Some(4 << 30));
        assert_eq!(parse_size("2gb"), Some(2 << 30));
        assert_eq!(parse_size("0"), Some(0));
        for bad in ["", "G", "-1", "1.5G", "abc", "99999999999T"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_folder_follows_the_environment() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| OsString::from(v))
        };
        assert_eq!(
            dir_from_vars(vars(&[("HOME", "/h")])),
            Some(PathBuf::from("/h/.cache/medgemma/images"))
        );
        assert_eq!(
            dir_from_vars(vars(&[("HOME", "/h"), ("XDG_CACHE_HOME", "/x")])),
            Some(PathBuf::from("/x/medgemma/images"))
        );
        assert_eq!(
            dir_from_vars(vars(&[("MEDGEMMA_HOME", "/m"), ("XDG_CACHE_HOME", "/x")])),
            Some(PathBuf::from("/m/cache/images"))
        );
        assert_eq!(dir_from_vars(vars(&[])), None);
    }
}
