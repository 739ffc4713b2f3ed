//! Fuzz targets for structured output, run with the crate's harness ([`crate::fuzz`]):
//! `cargo test --release --lib fuzz::structured` (`scripts/fuzz` runs them with the others).
//!
//! Owns: `structured_gbnf`: grammars (ours and hand-written) with bytes mutated; checks no panic and that an error
//! points inside the text. `structured_schema`: random schemas with bytes mutated; checks no panic, that every
//! schema accepted gives a grammar [`check_gbnf`] accepts, and that validating odd answers does not panic.
//!
//! Must not: run anything slow per input (no model, no files).

use super::gbnf::tests::{random_schema, text};
use super::{check_gbnf, json_object_grammar, OutputFormat, Schema};
use crate::fuzz::{run, Mutator, Rng};

const GBNF_WORDS: &[&[u8]] = &[
    b"::=",
    b" | ",
    b"(",
    b")",
    b"*",
    b"+",
    b"?",
    b"{2000}",
    b"{0,2001}",
    b"{3,2}",
    b"[^",
    b"]",
    b"\\x",
    b"\\u",
    b"\\U0010FFFF",
    b"<[",
    b"]>",
    b"!<",
    b"root",
    b"\n",
    b"\r\n",
    b"#",
    b"\"",
    b"-",
    b".",
    b"root ::= root",
];

const JSON_WORDS: &[&[u8]] = &[
    b"\"$ref\": \"#\"",
    b"\"$defs\"",
    b"\"anyOf\": [",
    b"\"type\": ",
    b"\"required\": [",
    b"\"properties\": {",
    b"\"items\": false",
    b"\"maxItems\": 99999",
    b"\"minLength\": 2001",
    b"\"enum\": []",
    b"true",
    b"false",
    b"null",
    b"-1",
    b"1e400",
    b"\"\\u0000\"",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
];

fn grammar_corpus() -> Vec<Vec<u8>> {
    let mut rng = Rng::new(1);
    let mut corpus = vec![json_object_grammar().into_bytes()];
    for _ in 0..8 {
        let schema = Schema::parse(&text(&random_schema(&mut rng, 2), false, 0), None).unwrap();
        corpus.push(schema.to_gbnf().into_bytes());
    }
    corpus.push(b"root ::= (\"a\" | [b-d]{2,5})* <[12]> value?\nvalue ::= \"\\x41\\u00e9\" . # c\n".to_vec());
    corpus
}

#[test]
fn structured_gbnf() {
    let corpus = grammar_corpus();
    let mutator = Mutator {
        dictionary: GBNF_WORDS,
        corpus: &corpus,
        big_endian: false,
    };
    run(
        "structured_gbnf",
        4,
        |rng| {
            let mut bytes = rng.choose(&corpus).clone();
            mutator.mutate(rng, &mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        },
        |grammar| match check_gbnf(grammar) {
            Ok(()) => "accepted".to_string(),
            Err(e) => {
                assert!(e.line >= 1 && e.line <= grammar.split('\n').count(), "{e}");
                assert!(e.column >= 1, "{e}");
                let words = e
                    .message
                    .split(|c: char| !c.is_ascii_alphabetic() && c != ' ')
                    .next()
                    .unwrap_or("");
                format!(
                    "refused: {}",
                    words.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
                )
            }
        },
    );
}

#[test]
fn structured_schema() {
    let mut rng = Rng::new(2);
    let corpus: Vec<Vec<u8>> = (0..16)
        .map(|_| text(&random_schema(&mut rng, 3), false, 0).into_bytes())
        .collect();
    let mutator = Mutator {
        dictionary: JSON_WORDS,
        corpus: &corpus,
        big_endian: false,
    };
    let answers = [
        "null",
        "{}",
        "[]",
        "\"x\"",
        "1.5",
        "{\"a\": [1, {\"b\": null}]}",
        "[[[]]]",
        "{\"name\": \"é\"}",
    ];
    run(
        "structured_schema",
        8,
        |rng| {
            let mut bytes = rng.choose(&corpus).clone();
            if !rng.one_in(8) {
                mutator.mutate(rng, &mut bytes);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        },
        |schema_text| match Schema::parse(schema_text, None) {
            Err(e) => format!(
                "refused: {}",
                crate::fuzz::variant(&e, "file").split('/').next().unwrap_or("")
            ),
            Ok(schema) => {
                let grammar = schema.to_gbnf();
                assert_eq!(check_gbnf(&grammar), Ok(()), "{schema_text}\n{grammar}");
                let format = OutputFormat::Schema(schema);
                let mut matched = 0;
                for answer in answers.iter().copied().chain([schema_text.as_str()]) {
                    matched += usize::from(format.check_answer(answer).is_ok());
                }
                format!(
                    "accepted ({} of the answers match)",
                    if matched > 0 { "some" } else { "none" }
                )
            }
        },
    );
}
