//! `medgemma batch`: every job gets exactly one record, bad jobs get error records, results survive kill -9,
//! shards partition the jobs, and a job's answer does not depend on the other jobs.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::util::*;

/// 30 jobs: text and image, sharing images and system prompts, 3 of them bad.
fn write_jobs(dir: &Path) -> PathBuf {
    std::fs::copy(fixtures().join("images/chest.png"), dir.join("chest.png")).unwrap();
    std::fs::copy(fixtures().join("images/skin.png"), dir.join("skin.png")).unwrap();
    let mut lines = Vec::new();
    let questions = [
        "What is sepsis?",
        "What is pneumonia?",
        "What causes anaemia?",
        "Define tachycardia.",
        "What is a stroke?",
    ];
    for i in 0..27 {
        let q = questions[i % questions.len()];
        let job = match i % 3 {
            0 => json!({"id": format!("text-{i}"), "prompt": q, "system": "You are a helpful medical assistant."}),
            1 => {
                json!({"id": format!("xray-{i}"), "prompt": q, "images": ["chest.png"], "system": "You are an expert radiologist."})
            }
            _ => json!({"id": format!("conv-{i}"), "messages": [
                {"role": "user", "content": "Look at this.", "images": [if i % 2 == 0 { "skin.png" } else { "chest.png" }]},
                {"role": "model", "content": "I see it."},
                {"role": "user", "content": q}
            ]}),
        };
        lines.push(job.to_string());
    }
    lines.push("{this is not json".into());
    lines.push(json!({"id": "missing-image", "prompt": "Describe.", "images": ["nope.png"]}).to_string());
    lines.push(json!({"id": "too-long", "prompt": "chest pain ".repeat(3000)}).to_string());
    let path = dir.join("jobs.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

fn batch_cmd(jobs: &Path, output: &Path, extra: &[&str]) -> Command {
    let g = converted("tiny-medgemma-mm", "f32");
    let mut cmd = medgemma();
    cmd.arg("batch")
        .arg("-m")
        .arg(&g.model)
        .arg("--mmproj")
        .arg(g.mmproj.unwrap());
    cmd.arg("--input")
        .arg(jobs)
        .arg("--output")
        .arg(output)
        .args(["-t", "2"])
        .args(extra);
    if !extra.contains(&"-n") {
        cmd.args(["-n", "6"]);
    }
    cmd
}

/// The 30 records of the tests' job set name 30 different jobs.
fn assert_each_job_once(records: &[Value]) {
    let ids: HashSet<&str> = records.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids.len(),
        30,
        "each of the 30 jobs once: {} records, {} ids",
        records.len(),
        ids.len()
    );
}

fn records(output: &Path) -> Vec<Value> {
    std::fs::read_to_string(output)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn texts(records: &[Value]) -> HashMap<String, String> {
    records
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_string(),
                r["text"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn thirty_jobs_give_thirty_records_three_of_them_errors() {
    let dir = tempfile::tempdir().unwrap();
    let jobs = write_jobs(dir.path());
    let out = dir.path().join("results.jsonl");
    let (status, _, stderr) = output(&mut batch_cmd(&jobs, &out, &[]));
    assert_eq!(
        status.status.code(),
        Some(1),
        "a failed job makes the exit code 1: {stderr}"
    );
    let recs = records(&out);
    assert_eq!(recs.len(), 30);
    assert_each_job_once(&recs);
    let errors: Vec<&Value> = recs.iter().filter(|r| r["finish_reason"] == "error").collect();
    assert_eq!(errors.len(), 3, "{errors:?}");
    let all_errors: String = errors
        .iter()
        .map(|r| r["error"].as_str().unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        all_errors.contains("not valid JSON")
            && all_errors.contains("nope.png")
            && all_errors.contains("-c/--ctx-size"),
        "{all_errors}"
    );
    for r in recs.iter().filter(|r| r["finish_reason"] != "error") {
        assert!(r["usage"]["completion_tokens"].as_u64().unwrap() >= 1);
        assert!(r["timings"]["total_ms"].as_f64().unwrap() > 0.0);
    }
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("results.jsonl.meta.json")).unwrap()).unwrap();
    assert_eq!(meta["model"]["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(meta["sampling"]["temperature"], 0.0);
    // A rerun has nothing left to do and changes nothing.
    let before = std::fs::read(&out).unwrap();
    let (status, _, _) = output(&mut batch_cmd(&jobs, &out, &[]));
    assert_eq!(status.status.code(), Some(1));
    assert_eq!(std::fs::read(&out).unwrap(), before);
}

#[test]
fn answers_do_not_depend_on_job_order_and_match_run() {
    let dir = tempfile::tempdir().unwrap();
    let jobs = write_jobs(dir.path());
    let out = dir.path().join("a.jsonl");
    output(&mut batch_cmd(&jobs, &out, &[]));
    let forward = texts(&records(&out));
    let text = std::fs::read_to_string(&jobs).unwrap();
    let reversed: Vec<&str> = text.lines().rev().collect();
    let jobs_rev = dir.path().join("reversed.jsonl");
    std::fs::write(&jobs_rev, reversed.join("\n")).unwrap();
    let out_rev = dir.path().join("b.jsonl");
    output(&mut batch_cmd(&jobs_rev, &out_rev, &[]));
    let backward = texts(&records(&out_rev));
    for (id, t) in &forward {
        if !id.starts_with("line:") {
            assert_eq!(backward.get(id), Some(t), "job {id} depends on job order");
        }
    }
    let g = converted("tiny-medgemma-mm", "f32");
    let mut cmd = medgemma();
    cmd.arg("run")
        .arg("-m")
        .arg(&g.model)
        .arg("--mmproj")
        .arg(g.mmproj.unwrap())
        .args(["-n", "6", "-t", "2"]);
    cmd.args(["--system", "You are an expert radiologist.", "--image"])
        .arg(dir.path().join("chest.png"))
        .arg("What is pneumonia?");
    assert_eq!(ok(&mut cmd).trim_end_matches('\n'), forward["xray-1"]);
}

#[test]
fn killed_mid_run_then_rerun_gives_each_job_once() {
    let dir = tempfile::tempdir().unwrap();
    let jobs = write_jobs(dir.path());
    let out = dir.path().join("results.jsonl");
    // Long answers (and a large context, past the tiny model's trained 2048) so that the batch takes seconds and can
    // be killed in the middle.
    let mut child = batch_cmd(&jobs, &out, &["-n", "400", "-c", "4096", "--allow-long-context"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        // Complete records only: a half-written last line does not count.
        let lines = std::fs::read(&out)
            .map(|b| b.iter().filter(|&&c| c == b'\n').count())
            .unwrap_or(0);
        if lines >= 2 || started.elapsed() > Duration::from_secs(120) {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let partial = std::fs::read(&out).unwrap();
    let complete = partial.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let finished = String::from_utf8_lossy(&partial[..complete]).into_owned();
    let n_finished = finished.lines().count();
    assert!(
        (2..30).contains(&n_finished),
        "the batch was not killed in the middle ({n_finished} records)"
    );
    let (_, _, stderr) = output(&mut batch_cmd(
        &jobs,
        &out,
        &["-n", "400", "-c", "4096", "--allow-long-context"],
    ));
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.starts_with(&finished),
        "finished records were changed by the rerun: {stderr}"
    );
    let recs = records(&out);
    assert_eq!(recs.len(), 30);
    assert_each_job_once(&recs);
}

/// Issue 14: a second batch on the results file a running batch writes fails at once (the file is locked) instead
/// of running the same jobs again and writing their records twice.
#[test]
fn a_second_batch_on_the_same_output_fails_while_the_first_runs() {
    let dir = tempfile::tempdir().unwrap();
    let jobs = write_jobs(dir.path());
    let out = dir.path().join("results.jsonl");
    let slow = ["-n", "400", "-c", "4096", "--allow-long-context"];
    let mut first = batch_cmd(&jobs, &out, &slow)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while std::fs::read(&out).map_or(true, |b| !b.contains(&b'\n')) && started.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let err = fails(&mut batch_cmd(&jobs, &out, &slow));
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first batch ended before the second started: the test shows nothing"
    );
    assert!(
        err.contains("results.jsonl") && err.contains("is being written by another medgemma batch"),
        "{err}"
    );
    let status = first.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(1),
        "the first batch goes on (3 of its jobs are bad)"
    );
    let recs = records(&out);
    assert_eq!(recs.len(), 30);
    assert_each_job_once(&recs);
}

#[test]
fn three_shards_cover_every_job_once() {
    let dir = tempfile::tempdir().unwrap();
    let jobs = write_jobs(dir.path());
    let mut all = Vec::new();
    for k in 1..=3 {
        let out = dir.path().join(format!("shard-{k}.jsonl"));
        output(&mut batch_cmd(&jobs, &out, &["--shard", &format!("{k}/3")]));
        let recs = records(&out);
        assert!(!recs.is_empty() && recs.len() < 30, "shard {k} has {} jobs", recs.len());
        all.extend(recs);
    }
    assert_eq!(all.len(), 30);
    assert_each_job_once(&all);
    let whole = dir.path().join("whole.jsonl");
    output(&mut batch_cmd(&jobs, &whole, &[]));
    assert_eq!(texts(&all), texts(&records(&whole)));
}

#[test]
fn image_folder_mode_and_output_safety() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("scans");
    std::fs::create_dir_all(images.join("sub")).unwrap();
    std::fs::copy(fixtures().join("images/chest.png"), images.join("a.png")).unwrap();
    std::fs::copy(fixtures().join("images/skin.png"), images.join("sub/b.png")).unwrap();
    std::fs::write(images.join("notes.txt"), "not an image").unwrap();
    let g = converted("tiny-medgemma-mm", "f32");
    let out = dir.path().join("r.jsonl");
    let mut cmd = medgemma();
    cmd.arg("batch")
        .arg("-m")
        .arg(&g.model)
        .arg("--mmproj")
        .arg(g.mmproj.as_ref().unwrap());
    cmd.arg("--images")
        .arg(&images)
        .args(["--prompt", "Describe.", "-n", "4", "--output"])
        .arg(&out);
    ok(&mut cmd);
    let ids: HashSet<String> = records(&out)
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, HashSet::from(["a.png".to_string(), "sub/b.png".to_string()]));
    // An output file that is not a results file is never touched.
    let precious = dir.path().join("precious.jsonl");
    std::fs::write(&precious, "my notes\n").unwrap();
    let mut cmd = medgemma();
    cmd.arg("batch")
        .arg("-m")
        .arg(&g.model)
        .arg("--mmproj")
        .arg(g.mmproj.as_ref().unwrap());
    cmd.arg("--images")
        .arg(&images)
        .args(["--prompt", "Describe.", "--output"])
        .arg(&precious);
    let err = fails(&mut cmd);
    // Issue 14: the refusal names the file and does not suggest --overwrite, which would destroy it.
    assert!(err.contains("precious.jsonl") && !err.contains("--overwrite"), "{err}");
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "my notes\n");
    // Results of another model are not mixed in.
    let text_model = converted("tiny-medgemma-text", "f32");
    let mut cmd = medgemma();
    cmd.arg("batch")
        .arg("-m")
        .arg(&text_model.model)
        .arg("--input")
        .arg(write_jobs(dir.path()))
        .arg("--output")
        .arg(&out);
    let err = fails(&mut cmd);
    assert!(err.contains("another model"), "{err}");
}

#[test]
fn parallel_decoding_gives_the_same_answers() {
    let dir = tempfile::tempdir().unwrap();
    let jobs = write_jobs(dir.path());
    let mut by_parallel = Vec::new();
    let mut cached = Vec::new();
    for n in ["1", "4"] {
        let out = dir.path().join(format!("p{n}.jsonl"));
        let (status, _, stderr) = output(&mut batch_cmd(&jobs, &out, &["-n", "20", "--parallel", n]));
        assert_eq!(status.status.code(), Some(1), "{stderr}");
        let recs = records(&out);
        assert_eq!(recs.len(), 30);
        assert_eq!(recs.iter().filter(|r| r["finish_reason"] == "error").count(), 3);
        by_parallel.push(texts(&recs));
        let by_id: HashMap<String, u64> = recs
            .iter()
            .filter(|r| r["finish_reason"] != "error")
            .map(|r| {
                (
                    r["id"].as_str().unwrap().to_string(),
                    r["usage"]["cached_tokens"].as_u64().unwrap(),
                )
            })
            .collect();
        cached.push(by_id);
    }
    assert_eq!(
        by_parallel[0], by_parallel[1],
        "greedy answers must not depend on --parallel"
    );
    // With 4 sequences, text-3 starts in an empty sequence while sequence 0 holds text-0, which has the same system
    // prompt: the prefix is copied from there, not evaluated again (in order, text-3 follows conv-2, which shares
    // only the turn header). xray-4 finds system prompt and image in the sequence that ran xray-1.
    let (p1, p4) = (&cached[0], &cached[1]);
    assert!(
        p4["text-3"] >= 8 && p4["text-3"] > p1["text-3"],
        "text-3 cached: {p1:?} {p4:?}"
    );
    assert!(
        p4["xray-4"] > 16 && p4["xray-4"] > p1["xray-4"],
        "xray-4 cached: {p1:?} {p4:?}"
    );
}

/// Issue 9: a decode that fails in one job of a `--parallel` batch becomes that job's error record; the jobs decoded
/// beside it finish with the answers they give without the failure. The failure is injected at one KV position
/// (MEDGEMMA_FAULT_DECODE_POSITION) that only the long-prompt job reaches, while the short jobs are still running.
#[test]
fn a_failing_decode_fails_only_its_job() {
    let dir = tempfile::tempdir().unwrap();
    let long_system = "You are a careful medical assistant who answers in plain words for students. ".repeat(3);
    let mut lines = vec![json!({"id": "long", "prompt": "What is sepsis?", "system": long_system}).to_string()];
    for (i, q) in ["Define tachycardia.", "What is a stroke?", "What causes anaemia?"]
        .iter()
        .enumerate()
    {
        lines.push(json!({"id": format!("short-{i}"), "prompt": q, "max_tokens": 12}).to_string());
    }
    let jobs = dir.path().join("jobs.jsonl");
    std::fs::write(&jobs, lines.join("\n") + "\n").unwrap();

    let clean = dir.path().join("clean.jsonl");
    let (status, _, stderr) = output(&mut batch_cmd(&jobs, &clean, &["-n", "30", "--parallel", "4"]));
    assert!(status.status.success(), "{stderr}");
    let clean = records(&clean);
    let prompt_tokens = |id: &str| {
        clean.iter().find(|r| r["id"] == id).unwrap()["usage"]["prompt_tokens"]
            .as_u64()
            .unwrap()
    };
    let long_prompt = prompt_tokens("long");
    let short_max = (0..3).map(|i| prompt_tokens(&format!("short-{i}"))).max().unwrap() + 12;
    // The long job writes this position at its 4th generated token; no short job ever gets that far.
    let fault = long_prompt + 3;
    assert!(
        long_prompt - 2 > short_max,
        "the fixture's prompts no longer separate the jobs: {long_prompt} {short_max}"
    );

    for (what, position) in [("generation", fault), ("prompt", long_prompt - 2)] {
        let out = dir.path().join(format!("fault-{what}.jsonl"));
        let mut cmd = batch_cmd(&jobs, &out, &["-n", "30", "--parallel", "4"]);
        cmd.env("MEDGEMMA_FAULT_DECODE_POSITION", position.to_string());
        let (status, _, stderr) = output(&mut cmd);
        assert_eq!(status.status.code(), Some(1), "{what}: {stderr}");
        let recs = records(&out);
        assert_eq!(recs.len(), 4, "{what}: every job has a record: {recs:?}");
        for r in &recs {
            if r["id"] == "long" {
                assert_eq!(r["finish_reason"], "error", "{what}: {r}");
                assert!(r["error"].as_str().unwrap().contains("injected failure"), "{what}: {r}");
            } else {
                let before = clean.iter().find(|c| c["id"] == r["id"]).unwrap();
                assert_eq!(r["text"], before["text"], "{what}: {} must not change", r["id"]);
                assert_eq!(r["finish_reason"], before["finish_reason"]);
            }
        }
    }
}

/// Issue 10: a job's messages may interleave text and images. A content list with the images first answers as the
/// same job written with "prompt" + "images"; an interleaved one runs; a "series" job is refused with an error
/// record naming the folder until series are read (the other jobs still run).
#[test]
fn jobs_with_content_lists() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixtures().join("images/chest.png"), dir.path().join("chest.png")).unwrap();
    std::fs::copy(fixtures().join("images/skin.png"), dir.path().join("skin.png")).unwrap();
    let jobs = [
        json!({"id": "prompt", "prompt": "Compare.", "images": ["chest.png", "skin.png"]}),
        json!({"id": "list", "messages": [{"role": "user", "content": [
            {"type": "image", "image": "chest.png"}, {"type": "image_url", "image_url": {"url": "skin.png"}},
            {"type": "text", "text": "Compare."}]}]}),
        json!({"id": "interleaved", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "First:"}, {"type": "image", "image": "chest.png"},
            {"type": "text", "text": "Second:"}, {"type": "image", "path": "skin.png"},
            {"type": "text", "text": "Compare."}]}]}),
        json!({"id": "series", "prompt": "Describe.", "series": "ct"}),
        json!({"id": "web", "messages": [{"role": "user", "content": [
            {"type": "image", "url": "http://example.com/a.png"}]}]}),
    ];
    let input = dir.path().join("jobs.jsonl");
    let lines: Vec<String> = jobs.iter().map(Value::to_string).collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let out = dir.path().join("out.jsonl");
    let (status, _, stderr) = output(&mut batch_cmd(&input, &out, &[]));
    assert_eq!(status.status.code(), Some(1), "two jobs fail: {stderr}");
    let records = records(&out);
    let by_id: HashMap<&str, &Value> = records.iter().map(|r| (r["id"].as_str().unwrap(), r)).collect();
    assert_eq!(by_id.len(), 5);
    for id in ["prompt", "list", "interleaved"] {
        assert_ne!(by_id[id]["finish_reason"], "error", "{id}: {}", by_id[id]);
    }
    assert_eq!(by_id["list"]["text"], by_id["prompt"]["text"]);
    let series_error = by_id["series"]["error"].as_str().unwrap();
    assert!(
        series_error.contains(&format!("series {}", dir.path().join("ct").display())),
        "{series_error}"
    );
    let web_error = by_id["web"]["error"].as_str().unwrap();
    assert!(
        web_error.starts_with("line 5: message 1, part 1: \"http://example.com/a.png\" is a web address"),
        "{web_error}"
    );
}
