//! Fuzz target `batch`: batch job files ([`parse_jobs`]: one JSON job per line), `--shard K/N`, and the sidecar
//! JSON a rerun reads.
//!
//! Owns: a generator of valid job lines (prompt or messages, images, system, sampling values, numeric ids) mutated
//! as JSON values and as bytes, joined with blank lines and CRLFs. Checks: no panic; one job per non-blank line;
//! every job id is unique (the results file and resume key on it); an accepted job is ready to answer, its
//! sampling values are inside the flags' ranges, and its conversation saves and reads back; shards partition
//! the jobs.

use std::path::Path;

use serde_json::{json, Value};

use super::conversation::{json_text, mutate_value, valid_messages};
use super::prompt::hostile_text;
use super::{Bytes, Mutator, Rng};
use crate::batch::job::{parse_jobs, Shard};
use crate::batch::sidecar::Sidecar;
use crate::conversation::Conversation;

/// Ids that collide with each other or with the ids of failed lines (`line:N`).
const IDS: &[&str] = &["a", "b", "7", "line:1", "line:2", "line:3", "line:4", "x/y", ""];

fn valid_job(rng: &mut Rng) -> Value {
    let mut job = serde_json::Map::new();
    let id = if rng.one_in(4) {
        json!(rng.below(10))
    } else {
        json!(rng.pick(IDS))
    };
    job.insert("id".into(), id);
    if rng.one_in(3) {
        let mut messages = valid_messages(rng);
        if let Value::Object(m) = &mut messages {
            messages = m.remove("messages").unwrap_or_default();
        }
        job.insert("messages".into(), messages);
    } else {
        job.insert("prompt".into(), json!(hostile_text(rng)));
    }
    if rng.one_in(3) {
        job.insert("images".into(), json!(["x.png"]));
    } else if rng.one_in(4) {
        job.insert("series".into(), json!("ct/"));
    }
    if rng.one_in(3) {
        job.insert("system".into(), json!("Be brief."));
    }
    if rng.one_in(3) {
        job.insert("max_tokens".into(), json!(rng.range(1, 512)));
    }
    if rng.one_in(3) {
        job.insert("temperature".into(), json!(rng.below(20) as f64 / 10.0));
    }
    if rng.one_in(4) {
        job.insert("seed".into(), json!(rng.next_u64() as u32));
    }
    Value::Object(job)
}

/// A JSONL text of several jobs, some lines mutated.
fn job_file(rng: &mut Rng) -> Vec<u8> {
    let mut text = Vec::new();
    for _ in 0..rng.range(1, 8) {
        let line = if rng.one_in(3) {
            json_text(rng, valid_job)
        } else {
            let mut v = valid_job(rng);
            if rng.one_in(2) {
                mutate_value(rng, &mut v, 0);
            }
            serde_json::to_vec(&v).expect("serializes")
        };
        // Pretty JSON spans lines: each line is then a job of its own, as a real file would be read.
        text.extend_from_slice(&line);
        text.extend_from_slice(rng.pick::<&[u8]>(&[b"\n", b"\r\n", b"\n\n", b"\n  \n"]));
    }
    if rng.one_in(4) {
        let m = Mutator {
            dictionary: super::conversation::JSON_DICTIONARY,
            corpus: &[],
            big_endian: false,
        };
        m.mutate(rng, &mut text);
    }
    text
}

#[derive(Debug)]
struct Input {
    jobs: Bytes,
    shard_count: u32,
    shard_text: String,
    sidecar: Bytes,
}

fn valid_sidecar() -> Value {
    json!({
        "medgemma_version": "0.1.0",
        "model": {"path": "/m/model.gguf", "sha256": "ab", "file_type": "Q4_K_M", "name": "MedGemma"},
        "mmproj": null,
        "sampling": {"temperature": 0.0},
        "context": {},
        "shard": "1/2"
    })
}

fn generate(rng: &mut Rng) -> Input {
    let shard_text = match rng.below(3) {
        0 => format!("{}/{}", rng.small(5), rng.small(5)),
        1 => hostile_text(rng),
        _ => format!(
            "{}/{}",
            rng.next_u64(),
            rng.pick(&["1", "0", " 3 ", "-1", "4294967296", "1/2"])
        ),
    };
    Input {
        jobs: Bytes(job_file(rng)),
        shard_count: rng.range(1, 5) as u32,
        shard_text,
        sidecar: Bytes(json_text(rng, |_| valid_sidecar())),
    }
}

fn check(input: &Input) -> String {
    // Lines that are not UTF-8 are jobs of their own (failed ones); blank lines are not jobs.
    let bytes = &input.jobs.0;
    let jobs = parse_jobs(bytes, Path::new("/data"));
    let lines = bytes
        .strip_suffix(b"\n")
        .unwrap_or(bytes)
        .split(|&b| b == b'\n')
        .filter(|l| std::str::from_utf8(l).map_or(true, |l| !l.trim().is_empty()))
        .count();
    assert_eq!(jobs.len(), lines, "one job per non-blank line");
    let mut ids = std::collections::HashSet::new();
    let accepted = jobs.iter().filter(|j| j.input.is_ok()).count();
    for job in &jobs {
        assert!(ids.insert(job.id.as_str()), "job id {:?} is not unique", job.id);
        assert!(!job.id.is_empty(), "a job id is never empty");
        match &job.input {
            Ok(conversation) => {
                conversation
                    .check_ready_to_answer()
                    .expect("an accepted job can be answered");
                // Relative image paths are resolved against the job file's folder.
                assert!(conversation.images().all(|p| p.is_absolute()));
                let mut parts = conversation.turns.iter().flat_map(|t| &t.parts);
                assert!(parts.all(|p| match p {
                    crate::conversation::Part::Series(dir) => dir.is_absolute(),
                    _ => true,
                }));
                assert_eq!(
                    Conversation::from_messages(conversation.to_messages()).as_ref(),
                    Ok(conversation)
                );
                assert!(job.max_tokens.is_none_or(|n| n >= 1));
                assert!(job.temperature.is_none_or(|t| t.is_finite() && t >= 0.0));
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
    let shards: Vec<Shard> = (1..=input.shard_count)
        .map(|k| format!("{k}/{}", input.shard_count).parse().expect("a valid shard"))
        .collect();
    for job in &jobs {
        assert_eq!(shards.iter().filter(|s| s.takes(&job.id)).count(), 1);
    }
    if let Ok(shard) = input.shard_text.parse::<Shard>() {
        assert!(shard.index >= 1 && shard.index <= shard.count);
    }
    let sidecar = serde_json::from_slice::<Sidecar>(&input.sidecar.0).is_ok();
    let jobs = match accepted {
        0 => "no",
        n if n == jobs.len() => "all",
        _ => "some",
    };
    format!(
        "{jobs} jobs valid, sidecar {}",
        if sidecar { "read" } else { "refused" }
    )
}

#[test]
fn batch() {
    super::run("batch", 2, generate, check);
}
