//! Metadata values read with the exact types llama.cpp's getters demand, and the faults that name their key.

use super::Fault;
use crate::gguf::{GgufHeader, GgufValue};

/// The header's metadata, read with the exact types llama.cpp's getters demand.
pub(super) struct Meta<'a>(pub(super) &'a GgufHeader);

/// How a value is named in messages: "a u32 (5)", "an array of 3 f32".
fn describe(v: &GgufValue) -> String {
    match v {
        GgufValue::String(s) if s.len() > 40 => "a string".into(),
        GgufValue::String(s) => format!("the string {s:?}"),
        GgufValue::Array(items) => match items.first() {
            Some(first) => format!("an array of {} {}", items.len(), scalar_type(first)),
            None => "an empty array".into(),
        },
        other => format!("{} ({})", scalar_type(other), scalar_text(other)),
    }
}

fn scalar_type(v: &GgufValue) -> &'static str {
    match v {
        GgufValue::U8(_) => "u8",
        GgufValue::I8(_) => "i8",
        GgufValue::U16(_) => "u16",
        GgufValue::I16(_) => "i16",
        GgufValue::U32(_) => "u32",
        GgufValue::I32(_) => "i32",
        GgufValue::U64(_) => "u64",
        GgufValue::I64(_) => "i64",
        GgufValue::F32(_) => "f32",
        GgufValue::F64(_) => "f64",
        GgufValue::Bool(_) => "bool",
        GgufValue::String(_) => "string",
        GgufValue::Array(_) => "array",
    }
}

fn scalar_text(v: &GgufValue) -> String {
    match v {
        GgufValue::F32(x) => x.to_string(),
        GgufValue::F64(x) => x.to_string(),
        GgufValue::Bool(b) => b.to_string(),
        other => other.as_u64().map_or_else(
            || match other {
                GgufValue::I8(x) => x.to_string(),
                GgufValue::I16(x) => x.to_string(),
                GgufValue::I32(x) => x.to_string(),
                GgufValue::I64(x) => x.to_string(),
                _ => String::new(),
            },
            |n| n.to_string(),
        ),
    }
}

pub(super) fn wrong(key: &str, expected: &'static str, found: &GgufValue) -> Fault {
    Fault::WrongType {
        key: key.to_string(),
        expected,
        found: describe(found),
    }
}

pub(super) fn out_of_range(key: &str, value: impl ToString, rule: impl Into<String>) -> Fault {
    Fault::OutOfRange {
        key: key.to_string(),
        value: value.to_string(),
        rule: rule.into(),
    }
}

impl Meta<'_> {
    /// The value of `key`; a missing key is an error when `required`.
    pub(super) fn get(&self, key: &str, required: bool) -> Result<Option<&GgufValue>, Fault> {
        match self.0.get(key) {
            Some(v) => Ok(Some(v)),
            None if required => Err(Fault::MissingKey { key: key.to_string() }),
            None => Ok(None),
        }
    }

    pub(super) fn u32(&self, key: &str, required: bool) -> Result<Option<u32>, Fault> {
        match self.get(key, required)? {
            Some(GgufValue::U32(v)) => Ok(Some(*v)),
            Some(other) => Err(wrong(key, "a u32", other)),
            None => Ok(None),
        }
    }

    pub(super) fn i32(&self, key: &str) -> Result<Option<i32>, Fault> {
        match self.get(key, false)? {
            Some(GgufValue::I32(v)) => Ok(Some(*v)),
            Some(other) => Err(wrong(key, "an i32", other)),
            None => Ok(None),
        }
    }

    pub(super) fn f32(&self, key: &str, required: bool) -> Result<Option<f32>, Fault> {
        match self.get(key, required)? {
            Some(GgufValue::F32(v)) => Ok(Some(*v)),
            Some(other) => Err(wrong(key, "an f32", other)),
            None => Ok(None),
        }
    }

    pub(super) fn bool(&self, key: &str) -> Result<Option<bool>, Fault> {
        match self.get(key, false)? {
            Some(GgufValue::Bool(v)) => Ok(Some(*v)),
            Some(other) => Err(wrong(key, "a bool", other)),
            None => Ok(None),
        }
    }

    pub(super) fn string(&self, key: &str, required: bool) -> Result<Option<&str>, Fault> {
        match self.get(key, required)? {
            Some(GgufValue::String(v)) => Ok(Some(v)),
            Some(other) => Err(wrong(key, "a string", other)),
            None => Ok(None),
        }
    }

    /// An array whose items all have the type `is_item` accepts (an empty array passes the type test).
    pub(super) fn array(
        &self,
        key: &str,
        required: bool,
        expected: &'static str,
        is_item: fn(&GgufValue) -> bool,
    ) -> Result<Option<&[GgufValue]>, Fault> {
        match self.get(key, required)? {
            Some(v @ GgufValue::Array(items)) => {
                if items.first().is_some_and(|first| !is_item(first)) {
                    return Err(wrong(key, expected, v));
                }
                Ok(Some(items))
            }
            Some(other) => Err(wrong(key, expected, other)),
            None => Ok(None),
        }
    }

    /// A u32 in `lo..=hi`.
    pub(super) fn u32_in(&self, key: &str, required: bool, lo: u32, hi: u32, why: &str) -> Result<Option<u32>, Fault> {
        let v = self.u32(key, required)?;
        match v {
            Some(n) if n < lo || n > hi => Err(out_of_range(key, n, format!("it must be from {lo} to {hi} ({why})"))),
            _ => Ok(v),
        }
    }

    /// An f32 that is finite and, when `positive`, above zero (else at least zero).
    pub(super) fn f32_finite(&self, key: &str, required: bool, positive: bool) -> Result<Option<f32>, Fault> {
        let v = self.f32(key, required)?;
        match v {
            Some(x) if !x.is_finite() || x < 0.0 || (positive && x == 0.0) => Err(out_of_range(
                key,
                x,
                if positive {
                    "it must be a finite number above 0"
                } else {
                    "it must be a finite number, 0 or more"
                },
            )),
            _ => Ok(v),
        }
    }

    /// A per-layer count as llama.cpp's `get_key_or_arr` reads it: one u32 for every layer, or an array of u32/i32
    /// with one entry per layer. Each value must be at least `min`.
    pub(super) fn per_layer(
        &self,
        key: &str,
        required: bool,
        n_layer: u32,
        min: u32,
    ) -> Result<Option<Vec<u32>>, Fault> {
        let values = match self.get(key, required)? {
            None => return Ok(None),
            Some(GgufValue::U32(v)) => vec![*v; n_layer as usize],
            Some(v @ GgufValue::Array(items)) => {
                if items.len() != n_layer as usize {
                    return Err(Fault::ArrayLength {
                        key: key.to_string(),
                        len: items.len(),
                        expected: n_layer.into(),
                        why: "one per layer, as block_count says".into(),
                    });
                }
                items
                    .iter()
                    .map(|item| match item {
                        GgufValue::U32(n) => Ok(*n),
                        GgufValue::I32(n) => {
                            u32::try_from(*n).map_err(|_| out_of_range(key, n, "it must not be negative"))
                        }
                        _ => Err(wrong(key, "a u32 or an array of u32/i32, one per layer", v)),
                    })
                    .collect::<Result<Vec<_>, _>>()?
            }
            Some(other) => return Err(wrong(key, "a u32 or an array of u32/i32, one per layer", other)),
        };
        if let Some((i, n)) = values.iter().enumerate().find(|(_, &n)| n < min) {
            return Err(out_of_range(key, n, format!("it must be at least {min} (layer {i})")));
        }
        Ok(Some(values))
    }
}

pub(super) fn is_i32(v: &GgufValue) -> bool {
    matches!(v, GgufValue::I32(_))
}
pub(super) fn is_f32(v: &GgufValue) -> bool {
    matches!(v, GgufValue::F32(_))
}
pub(super) fn is_string(v: &GgufValue) -> bool {
    matches!(v, GgufValue::String(_))
}
pub(super) fn is_layer_flag(v: &GgufValue) -> bool {
    matches!(v, GgufValue::Bool(_) | GgufValue::U32(_) | GgufValue::I32(_))
}
