#!/usr/bin/env python3
"""Why can a long greedy answer depend on `batch --parallel`? Runs the integration tests' 27-job set (text, image and
multi-turn jobs; tests/batch.rs) with 1,900 tokens per job at --parallel 1 and N, then takes the first job whose
answer differs and runs it again in isolating set-ups:

  alone at --parallel 1 and N             same batch shapes as --parallel 1: one row per decode
  beside companions sharing no prefix     multi-row decode steps, nothing copied or reused from the cache
  beside one such companion (--parallel 2)
  after a job sharing its image prefix    the prefix comes from the cache (--parallel 1: reuse, no batching)

and prints which answers equal the --parallel 1 one and which the --parallel N one.

Usage: scripts/parallel_equality.py [--medgemma target/release/medgemma] -m MODEL.gguf --mmproj MMPROJ.gguf
       [--parallel 4] [--tokens 1900] [--out DIR]
Measured on the tiny fixture (tests/fixtures/hf/tiny-medgemma-mm converted to f32, as the tests do):
  target/tmp/gguf/tiny-medgemma-mm/f32/{tiny-medgemma-mm-f32.gguf,mmproj-tiny-medgemma-mm-f32.gguf}
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = ["What is sepsis?", "What is pneumonia?", "What causes anaemia?", "Define tachycardia.", "What is a stroke?"]


def job_set() -> list[dict]:
    """The 27 good jobs of tests/batch.rs::write_jobs."""
    jobs = []
    for i in range(27):
        q = QUESTIONS[i % len(QUESTIONS)]
        if i % 3 == 0:
            jobs.append({"id": f"text-{i}", "prompt": q, "system": "You are a helpful medical assistant."})
        elif i % 3 == 1:
            jobs.append({"id": f"xray-{i}", "prompt": q, "images": ["chest.png"],
                         "system": "You are an expert radiologist."})
        else:
            image = "skin.png" if i % 2 == 0 else "chest.png"
            jobs.append({"id": f"conv-{i}", "messages": [
                {"role": "user", "content": "Look at this.", "images": [image]},
                {"role": "model", "content": "I see it."},
                {"role": "user", "content": q}]})
    return jobs


class Runner:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args, self.work = args, work

    def run(self, name: str, jobs: list[dict], parallel: int) -> dict[str, dict]:
        src = self.work / f"{name}.jsonl"
        src.write_text("".join(json.dumps(j) + "\n" for j in jobs))
        out = self.work / f"{name}.out.jsonl"
        cmd = [self.args.medgemma, "batch", "-m", self.args.model, "--mmproj", self.args.mmproj, "--input", str(src),
               "--output", str(out), "--overwrite", "-n", str(self.args.tokens), "-t", str(self.args.threads),
               "--parallel", str(parallel)]
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
    p.add_argument("--medgemma", default=str(ROOT / "target/release/medgemma"))
    p.add_argument("-m", "--model", required=True)
    p.add_argument("--mmproj", required=True)
    p.add_argument("--parallel", type=int, default=4)
    p.add_argument("--tokens", type=int, default=1900)
    p.add_argument("-t", "--threads", type=int, default=2)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    work = args.out or Path(tempfile.mkdtemp(prefix="parallel-equality-"))
    work.mkdir(parents=True, exist_ok=True)
    for image in ["chest.png", "skin.png"]:
        shutil.copy(ROOT / "tests/fixtures/images" / image, work / image)
    r = Runner(args, work)
    n = args.parallel
    jobs = job_set()
    by_id = {j["id"]: j for j in jobs}
    p1, pn = r.run("all-p1", jobs, 1), r.run(f"all-p{n}", jobs, n)
    differing = [i for i in p1 if p1[i]["text"] != pn[i]["text"]]
    print(f"{len(jobs)} jobs, {args.tokens} tokens each: {len(differing)} answers differ between --parallel 1 and {n}"
          + (f": {', '.join(differing)}" if differing else ""))
    for i in differing:
        print(f"  {i}: first difference at character {first_difference(p1[i]['text'], pn[i]['text'])}"
              f" of {len(p1[i]['text'])}")
    if not differing:
        return
    x = differing[0]
    job = by_id[x]
    # Companions that share nothing with x beyond the first tokens (other system prompts, no image).
    companions = [j for j in jobs if j["id"].startswith("text-")][:3]
    # A job with x's beginning (same first message and image), stopped after one token.
    sharer = next((dict(j, max_tokens=1) for j in jobs if j["id"] != x and j.get("messages", [None])[0]
                   == job.get("messages", [0])[0]), None)
    setups = [
        (f"{x} alone, --parallel 1", [job], 1),
        (f"{x} alone, --parallel {n}", [job], n),
        (f"{x} + 3 unrelated jobs, --parallel {n}", [job] + companions, n),
        (f"{x} + 1 unrelated job, --parallel 2", [job] + companions[:1], 2),
        (f"{x} + 3 unrelated jobs, --parallel 1", [job] + companions, 1),
    ]
    if sharer:
        setups.append((f"{x} after {sharer['id']} (same image prefix), --parallel 1", [sharer, job], 1))
    print(f"{x} in isolating set-ups:")
    for k, (name, js, par) in enumerate(setups):
        got = r.run(f"setup-{k}", js, par)[x]
        same = ("= --parallel 1 answer" if got["text"] == p1[x]["text"]
                else f"= --parallel {n} answer" if got["text"] == pn[x]["text"] else "a third answer")
        print(f"  {name:60s} cached {got['usage']['cached_tokens']:3d}: {same}")
    print(f"files in {work}")


if __name__ == "__main__":
    main()
