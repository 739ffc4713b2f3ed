//! The checks every command makes before it writes a file the user named (`run --logits-out`, chat `/save`,
//! `batch --output` and its sidecar, `quantize OUT.gguf`): the output must not be one of the run's own inputs
//! (the model, the mmproj, an input file, an image), whatever the user asks; and it must not be an existing file
//! the command did not write, unless the user asks to replace it ([`check_new`]). Compared as files, not as strings: the same path written
//! another way (relative, `..`), a symbolic link, or a hard link (same device and inode) is the same file.
//!
//! Owns: deciding whether two paths are one file, and the refusal's text (the flag, the path, what it would
//! destroy, the fix). Must not: write, create or open anything for writing; know what the files mean beyond the
//! description its caller gives.

use std::path::{Path, PathBuf};

/// A file the command reads and must never overwrite, and what it is in the user's words ("the model
/// (-m/--model)").
#[derive(Debug, Clone)]
struct Protected {
    path: PathBuf,
    what: String,
}

/// The files a command must not write over.
#[derive(Debug, Clone, Default)]
pub struct OutputGuard {
    protected: Vec<Protected>,
}

/// An output path that is one of the command's inputs.
#[derive(Debug, thiserror::Error)]
#[error(
    "{flag} {} is {what}{}; writing there would destroy it: give {flag} another path",
    output.display(),
    if via.is_empty() { String::new() } else { format!(" ({}){via}", protected.display()) }
)]
pub struct OutputIsInput {
    pub flag: String,
    pub output: PathBuf,
    pub protected: PathBuf,
    pub what: String,
    /// Empty when the two paths are written alike (the protected path is then not repeated); otherwise how they
    /// are the same file.
    pub via: &'static str,
}

/// An output path where a file already is, that the command may not replace.
#[derive(Debug, thiserror::Error)]
pub enum OutputInTheWay {
    #[error("{flag} {} is a directory; give {flag} the path of a file", path.display())]
    Directory { flag: String, path: PathBuf },
    #[error(
        "{flag} {} exists{what}; writing there would replace it: give {flag} another path{}",
        path.display(),
        force.map_or(String::new(), |f| format!(", or add {f} to replace it"))
    )]
    Exists {
        flag: String,
        path: PathBuf,
        /// What the file is not, e.g. " and is not a saved chat"; may be empty.
        what: &'static str,
        /// The option that replaces it, when there is one.
        force: Option<&'static str>,
    },
}

/// Refuses `output` (given with `flag`) when something is there already: a directory always; a file unless
/// `replace` (the user gave `force`, or the file is one the command wrote). Check [`OutputGuard::check`] first:
/// an input is refused even when the user asks to replace it, and its refusal names no option.
pub fn check_new(
    flag: &str,
    output: &Path,
    replace: bool,
    what: &'static str,
    force: Option<&'static str>,
) -> Result<(), OutputInTheWay> {
    match std::fs::metadata(output) {
        Ok(m) if m.is_dir() => Err(OutputInTheWay::Directory {
            flag: flag.to_string(),
            path: output.to_path_buf(),
        }),
        Ok(_) if !replace => Err(OutputInTheWay::Exists {
            flag: flag.to_string(),
            path: output.to_path_buf(),
            what,
            force,
        }),
        _ => Ok(()),
    }
}

impl OutputGuard {
    pub fn new() -> OutputGuard {
        OutputGuard::default()
    }

    /// Adds a file that must not be written over; `what` names it in the refusal ("the model (-m/--model)").
    pub fn protect(&mut self, path: &Path, what: impl Into<String>) -> &mut OutputGuard {
        self.protected.push(Protected {
            path: path.to_path_buf(),
            what: what.into(),
        });
        self
    }

    /// Refuses `output` (given with `flag`) when it is one of the protected files.
    pub fn check(&self, flag: &str, output: &Path) -> Result<(), OutputIsInput> {
        for p in &self.protected {
            if let Some(via) = same_file(output, &p.path) {
                return Err(OutputIsInput {
                    flag: flag.to_string(),
                    output: output.to_path_buf(),
                    protected: p.path.clone(),
                    what: p.what.clone(),
                    via,
                });
            }
        }
        Ok(())
    }
}

/// Whether `a` and `b` name one file; `Some("")` when written alike, `Some(how)` when another way.
fn same_file(a: &Path, b: &Path) -> Option<&'static str> {
    if a == b {
        return Some("");
    }
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        // Both exist: one file when device and inode agree (symbolic links followed, hard links included).
        (Ok(ma), Ok(mb)) => identical(&ma, &mb, a, b).then(|| how(a, b)),
        // Neither exists: the same place when the absolute paths agree once the existing folders are resolved.
        (Err(_), Err(_)) => (resolved(a)? == resolved(b)?).then_some(" (the same path written another way)"),
        // One exists and the other does not: two files.
        _ => None,
    }
}

#[cfg(unix)]
fn identical(a: &std::fs::Metadata, b: &std::fs::Metadata, _: &Path, _: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn identical(_: &std::fs::Metadata, _: &std::fs::Metadata, a: &Path, b: &Path) -> bool {
    matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
}

/// How two paths of one existing file differ: written another way, a symbolic link, or a hard link.
fn how(a: &Path, b: &Path) -> &'static str {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) if x == y => {
            let link = |p: &Path| p.symlink_metadata().is_ok_and(|m| m.file_type().is_symlink());
            if link(a) || link(b) {
                " (the same file through a symbolic link)"
            } else {
                " (the same path written another way)"
            }
        }
        _ => " (the same file: a hard link)",
    }
}

/// The absolute path of a file that does not exist: its folder resolved (links followed), its name kept.
fn resolved(p: &Path) -> Option<PathBuf> {
    let abs = std::path::absolute(p).ok()?;
    let name = abs.file_name()?;
    let dir = abs.parent()?.canonicalize().ok()?;
    Some(dir.join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(model: &Path) -> OutputGuard {
        let mut g = OutputGuard::new();
        g.protect(model, "the model (-m/--model)");
        g
    }

    #[test]
    fn the_same_path_is_refused_with_flag_path_and_fix() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("model.gguf");
        std::fs::write(&model, "weights").unwrap();
        let err = guard(&model).check("--logits-out", &model).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "--logits-out {} is the model (-m/--model); writing there would destroy it: give --logits-out another \
                 path",
                model.display()
            )
        );
        guard(&model)
            .check("--logits-out", &dir.path().join("logits.json"))
            .unwrap();
    }

    #[test]
    fn relative_and_absolute_paths_of_one_file_are_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("model.gguf");
        std::fs::write(&model, "weights").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let cwd = std::env::current_dir().unwrap();
        // A relative path from the working directory, through `..`: no chdir, tests run in parallel.
        let up = cwd.components().count() - 1;
        let mut relative = PathBuf::new();
        for _ in 0..up {
            relative.push("..");
        }
        relative.push(dir.path().strip_prefix("/").unwrap());
        relative.push("sub/../model.gguf");
        let err = guard(&model).check("--output", &relative).unwrap_err();
        assert_eq!(err.via, " (the same path written another way)");
        // Neither exists yet: still the same place.
        let missing = dir.path().join("new.json");
        let mut g = OutputGuard::new();
        g.protect(&missing, "the input");
        assert!(g.check("--output", &dir.path().join("sub/../new.json")).is_err());
        assert!(g.check("--output", &dir.path().join("sub/new.json")).is_ok());
    }

    #[test]
    fn an_existing_file_is_replaced_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let notes = dir.path().join("notes.json");
        check_new("--logits-out", &notes, false, "", Some("--force")).unwrap();
        std::fs::write(&notes, "keep").unwrap();
        let e = check_new("--logits-out", &notes, false, "", Some("--force")).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "--logits-out {} exists; writing there would replace it: give --logits-out another path, or add \
                 --force to replace it",
                notes.display()
            )
        );
        check_new("--logits-out", &notes, true, "", Some("--force")).unwrap();
        let e = check_new("/save", &notes, false, " and is not a saved chat", None).unwrap_err();
        assert!(e.to_string().ends_with("give /save another path"), "{e}");
        let e = check_new("/save", dir.path(), true, "", None).unwrap_err();
        assert!(e.to_string().contains("is a directory"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn symbolic_and_hard_links_are_the_file_they_link() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("model.gguf");
        std::fs::write(&model, "weights").unwrap();
        let symlink = dir.path().join("link.json");
        std::os::unix::fs::symlink(&model, &symlink).unwrap();
        let err = guard(&model).check("--output", &symlink).unwrap_err();
        assert_eq!(err.via, " (the same file through a symbolic link)");
        assert!(err.to_string().contains("link.json"), "{err}");
        let hard = dir.path().join("hard.json");
        std::fs::hard_link(&model, &hard).unwrap();
        let err = guard(&model).check("--output", &hard).unwrap_err();
        assert_eq!(err.via, " (the same file: a hard link)");
        // A copy is another file.
        let copy = dir.path().join("copy.gguf");
        std::fs::copy(&model, &copy).unwrap();
        guard(&model).check("--output", &copy).unwrap();
    }
}
