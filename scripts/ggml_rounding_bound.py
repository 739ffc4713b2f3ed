#!/usr/bin/env python3
"""Measure, in the reference itself, how much llama.cpp's CPU arithmetic is expected to move the logits.

llama.cpp computes Gemma 3 in float32 like the reference, with one systematic exception: ggml's GELU (and the
fused GEGLU of the text FFN, and SigLIP's GELU in the vision tower) looks the result up in a table indexed by the
fp16-rounded input, whose entries are themselves fp16 (`ggml_table_gelu_f16`, ggml-cpu/vec.h, for |x| < 10).
This script replays each committed reference case with transformers in float32, once exactly and once with GELU
replaced by that lookup (y = fp16(gelu(fp16(x))) for |x| < 10) -- what llama.cpp computes on an f32 GGUF -- and
once more with, in addition, the rounding of an f16 GGUF (fp16 weights, fp16 matmul activations). It records the
max abs and RMS difference of the last-position logits from the exact reference. tests/parity.rs derives its f32
and f16 tolerances from these numbers.

Needs torch + transformers (scripts/requirements-fixtures.txt); outputs are committed:
    python scripts/ggml_rounding_bound.py   # writes tests/fixtures/reference/ggml-rounding.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import make_fixtures as fx  # noqa: E402  (the fixture maker's own loading and prompt encoding)


def ggml_gelu_tanh(x: Any) -> Any:
    """GELU (tanh form) as ggml's CPU table computes it: fp16 input, fp16 table entry, |x| >= 10 passes through."""
    import torch
    x16 = x.to(torch.float16).to(torch.float32)
    inner = 0.7978845608028654 * x16 * (1.0 + 0.044715 * x16 * x16)
    table = (0.5 * x16 * (1.0 + torch.tanh(inner))).to(torch.float16).to(torch.float32)
    return torch.where(x <= -10.0, torch.zeros_like(x), torch.where(x >= 10.0, x, table))


def ggml_gelu_module() -> Any:
    """A drop-in activation module computing ggml_gelu_tanh."""
    import torch

    class GgmlGelu(torch.nn.Module):
        def forward(self, x: Any) -> Any:
            return ggml_gelu_tanh(x)

    return GgmlGelu()


def patch_gelu(model: Any) -> int:
    """Replace every GELU activation (text MLPs and SigLIP MLPs) by ggml's table form; returns how many."""
    count = 0
    for module in model.modules():
        for attr in ("act_fn", "activation_fn"):
            if hasattr(module, attr) and "gelu" in type(getattr(module, attr)).__name__.lower():
                setattr(module, attr, ggml_gelu_module())
                count += 1
    return count


def round_like_f16_gguf(model: Any) -> None:
    """Make the reference compute like llama.cpp on an f16 GGUF: every 2-D weight (linear layers, token embedding,
    projector) is stored as fp16, and ggml converts a matmul's activations to fp16 when its weight is fp16.
    Norm weights and biases stay f32 (the converter keeps 1-D tensors in f32), as do SigLIP's patch and position
    embeddings (llama.cpp keeps them f32)."""
    import torch

    def to_f16(t: Any) -> Any:
        return t.to(torch.float16).to(t.dtype)

    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() == 2 and "position_embedding" not in name:
                param.copy_(to_f16(param))
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            module.register_forward_pre_hook(lambda _m, args: (to_f16(args[0]),) + tuple(args[1:]))


def last_logits(model: Any, inputs: dict[str, Any]) -> Any:
    import torch
    with torch.no_grad():
        return model(**inputs, use_cache=False).logits[0, -1].double()


def measure(checkpoint: str) -> dict[str, Any]:
    from transformers import AutoProcessor, AutoTokenizer
    folder = ROOT / "tests/fixtures/hf" / checkpoint
    reference = json.loads((ROOT / "tests/fixtures/reference" / f"{checkpoint}.json").read_text())
    multimodal = reference["image_token_id"] is not None
    tokenizer = AutoTokenizer.from_pretrained(folder)
    processor = AutoProcessor.from_pretrained(folder) if multimodal else None
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in fx.SPECIAL_TOKENS}
    exact = fx.load_reference(folder, multimodal)
    rounded = fx.load_reference(folder, multimodal)
    patched = patch_gelu(rounded)
    if patched == 0:
        fx.die(f"{checkpoint}: no GELU activation found to patch")
    half = fx.load_reference(folder, multimodal)
    patch_gelu(half)
    round_like_f16_gguf(half)
    out: dict[str, Any] = {}
    for case in reference["cases"]:
        inputs = fx.encode_case(case, tokenizer, processor, ROOT / "tests/fixtures", ids)
        a = last_logits(exact, inputs)
        recorded = __import__("torch").tensor(case["last_logits"], dtype=a.dtype)
        entry: dict[str, Any] = {"reference_replay_max_abs": round(float((a - recorded).abs().max()), 5)}
        for variant, model in (("f32_gguf", rounded), ("f16_gguf", half)):
            diff = (a - last_logits(model, inputs)).abs()
            entry[variant] = {"max_abs": round(float(diff.max()), 5), "rms": round(float(diff.pow(2).mean().sqrt()), 5)}
            print(f"{checkpoint}/{case['name']}: {variant} simulated max abs {entry[variant]['max_abs']:.4f}",
                  file=sys.stderr)
        out[case["name"]] = entry
    return {"patched_activations": patched, "cases": out}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "tests/fixtures/reference/ggml-rounding.json")
    args = parser.parse_args(argv)
    fx.setup_determinism()
    checkpoints = sorted(p.stem for p in (ROOT / "tests/fixtures/reference").glob("tiny-medgemma-*.json"))
    result = {name: measure(name) for name in checkpoints}
    args.out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
