//! Messages that name the problem (issue 14): batch job values held to the ranges of run's flags, conversation
//! schema errors that say which message and field, and `info` refusing GGUF headers with duplicate keys or
//! tensors or element counts past u64.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::util::*;

fn text_model() -> PathBuf {
    converted("tiny-medgemma-text", "f32").model
}

/// Runs `medgemma run` and asserts a usage error (exit 2) naming `flag`; returns stderr.
fn usage_error(args: &[&str], flag: &str) -> String {
    let (out, stdout, stderr) = output(medgemma().arg("run").arg("-m").arg(text_model()).args(args));
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains(flag), "{stderr}");
    stderr
}

/// Issue 14: `batch` ran jobs with values that `run` refuses (temperature -1 or 1e39, max_tokens 0, an empty
/// prompt), clamping them silently. Now each such job gets an error record naming the field, the value and the
/// range, with the same bounds as the flags, and the good jobs still get answers.
#[test]
fn batch_job_values_have_the_ranges_of_run_flags() {
    let err = usage_error(&["--temp=-1", "q"], "--temp");
    assert!(err.contains("must be a number of 0 or more"), "{err}");
    let err = usage_error(&["--temp", "1e39", "q"], "--temp");
    assert!(err.contains("must be a number of 0 or more"), "{err}");
    let err = usage_error(&["-n", "0", "q"], "--max-tokens");
    assert!(err.contains("must be a whole number of 1 or more"), "{err}");
    let err = fails(medgemma().arg("run").arg("-m").arg(text_model()).arg("  "));
    assert!(err.contains("the prompt is empty"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let jobs = [
        json!({"id": "good-1", "prompt": "What is sepsis?"}),
        json!({"id": "cold", "prompt": "q", "temperature": -1}),
        json!({"id": "hot", "prompt": "q", "temperature": 1e39}),
        json!({"id": "none", "prompt": "q", "max_tokens": 0}),
        json!({"id": "empty", "prompt": ""}),
        json!({"id": "robot", "messages": [{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}]}),
        json!({"id": "good-2", "prompt": "Define tachycardia.", "temperature": 0.5, "max_tokens": 3}),
    ];
    let input = dir.path().join("jobs.jsonl");
    let lines: Vec<String> = jobs.iter().map(Value::to_string).collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let output_path = dir.path().join("out.jsonl");
    let (out, _, stderr) = output(
        medgemma()
            .arg("batch")
            .arg("-m")
            .arg(text_model())
            .arg("--input")
            .arg(&input)
            .arg("--output")
            .arg(&output_path)
            .args(["-t", "2", "-n", "4"]),
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed job makes the exit code 1: {stderr}"
    );
    let records: Vec<Value> = std::fs::read_to_string(&output_path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let record = |id: &str| {
        records
            .iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("no record for {id}: {records:?}"))
    };
    for (id, want) in [
        ("cold", "line 2: \"temperature\" is -1: must be a number of 0 or more"),
        ("hot", "line 3: \"temperature\" is 1e+39: must be a number of 0 or more"),
        (
            "none",
            "line 4: \"max_tokens\" is 0: must be a whole number of 1 or more",
        ),
        ("empty", "line 5: \"prompt\" is empty"),
        (
            "robot",
            "line 6: message 2: unknown role \"robot\" (use system, user or model)",
        ),
    ] {
        let r = record(id);
        assert_eq!(r["finish_reason"], "error", "{r}");
        let error = r["error"].as_str().unwrap();
        assert!(error.starts_with(want), "{id}: {error}");
    }
    for id in ["good-1", "good-2"] {
        let r = record(id);
        assert_ne!(r["finish_reason"], "error", "{r}");
        assert!(r["usage"]["completion_tokens"].as_u64().unwrap() >= 1, "{r}");
    }
    assert!(record("good-2")["usage"]["completion_tokens"].as_u64().unwrap() <= 3);
}

/// Issue 14: a malformed `--messages` file said only "did not match any variant". Now the error names the file,
/// the message (counted from 1) and what is wrong with it; both accepted forms still work.
#[test]
fn conversation_schema_errors_say_what_and_where() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            r#"[{"role":"user","content":"a"},{"role":"robot","content":"b"}]"#,
            "message 2: unknown role \"robot\" (use system, user or model)",
        ),
        (
            r#"{"messages":[{"role":"user","content":["a"]}]}"#,
            "message 1, part 1: must be an object {\"type\": \"text\", \"text\": \"...\"}, found a string",
        ),
        (r#"[{"content":"hi"}]"#, "message 1: missing \"role\""),
        (
            r#"[{"role":"user","content":"a","images":"x.png"}]"#,
            "message 1: \"images\" must be a list of file paths",
        ),
        (r#"{"turns":[]}"#, "{\"messages\": [...]}"),
        (
            r#"[{"role":"user","content":"a"},{"role":"user","content":"b"}]"#,
            "message 2: roles must alternate",
        ),
    ];
    for (i, (json, want)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("case-{i}.json"));
        std::fs::write(&path, json).unwrap();
        let err = fails(
            medgemma()
                .arg("run")
                .arg("-m")
                .arg(text_model())
                .arg("--messages")
                .arg(&path),
        );
        assert!(err.contains(&format!("case-{i}.json")), "{err}");
        assert!(err.contains(want), "{json}: {err}");
        assert!(!err.contains("variant"), "{err}");
    }
    for json in [
        r#"[{"role":"user","content":"Hi"}]"#,
        r#"{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}]}"#,
    ] {
        let path = dir.path().join("good.json");
        std::fs::write(&path, json).unwrap();
        ok(medgemma()
            .arg("run")
            .arg("-m")
            .arg(text_model())
            .args(["-n", "2", "--messages"])
            .arg(&path));
    }
}

/// The offset of the header string `s` (its bytes, after its u64 length), asserting it is there.
fn string_at(bytes: &[u8], s: &str) -> usize {
    let mut needle = (s.len() as u64).to_le_bytes().to_vec();
    needle.extend_from_slice(s.as_bytes());
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or_else(|| panic!("{s:?} not in the header"));
    at + 8
}

/// A copy of the text fixture with `patch` applied, as `name` in `dir`.
fn patched(dir: &Path, name: &str, patch: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let mut bytes = std::fs::read(text_model()).unwrap();
    patch(&mut bytes);
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn info_fails(path: &Path) -> String {
    let err = fails(medgemma().arg("info").arg(path));
    assert!(
        err.contains(&path.file_name().unwrap().to_string_lossy().into_owned()),
        "{err}"
    );
    err
}

/// Sets the dimensions of tensor `name` (it must have as many as `dims` gives).
fn set_dims(bytes: &mut [u8], name: &str, dims: &[u64]) {
    let at = string_at(bytes, name) + name.len();
    let n_dims = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    assert_eq!(n_dims, dims.len(), "{name} has {n_dims} dimensions");
    for (i, d) in dims.iter().enumerate() {
        let o = at + 4 + 8 * i;
        bytes[o..o + 8].copy_from_slice(&d.to_le_bytes());
    }
}

/// Issue 14: `info` took the second of two duplicate metadata keys and exited 0, and summed tensor element
/// counts with wrapping arithmetic. Now such headers are refused, naming the key or tensor.
#[test]
fn info_refuses_duplicate_keys_tensors_and_overflowing_counts() {
    let dir = tempfile::tempdir().unwrap();
    ok(medgemma().arg("info").arg(text_model()));

    let dup_key = patched(dir.path(), "dup-key.gguf", |b| {
        let at = string_at(b, "gemma3.attention.key_length");
        b[at..at + 27].copy_from_slice(b"gemma3.attention.head_count");
    });
    let err = info_fails(&dup_key);
    assert!(
        err.contains("metadata key \"gemma3.attention.head_count\" appears twice"),
        "{err}"
    );

    let dup_tensor = patched(dir.path(), "dup-tensor.gguf", |b| {
        let at = string_at(b, "blk.0.attn_k.weight");
        b[at..at + 19].copy_from_slice(b"blk.0.attn_q.weight");
    });
    let err = info_fails(&dup_tensor);
    assert!(err.contains("tensor \"blk.0.attn_q.weight\" appears twice"), "{err}");

    let huge = patched(dir.path(), "huge-tensor.gguf", |b| {
        set_dims(b, "blk.0.attn_q.weight", &[1 << 40, 1 << 40])
    });
    let err = info_fails(&huge);
    assert!(
        err.contains("tensor \"blk.0.attn_q.weight\" claims dimensions [1099511627776, 1099511627776]"),
        "{err}"
    );

    let wrapping = patched(dir.path(), "wrapping-sum.gguf", |b| {
        set_dims(b, "blk.0.attn_q.weight", &[1 << 63, 1]);
        set_dims(b, "blk.0.attn_k.weight", &[1 << 63, 1]);
    });
    let err = info_fails(&wrapping);
    assert!(
        err.contains("the element counts of the tensors overflow a 64-bit count at tensor \"blk.0.attn_"),
        "{err}"
    );
}

fn mm() -> Gguf {
    converted("tiny-medgemma-mm", "f32")
}

/// `medgemma run --messages FILE --json` on the tiny multimodal model (`--logits-out` beside it); returns the
/// report and the last-position logits.
fn run_mm_messages(messages: &Value, dir: &Path, name: &str) -> (Value, Vec<f64>) {
    let g = mm();
    let file = dir.join(format!("{name}.json"));
    std::fs::write(&file, serde_json::to_vec_pretty(messages).unwrap()).unwrap();
    let logits = dir.join(format!("{name}.logits.json"));
    let mut cmd = medgemma();
    cmd.arg("run")
        .arg("-m")
        .arg(&g.model)
        .arg("--mmproj")
        .arg(g.mmproj.as_ref().unwrap())
        .arg("--messages")
        .arg(&file)
        .args(["--json", "--temp", "0", "-n", "1", "-t", "2", "--logits-out"])
        .arg(&logits);
    let report = serde_json::from_str(&ok(&mut cmd)).unwrap();
    let logits = serde_json::from_str(&std::fs::read_to_string(&logits).unwrap()).unwrap();
    (report, logits)
}

/// A reference case's messages with image paths made absolute: plain paths for "image"/"path"/"url" parts,
/// file:// URLs for OpenAI's "image_url" parts (so both spellings reach the binary).
fn absolute_parts(messages: &Value) -> Value {
    let mut messages = messages.clone();
    for m in messages.as_array_mut().unwrap() {
        let Some(parts) = m.get_mut("content").and_then(Value::as_array_mut) else {
            continue;
        };
        for part in parts {
            for key in ["image", "path", "url"] {
                if let Some(p) = part.get_mut(key) {
                    *p = json!(fixtures().join(p.as_str().unwrap()));
                }
            }
            if let Some(url) = part.pointer_mut("/image_url/url") {
                *url = json!(format!("file://{}", fixtures().join(url.as_str().unwrap()).display()));
            }
        }
    }
    messages
}

/// Issue 10: a message's content may interleave text and images. The prompt token ids equal those of the Hugging
/// Face processor (Gemma3Processor, transformers; scripts/processor_prompt_ids.py wrote the reference and checked
/// that it reproduces every committed reference case first). Our -1 marks an image-embedding position, where the
/// processor has the image soft token.
#[test]
fn interleaved_prompt_ids_equal_the_hf_processor() {
    let path = fixtures().join("reference/tiny-medgemma-mm-interleaved.json");
    let reference: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let image_token = reference["image_token_id"].as_i64().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cases = reference["cases"].as_array().unwrap();
    assert!(cases.len() >= 2);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let (report, _) = run_mm_messages(&absolute_parts(&case["messages"]), dir.path(), name);
        let expected: Vec<i64> = case["prompt_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|id| id.as_i64().unwrap())
            .map(|id| if id == image_token { -1 } else { id })
            .collect();
        let ours: Vec<i64> = report["prompt_token_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|id| id.as_i64().unwrap())
            .collect();
        assert_eq!(ours, expected, "{name}: prompt token ids differ from the processor's");
    }
}

/// The order of the parts reaches the model: the same texts and images, images first (today's shape) or
/// interleaved, give different prompts and different last-position logits; the images-first list gives exactly
/// what the old `"images"` field gives.
#[test]
fn part_order_reaches_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let chest = fixtures().join("images/chest.png");
    let skin = fixtures().join("images/skin.png");
    let interleaved = json!([{"role": "user", "content": [
        {"type": "text", "text": "First:"}, {"type": "image", "image": chest},
        {"type": "text", "text": "Second:"}, {"type": "image", "image": skin},
        {"type": "text", "text": "Compare."}]}]);
    let images_first = json!([{"role": "user", "content": [
        {"type": "image", "image": chest}, {"type": "image", "image": skin},
        {"type": "text", "text": "First:Second:Compare."}]}]);
    let old_shape = json!([{"role": "user", "content": "First:Second:Compare.", "images": [chest, skin]}]);
    let (a, logits_a) = run_mm_messages(&interleaved, dir.path(), "interleaved");
    let (b, logits_b) = run_mm_messages(&images_first, dir.path(), "images_first");
    let (c, logits_c) = run_mm_messages(&old_shape, dir.path(), "old_shape");
    assert_ne!(a["prompt_token_ids"], b["prompt_token_ids"]);
    let diff = logits_a
        .iter()
        .zip(&logits_b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max);
    assert!(diff > 0.1, "the logits hardly move with the order ({diff})");
    assert_eq!(b["prompt_token_ids"], c["prompt_token_ids"]);
    assert_eq!(logits_b, logits_c);
}

/// Bad content lists exit 1 with the message and part number and what to do; the model is never loaded.
#[test]
fn bad_parts_name_the_message_and_part() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            json!({"type": "image", "image": "https://example.com/x.png"}),
            "message 2, part 1: \"https://example.com/x.png\" is a web address: medgemma works offline",
        ),
        (
            json!({"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}}),
            "message 2, part 1: data: URLs are not supported",
        ),
        (
            json!({"type": "video", "video": "x.mp4"}),
            "message 2, part 1: unknown part type \"video\"",
        ),
    ];
    for (part, expected) in cases {
        let messages = json!([{"role": "system", "content": "s"}, {"role": "user", "content": [part]}]);
        let file = dir.path().join("bad.json");
        std::fs::write(&file, messages.to_string()).unwrap();
        let stderr = fails(
            medgemma()
                .arg("run")
                .arg("-m")
                .arg(text_model())
                .arg("--messages")
                .arg(&file),
        );
        assert!(stderr.contains(expected), "{stderr}");
        assert!(stderr.contains(&file.display().to_string()), "{stderr}");
    }
    let messages = json!([{"role": "user", "content": "q"},
        {"role": "model", "content": [{"type": "image", "image": "a.png"}]}, {"role": "user", "content": "q"}]);
    let file = dir.path().join("model-image.json");
    std::fs::write(&file, messages.to_string()).unwrap();
    let err = fails(
        medgemma()
            .arg("run")
            .arg("-m")
            .arg(text_model())
            .arg("--messages")
            .arg(&file),
    );
    assert!(err.contains("message 2: only user messages can carry images"), "{err}");
}
