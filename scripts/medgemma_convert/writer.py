"""Streaming GGUF files to disk: header and metadata first, then each tensor in bounded row chunks.

Owns: the temporary output file (in the output folder, renamed into place only when every output is complete),
tensor encoding (f32/f16/bf16/q8_0) and progress lines. Holds one chunk of tensor data at a time (the converter);
with `jobs` > 1 (scripts/make_synthetic.py) up to `jobs` chunks are made and encoded at once on threads, written in
order.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from gguf import GGUFWriter
from gguf import GGMLQuantizationType as Q
from gguf.quants import quantize

from . import ConversionError
from .checkpoint import TensorRef, read_rows
from .tensors import TensorPlan

AddMetadata = Callable[[GGUFWriter], None]
ChunkSource = Callable[[TensorRef], Iterator[Callable[[], np.ndarray]]]


def read_chunks(ref: TensorRef) -> Iterator[Callable[[], np.ndarray]]:
    """The rows of `ref`, a bounded chunk at a time, each behind a call (the work a thread may do)."""
    for rows in read_rows(ref):
        yield lambda rows=rows: rows


def encode(rows: np.ndarray, qtype: Q, name: str) -> np.ndarray:
    if qtype == Q.F32:
        return np.ascontiguousarray(rows, dtype=np.float32)
    if qtype == Q.F16:
        out = rows.astype(np.float16)
        if not np.isfinite(out).all() and np.isfinite(rows).all():
            raise ConversionError(f"{name}: values beyond the f16 range; convert with --outtype bf16 or f32")
        return out
    if qtype in (Q.BF16, Q.Q8_0):
        return quantize(rows, qtype)
    raise ConversionError(f"{name}: output type {qtype.name} is not supported")


def _pad(fout, alignment: int) -> None:
    fout.write(b"\0" * (-fout.tell() % alignment))


def _write_tensor(fout, plan: TensorPlan, alignment: int, chunks: ChunkSource, pool: ThreadPoolExecutor | None,
                  jobs: int) -> None:
    def encoded(chunk: Callable[[], np.ndarray]) -> np.ndarray:
        rows = chunk()
        if plan.add_one:
            rows = rows + np.float32(1.0)
        return encode(rows, plan.qtype, plan.name)

    start = fout.tell()
    if pool is None:
        for chunk in chunks(plan.source):
            encoded(chunk).tofile(fout)
    else:
        in_flight: deque = deque()
        for chunk in chunks(plan.source):
            if len(in_flight) == jobs:
                in_flight.popleft().result().tofile(fout)
            in_flight.append(pool.submit(encoded, chunk))
        while in_flight:
            in_flight.popleft().result().tofile(fout)
    written = fout.tell() - start
    if written != plan.nbytes:
        raise ConversionError(f"{plan.name}: wrote {written} bytes, expected {plan.nbytes} (internal error)")
    _pad(fout, alignment)


def write_gguf(final_path: Path, arch: str, add_metadata: AddMetadata, plans: list[TensorPlan],
               chunks: ChunkSource = read_chunks, jobs: int = 1) -> Path:
    """Write a complete GGUF to a temporary file next to `final_path` and return the temporary path. `chunks` gives
    each tensor's rows (default: the checkpoint's); `jobs` > 1 makes and encodes that many chunks at once."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final_path.name}.", suffix=".partial", dir=final_path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    writer: GGUFWriter | None = None
    pool = ThreadPoolExecutor(max_workers=jobs) if jobs > 1 else None
    try:
        writer = GGUFWriter(tmp, arch)
        add_metadata(writer)
        for plan in plans:
            writer.add_tensor_info(plan.name, plan.shape, np.dtype(np.float32), plan.nbytes, raw_dtype=plan.qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        assert writer.fout is not None
        fout = writer.fout[0]
        _pad(fout, writer.data_alignment)
        for i, plan in enumerate(plans, 1):
            progress(f"[{i}/{len(plans)}] {final_path.name}: {plan.name} {list(plan.shape)} -> {plan.qtype.name}")
            _write_tensor(fout, plan, writer.data_alignment, chunks, pool, jobs)
        writer.close()
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o666 & ~umask)  # mkstemp creates 0600; give the output the usual permissions
        return tmp
    except BaseException:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
        raise
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def clean_up_on_sigterm() -> None:
    """Turn SIGTERM (`timeout`, a scheduler, `kill`) into SystemExit, so that a write cut short removes its temporary
    file as Ctrl-C does instead of leaving gigabytes of .partial behind."""
    def stop(signum, frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, stop)


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
