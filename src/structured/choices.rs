//! The labels of `--choices`: a comma-separated list, or a file with one label per line.
//!
//! Owns: [`parse_choices`] and [`ChoicesError`]. A file's lines are trimmed; blank lines and lines starting with
//! `#` are skipped. Labels must be non-empty, unique (exactly: labels differing only in case are allowed, and
//! the model is constrained to the exact text), at most [`MAX_LABEL_CHARS`] characters, without control
//! characters; at least two of them.
//!
//! Must not: score the labels (the engine does) or build the prompt from them.

use std::path::{Path, PathBuf};

/// The longest label accepted, in characters.
pub const MAX_LABEL_CHARS: usize = 200;

/// Why `--choices` is refused.
#[derive(Debug, thiserror::Error)]
pub enum ChoicesError {
    #[error("--choices {}: cannot read the file: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("--choices: {where_} is empty; write labels separated by commas, e.g. --choices normal,abnormal")]
    Empty { where_: String },
    #[error("--choices: {label:?} is given twice ({where_}); give each label once")]
    Duplicate { label: String, where_: String },
    #[error("--choices: give at least 2 labels (got {count}), e.g. --choices normal,abnormal")]
    TooFew { count: usize },
    #[error("--choices: {where_} is {chars} characters long; labels are at most {MAX_LABEL_CHARS}")]
    TooLong { where_: String, chars: usize },
    #[error("--choices: {where_} holds a control character; labels are plain one-line text")]
    Control { where_: String },
}

/// The labels `arg` gives: the lines of the file it names (relative to the current directory), or else its
/// comma-separated parts.
pub fn parse_choices(arg: &str) -> Result<Vec<String>, ChoicesError> {
    let path = Path::new(arg);
    if !arg.is_empty() && path.is_file() {
        let text = crate::files::read_regular_to_string(path).map_err(|source| ChoicesError::Read {
            path: path.into(),
            source,
        })?;
        let labels = text
            .lines()
            .enumerate()
            .map(|(i, line)| (format!("{arg} line {}", i + 1), line.trim()))
            .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'));
        return check(labels);
    }
    check(
        arg.split(',')
            .enumerate()
            .map(|(i, part)| (format!("label {}", i + 1), part.trim())),
    )
}

fn check<'a>(labels: impl Iterator<Item = (String, &'a str)>) -> Result<Vec<String>, ChoicesError> {
    let mut out: Vec<String> = Vec::new();
    for (where_, label) in labels {
        if label.is_empty() {
            return Err(ChoicesError::Empty { where_ });
        }
        let chars = label.chars().count();
        if chars > MAX_LABEL_CHARS {
            return Err(ChoicesError::TooLong { where_, chars });
        }
        if label.chars().any(char::is_control) {
            return Err(ChoicesError::Control { where_ });
        }
        if out.iter().any(|seen| seen == label) {
            return Err(ChoicesError::Duplicate {
                label: label.to_string(),
                where_,
            });
        }
        out.push(label.to_string());
    }
    if out.len() < 2 {
        return Err(ChoicesError::TooFew { count: out.len() });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(arg: &str) -> String {
        parse_choices(arg).unwrap_err().to_string()
    }

    #[test]
    fn comma_separated_labels_are_trimmed() {
        assert_eq!(
            parse_choices(" normal , abnormal,Normal ").unwrap(),
            ["normal", "abnormal", "Normal"]
        );
        assert_eq!(parse_choices("a,b").unwrap(), ["a", "b"]);
        assert_eq!(parse_choices("pneumonia (left),pleural effusion").unwrap().len(), 2);
    }

    #[test]
    fn refuses_bad_lists() {
        assert!(err("a,,b").contains("label 2 is empty"), "{}", err("a,,b"));
        assert!(err("a,b,").contains("label 3 is empty"));
        assert!(err("").contains("label 1 is empty"));
        assert!(err("a, b ,a").contains("\"a\" is given twice (label 3)"));
        assert!(err("only").contains("at least 2 labels (got 1)"));
        assert!(err(&format!("a,{}", "x".repeat(201))).contains("label 2 is 201 characters long"));
        assert!(parse_choices(&format!("a,{}", "é".repeat(200))).is_ok());
        assert!(err("a,b\tc").contains("control character"));
        assert!(err("a,b\u{7}").contains("control character"));
        assert!(err("a,,b").starts_with("--choices: "));
    }

    #[test]
    fn reads_a_file_of_labels() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("labels.txt");
        std::fs::write(
            &path,
            "# findings\nnormal\n\n  abnormal  \r\n#skip\nindeterminate, maybe\n",
        )
        .unwrap();
        let arg = path.to_str().unwrap();
        assert_eq!(
            parse_choices(arg).unwrap(),
            ["normal", "abnormal", "indeterminate, maybe"]
        );
        std::fs::write(&path, "a\nb\na\n").unwrap();
        let e = err(arg);
        assert!(
            e.contains("\"a\" is given twice") && e.contains("labels.txt line 3"),
            "{e}"
        );
        std::fs::write(&path, "# nothing\n\nonly\n").unwrap();
        assert!(err(arg).contains("got 1"));
    }

    #[test]
    fn a_missing_file_is_a_list() {
        assert_eq!(
            parse_choices("no/such/file.txt").unwrap_err().to_string(),
            "--choices: give at least 2 labels (got 1), e.g. --choices normal,abnormal"
        );
    }
}
