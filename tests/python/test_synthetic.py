"""Tests of scripts/make_synthetic.py's vision tower: that it plans exactly the mmproj the converter would write for
medgemma-4b-it (names, shapes, types per --mmproj-outtype), without writing the 800 MB file.

The expectation comes from the converter reading a medgemma-4b-it-shaped checkpoint folder (config.json and
preprocessor_config.json as published, written here) with medgemma_convert.config.load_config, not from
make_synthetic's own constants. A small subset of the tensors is written to check the draws and the types on disk.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType as Q
from gguf import GGUFReader
from gguf.quants import dequantize

import make_synthetic
from conftest import SCRIPTS
from medgemma_convert.config import load_config
from medgemma_convert.tensors import vision_shapes

MMPROJ_OUTTYPES = ["f32", "f16", "bf16", "q8_0"]
QTYPE = {"f32": Q.F32, "f16": Q.F16, "bf16": Q.BF16, "q8_0": Q.Q8_0}
FILE_TYPE = {"f32": 0, "f16": 1, "bf16": 32, "q8_0": 7}

# google/medgemma-4b-it's vision_config and image processor as published (transformers 4.5x layout)
MEDGEMMA_4B_VISION = {"hidden_size": 1152, "image_size": 896, "intermediate_size": 4304,
                      "model_type": "siglip_vision_model", "num_attention_heads": 16, "num_hidden_layers": 27,
                      "patch_size": 14, "vision_use_head": False}
MEDGEMMA_4B_PREPROCESSOR = {"do_normalize": True, "do_rescale": True, "do_resize": True,
                            "image_mean": [0.5, 0.5, 0.5], "image_processor_type": "Gemma3ImageProcessor",
                            "image_seq_length": 256, "image_std": [0.5, 0.5, 0.5], "resample": 2,
                            "rescale_factor": 1 / 255, "size": {"height": 896, "width": 896}}


@pytest.fixture(scope="module")
def medgemma_4b_cfg(tmp_path_factory):
    """The converter's ModelConfig for a medgemma-4b-it checkpoint folder (config files only)."""
    folder = tmp_path_factory.mktemp("medgemma-4b-it")
    text = {k: v for k, v in make_synthetic.TEXT_CONFIGS["4b"].items()}
    config = {"architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3", "text_config": text,
              "vision_config": MEDGEMMA_4B_VISION, "mm_tokens_per_image": 256, "boi_token_index": 255999,
              "eoi_token_index": 256000, "image_token_index": 262144}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "preprocessor_config.json").write_text(json.dumps(MEDGEMMA_4B_PREPROCESSOR))
    (folder / "processor_config.json").write_text(json.dumps({"image_seq_length": 256}))
    return load_config(folder, lambda _: None)


def expected_type(name: str, shape: tuple[int, ...], outtype: str) -> Q:
    if outtype == "f32" or len(shape) == 1 or name in ("v.patch_embd.weight", "v.position_embd.weight"):
        return Q.F32
    if outtype == "q8_0" and (name == "mm.input_projection.weight" or shape[-1] % 32):
        return Q.F16
    return QTYPE[outtype]


def test_vision_config_is_medgemma_4b(medgemma_4b_cfg):
    plan = make_synthetic.plan_synthetic("4b")
    assert plan.cfg.vision == medgemma_4b_cfg.vision
    v = plan.cfg.vision
    assert (v.image_size, v.patch_size, v.hidden_size, v.ffn_length, v.block_count, v.head_count) == \
        (896, 14, 1152, 4304, 27, 16)
    assert v.layer_norm_eps == 1e-6 and v.tokens_per_image == 256 and v.scale_factor == 4
    assert v.projection_dim == plan.cfg.text.hidden_size == 2560


@pytest.mark.parametrize("outtype", MMPROJ_OUTTYPES)
def test_planned_vision_tensors_are_the_converters(medgemma_4b_cfg, outtype):
    plan = make_synthetic.plan_synthetic("4b", mmproj_outtype=outtype)
    shapes = {p.name: p.shape for p in plan.vision}
    assert shapes == vision_shapes(medgemma_4b_cfg.vision)
    assert len(shapes) == 7 + 16 * 27
    assert shapes["v.patch_embd.weight"] == (1152, 3, 14, 14)
    assert shapes["v.position_embd.weight"] == (4096, 1152)
    assert shapes["v.blk.26.ffn_down.weight"] == (1152, 4304)
    assert shapes["mm.input_projection.weight"] == (1152, 2560)
    for p in plan.vision:
        assert p.qtype == expected_type(p.name, p.shape, outtype), p.name
        assert p.add_one == (p.name == "mm.soft_emb_norm.weight"), p.name
    if outtype == "q8_0":
        assert {p.qtype for p in plan.vision} == {Q.F32, Q.F16, Q.Q8_0}
        assert sum(p.qtype == Q.F16 for p in plan.vision) == 27 + 1  # every ffn_down, and the projection


def test_draws_do_not_depend_on_the_outtype():
    """The f16/bf16/q8_0 files hold the f32 file's weights rounded: same tensors in the same order."""
    sources = {t: [p.source for p in make_synthetic.plan_synthetic("4b", mmproj_outtype=t).vision]
               for t in MMPROJ_OUTTYPES}
    assert all(s == sources["f32"] for s in sources.values())


def test_text_plan_unchanged_by_the_vision_part():
    plan = make_synthetic.plan_synthetic("4b", outtype="q8_0")
    assert len(plan.text) == 2 + 13 * 34 and not any(p.name.startswith(("v.", "mm.")) for p in plan.text)
    assert make_synthetic.plan_synthetic("27b-text").vision == []


def test_init_scales():
    plan = {p.name: p for p in make_synthetic.plan_synthetic("4b").vision}
    assert make_synthetic.vision_init(plan["v.blk.0.ln1.weight"])[0] == 1.0
    assert make_synthetic.vision_init(plan["v.post_ln.weight"])[0] == 1.0
    for name in ("v.blk.0.ln1.bias", "v.blk.0.attn_q.weight", "v.position_embd.weight", "mm.soft_emb_norm.weight"):
        assert make_synthetic.vision_init(plan[name])[0] == 0.0, name


def _subset(plan: make_synthetic.SyntheticPlan, outtype: str) -> make_synthetic.SyntheticPlan:
    small = {"v.blk.0.ln1.weight", "v.blk.0.ln1.bias", "v.blk.0.attn_q.weight", "v.blk.0.ffn_down.weight",
             "v.post_ln.weight", "mm.soft_emb_norm.weight"}
    return dataclasses.replace(plan, vision=[p for p in plan.vision if p.name in small])


def test_written_subset_values_and_types(tmp_path):
    """Writes six of the tensors per outtype: types and file type as planned, draws as documented, and each
    rounded file dequantising to the f32 file's values."""
    files: dict[str, Path] = {}
    for outtype in MMPROJ_OUTTYPES:
        plan = _subset(make_synthetic.plan_synthetic("4b", mmproj_outtype=outtype), outtype)
        files[outtype] = make_synthetic.write_mmproj("4b", plan, tmp_path / f"mmproj-{outtype}.gguf", outtype, 0)
    ref = {t.name: np.asarray(t.data, dtype=np.float32) for t in GGUFReader(files["f32"]).tensors}
    assert abs(ref["v.blk.0.ln1.weight"].mean() - 1) < 0.01 and abs(ref["v.blk.0.ln1.weight"].std() - 0.02) < 0.005
    assert abs(ref["mm.soft_emb_norm.weight"].mean() - 1) < 0.01  # the converter's (1 + w)
    assert abs(ref["v.blk.0.ln1.bias"].mean()) < 0.01
    assert abs(ref["v.blk.0.attn_q.weight"].std() - 0.02) < 0.001
    for outtype, path in files.items():
        r = GGUFReader(path)
        assert r.fields["general.file_type"].contents() == FILE_TYPE[outtype]
        assert r.fields["clip.vision.projection_dim"].contents() == 2560
        for t in r.tensors:
            shape = tuple(int(d) for d in reversed(t.shape.tolist()))
            assert t.tensor_type == expected_type(t.name, shape, outtype), (outtype, t.name)
            got = dequantize(np.asarray(t.data), t.tensor_type).reshape(ref[t.name].shape)
            tol = {Q.F32: 0, Q.F16: 2 ** -11, Q.BF16: 2 ** -8, Q.Q8_0: 0.02}[t.tensor_type]
            assert np.abs(got - ref[t.name]).max() <= tol * np.abs(ref[t.name]).max(), (outtype, t.name)


@pytest.mark.parametrize("argv", [[], ["--variant", "27b-text", "--mmproj-out", "x.gguf"]])
def test_refused_arguments(argv, capsys):
    with pytest.raises(SystemExit) as e:
        make_synthetic.parse_args(argv)
    assert e.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_mmproj_alone_is_allowed():
    args = make_synthetic.parse_args(["--mmproj-out", "m.gguf", "--mmproj-outtype", "q8_0"])
    assert args.out is None and args.mmproj_out == Path("m.gguf") and args.mmproj_outtype == "q8_0"


def test_jobs_do_not_change_the_file(tmp_path):
    """Chunks are drawn on threads, each from its own seed: one thread and three write the same bytes, also for a
    tensor of several chunks (the 4b ffn_down is 2560 x 10240: two chunks of 16 Mi values)."""
    plan = make_synthetic.plan_synthetic("4b", outtype="q8_0")
    small = {"blk.0.ffn_down.weight", "blk.0.attn_norm.weight", "blk.0.attn_k.weight"}
    plan = dataclasses.replace(plan, text=[p for p in plan.text if p.name in small])
    one = make_synthetic.write_text_model("4b", plan, tmp_path / "one.gguf", "q8_0", 0, jobs=1)
    three = make_synthetic.write_text_model("4b", plan, tmp_path / "three.gguf", "q8_0", 0, jobs=3)
    assert one.read_bytes() == three.read_bytes()
    tensors = {t.name: t for t in GGUFReader(one).tensors}
    down = dequantize(np.asarray(tensors["blk.0.ffn_down.weight"].data), Q.Q8_0).reshape(-1)
    half = down.size // 2  # the two chunks are different draws, each N(0, 0.02)
    assert not np.allclose(down[:half], down[half:])
    assert abs(down.std() - 0.02) < 0.001


def test_sigterm_leaves_no_partial_file(tmp_path):
    """`timeout` or `kill` mid-write: the temporary file goes, as on Ctrl-C, and the exit status says why."""
    proc = subprocess.Popen([sys.executable, str(SCRIPTS / "make_synthetic.py"), "--variant", "27b-text",
                             "--outtype", "q8_0", "--out", str(tmp_path / "m.gguf"), "--jobs", "2"],
                            stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.startswith("[3/"):  # tensor data is being written
            break
    assert any(tmp_path.iterdir()), "the temporary file should exist while writing"
    proc.send_signal(signal.SIGTERM)
    proc.stderr.read()
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == []
