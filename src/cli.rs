//! Command-line interface: clap definitions only. Shared option groups (model, sampling, context) are flattened
//! into each subcommand; doc comments are the help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::dicom::Window;
use crate::image_input::{DicomOptions, ImageFit};
use crate::settings::{
    parse_f32, parse_max_tokens, Allowed, CacheType, ContextSettings, FlashAttention, QuantType, SamplingSettings,
    ValueError, MAX_BATCH_SIZE,
};

/// Run Google's MedGemma models locally from GGUF files, on a CPU or one GPU, with no network.
///
/// For research only: not for clinical diagnosis or patient care.
#[derive(Debug, Parser)]
#[command(name = "medgemma", version, propagate_version = true, max_term_width = 110)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Require the sandbox (Landlock file rules and a seccomp filter without sockets) and fail when it cannot be
    /// fully enforced. Without this flag it is entered where the kernel supports it, with a notice when not.
    /// run, chat, batch, serve, bench, eval-quant, quantize and info are confined; pull, list, rm and cache are not.
    #[arg(long, global = true, conflicts_with = "no_sandbox")]
    pub sandbox: bool,
    /// Run without the sandbox (e.g. chat's /image of a file outside the current folder).
    #[arg(long = "no-sandbox", global = true)]
    pub no_sandbox: bool,
}

impl Command {
    /// The name of a command that never enters the sandbox: pull, list and rm need the network or the whole cache,
    /// doctor runs its own proof in a child process.
    pub fn unconfined(&self) -> Option<&'static str> {
        match self {
            Command::Pull(_) => Some("pull"),
            Command::List(_) => Some("list"),
            Command::Rm(_) => Some("rm"),
            Command::Cache(_) => Some("cache"),
            Command::Doctor(_) => Some("doctor"),
            _ => None,
        }
    }
}

impl Cli {
    /// The sandbox mode `--sandbox` / `--no-sandbox` ask for.
    pub fn sandbox_mode(&self) -> crate::sandbox::Mode {
        match (self.sandbox, self.no_sandbox) {
            (true, _) => crate::sandbox::Mode::Required,
            (false, true) => crate::sandbox::Mode::Off,
            (false, false) => crate::sandbox::Mode::BestEffort,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Answer one prompt (with optional images) and exit.
    Run(RunArgs),
    /// Talk with the model: a conversation with images, commands and line editing (or lines from a pipe).
    Chat(ChatArgs),
    /// Run many jobs from a JSONL file (or one per image of a folder) into a JSONL file; resumable.
    Batch(BatchArgs),
    /// Serve the model over HTTP on this machine: OpenAI's chat completions API and ollama's chat API, with
    /// concurrent requests decoded together.
    Serve(ServeArgs),
    /// Show what a GGUF file holds (model or mmproj); given both, check that they fit together.
    Info(InfoArgs),
    /// Quantise a MedGemma GGUF model to a smaller type (e.g. an F16 or F32 conversion to Q4_K_M).
    Quantize(QuantizeArgs),
    /// Measure how far quantised models are from their source: KL divergence, top-1 agreement, perplexity.
    #[command(name = "eval-quant")]
    EvalQuant(EvalQuantArgs),
    /// Measure a model on your own labelled data: predictions, accuracy with a confidence interval, per-class
    /// precision/recall/F1, Cohen's kappa, the confusion matrix, ROC AUC, calibration; --compare two runs.
    Eval(EvalArgs),
    /// Measure speed: prompt processing and generation tokens/s, image encoding time, load time, peak memory.
    Bench(BenchArgs),
    /// Download a model by name (e.g. medgemma-4b-it:q8_0) or any GGUF from a Hugging Face repository, or build
    /// one from a checkpoint (--convert); files go to the shared Hugging Face cache.
    Pull(PullArgs),
    /// Show the models on this machine (name, quantisation, size, path), or with --available the known ones.
    List(ListArgs),
    /// Remove a model from this machine: NAME[:QUANT] as `medgemma list` shows it (every quantisation without one).
    Rm(RmArgs),
    /// Show or clear the image embedding cache: what the vision encoder computed for each image, kept so that an
    /// image is encoded once (folder, entries, size and cap; `medgemma cache clear` empties it).
    Cache(CacheArgs),
    /// Write the RGB images the model would see (after DICOM windowing, slice selection and fitting to a square)
    /// as PNGs, DIR/001.png, 002.png, ... in prompt order, plus DIR/contact-sheet.png for a series.
    Preview(PreviewArgs),
    /// Check this machine: the build, CPU features, kernel sandboxing (with a proof that the sandbox refuses a
    /// network connection and a file outside it), the cache folders and their free space.
    Doctor(DoctorArgs),
    /// (internal) The child process of `doctor`'s sandbox proof.
    #[command(name = "sandbox-proof", hide = true)]
    SandboxProof(SandboxProofArgs),
    /// (internal) The child process of `doctor`'s AMX check: runs one AMX tile instruction.
    #[command(name = "amx-probe", hide = true)]
    AmxProbe,
}

/// How a DICOM image becomes the picture the model sees; PNG, JPEG and other images ignore these.
#[derive(Debug, Clone, Default, Args)]
pub struct DicomArgs {
    /// DICOM: the window, CENTER,WIDTH in the file's units (Hounsfield units for CT, e.g. -600,1500), or a CT
    /// preset: lung (-600,1500), mediastinum (50,350), bone (400,1800), brain (40,80), soft-tissue (40,400),
    /// abdomen (50,400), liver (30,150). Default: the file's own window, or min-max when it has none.
    #[arg(long, value_name = "C,W|PRESET", value_parser = parse_window_arg, allow_hyphen_values = true)]
    pub window: Option<Window>,
    /// DICOM: which of the file's windows to use when it has several, from 1 [default: 1].
    #[arg(long = "window-index", value_name = "N", conflicts_with = "window",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub window_index: Option<u32>,
    /// DICOM: which frame of a multi-frame file, from 1 [default: 1].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub frame: Option<u32>,
}

impl DicomArgs {
    /// The options; `verbose` (the command's `--verbose`) adds one technical line per DICOM image on stderr.
    pub fn options(&self, verbose: bool) -> DicomOptions {
        DicomOptions {
            window: self.window,
            window_index: self.window_index.map(|i| i as usize),
            frame: self.frame,
            verbose,
        }
    }
}

fn parse_window_arg(text: &str) -> Result<Window, String> {
    crate::dicom::parse_window(text)
}

/// Which slices of a CT or MR series the model sees (Google's MedGemma 1.5 recipe unless changed).
#[derive(Debug, Clone, Default, Args)]
pub struct SeriesArgs {
    /// Which series of a folder that holds several (the error for such a folder lists them).
    #[arg(long = "series-uid", value_name = "UID")]
    pub series_uid: Option<String>,
    /// At most this many slices of a series, for a quicker look [default: 85, Google's recipe; fewer differs
    /// from it].
    #[arg(long = "max-slices", value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub max_slices: Option<u32>,
}

impl SeriesArgs {
    pub fn options(&self) -> crate::dicom::series::SeriesOptions {
        crate::dicom::series::SeriesOptions {
            series_uid: self.series_uid.clone(),
            max_slices: self.max_slices.map(|n| n as usize),
        }
    }

    /// Whether a series flag was given (they need a series to apply to).
    pub fn any(&self) -> bool {
        self.series_uid.is_some() || self.max_slices.is_some()
    }
}

/// `medgemma preview`
#[derive(Debug, Clone, Args)]
pub struct PreviewArgs {
    /// An image (PNG, JPEG, BMP, TIFF, WebP or DICOM); repeat for several.
    #[arg(long = "image", value_name = "FILE", required_unless_present = "series")]
    pub images: Vec<PathBuf>,
    /// A CT or MR series: a folder of its DICOM files (not its subfolders), or one multi-frame DICOM file. Its
    /// slices are written after the images, as the model sees them (Google's MedGemma 1.5 recipe: up to 85
    /// slices; CT in three windows as R, G, B; MR min-max over the volume), plus `contact-sheet.png`.
    /// --window, --window-index and --frame apply to --image only.
    #[arg(long, value_name = "DIR|FILE")]
    pub series: Option<PathBuf>,
    #[command(flatten)]
    pub series_select: SeriesArgs,
    /// How a non-square image is made square (see `medgemma run --help`).
    #[arg(long = "image-fit", value_name = "HOW", value_enum, default_value_t = ImageFit::Pad)]
    pub image_fit: ImageFit,
    #[command(flatten)]
    pub dicom: DicomArgs,
    /// The side of the model's square input, for --image-fit stretch.
    #[arg(long, value_name = "PIXELS", default_value_t = crate::image_input::DEFAULT_IMAGE_SIDE,
          value_parser = clap::value_parser!(u32).range(1..=8192))]
    pub side: u32,
    /// The folder to write the PNGs into (created if missing; existing NNN.png or contact-sheet.png files are
    /// not overwritten).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// Which model files to load.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// The model: a name, NAME[:QUANT] (e.g. medgemma-4b-it, medgemma-27b-text-it:q8_0; `medgemma list
    /// --available`), downloaded on first use and then used offline; or a .gguf file. [default:
    /// medgemma-4b-it:q4_k_m]
    #[arg(short = 'm', long = "model", value_name = "NAME|MODEL.gguf", env = "MEDGEMMA_MODEL")]
    pub model: Option<String>,
    /// The vision projector for images, a .gguf file (e.g. mmproj-F16.gguf); needed for --image with a model
    /// file. A model given by name brings its own; this overrides it.
    #[arg(long, value_name = "MMPROJ.gguf", env = "MEDGEMMA_MMPROJ")]
    pub mmproj: Option<PathBuf>,
    /// Use only models already on this machine, never the network (also: HF_HUB_OFFLINE=1).
    #[arg(long)]
    pub offline: bool,
    /// Layers to offload to the GPU: auto (as many as fit in the device's free memory with room for the KV cache
    /// at the chosen context; --verbose prints the plan), all, or a number (0 = CPU only). GPU builds only: a CPU
    /// build runs on the CPU.
    #[arg(
        long = "gpu-layers",
        value_name = "auto|all|N",
        default_value = "auto",
        env = "MEDGEMMA_GPU_LAYERS"
    )]
    pub gpu_layers: crate::gpu_plan::GpuLayers,
    /// The GPU to use, by name as `medgemma doctor` lists it (e.g. Vulkan0, CUDA0) [default: the first GPU].
    #[arg(long = "gpu-device", value_name = "NAME")]
    pub gpu_device: Option<String>,
    /// Put the vision projector on the GPU too, when it fits beside the layers.
    #[arg(long = "mmproj-offload", value_name = "on|off", value_enum, default_value_t = OnOff::On)]
    pub mmproj_offload: OnOff,
    /// Show llama.cpp's own logs and timing statistics on stderr.
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Neither read nor write the on-disk image embedding cache (`medgemma cache`); images are encoded again in
    /// every new process. Also: MEDGEMMA_NO_IMAGE_CACHE=1.
    #[arg(long = "no-image-cache")]
    pub no_image_cache: bool,
}

impl ModelArgs {
    /// The model and mmproj files: a path as given, or a name resolved (and pulled when not local and online);
    /// without -m, the registry's default model. An explicit --mmproj wins over a name's own.
    pub fn resolve(&self) -> anyhow::Result<crate::hub::ModelFiles> {
        let hub = crate::hub::Hub::new(crate::hub::HubSettings::from_env(self.offline));
        let registry = crate::hub::Registry::load()?;
        let mut files = crate::hub::local::resolve(self.model.as_deref(), &hub, &registry)?;
        if self.mmproj.is_some() {
            files.mmproj = self.mmproj.clone();
        }
        Ok(files)
    }

    /// What the engine loads, for `threads` CPU threads.
    pub fn load_options(
        &self,
        files: &crate::hub::ModelFiles,
        threads: i32,
    ) -> anyhow::Result<crate::engine::LoadOptions> {
        Ok(crate::engine::LoadOptions {
            model: files.model.clone(),
            mmproj: files.mmproj.clone(),
            gpu: crate::engine::GpuOptions {
                layers: self.gpu_layers,
                device: self.gpu_device.clone(),
                mmproj_offload: self.mmproj_offload == OnOff::On,
                kv: None,
            },
            threads,
            verbose: self.verbose,
            image_cache: match files.mmproj {
                Some(_) => self.image_cache()?,
                None => None,
            },
        })
    }

    /// The on-disk image embedding cache, unless `--no-image-cache` (or MEDGEMMA_NO_IMAGE_CACHE=1) or no home
    /// for it is known.
    pub fn image_cache(&self) -> anyhow::Result<Option<crate::image_cache::DiskCache>> {
        let off = std::env::var("MEDGEMMA_NO_IMAGE_CACHE").is_ok_and(|v| !v.is_empty() && v != "0");
        if self.no_image_cache || off {
            return Ok(None);
        }
        let max = crate::image_cache::max_bytes_from_env().map_err(anyhow::Error::msg)?;
        Ok(crate::image_cache::dir_from_vars(|k| std::env::var_os(k))
            .map(|dir| crate::image_cache::DiskCache::new(dir, max)))
    }
}

/// How tokens are chosen.
#[derive(Debug, Clone, Args)]
pub struct SamplingArgs {
    /// Temperature; 0 = greedy decoding (the default, as in Google's MedGemma examples).
    #[arg(long = "temp", value_name = "T", default_value_t = 0.0, value_parser = non_negative_f32)]
    pub temperature: f32,
    /// Keep only the K most likely tokens (0 = all).
    #[arg(long = "top-k", value_name = "K", default_value_t = 64, value_parser = clap::value_parser!(i32).range(0..))]
    pub top_k: i32,
    /// Keep the smallest set of tokens whose probabilities add up to P.
    #[arg(long = "top-p", value_name = "P", default_value_t = 0.95, value_parser = unit_interval)]
    pub top_p: f32,
    /// Drop tokens less likely than P times the most likely one (0 = off).
    #[arg(long = "min-p", value_name = "P", default_value_t = 0.0, value_parser = unit_interval)]
    pub min_p: f32,
    /// Penalty for repeating recent tokens (1 = off).
    #[arg(long = "repeat-penalty", value_name = "X", default_value_t = 1.0, value_parser = positive_f32)]
    pub repeat_penalty: f32,
    /// Random seed for sampling (ignored when greedy).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub seed: u32,
    /// The most tokens to generate.
    #[arg(short = 'n', long = "max-tokens", value_name = "N", default_value_t = 512, value_parser = parse_max_tokens)]
    pub max_tokens: usize,
}

impl SamplingArgs {
    pub fn settings(&self) -> SamplingSettings {
        SamplingSettings {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            seed: self.seed,
            max_tokens: self.max_tokens,
            ..SamplingSettings::default()
        }
    }
}

/// The shape answers must take: enforced while the answer is generated (llama.cpp's grammar engine) and checked
/// again when it is done.
#[derive(Debug, Clone, Default, Args)]
pub struct FormatArgs {
    /// Answer with one JSON object (any keys).
    #[arg(long, value_name = "json", value_enum, conflicts_with_all = ["json_schema", "grammar"])]
    pub format: Option<AnswerFormat>,
    /// Answer with JSON in the shape of this JSON Schema. Supported: type, properties, required,
    /// additionalProperties, items, prefixItems, minItems, maxItems, enum, const, anyOf, oneOf, allOf (one
    /// schema), $ref to #/$defs or #/definitions, minLength, maxLength, format (date, time, date-time, uuid),
    /// minimum, maximum, exclusiveMinimum, exclusiveMaximum (numeric bounds checked after generation);
    /// annotations (title, description, ...) are ignored and any other keyword is refused.
    #[arg(long = "json-schema", value_name = "SCHEMA.json", conflicts_with = "grammar")]
    pub json_schema: Option<PathBuf>,
    /// Answer following this GBNF grammar (llama.cpp's grammar format, root rule `root`).
    #[arg(long, value_name = "FILE.gbnf")]
    pub grammar: Option<PathBuf>,
}

/// A switch given as on or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

/// `--format`'s values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AnswerFormat {
    /// One JSON object.
    Json,
}

impl FormatArgs {
    /// The answer's format, read and checked (a schema's keywords, a grammar's syntax) before any model work.
    pub fn load(&self) -> anyhow::Result<Option<crate::structured::OutputFormat>> {
        use crate::structured::OutputFormat;
        use anyhow::Context as _;
        if self.format.is_some() {
            return Ok(Some(OutputFormat::JsonObject));
        }
        if let Some(path) = &self.json_schema {
            let schema = crate::structured::load_schema(path).context("--json-schema")?;
            return Ok(Some(OutputFormat::Schema(schema)));
        }
        if let Some(path) = &self.grammar {
            return Ok(Some(crate::structured::load_grammar(path).context("--grammar")?));
        }
        Ok(None)
    }
}

/// The context the model runs in.
#[derive(Debug, Clone, Args)]
pub struct ContextArgs {
    /// Context size in tokens [default: the smaller of 8192 and the model's trained length].
    #[arg(short = 'c', long = "ctx-size", value_name = "N", value_parser = clap::value_parser!(u32).range(16..))]
    pub ctx_size: Option<u32>,
    /// Allow a -c/--ctx-size beyond the model's trained length (answers degrade there).
    #[arg(long = "allow-long-context")]
    pub allow_long_context: bool,
    /// CPU threads [default: the CPUs available to this process; more are capped to that].
    #[arg(short = 't', long, value_name = "N", value_parser = clap::value_parser!(i32).range(1..))]
    pub threads: Option<i32>,
    /// Tokens evaluated per batch (512 to 8192; smaller values are raised to 512, so that one image fits).
    #[arg(short = 'b', long = "batch-size", value_name = "N", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=MAX_BATCH_SIZE as i64))]
    pub batch_size: u32,
    /// Element type of the KV cache (q8_0 needs flash attention).
    #[arg(long = "cache-type", value_name = "TYPE", value_enum, default_value_t = CacheType::F16)]
    pub cache_type: CacheType,
    /// Flash attention.
    #[arg(long = "flash-attn", value_name = "WHEN", value_enum, default_value_t = FlashAttention::Auto)]
    pub flash_attention: FlashAttention,
}

impl ContextArgs {
    pub fn settings(&self) -> ContextSettings {
        let defaults = ContextSettings::default();
        ContextSettings {
            ctx_size: self.ctx_size,
            threads: crate::settings::threads(self.threads, || defaults.threads),
            batch_size: self.batch_size,
            cache_type: self.cache_type,
            flash_attention: self.flash_attention,
        }
    }
}

/// `medgemma run`
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The question. Read from standard input when it is `-`, or when it is absent and stdin is not a terminal.
    #[arg(value_name = "PROMPT")]
    pub prompt: Option<String>,
    #[command(flatten)]
    pub model: ModelArgs,
    /// An image to show the model (PNG, JPEG, BMP, TIFF, WebP); repeat for several. Needs --mmproj.
    #[arg(long = "image", value_name = "FILE")]
    pub images: Vec<PathBuf>,
    /// How a non-square image is made square: pad (keep the aspect ratio, as Google's preprocessing does) or
    /// stretch (as the Hugging Face processor does).
    #[arg(long = "image-fit", value_name = "HOW", value_enum, default_value_t = ImageFit::Pad)]
    pub image_fit: ImageFit,
    #[command(flatten)]
    pub dicom: DicomArgs,
    /// A CT or MR series: a folder of its DICOM files, or one multi-frame DICOM file. The prompt becomes Google's
    /// layout: an instruction, each slice followed by "SLICE k", then the question (up to 85 slices; CT in three
    /// windows as R, G, B; MR min-max over the volume). Needs --mmproj and a model that knows CT/MRI
    /// (MedGemma 1.5).
    #[arg(long, value_name = "DIR|FILE", conflicts_with = "images")]
    pub series: Option<PathBuf>,
    /// The text before a series' slices, instead of Google's ("You are an instructor teaching medical
    /// students. You are analyzing a contiguous block of CT slices. ...").
    #[arg(long = "series-instruction", value_name = "TEXT", requires = "series")]
    pub series_instruction: Option<String>,
    #[command(flatten)]
    pub series_select: SeriesArgs,
    /// A system prompt, e.g. "You are an expert radiologist.".
    #[arg(long, value_name = "TEXT")]
    pub system: Option<String>,
    /// A whole conversation as JSON instead of PROMPT: [{"role":"system"|"user"|"model","content":"...",
    /// "images":["a.png"]}, ...], or a content list of {"type":"text"|"image"|"series",...} parts; paths are
    /// relative to the file.
    #[arg(long, value_name = "FILE.json", conflicts_with_all = ["prompt", "images", "system", "series"])]
    pub messages: Option<PathBuf>,
    /// Print the thinking block (MedGemma 1.5 and 27B) on stderr; it is hidden by default.
    #[arg(long = "show-thinking")]
    pub show_thinking: bool,
    /// Print one JSON object on stdout when done (text, finish reason, token ids, timings) instead of streaming.
    #[arg(long)]
    pub json: bool,
    /// Write the logits at the last prompt position to FILE as a JSON array (for comparisons with a reference);
    /// with --choices, an object with those and, for each label, the logits that score each of its tokens.
    #[arg(long = "logits-out", value_name = "FILE")]
    pub logits_out: Option<PathBuf>,
    /// Answer with exactly one of these labels, comma-separated ("normal,pneumonia,effusion") or a file with one
    /// per line: each label is scored over its whole token sequence after the prompt (no sampling); --json adds
    /// every label's probability.
    #[arg(long, value_name = "LABELS|FILE", conflicts_with_all = ["format", "json_schema", "grammar", "show_thinking"])]
    pub choices: Option<String>,
    #[command(flatten)]
    pub answer_format: FormatArgs,
    /// Replace the --logits-out FILE when it exists (never the model, the mmproj or an input: those are refused
    /// whatever is asked).
    #[arg(long, requires = "logits_out")]
    pub force: bool,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub context: ContextArgs,
}

/// `medgemma info`
#[derive(Debug, Clone, Args)]
pub struct InfoArgs {
    /// A model or mmproj .gguf file; give a model and its mmproj (either order) to check that they fit together.
    #[arg(value_name = "FILE.gguf", required = true, num_args = 1..=2)]
    pub files: Vec<PathBuf>,
    /// Print one JSON object on stdout instead of aligned text.
    #[arg(long)]
    pub json: bool,
}

/// `medgemma quantize`
#[derive(Debug, Clone, Args)]
pub struct QuantizeArgs {
    /// The model to quantise, a .gguf file (best an F32, F16 or BF16 conversion).
    #[arg(value_name = "IN.gguf")]
    pub input: PathBuf,
    /// Where to write the quantised model.
    #[arg(value_name = "OUT.gguf")]
    pub output: PathBuf,
    /// The type to quantise to; K-quants (q4_k_m, ...) keep some tensors in wider types, and tensors whose rows
    /// are not a multiple of the block size fall back to another type.
    #[arg(long = "type", value_name = "TYPE", value_enum)]
    pub quant_type: QuantType,
    /// Quantise a model that is already quantised (loses quality; start from an F16/BF16/F32 file when you can).
    #[arg(long = "allow-requantize")]
    pub allow_requantize: bool,
    /// Overwrite OUT.gguf when it exists.
    #[arg(long)]
    pub force: bool,
    /// CPU threads [default: the CPUs available to this process].
    #[arg(short = 't', long, value_name = "N", value_parser = clap::value_parser!(i32).range(1..))]
    pub threads: Option<i32>,
    /// Show llama.cpp's own logs on stderr.
    #[arg(short = 'v', long)]
    pub verbose: bool,
}

/// `medgemma eval-quant`
#[derive(Debug, Clone, Args)]
pub struct EvalQuantArgs {
    /// The reference: the F32, F16 or BF16 model (or mmproj) the quantised files were made from.
    #[arg(long, value_name = "BASE.gguf")]
    pub base: PathBuf,
    /// A quantised model (or mmproj) to measure against BASE; repeat to compare several in one run.
    #[arg(long = "quant", value_name = "QUANT.gguf", required = true)]
    pub quants: Vec<PathBuf>,
    /// Plain UTF-8 text to score (e.g. de-identified notes or a public corpus); the more the better. For models.
    #[arg(long, value_name = "FILE.txt", required_unless_present = "images")]
    pub text: Option<PathBuf>,
    /// For vision projectors: the language model they belong to.
    #[arg(short = 'm', long = "model", value_name = "MODEL.gguf", requires = "images")]
    pub model: Option<PathBuf>,
    /// For vision projectors: an image to encode with BASE and each QUANT; repeat for several.
    #[arg(long = "image", value_name = "FILE", conflicts_with = "text")]
    pub images: Vec<PathBuf>,
    /// For vision projectors: greedy tokens generated after each image to compare (0 skips the comparison,
    /// which saves one more encoding per image and projector).
    #[arg(long = "gen-tokens", value_name = "N", default_value_t = 16)]
    pub gen_tokens: usize,
    /// Tokens per chunk; the second half of each chunk is scored, as llama.cpp's perplexity tool does.
    #[arg(short = 'c', long = "ctx-size", value_name = "N", default_value_t = 512, value_parser = clap::value_parser!(u32).range(16..))]
    pub ctx_size: u32,
    /// Allow a -c/--ctx-size (or --gen-tokens) beyond the model's trained length.
    #[arg(long = "allow-long-context")]
    pub allow_long_context: bool,
    /// Score at most N chunks [default: every whole chunk of the text].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub chunks: Option<u64>,
    /// CPU threads [default: the CPUs available to this process].
    #[arg(short = 't', long, value_name = "N", value_parser = clap::value_parser!(i32).range(1..))]
    pub threads: Option<i32>,
    /// Print one JSON object on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Show llama.cpp's own logs on stderr.
    #[arg(short = 'v', long)]
    pub verbose: bool,
}

/// `medgemma bench`
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Prompt tokens evaluated per repetition (prompt processing speed).
    #[arg(short = 'p', long = "prompt-tokens", value_name = "N", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    pub prompt_tokens: u32,
    /// Tokens generated per repetition, right after the prompt (generation speed).
    #[arg(short = 'n', long = "gen-tokens", value_name = "N", default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..))]
    pub gen_tokens: u32,
    /// Repetitions of each measurement (after one warm-up); results are mean ± standard deviation.
    #[arg(short = 'r', long = "repetitions", value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub repetitions: u32,
    /// Image encodings to time with --mmproj [default: --repetitions]; about a minute each on a laptop CPU.
    #[arg(long = "image-repetitions", value_name = "N", value_parser = clap::value_parser!(u32).range(0..))]
    pub image_repetitions: Option<u32>,
    /// The image to encode [default: a generated test pattern; the work does not depend on the content].
    #[arg(long, value_name = "FILE")]
    pub image: Option<PathBuf>,
    /// Allow -p plus -n beyond the model's trained length (speeds there say nothing about useful answers).
    #[arg(long = "allow-long-context")]
    pub allow_long_context: bool,
    /// CPU threads [default: the machine's physical cores; more than the CPUs available are capped to that].
    #[arg(short = 't', long, value_name = "N", value_parser = clap::value_parser!(i32).range(1..))]
    pub threads: Option<i32>,
    /// Tokens evaluated per batch (512 to 8192; smaller values are raised to 512).
    #[arg(short = 'b', long = "batch-size", value_name = "N", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=MAX_BATCH_SIZE as i64))]
    pub batch_size: u32,
    /// Element type of the KV cache (q8_0 needs flash attention).
    #[arg(long = "cache-type", value_name = "TYPE", value_enum, default_value_t = CacheType::F16)]
    pub cache_type: CacheType,
    /// Flash attention.
    #[arg(long = "flash-attn", value_name = "WHEN", value_enum, default_value_t = FlashAttention::Auto)]
    pub flash_attention: FlashAttention,
    /// Print one JSON object on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `medgemma batch`
#[derive(Debug, Clone, Args)]
pub struct BatchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The jobs, one JSON object per line: {"id": "...", "prompt": "..." | "messages": [...], "images": [...],
    /// "system": "...", "max_tokens": N, "temperature": T, "seed": N}; image paths are relative to this file.
    #[arg(long, value_name = "JOBS.jsonl", conflicts_with = "images")]
    pub input: Option<PathBuf>,
    /// One job per image file in DIR (recursively); the id is the path relative to DIR. Needs --prompt.
    #[arg(long = "images", value_name = "DIR")]
    pub images: Option<PathBuf>,
    /// The question asked of every image with --images.
    #[arg(long, value_name = "TEXT", requires = "images")]
    pub prompt: Option<String>,
    /// A system prompt for every job of --images (JSONL jobs carry their own "system").
    #[arg(long, value_name = "TEXT")]
    pub system: Option<String>,
    /// Where results go, one JSON object per job, appended as each job finishes. Jobs already in the file are
    /// skipped, so rerunning the same command after a crash or Ctrl-C finishes the rest.
    #[arg(long, value_name = "RESULTS.jsonl")]
    pub output: PathBuf,
    /// Start the output file again instead of resuming it.
    #[arg(long)]
    pub overwrite: bool,
    /// Decode N jobs together in one context (continuous batching: a finished job's sequence takes the next job
    /// at once). Each sequence gets the full context size (-c).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub parallel: u32,
    /// Take only shard K of N (a stable split by job id), e.g. one shard per worker of a Slurm array.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<crate::batch::job::Shard>,
    /// How a non-square image is made square (see `medgemma run --help`).
    #[arg(long = "image-fit", value_name = "HOW", value_enum, default_value_t = ImageFit::Pad)]
    pub image_fit: ImageFit,
    #[command(flatten)]
    pub dicom: DicomArgs,
    /// For the jobs' "series" (a job line's `"series": DIR`, or a series part of its messages).
    #[command(flatten)]
    pub series_select: SeriesArgs,
    /// For every job without its own "format" (a job's "format": "json" or a JSON Schema object).
    #[command(flatten)]
    pub answer_format: FormatArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub context: ContextArgs,
}

/// `medgemma eval`
#[derive(Debug, Clone, Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The labelled data, one JSON object per line: a batch job ({"id", "prompt" | "messages", "images",
    /// "series", "system", ...}) with its "label"; image paths are relative to this file.
    #[arg(long, value_name = "LABELLED.jsonl", conflicts_with_all = ["report", "compare"])]
    pub input: Option<PathBuf>,
    /// Where the run goes: DIR/predictions.jsonl (appended as each item finishes; rerunning the same command
    /// resumes), DIR/report.json, DIR/report.md and the PNG plots.
    #[arg(long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// The labels, comma-separated ("normal,pneumonia,effusion") or a file with one per line; each item is
    /// answered with the most probable label, scored over its whole token sequence (no sampling).
    #[arg(long, value_name = "LABELS|FILE", conflicts_with = "json_schema")]
    pub choices: Option<String>,
    /// Answers constrained to this JSON Schema; --field names the property that holds the prediction.
    #[arg(long = "json-schema", value_name = "SCHEMA.json", requires = "field")]
    pub json_schema: Option<PathBuf>,
    /// The answer's property compared with the label (with --json-schema).
    #[arg(long, value_name = "NAME", requires = "json_schema")]
    pub field: Option<String>,
    /// Start DIR's predictions again instead of resuming them.
    #[arg(long)]
    pub overwrite: bool,
    /// Run N items together in one context (see `medgemma batch --help`).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub parallel: u32,
    /// Recompute DIR's report (report.json, report.md, plots) from DIR/predictions.jsonl; loads no model.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["input", "compare", "choices", "json_schema"])]
    pub report: Option<PathBuf>,
    /// Two runs side by side (their output folders, on the same items), with McNemar's paired test.
    #[arg(long, value_names = ["RESULTS_A", "RESULTS_B"], num_args = 2,
          conflicts_with_all = ["input", "report", "choices", "json_schema"])]
    pub compare: Vec<PathBuf>,
    /// Print the report (or the comparison) as one JSON object on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
    /// How a non-square image is made square (see `medgemma run --help`).
    #[arg(long = "image-fit", value_name = "HOW", value_enum, default_value_t = ImageFit::Pad)]
    pub image_fit: ImageFit,
    #[command(flatten)]
    pub dicom: DicomArgs,
    #[command(flatten)]
    pub series_select: SeriesArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub context: ContextArgs,
}

/// `medgemma serve`
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The address to listen on. Anything but a loopback address exposes the model (and what people send it) to
    /// the network: give it an --api-key.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1")]
    pub host: String,
    /// The port to listen on (0: any free port, printed on stderr).
    #[arg(long, value_name = "PORT", default_value_t = 8080)]
    pub port: u16,
    /// Requests answered together (continuous batching); each has the full context size (-c; serve's default is
    /// 4096 positions per request, the model's trained length if shorter).
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub parallel: u32,
    /// Requests that may wait for a free sequence; beyond them a request is answered 503 with Retry-After.
    #[arg(long, value_name = "N", default_value_t = 32, value_parser = clap::value_parser!(u32).range(0..=4096))]
    pub queue: u32,
    /// Require this key from every client (`Authorization: Bearer KEY`; /health is open). Also:
    /// MEDGEMMA_API_KEY.
    #[arg(
        long = "api-key",
        value_name = "KEY",
        env = "MEDGEMMA_API_KEY",
        hide_env_values = true
    )]
    pub api_key: Option<String>,
    /// A folder whose image files requests may name by absolute path (repeatable); otherwise images come only as
    /// data URLs (OpenAI) or base64 (ollama). Web URLs are always refused.
    #[arg(long = "allow-path", value_name = "DIR")]
    pub allow_paths: Vec<PathBuf>,
    /// The largest request body, in MiB (images are sent inside it).
    #[arg(long = "max-body-mb", value_name = "MIB", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub max_body_mb: u32,
    /// The most images one request may carry.
    #[arg(long = "max-images", value_name = "N", default_value_t = 8)]
    pub max_images: u32,
    /// How a non-square image is made square (see `medgemma run --help`).
    #[arg(long = "image-fit", value_name = "HOW", value_enum, default_value_t = ImageFit::Pad)]
    pub image_fit: ImageFit,
    /// Defaults for requests that do not say; -n/--max-tokens is also the most a request may ask for.
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub context: ContextArgs,
}

/// `medgemma chat`
#[derive(Debug, Clone, Args)]
pub struct ChatArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Images for the first message (PNG, JPEG, BMP, TIFF, WebP); /image attaches more later. Needs --mmproj.
    #[arg(long = "image", value_name = "FILE")]
    pub images: Vec<PathBuf>,
    /// How a non-square image is made square (see `medgemma run --help`).
    #[arg(long = "image-fit", value_name = "HOW", value_enum, default_value_t = ImageFit::Pad)]
    pub image_fit: ImageFit,
    #[command(flatten)]
    pub dicom: DicomArgs,
    /// A CT or MR series (a folder of DICOM files, or a multi-frame file) for the first message, laid out as in
    /// `run --series`; /series attaches one later.
    #[arg(long, value_name = "DIR|FILE")]
    pub series: Option<PathBuf>,
    #[command(flatten)]
    pub series_select: SeriesArgs,
    /// A system prompt, e.g. "You are a helpful medical assistant."; /system changes it later.
    #[arg(long, value_name = "TEXT")]
    pub system: Option<String>,
    /// Keep no input history on disk (also: MEDGEMMA_NO_HISTORY=1). Medical text may be sensitive.
    #[arg(long = "no-history")]
    pub no_history: bool,
    /// The shape of every answer; /set format changes it later.
    #[command(flatten)]
    pub answer_format: FormatArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub context: ContextArgs,
}

// Value parsers of the sampling flags: the bounds live in `settings`, shared with batch job fields.
fn non_negative_f32(s: &str) -> Result<f32, ValueError> {
    parse_f32(s, Allowed::ZeroOrMore)
}

fn positive_f32(s: &str) -> Result<f32, ValueError> {
    parse_f32(s, Allowed::MoreThanZero)
}

fn unit_interval(s: &str) -> Result<f32, ValueError> {
    parse_f32(s, Allowed::ZeroToOne)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bad_values_are_rejected() {
        for args in [
            &["medgemma", "run", "--temp", "-1", "q"][..],
            &["medgemma", "run", "--top-p", "1.5", "q"],
            &["medgemma", "run", "-n", "0", "q"],
            &["medgemma", "run", "--repeat-penalty", "0", "q"],
            &["medgemma", "run", "--messages", "c.json", "q"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?} should fail");
        }
        let ok = Cli::try_parse_from([
            "medgemma", "run", "-m", "x.gguf", "--image", "a.png", "--image", "b.png", "q",
        ])
        .unwrap();
        let Command::Run(run) = ok.command else {
            panic!("run expected")
        };
        assert_eq!(run.images.len(), 2);
        assert_eq!(run.sampling.settings().temperature, 0.0);
        let err = Cli::try_parse_from(["medgemma", "run", "--top-p", "1.5", "q"]).unwrap_err();
        assert!(
            err.to_string().contains("--top-p") && err.to_string().contains("must be a number between 0 and 1"),
            "{err}"
        );
        let err = Cli::try_parse_from(["medgemma", "run", "--temp", "1e39", "q"]).unwrap_err();
        assert!(err.to_string().contains("must be a number of 0 or more"), "{err}");
        let err = Cli::try_parse_from(["medgemma", "run", "-n", "0", "q"]).unwrap_err();
        assert!(err.to_string().contains("must be a whole number of 1 or more"), "{err}");
        let err = Cli::try_parse_from(["medgemma", "batch", "--output", "o", "--shard", "4/3"]).unwrap_err();
        assert!(err.to_string().contains("K must be between 1 and N"), "{err}");
    }

    #[test]
    fn quantize_types_and_info_files() {
        let q = Cli::try_parse_from(["medgemma", "quantize", "a.gguf", "b.gguf", "--type", "q4_k_m"]).unwrap();
        let Command::Quantize(q) = q.command else {
            panic!("quantize expected")
        };
        assert_eq!(q.quant_type, QuantType::Q4KM);
        assert_eq!(q.quant_type.name(), "Q4_K_M");
        let err = Cli::try_parse_from(["medgemma", "quantize", "a.gguf", "b.gguf", "--type", "q9"]).unwrap_err();
        assert!(
            err.to_string().contains("q4_k_m") && err.to_string().contains("bf16"),
            "{err}"
        );
        assert!(Cli::try_parse_from(["medgemma", "info"]).is_err());
        assert!(Cli::try_parse_from(["medgemma", "info", "a", "b", "c"]).is_err());
    }
}

/// `medgemma pull`
#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["name", "repo", "convert"])))]
pub struct PullArgs {
    /// A model of the registry, NAME[:QUANT] (quantisation default q4_k_m), e.g. medgemma-4b-it or
    /// medgemma-27b-text-it:q8_0; `medgemma list --available` shows them.
    #[arg(value_name = "NAME[:QUANT]")]
    pub name: Option<String>,
    /// Any Hugging Face repository holding GGUF files, OWNER/REPO (with --file).
    #[arg(long, value_name = "OWNER/REPO", requires = "file", conflicts_with_all = ["name", "convert"])]
    pub repo: Option<String>,
    /// The GGUF file of --repo to download.
    #[arg(long, value_name = "FILE.gguf", requires = "repo")]
    pub file: Option<String>,
    /// The vision projector of --repo to download with it.
    #[arg(long = "mmproj-file", value_name = "FILE.gguf", requires = "repo")]
    pub mmproj_file: Option<String>,
    /// Build a model here from a Hugging Face checkpoint, OWNER/REPO (e.g. google/medgemma-4b-it): download its
    /// safetensors, convert with scripts/convert_hf_to_gguf.py, quantise with --quant; `list` and -m then know it
    /// as NAME:QUANT.
    #[arg(long, value_name = "OWNER/REPO", conflicts_with = "name")]
    pub convert: Option<String>,
    /// The quantisation of --convert.
    #[arg(long, value_name = "TYPE", value_enum, default_value_t = QuantType::Q4KM, requires = "convert")]
    pub quant: QuantType,
    /// The name of a --convert build [default: the repository's name, e.g. medgemma-4b-it].
    #[arg(long = "name", value_name = "NAME", requires = "convert")]
    pub build_name: Option<String>,
    /// Use only the cache (also: HF_HUB_OFFLINE=1): check that the files are there, download nothing.
    #[arg(long)]
    pub offline: bool,
    /// CPU threads for --convert's quantisation [default: the CPUs available to this process].
    #[arg(short = 't', long, value_name = "N", value_parser = clap::value_parser!(i32).range(1..))]
    pub threads: Option<i32>,
    /// Show llama.cpp's own logs on stderr (--convert).
    #[arg(short = 'v', long)]
    pub verbose: bool,
}

/// `medgemma list`
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// Print one JSON array on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Show the registry's models (what `pull NAME[:QUANT]` knows), with approximate sizes, instead of the
    /// local ones.
    #[arg(long)]
    pub available: bool,
}

/// `medgemma doctor`
#[derive(Debug, Clone, Args)]
pub struct DoctorArgs {
    /// Print one JSON object on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `medgemma sandbox-proof` (hidden): enter the sandbox, then try what it must refuse.
#[derive(Debug, Clone, Args)]
pub struct SandboxProofArgs {
    /// A file the sandbox allows: it must still be readable.
    #[arg(long, value_name = "FILE")]
    pub allowed: PathBuf,
    /// A file outside the sandbox: reading it must be refused.
    #[arg(long, value_name = "FILE")]
    pub outside: PathBuf,
    /// A listening TCP address: connecting to it must be refused.
    #[arg(long, value_name = "HOST:PORT")]
    pub connect: String,
}

/// `medgemma cache`
#[derive(Debug, Clone, Args)]
pub struct CacheArgs {
    #[command(subcommand)]
    pub action: Option<CacheAction>,
    /// Print one JSON object on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, Subcommand)]
pub enum CacheAction {
    /// Show the folder, the number of entries, their size and the cap (the default).
    Show,
    /// Remove every entry (and unfinished writes); other files in the folder are left alone.
    Clear,
}

/// `medgemma rm`
#[derive(Debug, Clone, Args)]
pub struct RmArgs {
    /// The model to remove, NAME[:QUANT] as `medgemma list` shows it.
    #[arg(value_name = "NAME[:QUANT]", required = true)]
    pub names: Vec<String>,
}
