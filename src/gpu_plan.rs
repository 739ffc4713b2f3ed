//! How many of a model's layers go to the GPU: `--gpu-layers auto|all|N` and the fit behind `auto`.
//!
//! Owns: the flag's values, the memory estimate in llama.cpp's order of offloading (N layers = the output layer
//! and the last N-1 blocks; the output layer is `output.weight`, or a copy of the token embeddings when they are
//! tied, as in Gemma 3; the input embeddings stay on the CPU), each block's weights from the GGUF tensor table and
//! its KV cache at the chosen context, plus a margin for llama.cpp's compute buffers and, with `--mmproj-offload on`, the vision projector and its
//! buffers), and the plan's one-line description. `auto` places as many layers as fit in the device's free memory
//! (as ollama does); an explicit count larger than the model is capped with a notice, one that does not fit is
//! refused with the count that would. Pure: the engine lists the devices and applies the plan.

use crate::gguf::GgufHeader;

/// `--gpu-layers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GpuLayers {
    /// As many as fit in the device's free memory.
    #[default]
    Auto,
    /// Every layer (the output layer included).
    All,
    Count(u32),
}

impl std::str::FromStr for GpuLayers {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(GpuLayers::Auto),
            "all" => Ok(GpuLayers::All),
            n => n
                .parse::<u32>()
                .map(GpuLayers::Count)
                .map_err(|_| format!("{n:?} is not auto, all or a number of layers")),
        }
    }
}

/// Room kept free on the device for llama.cpp's compute buffers and the driver.
pub const MARGIN_BYTES: u64 = 512 << 20;
/// The vision tower's compute buffers on the device (an 896x896 image through SigLIP-400M), beside its weights.
pub const VISION_COMPUTE_BYTES: u64 = 768 << 20;

/// What the fit needs to know of a model, read from its GGUF header.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelFootprint {
    /// Weight bytes of each repeating block (`blk.N.*`).
    pub block_bytes: Vec<u64>,
    /// Weight bytes of the output layer: the output norm and `output.weight`, or the token embeddings' copy.
    pub output_bytes: u64,
    /// KV cache bytes per position per layer (K and V at F16).
    pub kv_bytes_per_position: u64,
}

impl ModelFootprint {
    pub fn from_header(h: &GgufHeader) -> ModelFootprint {
        let n_layer = h.arch_u64("block_count").unwrap_or(0) as usize;
        let mut block_bytes = vec![0u64; n_layer];
        let (mut output, mut embeddings, mut norm) = (None, 0u64, 0u64);
        for t in &h.tensors {
            let bytes = t.n_bytes().unwrap_or(0);
            let block = t
                .name
                .strip_prefix("blk.")
                .and_then(|rest| rest.split('.').next())
                .and_then(|n| n.parse::<usize>().ok());
            match (block, t.name.as_str()) {
                (Some(i), _) if i < n_layer => block_bytes[i] += bytes,
                (_, "output.weight") => output = Some(bytes),
                (_, "token_embd.weight") => embeddings = bytes,
                (_, "output_norm.weight") => norm = bytes,
                _ => {}
            }
        }
        let output_bytes = norm + output.unwrap_or(embeddings);
        let head_dim = h.arch_u64("attention.key_length").unwrap_or(256);
        let kv_heads = h.arch_u64("attention.head_count_kv").unwrap_or(1);
        ModelFootprint {
            block_bytes,
            output_bytes,
            kv_bytes_per_position: 2 * head_dim * kv_heads * 2,
        }
    }

    /// Offloadable layers as llama.cpp counts them: the blocks and the output layer.
    pub fn n_layers(&self) -> u32 {
        self.block_bytes.len() as u32 + 1
    }

    /// Device bytes for `layers` offloaded layers at `kv_positions` positions (all sequences together): the output
    /// layer, then the blocks from the last one down, with their KV cache.
    pub fn bytes_for(&self, layers: u32, kv_positions: u64) -> u64 {
        if layers == 0 {
            return 0;
        }
        let n = self.block_bytes.len();
        let blocks = (layers as usize - 1).min(n);
        let weights: u64 = self.block_bytes[n - blocks..].iter().sum();
        let kv = blocks as u64 * kv_positions * self.kv_bytes_per_position;
        self.output_bytes + weights + kv
    }
}

/// The plan for one device.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub layers: u32,
    pub n_layers: u32,
    /// Bytes the layers (weights and KV) and the margin take on the device.
    pub device_bytes: u64,
    pub free_bytes: u64,
    /// The vision projector goes to the device too.
    pub mmproj_on_device: bool,
    /// Something the user asked for was changed (e.g. more layers than the model has); said on stderr.
    pub notice: Option<String>,
}

/// Why an explicit `--gpu-layers N` cannot be honoured.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "--gpu-layers {asked}: {asked} layers need about {} on {device}, which has {} free; {fit} layers fit (--gpu-layers \
     auto places them), or lower -c/--ctx-size or --parallel to make room",
    gib(*needed),
    gib(*free)
)]
pub struct DoesNotFit {
    pub asked: u32,
    pub device: String,
    pub needed: u64,
    pub free: u64,
    pub fit: u32,
}

pub fn gib(bytes: u64) -> String {
    format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// Plans the offload of `model` to a device with `free` bytes free; `mmproj_bytes` is the projector's weights when
/// it should go to the device too (`--mmproj-offload on`), and it goes only if it fits beside the layers.
pub fn plan(
    asked: GpuLayers,
    model: &ModelFootprint,
    kv_positions: u64,
    mmproj_bytes: Option<u64>,
    device: &str,
    free: u64,
) -> Result<Plan, DoesNotFit> {
    let n_layers = model.n_layers();
    let need = |layers: u32| model.bytes_for(layers, kv_positions) + MARGIN_BYTES;
    let fit = (0..=n_layers).rev().find(|&l| l == 0 || need(l) <= free).unwrap_or(0);
    let (layers, notice) = match asked {
        GpuLayers::Auto => (fit, None),
        GpuLayers::All => (n_layers, None),
        GpuLayers::Count(n) if n > n_layers => (
            n_layers,
            Some(format!(
                "--gpu-layers {n}: the model has {n_layers} layers ({} blocks and the output); all {n_layers} \
                 are offloaded",
                n_layers - 1
            )),
        ),
        GpuLayers::Count(n) => (n, None),
    };
    if asked != GpuLayers::Auto && layers > 0 && need(layers) > free {
        return Err(DoesNotFit {
            asked: layers,
            device: device.to_string(),
            needed: need(layers),
            free,
            fit,
        });
    }
    let layer_bytes = if layers == 0 { 0 } else { need(layers) };
    let mmproj_on_device =
        mmproj_bytes.is_some_and(|m| layer_bytes.max(MARGIN_BYTES) + m + VISION_COMPUTE_BYTES <= free);
    let notice = match (notice, mmproj_bytes.is_some() && !mmproj_on_device) {
        (n, false) => n,
        (n, true) => Some(
            n.map_or(String::new(), |n| n + "; ")
                + "the vision projector does not fit beside the layers on the device: it runs on the CPU",
        ),
    };
    Ok(Plan {
        layers,
        n_layers,
        device_bytes: layer_bytes,
        free_bytes: free,
        mmproj_on_device,
        notice,
    })
}

impl Plan {
    /// `--verbose`'s line: "gpu: 35 of 35 layers on Vulkan0 (2.31 GiB of 15.20 GiB free), vision projector on it".
    pub fn describe(&self, device: &str) -> String {
        format!(
            "{} of {} layers on {device} (about {} of {} free), vision projector on {}",
            self.layers,
            self.n_layers,
            gib(self.device_bytes),
            gib(self.free_bytes),
            if self.mmproj_on_device { "it" } else { "the CPU" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn model() -> ModelFootprint {
        // 4 blocks of 100 MiB, a 300 MiB output layer, 1 KiB of KV per position per layer.
        ModelFootprint {
            block_bytes: vec![100 * MIB; 4],
            output_bytes: 300 * MIB,
            kv_bytes_per_position: 1024,
        }
    }

    #[test]
    fn flag_values() {
        assert_eq!("auto".parse(), Ok(GpuLayers::Auto));
        assert_eq!("all".parse(), Ok(GpuLayers::All));
        assert_eq!("7".parse(), Ok(GpuLayers::Count(7)));
        assert!("-1".parse::<GpuLayers>().is_err());
        assert!("some".parse::<GpuLayers>().is_err());
    }

    #[test]
    fn bytes_count_blocks_kv_and_the_output_layer() {
        let m = model();
        assert_eq!(m.n_layers(), 5);
        assert_eq!(m.bytes_for(0, 1000), 0);
        // The output layer comes first, then blocks from the end.
        assert_eq!(m.bytes_for(1, 1024), 300 * MIB);
        assert_eq!(m.bytes_for(3, 1024), 300 * MIB + 200 * MIB + 2 * MIB);
        assert_eq!(m.bytes_for(5, 0), 700 * MIB);
        assert_eq!(m.bytes_for(99, 0), 700 * MIB);
    }

    #[test]
    fn auto_places_what_fits() {
        let m = model();
        // 512 MiB margin + the output layer + 2 blocks fit in 1050 MiB, not a third block.
        let p = plan(GpuLayers::Auto, &m, 0, None, "Vulkan0", 1050 * MIB).unwrap();
        assert_eq!(p.layers, 3);
        let p = plan(GpuLayers::Auto, &m, 0, None, "Vulkan0", 750 * MIB).unwrap();
        assert_eq!(p.layers, 0, "the output layer does not fit beside the margin");
        let p = plan(GpuLayers::Auto, &m, 0, None, "Vulkan0", 100 * MIB).unwrap();
        assert_eq!(p.layers, 0, "nothing fits beside the margin");
        let p = plan(GpuLayers::Auto, &m, 0, None, "Vulkan0", 64 << 30).unwrap();
        assert_eq!(p.layers, 5);
        assert!(p.notice.is_none());
    }

    #[test]
    fn the_kv_cache_at_the_context_counts() {
        let m = model();
        // 100k positions x 1 KiB = ~98 MiB per block: output + 2 blocks take ~696 MiB + margin.
        let p = plan(GpuLayers::Auto, &m, 100_000, None, "Vulkan0", 1250 * MIB).unwrap();
        assert_eq!(p.layers, 3);
        let p = plan(GpuLayers::Auto, &m, 0, None, "Vulkan0", 1250 * MIB).unwrap();
        assert_eq!(p.layers, 5, "without the KV cache everything fits");
    }

    #[test]
    fn too_many_layers_are_capped_with_a_notice() {
        let p = plan(GpuLayers::Count(40), &model(), 0, None, "Vulkan0", 64 << 30).unwrap();
        assert_eq!(p.layers, 5);
        assert!(p.notice.unwrap().contains("the model has 5 layers"));
    }

    #[test]
    fn an_explicit_count_that_does_not_fit_is_refused_with_what_fits() {
        let e = plan(GpuLayers::Count(4), &model(), 0, None, "Vulkan0", 1050 * MIB).unwrap_err();
        assert_eq!(e.fit, 3);
        let text = e.to_string();
        assert!(
            text.contains("--gpu-layers 4") && text.contains("3 layers fit"),
            "{text}"
        );
        assert!(plan(GpuLayers::All, &model(), 0, None, "Vulkan0", 1050 * MIB).is_err());
    }

    #[test]
    fn the_projector_goes_to_the_device_only_when_it_fits() {
        let m = model();
        let p = plan(GpuLayers::Auto, &m, 0, Some(800 * MIB), "Vulkan0", 64 << 30).unwrap();
        assert!(p.mmproj_on_device && p.notice.is_none());
        let p = plan(GpuLayers::Auto, &m, 0, Some(800 * MIB), "Vulkan0", 1600 * MIB).unwrap();
        assert!(!p.mmproj_on_device);
        assert!(p.notice.unwrap().contains("runs on the CPU"));
    }
}
