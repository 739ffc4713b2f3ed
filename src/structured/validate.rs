//! Checking an answer against a [`Schema`], with the JSON Schema meaning of every supported keyword.
//!
//! Owns: [`Schema::validate`] and [`ValidationError`], whose text gives the JSON pointer into the answer and what
//! was expected. Answers may hold patient text, so errors name a value's type, and quote only short strings
//! (at most [`QUOTE_LIMIT`] characters) or numbers.
//!
//! Must not: parse answer text (the caller gives a `serde_json::Value`) or build grammars. Recursion follows the
//! answer's nesting only: [`super::schema`] refuses `$ref` cycles that do not enter a property or an item.

use serde_json::Value;

use super::schema::{Format, JsonType, Node, Pointer, Rules, Schema};

/// The longest string an error quotes; a longer one is described by its length.
pub const QUOTE_LIMIT: usize = 40;

/// Where and why an answer does not match the schema.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("answer does not match the schema at {at}: {problem}")]
pub struct ValidationError {
    pub at: Pointer,
    pub problem: String,
}

fn fail(at: &Pointer, problem: impl Into<String>) -> Result<(), ValidationError> {
    Err(ValidationError {
        at: at.clone(),
        problem: problem.into(),
    })
}

impl Schema {
    /// Checks `value` against the schema; the first mismatch found is the error.
    pub fn validate(&self, value: &Value) -> Result<(), ValidationError> {
        self.check(&self.root, value, &Pointer::default())
    }

    /// Checks `value`, found at `at` in the answer, against one node of the schema.
    pub(super) fn check(&self, node: &Node, value: &Value, at: &Pointer) -> Result<(), ValidationError> {
        let r = match node {
            Node::Bool(true) => return Ok(()),
            Node::Bool(false) => {
                return fail(
                    at,
                    format!("expected nothing here (the schema is false), got {}", describe(value)),
                )
            }
            Node::Rules(r) => r,
        };
        if let Some(target) = r.reference {
            self.check(self.target(target), value, at)?;
        }
        if let Some(types) = &r.types {
            if !types.iter().any(|t| has_type(value, *t)) {
                let names: Vec<&str> = types.iter().map(|t| type_name(*t)).collect();
                return fail(at, format!("expected {}, got {}", names.join(" or "), describe(value)));
            }
        }
        if let Some(constant) = &r.constant {
            if !json_equal(constant, value) {
                return fail(at, format!("expected {}, got {}", quote(constant), describe(value)));
            }
        }
        if let Some(values) = &r.enumeration {
            if !values.iter().any(|v| json_equal(v, value)) {
                let listed: Vec<String> = values.iter().take(10).map(quote).collect();
                let more = if values.len() > 10 { ", ..." } else { "" };
                return fail(
                    at,
                    format!("expected one of {}{more}, got {}", listed.join(", "), describe(value)),
                );
            }
        }
        match value {
            Value::String(s) => check_string(r, s, at)?,
            Value::Number(n) => check_number(r, n.as_f64().unwrap_or(f64::NAN), at)?,
            Value::Array(items) => self.check_array(r, items, at)?,
            Value::Object(map) => self.check_object(r, map, at)?,
            Value::Bool(_) | Value::Null => {}
        }
        for sub in &r.all_of {
            self.check(sub, value, at)?;
        }
        if !r.any_of.is_empty() {
            let mut errors = Vec::new();
            let matched = r.any_of.iter().any(|sub| match self.check(sub, value, at) {
                Ok(()) => true,
                Err(e) => {
                    errors.push(e);
                    false
                }
            });
            if !matched {
                return Err(best(errors, at, "anyOf"));
            }
        }
        if !r.one_of.is_empty() {
            let results: Vec<Result<(), ValidationError>> = r.one_of.iter().map(|s| self.check(s, value, at)).collect();
            let matching: Vec<usize> = (0..results.len()).filter(|i| results[*i].is_ok()).collect();
            match matching.len() {
                1 => {}
                0 => return Err(best(results.into_iter().filter_map(Result::err).collect(), at, "oneOf")),
                n => {
                    return fail(
                        at,
                        format!(
                            "expected exactly one of the oneOf schemas to match, but {n} do (#{} and #{})",
                            matching[0], matching[1]
                        ),
                    )
                }
            }
        }
        Ok(())
    }

    fn check_array(&self, r: &Rules, items: &[Value], at: &Pointer) -> Result<(), ValidationError> {
        if let Some(min) = r.min_items {
            if (items.len() as u64) < min {
                return fail(at, format!("expected at least {min} items, got {}", items.len()));
            }
        }
        if let Some(max) = r.max_items {
            if items.len() as u64 > max {
                return fail(at, format!("expected at most {max} items, got {}", items.len()));
            }
        }
        for (i, item) in items.iter().enumerate() {
            let schema = r.prefix_items.get(i).or(r.items.as_ref());
            if let Some(schema) = schema {
                if schema == &Node::Bool(false) {
                    return fail(
                        at,
                        format!("expected at most {} items, got {}", r.prefix_items.len(), items.len()),
                    );
                }
                self.check(schema, item, &at.join(&i.to_string()))?;
            }
        }
        Ok(())
    }

    fn check_object(
        &self,
        r: &Rules,
        map: &serde_json::Map<String, Value>,
        at: &Pointer,
    ) -> Result<(), ValidationError> {
        if let Some(missing) = r.required.iter().find(|name| !map.contains_key(*name)) {
            return fail(
                at,
                format!(
                    "expected the required property {}, which is missing",
                    quote_str(missing)
                ),
            );
        }
        for (key, value) in map {
            match r.properties.iter().find(|(p, _)| p == key) {
                Some((_, schema)) => self.check(schema, value, &at.join(key))?,
                None => match &r.additional {
                    Some(Node::Bool(false)) => {
                        return fail(
                            at,
                            format!(
                                "expected no property {} (additionalProperties is false)",
                                quote_str(key)
                            ),
                        )
                    }
                    Some(schema) => self.check(schema, value, &at.join(key))?,
                    None => {}
                },
            }
        }
        Ok(())
    }
}

/// The alternatives' error that got deepest into the value, or a summary when none got past this level.
fn best(errors: Vec<ValidationError>, at: &Pointer, keyword: &str) -> ValidationError {
    let n = errors.len();
    let deepest = errors
        .into_iter()
        .reduce(|a, b| if b.at.0.len() > a.at.0.len() { b } else { a });
    match deepest {
        Some(e) if e.at != *at => e,
        _ => ValidationError {
            at: at.clone(),
            problem: format!("expected a value matching one of the {n} {keyword} schemas; none matches"),
        },
    }
}

fn check_string(r: &Rules, s: &str, at: &Pointer) -> Result<(), ValidationError> {
    let len = s.chars().count() as u64;
    if let Some(min) = r.min_length {
        if len < min {
            return fail(at, format!("expected a string of at least {min} characters, got {len}"));
        }
    }
    if let Some(max) = r.max_length {
        if len > max {
            return fail(at, format!("expected a string of at most {max} characters, got {len}"));
        }
    }
    if let Some(format) = r.format {
        let (ok, name) = match format {
            Format::Date => (is_date(s), "a date (YYYY-MM-DD)"),
            Format::Time => (is_time(s), "a time (HH:MM:SS with Z or an offset)"),
            Format::DateTime => (is_date_time(s), "a date-time (YYYY-MM-DDTHH:MM:SSZ)"),
            Format::Uuid => (is_uuid(s), "a UUID"),
        };
        if !ok {
            return fail(
                at,
                format!("expected {name}, got {}", describe(&Value::String(s.into()))),
            );
        }
    }
    Ok(())
}

fn check_number(r: &Rules, x: f64, at: &Pointer) -> Result<(), ValidationError> {
    let bounds = [
        (r.minimum, ">=", x >= r.minimum.unwrap_or_default()),
        (r.maximum, "<=", x <= r.maximum.unwrap_or_default()),
        (r.exclusive_minimum, ">", x > r.exclusive_minimum.unwrap_or_default()),
        (r.exclusive_maximum, "<", x < r.exclusive_maximum.unwrap_or_default()),
    ];
    for (bound, op, ok) in bounds {
        if let (Some(bound), false) = (bound, ok) {
            return fail(at, format!("expected a number {op} {bound}, got {x}"));
        }
    }
    Ok(())
}

fn has_type(value: &Value, t: JsonType) -> bool {
    match (t, value) {
        (JsonType::String, Value::String(_)) | (JsonType::Number, Value::Number(_)) => true,
        (JsonType::Boolean, Value::Bool(_)) | (JsonType::Null, Value::Null) => true,
        (JsonType::Object, Value::Object(_)) | (JsonType::Array, Value::Array(_)) => true,
        (JsonType::Integer, Value::Number(n)) => {
            n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.is_finite() && f.fract() == 0.0)
        }
        _ => false,
    }
}

fn type_name(t: JsonType) -> &'static str {
    match t {
        JsonType::String => "a string",
        JsonType::Number => "a number",
        JsonType::Integer => "an integer",
        JsonType::Boolean => "a boolean",
        JsonType::Null => "null",
        JsonType::Object => "an object",
        JsonType::Array => "an array",
    }
}

/// Equality as JSON Schema means it: numbers by value (1 equals 1.0), objects regardless of key order.
pub fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
            (Some(x), Some(y), _, _) => x == y,
            (_, _, Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_equal(a, b)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

/// A value as an error shows it: short strings quoted, numbers and literals as written, containers by kind.
fn describe(value: &Value) -> String {
    match value {
        Value::String(s) if s.chars().count() <= QUOTE_LIMIT => quote_str(s),
        Value::String(s) => format!("a string of {} characters", s.chars().count()),
        Value::Array(items) => format!("an array of {} items", items.len()),
        Value::Object(_) => "an object".to_string(),
        other => other.to_string(),
    }
}

/// A schema's value (from `enum`/`const`), cut to [`QUOTE_LIMIT`] characters.
fn quote(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() <= QUOTE_LIMIT {
        text
    } else {
        format!("{}...", text.chars().take(QUOTE_LIMIT).collect::<String>())
    }
}

fn quote_str(s: &str) -> String {
    quote(&Value::String(s.to_string()))
}

fn digits(s: &str, n: usize) -> Option<u32> {
    (s.len() == n && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

fn is_date(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    let [y, m, d] = parts[..] else { return false };
    let (Some(y), Some(m), Some(d)) = (digits(y, 4), digits(m, 2), digits(d, 2)) else {
        return false;
    };
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&d)
}

fn is_time(s: &str) -> bool {
    let (clock, offset) = if let Some(clock) = s.strip_suffix(['Z', 'z']) {
        (clock, None)
    } else {
        match s.rfind(['+', '-']) {
            Some(i) => (&s[..i], Some(&s[i + 1..])),
            None => return false,
        }
    };
    let hms = |t: &str, seconds: bool| {
        let parts: Vec<&str> = t.split(':').collect();
        let want = if seconds { 3 } else { 2 };
        parts.len() == want
            && digits(parts[0], 2).is_some_and(|h| h < 24)
            && digits(parts[1], 2).is_some_and(|m| m < 60)
            && (!seconds || digits(parts[2], 2).is_some_and(|s| s < 60))
    };
    let (whole, fraction) = match clock.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (clock, None),
    };
    hms(whole, true)
        && fraction.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
        && offset.is_none_or(|o| hms(o, false))
}

fn is_date_time(s: &str) -> bool {
    s.len() > 11
        && s.is_char_boundary(10)
        && matches!(s.as_bytes()[10], b'T' | b't')
        && is_date(&s[..10])
        && is_time(&s[11..])
}

fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
