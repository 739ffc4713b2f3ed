#!/usr/bin/env python3
"""Does a long greedy answer depend on `batch --parallel`? Runs one long job (about 1,900 tokens) with short
companion jobs at --parallel 1 and N, the long job alone at --parallel N, and the long job alone at 1 and 2
threads, then reports which answers are identical and where the first difference is.

Usage: scripts/parallel_equality.py --medgemma target/release/medgemma -m MODEL.gguf [--mmproj MMPROJ.gguf]
       [--parallel 4] [--long-tokens 1900] [--out DIR]
The tiny fixture (tests/fixtures/hf/tiny-medgemma-mm converted to f32) is what the README's note was measured on.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

QUESTIONS = ["What is sepsis?", "What is pneumonia?", "What causes anaemia?", "Define tachycardia.", "What is a stroke?"]


def jobs(long_tokens: int, companions: int) -> list[dict]:
    out = [{"id": "long", "prompt": "Explain sepsis in detail.", "system": "You are a helpful medical assistant.",
            "max_tokens": long_tokens}]
    for i in range(companions):
        out.append({"id": f"short-{i}", "prompt": QUESTIONS[i % len(QUESTIONS)],
                    "system": "You are a helpful medical assistant.", "max_tokens": 40 + 60 * (i % 4)})
    return out


def run_batch(args: argparse.Namespace, work: Path, name: str, job_list: list[dict], parallel: int,
              threads: int) -> dict[str, dict]:
    src = work / f"{name}.jsonl"
    src.write_text("".join(json.dumps(j) + "\n" for j in job_list))
    out = work / f"{name}.out.jsonl"
    cmd = [args.medgemma, "batch", "-m", args.model, "--input", str(src), "--output", str(out), "--overwrite",
           "--parallel", str(parallel), "-t", str(threads), "-c", "2048", "--cache-type", "f32"]
    if args.mmproj:
        cmd += ["--mmproj", args.mmproj]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{name}: medgemma batch failed:\n{done.stderr}")
    return {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}


def first_difference(a: str, b: str) -> int | None:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--medgemma", default="target/release/medgemma")
    p.add_argument("-m", "--model", required=True)
    p.add_argument("--mmproj")
    p.add_argument("--parallel", type=int, default=4)
    p.add_argument("--long-tokens", type=int, default=1900)
    p.add_argument("--companions", type=int, default=7)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    work = args.out or Path(tempfile.mkdtemp(prefix="parallel-equality-"))
    work.mkdir(parents=True, exist_ok=True)
    n = args.parallel
    with_companions = jobs(args.long_tokens, args.companions)
    alone = with_companions[:1]
    runs = {
        f"companions, --parallel 1, 2 threads": run_batch(args, work, "p1", with_companions, 1, 2),
        f"companions, --parallel {n}, 2 threads": run_batch(args, work, f"p{n}", with_companions, n, 2),
        f"alone, --parallel {n}, 2 threads": run_batch(args, work, f"alone-p{n}", alone, n, 2),
        "alone, --parallel 1, 2 threads": run_batch(args, work, "alone-p1", alone, 1, 2),
        "alone, --parallel 1, 1 thread": run_batch(args, work, "alone-p1-t1", alone, 1, 1),
    }
    names = list(runs)
    base = runs[names[0]]
    print(f"long job: {base['long']['usage']['completion_tokens']} tokens, {len(base['long']['text'])} characters")
    for name in names[1:]:
        r = runs[name]
        d = first_difference(base["long"]["text"], r["long"]["text"])
        shorts = all(r[k]["text"] == base[k]["text"] for k in r if k != "long" and k in base)
        where = "identical" if d is None else f"differs from character {d} on"
        print(f"{name:40s} long job {where}; short jobs identical: {shorts}")
    json.dump({k: {i: r["text"] for i, r in v.items()} for k, v in runs.items()},
              open(work / "texts.json", "w"), indent=1)
    print(f"texts in {work / 'texts.json'}")


if __name__ == "__main__":
    main()
