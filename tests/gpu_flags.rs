//! The GPU flags on a CPU build (what CI runs): asking for GPU layers runs on the CPU with a notice and the same
//! answer, a device that does not exist is refused naming the flag, bad values name the flag, and `doctor` lists the
//! devices. scripts/test-gpu runs the same answers on a Vulkan build (tests/gpu_parity.rs).

use crate::util::*;

#[cfg(not(any(feature = "cuda", feature = "vulkan", feature = "metal")))]
fn tiny() -> Gguf {
    converted("tiny-medgemma-text", "f32")
}

#[cfg(not(any(feature = "cuda", feature = "vulkan", feature = "metal")))]
fn answer(extra: &[&str]) -> (String, String) {
    let g = tiny();
    let (out, stdout, stderr) = output(
        medgemma()
            .args(["run", "-n", "12", "-m"])
            .arg(&g.model)
            .args(extra)
            .arg("Describe a chest X-ray."),
    );
    assert!(out.status.success(), "{stderr}");
    (stdout, stderr)
}

#[cfg(not(any(feature = "cuda", feature = "vulkan", feature = "metal")))]
#[test]
fn gpu_layers_on_a_cpu_build_run_on_the_cpu_with_a_notice() {
    let (plain, quiet) = answer(&[]);
    assert!(
        !quiet.contains("--gpu-layers"),
        "auto says nothing on a CPU build: {quiet}"
    );
    for asked in ["all", "20", "auto"] {
        let (text, stderr) = answer(&["--gpu-layers", asked]);
        assert_eq!(text, plain, "--gpu-layers {asked}");
        if asked != "auto" {
            assert!(
                stderr.contains("this build has no GPU backend") && stderr.contains("running on the CPU"),
                "{stderr}"
            );
        }
    }
}

#[cfg(not(any(feature = "cuda", feature = "vulkan", feature = "metal")))]
#[test]
fn a_device_that_does_not_exist_is_refused() {
    let g = tiny();
    let err = fails(
        medgemma()
            .args(["run", "-n", "4", "-m"])
            .arg(&g.model)
            .args(["--gpu-device", "CUDA7", "hi"]),
    );
    assert!(err.contains("--gpu-device CUDA7: no such GPU device"), "{err}");
    assert!(err.contains("medgemma doctor"), "{err}");
}

#[test]
fn bad_gpu_flag_values_name_the_flag() {
    let (out, _, stderr) = output(medgemma().args(["run", "--gpu-layers", "many", "hi"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("--gpu-layers") && stderr.contains("auto, all or a number"),
        "{stderr}"
    );
    let (out, _, stderr) = output(medgemma().args(["run", "--mmproj-offload", "maybe", "hi"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("--mmproj-offload"), "{stderr}");
}

#[test]
fn doctor_lists_the_devices() {
    let (_, stdout, stderr) = output(medgemma().args(["doctor", "--json"]));
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    let devices = report["devices"].as_array().expect("devices");
    assert!(devices.iter().any(|d| d["kind"] == "cpu"), "{devices:?}");
    for d in devices {
        assert!(d["name"].as_str().is_some_and(|n| !n.is_empty()));
    }
}
