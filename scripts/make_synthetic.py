#!/usr/bin/env python3
"""Write a random-weight GGUF with the exact text-model geometry of medgemma-4b-it (or medgemma-27b-text-it).

The file is laid out exactly as scripts/convert_hf_to_gguf.py would write it: a Hugging Face style config dict is
fed through the converter's own config parsing (medgemma_convert.config.parse_text), the Hugging Face tensor names
implied by that config go through the converter's name mapping and shape checks (medgemma_convert.tensors.plan_tensors),
the metadata is written by medgemma_convert.metadata.add_text_metadata and the file by
medgemma_convert.writer.write_gguf. Only the source of the numbers differs: instead of safetensors rows, each tensor
is drawn from N(0, 0.02) chunk by chunk (norm weights are drawn around 0 and get the converter's (1 + w) shift, so
they end up around 1), so memory stays at one chunk whatever the model size.

The vocabulary is synthetic but SentencePiece-shaped ("llama" tokenizer model): Gemma's special tokens at their real
ids (typed CONTROL), the 256 byte tokens <0x00>..<0xFF> (typed BYTE) for byte fallback, and filler pieces (letters,
short letter combinations, "▁"-prefixed English words) with descending scores so that ordinary English text
tokenises. Generated text is garbage; the point is a model of the real size and shape for speed and memory tests.

Example:
    python scripts/make_synthetic.py --out models/synthetic-medgemma-4b-f16.gguf
    python scripts/make_synthetic.py --variant 27b-text --out models/synthetic-medgemma-27b-text-f16.gguf
"""

from __future__ import annotations

import argparse
import itertools
import os
import string
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gguf.constants import TokenType  # noqa: E402

from medgemma_convert import ConversionError, writer  # noqa: E402
from medgemma_convert.checkpoint import TensorRef  # noqa: E402
from medgemma_convert.config import ModelConfig, TextParams, parse_text  # noqa: E402
from medgemma_convert.metadata import TEXT_ARCH, add_text_metadata  # noqa: E402
from medgemma_convert.tensors import CAUSAL_LM_PREFIX, TEXT_GLOBAL, TEXT_LAYER, map_name, plan_tensors, text_shapes  # noqa: E402
from medgemma_convert.tokenizer import Vocabulary  # noqa: E402
from medgemma_convert.writer import progress, write_gguf  # noqa: E402

STD = 0.02
CHUNK_ELEMENTS = 16 * 1024 * 1024
OUTTYPES = ("f32", "f16", "bf16", "q8_0")

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
    """A config.json-shaped dict: nested text_config for the multimodal 4B, flat for the text-only 27B."""
    text = dict(TEXT_CONFIGS[variant])
    if ARCHITECTURES[variant] == "Gemma3ForConditionalGeneration":
        return {"architectures": [ARCHITECTURES[variant]], "model_type": "gemma3", "text_config": text,
                "tie_word_embeddings": True}
    return {"architectures": [ARCHITECTURES[variant]], "model_type": "gemma3_text", "tie_word_embeddings": True,
            **text}


def model_config(raw: dict[str, Any]) -> ModelConfig:
    """The converter's own parsing and checks (vision is not built: only the text GGUF is written)."""
    text_cfg = raw.get("text_config", raw)
    text = parse_text(text_cfg, raw, progress)
    return ModelConfig(raw["architectures"][0], text, None, raw)


def hf_tensor_names(text: TextParams) -> list[str]:
    """The Hugging Face names a checkpoint of this geometry holds (text part), from the converter's mapping tables."""
    # only the text model is built (no vision config), so the converter maps the Gemma3ForCausalLM names; the GGUF
    # names it produces are the same as for the multimodal prefixes
    prefix = CAUSAL_LM_PREFIX
    names = [prefix + k for k in TEXT_GLOBAL]
    for i in range(text.block_count):
        names += [f"{prefix}layers.{i}.{k}" for k in TEXT_LAYER]
    return names


def synthetic_refs(text: TextParams, architecture: str, shapes: dict[str, tuple[int, ...]]) -> dict[str, TensorRef]:
    """Fake tensor references (no file behind them) with the shapes the converter expects; `shapes` maps GGUF names."""
    cfg = ModelConfig(architecture, text, None, {})
    refs = {}
    for hf_name in hf_tensor_names(text):
        gguf_name = map_name(hf_name, cfg).name
        shape = shapes[gguf_name]
        n = int(np.prod(shape, dtype=np.int64))
        refs[hf_name] = TensorRef(hf_name, Path("/dev/null"), "F32", shape, 0, n * 4)
    return refs


def random_rows(ref: TensorRef, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Stand-in for checkpoint.read_rows: N(0, STD) float32 rows, a bounded chunk at a time."""
    row_len = ref.shape[-1] if ref.shape else 1
    n_rows = ref.n_elements // row_len
    step = max(1, CHUNK_ELEMENTS // row_len)
    for start in range(0, n_rows, step):
        rows = rng.standard_normal((min(step, n_rows - start), row_len), dtype=np.float32)
        rows *= np.float32(STD)
        yield rows


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


def make_synthetic(variant: str, out: Path, outtype: str, seed: int) -> Path:
    raw = hf_config(variant)
    cfg = model_config(raw)
    refs = synthetic_refs(cfg.text, cfg.architecture, text_shapes(cfg.text))
    # plan_tensors applies the converter's name mapping, shape checks, per-tensor types and (1 + w) norm flags
    text_plans, _ = plan_tensors(refs, cfg, outtype, "f16", progress)
    vocab = synthetic_vocabulary(cfg.text.vocab_size)
    n_params = sum(p.source.n_elements for p in text_plans)
    progress(f"{variant}: {len(text_plans)} tensors, {n_params / 1e9:.3f} B parameters, "
             f"{sum(p.nbytes for p in text_plans) / 1e9:.2f} GB of tensor data as {outtype}")
    rng = np.random.default_rng(seed)
    name = NAMES[variant]
    out.parent.mkdir(parents=True, exist_ok=True)
    # the converter's writer, reading random rows instead of safetensors rows
    original = writer.read_rows
    writer.read_rows = lambda ref: random_rows(ref, rng)  # type: ignore[assignment]
    try:
        tmp = write_gguf(out, TEXT_ARCH, lambda w: add_text_metadata(w, name, outtype, cfg.text, vocab), text_plans)
    finally:
        writer.read_rows = original  # type: ignore[assignment]
    os.replace(tmp, out)
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", choices=sorted(TEXT_CONFIGS), default="4b",
                        help="geometry: medgemma-4b-it's text model (default) or medgemma-27b-text-it")
    parser.add_argument("--out", type=Path, required=True, help="the GGUF file to write")
    parser.add_argument("--outtype", choices=OUTTYPES, default="f16",
                        help="tensor type of the matrices (1-D norm weights always stay f32); default f16")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.monotonic()
    try:
        out = make_synthetic(args.variant, args.out, args.outtype, args.seed)
    except (ConversionError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    progress(f"wrote {out} ({out.stat().st_size / 1e9:.2f} GB) in {time.monotonic() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
