#!/usr/bin/env python3
"""Vision projector types: encoding time and fidelity against F32, on the synthetic medgemma-4b-it vision tower.

Makes models/synthetic-mmproj-4b-f32.gguf (scripts/make_synthetic.py --mmproj-out) when missing, quantises it with
`medgemma quantize` to each type that SigLIP's shapes allow (f16, bf16, q8_0, q4_0; rows of 4304 and the projector
matrix stay F16 in the quantised ones), then runs `medgemma eval-quant` on the F32 file and the others with the
synthetic 4B Q4_K_M text model: per image, the encoding time, the cosine similarity of the image embeddings to
F32's (whole image and worst token), the largest absolute difference, and how many of the first greedy tokens after
the image agree with F32's. Prints a Markdown table; writes docs/bench/mmproj.json.

Random weights are not trained weights: trained SigLIP has outlier channels that quantisation may treat worse, so
treat the fidelity columns as a check of the arithmetic, and re-run this on the real mmproj (`--f32 FILE`) when
you have it.

Example: .venv/bin/python scripts/mmproj_report.py --threads 2
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
MEDGEMMA = ROOT / "target/release/medgemma"
TYPES = ("f16", "bf16", "q8_0", "q4_0")


def log(msg: str) -> None:
    print(f"mmproj_report: {msg}", file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--f32", type=Path, default=MODELS / "synthetic-mmproj-4b-f32.gguf")
    parser.add_argument("--model", type=Path, default=MODELS / "synthetic-medgemma-4b-q4_k_m.gguf")
    parser.add_argument("--image", type=Path, action="append",
                        help="images to encode [default: tests/fixtures/images/chest.png]")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--gen-tokens", type=int, default=8)
    args = parser.parse_args()
    images = args.image or [ROOT / "tests/fixtures/images/chest.png"]

    if not args.f32.exists():
        log(f"writing {args.f32}")
        subprocess.run([sys.executable, str(ROOT / "scripts/make_synthetic.py"), "--mmproj-out", str(args.f32),
                        "--mmproj-outtype", "f32"], check=True)
    if not args.model.exists():
        sys.exit(f"mmproj_report: {args.model} is missing; scripts/bench-report makes it")
    quantised = []
    for t in TYPES:
        out = args.f32.with_name(args.f32.stem.replace("-f32", "") + f"-{t}-mq.gguf")
        if not out.exists():
            log(f"quantising to {t}")
            subprocess.run([str(MEDGEMMA), "quantize", str(args.f32), str(out), "--type", t, "-t",
                            str(args.threads)], check=True, capture_output=True)
        quantised.append(out)
    cmd = [str(MEDGEMMA), "eval-quant", "-m", str(args.model), "--base", str(args.f32), "--json",
           "-t", str(args.threads), "--gen-tokens", str(args.gen_tokens)]
    for q in quantised:
        cmd += ["--quant", str(q)]
    for i in images:
        cmd += ["--image", str(i)]
    log("encoding (about a minute per image and type on 2 cores, twice with --gen-tokens)")
    report = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    out_dir = ROOT / "docs/bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "mmproj.json").write_text(json.dumps(report, indent=2) + "\n")

    print(f"| type | file size | image | encode ms | cosine vs F32 | worst token | max abs diff | "
          f"same first {args.gen_tokens} tokens |")
    print("|---|---|---|---|---|---|---|---|")
    for p in [report["base"], *report["quants"]]:
        size = Path(p["file"]).stat().st_size / 1e6
        for i in p["images"]:
            f = i.get("fidelity")
            cos = f"{f['cosine']:.6f}" if f else "1 (reference)"
            worst = f"{f['min_token_cosine']:.6f}" if f else "-"
            diff = f"{f['max_abs_diff']:.3g}" if f else "-"
            same = f"{i['same_first_tokens']}/{args.gen_tokens}" if f else "-"
            print(f"| {p['file_type']} | {size:.0f} MB | {Path(i['image']).name} | {i['encode_ms']:.0f} | {cos} | "
                  f"{worst} | {diff} | {same} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
