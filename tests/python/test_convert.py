"""End-to-end tests of scripts/convert_hf_to_gguf.py on the tiny MedGemma fixtures.

Each test drives the real script in a subprocess and reads its output back with gguf.GGUFReader: metadata equals the
checkpoint's config, special tokens are CONTROL, tensors have the names/shapes/types llama.cpp loads, values
round-trip exactly, and every refused input exits non-zero with a one-line message and leaves no file behind.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType as Q
from gguf import GGUFReader
from gguf.quants import dequantize

from conftest import (copy_checkpoint, edit_json, fixture_dir, load_checkpoint_tensor, run_converter,
                      shard_checkpoint, text_config)
from medgemma_convert.tensors import mmproj_qtype

OUTTYPES = ["f32", "f16", "bf16", "q8_0"]
CONTROL = 3
MODEL_QTYPE = {"f32": Q.F32, "f16": Q.F16, "bf16": Q.BF16, "q8_0": Q.Q8_0}
FILE_TYPE = {"f32": 0, "f16": 1, "bf16": 32, "q8_0": 7}


@pytest.fixture(scope="session")
def converted(tmp_path_factory):
    """Lazily converts (fixture kind, outtype) once per session; returns (model path, mmproj path or None)."""
    cache: dict[tuple[str, str], tuple[Path, Path | None]] = {}

    def get(kind: str, outtype: str) -> tuple[Path, Path | None]:
        if (kind, outtype) not in cache:
            checkpoint = fixture_dir(kind)
            out = tmp_path_factory.mktemp(f"{kind}-{outtype}")
            run = run_converter(checkpoint, out, "--outtype", outtype, "--name", "tiny")
            assert run.returncode == 0, run.stderr
            mmproj_type = "f32"  # the converter's default, whatever --outtype
            mmproj = out / f"mmproj-tiny-{mmproj_type}.gguf"
            cache[(kind, outtype)] = (out / f"tiny-{outtype}.gguf", mmproj if kind == "mm" else None)
            assert sorted(p.name for p in out.iterdir()) == sorted(
                p.name for p in cache[(kind, outtype)] if p is not None)
        return cache[(kind, outtype)]

    return get


def field(reader: GGUFReader, key: str):
    f = reader.fields.get(key)
    assert f is not None, f"missing key {key}"
    return f.contents()


def tensors(reader: GGUFReader) -> dict:
    return {t.name: t for t in reader.tensors}


def gguf_shape(t) -> tuple[int, ...]:
    """The tensor's shape in numpy (row-major) order."""
    return tuple(int(d) for d in reversed(t.shape.tolist()))


def expected_swa(cfg: dict) -> list[bool]:
    if cfg.get("layer_types"):
        return [t == "sliding_attention" for t in cfg["layer_types"]]
    pattern = cfg.get("sliding_window_pattern", 6)
    return [bool((i + 1) % pattern) for i in range(cfg["num_hidden_layers"])]


def expected_rope(cfg: dict) -> tuple[float, float, float]:
    """(global base, local base, linear factor or 1.0)"""
    params = cfg.get("rope_parameters")
    if params:
        full, local = params.get("full_attention", params), params.get("sliding_attention", {})
        return full["rope_theta"], local.get("rope_theta", 10000.0), full.get("factor", 1.0)
    scaling = cfg.get("rope_scaling") or {}
    return cfg.get("rope_theta", 1e6), cfg.get("rope_local_base_freq", 10000.0), scaling.get("factor", 1.0)


# --- the text model ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("outtype", OUTTYPES)
@pytest.mark.parametrize("kind", ["mm", "text"])
def test_text_hparams_equal_config(converted, kind, outtype):
    cfg = text_config(fixture_dir(kind))
    r = GGUFReader(converted(kind, outtype)[0])
    assert field(r, "general.architecture") == "gemma3"
    assert field(r, "general.name") == "tiny"
    assert field(r, "general.file_type") == FILE_TYPE[outtype]
    assert field(r, "gemma3.embedding_length") == cfg["hidden_size"]
    assert field(r, "gemma3.block_count") == cfg["num_hidden_layers"]
    assert field(r, "gemma3.feed_forward_length") == cfg["intermediate_size"]
    assert field(r, "gemma3.attention.head_count") == cfg["num_attention_heads"]
    assert field(r, "gemma3.attention.head_count_kv") == cfg["num_key_value_heads"]
    assert field(r, "gemma3.attention.key_length") == cfg["head_dim"]
    assert field(r, "gemma3.attention.value_length") == cfg["head_dim"]
    assert field(r, "gemma3.context_length") == cfg["max_position_embeddings"]
    assert math.isclose(field(r, "gemma3.attention.layer_norm_rms_epsilon"), cfg["rms_norm_eps"], rel_tol=1e-6)
    assert field(r, "gemma3.attention.sliding_window") == cfg["sliding_window"]
    assert field(r, "gemma3.attention.sliding_window_pattern") == expected_swa(cfg)
    base, local, factor = expected_rope(cfg)
    assert field(r, "gemma3.rope.freq_base") == pytest.approx(base)
    assert field(r, "gemma3.rope.freq_base_swa") == pytest.approx(local)
    if factor != 1.0:
        assert field(r, "gemma3.rope.scaling.type") == "linear"
        assert field(r, "gemma3.rope.scaling.factor") == pytest.approx(factor)
    assert "gemma3.attn_logit_softcapping" not in r.fields


@pytest.mark.parametrize("kind", ["mm", "text"])
def test_special_tokens_are_control(converted, kind):
    checkpoint = fixture_dir(kind)
    r = GGUFReader(converted(kind, "f16")[0])
    tokens, types = field(r, "tokenizer.ggml.tokens"), field(r, "tokenizer.ggml.token_type")
    tok_cfg = json.loads((checkpoint / "tokenizer_config.json").read_text())
    special = {int(i): e["content"] for i, e in tok_cfg["added_tokens_decoder"].items() if e.get("special")}
    assert special, "fixture has no special added tokens"
    for token_id, content in special.items():
        assert tokens[token_id] == content
        assert types[token_id] == CONTROL, f"{content} (id {token_id}) is not CONTROL"
    for name in ("bos", "eos", "pad"):
        text = tok_cfg[f"{name}_token"]
        text = text["content"] if isinstance(text, dict) else text
        key = {"pad": "padding"}.get(name, name)
        assert tokens[field(r, f"tokenizer.ggml.{key}_token_id")] == text
    assert field(r, "tokenizer.ggml.model") == "llama"
    assert field(r, "tokenizer.ggml.add_bos_token") is True
    assert field(r, "tokenizer.ggml.add_eos_token") is False
    assert len(tokens) == text_config(checkpoint)["vocab_size"]
    if "<end_of_turn>" in special.values():
        assert tokens[field(r, "tokenizer.ggml.eot_token_id")] == "<end_of_turn>"


@pytest.mark.parametrize("kind", ["mm", "text"])
def test_vocabulary_matches_sentencepiece(converted, kind):
    spm = pytest.importorskip("sentencepiece", reason="sentencepiece is in scripts/requirements.txt")
    sp = spm.SentencePieceProcessor(model_file=str(fixture_dir(kind) / "tokenizer.model"))
    r = GGUFReader(converted(kind, "f32")[0])
    tokens, scores = field(r, "tokenizer.ggml.tokens"), field(r, "tokenizer.ggml.scores")
    for i in range(sp.get_piece_size()):
        if not (sp.is_control(i) or sp.is_unknown(i)):
            assert tokens[i] == sp.id_to_piece(i) or tokens[i].replace(" ", "\u2581") == sp.id_to_piece(i)
            assert scores[i] == pytest.approx(sp.get_score(i)) or scores[i] == -1000.0


def test_chat_template_copied(converted):
    checkpoint = fixture_dir("mm")
    jinja = checkpoint / "chat_template.jinja"
    expected = jinja.read_text() if jinja.is_file() else json.loads(
        (checkpoint / "tokenizer_config.json").read_text()).get("chat_template")
    assert expected, "fixture has no chat template"
    assert field(GGUFReader(converted("mm", "f16")[0]), "tokenizer.chat_template") == expected


@pytest.mark.parametrize("outtype", OUTTYPES)
@pytest.mark.parametrize("kind", ["mm", "text"])
def test_text_tensor_names_shapes_types(converted, kind, outtype):
    cfg = text_config(fixture_dir(kind))
    h, ff, hd = cfg["hidden_size"], cfg["intermediate_size"], cfg["head_dim"]
    q, kv = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
    expected = {"token_embd.weight": (cfg["vocab_size"], h), "output_norm.weight": (h,)}
    for i in range(cfg["num_hidden_layers"]):
        expected.update({
            f"blk.{i}.attn_norm.weight": (h,), f"blk.{i}.attn_q.weight": (q, h), f"blk.{i}.attn_k.weight": (kv, h),
            f"blk.{i}.attn_v.weight": (kv, h), f"blk.{i}.attn_output.weight": (h, q),
            f"blk.{i}.attn_q_norm.weight": (hd,), f"blk.{i}.attn_k_norm.weight": (hd,),
            f"blk.{i}.post_attention_norm.weight": (h,), f"blk.{i}.ffn_norm.weight": (h,),
            f"blk.{i}.post_ffw_norm.weight": (h,), f"blk.{i}.ffn_gate.weight": (ff, h),
            f"blk.{i}.ffn_up.weight": (ff, h), f"blk.{i}.ffn_down.weight": (h, ff)})
    found = tensors(GGUFReader(converted(kind, outtype)[0]))
    assert {n: gguf_shape(t) for n, t in found.items()} == expected  # tied embeddings: no output.weight
    for name, t in found.items():
        shape = expected[name]
        want = Q.F32 if len(shape) == 1 else MODEL_QTYPE[outtype]
        if want == Q.Q8_0 and shape[-1] % 32:
            want = Q.F16
        assert t.tensor_type == want, name


def test_f32_round_trip_is_exact(converted):
    checkpoint = fixture_dir("mm")
    prefix = "language_model.model." if _has(checkpoint, "language_model.model.embed_tokens.weight") \
        else "model.language_model."
    found = tensors(GGUFReader(converted("mm", "f32")[0]))
    embd = load_checkpoint_tensor(checkpoint, prefix + "embed_tokens.weight")
    np.testing.assert_array_equal(np.asarray(found["token_embd.weight"].data), embd)
    w = load_checkpoint_tensor(checkpoint, prefix + "layers.0.mlp.down_proj.weight")
    np.testing.assert_array_equal(np.asarray(found["blk.0.ffn_down.weight"].data), w)
    for hf, gg in (("layers.0.input_layernorm.weight", "blk.0.attn_norm.weight"),
                   ("layers.0.self_attn.q_norm.weight", "blk.0.attn_q_norm.weight"),
                   ("layers.0.post_feedforward_layernorm.weight", "blk.0.post_ffw_norm.weight"),
                   ("norm.weight", "output_norm.weight")):
        norm = load_checkpoint_tensor(checkpoint, prefix + hf)
        np.testing.assert_array_equal(np.asarray(found[gg].data), norm + np.float32(1.0), err_msg=gg)


def test_text_fixture_round_trip(converted):
    checkpoint = fixture_dir("text")
    found = tensors(GGUFReader(converted("text", "f32")[0]))
    np.testing.assert_array_equal(np.asarray(found["blk.1.attn_k.weight"].data),
                                  load_checkpoint_tensor(checkpoint, "model.layers.1.self_attn.k_proj.weight"))
    np.testing.assert_array_equal(np.asarray(found["blk.1.ffn_norm.weight"].data),
                                  load_checkpoint_tensor(checkpoint, "model.layers.1.pre_feedforward_layernorm.weight")
                                  + np.float32(1.0))


def test_bf16_and_q8_0_values(converted):
    f32 = tensors(GGUFReader(converted("text", "f32")[0]))
    bf16 = tensors(GGUFReader(converted("text", "bf16")[0]))
    q8 = tensors(GGUFReader(converted("text", "q8_0")[0]))
    name = "blk.0.ffn_up.weight"
    ref = np.asarray(f32[name].data)
    got_bf16 = dequantize(np.asarray(bf16[name].data), Q.BF16).reshape(ref.shape)
    from conftest import read_safetensors_header
    dtype = read_safetensors_header(fixture_dir("text") / "model.safetensors")[0]["model.layers.0.mlp.up_proj.weight"]
    if dtype["dtype"] == "BF16":
        np.testing.assert_array_equal(got_bf16, ref)  # a bf16 checkpoint round-trips exactly
    else:
        np.testing.assert_allclose(got_bf16, ref, rtol=2 ** -8)
    got_q8 = dequantize(np.asarray(q8[name].data), Q.Q8_0).reshape(ref.shape)
    assert np.abs(got_q8 - ref).max() <= np.abs(ref).max() / 127 + 1e-6


def _has(checkpoint: Path, name: str) -> bool:
    from conftest import read_safetensors_header
    return name in read_safetensors_header(checkpoint / "model.safetensors")[0]


# --- the mmproj -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("outtype", ["f32", "q8_0"])
def test_mmproj_keys_and_tensors(converted, outtype):
    checkpoint = fixture_dir("mm")
    cfg = json.loads((checkpoint / "config.json").read_text())
    vc, tc = cfg["vision_config"], cfg["text_config"]
    pre = json.loads((checkpoint / "preprocessor_config.json").read_text())
    r = GGUFReader(converted("mm", outtype)[1])
    assert field(r, "general.architecture") == "clip"
    assert field(r, "clip.projector_type") == "gemma3"
    assert field(r, "clip.has_vision_encoder") is True
    assert field(r, "clip.use_gelu") is True
    assert field(r, "clip.vision.image_size") == vc["image_size"]
    assert field(r, "clip.vision.patch_size") == vc["patch_size"]
    assert field(r, "clip.vision.embedding_length") == vc["hidden_size"]
    assert field(r, "clip.vision.feed_forward_length") == vc["intermediate_size"]
    assert field(r, "clip.vision.block_count") == vc["num_hidden_layers"]
    assert field(r, "clip.vision.attention.head_count") == vc["num_attention_heads"]
    assert field(r, "clip.vision.projection_dim") == tc["hidden_size"]
    assert field(r, "clip.vision.image_mean") == pytest.approx(pre["image_mean"])
    assert field(r, "clip.vision.image_std") == pytest.approx(pre["image_std"])
    per_side = math.isqrt(cfg.get("mm_tokens_per_image", 256))
    assert field(r, "clip.vision.projector.scale_factor") == vc["image_size"] // vc["patch_size"] // per_side
    found = tensors(r)
    h, p = vc["hidden_size"], vc["patch_size"]
    assert gguf_shape(found["v.patch_embd.weight"]) == (h, 3, p, p)
    assert gguf_shape(found["mm.input_projection.weight"]) == (h, tc["hidden_size"])
    assert gguf_shape(found["v.position_embd.weight"]) == ((vc["image_size"] // p) ** 2, h)
    assert len(found) == 7 + 16 * vc["num_hidden_layers"]
    assert not [n for n in found if "head" in n]
    # Without --mmproj-outtype the vision file is F32 whatever --outtype is (F32 encodes fastest on CPUs).
    for name, t in found.items():
        assert t.tensor_type == Q.F32, name


def test_mmproj_values(converted):
    checkpoint = fixture_dir("mm")
    found = tensors(GGUFReader(converted("mm", "f32")[1]))
    names = __import__("conftest").read_safetensors_header(checkpoint / "model.safetensors")[0]
    proj = next(n for n in names if n.endswith("multi_modal_projector.mm_input_projection_weight"))
    norm = next(n for n in names if n.endswith("multi_modal_projector.mm_soft_emb_norm.weight"))
    ln1 = next(n for n in names if n.endswith("encoder.layers.0.layer_norm1.weight"))
    np.testing.assert_array_equal(np.asarray(found["mm.input_projection.weight"].data),
                                  load_checkpoint_tensor(checkpoint, proj))  # not transposed: clip.cpp transposes
    np.testing.assert_array_equal(np.asarray(found["mm.soft_emb_norm.weight"].data),
                                  load_checkpoint_tensor(checkpoint, norm) + np.float32(1.0))
    np.testing.assert_array_equal(np.asarray(found["v.blk.0.ln1.weight"].data),
                                  load_checkpoint_tensor(checkpoint, ln1))  # SigLIP norms are not shifted


def test_mmproj_outtype_flag(tmp_path):
    run = run_converter(fixture_dir("mm"), tmp_path, "--outtype", "q8_0", "--mmproj-outtype", "f32")
    assert run.returncode == 0, run.stderr
    name = fixture_dir("mm").name
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"{name}-q8_0.gguf", f"mmproj-{name}-f32.gguf"])


@pytest.fixture(scope="session")
def mmproj_converted(tmp_path_factory):
    """Lazily converts the multimodal fixture once per --mmproj-outtype; returns the mmproj path."""
    cache: dict[str, Path] = {}

    def get(mmproj_outtype: str) -> Path:
        if mmproj_outtype not in cache:
            out = tmp_path_factory.mktemp(f"mmproj-{mmproj_outtype}")
            run = run_converter(fixture_dir("mm"), out, "--outtype", "f16", "--mmproj-outtype", mmproj_outtype,
                                "--name", "tiny")
            assert run.returncode == 0, run.stderr
            assert sorted(p.name for p in out.iterdir()) == ["mmproj-tiny-" + mmproj_outtype + ".gguf",
                                                              "tiny-f16.gguf"]
            cache[mmproj_outtype] = out / f"mmproj-tiny-{mmproj_outtype}.gguf"
        return cache[mmproj_outtype]

    return get


def expected_mmproj_type(name: str, shape: tuple[int, ...], outtype: str) -> Q:
    """The vision file's rule, restated: F32 exceptions, Q8_0 only for whole 32-value rows, projection F16."""
    if outtype == "f32" or len(shape) == 1 or name in ("v.patch_embd.weight", "v.position_embd.weight"):
        return Q.F32
    if outtype == "q8_0" and (name == "mm.input_projection.weight" or shape[-1] % 32):
        return Q.F16
    return MODEL_QTYPE[outtype]


@pytest.mark.parametrize("outtype", ["bf16", "q8_0"])
def test_mmproj_bf16_and_q8_0_types(mmproj_converted, converted, outtype):
    r = GGUFReader(mmproj_converted(outtype))
    assert field(r, "general.file_type") == FILE_TYPE[outtype]
    found = tensors(r)
    reference = tensors(GGUFReader(converted("mm", "f32")[1]))
    assert {n: gguf_shape(t) for n, t in found.items()} == {n: gguf_shape(t) for n, t in reference.items()}
    for name, t in found.items():
        assert t.tensor_type == expected_mmproj_type(name, gguf_shape(t), outtype), name
    assert any(t.tensor_type == MODEL_QTYPE[outtype] for t in found.values())


@pytest.mark.parametrize("outtype", ["bf16", "q8_0"])
def test_mmproj_bf16_and_q8_0_values(mmproj_converted, converted, outtype):
    """Every tensor dequantises to the f32 conversion within its type's rounding error."""
    reference = tensors(GGUFReader(converted("mm", "f32")[1]))
    for name, t in tensors(GGUFReader(mmproj_converted(outtype))).items():
        ref = np.asarray(reference[name].data, dtype=np.float32)
        got = dequantize(np.asarray(t.data), t.tensor_type).reshape(ref.shape)
        if t.tensor_type == Q.F32:
            np.testing.assert_array_equal(got, ref, err_msg=name)
        elif t.tensor_type in (Q.BF16, Q.F16):
            # the fixture is a bf16 checkpoint: bf16 round-trips exactly; f16 within its 11-bit mantissa
            rtol = 0 if t.tensor_type == Q.BF16 else 2 ** -11
            np.testing.assert_allclose(got, ref, rtol=rtol, atol=0, err_msg=name)
        else:
            assert t.tensor_type == Q.Q8_0, name
            blocks, got_blocks = ref.reshape(-1, 32), got.reshape(-1, 32)
            # round to nearest of d = amax/127 (d itself stored as f16): at most about d/2 per value
            bound = np.abs(blocks).max(axis=1, keepdims=True) / 127 * 0.6 + 1e-12
            assert (np.abs(got_blocks - blocks) <= bound).all(), name
            assert not np.array_equal(got, ref), f"{name}: Q8_0 data identical to f32 (not quantised?)"


def test_mmproj_q8_0_falls_back_for_rows_not_a_multiple_of_32():
    """SigLIP-400M's shapes (the tiny fixture has none whose rows miss the 32-value block)."""
    logged: list[str] = []
    down, up, proj = (1152, 4304), (4304, 1152), (1152, 2560)
    assert mmproj_qtype("v.blk.0.ffn_down.weight", down, "q8_0", logged.append) == Q.F16
    assert len(logged) == 1 and "4304" in logged[0] and "v.blk.0.ffn_down.weight" in logged[0]
    assert mmproj_qtype("v.blk.0.ffn_up.weight", up, "q8_0", logged.append) == Q.Q8_0
    assert mmproj_qtype("v.blk.0.attn_q.weight", (1152, 1152), "q8_0", logged.append) == Q.Q8_0
    assert len(logged) == 1
    assert mmproj_qtype("mm.input_projection.weight", proj, "q8_0", logged.append) == Q.F16
    assert len(logged) == 2 and "transpose" in logged[1]
    assert mmproj_qtype("mm.input_projection.weight", proj, "bf16", logged.append) == Q.BF16
    assert mmproj_qtype("v.blk.0.ffn_down.weight", down, "bf16", logged.append) == Q.BF16
    assert mmproj_qtype("v.patch_embd.weight", (1152, 3, 14, 14), "q8_0", logged.append) == Q.F32
    assert mmproj_qtype("v.position_embd.weight", (4096, 1152), "bf16", logged.append) == Q.F32
    assert mmproj_qtype("v.blk.0.ffn_down.bias", (1152,), "q8_0", logged.append) == Q.F32
    assert len(logged) == 2


# --- other layouts ----------------------------------------------------------------------------------------------

def test_sharded_checkpoint_converts_identically(tmp_path, converted):
    checkpoint = copy_checkpoint("text", tmp_path)
    shard_checkpoint(checkpoint)
    out = tmp_path / "out"
    run = run_converter(checkpoint, out, "--outtype", "f32", "--name", "tiny")
    assert run.returncode == 0, run.stderr
    assert (out / "tiny-f32.gguf").read_bytes() == converted("text", "f32")[0].read_bytes()


def _swap_config_layout(cfg: dict) -> None:
    """Rewrite a text config from the transformers 5 layout to the 4.5x one, or back."""
    if "rope_parameters" in cfg:
        params = cfg.pop("rope_parameters")
        full, local = params.get("full_attention", params), params.get("sliding_attention", {})
        cfg["rope_theta"], cfg["rope_local_base_freq"] = full["rope_theta"], local.get("rope_theta", 10000.0)
        cfg["rope_scaling"] = {"rope_type": full["rope_type"], "factor": full["factor"]} \
            if full.get("rope_type") == "linear" else None
        swa = expected_swa(cfg)
        cfg.pop("layer_types", None)
        cfg["sliding_window_pattern"] = next(p for p in range(1, len(swa) + 2)
                                             if [bool((i + 1) % p) for i in range(len(swa))] == swa)
    else:
        scaling = cfg.pop("rope_scaling", None) or {}
        full = {"rope_type": scaling.get("rope_type", "default"), "rope_theta": cfg.pop("rope_theta", 1e6)}
        if "factor" in scaling:
            full["factor"] = scaling["factor"]
        cfg["rope_parameters"] = {"full_attention": full, "sliding_attention": {
            "rope_type": "default", "rope_theta": cfg.pop("rope_local_base_freq", 10000.0)}}
        cfg["layer_types"] = ["sliding_attention" if s else "full_attention" for s in expected_swa(cfg)]
        cfg.pop("sliding_window_pattern", None)


@pytest.mark.parametrize("kind", ["mm", "text"])
def test_both_config_layouts_give_the_same_gguf(tmp_path, converted, kind):
    checkpoint = copy_checkpoint(kind, tmp_path)
    edit_json(checkpoint / "config.json",
              lambda c: _swap_config_layout(c["text_config"] if "text_config" in c else c))
    out = tmp_path / "out"
    run = run_converter(checkpoint, out, "--outtype", "f16", "--name", "tiny")
    assert run.returncode == 0, run.stderr
    assert (out / "tiny-f16.gguf").read_bytes() == converted(kind, "f16")[0].read_bytes()


# --- refused inputs ---------------------------------------------------------------------------------------------

def assert_refused(run, outdir: Path, *words: str) -> None:
    assert run.returncode != 0
    lines = run.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error: "), run.stderr
    assert "Traceback" not in run.stderr
    for word in words:
        assert word in lines[-1], f"{word!r} not in {lines[-1]!r}"
    assert not outdir.exists() or not any(outdir.iterdir()), f"left behind: {list(outdir.iterdir())}"


def test_unsupported_architecture(tmp_path):
    checkpoint = copy_checkpoint("text", tmp_path)
    edit_json(checkpoint / "config.json", lambda c: c.update(architectures=["LlamaForCausalLM"]))
    out = tmp_path / "out"
    assert_refused(run_converter(checkpoint, out, "--outtype", "f16"), out,
                   "LlamaForCausalLM", "Gemma3ForCausalLM", "Gemma3ForConditionalGeneration")


def test_missing_config(tmp_path):
    checkpoint = copy_checkpoint("text", tmp_path)
    (checkpoint / "config.json").unlink()
    out = tmp_path / "out"
    assert_refused(run_converter(checkpoint, out, "--outtype", "f16"), out, "config.json")


def test_missing_tokenizer(tmp_path):
    checkpoint = copy_checkpoint("mm", tmp_path)
    (checkpoint / "tokenizer.model").unlink()
    out = tmp_path / "out"
    assert_refused(run_converter(checkpoint, out, "--outtype", "f16"), out, "tokenizer", "tokenizer.model")


def test_missing_shard(tmp_path):
    checkpoint = copy_checkpoint("text", tmp_path)
    shards = shard_checkpoint(checkpoint)
    (checkpoint / shards[1]).unlink()
    out = tmp_path / "out"
    assert_refused(run_converter(checkpoint, out, "--outtype", "f16"), out, "missing shard", shards[1])


@pytest.mark.parametrize("kind", ["mm", "text"])
def test_query_pre_attn_scalar_llama_cpp_ignores(tmp_path, kind):
    checkpoint = copy_checkpoint(kind, tmp_path)
    edit_json(checkpoint / "config.json", lambda c: (c.get("text_config", c)).update(
        query_pre_attn_scalar=(c.get("text_config", c))["head_dim"] * 2))
    out = tmp_path / "out"
    assert_refused(run_converter(checkpoint, out, "--outtype", "q8_0"), out, "query_pre_attn_scalar")


def test_attention_softcapping(tmp_path):
    checkpoint = copy_checkpoint("text", tmp_path)
    edit_json(checkpoint / "config.json", lambda c: c.update(attn_logit_softcapping=50.0))
    out = tmp_path / "out"
    assert_refused(run_converter(checkpoint, out, "--outtype", "f16"), out, "attn_logit_softcapping")


def test_unsupported_rope_scaling(tmp_path):
    checkpoint = copy_checkpoint("text", tmp_path)

    def edit(c: dict) -> None:
        if "rope_parameters" in c:
            c["rope_parameters"].get("full_attention", c["rope_parameters"])["rope_type"] = "yarn"
        else:
            c["rope_scaling"] = {"rope_type": "yarn", "factor": 8.0}
    edit_json(checkpoint / "config.json", edit)
    out = tmp_path / "out"
    assert_refused(run_converter(checkpoint, out, "--outtype", "f16"), out, "yarn")


def test_inconsistent_image_token_count(tmp_path):
    checkpoint = copy_checkpoint("mm", tmp_path)
    edit_json(checkpoint / "config.json", lambda c: c.update(mm_tokens_per_image=c.get("mm_tokens_per_image", 256) * 4))
    (checkpoint / "processor_config.json").write_text(json.dumps({"image_seq_length": 9}))
    out = tmp_path / "out"
    assert_refused(run_converter(checkpoint, out, "--outtype", "f16"), out, "image")


def test_unpoolable_image_token_count(tmp_path):
    checkpoint = copy_checkpoint("mm", tmp_path)
    for name in ("processor_config.json", "preprocessor_config.json"):
        if (checkpoint / name).is_file():
            edit_json(checkpoint / name, lambda c: c.pop("image_seq_length", None))
    vc = json.loads((checkpoint / "config.json").read_text())["vision_config"]
    per_side = vc["image_size"] // vc["patch_size"]
    edit_json(checkpoint / "config.json", lambda c: c.update(mm_tokens_per_image=(per_side + 1) ** 2))
    out = tmp_path / "out"
    assert_refused(run_converter(checkpoint, out, "--outtype", "f16"), out, "divisible")


def test_unknown_tensor(tmp_path):
    from conftest import read_safetensors_header, write_safetensors
    checkpoint = copy_checkpoint("text", tmp_path)
    path = checkpoint / "model.safetensors"
    header, start = read_safetensors_header(path)
    raw = path.read_bytes()
    entries = {n: (i, raw[start + i["data_offsets"][0]:start + i["data_offsets"][1]])
               for n, i in header.items() if n != "__metadata__"}
    entries["model.layers.0.mlp.extra_proj.weight"] = ({"dtype": "F32", "shape": [2]}, b"\0" * 8)
    write_safetensors(path, entries)
    out = tmp_path / "out"
    assert_refused(run_converter(checkpoint, out, "--outtype", "f16"), out, "model.layers.0.mlp.extra_proj.weight")


def test_unknown_dtype(tmp_path):
    from conftest import read_safetensors_header, write_safetensors
    checkpoint = copy_checkpoint("text", tmp_path)
    path = checkpoint / "model.safetensors"
    header, start = read_safetensors_header(path)
    raw = path.read_bytes()
    entries = {n: (i, raw[start + i["data_offsets"][0]:start + i["data_offsets"][1]])
               for n, i in header.items() if n != "__metadata__"}
    info, data = entries["model.norm.weight"]
    entries["model.norm.weight"] = ({"dtype": "F64", "shape": info["shape"]}, b"\0" * (8 * info["shape"][0]))
    write_safetensors(path, entries)
    out = tmp_path / "out"
    assert_refused(run_converter(checkpoint, out, "--outtype", "f16"), out, "F64", "model.norm.weight")


def test_outdir_equal_to_checkpoint_never_overwrites_inputs(tmp_path):
    checkpoint = copy_checkpoint("text", tmp_path)
    before = {p.name: p.read_bytes() for p in checkpoint.iterdir()}
    run = run_converter(checkpoint, checkpoint, "--outtype", "f16", "--name", "tiny")
    assert run.returncode == 0, run.stderr
    after = {p.name: p.read_bytes() for p in checkpoint.iterdir()}
    assert set(after) - set(before) == {"tiny-f16.gguf"}
    assert all(after[n] == before[n] for n in before)


def test_both_tensor_name_layouts_give_the_same_gguf(tmp_path, converted):
    """4.5x names (language_model.model.*, vision_tower.vision_model.*) and transformers 5 runtime names
    (model.language_model.*, model.vision_tower.*) convert to identical files."""
    from conftest import read_safetensors_header, write_safetensors
    checkpoint = copy_checkpoint("mm", tmp_path)
    path = checkpoint / "model.safetensors"
    header, start = read_safetensors_header(path)
    raw = path.read_bytes()

    def rename(name: str) -> str:
        for old, new in (("language_model.model.", "model.language_model."),
                         ("vision_tower.vision_model.", "model.vision_tower."), ("vision_tower.", "model.vision_tower."),
                         ("multi_modal_projector.", "model.multi_modal_projector.")):
            if name.startswith(old):
                return new + name[len(old):]
        for old, new in (("model.language_model.", "language_model.model."),
                         ("model.vision_tower.", "vision_tower.vision_model."),
                         ("model.multi_modal_projector.", "multi_modal_projector.")):
            if name.startswith(old):
                return new + name[len(old):]
        return name

    entries = {rename(n): (i, raw[start + i["data_offsets"][0]:start + i["data_offsets"][1]])
               for n, i in header.items() if n != "__metadata__"}
    assert set(entries) != set(header) - {"__metadata__"}
    write_safetensors(path, entries)
    out = tmp_path / "out"
    run = run_converter(checkpoint, out, "--outtype", "f16", "--name", "tiny")
    assert run.returncode == 0, run.stderr
    model, mmproj = converted("mm", "f16")
    assert (out / model.name).read_bytes() == model.read_bytes()
    assert (out / mmproj.name).read_bytes() == mmproj.read_bytes()
