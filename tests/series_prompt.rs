//! CT and MR series in prompts, end to end (issue 10): `run --series`, `--messages` series parts, batch series
//! jobs and chat's `/series` on the tiny multimodal fixture, with the DICOM folders of
//! scripts/make_dicom_series_fixtures.py.
//!
//! What must hold: the prompt's token ids are the Hugging Face processor's for Google's layout (instruction, each
//! slice's image followed by `SLICE k`, the question; reference/tiny-medgemma-mm-interleaved.json, made by
//! scripts/processor_prompt_ids.py); the slices the model sees are the ones `medgemma preview` writes; run, batch
//! and chat give the same greedy answer; every refusal exits 1 naming the file or flag and the fix; and no
//! patient attribute of the fixtures is ever printed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::{json, Value};

use crate::util::{converted, fixtures, medgemma, run_with_deadline, special_token_id, Gguf};

/// The series fixtures, written once per test process, and the made-up patient attributes they hold.
struct Series {
    dir: PathBuf,
    secrets: Vec<String>,
}

fn series() -> &'static Series {
    static SERIES: OnceLock<Series> = OnceLock::new();
    SERIES.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("series-prompt");
        let _ = std::fs::remove_dir_all(&dir);
        let status = Command::new(crate::util::pydicom_python())
            .arg(crate::util::root().join("scripts/make_dicom_series_fixtures.py"))
            .arg(&dir)
            .status()
            .unwrap();
        assert!(status.success(), "make_dicom_series_fixtures.py failed");
        let manifest: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
        let secrets = manifest["secrets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect();
        Series { dir, secrets }
    })
}

fn source(name: &str) -> PathBuf {
    series().dir.join(name)
}

fn mm() -> Gguf {
    converted("tiny-medgemma-mm", "f32")
}

/// `medgemma run` on the tiny multimodal model with its projector, 2 threads, greedy.
fn run_mm() -> Command {
    let g = mm();
    let mut cmd = medgemma();
    cmd.arg("run")
        .arg("-m")
        .arg(&g.model)
        .arg("--mmproj")
        .arg(g.mmproj.unwrap())
        .args(["-t", "2", "--temp", "0"]);
    cmd
}

/// Runs `cmd` (with `stdin`); asserts no panic and that no patient attribute of the fixtures reached stdout or
/// stderr. Returns the exit code, stdout and stderr.
fn exec(cmd: &mut Command, stdin: &str) -> (i32, String, String) {
    let out = run_with_deadline(cmd, stdin.as_bytes().to_vec(), std::time::Duration::from_secs(120));
    let code = out
        .exit
        .unwrap_or_else(|why| panic!("medgemma {why}: {cmd:?}\n{}", out.stderr));
    assert!(!out.stderr.contains("panicked"), "panic: {cmd:?}\n{}", out.stderr);
    for secret in &series().secrets {
        for (name, text) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
            assert!(
                !text.contains(secret.as_str()),
                "{cmd:?} printed the patient attribute {secret:?} on {name}:\n{text}"
            );
        }
    }
    (code, out.stdout, out.stderr)
}

/// Runs `cmd`, asserts success; returns stdout and stderr.
fn succeeds(cmd: &mut Command) -> (String, String) {
    let (code, stdout, stderr) = exec(cmd, "");
    assert_eq!(code, 0, "{cmd:?} failed:\nstdout: {stdout}\nstderr: {stderr}");
    (stdout, stderr)
}

/// Runs `cmd`, asserts a clean refusal with exit `code` (an error line, nothing on stdout); returns stderr.
fn refused(cmd: &mut Command, code: i32) -> String {
    let (got, stdout, stderr) = exec(cmd, "");
    assert_eq!(
        got, code,
        "{cmd:?}: expected exit {code}:\nstdout: {stdout}\nstderr: {stderr}"
    );
    assert!(stderr.contains("error:"), "{cmd:?}: no error line:\n{stderr}");
    assert!(stdout.is_empty(), "{cmd:?}: stdout should be empty on error: {stdout}");
    stderr
}

/// `run --json`'s report.
fn report(cmd: &mut Command) -> Value {
    let (stdout, _) = succeeds(cmd.arg("--json"));
    serde_json::from_str(&stdout).unwrap()
}

fn ids(report: &Value) -> Vec<i64> {
    report["prompt_token_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_i64().unwrap())
        .collect()
}

/// The processor's series cases, with the image token as -1 (what `prompt_token_ids` writes).
fn series_cases() -> Vec<Value> {
    let path = fixtures().join("reference/tiny-medgemma-mm-interleaved.json");
    let reference: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let image_token = reference["image_token_id"].as_i64().unwrap();
    let mut cases = reference["series_cases"].as_array().expect("series_cases").clone();
    for case in &mut cases {
        for id in case["prompt_ids"].as_array_mut().unwrap() {
            if id.as_i64() == Some(image_token) {
                *id = json!(-1);
            }
        }
    }
    cases
}

fn case(name: &str) -> Value {
    series_cases()
        .into_iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no series case {name}: run scripts/processor_prompt_ids.py"))
}

fn expected_ids(case: &Value) -> Vec<i64> {
    case["prompt_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_i64().unwrap())
        .collect()
}

/// `run --series` with a case's source, system prompt, instruction and question.
fn run_case(case: &Value) -> Command {
    let mut cmd = run_mm();
    cmd.arg("--series").arg(source(case["source"].as_str().unwrap()));
    if let Some(system) = case["system"].as_str() {
        cmd.args(["--system", system]);
    }
    if let Some(instruction) = case["instruction"].as_str() {
        cmd.args(["--series-instruction", instruction]);
    }
    cmd.arg(case["question"].as_str().unwrap());
    cmd
}

/// Writes `messages` to `dir/name.json` for `run --messages`.
fn messages_file(dir: &Path, name: &str, messages: &Value) -> PathBuf {
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(messages).unwrap()).unwrap();
    path
}

/// The projector's square input side, `clip.vision.image_size` in the mmproj's header (a u32).
fn projector_side() -> u32 {
    let bytes = std::fs::read(mm().mmproj.unwrap()).unwrap();
    let at = crate::util::entry(&bytes, "clip.vision.image_size");
    assert_eq!(u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()), 4, "a u32");
    u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap())
}

#[test]
fn series_prompt_ids_equal_the_hf_processor() {
    let cases = series_cases();
    assert!(cases.len() >= 3);
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let slices = case["slices"].as_u64().unwrap();
        let (stdout, stderr) = succeeds(run_case(case).args(["--json", "-n", "1"]));
        let ours = ids(&serde_json::from_str(&stdout).unwrap());
        assert_eq!(
            ours,
            expected_ids(case),
            "{name}: prompt token ids differ from the processor's"
        );
        assert_eq!(
            ours.iter().filter(|&&i| i == -1).count() as u64,
            slices * 16,
            "{name}: 16 image positions per slice"
        );
        assert!(
            stderr.contains(&format!("{slices} of {slices} slice(s)")),
            "{name}: {stderr}"
        );
    }
}

/// `run --series` equals `run --messages` with the preview's PNGs as the slices (same logits, byte for byte), with
/// either way of making a slice square; and the slices' pixels do reach the model.
#[test]
fn the_slices_reaching_the_model_are_the_previews() {
    let dir = tempfile::tempdir().unwrap();
    let case = case("series_mr_10");
    let side = projector_side();
    for fit in ["pad", "stretch"] {
        let preview = dir.path().join(format!("preview-{fit}"));
        succeeds(
            medgemma()
                .arg("preview")
                .arg("--series")
                .arg(source("mr"))
                .args(["--side", &side.to_string(), "--image-fit", fit, "--out"])
                .arg(&preview),
        );
        // The processor's conversation, its image parts replaced by the preview's slices in order.
        let slice = |k: usize| preview.join(format!("{k:03}.png"));
        let mut messages = case["messages"].clone();
        let mut k = 0;
        for turn in messages.as_array_mut().unwrap() {
            for part in turn["content"].as_array_mut().into_iter().flatten() {
                if part["type"] == "image" {
                    k += 1;
                    part["image"] = json!(slice(k));
                }
            }
        }
        assert_eq!(k, 10);
        let by_hand = messages_file(dir.path(), &format!("by-hand-{fit}"), &messages);
        let logits = |name: &str| dir.path().join(format!("{name}-{fit}.logits"));
        let from_series = report(
            run_case(&case)
                .args(["-n", "4", "--image-fit", fit, "--logits-out"])
                .arg(logits("series")),
        );
        let from_messages = report(
            run_mm()
                .args(["-n", "4", "--image-fit", fit, "--logits-out"])
                .arg(logits("messages"))
                .arg("--messages")
                .arg(&by_hand),
        );
        assert_eq!(ids(&from_series), ids(&from_messages), "{fit}");
        assert_eq!(from_series["text"], from_messages["text"], "{fit}");
        let bytes = |name: &str| std::fs::read(logits(name)).unwrap();
        assert!(
            bytes("series") == bytes("messages"),
            "{fit}: the logits of run --series differ from those of its preview's slices"
        );

        // The pixels matter: the first two slices swapped change the logits.
        if fit == "pad" {
            let mut swapped = messages.clone();
            let content = swapped[1]["content"].as_array_mut().unwrap();
            let (a, b) = (content[1]["image"].clone(), content[3]["image"].clone());
            content[1]["image"] = b;
            content[3]["image"] = a;
            let swapped = messages_file(dir.path(), "swapped", &swapped);
            report(
                run_mm()
                    .args(["-n", "1", "--logits-out"])
                    .arg(logits("swapped"))
                    .arg("--messages")
                    .arg(&swapped),
            );
            assert!(
                bytes("swapped") != bytes("series"),
                "the slices' pixels made no difference"
            );
        }
    }
}

/// `--series-instruction` replaces Google's instruction, and so does text before a series in a `--messages` turn;
/// a `--messages` turn that begins with the series gets Google's instruction, as `--series` does.
#[test]
fn own_instruction_replaces_googles() {
    let dir = tempfile::tempdir().unwrap();
    let own = case("series_ct_own_instruction");
    let expected = expected_ids(&own);
    let with_flag = ids(&report(run_case(&own).args(["-n", "1"])));
    assert_eq!(
        with_flag, expected,
        "--series-instruction: differs from the processor's"
    );

    let disagree = source("disagree");
    let text_first = json!([{"role": "user", "content": [
        {"type": "text", "text": own["instruction"]},
        {"type": "series", "series": disagree},
        {"type": "text", "text": own["question"]}]}]);
    let path = messages_file(dir.path(), "text-first", &text_first);
    let from_messages = ids(&report(run_mm().args(["-n", "1", "--messages"]).arg(&path)));
    assert_eq!(from_messages, expected, "--messages, text before the series");

    // Google's instruction, as tokens: the processor's CT case between "user\n" and the first image.
    let google = expected_ids(&case("series_ct_multiframe_6"));
    let start_of_image = special_token_id("tiny-medgemma-mm", "<start_of_image>");
    let first_image = google.iter().position(|&i| i == start_of_image).unwrap();
    let instruction = &google[6..first_image - 1];
    assert!(instruction.len() > 10, "{instruction:?}");
    let contains = |ids: &[i64]| ids.windows(instruction.len()).any(|w| w == instruction);
    assert!(!contains(&with_flag), "Google's instruction is still in the prompt");
    let default = ids(&report(
        run_mm()
            .args(["-n", "1", "--series"])
            .arg(&disagree)
            .arg(own["question"].as_str().unwrap()),
    ));
    assert!(
        contains(&default),
        "without --series-instruction, Google's instruction is expected"
    );

    // A --messages turn that begins with the series: the processor's layout, Google's instruction included.
    let mr = case("series_mr_10");
    let series_first = json!([
        {"role": "system", "content": mr["system"]},
        {"role": "user", "content": [
            {"type": "series", "series": source("mr")},
            {"type": "text", "text": mr["question"]}]}]);
    let path = messages_file(dir.path(), "series-first", &series_first);
    let from_messages = ids(&report(run_mm().args(["-n", "1", "--messages"]).arg(&path)));
    assert_eq!(from_messages, expected_ids(&mr), "--messages, series first");
}

fn batch(jobs: &Path, output: &Path, extra: &[&str]) -> Command {
    let g = mm();
    let mut cmd = medgemma();
    cmd.arg("batch")
        .arg("-m")
        .arg(&g.model)
        .arg("--mmproj")
        .arg(g.mmproj.unwrap())
        .arg("--input")
        .arg(jobs)
        .arg("--output")
        .arg(output)
        .args(["-t", "2", "-n", "6", "--temp", "0"])
        .args(extra);
    cmd
}

fn records(output: &Path) -> Vec<Value> {
    std::fs::read_to_string(output)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A series job answers as `run --series` does, with `--max-slices` applied; a bad folder fails its job only.
#[test]
fn batch_series_jobs_answer_as_run_does() {
    let dir = tempfile::tempdir().unwrap();
    let question = "Which slice is the brightest?";
    let jobs = dir.path().join("jobs.jsonl");
    let lines = [
        json!({"id": "ct", "prompt": question, "series": source("ct_shuffled")}),
        json!({"id": "mr", "prompt": question, "series": source("mr"), "system": "You are an expert radiologist."}),
        json!({"id": "xray", "prompt": "Describe.", "images": [fixtures().join("images/chest.png")]}),
        json!({"id": "two", "prompt": question, "series": source("two_series")}),
    ];
    std::fs::write(
        &jobs,
        lines.iter().map(Value::to_string).collect::<Vec<_>>().join("\n") + "\n",
    )
    .unwrap();
    let out = dir.path().join("results.jsonl");
    let (code, stdout, stderr) = exec(&mut batch(&jobs, &out, &["--max-slices", "4"]), "");
    assert_eq!(code, 1, "one failed job makes the exit code 1: {stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    let results = records(&out);
    assert_eq!(results.len(), 4, "{results:?}");
    let record = |id: &str| results.iter().find(|r| r["id"] == id).unwrap().clone();
    for id in ["ct", "mr", "xray"] {
        assert_ne!(record(id)["finish_reason"], "error", "{id}: {:?}", record(id));
    }
    let bad = record("two");
    assert_eq!(bad["finish_reason"], "error");
    let error = bad["error"].as_str().unwrap();
    assert!(
        error.contains("two_series") && error.contains("--series-uid") && error.contains("2 series"),
        "{error}"
    );

    // The same answers from run, with --max-slices 4 (without it the 85-slice CT does not fit the model).
    for (id, name, system) in [
        ("ct", "ct_shuffled", None),
        ("mr", "mr", Some("You are an expert radiologist.")),
    ] {
        let mut cmd = run_mm();
        cmd.args(["-n", "6", "--max-slices", "4", "--series"]).arg(source(name));
        if let Some(system) = system {
            cmd.args(["--system", system]);
        }
        let run = report(cmd.arg(question));
        assert_eq!(
            record(id)["text"],
            run["text"],
            "{id}: batch and run answer differently"
        );
        assert_eq!(record(id)["usage"]["prompt_tokens"], run["prompt_tokens"], "{id}");
        let slices = ids(&run).iter().filter(|&&i| i == -1).count();
        assert_eq!(slices, 4 * 16, "{id}: --max-slices 4");
    }

    // Three jobs at a time (the two series share the beginning of Google's instruction in the KV cache): the same
    // records.
    let parallel = dir.path().join("parallel.jsonl");
    let (code, _, stderr) = exec(
        &mut batch(&jobs, &parallel, &["--max-slices", "4", "--parallel", "3"]),
        "",
    );
    assert_eq!(code, 1, "{stderr}");
    for r in records(&parallel) {
        let id = r["id"].as_str().unwrap();
        assert_eq!(r["text"], record(id)["text"], "{id}: --parallel 3 answers differently");
        assert_eq!(r["error"], record(id)["error"], "{id}");
    }

    // Without --max-slices the CT's 85 slices do not fit: its record says to take fewer (a larger -c, the
    // engine's own advice, is refused past the 2048 positions the model was trained for).
    let ct_only = dir.path().join("ct.jsonl");
    std::fs::write(&ct_only, lines[0].to_string() + "\n").unwrap();
    let out = dir.path().join("ct-results.jsonl");
    let (code, _, stderr) = exec(&mut batch(&ct_only, &out, &[]), "");
    assert_eq!(code, 1, "{stderr}");
    let error = records(&out)[0]["error"].as_str().unwrap().to_string();
    assert!(error.contains("--max-slices") && error.contains("2048"), "{error}");
}

/// Chat: `/series DIR` then a question answers as `run --series`; `/series` alone prints the usage and a bad
/// folder an error, and the chat goes on. `chat --series DIR` does the same for the first message.
#[test]
fn chat_series_answers_as_run_does() {
    let question = "Which slice is the brightest?";
    let (expected, _) = succeeds(run_mm().args(["-n", "6", "--series"]).arg(source("mr")).arg(question));
    assert!(!expected.trim().is_empty());
    let g = mm();
    let chat = |extra: &[&str], script: &str| {
        let mut cmd = medgemma();
        // The sandbox confines chat to the folder it starts in: the fixtures' folder.
        cmd.current_dir(&series().dir)
            .arg("chat")
            .arg("-m")
            .arg(&g.model)
            .arg("--mmproj")
            .arg(g.mmproj.as_ref().unwrap())
            .args(["-t", "2", "-n", "6", "--temp", "0", "--no-history"])
            .args(extra);
        exec(&mut cmd, script)
    };
    let (code, stdout, stderr) = chat(&[], &format!("/series\n/series two_series\n/series mr\n{question}\n"));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout, expected,
        "chat /series and run --series answer differently: {stderr}"
    );
    assert!(stderr.contains("usage: /series DIR"), "{stderr}");
    assert!(
        stderr.contains("two_series") && stderr.contains("--series-uid"),
        "the bad folder's error: {stderr}"
    );
    assert!(stderr.contains("series of 10 slice(s) attached"), "{stderr}");

    let (code, stdout, stderr) = chat(&["--series", "mr"], &format!("{question}\n"));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, expected, "chat --series and run --series answer differently");

    // Three turns, the last with two series (the KV cache keeps the first series across turns): each answer is
    // what a fresh `run --messages` of the conversation so far gives.
    let dir = tempfile::tempdir_in(&series().dir).unwrap();
    let saved = dir.path().join("chat.json");
    let script = format!(
        "/series mr\n{question}\nAnd the darkest?\n/series ct_multiframe.dcm\n/series disagree\nCompare them.\n/save {}\n",
        saved.display()
    );
    let (code, _, stderr) = chat(&[], &script);
    assert_eq!(code, 0, "{stderr}");
    let transcript: Value = serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    let messages = transcript["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 6, "{messages:?}");
    for turn in [1, 3, 5] {
        let so_far = messages_file(dir.path(), &format!("turn-{turn}"), &json!(messages[..turn]));
        let fresh = report(run_mm().args(["-n", "6", "--messages"]).arg(&so_far));
        assert_eq!(
            fresh["generated_token_ids"],
            messages[turn]["tokens"],
            "answer {}: chat and a fresh run differ",
            turn.div_ceil(2)
        );
    }
}

/// Every refusal exits 1 (2 for a usage error) naming the file or flag and the fix, with nothing on stdout.
#[test]
fn series_refusals_name_the_problem_and_the_fix() {
    let g = mm();
    let mr = source("mr");

    // A series needs the vision projector.
    let stderr = refused(
        medgemma()
            .arg("run")
            .arg("-m")
            .arg(&g.model)
            .arg("--series")
            .arg(&mr)
            .arg("Describe."),
        1,
    );
    assert!(stderr.contains("add --mmproj"), "{stderr}");

    // --max-slices and --series-uid choose slices of a series: without one they are refused.
    for flag in [["--max-slices", "4"], ["--series-uid", "1.2.3"]] {
        let stderr = refused(run_mm().args(flag).arg("Describe."), 1);
        assert!(stderr.contains(flag[0]) && stderr.contains("add --series"), "{stderr}");
    }

    // The 100-slice CT gives 85 slices: more positions than the tiny model was trained for.
    let ct = source("ct_shuffled");
    let stderr = refused(run_mm().arg("--series").arg(&ct).arg("Describe."), 1);
    assert!(stderr.contains("CT, 85 of 100 slice(s)"), "{stderr}");
    let error = stderr.lines().find(|l| l.starts_with("error:")).unwrap();
    let positions: usize = error
        .split_once("the prompt is ")
        .and_then(|(_, rest)| rest.split_once(" positions"))
        .map(|(n, _)| n.parse().unwrap())
        .unwrap_or_else(|| panic!("no position count: {error}"));
    assert!(positions > 2048, "{error}");
    for expect in [
        "85 image(s)",
        "more than the 2048 this model was trained for",
        "--max-slices",
    ] {
        assert!(error.contains(expect), "expected {expect:?}: {error}");
    }
    // With --max-slices 40 it fits.
    let (stdout, stderr) = succeeds(
        run_mm()
            .args(["-n", "2", "--max-slices", "40", "--series"])
            .arg(&ct)
            .arg("Describe."),
    );
    assert!(!stdout.is_empty());
    assert!(stderr.contains("CT, 40 of 100 slice(s)"), "{stderr}");

    // Two series in one folder: both UIDs listed, and the flag that chooses.
    let stderr = refused(run_mm().arg("--series").arg(source("two_series")).arg("Describe."), 1);
    for expect in [
        "2 series",
        "--series-uid",
        "1.2.826.0.1.3680043.10.1077.4",
        "1.2.826.0.1.3680043.10.1077.5",
    ] {
        assert!(stderr.contains(expect), "expected {expect:?}: {stderr}");
    }

    // An empty question.
    let stderr = refused(run_mm().arg("--series").arg(&mr).arg("  \n"), 1);
    assert!(
        stderr.contains("the prompt is empty") && stderr.contains("--series"),
        "{stderr}"
    );

    // --series with --image, and --series-instruction without --series: usage errors.
    let chest = fixtures().join("images/chest.png");
    let stderr = refused(
        run_mm()
            .arg("--series")
            .arg(&mr)
            .arg("--image")
            .arg(&chest)
            .arg("Describe."),
        2,
    );
    assert!(stderr.contains("--series") && stderr.contains("--image"), "{stderr}");
    let stderr = refused(run_mm().args(["--series-instruction", "Look.", "Describe."]), 2);
    assert!(stderr.contains("--series"), "{stderr}");
}
