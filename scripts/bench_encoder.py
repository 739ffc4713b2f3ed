#!/usr/bin/env python3
"""The image encoder's speed: mmproj tensor types, flash attention in the vision tower and threads, medgemma against
llama.cpp's llama-mtmd-cli on the same files, machine and threads, in one run.

For each mmproj file (--mmproj, default the synthetic F32/BF16/F16/Q8_0 files that scripts/mmproj_report.py makes)
and each thread count, rounds alternate the tools: `medgemma bench --mmproj FILE --image IMAGE -p 8 -n 1 -r 1
--image-repetitions 1` (the first encoding of the image; bench never uses the image cache) and llama.cpp's
llama-mtmd-cli with `-fa on` and `-fa off` (mtmd passes it to the vision tower; medgemma runs mtmd's default,
`auto`, which enables flash attention where the backend supports it). mtmd's own `image slice encoded in N ms`
line is the llama.cpp time; medgemma's is bench's `image_encode_ms`.

It also prints the arithmetic rate: the SigLIP-400M tower at 896x896 (4096 patches, 27 layers, width 1152, MLP
4304) is about 5.47 TFLOP per image (matrix products 3.37, attention 2.09, patch embedding and projector 0.01),
so GFLOP/s = 5470 / seconds.

The llama.cpp binaries are the ones scripts/bench-report builds (target/llama-ref: the sources we link;
target/llama-latest: the newest llama-cpp-python sdist); run that first.

Example: .venv/bin/python scripts/bench_encoder.py --threads 2 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
MEDGEMMA = ROOT / "target/release/medgemma"
MTMD = {"crate": ROOT / "target/llama-ref/llama-mtmd-cli",
        "newest": ROOT / "target/llama-latest/build/bin/llama-mtmd-cli"}
IMAGE = ROOT / "tests/fixtures/images/chest.png"
TFLOP = 5.47
IMAGE_MS = re.compile(r"(?:image slice encoded in|batch encoding done in) (\d+) ms")


def log(msg: str) -> None:
    print(f"bench_encoder: {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str]) -> str:
    p = subprocess.run(cmd, text=True, capture_output=True)
    if p.returncode != 0:
        sys.exit(f"bench_encoder: {Path(cmd[0]).name} failed (exit {p.returncode}):\n{p.stderr[-3000:]}")
    return p.stdout + p.stderr


def ours(model: Path, mmproj: Path, threads: int) -> float:
    out = run([str(MEDGEMMA), "bench", "-m", str(model), "--mmproj", str(mmproj), "--image", str(IMAGE), "-p", "8",
               "-n", "1", "-r", "1", "--image-repetitions", "1", "-t", str(threads), "--json"])
    return json.loads(out[:out.rindex("}") + 1])["image_encode_ms"]["mean"]


def mtmd(tool: Path, model: Path, mmproj: Path, threads: int, fa: str) -> float:
    out = run([str(tool), "-m", str(model), "--mmproj", str(mmproj), "-t", str(threads), "-n", "1", "--temp", "0",
               "-fa", fa, "--image", str(IMAGE), "-p", "Describe this image.", "-lv", "4"])
    m = IMAGE_MS.search(out)
    if not m:
        sys.exit(f"bench_encoder: no image timing in llama-mtmd-cli's output:\n{out[-3000:]}")
    return float(m.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=MODELS / "synthetic-medgemma-4b-q4_k_m.gguf")
    parser.add_argument("--mmproj", type=Path, nargs="+",
                        default=[MODELS / "synthetic-mmproj-4b-f32.gguf", MODELS / "synthetic-mmproj-4b-bf16-mq.gguf",
                                 MODELS / "synthetic-mmproj-4b-f16-mq.gguf", MODELS / "synthetic-mmproj-4b-q8_0-mq.gguf"])
    parser.add_argument("--threads", type=int, nargs="+", default=[2])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--reference", choices=sorted(MTMD), default="crate",
                        help="which llama-mtmd-cli (default crate: the llama.cpp medgemma links)")
    parser.add_argument("--no-fa-off", action="store_true", help="leave out llama-mtmd-cli -fa off")
    args = parser.parse_args()
    tool = MTMD[args.reference]
    for p in [MEDGEMMA, tool, args.model, *args.mmproj]:
        if not p.exists():
            sys.exit(f"bench_encoder: {p} is missing (scripts/bench-report and scripts/mmproj_report.py make them)")

    modes = ["medgemma (fa auto)", "llama.cpp -fa on"] + ([] if args.no_fa_off else ["llama.cpp -fa off"])
    rows = []
    for threads in args.threads:
        for mmproj in args.mmproj:
            ms = {m: [] for m in modes}
            for r in range(args.rounds):
                for mode in (modes if r % 2 == 0 else modes[::-1]):
                    log(f"{mmproj.name}, {threads} threads, round {r + 1}: {mode}")
                    if mode.startswith("medgemma"):
                        ms[mode].append(ours(args.model, mmproj, threads))
                    else:
                        ms[mode].append(mtmd(tool, args.model, mmproj, threads, mode.rsplit(" ", 1)[1]))
            rows.append({"mmproj": mmproj.name, "bytes": mmproj.stat().st_size, "threads": threads, "ms": ms})

    print(f"llama-mtmd-cli: {tool.relative_to(ROOT)}; image {IMAGE.name} (896x896 after resizing); "
          f"{args.rounds} rounds, tools alternating; mean ± sd ms and GFLOP/s at {TFLOP} TFLOP per image\n")
    print("| mmproj | MB | threads | " + " | ".join(f"{m} ms" for m in modes) + " | medgemma GFLOP/s | "
          "medgemma / llama.cpp -fa on |")
    print("|---|---|---|" + "---|" * len(modes) + "---|---|")
    for row in rows:
        means = {m: statistics.mean(v) for m, v in row["ms"].items()}
        cells = [f"{means[m]:.0f} ± {statistics.stdev(v) if len(v) > 1 else 0:.0f}" for m, v in row["ms"].items()]
        print(f"| {row['mmproj']} | {row['bytes'] / 1e6:.0f} | {row['threads']} | " + " | ".join(cells)
              + f" | {TFLOP * 1e6 / means[modes[0]]:.0f} | {means[modes[0]] / means[modes[1]]:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
