//! The tokenizer's keys as `llama-vocab.cpp` reads them: types, array lengths, byte tokens, repeated tokens and
//! special token ids.

use std::collections::HashMap;

use super::meta::{is_f32, is_i32, is_string, out_of_range, Meta};
use super::Fault;
use crate::gguf::GgufValue;

/// llama.cpp's token types (LLAMA_TOKEN_TYPE_UNDEFINED = 0 .. LLAMA_TOKEN_TYPE_BYTE = 6).
const TOKEN_TYPE_BYTE: i32 = 6;

/// Checks the tokenizer; returns the vocabulary size.
pub(super) fn check(m: &Meta) -> Result<usize, Fault> {
    m.string("tokenizer.ggml.model", true)?;
    m.string("tokenizer.ggml.pre", false)?;
    m.string("tokenizer.chat_template", false)?;
    m.u32("tokenizer.ggml.token_type_count", false)?;
    for key in [
        "tokenizer.ggml.add_bos_token",
        "tokenizer.ggml.add_eos_token",
        "tokenizer.ggml.add_sep_token",
        "tokenizer.ggml.add_space_prefix",
        "tokenizer.ggml.remove_extra_whitespaces",
    ] {
        m.bool(key)?;
    }
    let tokens_key = "tokenizer.ggml.tokens";
    let tokens = m
        .array(tokens_key, true, "an array of strings", is_string)?
        .unwrap_or_default();
    let n = tokens.len();
    if n == 0 || n > i32::MAX as usize {
        return Err(out_of_range(
            tokens_key,
            format!("an array of {n} tokens"),
            "a vocabulary holds from 1 to 2147483647 tokens",
        ));
    }
    let same_length = |key: &str, len: usize| {
        if len == n {
            Ok(())
        } else {
            Err(Fault::ArrayLength {
                key: key.to_string(),
                len,
                expected: n as u64,
                why: "one per token of tokenizer.ggml.tokens".into(),
            })
        }
    };
    if let Some(scores) = m.array("tokenizer.ggml.scores", false, "an array of f32", is_f32)? {
        same_length("tokenizer.ggml.scores", scores.len())?;
    }
    let types = match m.array("tokenizer.ggml.token_type", false, "an array of i32", is_i32)? {
        Some(types) => {
            same_length("tokenizer.ggml.token_type", types.len())?;
            types
        }
        None => &[],
    };
    m.array("tokenizer.ggml.merges", false, "an array of strings", is_string)?;

    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(n);
    let mut renamed = Vec::new();
    for (id, token) in tokens.iter().enumerate() {
        let text = token.as_str().unwrap_or_default();
        let ty = match types.get(id) {
            Some(GgufValue::I32(t)) => *t,
            _ => 1,
        };
        if !(0..=TOKEN_TYPE_BYTE).contains(&ty) {
            return Err(Fault::UnknownTokenType { id, value: ty.into() });
        }
        if ty == TOKEN_TYPE_BYTE && !is_byte_token(text) {
            return Err(Fault::BadByteToken {
                id,
                text: text.to_string(),
            });
        }
        if text.is_empty() {
            // llama.cpp names an empty token "[EMPTY_<id>]"; checked against the others below.
            renamed.push((id, format!("[EMPTY_{id}]")));
            continue;
        }
        if let Some(first) = seen.insert(text, id) {
            // llama.cpp asserts that every token text is distinct (its maps would disagree).
            return Err(Fault::DuplicateToken {
                id,
                first,
                text: text.to_string(),
            });
        }
    }
    for (id, text) in &renamed {
        if let Some(&first) = seen.get(text.as_str()) {
            return Err(Fault::DuplicateToken {
                id: *id,
                first,
                text: String::new(),
            });
        }
    }

    for suffix in [
        "bos",
        "eos",
        "eot",
        "eom",
        "unknown",
        "seperator",
        "padding",
        "cls",
        "mask",
        "fim_pre",
        "fim_suf",
        "fim_mid",
        "fim_pad",
        "fim_rep",
        "fim_sep",
        "prefix",
        "suffix",
        "middle",
    ] {
        let key = format!("tokenizer.ggml.{suffix}_token_id");
        if let Some(id) = m.u32(&key, false)? {
            if id as usize >= n {
                return Err(Fault::TokenOutOfVocab {
                    key,
                    id: id.into(),
                    n_vocab: n,
                });
            }
        }
    }
    Ok(n)
}

/// `<0xNN>` with exactly two hex digits, as llama.cpp parses a byte token (`substr(3, 2)` then `strtol`).
fn is_byte_token(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 6 && b.starts_with(b"<0x") && b[5] == b'>' && b[3].is_ascii_hexdigit() && b[4].is_ascii_hexdigit()
}
