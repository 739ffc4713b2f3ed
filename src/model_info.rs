//! What a GGUF file holds, in a person's words: the facts `medgemma info` shows and `medgemma quantize` checks.
//!
//! Owns: turning a parsed [`GgufHeader`] into a [`ModelInfo`] (language model) or [`ProjectorInfo`] (mmproj,
//! architecture `clip`), the tensor-type mix, whether a model and an mmproj fit together, and the aligned text
//! rendering. Pure: it never opens files (the caller reads the header with [`crate::gguf`]) and never calls
//! llama.cpp. Keys that a file lacks come out as `None`, never as an error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::gguf::{ggml_type_name, GgufHeader, GgufValue};

/// How many tensors of one ggml type a file holds, and their bytes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TensorTypeCount {
    #[serde(rename = "type")]
    pub ggml_type: String,
    pub tensors: usize,
    pub bytes: u64,
}

/// A token id and its text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenRef {
    pub id: u64,
    pub text: Option<String>,
}

/// Which layers use the sliding window: a period (every Nth layer is global) or one flag per layer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum SlidingWindowPattern {
    Period(u64),
    Layers(Vec<bool>),
}

/// RoPE scaling of the global layers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RopeScaling {
    #[serde(rename = "type")]
    pub kind: String,
    pub factor: Option<f64>,
}

/// What every GGUF file has: where it is, its size, name, weights and their types.
#[derive(Debug, Clone, Serialize)]
pub struct FileFacts {
    pub path: PathBuf,
    pub file_size: u64,
    pub name: Option<String>,
    pub parameters: u64,
    /// `general.file_type` as llama.cpp names it (e.g. `Q4_K_M`).
    pub file_type: Option<String>,
    pub tensor_types: Vec<TensorTypeCount>,
}

impl FileFacts {
    pub fn from_header(h: &GgufHeader) -> FileFacts {
        FileFacts {
            path: h.path.clone(),
            file_size: h.file_len,
            name: h.get_str("general.name").map(str::to_string),
            parameters: parameter_count(h),
            file_type: h.get_u64("general.file_type").map(file_type_name),
            tensor_types: tensor_types(h),
        }
    }

    fn add_lines(&self, l: &mut Lines) {
        l.add("file", self.path.display().to_string());
        l.add("file size", human_bytes(self.file_size));
        l.opt("name", self.name.as_deref());
        l.add(
            "parameters",
            format!("{} ({})", human_count(self.parameters), self.parameters),
        );
        l.opt("file type", self.file_type.as_deref());
        for t in &self.tensor_types {
            l.add(
                &format!("tensors {}", t.ggml_type),
                format!("{} ({})", t.tensors, human_bytes(t.bytes)),
            );
        }
    }
}

/// A language model (any architecture other than `clip`).
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub architecture: Option<String>,
    #[serde(flatten)]
    pub file: FileFacts,
    pub context_length: Option<u64>,
    pub layers: Option<u64>,
    pub hidden_size: Option<u64>,
    pub ffn_size: Option<u64>,
    pub heads: Option<u64>,
    pub kv_heads: Option<u64>,
    pub head_dim: Option<u64>,
    pub sliding_window: Option<u64>,
    pub sliding_window_pattern: Option<SlidingWindowPattern>,
    pub rope_base: Option<f64>,
    pub rope_base_local: Option<f64>,
    pub rope_scaling: Option<RopeScaling>,
    pub tokenizer: Option<String>,
    pub vocab_size: Option<u64>,
    pub bos: Option<TokenRef>,
    pub eos: Option<TokenRef>,
    pub eot: Option<TokenRef>,
    pub chat_template: bool,
}

/// A vision projector (mmproj, architecture `clip`).
#[derive(Debug, Clone, Serialize)]
pub struct ProjectorInfo {
    #[serde(flatten)]
    pub file: FileFacts,
    pub projector_type: Option<String>,
    pub image_size: Option<u64>,
    pub patch_size: Option<u64>,
    pub tokens_per_image: Option<u64>,
    pub vision_layers: Option<u64>,
    pub vision_hidden_size: Option<u64>,
    /// The width image embeddings are projected to; must equal the language model's hidden size.
    pub projection_dim: Option<u64>,
}

/// What one GGUF file is.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
#[allow(
    clippy::large_enum_variant,
    reason = "one or two per process; boxing would only add noise"
)]
pub enum GgufInfo {
    Model(ModelInfo),
    Mmproj(ProjectorInfo),
}

/// A model and an mmproj that do not belong together.
#[derive(Debug, thiserror::Error)]
#[error(
    "the mmproj {} projects images to width {} but the model {} has hidden size {}: they do not belong together; \
     use the mmproj published with this model",
    mmproj.display(),
    fmt_opt(*projection_dim),
    model.display(),
    fmt_opt(*hidden_size)
)]
pub struct MismatchError {
    pub mmproj: PathBuf,
    pub projection_dim: Option<u64>,
    pub model: PathBuf,
    pub hidden_size: Option<u64>,
}

fn fmt_opt(v: Option<u64>) -> String {
    v.map_or_else(|| "(unknown)".to_string(), |v| v.to_string())
}

impl GgufInfo {
    pub fn from_header(h: &GgufHeader) -> GgufInfo {
        if h.is_mmproj() {
            GgufInfo::Mmproj(ProjectorInfo::from_header(h))
        } else {
            GgufInfo::Model(ModelInfo::from_header(h))
        }
    }
}

impl ModelInfo {
    pub fn from_header(h: &GgufHeader) -> ModelInfo {
        let arch = |key: &str| h.arch_u64(key);
        let arch_f64 = |key: &str| {
            let a = h.architecture()?;
            h.get(&format!("{a}.{key}")).and_then(GgufValue::as_f64)
        };
        let arch_value = |key: &str| {
            let a = h.architecture()?;
            h.get(&format!("{a}.{key}"))
        };
        let tokens = match h.get("tokenizer.ggml.tokens") {
            Some(GgufValue::Array(items)) => Some(items),
            _ => None,
        };
        let token = |key: &str| {
            let id = h.get_u64(key)?;
            let text = tokens
                .and_then(|t| t.get(usize::try_from(id).ok()?))
                .and_then(GgufValue::as_str);
            let text = text.map(str::to_string);
            Some(TokenRef { id, text })
        };
        let hidden_size = arch("embedding_length");
        let heads = arch("attention.head_count");
        let sliding_window_pattern = match arch_value("attention.sliding_window_pattern") {
            Some(GgufValue::Array(items)) => Some(SlidingWindowPattern::Layers(
                items.iter().map(|v| v.as_bool().unwrap_or(false)).collect(),
            )),
            Some(v) => v.as_u64().map(SlidingWindowPattern::Period),
            None => None,
        };
        let rope_scaling = h
            .get_str(&format!("{}.rope.scaling.type", h.architecture().unwrap_or_default()))
            .filter(|t| *t != "none")
            .map(|kind| RopeScaling {
                kind: kind.to_string(),
                factor: arch_f64("rope.scaling.factor"),
            });
        ModelInfo {
            architecture: h.architecture().map(str::to_string),
            file: FileFacts::from_header(h),
            context_length: arch("context_length"),
            layers: arch("block_count"),
            hidden_size,
            ffn_size: arch("feed_forward_length"),
            heads,
            kv_heads: arch("attention.head_count_kv"),
            head_dim: arch("attention.key_length").or_else(|| Some(hidden_size? / heads.filter(|&n| n > 0)?)),
            sliding_window: arch("attention.sliding_window"),
            sliding_window_pattern,
            rope_base: arch_f64("rope.freq_base"),
            rope_base_local: arch_f64("rope.freq_base_swa"),
            rope_scaling,
            tokenizer: h.get_str("tokenizer.ggml.model").map(str::to_string),
            vocab_size: arch("vocab_size").or_else(|| tokens.map(|t| t.len() as u64)),
            bos: token("tokenizer.ggml.bos_token_id"),
            eos: token("tokenizer.ggml.eos_token_id"),
            eot: token("tokenizer.ggml.eot_token_id"),
            chat_template: h.get_str("tokenizer.chat_template").is_some_and(|t| !t.is_empty()),
        }
    }
}

impl ProjectorInfo {
    pub fn from_header(h: &GgufHeader) -> ProjectorInfo {
        let image_size = h.get_u64("clip.vision.image_size");
        let patch_size = h.get_u64("clip.vision.patch_size");
        let scale = h.get_u64("clip.vision.projector.scale_factor").unwrap_or(1);
        let tokens_per_image = match (image_size, patch_size) {
            (Some(i), Some(p)) if p > 0 && scale > 0 => (i / p / scale).checked_pow(2),
            _ => None,
        };
        ProjectorInfo {
            file: FileFacts::from_header(h),
            projector_type: h.get_str("clip.projector_type").map(str::to_string),
            image_size,
            patch_size,
            tokens_per_image,
            vision_layers: h.get_u64("clip.vision.block_count"),
            vision_hidden_size: h.get_u64("clip.vision.embedding_length"),
            projection_dim: h.get_u64("clip.vision.projection_dim"),
        }
    }
}

/// Checks that the mmproj's projection width equals the model's hidden size.
pub fn check_fit(model: &ModelInfo, mmproj: &ProjectorInfo) -> Result<(), MismatchError> {
    fit_rule(
        &model.file.path,
        model.hidden_size,
        &mmproj.file.path,
        mmproj.projection_dim,
    )
}

/// The same check on two headers (the engine before loading, eval-quant before encoding).
pub fn check_headers_fit(model: &GgufHeader, mmproj: &GgufHeader) -> Result<(), MismatchError> {
    fit_rule(
        &model.path,
        model.arch_u64("embedding_length"),
        &mmproj.path,
        mmproj.get_u64("clip.vision.projection_dim"),
    )
}

/// The one rule: a vision projector belongs to a model when its projection width is known and equals the
/// model's hidden size.
fn fit_rule(
    model: &Path,
    hidden_size: Option<u64>,
    mmproj: &Path,
    projection_dim: Option<u64>,
) -> Result<(), MismatchError> {
    if hidden_size.is_some() && hidden_size == projection_dim {
        return Ok(());
    }
    Err(MismatchError {
        mmproj: mmproj.to_path_buf(),
        projection_dim,
        model: model.to_path_buf(),
        hidden_size,
    })
}

/// The number of weights: the sum of every tensor's elements ([`GgufHeader::read`] refuses a table whose sum
/// overflows u64; saturating here keeps a hand-built table from wrapping).
pub fn parameter_count(h: &GgufHeader) -> u64 {
    h.tensors.iter().fold(0u64, |sum, t| sum.saturating_add(t.n_elements()))
}

/// Tensors and bytes per ggml type, the most bytes first.
pub fn tensor_types(h: &GgufHeader) -> Vec<TensorTypeCount> {
    let mut by_type: BTreeMap<u32, (usize, u64)> = BTreeMap::new();
    for t in &h.tensors {
        let e = by_type.entry(t.ggml_type).or_default();
        e.0 += 1;
        e.1 += t.n_bytes().unwrap_or(0);
    }
    let mut out: Vec<_> = by_type
        .into_iter()
        .map(|(ty, (tensors, bytes))| TensorTypeCount {
            ggml_type: ggml_type_name(ty),
            tensors,
            bytes,
        })
        .collect();
    out.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.ggml_type.cmp(&b.ggml_type)));
    out
}

/// True when a 2-D (or larger) weight is stored in a type other than F32, F16 or BF16: quantising it again loses
/// quality, so `quantize` asks for --allow-requantize.
pub fn is_quantized(h: &GgufHeader) -> bool {
    const FLOAT_TYPES: [u32; 3] = [0, 1, 30]; // F32, F16, BF16
    h.tensors
        .iter()
        .any(|t| t.dims.len() >= 2 && !FLOAT_TYPES.contains(&t.ggml_type))
}

/// llama.cpp's name for a `general.file_type` value (its `llama_ftype` enum).
pub fn file_type_name(ftype: u64) -> String {
    let name = match ftype {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        32 => "BF16",
        other => return format!("file type {other}"),
    };
    name.to_string()
}

/// A count in K / M / B, e.g. `3.88 B`.
pub fn human_count(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{:.2} K", n as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.2} M", n as f64 / 1e6),
        _ => format!("{:.2} B", n as f64 / 1e9),
    }
}

/// A size in bytes, e.g. `2.49 GB` (decimal units, as file managers show them).
pub fn human_bytes(n: u64) -> String {
    match n {
        0..1_000 => format!("{n} bytes"),
        1_000..1_000_000 => format!("{:.1} KB", n as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB", n as f64 / 1e6),
        _ => format!("{:.2} GB", n as f64 / 1e9),
    }
}

/// The tensor mix on one line, e.g. `Q8_0 56 (1.2 MB), F32 50 (0.1 MB)`.
pub fn mix_line(types: &[TensorTypeCount]) -> String {
    let parts: Vec<String> = types
        .iter()
        .map(|t| format!("{} {} ({})", t.ggml_type, t.tensors, human_bytes(t.bytes)))
        .collect();
    parts.join(", ")
}

/// Aligned `key: value` lines.
pub struct Lines(Vec<(String, String)>);

impl Lines {
    fn new() -> Self {
        Lines(Vec::new())
    }
    fn add(&mut self, key: &str, value: impl Into<String>) {
        self.0.push((key.to_string(), value.into()));
    }
    fn opt<T: ToString>(&mut self, key: &str, value: Option<T>) {
        if let Some(v) = value {
            self.add(key, v.to_string());
        }
    }
    pub fn render(&self) -> String {
        let width = self.0.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
        self.0
            .iter()
            .map(|(k, v)| format!("{:<width$} {v}\n", format!("{k}:")))
            .collect()
    }
}

fn token_text(t: &TokenRef) -> String {
    match &t.text {
        Some(text) => format!("{} {text:?}", t.id),
        None => t.id.to_string(),
    }
}

fn pattern_text(p: &SlidingWindowPattern) -> String {
    match p {
        SlidingWindowPattern::Period(n) => {
            format!("every {n}th layer global ({} local : 1 global)", n.saturating_sub(1))
        }
        SlidingWindowPattern::Layers(layers) => {
            let local = layers.iter().filter(|&&b| b).count();
            let map: String = layers.iter().map(|&b| if b { 'L' } else { 'G' }).collect();
            format!("{map} ({local} local, {} global)", layers.len() - local)
        }
    }
}

impl ModelInfo {
    pub fn lines(&self) -> Lines {
        let mut l = Lines::new();
        l.opt("architecture", self.architecture.as_deref());
        self.file.add_lines(&mut l);
        l.opt("context length", self.context_length);
        l.opt("layers", self.layers);
        l.opt("hidden size", self.hidden_size);
        l.opt("ffn size", self.ffn_size);
        l.opt("heads", self.heads);
        l.opt("kv heads", self.kv_heads);
        l.opt("head dim", self.head_dim);
        l.opt("sliding window", self.sliding_window);
        l.opt(
            "sliding window pattern",
            self.sliding_window_pattern.as_ref().map(pattern_text),
        );
        l.opt("rope base", self.rope_base);
        l.opt("rope base (local)", self.rope_base_local);
        l.opt(
            "rope scaling",
            self.rope_scaling.as_ref().map(|s| match s.factor {
                Some(f) => format!("{} x{f}", s.kind),
                None => s.kind.clone(),
            }),
        );
        l.opt("tokenizer", self.tokenizer.as_deref());
        l.opt("vocab size", self.vocab_size);
        l.opt("bos", self.bos.as_ref().map(token_text));
        l.opt("eos", self.eos.as_ref().map(token_text));
        l.opt("eot", self.eot.as_ref().map(token_text));
        l.add("chat template", if self.chat_template { "yes" } else { "no" });
        l
    }
}

impl ProjectorInfo {
    pub fn lines(&self) -> Lines {
        let mut l = Lines::new();
        l.add("architecture", "clip (vision projector)");
        self.file.add_lines(&mut l);
        l.opt("projector type", self.projector_type.as_deref());
        l.opt("image size", self.image_size);
        l.opt("patch size", self.patch_size);
        l.opt("tokens per image", self.tokens_per_image);
        l.opt("vision layers", self.vision_layers);
        l.opt("vision hidden size", self.vision_hidden_size);
        l.opt("projection width", self.projection_dim);
        l
    }
}

impl GgufInfo {
    pub fn lines(&self) -> Lines {
        match self {
            GgufInfo::Model(m) => m.lines(),
            GgufInfo::Mmproj(p) => p.lines(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::GgufTensorInfo;

    fn header(arch: &str, meta: Vec<(&str, GgufValue)>, tensors: Vec<(&str, Vec<u64>, u32)>) -> GgufHeader {
        let mut metadata: BTreeMap<String, GgufValue> = meta.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        metadata.insert("general.architecture".into(), GgufValue::String(arch.into()));
        GgufHeader {
            path: PathBuf::from(format!("{arch}.gguf")),
            metadata,
            tensors: tensors
                .into_iter()
                .map(|(n, dims, ggml_type)| GgufTensorInfo {
                    name: n.into(),
                    dims,
                    ggml_type,
                    offset: 0,
                })
                .collect(),
            data_offset: 0,
            file_len: 1234,
            kv_spans: Vec::new(),
        }
    }

    fn gemma() -> GgufHeader {
        header(
            "gemma3",
            vec![
                ("gemma3.embedding_length", GgufValue::U32(64)),
                ("gemma3.attention.head_count", GgufValue::U32(4)),
                (
                    "gemma3.attention.sliding_window_pattern",
                    GgufValue::Array(vec![GgufValue::Bool(true), GgufValue::Bool(false)]),
                ),
                ("gemma3.rope.scaling.type", GgufValue::String("linear".into())),
                ("gemma3.rope.scaling.factor", GgufValue::F32(8.0)),
                (
                    "tokenizer.ggml.tokens",
                    GgufValue::Array(vec![
                        GgufValue::String("<pad>".into()),
                        GgufValue::String("<eos>".into()),
                    ]),
                ),
                ("tokenizer.ggml.eos_token_id", GgufValue::U32(1)),
                ("tokenizer.ggml.bos_token_id", GgufValue::U32(7)),
                ("general.file_type", GgufValue::U32(7)),
            ],
            vec![
                ("token_embd.weight", vec![64, 2], 8),
                ("output_norm.weight", vec![64], 0),
                ("blk.0.attn_q.weight", vec![64, 64], 8),
            ],
        )
    }

    #[test]
    fn model_facts_come_from_the_header() {
        let m = ModelInfo::from_header(&gemma());
        assert_eq!(m.file.parameters, 64 * 2 + 64 + 64 * 64);
        assert_eq!(m.head_dim, Some(16), "hidden / heads when key_length is absent");
        assert_eq!(m.vocab_size, Some(2));
        assert_eq!(
            m.eos,
            Some(TokenRef {
                id: 1,
                text: Some("<eos>".into())
            })
        );
        assert_eq!(
            m.bos,
            Some(TokenRef { id: 7, text: None }),
            "an id past the vocabulary has no text, no panic"
        );
        assert_eq!(m.file.file_type.as_deref(), Some("Q8_0"));
        assert_eq!(
            m.rope_scaling,
            Some(RopeScaling {
                kind: "linear".into(),
                factor: Some(8.0)
            })
        );
        assert_eq!(
            m.sliding_window_pattern,
            Some(SlidingWindowPattern::Layers(vec![true, false]))
        );
        assert!(!m.chat_template);
        let q8 = &m.file.tensor_types[0];
        assert_eq!(
            (q8.ggml_type.as_str(), q8.tensors, q8.bytes),
            ("Q8_0", 2, (64 * 2 + 64 * 64) / 32 * 34)
        );
        let text = m.lines().render();
        assert!(
            text.contains("sliding window pattern: LG (1 local, 1 global)"),
            "{text}"
        );
        assert!(text.contains("eos:                    1 \"<eos>\""), "{text}");
    }

    #[test]
    fn empty_header_gives_nones_not_errors() {
        let m = ModelInfo::from_header(&header("llama", vec![], vec![]));
        assert_eq!(
            (m.file.parameters, m.hidden_size, m.head_dim, m.vocab_size),
            (0, None, None, None)
        );
        let text = m.lines().render();
        assert!(
            text.lines()
                .any(|l| l.starts_with("architecture:") && l.ends_with(" llama")),
            "{text}"
        );
        assert!(!text.contains("hidden size"), "absent keys are left out: {text}");
        let p = ProjectorInfo::from_header(&header("clip", vec![], vec![]));
        assert_eq!(p.tokens_per_image, None);
    }

    #[test]
    fn tokens_per_image_and_fit() {
        let h = header(
            "clip",
            vec![
                ("clip.vision.image_size", GgufValue::U32(896)),
                ("clip.vision.patch_size", GgufValue::U32(14)),
                ("clip.vision.projector.scale_factor", GgufValue::U32(4)),
                ("clip.vision.projection_dim", GgufValue::U32(2560)),
            ],
            vec![],
        );
        let GgufInfo::Mmproj(p) = GgufInfo::from_header(&h) else {
            panic!("clip is an mmproj")
        };
        assert_eq!(p.tokens_per_image, Some(256), "MedGemma 4B: (896/14/4)^2");
        let mut m = ModelInfo::from_header(&gemma());
        assert!(check_fit(&m, &p)
            .unwrap_err()
            .to_string()
            .contains("do not belong together"));
        m.hidden_size = Some(2560);
        check_fit(&m, &p).unwrap();
    }

    #[test]
    fn requantize_check_looks_at_matrices_only() {
        assert!(is_quantized(&gemma()));
        let f32_model = header(
            "gemma3",
            vec![],
            vec![("w", vec![4, 4], 0), ("n", vec![4], 8), ("h", vec![4, 4], 30)],
        );
        assert!(!is_quantized(&f32_model));
    }

    #[test]
    fn human_units() {
        assert_eq!(human_count(3_880_000_000), "3.88 B");
        assert_eq!(human_count(999), "999");
        assert_eq!(human_bytes(2_490_000_000), "2.49 GB");
        assert_eq!(human_bytes(12), "12 bytes");
    }
}
