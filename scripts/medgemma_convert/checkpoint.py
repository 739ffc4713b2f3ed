"""Reading safetensors checkpoints (single file or sharded) without torch, one tensor slice at a time.

Owns: the shard index, the safetensors header, memory-mapping tensor data and converting bf16/f16/f32 rows to
float32 in bounded chunks. Must not materialise a whole tensor of a large model at once.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from . import ConversionError
from .config import read_json

DTYPES = {"BF16": (np.uint16, 2), "F16": (np.float16, 2), "F32": (np.float32, 4)}
CHUNK_ELEMENTS = 16 * 1024 * 1024  # float32 elements converted at a time (64 MiB)


@dataclass(frozen=True)
class TensorRef:
    name: str
    file: Path
    dtype: str
    shape: tuple[int, ...]
    offset: int  # absolute byte offset of the data in `file`
    nbytes: int

    @property
    def n_elements(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1


def shard_files(checkpoint: Path) -> list[Path]:
    index = checkpoint / "model.safetensors.index.json"
    if index.is_file():
        weight_map = read_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ConversionError(f"{index} has no weight_map")
        files = sorted(set(weight_map.values()))
        for name in files:
            if not (checkpoint / name).is_file():
                raise ConversionError(f"missing shard {name} (named in model.safetensors.index.json) in {checkpoint}")
        return [checkpoint / name for name in files]
    single = checkpoint / "model.safetensors"
    if single.is_file():
        return [single]
    others = sorted(p.name for p in checkpoint.glob("*.bin")) + sorted(p.name for p in checkpoint.glob("*.pt"))
    hint = f" (found {', '.join(others)}: only safetensors is supported)" if others else ""
    raise ConversionError(f"no model.safetensors or model.safetensors.index.json in {checkpoint}{hint}")


def read_header(path: Path) -> list[TensorRef]:
    size = path.stat().st_size
    with open(path, "rb") as f:
        raw_len = f.read(8)
        if len(raw_len) != 8:
            raise ConversionError(f"{path} is not a safetensors file (too short)")
        (header_len,) = struct.unpack("<Q", raw_len)
        if header_len > size - 8:
            raise ConversionError(f"{path} is not a safetensors file (header length {header_len} > file size)")
        try:
            header = json.loads(f.read(header_len))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConversionError(f"{path}: unreadable safetensors header: {e}") from None
    data_start = 8 + header_len
    refs = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = info.get("dtype")
        if dtype not in DTYPES:
            raise ConversionError(f"tensor {name} in {path.name} has dtype {dtype}; supported: {', '.join(DTYPES)}")
        start, end = info["data_offsets"]
        ref = TensorRef(name, path, dtype, tuple(int(d) for d in info["shape"]), data_start + start, end - start)
        if ref.n_elements * DTYPES[dtype][1] != ref.nbytes or data_start + end > size:
            raise ConversionError(f"tensor {name} in {path.name}: shape {list(ref.shape)} does not match its data "
                                  "(truncated or corrupt file?)")
        refs.append(ref)
    return refs


def list_tensors(checkpoint: Path) -> dict[str, TensorRef]:
    tensors: dict[str, TensorRef] = {}
    for path in shard_files(checkpoint):
        for ref in read_header(path):
            if ref.name in tensors:
                raise ConversionError(f"tensor {ref.name} appears in both {tensors[ref.name].file.name} and "
                                      f"{path.name}")
            tensors[ref.name] = ref
    return tensors


def to_float32(raw: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "BF16":
        return (raw.astype(np.uint32) << 16).view(np.float32)
    return raw.astype(np.float32)


def read_rows(ref: TensorRef) -> Iterator[np.ndarray]:
    """The tensor as float32 rows (2-D: rows x last dimension), a bounded number of rows at a time."""
    np_dtype, _ = DTYPES[ref.dtype]
    row_len = ref.shape[-1] if ref.shape else 1
    n_rows = ref.n_elements // row_len if row_len else 0
    if ref.nbytes == 0:
        return
    data = np.memmap(ref.file, dtype=np_dtype, mode="r", offset=ref.offset, shape=(n_rows, row_len))
    step = max(1, CHUNK_ELEMENTS // max(row_len, 1))
    for start in range(0, n_rows, step):
        yield to_float32(np.asarray(data[start:start + step]), ref.dtype)
    del data


def read_all(ref: TensorRef) -> np.ndarray:
    """A whole (small) tensor as float32 in its own shape; for tests and checks only."""
    return np.concatenate(list(read_rows(ref)), axis=0).reshape(ref.shape)
