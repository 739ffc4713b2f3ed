//! A JSON Schema, parsed and checked: the shape `--json-schema FILE` asks the answer to have.
//!
//! Owns: [`Schema`] and its nodes, the ways in (a file, text keeping the properties' written order, or a
//! `serde_json::Value`), [`SchemaError`] (naming the file, the JSON pointer and the fix) and [`Pointer`].
//! [`super::schema_parse`] reads the keywords: every keyword outside the supported subset (see [`super`]) is
//! refused, `$ref`s must resolve, and no `$ref` cycle may loop without reaching a value (so grammars have no
//! left recursion and validation always terminates).
//!
//! Must not: build grammars ([`super::gbnf`]) or validate answers ([`super::validate`]).

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::ordered::Json;
use super::schema_parse::Fail;

/// A JSON pointer into a schema or an answer; shown as "the root" when empty.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pointer(pub String);

impl Pointer {
    /// This pointer with one more reference token (escaped as RFC 6901 says).
    pub fn join(&self, token: &str) -> Pointer {
        Pointer(format!("{}/{}", self.0, token.replace('~', "~0").replace('/', "~1")))
    }
}

impl fmt::Display for Pointer {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("the root")
        } else {
            f.write_str(&self.0)
        }
    }
}

/// Why a schema cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("{}: cannot read the JSON Schema: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}not JSON: {reason}", name(file))]
    NotJson { file: Option<PathBuf>, reason: String },
    #[error(
        "{}unsupported JSON Schema keyword {keyword:?} at {at}; remove it or express it with the supported \
         keywords (listed in medgemma run --help)",
        name(file)
    )]
    Unsupported {
        file: Option<PathBuf>,
        keyword: String,
        at: Pointer,
    },
    #[error("{}invalid JSON Schema at {at}: {problem}", name(file))]
    Invalid {
        file: Option<PathBuf>,
        at: Pointer,
        problem: String,
    },
}

fn name(file: &Option<PathBuf>) -> String {
    match file {
        Some(path) => format!("{}: ", path.display()),
        None => "JSON Schema: ".to_string(),
    }
}

/// A JSON type name of `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonType {
    String,
    Number,
    Integer,
    Boolean,
    Null,
    Object,
    Array,
}

/// A supported `format` of strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Date,
    Time,
    DateTime,
    Uuid,
}

/// Where a `$ref` points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    Root,
    Def(usize),
}

/// A schema: `true` (anything), `false` (nothing) or an object of keywords.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Bool(bool),
    Rules(Box<Rules>),
}

/// The keywords of one schema object; an absent keyword is `None` or empty.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rules {
    pub types: Option<Vec<JsonType>>,
    pub properties: Vec<(String, Node)>,
    pub required: Vec<String>,
    pub additional: Option<Node>,
    pub items: Option<Node>,
    pub prefix_items: Vec<Node>,
    pub min_items: Option<u64>,
    pub max_items: Option<u64>,
    pub enumeration: Option<Vec<Value>>,
    pub constant: Option<Value>,
    pub any_of: Vec<Node>,
    pub one_of: Vec<Node>,
    pub all_of: Vec<Node>,
    pub reference: Option<Target>,
    pub min_length: Option<u64>,
    pub max_length: Option<u64>,
    pub minimum: Option<f64>,
    pub maximum: Option<f64>,
    pub exclusive_minimum: Option<f64>,
    pub exclusive_maximum: Option<f64>,
    pub format: Option<Format>,
}

/// A parsed JSON Schema: its root and its `$defs`/`definitions` (name, schema), in the written order.
#[derive(Debug, Clone, PartialEq)]
pub struct Schema {
    pub root: Node,
    pub defs: Vec<(String, Node)>,
    /// The file it was read from, if any.
    pub file: Option<PathBuf>,
}

/// Reads and parses a JSON Schema file; the errors name the file.
pub fn load_schema(path: &Path) -> Result<Schema, SchemaError> {
    let text = crate::files::read_regular_to_string(path).map_err(|source| SchemaError::Read {
        path: path.into(),
        source,
    })?;
    Schema::parse(&text, Some(path))
}

impl Schema {
    /// Parses a schema from a `serde_json::Value` (a batch job's "format"). serde_json is built with
    /// `preserve_order`, so its objects keep their written order, as [`Schema::parse`] does.
    pub fn from_value(value: &Value) -> Result<Schema, SchemaError> {
        Schema::from_json(&Json::from_value(value), None)
    }

    /// Parses schema text; `file` names it in errors.
    pub fn parse(text: &str, file: Option<&Path>) -> Result<Schema, SchemaError> {
        let json: Json = serde_json::from_str(text).map_err(|e| SchemaError::NotJson {
            file: file.map(Path::to_path_buf),
            reason: e.to_string(),
        })?;
        Schema::from_json(&json, file)
    }

    fn from_json(json: &Json, file: Option<&Path>) -> Result<Schema, SchemaError> {
        let file = file.map(Path::to_path_buf);
        super::schema_parse::parse_schema(json)
            .map(|schema| Schema {
                file: file.clone(),
                ..schema
            })
            .map_err(|fail| match fail {
                Fail::Unsupported(keyword, at) => SchemaError::Unsupported { file, keyword, at },
                Fail::Invalid(at, problem) => SchemaError::Invalid { file, at, problem },
            })
    }

    /// The schema a `$ref` target names.
    pub fn target(&self, target: Target) -> &Node {
        match target {
            Target::Root => &self.root,
            Target::Def(i) => &self.defs[i].1,
        }
    }
}

#[cfg(test)]
#[path = "schema_tests.rs"]
mod tests;
