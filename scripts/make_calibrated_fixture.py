#!/usr/bin/env python3
"""Derive tests/fixtures/hf/tiny-medgemma-calibrated from tiny-medgemma-gentle: the same checkpoint with the (tied)
token embeddings scaled by 1/8.

Why: the gentle checkpoint's embeddings are N(0, 1), so its logits have a standard deviation of about
sqrt(hidden) = 8 and every next-token distribution is nearly one-hot; the KL divergence between a model and its
quantisation is then ~0 whatever the type, and `medgemma eval-quant` could not tell q8_0 from q4_0. With the
embeddings at N(0, 1/64) the logits spread over a few nats, as a trained model's do, and quantisation error shows
in the distributions. Scaling bf16 values by a power of two is exact, and only numpy is needed.

Usage: python scripts/make_calibrated_fixture.py   (rewrites the folder; its outputs are committed)
"""

from __future__ import annotations

import json
import shutil
import struct
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "tests/fixtures/hf/tiny-medgemma-gentle"
TARGET = ROOT / "tests/fixtures/hf/tiny-medgemma-calibrated"
SCALED = "model.embed_tokens.weight"
FACTOR = 0.125


def main() -> int:
    data = (SOURCE / "model.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    body = bytearray(data[8 + n :])
    entry = header[SCALED]
    if entry["dtype"] != "BF16":
        sys.exit(f"{SCALED} is {entry['dtype']}, expected BF16")
    start, end = entry["data_offsets"]
    bf16 = np.frombuffer(bytes(body[start:end]), dtype="<u2")
    f32 = (bf16.astype(np.uint32) << 16).view(np.float32) * np.float32(FACTOR)
    back = (f32.view(np.uint32) >> 16).astype("<u2")
    if not np.array_equal((back.astype(np.uint32) << 16).view(np.float32), f32):
        sys.exit("scaling was not exact in bf16")
    body[start:end] = back.tobytes()
    if TARGET.exists():
        shutil.rmtree(TARGET)
    TARGET.mkdir(parents=True)
    for f in SOURCE.iterdir():
        if f.name != "model.safetensors":
            shutil.copy2(f, TARGET / f.name)
    (TARGET / "model.safetensors").write_bytes(data[: 8 + n] + bytes(body))
    print(f"wrote {TARGET.relative_to(ROOT)} ({SCALED} x {FACTOR})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
