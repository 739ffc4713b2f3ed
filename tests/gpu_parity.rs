//! A GPU build against the CPU build (scripts/test-gpu; compiled only with a GPU feature), with every layer and the
//! vision projector offloaded, on reference cases of the tiny fixtures. Each build's logits are within twice its
//! simulated rounding of the reference (tests/parity.rs: [`simulated`] for the GPU's arithmetic, set by
//! MEDGEMMA_TEST_ROUNDING, [`simulated_cpu`] for the CPU's), so the two builds are within the sum of those bounds
//! of each other. Text: the case's smallest top-1 margin along the reference's greedy path exceeds that sum, so
//! the greedy tokens must be equal. Image: no multimodal case's margins clear the Vulkan bound all along the path,
//! so the last-position logits are compared: within the sum, and the same top-1 (the CPU build's margin there must
//! exceed the sum). tests/parity.rs, run on the GPU too, holds each build to the reference.
//!
//! MEDGEMMA_CPU_BIN names the CPU build's binary (scripts/test-gpu builds it); the GPU device must be visible
//! (for lavapipe, GGML_VK_VISIBLE_DEVICES=0).

use serde_json::Value;

use crate::parity::{argmax, case_run, max_abs_diff, rounding_model, simulated, simulated_cpu, top1_margin};
use crate::util::*;

fn run_json(mut cmd: std::process::Command, g: &Gguf, extra: &[&str]) -> (Value, String) {
    cmd.args(["run", "--json", "-n", "16", "-m"]).arg(&g.model);
    cmd.args(extra).arg("Describe the findings.");
    let (out, stdout, stderr) = output(&mut cmd);
    assert!(out.status.success(), "{stderr}");
    (serde_json::from_str(&stdout).unwrap(), stderr)
}

/// Runs a reference case with the parity tests' settings ([`case_run`]): the `run --json` report and the
/// last-position logits.
fn run_case(cmd: std::process::Command, g: &Gguf, case: &Value, extra: &[&str]) -> (Value, Vec<f64>, String) {
    let dir = tempfile::tempdir().unwrap();
    let logits = dir.path().join("logits.json");
    let mut cmd = case_run(cmd, g, &messages_file(dir.path(), case), &logits);
    cmd.arg("--no-image-cache").args(extra);
    let (out, stdout, stderr) = output(&mut cmd);
    assert!(out.status.success(), "{stderr}");
    let logits = serde_json::from_str(&std::fs::read_to_string(&logits).unwrap()).unwrap();
    (serde_json::from_str(&stdout).unwrap(), logits, stderr)
}

/// The GPU plan line must show every layer (and the vision projector, for an image) on the GPU.
fn check_everything_offloaded(stderr: &str, image: bool) {
    let plan = stderr
        .lines()
        .find(|l| l.starts_with("medgemma: gpu: "))
        .unwrap_or_else(|| panic!("no plan line:\n{stderr}"));
    assert!(
        plan.contains("layers on Vulkan0") || plan.contains("layers on CUDA0"),
        "{plan}"
    );
    let n_layers = plan.split(" of ").nth(1).unwrap().split(' ').next().unwrap();
    assert!(
        plan.contains(&format!("gpu: {n_layers} of {n_layers} layers")),
        "every layer: {plan}"
    );
    if image {
        assert!(plan.contains("vision projector on it"), "{plan}");
    }
}

/// The reference case `name`, and the bound on the difference between the GPU and CPU builds' logits there.
fn case_and_bound(checkpoint: &str, name: &str) -> (Value, f64) {
    let case = reference(checkpoint)["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("{checkpoint}: no case {name}"))
        .clone();
    let bound = 2.0 * simulated(checkpoint, &case, "f32") + 2.0 * simulated_cpu(checkpoint, &case, "f32");
    (case, bound)
}

/// Runs the case on the GPU build (checking that everything is offloaded) and on the CPU build.
fn both_builds(checkpoint: &str, case: &Value) -> [(Value, Vec<f64>); 2] {
    let g = converted(checkpoint, "f32");
    let (gpu, gpu_logits, stderr) = run_case(medgemma(), &g, case, &["--gpu-layers", "all", "--verbose"]);
    check_everything_offloaded(&stderr, g.mmproj.is_some());
    let cmd = std::process::Command::new(std::env::var_os("MEDGEMMA_CPU_BIN").expect("MEDGEMMA_CPU_BIN"));
    let (cpu, cpu_logits, _) = run_case(with_clean_env(cmd), &g, case, &[]);
    assert_eq!(gpu["prompt_token_ids"], cpu["prompt_token_ids"]);
    [(gpu, gpu_logits), (cpu, cpu_logits)]
}

/// Greedy tokens of the GPU build equal the CPU build's on the reference case `name`, whose smallest top-1 margin
/// along the greedy path must exceed the bound (or the comparison would be deciding near-ties by rounding).
fn same_tokens_as_the_cpu_build(checkpoint: &str, name: &str) {
    let (case, bound) = case_and_bound(checkpoint, name);
    let margin = case["min_top1_margin_greedy"].as_f64().unwrap();
    assert!(
        margin > bound,
        "{checkpoint}/{name}: margin {margin} <= {bound} ({} and cpu rounding): pick another case",
        rounding_model()
    );
    let [(gpu, _), (cpu, _)] = both_builds(checkpoint, &case);
    assert_eq!(
        gpu["generated_token_ids"], cpu["generated_token_ids"],
        "{checkpoint}/{name}: greedy tokens differ between the GPU and CPU builds"
    );
}

/// The GPU build's last-position logits are within the bound of the CPU build's on the reference case `name`,
/// with the same top-1 (the case's margin there must exceed the bound).
fn same_logits_as_the_cpu_build(checkpoint: &str, name: &str) {
    let (case, bound) = case_and_bound(checkpoint, name);
    let [(_, gpu), (_, cpu)] = both_builds(checkpoint, &case);
    let (diff, margin) = (max_abs_diff(&gpu, &cpu), top1_margin(&cpu));
    eprintln!(
        "{checkpoint}/{name}: GPU vs CPU build max abs logit diff {diff:.4} (bound {bound:.4}), CPU margin {margin:.3}"
    );
    assert!(
        diff <= bound,
        "{checkpoint}/{name}: GPU vs CPU build logits differ by {diff} > {bound}"
    );
    assert!(
        margin > bound,
        "{checkpoint}/{name}: margin {margin} <= {bound}: pick another case"
    );
    assert_eq!(
        argmax(&gpu),
        argmax(&cpu),
        "{checkpoint}/{name}: the GPU build's top-1 differs from the CPU build's"
    );
}

/// The CPU binary with the same clean environment as [`medgemma`], and no GPU layers asked.
fn with_clean_env(mut cmd: std::process::Command) -> std::process::Command {
    let template = medgemma();
    for (k, v) in template.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd.env_remove("MEDGEMMA_GPU_LAYERS").stdin(std::process::Stdio::null());
    cmd
}

#[test]
fn text_on_the_gpu_gives_the_cpu_builds_tokens() {
    same_tokens_as_the_cpu_build("tiny-medgemma-text", "short");
}

#[test]
fn an_image_on_the_gpu_gives_the_cpu_builds_logits() {
    same_logits_as_the_cpu_build("tiny-medgemma-mm", "image");
}

#[test]
fn more_layers_than_the_model_has_are_capped_with_a_notice() {
    let g = converted("tiny-medgemma-text", "f32");
    let (_, stderr) = run_json(medgemma(), &g, &["--gpu-layers", "500"]);
    assert!(stderr.contains("--gpu-layers 500: the model has"), "{stderr}");
}

#[test]
fn a_device_that_does_not_exist_is_refused_naming_the_ones_there() {
    let g = converted("tiny-medgemma-text", "f32");
    let err = fails(
        medgemma()
            .args(["run", "-n", "4", "-m"])
            .arg(&g.model)
            .args(["--gpu-device", "Vulkan9", "hi"]),
    );
    assert!(
        err.contains("--gpu-device Vulkan9: no such GPU device; this build has "),
        "{err}"
    );
}

/// A size as the plan line prints it ("928 KiB", "300 MiB", "9.57 GiB"), in KiB.
fn plan_size_kib(text: &str) -> f64 {
    let (number, unit) = text.trim().split_once(' ').unwrap_or_else(|| panic!("{text:?}"));
    let n: f64 = number.parse().unwrap_or_else(|_| panic!("{text:?}"));
    n * match unit {
        "KiB" => 1.0,
        "MiB" => 1024.0,
        "GiB" => 1024.0 * 1024.0,
        _ => panic!("unit of {text:?}"),
    }
}

/// The fit's KV cache is what llama.cpp then allocates on the device (its `--verbose` log), at two context sizes:
/// the global layer keeps every position, the sliding-window layers the window plus one micro-batch (`run`), and
/// `-c` reaches the plan.
#[test]
fn the_plans_kv_cache_is_what_llama_cpp_allocates() {
    let g = converted("tiny-medgemma-text", "f32");
    let mut seen = Vec::new();
    for ctx in ["256", "2048"] {
        let (_, stderr) = run_json(medgemma(), &g, &["--gpu-layers", "auto", "--verbose", "-c", ctx]);
        check_everything_offloaded(&stderr, false);
        let plan = stderr.lines().find(|l| l.starts_with("medgemma: gpu: ")).unwrap();
        let ours = plan_size_kib(plan.split("KV cache ").nth(1).unwrap().split(',').next().unwrap());
        let device_lines: Vec<f64> = stderr
            .lines()
            .filter(|l| l.contains(" KV buffer size = ") && !l.contains(" CPU KV buffer"))
            .map(|l| {
                let mib = l
                    .split(" KV buffer size = ")
                    .nth(1)
                    .unwrap()
                    .trim()
                    .trim_end_matches(" MiB");
                mib.parse::<f64>().unwrap_or_else(|_| panic!("{l}")) * 1024.0
            })
            .collect();
        assert!(
            !device_lines.is_empty(),
            "no device KV buffer in llama.cpp's log:\n{stderr}"
        );
        let theirs: f64 = device_lines.iter().sum();
        // ours is printed to the KiB, llama.cpp's lines to 0.01 MiB each
        let slack = 0.5 + device_lines.len() as f64 * 0.005 * 1024.0;
        assert!(
            (ours - theirs).abs() <= slack,
            "-c {ctx}: the plan counts {ours} KiB of KV cache, llama.cpp allocated {theirs} KiB on the device\n{plan}"
        );
        seen.push(ours);
    }
    assert!(seen[1] > seen[0], "-c must reach the plan: {seen:?}");
}
