//! Fuzz target `results`: resuming a batch's results file ([`ResultsFile::open`]) that a killed run cut short,
//! that someone edited, or that is not ours at all.
//!
//! Owns: a generator of valid results files (records as `append` writes them), cut anywhere, with foreign lines
//! spliced in and bytes mutated; each is written to a temporary file. Checks: no panic; a refused file is left
//! byte for byte as it was; an accepted one loses at most its incomplete last line, knows every complete record's
//! id, and after one more append reopens with that record done.

use super::prompt::hostile_text;
use super::{Bytes, Mutator, Rng};
use crate::batch::results::{JobResult, ResultsError, ResultsFile, Timings, Usage};

fn record(rng: &mut Rng, id: String) -> JobResult {
    let error = rng.one_in(3);
    JobResult {
        id,
        text: hostile_text(rng),
        finish_reason: if error { "error" } else { rng.pick(&["stop", "length"]) },
        error: error.then(|| hostile_text(rng)),
        usage: Usage {
            prompt_tokens: rng.below(1000),
            cached_tokens: rng.below(10),
            completion_tokens: rng.below(100),
        },
        timings: Timings {
            prompt_ms: rng.below(1000) as f64 / 3.0,
            generation_ms: 1.5,
            total_ms: 2.0,
        },
        ..JobResult::default()
    }
}

fn valid_results(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..rng.small(6) {
        let id = if rng.one_in(4) {
            hostile_text(rng)
        } else {
            format!("job-{i}")
        };
        out.extend_from_slice(&serde_json::to_vec(&record(rng, id)).expect("a record serializes"));
        out.push(b'\n');
    }
    out
}

const FOREIGN: &[&[u8]] = &[
    b"my precious notes\n",
    b"{\"a\": 1}\n",
    b"{\"id\": 5}\n",
    b"{\"id\": null, \"finish_reason\": \"stop\"}\n",
    b"[1, 2]\n",
    b"\n",
    b"   \r\n",
    b"{\"id\": \"z\", \"te",
    b"\xff\xfe\n",
    b"{\"id\": \"dup\"}\n{\"id\": \"dup\"}\n",
];

fn generate(rng: &mut Rng) -> Bytes {
    let mut bytes = valid_results(rng);
    match rng.below(4) {
        0 => bytes.truncate(rng.below(bytes.len() + 1)),
        1 => {
            let at = rng.below(bytes.len() + 1);
            bytes.splice(at..at, rng.pick(FOREIGN).iter().copied());
        }
        2 => {
            let corpus = [valid_results(rng)];
            let m = Mutator {
                dictionary: FOREIGN,
                corpus: &corpus,
                big_endian: false,
            };
            m.mutate(rng, &mut bytes);
        }
        _ => {}
    }
    Bytes(bytes)
}

fn check(input: &Bytes, dir: &std::path::Path) -> String {
    let bytes = &input.0;
    let path = dir.join("results.jsonl");
    std::fs::write(&path, bytes).expect("the test file is written");
    let opened = ResultsFile::open(&path, false);
    let after = std::fs::read(&path).expect("the test file reads back");
    let mut file = match opened {
        Ok(file) => file,
        Err(e) => {
            assert!(
                matches!(e, ResultsError::NotResults { .. } | ResultsError::NoId { .. }),
                "{e:?}"
            );
            assert_eq!(&after, bytes, "a refused file is left as it was");
            return format!("refused: {}", super::variant(&e, "-"));
        }
    };
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    assert_eq!(after, bytes[..complete], "only an incomplete last line is removed");
    let ids: Vec<String> = after
        .split(|&b| b == b'\n')
        .filter_map(|line| serde_json::from_slice::<serde_json::Value>(line).ok())
        .filter_map(|v| v.get("id").and_then(|id| id.as_str()).map(str::to_string))
        .collect();
    for id in &ids {
        assert!(file.is_done(id), "record {id:?} is known");
    }
    let new = JobResult {
        id: "appended".into(),
        text: "t".into(),
        finish_reason: "stop",
        error: None,
        ..JobResult::default()
    };
    file.append(&new).expect("an append succeeds");
    drop(file);
    let again = ResultsFile::open(&path, false).expect("a file we appended to reopens");
    assert!(again.is_done("appended") && ids.iter().all(|id| again.is_done(id)));
    if complete < bytes.len() {
        "resumed, cut line removed"
    } else {
        "resumed"
    }
    .into()
}

#[test]
fn results() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    super::run("results", 10, generate, |input| check(input, dir.path()));
}
