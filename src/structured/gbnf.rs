//! GBNF grammars (llama.cpp's grammar format) for JSON answers: any JSON object, or the JSON a [`Schema`] allows.
//!
//! Owns: [`Schema::to_gbnf`], [`json_object_grammar`] and GBNF literal escaping. Whitespace between tokens is
//! bounded (`space`: nothing, one space, or one or two newlines and up to 20 spaces/tabs) so a sampler cannot
//! loop on it; numbers have at most 16 integer and 16 fraction digits and a 3-digit exponent.
//!
//! What the grammar enforces and what only validation checks: at each schema object the grammar follows the
//! first of `const`, `enum` (only the values that validate), `anyOf`/`oneOf` (as alternatives), the types
//! (`type`, or the type the keywords imply), `$ref`, a single `allOf` schema, and otherwise any JSON value.
//! Properties come in the schema's order; required ones always, optional ones may be left out; extra
//! properties only where `additionalProperties` is `true` or a schema. Strings follow `minLength`/`maxLength`
//! and `format`; arrays follow `prefixItems`, `items`, `minItems`, `maxItems`. `enum`/`const` values are written as
//! serde_json writes them (objects and arrays compact, keys in their written order). Not enforced, only validated:
//! number bounds (`minimum`...), the siblings of the keyword the grammar followed, `oneOf`'s "exactly one",
//! and counts beyond llama.cpp's repetition limit ([`MAX_REPEAT`]).
//!
//! Must not: validate answers, or produce a grammar [`super::gbnf_check::check_gbnf`] refuses.

use std::collections::{HashMap, HashSet};

use super::schema::{Format, JsonType, Node, Rules, Schema, Target};

/// llama.cpp refuses `x{m,}` with m above this, and reads `x{m,n}` with n above it as `x{m,}`.
pub const MAX_REPEAT: u64 = 2000;

const PRIMITIVES: &[(&str, &str)] = &[
    ("space", r#"| " " | "\n"{1,2} [ \t]{0,20}"#),
    (
        "json-char",
        r#"[^"\\\x7F\x00-\x1F] | [\\] (["\\/bfnrt] | "u" [0-9a-fA-F]{4})"#,
    ),
    ("json-string", r#""\"" json-char* "\"" space"#),
    ("json-int-part", r#""0" | [1-9] [0-9]{0,15}"#),
    (
        "json-number",
        r#""-"? json-int-part ("." [0-9]{1,16})? ([eE] [-+]? [0-9]{1,3})? space"#,
    ),
    ("json-integer", r#""-"? json-int-part space"#),
    ("json-boolean", r#"("true" | "false") space"#),
    ("json-null", r#""null" space"#),
    (
        "json-value",
        "json-object | json-array | json-string | json-number | json-boolean | json-null",
    ),
    (
        "json-object",
        r#""{" space (json-string ":" space json-value ("," space json-string ":" space json-value)*)? "}" space"#,
    ),
    (
        "json-array",
        r#""[" space (json-value ("," space json-value)*)? "]" space"#,
    ),
    ("never", r"[^\x00-\U0010FFFF]"),
    (
        "date",
        r#"[0-9]{4} "-" ("0" [1-9] | "1" [0-2]) "-" ("0" [1-9] | [1-2] [0-9] | "3" [0-1])"#,
    ),
    (
        "time",
        r#"([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9] ":" [0-5] [0-9] ("." [0-9]{1,9})? ("Z" | [+-] ([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9])"#,
    ),
    (
        "uuid",
        r#"[0-9a-fA-F]{8} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{4} "-" [0-9a-fA-F]{12}"#,
    ),
];

/// The primitive rules each primitive uses.
fn deps(name: &str) -> &'static [&'static str] {
    match name {
        "json-string" => &["json-char", "space"],
        "json-number" | "json-integer" => &["json-int-part", "space"],
        "json-boolean" | "json-null" => &["space"],
        "json-value" => &[
            "json-object",
            "json-array",
            "json-string",
            "json-number",
            "json-boolean",
            "json-null",
        ],
        "json-object" | "json-array" => &["space", "json-string", "json-value"],
        _ => &[],
    }
}

/// A grammar for any JSON object (`--format json`).
pub fn json_object_grammar() -> String {
    let mut g = Grammar::default();
    let object = g.primitive("json-object");
    g.define("root", object);
    g.text()
}

/// A GBNF string literal that matches `text` exactly.
pub fn literal(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\x7f' => out.push_str(&format!("\\x{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `x{min,max}` as llama.cpp reads it, clamped to [`MAX_REPEAT`] (validation checks the rest).
fn repeat(item: &str, min: u64, max: Option<u64>) -> String {
    let min = min.min(MAX_REPEAT);
    match max {
        Some(0) => String::new(),
        Some(max) if max <= MAX_REPEAT => format!("{item}{{{min},{max}}}"),
        _ => format!("{item}{{{min},}}"),
    }
}

/// Rules in the order they are defined, the root first.
#[derive(Default)]
struct Grammar {
    rules: Vec<(String, String)>,
    taken: HashSet<String>,
    refs: HashMap<Target, String>,
}

impl Grammar {
    fn primitive(&mut self, name: &'static str) -> String {
        if self.taken.insert(name.to_string()) {
            for dep in deps(name) {
                self.primitive(dep);
            }
            let body = PRIMITIVES
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, b)| *b)
                .unwrap_or(r"[^\x00-\U0010FFFF]");
            self.rules.push((name.to_string(), body.to_string()));
        }
        name.to_string()
    }

    /// A fresh rule name made from `hint` ([a-zA-Z0-9-] only).
    fn name(&mut self, hint: &str) -> String {
        let base: String = hint
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' })
            .collect();
        let mut name = base.clone();
        let mut n = 2;
        while !self.taken.insert(name.clone()) {
            name = format!("{base}-{n}");
            n += 1;
        }
        name
    }

    fn define(&mut self, name: &str, body: String) {
        self.rules.push((name.to_string(), body));
    }

    /// A new rule named after `hint` with this body; its name.
    fn rule(&mut self, hint: &str, body: String) -> String {
        let name = self.name(hint);
        self.define(&name, body);
        name
    }

    fn text(&self) -> String {
        let mut rules: Vec<&(String, String)> = self.rules.iter().filter(|(n, _)| n == "root").collect();
        rules.extend(self.rules.iter().filter(|(n, _)| n != "root"));
        rules
            .iter()
            .map(|(name, body)| format!("{name} ::= {body}\n"))
            .collect()
    }
}

impl Schema {
    /// The GBNF grammar (root rule `root`) of the JSON texts this schema allows; see the module text for what
    /// it enforces and what only [`Schema::validate`] checks.
    pub fn to_gbnf(&self) -> String {
        let mut g = Grammar::default();
        g.taken.insert("root".to_string());
        g.refs.insert(Target::Root, "root".to_string());
        let body = self.value(&mut g, &self.root, "root");
        g.define("root", body);
        g.text()
    }

    /// A GBNF expression for the values `node` allows, followed by optional whitespace.
    fn value(&self, g: &mut Grammar, node: &Node, hint: &str) -> String {
        let r = match node {
            Node::Bool(true) => return g.primitive("json-value"),
            Node::Bool(false) => return g.primitive("never"),
            Node::Rules(r) => r,
        };
        let literals = r
            .constant
            .as_ref()
            .map(|c| vec![c.clone()])
            .or_else(|| r.enumeration.clone());
        if let Some(values) = literals {
            let allowed: Vec<String> = values
                .iter()
                .filter(|v| self.check(node, v, &Default::default()).is_ok())
                .map(|v| format!("{} space", literal(&v.to_string())))
                .collect();
            if allowed.is_empty() {
                return g.primitive("never");
            }
            g.primitive("space");
            return g.rule(hint, allowed.join(" | "));
        }
        let alternatives = if r.any_of.is_empty() { &r.one_of } else { &r.any_of };
        if !alternatives.is_empty() {
            let exprs: Vec<String> = alternatives
                .iter()
                .enumerate()
                .filter(|(_, sub)| **sub != Node::Bool(false))
                .map(|(i, sub)| self.value(g, sub, &format!("{hint}-{i}")))
                .collect();
            if exprs.is_empty() {
                return g.primitive("never");
            }
            return g.rule(hint, exprs.join(" | "));
        }
        let types = implied_types(r);
        if types.is_empty() {
            if let Some(target) = r.reference {
                return self.reference(g, target);
            }
            if let Some(sub) = r.all_of.first() {
                return self.value(g, sub, hint);
            }
            return g.primitive("json-value");
        }
        let exprs: Vec<String> = types.iter().map(|t| self.typed(g, r, *t, hint)).collect();
        if exprs.len() == 1 {
            return exprs.into_iter().next().unwrap_or_default();
        }
        g.rule(hint, exprs.join(" | "))
    }

    fn reference(&self, g: &mut Grammar, target: Target) -> String {
        if let Some(name) = g.refs.get(&target) {
            return name.clone();
        }
        let Target::Def(i) = target else {
            return "root".to_string();
        };
        let (def, node) = &self.defs[i];
        let name = g.name(&format!("def-{def}"));
        g.refs.insert(target, name.clone());
        let body = self.value(g, node, &name);
        g.define(&name, body);
        name
    }

    fn typed(&self, g: &mut Grammar, r: &Rules, t: JsonType, hint: &str) -> String {
        match t {
            JsonType::Null => g.primitive("json-null"),
            JsonType::Boolean => g.primitive("json-boolean"),
            JsonType::Integer => g.primitive("json-integer"),
            JsonType::Number => g.primitive("json-number"),
            JsonType::String => {
                g.primitive("space");
                if let Some(format) = r.format {
                    let body = match format {
                        Format::Date => g.primitive("date"),
                        Format::Time => g.primitive("time"),
                        Format::DateTime => format!("{} \"T\" {}", g.primitive("date"), g.primitive("time")),
                        Format::Uuid => g.primitive("uuid"),
                    };
                    return g.rule(&format!("{hint}-string"), format!(r#""\"" {body} "\"" space"#));
                }
                if r.min_length.is_none() && r.max_length.is_none() {
                    return g.primitive("json-string");
                }
                let chars = repeat(&g.primitive("json-char"), r.min_length.unwrap_or(0), r.max_length);
                g.rule(&format!("{hint}-string"), format!(r#""\"" {chars} "\"" space"#))
            }
            JsonType::Object => self.object(g, r, &format!("{hint}-object")),
            JsonType::Array => self.array(g, r, &format!("{hint}-array")),
        }
    }

    fn object(&self, g: &mut Grammar, r: &Rules, hint: &str) -> String {
        g.primitive("space");
        let mut pairs = Vec::new();
        for (i, (name, node)) in r.properties.iter().enumerate() {
            let required = r.required.contains(name);
            if *node == Node::Bool(false) && !required {
                continue;
            }
            let value = self.value(g, node, &format!("{hint}-{name}"));
            let body = format!(
                "{} space \":\" space {value}",
                literal(&serde_json::Value::from(name.as_str()).to_string())
            );
            pairs.push((g.rule(&format!("{hint}-{i}-kv"), body), required));
        }
        let extra = match &r.additional {
            Some(Node::Bool(false)) | None => None,
            Some(node) => {
                let value = self.value(g, node, &format!("{hint}-extra"));
                let body = format!("{} \":\" space {value}", g.primitive("json-string"));
                Some(g.rule(&format!("{hint}-extra-kv"), body))
            }
        };
        // rest[j]: what may follow once something was written, from property j on.
        let mut rest: Vec<String> = vec![String::new(); pairs.len() + 1];
        if let Some(extra) = &extra {
            rest[pairs.len()] = format!(
                "{}*",
                g.rule(&format!("{hint}-extra-next"), format!(r#""," space {extra}"#))
            );
        }
        for j in (0..pairs.len()).rev() {
            let (kv, required) = &pairs[j];
            let item = if *required {
                format!(r#""," space {kv}"#)
            } else {
                format!(r#"("," space {kv})?"#)
            };
            rest[j] = g.rule(&format!("{hint}-rest-{j}"), format!("{item} {}", rest[j + 1]));
        }
        let first_required = pairs.iter().position(|(_, required)| *required);
        let mut alternatives: Vec<String> = Vec::new();
        for (j, (kv, _)) in pairs
            .iter()
            .enumerate()
            .take(first_required.map_or(pairs.len(), |f| f + 1))
        {
            alternatives.push(format!("{kv} {}", rest[j + 1]));
        }
        if first_required.is_none() {
            if let Some(extra) = &extra {
                alternatives.push(format!("{extra} {}", rest[pairs.len()]));
            }
            alternatives.push(String::new());
        }
        if alternatives.iter().all(String::is_empty) {
            return g.rule(hint, r#""{" space "}" space"#.to_string());
        }
        g.rule(hint, format!(r#""{{" space ({}) "}}" space"#, alternatives.join(" | ")))
    }

    fn array(&self, g: &mut Grammar, r: &Rules, hint: &str) -> String {
        g.primitive("space");
        let k = r.prefix_items.len() as u64;
        let min = r.min_items.unwrap_or(0);
        let extras = match (&r.items, k) {
            (Some(Node::Bool(false)), _) => None,
            (Some(node), _) => Some(self.value(g, node, &format!("{hint}-item"))),
            (None, 0) => Some(g.primitive("json-value")),
            (None, _) => None,
        };
        let max = if extras.is_none() {
            Some(r.max_items.unwrap_or(k).min(k))
        } else {
            r.max_items
        };
        // The items from position k on, each after a comma.
        let mut tail = String::new();
        if let Some(item) = &extras {
            let next = g.rule(&format!("{hint}-next"), format!(r#""," space {item}"#));
            if k == 0 && max != Some(0) {
                let more = repeat(&next, min.saturating_sub(1), max.map(|m| m.saturating_sub(1)));
                tail = g.rule(&format!("{hint}-items"), format!("{item} {more}"));
                if min == 0 {
                    tail.push('?');
                }
            } else if k > 0 && max != Some(k) {
                let more = repeat(&next, min.saturating_sub(k), max.map(|m| m.saturating_sub(k)));
                tail = g.rule(&format!("{hint}-more"), more);
            }
        }
        // From the last prefix item back to the first: item i, then what follows it, optional past minItems.
        for i in (0..r.prefix_items.len()).rev() {
            let item = self.value(g, &r.prefix_items[i], &format!("{hint}-{i}"));
            let comma = if i == 0 { "" } else { r#""," space "# };
            let body = format!("{comma}{item} {tail}");
            let body = if (i as u64) < min { body } else { format!("({body})?") };
            tail = g.rule(&format!("{hint}-from-{i}"), body);
        }
        g.rule(hint, format!(r#""[" space {tail} "]" space"#))
    }
}

/// The types a schema object's keywords allow: `type`, or the one its keywords imply; empty for any.
fn implied_types(r: &Rules) -> Vec<JsonType> {
    if let Some(types) = &r.types {
        if types.contains(&JsonType::Number) {
            return types.iter().copied().filter(|t| *t != JsonType::Integer).collect();
        }
        return types.clone();
    }
    if !r.properties.is_empty() || !r.required.is_empty() || r.additional.is_some() {
        vec![JsonType::Object]
    } else if r.items.is_some() || !r.prefix_items.is_empty() || r.min_items.is_some() || r.max_items.is_some() {
        vec![JsonType::Array]
    } else if r.min_length.is_some() || r.max_length.is_some() || r.format.is_some() {
        vec![JsonType::String]
    } else if r.minimum.is_some()
        || r.maximum.is_some()
        || r.exclusive_minimum.is_some()
        || r.exclusive_maximum.is_some()
    {
        vec![JsonType::Number]
    } else {
        Vec::new()
    }
}

#[cfg(test)]
#[path = "gbnf_tests.rs"]
pub(super) mod tests;
