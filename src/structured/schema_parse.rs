//! Reading a schema's keywords into [`Schema`] nodes, refusing what is outside the supported subset.
//!
//! Owns: the keyword table (each supported keyword's value checked, annotations skipped, anything else an
//! "unsupported keyword" at the schema's JSON pointer), `$defs`/`definitions` and `$ref` resolution, the
//! cross-keyword checks (min above max, `required` outside `properties`, `allOf` of more than one schema), and
//! the refusal of `$ref` cycles that never reach a value.
//!
//! Must not: read files or build error text for users ([`super::schema`] does both).

use std::collections::{HashMap, HashSet};

use super::ordered::Json;
use super::schema::{Format, JsonType, Node, Pointer, Rules, Schema, Target};

/// Why a schema is refused, before the file name is added.
pub enum Fail {
    Unsupported(String, Pointer),
    Invalid(Pointer, String),
}

pub fn invalid<T>(at: &Pointer, problem: impl Into<String>) -> Result<T, Fail> {
    Err(Fail::Invalid(at.clone(), problem.into()))
}

const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "$schema",
    "$id",
    "$comment",
    "examples",
    "default",
    "deprecated",
    "readOnly",
    "writeOnly",
];

pub fn parse_schema(json: &Json) -> Result<Schema, Fail> {
    let root_at = Pointer::default();
    let mut refs = HashMap::from([("#".to_string(), Target::Root)]);
    let mut def_sources = Vec::new();
    if let Json::Object(entries) = json {
        for (container, defs) in entries.iter().filter(|(k, _)| k == "$defs" || k == "definitions") {
            let at = root_at.join(container);
            let Json::Object(defs) = defs else {
                return invalid(&at, format!("{container} must be an object of schemas"));
            };
            for (def, schema) in defs {
                let def_at = at.join(def);
                if refs
                    .insert(format!("#{}", def_at.0), Target::Def(def_sources.len()))
                    .is_some()
                {
                    return invalid(&def_at, format!("{def:?} is defined twice"));
                }
                def_sources.push((def.clone(), schema, def_at));
            }
        }
    }
    let parser = Parser { refs };
    let root = parser.node(json, &root_at, true)?;
    if root == Node::Bool(false) {
        return invalid(&root_at, "the schema is false, so no answer can match it");
    }
    let mut defs = Vec::new();
    for (def, schema, at) in &def_sources {
        defs.push((def.clone(), parser.node(schema, at, false)?));
    }
    let schema = Schema { root, defs, file: None };
    let mut pointers = vec![root_at];
    pointers.extend(def_sources.into_iter().map(|(_, _, at)| at));
    check_ref_cycles(&schema, &pointers)?;
    Ok(schema)
}

struct Parser {
    refs: HashMap<String, Target>,
}

impl Parser {
    fn node(&self, json: &Json, at: &Pointer, root: bool) -> Result<Node, Fail> {
        match json {
            Json::Bool(b) => Ok(Node::Bool(*b)),
            Json::Object(entries) => Ok(Node::Rules(Box::new(self.rules(entries, at, root)?))),
            other => invalid(
                at,
                format!("a schema must be an object or true/false, not {}", other.kind()),
            ),
        }
    }

    fn nodes(&self, json: &Json, at: &Pointer, keyword: &str) -> Result<Vec<Node>, Fail> {
        match json {
            Json::Array(items) if !items.is_empty() => items
                .iter()
                .enumerate()
                .map(|(i, item)| self.node(item, &at.join(&i.to_string()), false))
                .collect(),
            _ => invalid(at, format!("{keyword} must be a non-empty array of schemas")),
        }
    }

    fn rules(&self, entries: &[(String, Json)], at: &Pointer, root: bool) -> Result<Rules, Fail> {
        let mut r = Rules::default();
        let mut seen = HashSet::new();
        for (key, value) in entries {
            if !seen.insert(key.as_str()) {
                return invalid(at, format!("keyword {key:?} appears twice"));
            }
            let here = at.join(key);
            match key.as_str() {
                "type" => r.types = Some(types(value, &here)?),
                "properties" => {
                    let Json::Object(props) = value else {
                        return invalid(&here, "properties must be an object");
                    };
                    for (prop, schema) in props {
                        if r.properties.iter().any(|(p, _)| p == prop) {
                            return invalid(&here, format!("property {prop:?} is listed twice"));
                        }
                        r.properties
                            .push((prop.clone(), self.node(schema, &here.join(prop), false)?));
                    }
                }
                "required" => r.required = names(value, &here)?,
                "additionalProperties" => r.additional = Some(self.node(value, &here, false)?),
                "items" => r.items = Some(self.node(value, &here, false)?),
                "prefixItems" => r.prefix_items = self.nodes(value, &here, key)?,
                "minItems" => r.min_items = Some(count(value, &here)?),
                "maxItems" => r.max_items = Some(count(value, &here)?),
                "minLength" => r.min_length = Some(count(value, &here)?),
                "maxLength" => r.max_length = Some(count(value, &here)?),
                "minimum" => r.minimum = Some(number(value, &here)?),
                "maximum" => r.maximum = Some(number(value, &here)?),
                "exclusiveMinimum" => r.exclusive_minimum = Some(number(value, &here)?),
                "exclusiveMaximum" => r.exclusive_maximum = Some(number(value, &here)?),
                "enum" => match value {
                    Json::Array(items) if !items.is_empty() => {
                        r.enumeration = Some(items.iter().map(Json::to_value).collect())
                    }
                    _ => return invalid(&here, "enum must be a non-empty array of values"),
                },
                "const" => r.constant = Some(value.to_value()),
                "anyOf" => r.any_of = self.nodes(value, &here, key)?,
                "oneOf" => r.one_of = self.nodes(value, &here, key)?,
                "allOf" => r.all_of = self.nodes(value, &here, key)?,
                "$ref" => {
                    let Json::String(target) = value else {
                        return invalid(&here, "$ref must be a string");
                    };
                    let Some(target) = self.refs.get(target) else {
                        return invalid(&here, format!("$ref {target:?} names no schema; refer to \"#\" or to \"#/$defs/NAME\" with NAME defined in the root's $defs"));
                    };
                    r.reference = Some(*target);
                }
                "$defs" | "definitions" if root => {}
                "$defs" | "definitions" => {
                    return invalid(&here, format!("{key} is only supported at the root; move it there"))
                }
                "format" => r.format = Some(format(value, &here)?),
                k if ANNOTATIONS.contains(&k) => {}
                _ => return Err(Fail::Unsupported(key.clone(), at.clone())),
            }
        }
        for (min, max, what) in [
            (r.min_items, r.max_items, "minItems"),
            (r.min_length, r.max_length, "minLength"),
        ] {
            if let (Some(min), Some(max)) = (min, max) {
                if min > max {
                    return invalid(at, format!("{what} ({min}) is greater than its maximum ({max})"));
                }
            }
        }
        // Numeric bounds that no number meets: a schema no answer can satisfy.
        let tighter = |a: Option<f64>, b: Option<f64>, lower: bool| match (a, b) {
            (Some(a), Some(b)) if (lower && b >= a) || (!lower && b <= a) => Some((b, true)),
            (Some(a), _) => Some((a, false)),
            (None, Some(b)) => Some((b, true)),
            (None, None) => None,
        };
        let lower = tighter(r.minimum, r.exclusive_minimum, true);
        let upper = tighter(r.maximum, r.exclusive_maximum, false);
        if let (Some((lo, lo_exclusive)), Some((hi, hi_exclusive))) = (lower, upper) {
            if lo > hi || (lo == hi && (lo_exclusive || hi_exclusive)) {
                return invalid(
                    at,
                    format!("no number meets both bounds: minimum {lo} is not below maximum {hi}"),
                );
            }
        }
        let closed = r.additional == Some(Node::Bool(false));
        if closed || seen.contains("properties") {
            if let Some(missing) = r
                .required
                .iter()
                .find(|name| !r.properties.iter().any(|(p, _)| p == *name))
            {
                return invalid(
                    &at.join("required"),
                    format!("required property {missing:?} is not in properties; add it there"),
                );
            }
        }
        if r.all_of.len() > 1 {
            return invalid(
                &at.join("allOf"),
                "allOf with more than one schema is not supported; merge them into one schema",
            );
        }
        Ok(r)
    }
}

fn types(value: &Json, at: &Pointer) -> Result<Vec<JsonType>, Fail> {
    let one = |name: &Json| match name {
        Json::String(name) => match name.as_str() {
            "string" => Ok(JsonType::String),
            "number" => Ok(JsonType::Number),
            "integer" => Ok(JsonType::Integer),
            "boolean" => Ok(JsonType::Boolean),
            "null" => Ok(JsonType::Null),
            "object" => Ok(JsonType::Object),
            "array" => Ok(JsonType::Array),
            _ => invalid(
                at,
                format!("unknown type {name:?}; use string, number, integer, boolean, null, object or array"),
            ),
        },
        _ => invalid(at, "type must be a type name or an array of them"),
    };
    let list = match value {
        Json::Array(names) if !names.is_empty() => names.iter().map(one).collect::<Result<Vec<_>, _>>()?,
        Json::Array(_) => return invalid(at, "type must not be an empty array"),
        name => vec![one(name)?],
    };
    if list.iter().enumerate().any(|(i, t)| list[..i].contains(t)) {
        return invalid(at, "type lists a type twice");
    }
    Ok(list)
}

fn names(value: &Json, at: &Pointer) -> Result<Vec<String>, Fail> {
    let Json::Array(items) = value else {
        return invalid(at, "required must be an array of property names");
    };
    let mut names: Vec<String> = Vec::new();
    for item in items {
        let Json::String(name) = item else {
            return invalid(at, "required must be an array of property names");
        };
        if names.contains(name) {
            return invalid(at, format!("required lists {name:?} twice"));
        }
        names.push(name.clone());
    }
    Ok(names)
}

fn count(value: &Json, at: &Pointer) -> Result<u64, Fail> {
    match value {
        Json::Number(n) if n.as_u64().is_some() => Ok(n.as_u64().unwrap_or_default()),
        Json::Number(n) if n.as_f64().is_some_and(|f| f >= 0.0 && f.fract() == 0.0 && f < 1e15) => {
            Ok(n.as_f64().unwrap_or_default() as u64)
        }
        _ => invalid(at, "must be a non-negative integer"),
    }
}

fn number(value: &Json, at: &Pointer) -> Result<f64, Fail> {
    match value {
        Json::Number(n) => n.as_f64().map_or_else(|| invalid(at, "must be a number"), Ok),
        _ => invalid(at, "must be a number"),
    }
}

fn format(value: &Json, at: &Pointer) -> Result<Format, Fail> {
    match value {
        Json::String(f) if f == "date" => Ok(Format::Date),
        Json::String(f) if f == "time" => Ok(Format::Time),
        Json::String(f) if f == "date-time" => Ok(Format::DateTime),
        Json::String(f) if f == "uuid" => Ok(Format::Uuid),
        _ => invalid(
            at,
            "unsupported format; use \"date\", \"time\", \"date-time\" or \"uuid\", or remove it",
        ),
    }
}

/// The targets a node refers to without first entering an object or array value.
fn immediate_refs(node: &Node, out: &mut Vec<Target>) {
    let Node::Rules(r) = node else { return };
    out.extend(r.reference);
    for sub in r.any_of.iter().chain(&r.one_of).chain(&r.all_of) {
        immediate_refs(sub, out);
    }
}

/// Refuses `$ref` chains that loop without reaching a value (`a` is `b`, `b` is `a`).
fn check_ref_cycles(schema: &Schema, pointers: &[Pointer]) -> Result<(), Fail> {
    let index = |t: Target| match t {
        Target::Root => 0,
        Target::Def(i) => i + 1,
    };
    let n = pointers.len();
    let mut edges = vec![Vec::new(); n];
    immediate_refs(&schema.root, &mut edges[0]);
    for (i, (_, node)) in schema.defs.iter().enumerate() {
        immediate_refs(node, &mut edges[i + 1]);
    }
    // 0: unvisited, 1: on the current path, 2: done.
    let mut state = vec![0u8; n];
    fn visit(v: usize, edges: &[Vec<Target>], state: &mut [u8], index: &dyn Fn(Target) -> usize) -> Option<usize> {
        state[v] = 1;
        for &t in &edges[v] {
            let w = index(t);
            if state[w] == 1 {
                return Some(w);
            }
            if state[w] == 0 {
                if let Some(found) = visit(w, edges, state, index) {
                    return Some(found);
                }
            }
        }
        state[v] = 2;
        None
    }
    for start in 0..n {
        if state[start] == 0 {
            if let Some(w) = visit(start, &edges, &mut state, &index) {
                return invalid(
                    &pointers[w],
                    "its $ref chain leads back to itself without reaching a value; refer to it only from inside \
                     properties or items",
                );
            }
        }
    }
    Ok(())
}
