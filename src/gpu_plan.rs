//! How many of a model's layers go to the GPU: `--gpu-layers auto|all|N` and the fit behind `auto`.
//!
//! Owns: the flag's values, the memory estimate in llama.cpp's order of offloading (N layers = the output layer
//! and the last N-1 blocks; the output layer is `output.weight`, or a copy of the token embeddings when they are
//! tied, as in Gemma 3; the input embeddings stay on the CPU), and the plan's one-line description. The estimate
//! counts what llama.cpp allocates on the device: each block's weights (the GGUF tensor table), its KV cache as
//! llama.cpp sizes it (every position of every sequence in a global layer; in a sliding-window layer the window
//! plus one micro-batch, unless the whole cache is kept for prefix reuse), the logits of one micro-batch when the
//! output layer is there (llama.cpp reserves its compute buffer for a full micro-batch of outputs), a margin for
//! the rest of the compute buffers and the driver, and, with `--mmproj-offload on`, the vision projector and its
//! buffers. `auto` places as many layers as fit in the device's free memory (as ollama does); an explicit count
//! larger than the model is capped with a notice, one that does not fit is refused with the count that would.
//! Pure: the engine lists the devices and applies the plan.

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

/// Room kept free on the device for llama.cpp's compute buffers beyond the logits, and the driver's own pools.
/// Measured on an H200 (synthetic 27B-text Q8_0, 21 layers, -c 4096): compute buffer 554 MiB of which 512 MiB
/// are one micro-batch of logits (counted apart), and 601 MiB of device memory beyond llama.cpp's buffers, the
/// process's CUDA context included (not part of the free memory the fit starts from).
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
    /// K and V elements per position per layer.
    pub kv_elements_per_position: u64,
    /// The sliding window of Gemma 3's local layers (five of every six: llama.cpp's pattern for gemma3), if any.
    pub sliding_window: Option<u64>,
    /// Vocabulary size: the width of a row of logits.
    pub n_vocab: u64,
}

/// The KV cache of the context the model will run with, as llama.cpp will size it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvCache {
    /// Positions per sequence (`-c`).
    pub positions: u64,
    /// Sequences (`--parallel`), each with its own stream of `positions` cells.
    pub sequences: u64,
    /// Sliding-window layers keep every position (prefix reuse: chat, batch, serve), not only the window.
    pub swa_full: bool,
    /// Tokens per micro-batch.
    pub ubatch: u64,
    /// Bytes per 32 elements of K or V: 64 (f16), 128 (f32), 34 (q8_0).
    pub bytes_per_32: u64,
}

impl KvCache {
    /// Cells of one layer: llama.cpp pads the context and each sequence's share to 256, and gives a
    /// sliding-window layer the window plus one micro-batch (padded to 256) unless `swa_full`.
    pub fn cells(&self, sliding_window: Option<u64>) -> u64 {
        let pad = |n: u64| n.div_ceil(256) * 256;
        let sequences = self.sequences.max(1);
        let per_sequence = pad(pad(self.positions * sequences) / sequences);
        let per_sequence = match sliding_window {
            Some(window) if !self.swa_full => pad(per_sequence.min(window + self.ubatch)),
            _ => per_sequence,
        };
        per_sequence * sequences
    }
}

impl ModelFootprint {
    pub fn from_header(h: &GgufHeader) -> ModelFootprint {
        let n_layer = h.arch_u64("block_count").unwrap_or(0) as usize;
        let mut block_bytes = vec![0u64; n_layer];
        let (mut output, mut embeddings, mut norm, mut n_vocab) = (None, 0u64, 0u64, 0u64);
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
                (_, "token_embd.weight") => {
                    embeddings = bytes;
                    n_vocab = t.dims.get(1).copied().unwrap_or(0);
                }
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
            kv_elements_per_position: 2 * head_dim * kv_heads,
            sliding_window: h.arch_u64("attention.sliding_window").filter(|&w| w > 0),
            n_vocab,
        }
    }

    /// Offloadable layers as llama.cpp counts them: the blocks and the output layer.
    pub fn n_layers(&self) -> u32 {
        self.block_bytes.len() as u32 + 1
    }

    /// The sliding window of block `i` (Gemma 3: every sixth block is global), or None for a global block.
    fn window_of(&self, i: usize) -> Option<u64> {
        self.sliding_window.filter(|_| i % 6 < 5)
    }

    /// Device bytes for `layers` offloaded layers with the KV cache `kv`: the output layer (and one micro-batch of
    /// logits), then the blocks from the last one down, each with its KV cache.
    pub fn bytes_for(&self, layers: u32, kv: &KvCache) -> u64 {
        let p = self.parts(layers, kv);
        p.weights + p.kv + p.logits
    }

    /// [`Self::bytes_for`], part by part.
    pub fn parts(&self, layers: u32, kv: &KvCache) -> DeviceBytes {
        if layers == 0 {
            return DeviceBytes::default();
        }
        let n = self.block_bytes.len();
        let blocks = (layers as usize - 1).min(n);
        let weights: u64 = self.block_bytes[n - blocks..].iter().sum();
        let kv_bytes: u64 = (n - blocks..n)
            .map(|i| kv.cells(self.window_of(i)) * self.kv_elements_per_position * kv.bytes_per_32 / 32)
            .sum();
        DeviceBytes {
            weights: self.output_bytes + weights,
            kv: kv_bytes,
            logits: kv.ubatch * self.n_vocab * 4,
        }
    }
}

/// What offloaded layers take on the device, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeviceBytes {
    pub weights: u64,
    pub kv: u64,
    /// One micro-batch of logits (llama.cpp's compute buffer holds them when the output layer is there).
    pub logits: u64,
}

/// A size as people read it: "928 KiB", "300 MiB", "9.57 GiB".
pub fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => gib(b),
        b if b >= 1 << 20 => format!("{:.0} MiB", b as f64 / (1u64 << 20) as f64),
        b => format!("{:.0} KiB", b as f64 / 1024.0),
    }
}

/// The plan for one device.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub layers: u32,
    pub n_layers: u32,
    /// The layers' weights, KV cache and logits on the device (without the margin).
    pub parts: DeviceBytes,
    /// Bytes the layers (weights, KV cache, logits) and the margin take on the device.
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
    kv: &KvCache,
    mmproj_bytes: Option<u64>,
    device: &str,
    free: u64,
) -> Result<Plan, DoesNotFit> {
    let n_layers = model.n_layers();
    let need = |layers: u32| model.bytes_for(layers, kv) + MARGIN_BYTES;
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
        parts: model.parts(layers, kv),
        device_bytes: layer_bytes,
        free_bytes: free,
        mmproj_on_device,
        notice,
    })
}

impl Plan {
    /// `--verbose`'s line: "gpu: 35 of 35 layers on Vulkan0 (about 3.25 GiB of 15.20 GiB free: weights 2.31 GiB,
    /// KV cache 300 MiB, logits 512 MiB), vision projector on it".
    pub fn describe(&self, device: &str) -> String {
        format!(
            "{} of {} layers on {device} (about {} of {} free: weights {}, KV cache {}, logits {}), vision \
             projector on {}",
            self.layers,
            self.n_layers,
            gib(self.device_bytes),
            gib(self.free_bytes),
            human(self.parts.weights),
            human(self.parts.kv),
            human(self.parts.logits),
            if self.mmproj_on_device { "it" } else { "the CPU" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn model() -> ModelFootprint {
        // 4 blocks of 100 MiB, a 300 MiB output layer, 512 K and V elements per position per layer (1 KiB at
        // f16), no sliding window, a vocabulary whose micro-batch of logits is 1 MiB (512 x 512 x 4 bytes).
        ModelFootprint {
            block_bytes: vec![100 * MIB; 4],
            output_bytes: 300 * MIB,
            kv_elements_per_position: 512,
            sliding_window: None,
            n_vocab: 512,
        }
    }

    fn kv(positions: u64) -> KvCache {
        KvCache {
            positions,
            sequences: 1,
            swa_full: false,
            ubatch: 512,
            bytes_per_32: 64,
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
    fn bytes_count_blocks_kv_logits_and_the_output_layer() {
        let m = model();
        assert_eq!(m.n_layers(), 5);
        assert_eq!(m.bytes_for(0, &kv(1024)), 0);
        // The output layer (and its logits) comes first, then blocks from the end.
        assert_eq!(m.bytes_for(1, &kv(1024)), 300 * MIB + MIB);
        assert_eq!(m.bytes_for(3, &kv(1024)), 300 * MIB + MIB + 200 * MIB + 2 * MIB);
        assert_eq!(m.bytes_for(5, &kv(0)), 700 * MIB + MIB);
        assert_eq!(m.bytes_for(99, &kv(0)), 700 * MIB + MIB);
    }

    #[test]
    fn kv_cells_as_llama_cpp_sizes_them() {
        let c = kv(4096);
        assert_eq!(c.cells(None), 4096);
        assert_eq!(c.cells(Some(1024)), 1536, "the window plus one micro-batch");
        assert_eq!(KvCache { swa_full: true, ..c }.cells(Some(1024)), 4096);
        assert_eq!(kv(1000).cells(None), 1024, "padded to 256");
        assert_eq!(kv(1000).cells(Some(1024)), 1024, "never more than the context");
        let four = KvCache {
            sequences: 4,
            ..kv(1000)
        };
        assert_eq!(four.cells(None), 4 * 1024);
        assert_eq!(four.cells(Some(1024)), 4 * 1024);
    }

    /// The H200 measurement behind the estimate (README, "On a GPU"): synthetic medgemma-27b-text Q8_0, 21 of 63
    /// layers, -c 4096, run's context (sliding-window layers keep the window): llama.cpp allocated 96 + 204 MiB
    /// of KV cache on CUDA0 (3 global and 17 sliding-window blocks of the last 20) and 512 MiB of its 554 MiB
    /// compute buffer are one micro-batch of logits.
    #[test]
    fn the_27b_kv_cache_and_logits_as_measured() {
        let m = ModelFootprint {
            block_bytes: vec![0; 62],
            output_bytes: 0,
            kv_elements_per_position: 2 * 128 * 16,
            sliding_window: Some(1024),
            n_vocab: 262_208,
        };
        let logits = 512 * 262_208 * 4;
        assert_eq!(m.bytes_for(21, &kv(4096)) - logits, 300 * MIB);
        let long = kv(32768);
        assert_eq!(m.bytes_for(21, &long) - logits, (768 + 204) * MIB);
    }

    #[test]
    fn auto_places_what_fits() {
        let m = model();
        // 512 MiB margin + the output layer and its logits + 2 blocks fit in 1050 MiB, not a third block.
        let p = plan(GpuLayers::Auto, &m, &kv(0), None, "Vulkan0", 1050 * MIB).unwrap();
        assert_eq!(p.layers, 3);
        let p = plan(GpuLayers::Auto, &m, &kv(0), None, "Vulkan0", 750 * MIB).unwrap();
        assert_eq!(p.layers, 0, "the output layer does not fit beside the margin");
        let p = plan(GpuLayers::Auto, &m, &kv(0), None, "Vulkan0", 100 * MIB).unwrap();
        assert_eq!(p.layers, 0, "nothing fits beside the margin");
        let p = plan(GpuLayers::Auto, &m, &kv(0), None, "Vulkan0", 64 << 30).unwrap();
        assert_eq!(p.layers, 5);
        assert!(p.notice.is_none());
    }

    #[test]
    fn the_kv_cache_at_the_context_counts() {
        let m = model();
        // 100k positions (100,096 cells) x 1 KiB = ~98 MiB per block: output + 2 blocks take ~697 MiB + margin.
        let p = plan(GpuLayers::Auto, &m, &kv(100_000), None, "Vulkan0", 1250 * MIB).unwrap();
        assert_eq!(p.layers, 3);
        let p = plan(GpuLayers::Auto, &m, &kv(0), None, "Vulkan0", 1250 * MIB).unwrap();
        assert_eq!(p.layers, 5, "without the KV cache everything fits");
        // Four sequences of 25k positions are the same 100k cells.
        let four = KvCache {
            sequences: 4,
            ..kv(25_000)
        };
        let p = plan(GpuLayers::Auto, &m, &four, None, "Vulkan0", 1250 * MIB).unwrap();
        assert_eq!(p.layers, 3);
    }

    #[test]
    fn too_many_layers_are_capped_with_a_notice() {
        let p = plan(GpuLayers::Count(40), &model(), &kv(0), None, "Vulkan0", 64 << 30).unwrap();
        assert_eq!(p.layers, 5);
        assert!(p.notice.unwrap().contains("the model has 5 layers"));
    }

    #[test]
    fn an_explicit_count_that_does_not_fit_is_refused_with_what_fits() {
        let e = plan(GpuLayers::Count(4), &model(), &kv(0), None, "Vulkan0", 1050 * MIB).unwrap_err();
        assert_eq!(e.fit, 3);
        let text = e.to_string();
        assert!(
            text.contains("--gpu-layers 4") && text.contains("3 layers fit"),
            "{text}"
        );
        assert!(plan(GpuLayers::All, &model(), &kv(0), None, "Vulkan0", 1050 * MIB).is_err());
    }

    #[test]
    fn the_projector_goes_to_the_device_only_when_it_fits() {
        let m = model();
        let p = plan(GpuLayers::Auto, &m, &kv(0), Some(800 * MIB), "Vulkan0", 64 << 30).unwrap();
        assert!(p.mmproj_on_device && p.notice.is_none());
        let p = plan(GpuLayers::Auto, &m, &kv(0), Some(800 * MIB), "Vulkan0", 1600 * MIB).unwrap();
        assert!(!p.mmproj_on_device);
        assert!(p.notice.unwrap().contains("runs on the CPU"));
    }

    #[test]
    fn the_plan_line_names_each_part() {
        let p = plan(GpuLayers::Auto, &model(), &kv(1024), None, "CUDA0", 64 << 30).unwrap();
        assert_eq!(
            p.describe("CUDA0"),
            "5 of 5 layers on CUDA0 (about 1.19 GiB of 64.00 GiB free: weights 700 MiB, KV cache 4 MiB, logits 1 MiB), \
             vision projector on the CPU"
        );
        assert_eq!(human(928 << 10), "928 KiB");
        assert_eq!(human(9797 << 20), "9.57 GiB");
    }
}
