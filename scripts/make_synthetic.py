#!/usr/bin/env python3
"""Write random-weight GGUFs with the exact geometry of medgemma-4b-it (text model and vision tower) or of
medgemma-27b-text-it.

The files are laid out exactly as scripts/convert_hf_to_gguf.py would write them: a Hugging Face style config dict
(and, for the 4B, the processor files' contents) is fed through the converter's own config parsing
(medgemma_convert.config.parse_text / vision_params), the Hugging Face tensor names implied by that config go through
the converter's name mapping, shape checks and per-tensor types (medgemma_convert.tensors.plan_tensors), the metadata
is written by medgemma_convert.metadata.add_text_metadata / add_mmproj_metadata and the files by
medgemma_convert.writer.write_gguf. Only the source of the numbers differs: instead of safetensors rows, each tensor
is drawn chunk by chunk (memory stays at --jobs chunks whatever the model size; the chunks are drawn and encoded on
--jobs threads, and each chunk has its own seed, so the file is the same for any --jobs) from fixed seeds:

  text model     every tensor N(0, 0.02); norm weights get the converter's (1 + w) shift, so they end up around 1.
  vision tower   (SigLIP-400M at 896 px, 27 layers, and the Gemma 3 projector to the text width 2560) matrices,
                 biases and position embeddings N(0, 0.02); SigLIP's layer-norm weights N(1, 0.02) (stored as is);
                 the projector's soft_emb_norm N(0, 0.02) + the converter's (1 + w) shift. In a numpy forward of this
                 initialisation the residual stream grows slowly through the 27 pre-norm layers (std 0.3 -> 3.3,
                 max about 15) and the image embeddings come out with a standard deviation of about 0.7, no NaN or
                 blow-up; much of that is common to all tokens (as in any random-weight tower), but a flat and a
                 noise image give embeddings that differ by about their own size. Sane input for timing the tower
                 and for measuring how much f16/bf16/q8_0 move the embeddings against f32. The vision draws do not
                 depend on --mmproj-outtype, so the f16, bf16 and q8_0 files hold the f32 file's weights rounded.

The vocabulary is synthetic but SentencePiece-shaped ("llama" tokenizer model): Gemma's special tokens at their real
ids (typed CONTROL), the 256 byte tokens <0x00>..<0xFF> (typed BYTE) for byte fallback, and filler pieces (letters,
short letter combinations, "▁"-prefixed English words) with descending scores so that ordinary English text
tokenises. Generated text is garbage; the point is a model of the real size and shape for speed and memory tests.

Flags: --out writes the text model (--outtype, default f16), --mmproj-out the vision tower (4b only;
--mmproj-outtype, default f16); give either or both, so the mmproj can be written without rewriting the text model.
The two files pair in llama.cpp (the projection width equals the text hidden size).

Examples:
    python scripts/make_synthetic.py --out models/synthetic-medgemma-4b-f16.gguf
    python scripts/make_synthetic.py --mmproj-out models/synthetic-mmproj-4b-f32.gguf --mmproj-outtype f32
    python scripts/make_synthetic.py --out models/synthetic-medgemma-4b-f16.gguf \\
        --mmproj-out models/synthetic-mmproj-4b-f16.gguf
    python scripts/make_synthetic.py --variant 27b-text --out models/synthetic-medgemma-27b-text-f16.gguf
"""

from __future__ import annotations

import argparse
import itertools
import os
import string
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gguf.constants import TokenType  # noqa: E402

from medgemma_convert import ConversionError, writer  # noqa: E402
from medgemma_convert.checkpoint import TensorRef  # noqa: E402
from medgemma_convert.config import ModelConfig, parse_text, vision_params  # noqa: E402
from medgemma_convert.metadata import CLIP_ARCH, TEXT_ARCH, add_mmproj_metadata, add_text_metadata  # noqa: E402
from medgemma_convert.tensors import (CAUSAL_LM_PREFIX, PROJECTOR, PROJECTOR_PREFIXES, TEXT_GLOBAL,  # noqa: E402
                                      TEXT_LAYER, TEXT_PREFIXES, VISION_GLOBAL, VISION_LAYER, VISION_PREFIXES,
                                      TensorPlan, map_name, plan_tensors, text_shapes, vision_shapes)
from medgemma_convert.tokenizer import Vocabulary  # noqa: E402
from medgemma_convert.writer import clean_up_on_sigterm, progress, write_gguf  # noqa: E402

STD = 0.02
CHUNK_ELEMENTS = 16 * 1024 * 1024
OUTTYPES = ("f32", "f16", "bf16", "q8_0")
MMPROJ_OUTTYPES = ("f32", "f16", "bf16", "q8_0")
TEXT_SEED_STREAM, VISION_SEED_STREAM = 0, 1  # each chunk draws from default_rng([seed, stream, crc32(name), row])

# The Hugging Face text configs (as in the published config.json files, transformers 4.5x layout).
TEXT_CONFIGS: dict[str, dict[str, Any]] = {
    "4b": {
        "hidden_size": 2560, "intermediate_size": 10240, "num_hidden_layers": 34, "num_attention_heads": 8,
        "num_key_value_heads": 4, "head_dim": 256, "vocab_size": 262208, "max_position_embeddings": 131072,
        "rms_norm_eps": 1e-6, "hidden_activation": "gelu_pytorch_tanh", "query_pre_attn_scalar": 256,
        "rope_theta": 1_000_000.0, "rope_scaling": {"rope_type": "linear", "factor": 8.0},
        "rope_local_base_freq": 10_000.0, "sliding_window": 1024, "sliding_window_pattern": 6,
        "final_logit_softcapping": None, "attn_logit_softcapping": None, "attention_bias": False,
    },
    "27b-text": {
        "hidden_size": 5376, "intermediate_size": 21504, "num_hidden_layers": 62, "num_attention_heads": 32,
        "num_key_value_heads": 16, "head_dim": 128, "vocab_size": 262144, "max_position_embeddings": 131072,
        "rms_norm_eps": 1e-6, "hidden_activation": "gelu_pytorch_tanh", "query_pre_attn_scalar": 168,
        "rope_theta": 1_000_000.0, "rope_scaling": {"rope_type": "linear", "factor": 8.0},
        "rope_local_base_freq": 10_000.0, "sliding_window": 1024, "sliding_window_pattern": 6,
        "final_logit_softcapping": None, "attn_logit_softcapping": None, "attention_bias": False,
    },
}
# medgemma-4b-it's vision part as published: config.json's vision_config (SigLIP-400M at 896 px; layer_norm_eps and
# hidden_act are SiglipVisionConfig's defaults, written out) and the processor files' contents.
VISION_CONFIG: dict[str, Any] = {
    "hidden_size": 1152, "image_size": 896, "intermediate_size": 4304, "model_type": "siglip_vision_model",
    "num_attention_heads": 16, "num_hidden_layers": 27, "patch_size": 14, "vision_use_head": False,
    "layer_norm_eps": 1e-6, "hidden_act": "gelu_pytorch_tanh",
}
MM_TOKENS_PER_IMAGE = 256
PROCESSOR_FILES: dict[str, dict[str, Any]] = {
    "preprocessor_config.json": {
        "do_convert_rgb": None, "do_normalize": True, "do_pan_and_scan": None, "do_rescale": True, "do_resize": True,
        "image_mean": [0.5, 0.5, 0.5], "image_processor_type": "Gemma3ImageProcessor",
        "image_seq_length": MM_TOKENS_PER_IMAGE, "image_std": [0.5, 0.5, 0.5], "processor_class": "Gemma3Processor",
        "resample": 2, "rescale_factor": 1 / 255, "size": {"height": 896, "width": 896},
    },
    "processor_config.json": {"image_seq_length": MM_TOKENS_PER_IMAGE, "processor_class": "Gemma3Processor"},
}
ARCHITECTURES = {"4b": "Gemma3ForConditionalGeneration", "27b-text": "Gemma3ForCausalLM"}
NAMES = {"4b": "synthetic-medgemma-4b-it", "27b-text": "synthetic-medgemma-27b-text-it"}

# Gemma 3's special tokens at their real ids (the image soft token only exists in the 262208-entry vocabulary).
SPECIAL_TOKENS = {0: "<pad>", 1: "<eos>", 2: "<bos>", 3: "<unk>", 4: "<mask>", 105: "<start_of_turn>",
                  106: "<end_of_turn>", 255999: "<start_of_image>", 256000: "<end_of_image>",
                  262144: "<image_soft_token>"}
SPECIAL_IDS = {"pad": 0, "eos": 1, "bos": 2, "unk": 3, "eot": 106}
CHAT_TEMPLATE = (
    "{{ bos_token }}{%- if messages[0]['role'] == 'system' -%}{%- set first_user_prefix = messages[0]['content'] + "
    "'\n\n' -%}{%- set loop_messages = messages[1:] -%}{%- else -%}{%- set first_user_prefix = \"\" -%}"
    "{%- set loop_messages = messages -%}{%- endif -%}{%- for message in loop_messages -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else \"\") }}"
    "{{ message['content'] | trim }}{{ '<end_of_turn>\n' }}{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)
WORDS = (
    "the of and to in a is that for it as was with be by on not he this are or his from at which but have an they "
    "you were her she there been one all we their has would when if so what no can more out up about into do will "
    "patient patients disease sepsis infection blood pressure heart lung kidney liver brain pain fever treatment "
    "diagnosis symptoms symptom cause causes risk acute chronic clinical medical doctor hospital care therapy drug "
    "dose dosage antibiotic antibiotics cancer tumor diabetes insulin glucose asthma pneumonia stroke attack failure "
    "cells cell tissue organ organs syndrome condition common signs sign test tests scan image x ray chest how why "
    "who where should used use first line normal high low level levels rate effect effects side management children "
    "adult adults women men age years day days week weeks hour hours mg kg body skin bone bones muscle nerve virus "
    "bacteria bacterial viral immune system response severe mild moderate early late stage type between difference "
    "hypertension hypotension anemia vaccine vaccination surgery emergency intensive unit monitor oxygen breathing"
).split()


def hf_config(variant: str) -> dict[str, Any]:
    """A config.json-shaped dict: nested text_config and vision_config for the multimodal 4B, flat for the 27B."""
    text = dict(TEXT_CONFIGS[variant])
    if ARCHITECTURES[variant] == "Gemma3ForConditionalGeneration":
        return {"architectures": [ARCHITECTURES[variant]], "model_type": "gemma3", "text_config": text,
                "vision_config": dict(VISION_CONFIG), "mm_tokens_per_image": MM_TOKENS_PER_IMAGE,
                "boi_token_index": 255999, "eoi_token_index": 256000, "image_token_index": 262144,
                "tie_word_embeddings": True}
    return {"architectures": [ARCHITECTURES[variant]], "model_type": "gemma3_text", "tie_word_embeddings": True,
            **text}


def model_config(raw: dict[str, Any]) -> ModelConfig:
    """The converter's own parsing and checks: the text part, and the vision part where the config has one."""
    text_cfg = raw.get("text_config", raw)
    text = parse_text(text_cfg, raw, progress)
    vision = None
    if "vision_config" in raw:
        vision = vision_params(raw, PROCESSOR_FILES, text.hidden_size, progress, where="make_synthetic.py")
    return ModelConfig(raw["architectures"][0], text, vision, raw)


def hf_tensor_names(cfg: ModelConfig) -> list[str]:
    """The Hugging Face names a checkpoint of this geometry holds, from the converter's mapping tables (the layout of
    the real releases: `language_model.model.*`, `vision_tower.vision_model.*`, `multi_modal_projector.*`)."""
    prefix = TEXT_PREFIXES[0] if cfg.vision is not None else CAUSAL_LM_PREFIX
    names = [prefix + k for k in TEXT_GLOBAL]
    for i in range(cfg.text.block_count):
        names += [f"{prefix}layers.{i}.{k}" for k in TEXT_LAYER]
    if cfg.vision is not None:
        vision, projector = VISION_PREFIXES[0], PROJECTOR_PREFIXES[0]
        names += [vision + k for k in VISION_GLOBAL]
        for i in range(cfg.vision.block_count):
            names += [f"{vision}encoder.layers.{i}.{k}.{kind}" for k in VISION_LAYER for kind in ("weight", "bias")]
        names += [projector + k for k in PROJECTOR]
    return names


def synthetic_refs(cfg: ModelConfig) -> dict[str, TensorRef]:
    """Fake tensor references (no file behind them) with the shapes the converter expects for `cfg`."""
    shapes = {"text": text_shapes(cfg.text), "vision": vision_shapes(cfg.vision) if cfg.vision else {}}
    refs = {}
    for hf_name in hf_tensor_names(cfg):
        mapped = map_name(hf_name, cfg)
        shape = shapes[mapped.part][mapped.name]
        n = int(np.prod(shape, dtype=np.int64))
        refs[hf_name] = TensorRef(hf_name, Path("/dev/null"), "F32", shape, 0, n * 4)
    return refs


@dataclass(frozen=True)
class SyntheticPlan:
    """The converter's view of a synthetic checkpoint: its config and the GGUF tensors of each output file."""
    cfg: ModelConfig
    text: list[TensorPlan]
    vision: list[TensorPlan]  # empty for a text-only variant


def plan_synthetic(variant: str, outtype: str = "f16", mmproj_outtype: str = "f16") -> SyntheticPlan:
    """Names, shapes, types and (1 + w) flags exactly as the converter would plan a checkpoint of `variant`."""
    cfg = model_config(hf_config(variant))
    # plan_tensors applies the converter's name mapping, shape checks, per-tensor types and (1 + w) norm flags
    text, vision = plan_tensors(synthetic_refs(cfg), cfg, outtype, mmproj_outtype, progress)
    return SyntheticPlan(cfg, text, vision)


def text_init(plan: TensorPlan) -> tuple[float, float]:
    """(mean, std) of a text tensor's draws: all N(0, STD); norms become ~1 through the converter's (1 + w)."""
    return 0.0, STD


def vision_init(plan: TensorPlan) -> tuple[float, float]:
    """(mean, std) of a vision tensor's draws: SigLIP's layer-norm weights (1-D weights stored without the Gemma
    (1 + w) shift: ln1, ln2, post_ln) around 1, everything else around 0 (soft_emb_norm gets the converter's +1)."""
    if len(plan.shape) == 1 and plan.name.endswith(".weight") and not plan.add_one:
        return 1.0, STD
    return 0.0, STD


def random_chunks(ref: TensorRef, key: tuple[int, ...], mean: float = 0.0,
                  std: float = STD) -> Iterator[Callable[[], np.ndarray]]:
    """Stand-in for the checkpoint's rows: N(mean, std) float32 rows, a bounded chunk at a time, each chunk drawn
    (when called, on whichever thread) from its own generator, seeded by `key`, the tensor's name and the chunk's
    place, so the numbers do not depend on --jobs, on the other tensors or on the output type."""
    row_len = ref.shape[-1] if ref.shape else 1
    n_rows = ref.n_elements // row_len
    step = max(1, CHUNK_ELEMENTS // row_len)
    name = zlib.crc32(ref.name.encode())

    def draw(start: int) -> np.ndarray:
        rng = np.random.default_rng([*key, name, start])
        rows = rng.standard_normal((min(step, n_rows - start), row_len), dtype=np.float32)
        rows *= np.float32(std)
        if mean:
            rows += np.float32(mean)
        return rows

    for start in range(0, n_rows, step):
        yield lambda start=start: draw(start)


def write_random(out: Path, arch: str, add_metadata: writer.AddMetadata, plans: list[TensorPlan],
                 key: tuple[int, ...], init: Callable[[TensorPlan], tuple[float, float]], jobs: int) -> Path:
    """The converter's writer, reading random rows (N(init(plan))) instead of safetensors rows."""
    draws = {plan.source.name: init(plan) for plan in plans}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = write_gguf(out, arch, add_metadata, plans, lambda ref: random_chunks(ref, key, *draws[ref.name]), jobs)
    os.replace(tmp, out)
    return out


def _filler_pieces() -> Iterator[str]:
    """Distinct filler pieces, most useful first: words, letters, digits, punctuation, then letter combinations."""
    seen: set[str] = set()

    def fresh(items: Iterator[str] | list[str]) -> Iterator[str]:
        for item in items:
            if item not in seen:
                seen.add(item)
                yield item

    yield from fresh(["▁"])
    yield from fresh("▁" + w for w in WORDS)
    yield from fresh("▁" + w.capitalize() for w in WORDS)
    yield from fresh(list(string.ascii_lowercase) + list(string.ascii_uppercase) + list(string.digits))
    yield from fresh(list(string.punctuation) + ["\n", "\n\n", "\t"])
    yield from fresh(w for w in WORDS)
    yield from fresh("▁" + c for c in string.ascii_letters + string.digits + string.punctuation)
    letters = string.ascii_lowercase
    for n in itertools.count(2):
        combos = ("".join(p) for p in itertools.product(letters, repeat=n))
        for combo in combos:
            for piece in (combo, "▁" + combo):
                if piece not in seen:
                    seen.add(piece)
                    yield piece


def synthetic_vocabulary(vocab_size: int) -> Vocabulary:
    """A SentencePiece-style vocabulary of `vocab_size` entries that llama.cpp's gemma3 (SPM) loader accepts."""
    tokens: list[str | None] = [None] * vocab_size
    scores = [0.0] * vocab_size
    types = [int(TokenType.NORMAL)] * vocab_size
    for token_id, text in SPECIAL_TOKENS.items():
        if token_id < vocab_size:
            tokens[token_id], types[token_id], scores[token_id] = text, int(TokenType.CONTROL), -1000.0
    # <unusedN> control tokens in the remaining low ids, as in Gemma's real vocabulary
    unused = 0
    for token_id in range(5, 105):
        tokens[token_id], types[token_id], scores[token_id] = f"<unused{unused}>", int(TokenType.CONTROL), -1000.0
        unused += 1
    for b in range(256):
        token_id = 107 + b
        tokens[token_id], types[token_id] = f"<0x{b:02X}>", int(TokenType.BYTE)
    for token_id in range(262145, vocab_size):  # the tail beyond the image soft token in the 4B vocabulary
        tokens[token_id], types[token_id], scores[token_id] = f"<unused{unused}>", int(TokenType.CONTROL), -1000.0
        unused += 1
    free = [i for i, t in enumerate(tokens) if t is None]
    for rank, (token_id, piece) in enumerate(zip(free, _filler_pieces())):
        tokens[token_id], scores[token_id] = piece, -float(rank)
    assert all(t is not None for t in tokens) and len(set(tokens)) == vocab_size
    return Vocabulary(tokens=tokens, scores=scores, types=types, special_ids=dict(SPECIAL_IDS),  # type: ignore[arg-type]
                      add_bos=True, add_eos=False, add_space_prefix=False, chat_template=CHAT_TEMPLATE)


def write_text_model(variant: str, plan: SyntheticPlan, out: Path, outtype: str, seed: int, jobs: int = 1) -> Path:
    cfg = plan.cfg
    vocab = synthetic_vocabulary(cfg.text.vocab_size)
    n_params = sum(p.source.n_elements for p in plan.text)
    progress(f"{variant}: {len(plan.text)} text tensors, {n_params / 1e9:.3f} B parameters, "
             f"{sum(p.nbytes for p in plan.text) / 1e9:.2f} GB of tensor data as {outtype}")
    name = NAMES[variant]
    return write_random(out, TEXT_ARCH, lambda w: add_text_metadata(w, name, outtype, cfg.text, vocab), plan.text,
                        (seed, TEXT_SEED_STREAM), text_init, jobs)


def write_mmproj(variant: str, plan: SyntheticPlan, out: Path, mmproj_outtype: str, seed: int, jobs: int = 1) -> Path:
    vision = plan.cfg.vision
    if vision is None:
        raise ConversionError(f"--mmproj-out: the {variant} variant has no vision tower (only 4b has one)")
    n_params = sum(p.source.n_elements for p in plan.vision)
    progress(f"{variant}: {len(plan.vision)} vision tensors, {n_params / 1e6:.1f} M parameters, "
             f"{sum(p.nbytes for p in plan.vision) / 1e9:.2f} GB of tensor data as {mmproj_outtype}")
    name = NAMES[variant]
    return write_random(out, CLIP_ARCH, lambda w: add_mmproj_metadata(w, name, mmproj_outtype, vision), plan.vision,
                        (seed, VISION_SEED_STREAM), vision_init, jobs)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", choices=sorted(TEXT_CONFIGS), default="4b",
                        help="geometry: medgemma-4b-it (default; text model and vision tower) or "
                             "medgemma-27b-text-it (text only)")
    parser.add_argument("--out", type=Path, default=None, help="the text-model GGUF to write (optional)")
    parser.add_argument("--outtype", choices=OUTTYPES, default="f16",
                        help="tensor type of the text model's matrices (1-D norm weights always stay f32); "
                             "default f16")
    parser.add_argument("--mmproj-out", type=Path, default=None,
                        help="the vision-tower mmproj GGUF to write (4b only; optional)")
    parser.add_argument("--mmproj-outtype", choices=MMPROJ_OUTTYPES, default="f16",
                        help="tensor type of the mmproj's matrices, as the converter's --mmproj-outtype (patch and "
                             "position embeddings and 1-D tensors stay f32; q8_0 keeps rows that are not a "
                             "multiple of 32 and the projection in f16); default f16")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="threads drawing and encoding chunks (default: the logical CPUs; the file does not "
                             "depend on it)")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs {args.jobs}: give 1 or more threads")
    if args.out is None and args.mmproj_out is None:
        parser.error("nothing to write: give --out (text model), --mmproj-out (vision tower) or both")
    if args.mmproj_out is not None and ARCHITECTURES[args.variant] != "Gemma3ForConditionalGeneration":
        parser.error(f"--mmproj-out: the {args.variant} variant has no vision tower (use --variant 4b)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    clean_up_on_sigterm()
    try:
        plan = plan_synthetic(args.variant, args.outtype, args.mmproj_outtype)
        outputs = []
        if args.out is not None:
            outputs.append(lambda: write_text_model(args.variant, plan, args.out, args.outtype, args.seed, args.jobs))
        if args.mmproj_out is not None:
            outputs.append(lambda: write_mmproj(args.variant, plan, args.mmproj_out, args.mmproj_outtype, args.seed,
                                                args.jobs))
        for write in outputs:
            start = time.monotonic()
            out = write()
            progress(f"wrote {out} ({out.stat().st_size / 1e9:.2f} GB) in {time.monotonic() - start:.1f} s")
    except (ConversionError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
