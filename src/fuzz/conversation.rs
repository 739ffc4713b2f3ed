//! Fuzz target `conversation`: the conversation JSON of `run --messages` and saved chats ([`ConversationFile`],
//! [`Conversation::from_messages`]), and the JSON mutations the batch target shares.
//!
//! Owns: structure-aware JSON mutation ([`mutate_value`]: swap a value's type, drop or duplicate a field, huge and
//! fractional numbers, deep nesting, odd strings) on valid documents, then byte mutation of the text (cuts,
//! invalid UTF-8). Checks: no panic; a refusal is a serde error carrying our typed schema text; an accepted
//! document validates or fails with a [`ConversationError`], and a valid conversation renders, and saves and
//! reads back unchanged.

use serde_json::{json, Map, Value};

use super::prompt::hostile_text;
use super::{Bytes, Mutator, Rng};
use crate::conversation::{Conversation, ConversationFile};

/// A valid message list: optional system message, alternating user/model turns with images and token ids.
pub fn valid_messages(rng: &mut Rng) -> Value {
    let mut list = Vec::new();
    if rng.one_in(3) {
        list.push(json!({"role": "system", "content": hostile_text(rng)}));
    }
    for i in 0..rng.range(1, 5) {
        let mut m = Map::new();
        if i % 2 == 0 {
            m.insert("role".into(), json!("user"));
            if rng.one_in(2) {
                m.insert("images".into(), json!(["a.png", "dir/b.jpg"]));
            }
        } else {
            m.insert("role".into(), json!(rng.pick(&["model", "assistant"])));
            if rng.one_in(2) {
                m.insert("tokens".into(), json!([1, 2, 106, 2147483647]));
            }
            if rng.one_in(3) {
                m.insert("interrupted".into(), json!(rng.one_in(2)));
            }
        }
        if i % 2 == 0 && rng.one_in(3) {
            m.remove("images");
            let parts: Vec<Value> = (0..rng.small(5)).map(|_| valid_part(rng)).collect();
            m.insert("content".into(), Value::Array(parts));
        } else if !rng.one_in(8) {
            m.insert("content".into(), json!(hostile_text(rng)));
        }
        list.push(Value::Object(m));
    }
    if rng.one_in(2) {
        json!({ "messages": list })
    } else {
        Value::Array(list)
    }
}

/// One part of a user message's content list, in each accepted shape.
fn valid_part(rng: &mut Rng) -> Value {
    match rng.below(7) {
        0 | 1 => json!({"type": "text", "text": hostile_text(rng)}),
        2 => json!({"type": "image", "image": "a.png"}),
        3 => json!({"type": "image", (rng.pick(&["path", "url"])): "file:///scans/b%20c.png"}),
        4 => json!({"type": "image_url", "image_url": {"url": "d.png"}}),
        5 => json!({"type": "image_url", "image_url": "file://localhost/e.png"}),
        _ => json!({"type": "series", "series": "ct/"}),
    }
}

/// Values that break schemas.
fn odd_value(rng: &mut Rng) -> Value {
    match rng.below(16) {
        0 => Value::Null,
        1 => json!(true),
        2 => json!(0),
        3 => json!(-1),
        4 => json!(u64::MAX),
        5 => json!(i64::MIN),
        6 => json!(1e308),
        7 => json!(-0.0),
        8 => json!(2.5),
        9 => json!(""),
        10 => json!(hostile_text(rng)),
        11 => json!([]),
        12 => json!({}),
        13 => json!(rng.pick(&["user", "model", "system", "assistant", "robot", "User", "user "])),
        14 => json!([1, "a", null]),
        _ => json!(4_294_967_296u64),
    }
}

/// Field names worth adding.
const FIELDS: &[&str] = &[
    "role",
    "content",
    "images",
    "tokens",
    "interrupted",
    "messages",
    "id",
    "prompt",
    "system",
    "max_tokens",
    "temperature",
    "seed",
    "format",
    "colour",
    "type",
    "text",
    "image",
    "image_url",
    "url",
    "series",
];

/// Mutates one place of a JSON document, chosen at random along a path from the root.
pub fn mutate_value(rng: &mut Rng, value: &mut Value, depth: usize) {
    let descend = depth < 6 && rng.below(3) != 0;
    match value {
        Value::Array(items) if descend && !items.is_empty() => {
            let i = rng.below(items.len());
            mutate_value(rng, &mut items[i], depth + 1);
            return;
        }
        Value::Object(map) if descend && !map.is_empty() => {
            let key = map.keys().nth(rng.below(map.len())).cloned().unwrap_or_default();
            if let Some(v) = map.get_mut(&key) {
                mutate_value(rng, v, depth + 1);
            }
            return;
        }
        _ => {}
    }
    match (rng.below(6), &mut *value) {
        (0, Value::Object(map)) if !map.is_empty() => {
            let key = map.keys().nth(rng.below(map.len())).cloned().unwrap_or_default();
            map.remove(&key);
        }
        (1, Value::Object(map)) => {
            map.insert(rng.pick(FIELDS).to_string(), odd_value(rng));
        }
        (1, Value::Array(items)) if !items.is_empty() => {
            // Duplicate an element (a message twice: roles stop alternating).
            let i = rng.below(items.len());
            let copy = items[i].clone();
            items.insert(rng.below(items.len() + 1), copy);
        }
        (2, Value::Array(items)) if !items.is_empty() => {
            items.remove(rng.below(items.len()));
        }
        (3, _) => {
            // Deep nesting around the value.
            for _ in 0..rng.range(1, 90) {
                let inner = std::mem::take(value);
                *value = if rng.one_in(2) {
                    Value::Array(vec![inner])
                } else {
                    json!({ "messages": inner })
                };
            }
        }
        _ => *value = odd_value(rng),
    }
}

/// Words for the byte mutator on JSON text.
pub const JSON_DICTIONARY: &[&[u8]] = &[
    b"\"role\"",
    b"\"content\"",
    b"\"messages\"",
    b"null",
    b"true",
    b"1e999",
    b"-0",
    b"[[[[[[[[",
    b"]}",
    b"\\u0000",
    b"\\ud800",
    b"\xff",
    b"\xc3",
    b"\xed\xa0\x80",
    b"<start_of_turn>",
    b"\"type\"",
    b"\"image_url\"",
    b"file://",
    b"https://",
    b"data:",
    b"%",
];

/// A JSON document as text: a valid one, mutated as a value, then sometimes as bytes.
pub fn json_text(rng: &mut Rng, valid: impl Fn(&mut Rng) -> Value) -> Vec<u8> {
    let mut value = valid(rng);
    for _ in 0..rng.small(3) {
        mutate_value(rng, &mut value, 0);
    }
    let mut text = if rng.one_in(2) {
        serde_json::to_vec(&value)
    } else {
        serde_json::to_vec_pretty(&value)
    }
    .expect("a Value always serializes");
    if rng.one_in(3) {
        let corpus = [serde_json::to_vec(&valid(rng)).expect("serializes")];
        let m = Mutator {
            dictionary: JSON_DICTIONARY,
            corpus: &corpus,
            big_endian: false,
        };
        m.mutate(rng, &mut text);
    }
    text
}

fn generate(rng: &mut Rng) -> Bytes {
    Bytes(json_text(rng, valid_messages))
}

fn check(input: &Bytes) -> String {
    let bytes = &input.0;
    let file: ConversationFile = match serde_json::from_slice(bytes) {
        Ok(file) => file,
        Err(e) => {
            assert!(!e.to_string().contains("variant"), "schema errors are ours: {e}");
            return format!("refused: {:?}", e.classify());
        }
    };
    let messages = file.into_messages();
    let n = messages.len();
    let conversation = match Conversation::from_messages(messages) {
        Ok(c) => c,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return format!("invalid: {}", super::variant(&e, "-"));
        }
    };
    assert!(conversation.turns.len() <= n);
    let _ = conversation.check_ready_to_answer();
    let _ = crate::prompt::render(&conversation, true);
    // Saved (as `/save` writes messages) and read back, it is the same conversation.
    let saved = serde_json::to_vec(&conversation.to_messages()).expect("messages serialize");
    let back: ConversationFile = serde_json::from_slice(&saved).expect("saved messages read back");
    assert_eq!(Conversation::from_messages(back.into_messages()), Ok(conversation));
    "valid".into()
}

#[test]
fn conversation() {
    super::run("conversation", 1, generate, check);
}
