//! Fuzz target `utf8_stream`: token bytes streamed to text ([`Utf8Stream`]) when a character is split across
//! tokens, bytes are invalid, or the stream stops mid-character.
//!
//! Owns: inputs of hostile text and raw bytes (cut multi-byte sequences, lone continuation bytes, surrogates,
//! overlong forms) split at random points, including inside characters and into empty pieces. Checks: no panic,
//! and the pieces joined (with what `finish` flushes) read exactly as the whole input decoded at once.

use super::prompt::hostile_text;
use super::{Bytes, Rng};
use crate::utf8_stream::Utf8Stream;

const ODD: &[&[u8]] = &[
    b"\xc3",
    b"\xa9",
    b"\xe2\x82",
    b"\xf0\x9f\x98",
    b"\xed\xa0\x80",
    b"\xc0\xaf",
    b"\xf4\x90\x80\x80",
    b"\xff",
    b"\x80\x80",
    b"\xef\xbb\xbf",
];

#[derive(Debug)]
struct Input {
    bytes: Bytes,
    cuts: Vec<usize>,
}

fn generate(rng: &mut Rng) -> Input {
    let mut bytes = Vec::new();
    for _ in 0..rng.small(10) {
        match rng.below(3) {
            0 => bytes.extend_from_slice(hostile_text(rng).as_bytes()),
            1 => bytes.extend_from_slice(rng.pick(ODD)),
            _ => {
                let n = rng.small(6);
                bytes.extend(rng.bytes(n));
            }
        }
    }
    let mut cuts: Vec<usize> = (0..rng.small(bytes.len().min(24)))
        .map(|_| rng.below(bytes.len() + 1))
        .collect();
    cuts.sort_unstable();
    Input {
        bytes: Bytes(bytes),
        cuts,
    }
}

fn check(input: &Input) -> String {
    let bytes = &input.bytes.0;
    let mut stream = Utf8Stream::default();
    let mut text = String::new();
    let mut from = 0;
    for &cut in input.cuts.iter().chain([&bytes.len()]) {
        text += &stream.push(&bytes[from..cut]);
        from = cut;
    }
    text += &stream.finish();
    assert_eq!(text, String::from_utf8_lossy(bytes));
    assert_eq!(stream.finish(), "", "finish leaves nothing behind");
    if std::str::from_utf8(bytes).is_ok() {
        "valid UTF-8"
    } else {
        "invalid UTF-8"
    }
    .into()
}

#[test]
fn utf8_stream() {
    super::run("utf8_stream", 1, generate, check);
}
