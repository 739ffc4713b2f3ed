"""Reading a Gemma 3 checkpoint's config files into the hyperparameters llama.cpp needs.

Owns: config.json (transformers 4.5x and 5 layouts), preprocessor_config.json and processor_config.json; the checks
that refuse a checkpoint llama.cpp's `gemma3` graph or `clip` gemma3 projector would compute differently.
Must not read tensors or the tokenizer.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from . import ConversionError

SUPPORTED_ARCHITECTURES = ("Gemma3ForConditionalGeneration", "Gemma3ForCausalLM")

# transformers' Gemma3TextConfig defaults, used only for keys a config.json leaves out.
TEXT_DEFAULTS: dict[str, Any] = {
    "vocab_size": 262208,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "head_dim": 256,
    "hidden_activation": "gelu_pytorch_tanh",
    "max_position_embeddings": 131072,
    "rms_norm_eps": 1e-6,
    "rope_theta": 1_000_000.0,
    "rope_local_base_freq": 10_000.0,
    "query_pre_attn_scalar": 256,
    "sliding_window_pattern": 6,
}
REQUIRED_TEXT_KEYS = ("hidden_size", "intermediate_size", "num_hidden_layers")
REQUIRED_VISION_KEYS = ("image_size", "patch_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                        "num_attention_heads")
PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")  # read for the vision part, if present
DEFAULT_TOKENS_PER_IMAGE = 256
SUPPORTED_ACTIVATION = "gelu_pytorch_tanh"

Log = Callable[[str], None]


@dataclass(frozen=True)
class RopeParams:
    freq_base: float          # global (full-attention) layers
    freq_base_swa: float      # sliding-window layers
    scaling_type: str         # "none" or "linear" (global layers only)
    scaling_factor: float     # 1.0 when scaling_type is "none"


@dataclass(frozen=True)
class TextParams:
    vocab_size: int
    context_length: int
    hidden_size: int
    ffn_length: int
    block_count: int
    head_count: int
    head_count_kv: int
    head_dim: int
    rms_eps: float
    rope: RopeParams
    sliding_window: int        # 0 when no layer slides
    swa_layers: tuple[bool, ...]
    final_logit_softcapping: float  # 0.0 when unset
    tie_embeddings: bool


@dataclass(frozen=True)
class VisionParams:
    image_size: int
    patch_size: int
    hidden_size: int
    ffn_length: int
    block_count: int
    head_count: int
    layer_norm_eps: float
    projection_dim: int
    tokens_per_image: int
    scale_factor: int
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]


@dataclass(frozen=True)
class ModelConfig:
    architecture: str
    text: TextParams
    vision: VisionParams | None
    raw: dict[str, Any]


def read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ConversionError(f"{path} is not valid JSON: {e}") from None


def load_config(checkpoint: Path, log: Log) -> ModelConfig:
    """Read and check every config file of `checkpoint`."""
    path = checkpoint / "config.json"
    if not path.is_file():
        raise ConversionError(f"missing config.json in {checkpoint} (is this a Hugging Face checkpoint folder?)")
    raw = read_json(path)
    architecture = _architecture(raw)
    if architecture == "Gemma3ForConditionalGeneration":
        text_cfg = raw.get("text_config")
        if not isinstance(text_cfg, dict):
            raise ConversionError("config.json: Gemma3ForConditionalGeneration without a text_config section")
    else:
        text_cfg = raw
    text = parse_text(text_cfg, raw, log)
    vision = None
    if architecture == "Gemma3ForConditionalGeneration":
        vision = parse_vision(checkpoint, raw, text.hidden_size, log)
    return ModelConfig(architecture, text, vision, raw)


def _architecture(raw: dict[str, Any]) -> str:
    archs = raw.get("architectures")
    supported = ", ".join(SUPPORTED_ARCHITECTURES)
    if not isinstance(archs, list) or not archs:
        raise ConversionError(f"config.json names no architecture (\"architectures\"); supported: {supported}")
    if len(archs) != 1 or archs[0] not in SUPPORTED_ARCHITECTURES:
        raise ConversionError(f"unsupported architecture {archs} in config.json; supported: {supported}")
    return archs[0]


def _value(cfg: dict[str, Any], key: str, log: Log, section: str = "text_config") -> Any:
    value = cfg.get(key)
    if value is None:
        if key in REQUIRED_TEXT_KEYS or key not in TEXT_DEFAULTS:
            raise ConversionError(f"config.json ({section}) lacks required key {key!r}")
        value = TEXT_DEFAULTS[key]
        log(f"config: {key} not set, using the transformers default {value}")
    return value


def parse_text(cfg: dict[str, Any], top: dict[str, Any], log: Log) -> TextParams:
    for key in REQUIRED_TEXT_KEYS:
        if cfg.get(key) is None:
            raise ConversionError(f"config.json lacks required text key {key!r}")
    hidden = int(cfg["hidden_size"])
    n_layers = int(cfg["num_hidden_layers"])
    heads = int(_value(cfg, "num_attention_heads", log))
    heads_kv = int(_value(cfg, "num_key_value_heads", log))
    head_dim = int(_value(cfg, "head_dim", log))
    if heads % heads_kv != 0:
        raise ConversionError(f"config.json: num_attention_heads {heads} is not a multiple of "
                              f"num_key_value_heads {heads_kv}")
    _check_unsupported_features(cfg, log)
    _check_attention_scale(cfg, hidden, heads, head_dim, n_layers, log)
    swa_layers = parse_swa_layers(cfg, n_layers, log)
    sliding_window = 0
    if any(swa_layers):
        sliding_window = cfg.get("sliding_window")
        if not isinstance(sliding_window, int) or sliding_window <= 0:
            raise ConversionError(f"config.json: sliding-window layers present but sliding_window is "
                                  f"{sliding_window!r}")
    softcap = cfg.get("final_logit_softcapping") or 0.0
    tie = top.get("tie_word_embeddings", cfg.get("tie_word_embeddings", True))
    return TextParams(
        vocab_size=int(_value(cfg, "vocab_size", log)),
        context_length=int(_value(cfg, "max_position_embeddings", log)),
        hidden_size=hidden,
        ffn_length=int(cfg["intermediate_size"]),
        block_count=n_layers,
        head_count=heads,
        head_count_kv=heads_kv,
        head_dim=head_dim,
        rms_eps=float(_value(cfg, "rms_norm_eps", log)),
        rope=parse_rope(cfg, log),
        sliding_window=sliding_window,
        swa_layers=swa_layers,
        final_logit_softcapping=float(softcap),
        tie_embeddings=bool(tie),
    )


def _check_unsupported_features(cfg: dict[str, Any], log: Log) -> None:
    activation = cfg.get("hidden_activation") or cfg.get("hidden_act") or SUPPORTED_ACTIVATION
    if activation != SUPPORTED_ACTIVATION:
        raise ConversionError(f"config.json: hidden activation {activation!r} is not supported; llama.cpp's gemma3 "
                              f"uses {SUPPORTED_ACTIVATION} (tanh-approximated GELU)")
    if cfg.get("attn_logit_softcapping") is not None:
        raise ConversionError(f"config.json: attn_logit_softcapping={cfg['attn_logit_softcapping']} is set, but "
                              "llama.cpp's gemma3 graph does not apply attention softcapping")
    if cfg.get("attention_bias"):
        raise ConversionError("config.json: attention_bias=true is not supported by llama.cpp's gemma3")
    if cfg.get("use_bidirectional_attention"):
        raise ConversionError("config.json: use_bidirectional_attention=true (an embedding model) is not supported")


def _check_attention_scale(cfg: dict[str, Any], hidden: int, heads: int, head_dim: int, n_layers: int,
                           log: Log) -> None:
    """llama.cpp ignores query_pre_attn_scalar: it uses head_dim, or hidden/heads for 62-layer models."""
    scalar = float(_value(cfg, "query_pre_attn_scalar", log))
    if n_layers == 62:
        expected, rule = hidden // heads, f"hidden_size/num_attention_heads = {hidden}/{heads} for 62-layer models"
    else:
        expected, rule = head_dim, "head_dim"
    if not math.isclose(scalar, expected, rel_tol=1e-6):
        raise ConversionError(
            f"config.json: query_pre_attn_scalar={scalar:g}, but llama.cpp's gemma3 ignores it and scales attention "
            f"by 1/sqrt({expected}) ({rule}); the GGUF would silently compute a different model")


def parse_swa_layers(cfg: dict[str, Any], n_layers: int, log: Log) -> tuple[bool, ...]:
    """Per-layer sliding-window flags from `layer_types` (transformers 5) or `sliding_window_pattern` (4.5x)."""
    pattern = cfg.get("sliding_window_pattern")
    from_pattern = None
    if pattern is not None:
        if not isinstance(pattern, int) or pattern < 1:
            raise ConversionError(f"config.json: sliding_window_pattern {pattern!r} is not a positive integer")
        from_pattern = tuple(bool((i + 1) % pattern) for i in range(n_layers))
    layer_types = cfg.get("layer_types")
    if layer_types is None:
        if from_pattern is not None:
            return from_pattern
        default = cfg.get("_sliding_window_pattern", TEXT_DEFAULTS["sliding_window_pattern"])
        log(f"config: neither layer_types nor sliding_window_pattern set, using pattern {default}")
        return tuple(bool((i + 1) % default) for i in range(n_layers))
    if not isinstance(layer_types, list) or len(layer_types) != n_layers:
        raise ConversionError(f"config.json: layer_types has {len(layer_types) if isinstance(layer_types, list) else '?'}"
                              f" entries for {n_layers} layers")
    known = {"sliding_attention", "full_attention"}
    for i, kind in enumerate(layer_types):
        if kind not in known:
            raise ConversionError(f"config.json: layer_types[{i}] = {kind!r} cannot be represented in llama.cpp's "
                                  f"gemma3 (only {sorted(known)})")
    from_types = tuple(kind == "sliding_attention" for kind in layer_types)
    if from_pattern is not None and from_pattern != from_types:
        raise ConversionError(f"config.json: layer_types and sliding_window_pattern={pattern} disagree")
    return from_types


def parse_rope(cfg: dict[str, Any], log: Log) -> RopeParams:
    """Global and sliding rope from `rope_parameters` (transformers 5) or rope_theta/rope_scaling (4.5x)."""
    legacy_full = {"rope_theta": cfg.get("rope_theta"), **(cfg.get("rope_scaling") or {})}
    legacy_sliding = {"rope_theta": cfg.get("rope_local_base_freq"), "rope_type": "default"}
    params = cfg.get("rope_parameters")
    if params is None:
        full, sliding = legacy_full, legacy_sliding
    elif "full_attention" in params or "sliding_attention" in params:
        full, sliding = params.get("full_attention") or {}, params.get("sliding_attention") or legacy_sliding
    else:
        full, sliding = params, legacy_sliding
    scaling_type, factor = _scaling(full, "full-attention")
    if cfg.get("rope_scaling") and params is not None and _scaling(legacy_full, "rope_scaling") != (scaling_type, factor):
        raise ConversionError("config.json: rope_scaling and rope_parameters disagree")
    swa_type, swa_factor = _scaling(sliding, "sliding-window")
    if swa_type != "none" and swa_factor != 1.0:
        raise ConversionError(f"config.json: rope scaling {swa_type} x{swa_factor} on sliding-window layers cannot be "
                              "expressed: llama.cpp applies no rope scaling to them")
    for section in (cfg, full, sliding):
        prf = section.get("partial_rotary_factor")
        if prf not in (None, 1, 1.0):
            raise ConversionError(f"config.json: partial_rotary_factor={prf} is not supported by llama.cpp's gemma3")
    base = full.get("rope_theta")
    if base is None:
        base = TEXT_DEFAULTS["rope_theta"]
        log(f"config: global rope_theta not set, using the transformers default {base}")
    base_swa = sliding.get("rope_theta")
    if base_swa is None:
        base_swa = TEXT_DEFAULTS["rope_local_base_freq"]
        log(f"config: local rope base not set, using the transformers default {base_swa}")
    return RopeParams(float(base), float(base_swa), scaling_type, factor)


def _scaling(section: dict[str, Any], what: str) -> tuple[str, float]:
    kind = section.get("rope_type", section.get("type", "default"))
    if kind in (None, "default", "none"):
        return "none", 1.0
    if kind == "linear":
        factor = section.get("factor")
        if not isinstance(factor, (int, float)) or factor <= 0:
            raise ConversionError(f"config.json: linear rope scaling ({what}) without a positive factor")
        return "linear", float(factor)
    raise ConversionError(f"config.json: rope scaling type {kind!r} ({what}) is not supported; llama.cpp's gemma3 "
                          "conversion here supports only linear scaling")


def parse_vision(checkpoint: Path, raw: dict[str, Any], text_hidden: int, log: Log) -> VisionParams:
    """Vision parameters from config.json (`raw`) and the processor files found in `checkpoint`."""
    files = {name: read_json(checkpoint / name) for name in PROCESSOR_FILES if (checkpoint / name).is_file()}
    return vision_params(raw, files, text_hidden, log, where=str(checkpoint))


def vision_params(raw: dict[str, Any], processor_files: dict[str, Any], text_hidden: int, log: Log,
                  where: str) -> VisionParams:
    """The checks and values of parse_vision, given the processor files' contents by file name (`where` names the
    folder they came from in error messages)."""
    vc = raw.get("vision_config")
    if not isinstance(vc, dict):
        raise ConversionError("config.json: Gemma3ForConditionalGeneration without a vision_config section")
    for key in REQUIRED_VISION_KEYS:
        if vc.get(key) is None:
            raise ConversionError(f"config.json lacks required vision_config key {key!r}")
    activation = vc.get("hidden_act") or SUPPORTED_ACTIVATION
    if activation != SUPPORTED_ACTIVATION:
        raise ConversionError(f"config.json: vision hidden_act {activation!r} is not supported; llama.cpp's clip "
                              f"uses {SUPPORTED_ACTIVATION}")
    if vc.get("num_channels", 3) != 3:
        raise ConversionError(f"config.json: vision num_channels={vc['num_channels']} (llama.cpp expects 3)")
    image_size, patch_size = int(vc["image_size"]), int(vc["patch_size"])
    tokens = tokens_per_image(raw, processor_files, log)
    scale = projector_scale_factor(image_size, patch_size, tokens)
    mean, std = image_normalisation(processor_files, image_size, where)
    return VisionParams(
        image_size=image_size,
        patch_size=patch_size,
        hidden_size=int(vc["hidden_size"]),
        ffn_length=int(vc["intermediate_size"]),
        block_count=int(vc["num_hidden_layers"]),
        head_count=int(vc["num_attention_heads"]),
        layer_norm_eps=float(vc.get("layer_norm_eps", 1e-6)),
        projection_dim=text_hidden,
        tokens_per_image=tokens,
        scale_factor=scale,
        image_mean=mean,
        image_std=std,
    )


def tokens_per_image(raw: dict[str, Any], processor_files: dict[str, Any], log: Log) -> int:
    """Image tokens per image from every file that states it; they must agree."""
    found: dict[str, int] = {}
    if raw.get("mm_tokens_per_image") is not None:
        found["config.json mm_tokens_per_image"] = int(raw["mm_tokens_per_image"])
    for name in PROCESSOR_FILES:
        value = (processor_files.get(name) or {}).get("image_seq_length")
        if value is not None:
            found[f"{name} image_seq_length"] = int(value)
    if not found:
        log(f"config: no image token count found, using the transformers default {DEFAULT_TOKENS_PER_IMAGE}")
        return DEFAULT_TOKENS_PER_IMAGE
    if len(set(found.values())) > 1:
        detail = ", ".join(f"{k}={v}" for k, v in found.items())
        raise ConversionError(f"inconsistent image token counts: {detail}")
    return next(iter(found.values()))


def projector_scale_factor(image_size: int, patch_size: int, tokens: int) -> int:
    """The average-pooling kernel llama.cpp reads as clip.vision.projector.scale_factor (n_merge)."""
    if image_size % patch_size != 0:
        raise ConversionError(f"vision image_size {image_size} is not a multiple of patch_size {patch_size}")
    per_side = math.isqrt(tokens)
    if per_side * per_side != tokens:
        raise ConversionError(f"image token count {tokens} is not a square number (the projector pools a square grid)")
    patches = image_size // patch_size
    if per_side == 0 or patches % per_side != 0:
        raise ConversionError(f"{patches}x{patches} patches cannot be pooled to {per_side}x{per_side} image tokens "
                              f"(patches per side must be divisible by tokens per side)")
    return patches // per_side


def image_normalisation(processor_files: dict[str, Any], image_size: int,
                        where: str) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    pre = processor_files.get("preprocessor_config.json")
    if pre is None:
        raise ConversionError(f"missing preprocessor_config.json in {where} (needed for image_mean/image_std)")
    if pre.get("do_normalize") is False:
        raise ConversionError("preprocessor_config.json: do_normalize=false is not supported (llama.cpp always "
                              "normalises with image_mean/image_std)")
    rescale = pre.get("rescale_factor", 1 / 255)
    if not math.isclose(float(rescale), 1 / 255, rel_tol=1e-4):
        raise ConversionError(f"preprocessor_config.json: rescale_factor={rescale} (llama.cpp scales pixels by 1/255)")
    size = pre.get("size") or {}
    for side in ("height", "width"):
        if side in size and int(size[side]) != image_size:
            raise ConversionError(f"preprocessor_config.json: size.{side}={size[side]} differs from vision "
                                  f"image_size {image_size}")
    mean, std = pre.get("image_mean"), pre.get("image_std")
    for key, value in (("image_mean", mean), ("image_std", std)):
        if not isinstance(value, list) or len(value) != 3:
            raise ConversionError(f"preprocessor_config.json: {key} must be a list of 3 numbers, got {value!r}")
    return (tuple(float(v) for v in mean), tuple(float(v) for v in std))  # type: ignore[return-value]
