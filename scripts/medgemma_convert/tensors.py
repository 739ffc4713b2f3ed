"""Which checkpoint tensor becomes which GGUF tensor, with which shape, transform and output type.

Owns: our mapping from Hugging Face Gemma 3 / SigLIP names (transformers 4.5x and 5 layouts) to the names llama.cpp's
`gemma3` model and `clip` gemma3 projector load; the shapes they must have; the (1 + w) norm shift; the per-tensor
output type. Must not read tensor data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from gguf import GGMLQuantizationType as Q
from gguf.constants import GGML_QUANT_SIZES

from . import ConversionError
from .checkpoint import TensorRef
from .config import ModelConfig, TextParams, VisionParams

Log = Callable[[str], None]

TEXT_PREFIXES = ("language_model.model.", "model.language_model.")
CAUSAL_LM_PREFIX = "model."
VISION_PREFIXES = ("vision_tower.vision_model.", "model.vision_tower.vision_model.", "model.vision_tower.",
                   "vision_tower.")
PROJECTOR_PREFIXES = ("multi_modal_projector.", "model.multi_modal_projector.")
LM_HEADS = ("lm_head.weight", "language_model.lm_head.weight", "model.lm_head.weight")

# Hugging Face suffix -> (GGUF suffix, Gemma (1 + w) norm)
TEXT_GLOBAL = {"embed_tokens.weight": ("token_embd.weight", False), "norm.weight": ("output_norm.weight", True)}
TEXT_LAYER = {
    "input_layernorm.weight": ("attn_norm.weight", True),
    "self_attn.q_proj.weight": ("attn_q.weight", False),
    "self_attn.k_proj.weight": ("attn_k.weight", False),
    "self_attn.v_proj.weight": ("attn_v.weight", False),
    "self_attn.o_proj.weight": ("attn_output.weight", False),
    "self_attn.q_norm.weight": ("attn_q_norm.weight", True),
    "self_attn.k_norm.weight": ("attn_k_norm.weight", True),
    "post_attention_layernorm.weight": ("post_attention_norm.weight", True),
    "pre_feedforward_layernorm.weight": ("ffn_norm.weight", True),
    "post_feedforward_layernorm.weight": ("post_ffw_norm.weight", True),
    "mlp.gate_proj.weight": ("ffn_gate.weight", False),
    "mlp.up_proj.weight": ("ffn_up.weight", False),
    "mlp.down_proj.weight": ("ffn_down.weight", False),
}
VISION_GLOBAL = {
    "embeddings.patch_embedding.weight": "v.patch_embd.weight",
    "embeddings.patch_embedding.bias": "v.patch_embd.bias",
    "embeddings.position_embedding.weight": "v.position_embd.weight",
    "post_layernorm.weight": "v.post_ln.weight",
    "post_layernorm.bias": "v.post_ln.bias",
}
VISION_LAYER = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.out_proj": "attn_out", "layer_norm1": "ln1", "layer_norm2": "ln2",
    "mlp.fc1": "ffn_up", "mlp.fc2": "ffn_down",
}
# the soft-embedding norm is a Gemma RMS norm (1 + w); SigLIP's layer norms are not
PROJECTOR = {"mm_input_projection_weight": ("mm.input_projection.weight", False),
             "mm_soft_emb_norm.weight": ("mm.soft_emb_norm.weight", True)}
MMPROJ_F32_TENSORS = ("v.patch_embd.weight", "v.position_embd.weight")  # as llama.cpp's converter keeps them
MMPROJ_TRANSPOSED_TENSORS = ("mm.input_projection.weight",)  # clip.cpp uses ggml_cont(ggml_transpose(w)): never Q8_0


@dataclass(frozen=True)
class TensorPlan:
    source: TensorRef
    name: str
    shape: tuple[int, ...]
    qtype: Q
    add_one: bool

    @property
    def nbytes(self) -> int:
        block, size = GGML_QUANT_SIZES[self.qtype]
        return self.source.n_elements // block * size


@dataclass(frozen=True)
class MappedName:
    part: str  # "text", "vision" or "skip"
    name: str  # GGUF name, or why it is skipped
    add_one: bool = False


def text_shapes(t: TextParams) -> dict[str, tuple[int, ...]]:
    q, kv = t.head_count * t.head_dim, t.head_count_kv * t.head_dim
    shapes: dict[str, tuple[int, ...]] = {"token_embd.weight": (t.vocab_size, t.hidden_size),
                                          "output_norm.weight": (t.hidden_size,)}
    per_layer = {
        "attn_norm.weight": (t.hidden_size,), "attn_q.weight": (q, t.hidden_size), "attn_k.weight": (kv, t.hidden_size),
        "attn_v.weight": (kv, t.hidden_size), "attn_output.weight": (t.hidden_size, q),
        "attn_q_norm.weight": (t.head_dim,), "attn_k_norm.weight": (t.head_dim,),
        "post_attention_norm.weight": (t.hidden_size,), "ffn_norm.weight": (t.hidden_size,),
        "post_ffw_norm.weight": (t.hidden_size,), "ffn_gate.weight": (t.ffn_length, t.hidden_size),
        "ffn_up.weight": (t.ffn_length, t.hidden_size), "ffn_down.weight": (t.hidden_size, t.ffn_length),
    }
    for i in range(t.block_count):
        shapes.update({f"blk.{i}.{k}": v for k, v in per_layer.items()})
    if not t.tie_embeddings:
        shapes["output.weight"] = (t.vocab_size, t.hidden_size)
    return shapes


def vision_shapes(v: VisionParams) -> dict[str, tuple[int, ...]]:
    h, ff, n_pos = v.hidden_size, v.ffn_length, (v.image_size // v.patch_size) ** 2
    shapes: dict[str, tuple[int, ...]] = {
        "v.patch_embd.weight": (h, 3, v.patch_size, v.patch_size), "v.patch_embd.bias": (h,),
        "v.position_embd.weight": (n_pos, h), "v.post_ln.weight": (h,), "v.post_ln.bias": (h,),
        "mm.input_projection.weight": (h, v.projection_dim), "mm.soft_emb_norm.weight": (h,),
    }
    per_layer = {"attn_q": (h, h), "attn_k": (h, h), "attn_v": (h, h), "attn_out": (h, h), "ln1": None, "ln2": None,
                 "ffn_up": (ff, h), "ffn_down": (h, ff)}
    for i in range(v.block_count):
        for key, weight in per_layer.items():
            shapes[f"v.blk.{i}.{key}.weight"] = weight or (h,)
            shapes[f"v.blk.{i}.{key}.bias"] = (weight[0],) if weight else (h,)
    return shapes


def map_name(hf_name: str, cfg: ModelConfig) -> MappedName:
    if hf_name in LM_HEADS:
        if cfg.text.tie_embeddings:
            return MappedName("skip", "tied to the token embedding")
        return MappedName("text", "output.weight")
    for prefix in PROJECTOR_PREFIXES:
        if hf_name.startswith(prefix) and hf_name[len(prefix):] in PROJECTOR:
            name, add_one = PROJECTOR[hf_name[len(prefix):]]
            return MappedName("vision", name, add_one)
    for prefix in VISION_PREFIXES:
        if hf_name.startswith(prefix):
            return _map_vision(hf_name, hf_name[len(prefix):])
    prefixes = TEXT_PREFIXES if cfg.vision is not None else (CAUSAL_LM_PREFIX,)
    for prefix in prefixes:
        if hf_name.startswith(prefix):
            return _map_text(hf_name, hf_name[len(prefix):])
    raise ConversionError(f"unknown tensor {hf_name!r} in the checkpoint (not part of a {cfg.architecture})")


def _map_text(hf_name: str, rest: str) -> MappedName:
    if rest in TEXT_GLOBAL:
        name, add_one = TEXT_GLOBAL[rest]
        return MappedName("text", name, add_one)
    m = re.fullmatch(r"layers\.(\d+)\.(.+)", rest)
    if m and m.group(2) in TEXT_LAYER:
        name, add_one = TEXT_LAYER[m.group(2)]
        return MappedName("text", f"blk.{int(m.group(1))}.{name}", add_one)
    raise ConversionError(f"unknown text tensor {hf_name!r}")


def _map_vision(hf_name: str, rest: str) -> MappedName:
    if rest.startswith("head."):
        return MappedName("skip", "SigLIP pooling head, unused by Gemma 3")
    if rest in VISION_GLOBAL:
        return MappedName("vision", VISION_GLOBAL[rest])
    m = re.fullmatch(r"encoder\.layers\.(\d+)\.(.+)\.(weight|bias)", rest)
    if m and m.group(2) in VISION_LAYER:
        return MappedName("vision", f"v.blk.{int(m.group(1))}.{VISION_LAYER[m.group(2)]}.{m.group(3)}")
    raise ConversionError(f"unknown vision tensor {hf_name!r}")


def model_qtype(name: str, shape: tuple[int, ...], outtype: str, log: Log) -> Q:
    if len(shape) == 1 or outtype == "f32":
        return Q.F32
    if outtype == "f16":
        return Q.F16
    if outtype == "bf16":
        return Q.BF16
    return _q8_0_or_f16(name, shape, log)


def mmproj_qtype(name: str, shape: tuple[int, ...], outtype: str, log: Log) -> Q:
    """The vision file's type: 1-D tensors and MMPROJ_F32_TENSORS stay F32; matrices follow `outtype`.

    q8_0 applies the text model's rule (rows not a multiple of 32 fall back to F16, e.g. SigLIP-400M's ffn_down with
    rows of 4304) except for mm.input_projection.weight, which stays F16 as in llama.cpp's converter (ggml-org/
    llama.cpp#13025): clip.cpp's gemma3 projector multiplies by ggml_cont(ggml_transpose(w)), and copying a transposed
    block-quantised tensor moves whole 32-value blocks along the wrong axis, so a Q8_0 projection computes garbage
    without any error. BF16 (one value per block) transposes correctly, so bf16 keeps it BF16.
    """
    if len(shape) == 1 or outtype == "f32" or name in MMPROJ_F32_TENSORS:
        return Q.F32
    if outtype == "f16":
        return Q.F16
    if outtype == "bf16":
        return Q.BF16
    if name in MMPROJ_TRANSPOSED_TENSORS:
        log(f"{name}: clip.cpp transposes this matrix before use, which block-quantised types do not survive; "
            "written as F16 instead of Q8_0")
        return Q.F16
    return _q8_0_or_f16(name, shape, log)


def _q8_0_or_f16(name: str, shape: tuple[int, ...], log: Log) -> Q:
    """Q8_0 when a row (the last dimension: ggml's ne0) splits into whole 32-value blocks, else F16 (logged)."""
    block = GGML_QUANT_SIZES[Q.Q8_0][0]
    if shape[-1] % block != 0:
        log(f"{name}: row length {shape[-1]} is not a multiple of {block}, written as F16 instead of Q8_0")
        return Q.F16
    return Q.Q8_0


def plan_tensors(tensors: dict[str, TensorRef], cfg: ModelConfig, outtype: str, mmproj_outtype: str,
                 log: Log) -> tuple[list[TensorPlan], list[TensorPlan]]:
    """(text plans, vision plans) in GGUF order; refuses unknown, missing or misshapen tensors."""
    expected = {"text": text_shapes(cfg.text), "vision": vision_shapes(cfg.vision) if cfg.vision else {}}
    plans: dict[str, dict[str, TensorPlan]] = {"text": {}, "vision": {}}
    skipped: dict[str, list[str]] = {}
    for hf_name in sorted(tensors):
        mapped = map_name(hf_name, cfg)
        if mapped.part == "skip":
            skipped.setdefault(mapped.name, []).append(hf_name)
            continue
        ref = tensors[hf_name]
        want = expected[mapped.part].get(mapped.name)
        if want is None:
            raise ConversionError(f"tensor {hf_name!r} maps to {mapped.name!r}, which config.json does not "
                                  "account for (layer index beyond num_hidden_layers?)")
        if ref.shape != want:
            raise ConversionError(f"tensor {hf_name!r} has shape {list(ref.shape)}, config.json implies {list(want)}")
        if mapped.name in plans[mapped.part]:
            raise ConversionError(f"two checkpoint tensors map to {mapped.name!r} (second: {hf_name!r})")
        if mapped.part == "text":
            qtype = model_qtype(mapped.name, ref.shape, outtype, log)
        else:
            qtype = mmproj_qtype(mapped.name, ref.shape, mmproj_outtype, log)
        plans[mapped.part][mapped.name] = TensorPlan(ref, mapped.name, ref.shape, qtype, mapped.add_one)
    for reason, names in skipped.items():
        log(f"skipping {len(names)} tensor(s) ({reason}), e.g. {names[0]}")
    for part in ("text", "vision"):
        missing = sorted(set(expected[part]) - set(plans[part]), key=_natural_key)
        if missing:
            raise ConversionError(f"the checkpoint lacks {len(missing)} {part} tensor(s), e.g. {missing[0]!r}")
    return ([plans["text"][n] for n in sorted(plans["text"], key=_natural_key)],
            [plans["vision"][n] for n in sorted(plans["vision"], key=_natural_key)])


def _natural_key(name: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))
