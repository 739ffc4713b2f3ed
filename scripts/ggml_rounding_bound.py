#!/usr/bin/env python3
"""Measure, in the reference itself, how much llama.cpp's CPU arithmetic is expected to move the logits.

llama.cpp computes Gemma 3 in float32 like the reference, with two systematic exceptions: ggml's GELU (and the
fused GEGLU of the text FFN, and SigLIP's GELU in the vision tower) looks the result up in a table indexed by the
fp16-rounded input, whose entries are themselves fp16 (`ggml_table_gelu_f16`, ggml-cpu/vec.h, for |x| < 10); and
the vision tower's attention is flash attention with K and V cast to fp16 (vision_flash_attention).
This script replays each committed reference case with transformers in float32, once exactly and once with GELU
replaced by that lookup (y = fp16(gelu(fp16(x))) for |x| < 10) -- what llama.cpp computes on an f32 GGUF -- and
once more with, in addition, the rounding of an f16 GGUF (fp16 weights, fp16 matmul activations). It records the
max abs and RMS difference of the last-position logits from the exact reference. tests/parity.rs derives its f32
and f16 tolerances from these numbers.

A Vulkan build rounds elsewhere and more (matmul operands in fp16 tiles, some sums in fp16; round_like_vulkan says
where and why): `vulkan_f32_gguf` and `vulkan_f16_gguf` replay that, for scripts/test-gpu
(MEDGEMMA_TEST_ROUNDING=vulkan). Attention is replaced for each model's own calls only (use_attention).

One draw of rounding errors is not the whole story: rounding_draws re-draws them (--draws, default 32) and records
the spread, which the tests' bounds cover.

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


def round_f16_weights(model: Any) -> None:
    """Store every 2-D weight as fp16, as an f16 GGUF does (SigLIP's position embeddings stay f32); the model
    remembers it, so that rounding_draws rounds the perturbed weights again."""
    import torch
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() == 2 and "position_embedding" not in name:
                param.copy_(to_f16(param))
    model.f16_weights = True


def round_like_f16_gguf(model: Any) -> None:
    """Make the reference compute like llama.cpp on an f16 GGUF: every 2-D weight (linear layers, token embedding,
    projector) is stored as fp16, and ggml converts a matmul's activations to fp16 when its weight is fp16.
    Norm weights and biases stay f32 (the converter keeps 1-D tensors in f32), as do SigLIP's patch and position
    embeddings (llama.cpp keeps them f32)."""
    import torch
    round_f16_weights(model)
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            module.register_forward_pre_hook(lambda _m, args: (to_f16(args[0]),) + tuple(args[1:]))


def to_f16(t: Any) -> Any:
    """Round to the nearest fp16 value (unit roundoff 2^-11), keeping the dtype."""
    import torch
    return t.to(torch.float16).to(t.dtype)


def f16_accumulated(a: Any, b: Any) -> Any:
    """a @ b with fp16 operands summed in fp16, one k at a time (ggml-vulkan's f16acc matmul shaders: each output
    is one thread's running fma over k in float16_t). The float64 sum of an fp16 partial sum and an exact product
    of two fp16 values is exact, so rounding it to fp16 is the fma's single rounding."""
    import torch
    a16, b16 = to_f16(a).double(), to_f16(b).double()
    acc = torch.zeros(a.shape[:-1] + b.shape[-1:], dtype=torch.float64)
    for k in range(a.shape[-1]):
        acc = (acc + a16[..., k:k + 1] * b16[..., k:k + 1, :]).to(torch.float16).double()
    return acc.to(a.dtype)


def f16_operands(a: Any, b: Any) -> Any:
    """a @ b with both operands rounded to fp16 and float32 sums (ggml-vulkan's matmul tiles on a device with fp16
    arithmetic, float32 accumulators; CUDA's TF32 tensor ops round to the same 11 significant bits)."""
    import torch
    return torch.matmul(to_f16(a), to_f16(b))


def round_like_vulkan(model: Any, f16_weights: bool) -> None:
    """Make the reference compute like ggml-vulkan on a device with fp16 arithmetic (lavapipe is one), flash
    attention off, f32 KV cache -- the choices ggml-vulkan makes (ggml-vulkan.cpp, vulkan-shaders-gen.cpp):
    - every matmul loads its operands into float16_t shared-memory tiles: both rounded to fp16;
    - operands that are not contiguous (the K and V views of the KV cache, permuted Q) are first copied to fp16;
    - an fp16 weight (src0) is summed in fp16 unless the op asks for float32 (ggml_prec_set_acc): with an f16 GGUF
      every linear layer but the output one (llama.cpp marks the logits F32); in the text attention K*Q is marked
      F32 but V*softmax is not, and V has been copied to fp16, so it is summed in fp16;
    - the vision tower's attention is flash attention, as on the CPU (vision_flash_attention).
    Norms, softmax, RoPE, GELU stay float32 (GELU as ggml's CPU table does not apply: the shader computes it)."""
    import torch

    if f16_weights:
        round_f16_weights(model)
    output_layer = model.lm_head if hasattr(model, "lm_head") else None
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            summed_in_f16 = f16_weights and module is not output_layer

            def forward(x: Any, m: Any = module, f16acc: bool = summed_in_f16) -> Any:
                w = m.weight.t()
                y = f16_accumulated(x, w) if f16acc else f16_operands(x, w)
                return y if m.bias is None else y + m.bias

            module.forward = forward
    projector = getattr(getattr(model, "model", model), "multi_modal_projector", None)
    if projector is not None:
        weight = projector.mm_input_projection_weight
        original = projector.forward

        def project(vision_outputs: Any) -> Any:
            # the projector's one matmul (normed @ W) is a ggml mul_mat of an f32/f16 weight like any other
            saved = torch.matmul
            torch.matmul = lambda a, b: (f16_accumulated(a, b) if f16_weights else f16_operands(a, b)) \
                if b is weight else saved(a, b)
            try:
                return original(vision_outputs)
            finally:
                torch.matmul = saved

        projector.forward = project

    use_attention(model, text=attention(f16_operands, f16_accumulated), vision=vision_flash_attention())


def exact_matmul(a: Any, b: Any) -> Any:
    import torch
    return torch.matmul(a, b)


def attention(kq: Any, kqv: Any, f16_kv: bool = False) -> Any:
    """An eager attention (Gemma 3's and SigLIP's, same arithmetic) whose two products are `kq(q, k^T)` and
    `kqv(softmax, v)`; `f16_kv` first rounds K and V to fp16 (flash attention's f16 cast, see use_attention)."""
    import torch
    from transformers.models.gemma3 import modeling_gemma3

    def eager(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, dropout: float = 0.0,
              scaling: Any = None, softcap: Any = None, **_: Any) -> Any:
        if scaling is None:
            scaling = module.head_dim ** -0.5
        groups = getattr(module, "num_key_value_groups", 1)
        key = modeling_gemma3.repeat_kv(key, groups) if groups > 1 else key
        value = modeling_gemma3.repeat_kv(value, groups) if groups > 1 else value
        if f16_kv:
            key, value = to_f16(key), to_f16(value)
        scores = kq(query, key.transpose(-1, -2)) * scaling
        if softcap is not None:
            scores = torch.tanh(scores / softcap) * softcap
        if attention_mask is not None:
            scores = scores + attention_mask
        weights = torch.nn.functional.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
        return kqv(weights, value).transpose(1, 2).contiguous(), weights
    return eager


def use_attention(model: Any, text: Any = None, vision: Any = None) -> None:
    """Make `model` compute its text (Gemma 3) and vision (SigLIP) attention with these functions (None: the
    reference's). Eager attention is looked up in the modeling modules at call time, so they are swapped in for
    this model's calls only."""
    from transformers.models.gemma3 import modeling_gemma3
    from transformers.models.siglip import modeling_siglip
    original_forward = model.forward

    def forward(*args: Any, **kwargs: Any) -> Any:
        saved = modeling_gemma3.eager_attention_forward, modeling_siglip.eager_attention_forward
        modeling_gemma3.eager_attention_forward = text or saved[0]
        modeling_siglip.eager_attention_forward = vision or saved[1]
        try:
            return original_forward(*args, **kwargs)
        finally:
            modeling_gemma3.eager_attention_forward, modeling_siglip.eager_attention_forward = saved

    model.forward = forward


def vision_flash_attention() -> Any:
    """The vision tower's attention as both backends compute it. mtmd turns flash attention on for the vision tower
    wherever the backend has it (the CPU and Vulkan do; our tests' --flash-attn off is the text model's): clip.cpp
    casts K and V to fp16, Q stays f32, and both backends sum in float32 (ggml-cpu's tiled kernel converts K and V
    back to f32; ggml-vulkan's f32-accumulator shader, as clip.cpp marks the op F32)."""
    return attention(exact_matmul, exact_matmul, f16_kv=True)


def last_logits(model: Any, inputs: dict[str, Any]) -> Any:
    import torch
    with torch.no_grad():
        return model(**inputs, use_cache=False).logits[0, -1].double()


def measure(checkpoint: str, draws: int) -> dict[str, Any]:
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
    use_attention(rounded, vision=vision_flash_attention())
    half = fx.load_reference(folder, multimodal)
    patch_gelu(half)
    round_like_f16_gguf(half)
    use_attention(half, vision=vision_flash_attention())
    vulkan = {}
    for outtype in ("f32", "f16"):
        vulkan[outtype] = fx.load_reference(folder, multimodal)
        round_like_vulkan(vulkan[outtype], f16_weights=outtype == "f16")
    all_inputs = [fx.encode_case(case, tokenizer, processor, ROOT / "tests/fixtures", ids)
                  for case in reference["cases"]]
    out: dict[str, Any] = {}
    for case, inputs in zip(reference["cases"], all_inputs):
        a = last_logits(exact, inputs)
        recorded = __import__("torch").tensor(case["last_logits"], dtype=a.dtype)
        entry: dict[str, Any] = {"reference_replay_max_abs": round(float((a - recorded).abs().max()), 5)}
        for variant, model in (("f32_gguf", rounded), ("f16_gguf", half), ("vulkan_f32_gguf", vulkan["f32"]),
                               ("vulkan_f16_gguf", vulkan["f16"])):
            diff = (a - last_logits(model, inputs)).abs()
            entry[variant] = {"max_abs": round(float(diff.max()), 5), "rms": round(float(diff.pow(2).mean().sqrt()), 5)}
            print(f"{checkpoint}/{case['name']}: {variant} simulated max abs {entry[variant]['max_abs']:.4f}",
                  file=sys.stderr)
        out[case["name"]] = entry
    if draws:
        spread = rounding_draws(exact, {"f32_gguf": rounded, "f16_gguf": half, "vulkan_f32_gguf": vulkan["f32"],
                                        "vulkan_f16_gguf": vulkan["f16"]}, draws, all_inputs)
        for case, per_variant in zip(reference["cases"], spread):
            for variant, values in per_variant.items():
                out[case["name"]][variant]["draws_max_abs"] = values
    return {"patched_activations": patched, "cases": out}


def rounding_draws(exact: Any, models: dict[str, Any], draws: int, inputs: list[dict[str, Any]]) -> list[Any]:
    """How much the simulated max abs difference varies from one draw of the rounding errors to another.

    Our runtime rounds at the same places as a simulation but from float32 inputs that already differ slightly,
    so its rounding errors are another draw of the same process. Draws are made the same way: every weight of the
    exact model and of each simulated one is multiplied by the same factor 1 + 2^-12 * N(0, 1) (one seed per
    draw), which moves every activation by about one fp16 rounding step and so re-draws every rounding downstream,
    while the model stays the same to 4 significant digits. Returns, per case and variant, [min, median, max] of
    the max abs difference over the draws; tests/parity.rs bounds a run by twice the largest of these and the plain
    replay."""
    import torch
    originals = {name: p.detach().clone() for name, p in exact.named_parameters()}

    def set_weights(factors: dict[str, Any] | None) -> None:
        # every model gets the same weights (times `factors`); an f16 one stores them rounded again
        with torch.no_grad():
            for model in (exact, *models.values()):
                for name, p in model.named_parameters():
                    p.copy_(originals[name] if factors is None else originals[name] * factors[name])
                if getattr(model, "f16_weights", False):
                    round_f16_weights(model)

    values: list[dict[str, list[float]]] = [{variant: [] for variant in models} for _ in inputs]
    for seed in range(draws):
        generator = torch.Generator().manual_seed(seed)
        set_weights({name: 1.0 + 2.0 ** -12 * torch.randn(p.shape, generator=generator, dtype=p.dtype)
                     for name, p in originals.items()})
        for i, case_inputs in enumerate(inputs):
            a = last_logits(exact, case_inputs)
            for variant, model in models.items():
                values[i][variant].append(float((a - last_logits(model, case_inputs)).abs().max()))
        print(f"draw {seed + 1}/{draws}", file=sys.stderr)
    set_weights(None)
    return [{variant: [round(min(v), 5), round(sorted(v)[len(v) // 2], 5), round(max(v), 5)]
             for variant, v in per_case.items()} for per_case in values]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "tests/fixtures/reference/ggml-rounding.json")
    parser.add_argument("--draws", type=int, default=32,
                        help="re-drawn rounding errors per simulation, for the spread (0: none)")
    args = parser.parse_args(argv)
    fx.setup_determinism()
    # the references with logits (tiny-medgemma-mm-interleaved.json holds prompt ids only, from another script)
    checkpoints = sorted(p.stem for p in (ROOT / "tests/fixtures/reference").glob("tiny-medgemma-*.json")
                         if (ROOT / "tests/fixtures/hf" / p.stem).is_dir())
    result = {name: measure(name, args.draws) for name in checkpoints}
    args.out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
