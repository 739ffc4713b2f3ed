//! The GPU devices llama.cpp sees and where a model's layers and vision projector go: the one place that lists
//! devices and turns `--gpu-layers`, `--gpu-device` and `--mmproj-offload` into llama.cpp's parameters.
//!
//! Owns: the device list (for `doctor` and the plan), the choice of device, what happens when a build has no GPU
//! backend (a notice, and the CPU), and the `--verbose` line of the plan. The arithmetic of the fit is pure
//! ([`crate::gpu_plan`]). Must not: print on stdout.

use super::error::EngineError;
use crate::gguf::GgufHeader;
use crate::gpu_plan::{plan, GpuLayers, KvCache, ModelFootprint};

/// What the user asked of the GPU.
#[derive(Debug, Clone, Default)]
pub struct GpuOptions {
    pub layers: GpuLayers,
    /// A device by name (`Vulkan0`, `CUDA0`); the first GPU when absent.
    pub device: Option<String>,
    /// Put the vision projector on the GPU when it fits (`--mmproj-offload on`, the default).
    pub mmproj_offload: bool,
    /// The KV cache of the context the command will run, for the fit; when absent, the default context of one
    /// sequence with the whole cache kept (the larger of the two ways llama.cpp sizes it).
    pub kv: Option<KvCache>,
}

/// A device as `doctor` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Device {
    pub name: String,
    pub description: String,
    pub backend: String,
    /// `cpu`, `gpu`, `igpu`, `accel`, `unknown`.
    pub kind: &'static str,
    pub memory_total: u64,
    pub memory_free: u64,
    #[serde(skip)]
    index: usize,
}

/// Every device of this build (the CPU included).
pub fn devices() -> Vec<Device> {
    use llama_cpp_2::LlamaBackendDeviceType as T;
    llama_cpp_2::list_llama_ggml_backend_devices()
        .into_iter()
        .map(|d| Device {
            name: d.name,
            description: d.description,
            backend: d.backend,
            kind: match d.device_type {
                T::Cpu => "cpu",
                T::Gpu => "gpu",
                T::IntegratedGpu => "igpu",
                T::Accelerator => "accel",
                T::Unknown => "unknown",
            },
            memory_total: d.memory_total as u64,
            memory_free: d.memory_free as u64,
            index: d.index,
        })
        .collect()
}

/// Where things go: layers on a device (by llama.cpp's index), and whether the projector joins them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Placement {
    pub(super) layers: u32,
    pub(super) device: Option<usize>,
    pub(super) mmproj_on_gpu: bool,
}

/// Decides the placement for `model` (and its projector of `mmproj_bytes`), saying on stderr what was done
/// instead of what was asked when that differs.
pub(super) fn placement(
    options: &GpuOptions,
    model: &GgufHeader,
    mmproj_bytes: Option<u64>,
    verbose: bool,
) -> Result<Placement, EngineError> {
    let gpus: Vec<Device> = devices()
        .into_iter()
        .filter(|d| matches!(d.kind, "gpu" | "igpu"))
        .collect();
    let asked_gpu = options.layers != GpuLayers::Auto && options.layers != GpuLayers::Count(0);
    let device =
        match &options.device {
            Some(name) => Some(gpus.iter().find(|d| d.name.eq_ignore_ascii_case(name)).ok_or_else(|| {
                EngineError::NoSuchDevice {
                    asked: name.clone(),
                    available: gpus.iter().map(|d| format!("{} ({})", d.name, d.description)).collect(),
                }
            })?),
            None => gpus.first(),
        };
    let Some(device) = device else {
        if asked_gpu {
            eprintln!(
                "medgemma: --gpu-layers: {}; running on the CPU",
                if cfg!(any(feature = "cuda", feature = "vulkan", feature = "metal")) {
                    "no GPU device was found (`medgemma doctor` lists the devices)"
                } else {
                    "this build has no GPU backend (build one with `scripts/build --features vulkan` or `--features \
                     cuda`)"
                }
            );
        }
        return Ok(Placement::default());
    };
    let footprint = ModelFootprint::from_header(model);
    let kv = options.kv.unwrap_or_else(|| KvCache {
        positions: model.arch_u64("context_length").unwrap_or(8192).min(8192),
        sequences: 1,
        swa_full: true,
        ubatch: 512,
        bytes_per_32: 64,
    });
    let offload_mmproj = if options.mmproj_offload { mmproj_bytes } else { None };
    let plan = plan(
        options.layers,
        &footprint,
        &kv,
        offload_mmproj,
        &device.name,
        device.memory_free,
    )
    .map_err(|e| EngineError::GpuDoesNotFit(e.to_string()))?;
    if let Some(notice) = &plan.notice {
        eprintln!("medgemma: {notice}");
    }
    if verbose {
        eprintln!("medgemma: gpu: {}", plan.describe(&device.name));
    }
    Ok(Placement {
        layers: plan.layers,
        device: (plan.layers > 0 || plan.mmproj_on_device).then_some(device.index),
        mmproj_on_gpu: plan.mmproj_on_device,
    })
}
