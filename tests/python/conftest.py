"""Shared helpers for the converter tests: locating the tiny fixtures, running the real converter script,
reading and writing safetensors files without torch, and putting scripts/ on sys.path so that tests can import the
converter package (medgemma_convert) and make_synthetic directly.

The fixtures come from scripts/make_fixtures.py; MEDGEMMA_FIXTURES_DIR may point to another folder with the same
layout. A missing fixture fails the tests (it is never skipped silently).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"
CONVERTER = SCRIPTS / "convert_hf_to_gguf.py"
sys.path.insert(0, str(SCRIPTS))  # the converter package (medgemma_convert) and make_synthetic, for direct tests
FIXTURES = Path(os.environ.get("MEDGEMMA_FIXTURES_DIR", REPO / "tests" / "fixtures" / "hf"))
FIXTURE_NAMES = {"mm": "tiny-medgemma-mm", "text": "tiny-medgemma-text"}


def fixture_dir(kind: str) -> Path:
    path = FIXTURES / FIXTURE_NAMES[kind]
    if not (path / "config.json").is_file():
        pytest.fail(f"fixture {path} is missing: run `python scripts/make_fixtures.py` first "
                    "(or set MEDGEMMA_FIXTURES_DIR)", pytrace=False)
    return path


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


def run_converter(checkpoint: Path, outdir: Path, *extra: str) -> Run:
    proc = subprocess.run([sys.executable, str(CONVERTER), str(checkpoint), "--outdir", str(outdir), *extra],
                          capture_output=True, text=True, timeout=600)
    return Run(proc.returncode, proc.stdout, proc.stderr)


def copy_checkpoint(kind: str, dest: Path) -> Path:
    target = dest / FIXTURE_NAMES[kind]
    shutil.copytree(fixture_dir(kind), target)
    return target


def edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data, indent=1))


def text_config(checkpoint: Path) -> dict:
    cfg = json.loads((checkpoint / "config.json").read_text())
    return cfg.get("text_config", cfg)


# --- safetensors without torch ----------------------------------------------------------------------------------

def read_safetensors_header(path: Path) -> tuple[dict, int]:
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(n)), 8 + n


def load_checkpoint_tensor(checkpoint: Path, name: str) -> np.ndarray:
    """One tensor of a (single-file) checkpoint as float32, bf16 widened exactly."""
    path = checkpoint / "model.safetensors"
    header, start = read_safetensors_header(path)
    info = header[name]
    begin, end = info["data_offsets"]
    raw = path.read_bytes()[start + begin:start + end]
    if info["dtype"] == "BF16":
        values = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
    else:
        values = np.frombuffer(raw, {"F16": np.float16, "F32": np.float32}[info["dtype"]]).astype(np.float32)
    return values.reshape(info["shape"])


def write_safetensors(path: Path, entries: dict[str, tuple[dict, bytes]]) -> None:
    header, blobs, offset = {}, [], 0
    for name, (info, data) in entries.items():
        header[name] = {"dtype": info["dtype"], "shape": info["shape"], "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for blob in blobs:
            f.write(blob)


def shard_checkpoint(checkpoint: Path) -> list[str]:
    """Split model.safetensors into two shards plus model.safetensors.index.json; returns the shard names."""
    single = checkpoint / "model.safetensors"
    header, start = read_safetensors_header(single)
    raw = single.read_bytes()
    names = sorted(k for k in header if k != "__metadata__")
    halves = [names[: len(names) // 2], names[len(names) // 2:]]
    shard_names = [f"model-0000{i + 1}-of-00002.safetensors" for i in range(2)]
    weight_map = {}
    for shard, part in zip(shard_names, halves):
        entries = {}
        for name in part:
            b, e = header[name]["data_offsets"]
            entries[name] = (header[name], raw[start + b:start + e])
            weight_map[name] = shard
        write_safetensors(checkpoint / shard, entries)
    (checkpoint / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    single.unlink()
    return shard_names
