//! What the user means by `-m/--model` (and `pull`/`rm` arguments): a file path, or a model name with an optional
//! quantisation, `NAME[:QUANT]` (e.g. `medgemma-4b-it`, `medgemma-4b-it:q8_0`).
//!
//! Owns: telling a path from a name. Pure: it only asks whether the text names an existing file.

use std::fmt;
use std::path::{Path, PathBuf};

/// A model as named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelRef {
    /// A GGUF file.
    Path(PathBuf),
    /// A model by name: from the registry, a local conversion, or a repository pulled by hand.
    Name(ModelName),
}

/// Why text given as a model is not `NAME[:QUANT]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelNameError {
    #[error(
        "{text:?} is not a model name: use NAME[:QUANT], e.g. medgemma-4b-it or medgemma-4b-it:q8_0 (see `medgemma \
         list --available`)"
    )]
    BadName { text: String },
    #[error("{text:?}: {quant:?} is not a quantisation; use e.g. q4_k_m or q8_0 after the colon")]
    BadQuant { text: String, quant: String },
}

/// `NAME[:QUANT]`; the quantisation is lower case (`q4_k_m`), `None` when not given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelName {
    pub name: String,
    pub quant: Option<String>,
}

impl ModelName {
    /// Parses `NAME[:QUANT]`; a name may also be a repository id (`owner/repo`) for files pulled with `--repo`.
    pub fn parse(text: &str) -> Result<ModelName, ModelNameError> {
        let text = text.trim();
        let (name, quant) = match text.rsplit_once(':') {
            Some((n, q)) => (n, Some(q)),
            None => (text, None),
        };
        let valid = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
                && !s.starts_with(['/', '.'])
                && !s.ends_with('/')
                && !s.contains("..")
        };
        if !valid(name) {
            return Err(ModelNameError::BadName { text: text.to_string() });
        }
        if let Some(q) = quant {
            if q.is_empty() || !q.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(ModelNameError::BadQuant {
                    text: text.to_string(),
                    quant: q.to_string(),
                });
            }
        }
        Ok(ModelName {
            name: name.to_string(),
            quant: quant.map(str::to_ascii_lowercase),
        })
    }

    /// The quantisation, or `default` when none was given.
    pub fn quant_or<'a>(&'a self, default: &'a str) -> &'a str {
        self.quant.as_deref().unwrap_or(default)
    }
}

impl fmt::Display for ModelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.quant {
            Some(q) => write!(f, "{}:{q}", self.name),
            None => write!(f, "{}", self.name),
        }
    }
}

impl ModelRef {
    /// A path when the text names an existing file, contains a path separator or ends in `.gguf`; otherwise a
    /// name.
    pub fn parse(text: &str) -> Result<ModelRef, ModelNameError> {
        if Self::looks_like_path(text) {
            Ok(ModelRef::Path(PathBuf::from(text)))
        } else {
            ModelName::parse(text).map(ModelRef::Name)
        }
    }

    fn looks_like_path(text: &str) -> bool {
        text.contains('/')
            || text.contains(std::path::MAIN_SEPARATOR)
            || text.to_ascii_lowercase().ends_with(".gguf")
            || Path::new(text).exists()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str, q: Option<&str>) -> ModelRef {
        ModelRef::Name(ModelName {
            name: n.into(),
            quant: q.map(Into::into),
        })
    }

    #[test]
    fn names_and_quants() {
        assert_eq!(ModelRef::parse("medgemma-4b-it").unwrap(), name("medgemma-4b-it", None));
        assert_eq!(
            ModelRef::parse("medgemma-1.5-4b-it:Q8_0").unwrap(),
            name("medgemma-1.5-4b-it", Some("q8_0"))
        );
        let n = ModelName::parse("medgemma-4b-it").unwrap();
        assert_eq!(n.quant_or("q4_k_m"), "q4_k_m");
        assert_eq!(n.to_string(), "medgemma-4b-it");
        assert_eq!(ModelName::parse("a:q8_0").unwrap().to_string(), "a:q8_0");
        assert_eq!(
            ModelName::parse("unsloth/medgemma-4b-it-GGUF:q4_k_m").unwrap(),
            ModelName {
                name: "unsloth/medgemma-4b-it-GGUF".into(),
                quant: Some("q4_k_m".into())
            }
        );
    }

    #[test]
    fn paths_stay_paths() {
        for p in ["model.gguf", "MODEL.GGUF", "dir/model", "./x", "/abs/medgemma-4b-it"] {
            assert_eq!(ModelRef::parse(p).unwrap(), ModelRef::Path(p.into()), "{p}");
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("medgemma-4b-it");
        std::fs::write(&file, "x").unwrap();
        let text = file.to_str().unwrap();
        assert_eq!(ModelRef::parse(text).unwrap(), ModelRef::Path(file.clone()));
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in ["", ":q4_k_m", "a:", "a:q4-k", "medgemma 4b", "a b:q8_0"] {
            assert!(ModelName::parse(bad).is_err(), "{bad:?}");
        }
        assert!(ModelName::parse("..:q8_0").is_err());
        let err = ModelName::parse("what?").unwrap_err().to_string();
        assert!(
            err.contains("NAME[:QUANT]") && err.contains("`medgemma list --available`"),
            "{err}"
        );
        assert!(matches!(
            ModelName::parse("a:q-8"),
            Err(ModelNameError::BadQuant { .. })
        ));
    }
}
