//! Settings that shape a generation and the context it runs in, resolved from flags before a command runs.
//!
//! Owns: the sampling and context knobs, their defaults (greedy decoding, as in Google's MedGemma examples) and
//! their bounds: threads capped at the CPUs available (the one note this module prints, on stderr), the batch size
//! range, the refusal of a context longer than the model's trained length and of a quantised V cache without flash
//! attention. Otherwise pure data: the engine
//! turns it into llama.cpp samplers and context parameters.

use serde::Serialize;

/// How the next token is chosen.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SamplingSettings {
    /// 0 means greedy (always the most likely token).
    pub temperature: f32,
    pub top_k: i32,
    pub top_p: f32,
    pub min_p: f32,
    /// 1.0 disables the repetition penalty.
    pub repeat_penalty: f32,
    /// How many recent tokens the repetition penalty looks at.
    pub repeat_last_n: i32,
    pub seed: u32,
    /// The most tokens to generate.
    pub max_tokens: usize,
    /// A GBNF grammar every answer must follow (`--format json`, `--json-schema`, `--grammar`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grammar: Option<Grammar>,
}

/// A GBNF grammar (root rule `root`), shared by every answer that uses it. Results files record its SHA-256, not
/// its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grammar(std::sync::Arc<str>);

impl Grammar {
    pub fn new(gbnf: &str) -> Grammar {
        Grammar(gbnf.into())
    }

    pub fn text(&self) -> &str {
        &self.0
    }

    pub fn sha256(&self) -> String {
        use sha2::Digest;
        sha2::Sha256::digest(self.0.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

impl Serialize for Grammar {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("sha256:{}", self.sha256()))
    }
}

impl Default for SamplingSettings {
    fn default() -> Self {
        SamplingSettings {
            temperature: 0.0,
            top_k: 64,
            top_p: 0.95,
            min_p: 0.0,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 0,
            max_tokens: 512,
            grammar: None,
        }
    }
}

impl SamplingSettings {
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }
}

/// The values a sampling knob accepts; the same bounds hold for a flag of `run`/`chat`/`batch` and for a field of
/// a batch job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowed {
    /// `--temp`, a job's `temperature`.
    ZeroOrMore,
    /// `--repeat-penalty`.
    MoreThanZero,
    /// `--top-p`, `--min-p`.
    ZeroToOne,
    /// `--max-tokens`, a job's `max_tokens`.
    OneOrMore,
}

impl std::fmt::Display for Allowed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Allowed::ZeroOrMore => "a number of 0 or more",
            Allowed::MoreThanZero => "a number more than 0",
            Allowed::ZeroToOne => "a number between 0 and 1",
            Allowed::OneOrMore => "a whole number of 1 or more",
        })
    }
}

/// Why a sampling value is refused. A flag's error is printed by clap after the flag and the value; a batch job's
/// after the field and the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("must be {allowed}")]
pub struct ValueError {
    pub allowed: Allowed,
}

/// Checks a real-valued knob: a finite number (also as an f32) within `allowed`.
pub fn checked_f32(value: f64, allowed: Allowed) -> Result<f32, ValueError> {
    let v = value as f32;
    let within = match allowed {
        Allowed::ZeroOrMore => v >= 0.0,
        Allowed::MoreThanZero => v > 0.0,
        Allowed::ZeroToOne => (0.0..=1.0).contains(&v),
        Allowed::OneOrMore => v >= 1.0 && v.fract() == 0.0,
    };
    if v.is_finite() && within {
        Ok(v)
    } else {
        Err(ValueError { allowed })
    }
}

/// The temperature: 0 (greedy) or more.
pub fn temperature(value: f64) -> Result<f32, ValueError> {
    checked_f32(value, Allowed::ZeroOrMore)
}

/// The most tokens to generate: 1 or more.
pub fn max_tokens(value: u64) -> Result<usize, ValueError> {
    match usize::try_from(value) {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(ValueError {
            allowed: Allowed::OneOrMore,
        }),
    }
}

/// A flag's text as a real-valued knob (clap's value parser).
pub fn parse_f32(text: &str, allowed: Allowed) -> Result<f32, ValueError> {
    let value: f64 = text.trim().parse().map_err(|_| ValueError { allowed })?;
    checked_f32(value, allowed)
}

/// A flag's text as `--max-tokens` (clap's value parser).
pub fn parse_max_tokens(text: &str) -> Result<usize, ValueError> {
    let value: u64 = text.trim().parse().map_err(|_| ValueError {
        allowed: Allowed::OneOrMore,
    })?;
    max_tokens(value)
}

/// Element type of the KV cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum CacheType {
    #[default]
    F16,
    F32,
    #[value(name = "q8_0")]
    #[serde(rename = "q8_0")]
    Q8_0,
}

/// Whether llama.cpp's flash attention kernels are used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum FlashAttention {
    #[default]
    Auto,
    On,
    Off,
}

/// A KV cache type that the flash attention setting cannot run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "--cache-type q8_0 quantises the V cache, which llama.cpp can only read with flash attention, but \
     --flash-attn is off: use --flash-attn auto (or on), or --cache-type f16"
)]
pub struct CacheTypeError;

/// Refuses `--cache-type q8_0` with `--flash-attn off` before llama.cpp is asked for such a context (it refuses
/// it with a message that names neither flag).
pub fn check_cache_type(cache_type: CacheType, flash_attention: FlashAttention) -> Result<(), CacheTypeError> {
    if cache_type == CacheType::Q8_0 && flash_attention == FlashAttention::Off {
        return Err(CacheTypeError);
    }
    Ok(())
}

/// The context a session runs in.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContextSettings {
    /// Context size in tokens; `None` means the smaller of 8192 and the model's trained length.
    pub ctx_size: Option<u32>,
    pub threads: i32,
    pub batch_size: u32,
    pub cache_type: CacheType,
    pub flash_attention: FlashAttention,
}

impl Default for ContextSettings {
    fn default() -> Self {
        ContextSettings {
            ctx_size: None,
            threads: default_threads(),
            batch_size: 512,
            cache_type: CacheType::F16,
            flash_attention: FlashAttention::Auto,
        }
    }
}

/// The default thread count: the number of CPUs this process may use.
pub fn default_threads() -> i32 {
    std::thread::available_parallelism().map_or(4, |n| i32::try_from(n.get()).unwrap_or(4))
}

/// The largest `-b/--batch-size`: 16 times the 512 an image needs. llama.cpp cuts a batch to the context size
/// anyway (8192 by default), and on a CPU prompt speed stops growing long before; larger values only grow the
/// compute buffers (and a value in the billions made the binding panic).
pub const MAX_BATCH_SIZE: u32 = 8192;

/// `-t N` (or `default()` without it), capped at the CPUs this process may use, with a note on stderr when capped:
/// past that llama.cpp's threads only wait for each other (`-t 10000` took minutes for what 2 threads do in
/// seconds). A hard refusal would break scripts written on a bigger machine; capping keeps them working.
pub fn threads(flag: Option<i32>, default: impl FnOnce() -> i32) -> i32 {
    let available = default_threads();
    match flag {
        Some(n) if n > available => {
            eprintln!("medgemma: -t {n} is more than the {available} CPUs this process may use; using {available}");
            available
        }
        Some(n) => n,
        None => default().min(available),
    }
}

/// A context asked for that is longer than the model was trained for.
#[derive(Debug, thiserror::Error)]
#[error(
    "{asked} is {tokens} tokens, more than the {trained} this model was trained for: past its trained length a model \
     loses track of positions and answers degrade, while the KV cache still grows; lower {flag}, or add \
     --allow-long-context to run it anyway"
)]
pub struct LongContextError {
    /// What was asked, in the user's flags (e.g. `-c/--ctx-size 4096`).
    pub asked: String,
    /// The flag(s) to lower.
    pub flag: &'static str,
    pub tokens: u64,
    pub trained: u64,
}

/// Refuses `tokens` of context beyond the model's `trained` length, unless `allow` (`--allow-long-context`).
pub fn check_trained_length(
    tokens: u64,
    trained: Option<u64>,
    allow: bool,
    asked: impl FnOnce() -> String,
    flag: &'static str,
) -> Result<(), LongContextError> {
    match trained {
        Some(trained) if tokens > trained && !allow => Err(LongContextError {
            asked: asked(),
            flag,
            tokens,
            trained,
        }),
        _ => Ok(()),
    }
}

/// A prompt longer than the model's trained context (e.g. too many images or CT slices).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the prompt is {prompt_tokens} positions ({images} image(s) of about {per_image} positions each, plus the text), \
     more than the {trained} this model was trained for (with the answer, -n {max_tokens}, it needs {needed}): \
     give fewer images (--max-slices N for a series), or -c N with --allow-long-context to go past the trained \
     length"
)]
pub struct PromptOverTrainedLength {
    pub prompt_tokens: usize,
    pub images: usize,
    pub per_image: usize,
    pub max_tokens: usize,
    pub needed: u64,
    pub trained: u64,
}

/// The context to create for a prompt of `prompt_tokens` positions when `-c/--ctx-size` was not given (`asked`
/// is `None`): the default (the smaller of 8192 and the trained length) when the prompt and a full answer fit in
/// it, else just enough for both, rounded up to a multiple of 256, up to the trained length (the answer may then
/// stop when the context is full, as with the default); a prompt that does not fit the trained length is refused
/// before any image is encoded. With `-c` given, that size is kept (the prompt is
/// checked against it later, with its own message).
pub fn fit_context(
    asked: Option<u32>,
    prompt_tokens: usize,
    images: usize,
    max_tokens: usize,
    trained: Option<u64>,
) -> Result<Option<u32>, PromptOverTrainedLength> {
    if asked.is_some() {
        return Ok(asked);
    }
    let Some(trained) = trained.filter(|&t| t > 0) else {
        return Ok(None);
    };
    let default = trained.min(8192);
    let needed = prompt_tokens as u64 + max_tokens.max(1) as u64;
    if needed <= default {
        return Ok(None);
    }
    if prompt_tokens as u64 + 1 > trained {
        return Err(PromptOverTrainedLength {
            prompt_tokens,
            images,
            per_image: prompt_tokens.checked_div(images).unwrap_or(0),
            max_tokens,
            needed,
            trained,
        });
    }
    let size = (needed.div_ceil(256) * 256).min(trained);
    if size <= default {
        return Ok(None);
    }
    Ok(Some(u32::try_from(size).unwrap_or(u32::MAX)))
}

/// KV positions one series slice takes, rounded up: 256 image embeddings, the image's two marker tokens, the blank
/// line tokens around it and its `SLICE k` label (a handful of tokens; Gemma splits digits one by one), about 265
/// in all with Gemma 3's tokenizer. A bound, for sizing a context before the series is read.
pub const POSITIONS_PER_SLICE: usize = 270;

/// A context for a series prompt of up to `slices` slices when its exact length is not known yet (batch sizes its
/// sequences before reading the jobs' series): the slices, 1024 positions of instruction, system prompt and
/// question, and a full answer, rounded up to a multiple of 256, at most the trained length.
pub fn series_context(slices: usize, max_tokens: usize, trained: Option<u64>) -> u32 {
    let needed = (slices * POSITIONS_PER_SLICE + 1024 + max_tokens) as u64;
    let size = needed.div_ceil(256) * 256;
    let size = trained.filter(|&t| t > 0).map_or(size, |t| size.min(t));
    u32::try_from(size).unwrap_or(u32::MAX)
}

/// The number of physical cores this process may use (hyper-threads of one core count once): the thread count
/// at which llama.cpp is usually fastest. Falls back to [`default_threads`] where the topology is not readable.
pub fn physical_cores() -> i32 {
    let logical = default_threads();
    let Ok(dir) = std::fs::read_dir("/sys/devices/system/cpu") else {
        return logical;
    };
    let mut cores = std::collections::BTreeSet::new();
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name
            .strip_prefix("cpu")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        {
            continue;
        }
        let topology = entry.path().join("topology");
        let read = |f: &str| {
            std::fs::read_to_string(topology.join(f))
                .ok()
                .map(|s| s.trim().to_string())
        };
        if let (Some(package), Some(core)) = (read("physical_package_id"), read("core_id")) {
            cores.insert((package, core));
        }
    }
    if cores.is_empty() {
        logical
    } else {
        (cores.len() as i32).min(logical)
    }
}

/// The type `medgemma quantize` converts a model to (llama.cpp's file types; K-quants mix several tensor types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QuantType {
    #[value(name = "q4_0")]
    Q4_0,
    #[value(name = "q4_1")]
    Q4_1,
    #[value(name = "q5_0")]
    Q5_0,
    #[value(name = "q5_1")]
    Q5_1,
    #[value(name = "q8_0")]
    Q8_0,
    #[value(name = "q2_k")]
    Q2K,
    #[value(name = "q3_k_s")]
    Q3KS,
    #[value(name = "q3_k_m")]
    Q3KM,
    #[value(name = "q3_k_l")]
    Q3KL,
    #[value(name = "q4_k_s")]
    Q4KS,
    #[value(name = "q4_k_m")]
    Q4KM,
    #[value(name = "q5_k_s")]
    Q5KS,
    #[value(name = "q5_k_m")]
    Q5KM,
    #[value(name = "q6_k")]
    Q6K,
    F16,
    Bf16,
}

impl QuantType {
    /// The name as llama.cpp prints file types, e.g. `Q4_K_M`.
    pub fn name(self) -> String {
        use clap::ValueEnum;
        self.to_possible_value()
            .expect("every type has a name")
            .get_name()
            .to_uppercase()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_values_share_one_range_check() {
        assert_eq!(temperature(0.0), Ok(0.0));
        assert_eq!(temperature(1.5), Ok(1.5));
        for bad in [-1.0, 1e39, f64::NAN, f64::INFINITY] {
            let err = temperature(bad).unwrap_err();
            assert_eq!(err.to_string(), "must be a number of 0 or more", "{bad}");
        }
        assert_eq!(max_tokens(1), Ok(1));
        assert_eq!(
            max_tokens(0).unwrap_err().to_string(),
            "must be a whole number of 1 or more"
        );
        assert_eq!(parse_max_tokens("7"), Ok(7));
        assert!(parse_max_tokens("-1").is_err() && parse_max_tokens("1.5").is_err());
        assert_eq!(parse_f32("0.5", Allowed::ZeroToOne), Ok(0.5));
        assert!(parse_f32("1.5", Allowed::ZeroToOne).is_err());
        assert!(parse_f32("0", Allowed::MoreThanZero).is_err());
        assert!(parse_f32("nan", Allowed::ZeroOrMore).is_err());
        assert!(parse_f32("x", Allowed::ZeroOrMore).is_err());
    }

    #[test]
    fn a_quantised_v_cache_needs_flash_attention() {
        assert!(check_cache_type(CacheType::Q8_0, FlashAttention::Auto).is_ok());
        assert!(check_cache_type(CacheType::Q8_0, FlashAttention::On).is_ok());
        assert!(check_cache_type(CacheType::F16, FlashAttention::Off).is_ok());
        let e = check_cache_type(CacheType::Q8_0, FlashAttention::Off)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--cache-type q8_0") && e.contains("--flash-attn auto"),
            "{e}"
        );
    }

    #[test]
    fn threads_are_capped_at_the_cpus_available() {
        let n = default_threads();
        assert_eq!(threads(Some(1), || 3), 1);
        assert_eq!(threads(Some(n + 1000), || 3), n);
        assert_eq!(threads(None, || n + 5), n);
    }

    #[test]
    fn a_context_past_the_trained_length_needs_asking() {
        let asked = || "-c/--ctx-size 4096".to_string();
        assert!(check_trained_length(2048, Some(2048), false, asked, "-c").is_ok());
        assert!(check_trained_length(4096, None, false, asked, "-c").is_ok());
        assert!(check_trained_length(4096, Some(2048), true, asked, "-c").is_ok());
        let e = check_trained_length(4096, Some(2048), false, asked, "-c")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("4096") && e.contains("2048") && e.contains("--allow-long-context"),
            "{e}"
        );
    }

    #[test]
    fn fit_context_grows_only_when_needed_and_never_past_the_trained_length() {
        // Fits the default (8192): left alone.
        assert_eq!(fit_context(None, 1000, 1, 512, Some(131_072)), Ok(None));
        assert_eq!(fit_context(None, 7680, 0, 512, Some(131_072)), Ok(None));
        // 85 slices of ~266 positions: grown to hold prompt + answer, a multiple of 256.
        assert_eq!(fit_context(None, 22_610, 85, 512, Some(131_072)), Ok(Some(23_296)));
        // -c wins, whatever the prompt.
        assert_eq!(fit_context(Some(4096), 22_610, 85, 512, Some(131_072)), Ok(Some(4096)));
        // Capped at the trained length when rounding would pass it.
        assert_eq!(fit_context(None, 9000, 1, 100, Some(9200)), Ok(Some(9200)));
        // Unknown trained length: the engine's default applies.
        assert_eq!(fit_context(None, 50_000, 2, 512, None), Ok(None));
        // A prompt that fits but leaves less than -n: the trained length, as before (no refusal).
        assert_eq!(fit_context(None, 1800, 0, 512, Some(2048)), Ok(None));
        assert_eq!(fit_context(None, 9000, 0, 512, Some(9100)), Ok(Some(9100)));
        assert_eq!(fit_context(None, 2047, 0, 512, Some(2048)), Ok(None));
        let e = fit_context(None, 22_610, 85, 512, Some(8192)).unwrap_err();
        assert_eq!((e.needed, e.trained, e.per_image), (23_122, 8192, 266));
        assert!(fit_context(None, 2048, 0, 1, Some(2048)).is_err());
        assert!(e.to_string().contains("85 image(s)"), "{e}");
    }

    #[test]
    fn a_series_context_holds_85_slices_and_the_answer() {
        // 85 x 270 + 1024 + 512 = 24486 -> 24576.
        assert_eq!(series_context(85, 512, Some(131_072)), 24_576);
        assert_eq!(series_context(85, 512, Some(8192)), 8192);
        assert_eq!(series_context(4, 16, None), 2304);
    }
}
