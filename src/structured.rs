//! Structured answers: JSON objects, JSON Schema shapes, GBNF grammars, and fixed labels (`--choices`).
//!
//! Owns: [`OutputFormat`] (what `--format json`, `--json-schema FILE` and `--grammar FILE` ask for): the GBNF
//! grammar llama.cpp's sampler constrains generation with (`llama_sampler_init_grammar`, root rule `root`), and
//! the check of the finished answer. Everything here is pure: no model, no llama.cpp.
//!
//! The JSON Schema subset (anything else is refused with its JSON pointer, before the model loads):
//! - `type` (string, number, integer, boolean, null, object, array, or an array of them), `enum`, `const`;
//! - objects: `properties`, `required`, `additionalProperties` (`false`, `true` or a schema);
//! - arrays: `items`, `prefixItems`, `minItems`, `maxItems`;
//! - strings: `minLength`, `maxLength`, `format` (`date`, `time`, `date-time`, `uuid`);
//! - numbers: `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum` (validated, not enforced by the grammar);
//! - `anyOf`, `oneOf`, `allOf` (one schema only), `$ref` to `#`, `#/$defs/NAME` or `#/definitions/NAME`, with
//!   `$defs`/`definitions` at the root (recursion allowed through properties and items);
//! - ignored annotations: `title`, `description`, `$schema`, `$id`, `$comment`, `examples`, `default`,
//!   `deprecated`, `readOnly`, `writeOnly`.
//!
//! Refused: `pattern`, `patternProperties`, `propertyNames`, `minProperties`, `maxProperties`, `multipleOf`,
//! `uniqueItems`, `contains`, `not`, `if`/`then`/`else`, `dependentRequired`, other formats, and every other
//! keyword. Generation writes properties in the schema file's order and no property the schema does not list
//! unless `additionalProperties` is `true` or a schema; validation follows JSON Schema (an unlisted property is
//! allowed unless `additionalProperties` is `false`). See [`gbnf`] for what the grammar enforces.
//!
//! Must not: touch llama.cpp, print, or put answer text in errors (answers may hold patient data).

mod choices;
#[cfg(test)]
mod fuzz;
mod gbnf;
mod gbnf_check;
mod gbnf_lexer;
#[cfg(test)]
mod gbnf_matcher;
mod ordered;
mod schema;
mod schema_parse;
mod validate;

use std::path::{Path, PathBuf};

pub use choices::parse_choices;
pub use gbnf::json_object_grammar;
pub use gbnf_check::{check_gbnf, GbnfError};
pub use schema::{load_schema, Node, Schema, Target};
pub use validate::ValidationError;

/// The shape an answer must have.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputFormat {
    /// `--format json`: any JSON object.
    JsonObject,
    /// `--json-schema FILE`.
    Schema(Schema),
    /// `--grammar FILE`: a GBNF grammar, already checked by [`check_gbnf`].
    Grammar { path: PathBuf, text: String },
}

/// Why `--grammar FILE` is refused.
#[derive(Debug, thiserror::Error)]
pub enum GrammarError {
    #[error("{}: cannot read the grammar: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Invalid(#[from] GbnfError),
}

/// Why a finished answer does not have the asked shape; never quotes the answer beyond short values.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AnswerError {
    #[error("the answer is not JSON: {0}")]
    NotJson(String),
    #[error("the answer is {0}, not a JSON object")]
    NotObject(&'static str),
    #[error(transparent)]
    Mismatch(#[from] ValidationError),
}

/// Reads and checks a `--grammar` file; errors name the file (and the line and column of a mistake).
pub fn load_grammar(path: &Path) -> Result<OutputFormat, GrammarError> {
    let text = crate::files::read_regular_to_string(path).map_err(|source| GrammarError::Read {
        path: path.into(),
        source,
    })?;
    check_gbnf(&text).map_err(|e| e.in_file(path))?;
    Ok(OutputFormat::Grammar {
        path: path.into(),
        text,
    })
}

impl OutputFormat {
    /// The GBNF grammar to give llama.cpp (root rule `root`).
    pub fn grammar(&self) -> String {
        match self {
            OutputFormat::JsonObject => json_object_grammar(),
            OutputFormat::Schema(schema) => schema.to_gbnf(),
            OutputFormat::Grammar { text, .. } => text.clone(),
        }
    }

    /// Checks a finished answer: the parsed JSON for `--format json` and `--json-schema`; `None` for a grammar,
    /// which llama.cpp enforced while generating.
    pub fn check_answer(&self, text: &str) -> Result<Option<serde_json::Value>, AnswerError> {
        let parse = || serde_json::from_str::<serde_json::Value>(text).map_err(|e| AnswerError::NotJson(e.to_string()));
        match self {
            OutputFormat::JsonObject => {
                let value = parse()?;
                if !value.is_object() {
                    return Err(AnswerError::NotObject(kind(&value)));
                }
                Ok(Some(value))
            }
            OutputFormat::Schema(schema) => {
                let value = parse()?;
                schema.validate(&value)?;
                Ok(Some(value))
            }
            OutputFormat::Grammar { .. } => Ok(None),
        }
    }

    /// What the answer is held to, in words: "JSON object", "JSON Schema report.schema.json", "grammar g.gbnf".
    pub fn describe(&self) -> String {
        match self {
            OutputFormat::JsonObject => "JSON object".to_string(),
            OutputFormat::Schema(Schema { file: Some(file), .. }) => format!("JSON Schema {}", file.display()),
            OutputFormat::Schema(_) => "JSON Schema".to_string(),
            OutputFormat::Grammar { path, .. } => format!("grammar {}", path.display()),
        }
    }
}

fn kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
#[path = "structured/tests.rs"]
mod tests;
