//! A GPU build against the CPU build (scripts/test-gpu; compiled only with a GPU feature): on the tiny fixtures,
//! with every layer and the vision projector offloaded, greedy tokens equal the CPU build's, token for token. The
//! logits are held to the reference by tests/parity.rs, which scripts/test-gpu runs on the GPU too (with
//! MEDGEMMA_GPU_LAYERS=all), under the same bounds as the CPU build.
//!
//! MEDGEMMA_CPU_BIN names the CPU build's binary (scripts/test-gpu builds it); the GPU device must be visible
//! (for lavapipe, GGML_VK_VISIBLE_DEVICES=0).

use serde_json::Value;

use crate::util::*;

fn run_json(mut cmd: std::process::Command, g: &Gguf, image: bool, extra: &[&str]) -> (Value, String) {
    cmd.args(["run", "--json", "-n", "16", "-m"]).arg(&g.model);
    if image {
        cmd.arg("--mmproj")
            .arg(g.mmproj.as_ref().unwrap())
            .arg("--image")
            .arg(fixtures().join("images/chest.png"))
            .arg("--no-image-cache");
    }
    cmd.args(extra).arg("Describe the findings.");
    let (out, stdout, stderr) = output(&mut cmd);
    assert!(out.status.success(), "{stderr}");
    (serde_json::from_str(&stdout).unwrap(), stderr)
}

fn same_tokens_as_the_cpu_build(checkpoint: &str, image: bool) {
    let g = converted(checkpoint, "f32");
    let (gpu, stderr) = run_json(medgemma(), &g, image, &["--gpu-layers", "all", "--verbose"]);
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
    let cmd = std::process::Command::new(std::env::var_os("MEDGEMMA_CPU_BIN").expect("MEDGEMMA_CPU_BIN"));
    let (cpu, _) = run_json(with_clean_env(cmd), &g, image, &[]);
    assert_eq!(gpu["prompt_token_ids"], cpu["prompt_token_ids"]);
    assert_eq!(
        gpu["generated_token_ids"], cpu["generated_token_ids"],
        "greedy tokens differ between the GPU and CPU builds"
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
    same_tokens_as_the_cpu_build("tiny-medgemma-text", false);
}

#[test]
fn an_image_on_the_gpu_gives_the_cpu_builds_tokens() {
    same_tokens_as_the_cpu_build("tiny-medgemma-mm", true);
}

#[test]
fn more_layers_than_the_model_has_are_capped_with_a_notice() {
    let g = converted("tiny-medgemma-text", "f32");
    let (_, stderr) = run_json(medgemma(), &g, false, &["--gpu-layers", "500"]);
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
