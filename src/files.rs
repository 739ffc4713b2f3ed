//! Files on disk: writing an output file without ever leaving a half-written one (a temporary file beside the
//! target, then renamed into place), reading a file the user named only when it is a regular file, and the SHA-256
//! of bytes or of a file as lower-case hex, written once here.
//!
//! Must not: know what the files mean (models, results, caches); callers name the file in their errors.

use std::io::{Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

/// Writes `bytes` to `path` atomically (a reader sees the old file or the whole new one, never a part).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Refuses anything but a regular file at `path` (links followed) without opening it: opening a FIFO for reading
/// blocks until a writer comes, and a directory, device or socket is never the file a user meant. A missing file
/// gives the usual `NotFound` error, so callers keep their own message for it. The message does not repeat the
/// path: every caller names the file in its error.
pub fn check_regular_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let kind = std::fs::metadata(path)?.file_type();
    let what = if kind.is_file() {
        return Ok(());
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a named pipe (FIFO), which would block until something writes to it"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "a special file"
    };
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!("not a regular file but {what}; give the path of a file"),
    ))
}

/// [`std::fs::File::open`] for a file the user named, after [`check_regular_file`].
pub fn open_regular(path: &Path) -> std::io::Result<std::fs::File> {
    check_regular_file(path)?;
    std::fs::File::open(path)
}

/// [`std::fs::read`] for a file the user named, after [`check_regular_file`].
pub fn read_regular(path: &Path) -> std::io::Result<Vec<u8>> {
    check_regular_file(path)?;
    std::fs::read(path)
}

/// [`std::fs::read_to_string`] for a file the user named, after [`check_regular_file`].
pub fn read_regular_to_string(path: &Path) -> std::io::Result<String> {
    check_regular_file(path)?;
    std::fs::read_to_string(path)
}

/// Bytes as lower-case hex (a SHA-256 digest gives the usual 64 digits).
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The SHA-256 of `bytes`, as lower-case hex.
#[cfg(test)]
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The SHA-256 of the file at `path`, read in 1 MiB pieces, as lower-case hex.
pub fn sha256_of_file(path: &Path) -> std::io::Result<String> {
    let mut file = open_regular(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

#[cfg(test)]
mod tests {
    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn replaces_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.json");
        std::fs::write(&p, "old").unwrap();
        super::write_atomically(&p, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn sha256_of_bytes_and_files_agree() {
        assert_eq!(super::hex(&[0, 15, 255]), "000fff");
        assert_eq!(super::sha256_hex(b"abc"), ABC);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(super::sha256_of_file(&p).unwrap(), ABC);
    }

    #[test]
    fn only_regular_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let e = super::read_regular(dir.path()).unwrap_err();
        assert!(e.to_string().contains("not a regular file but a directory"), "{e}");
        let e = super::read_regular(&dir.path().join("missing")).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
        let e = super::check_regular_file(std::path::Path::new("/dev/null")).unwrap_err();
        assert!(e.to_string().contains("a device"), "{e}");
        let p = dir.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(super::read_regular_to_string(&p).unwrap(), "abc");
    }
}
