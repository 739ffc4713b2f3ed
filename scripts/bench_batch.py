#!/usr/bin/env python3
"""Benchmark `medgemma batch` (--parallel 1, 2, 4, 8) and `medgemma serve` against llama.cpp's llama-server and `medgemma run` per job.

Every mode answers the same N short jobs (distinct short medical questions, one shared system prompt, greedy,
at most 32 generated tokens, --threads (default: the physical cores, both tools' default; 2 on the machines this
was written on), 512 context positions per sequence). With --vary-tokens the jobs' limits differ instead (8 to 56
tokens, 32 on average, the same limits in every mode), so that sequences finish at different times and new jobs
start while others are generating, as answers of different lengths do. For each mode the wall time of the whole
set is measured, load included, and from it jobs/minute and generated tokens/s (the sum of the jobs' generated
tokens / wall time: `usage.completion_tokens` of the batch output records and of the server's answers, and the
number of generated token ids that `medgemma run --json` reports for the loop). The loop pays the model load once
per job; batch pays it once.

llama-server (--llama-server PATH; scripts/bench_report.py builds it from the newest llama.cpp in
target/llama-latest/build/bin) is started with `-np P -c 512*P -t T` on 127.0.0.1, and all N requests are sent at
once to /v1/chat/completions (system + user message, the job's max_tokens, temperature 0); the wall time runs from the
server's start to the last answer, so it includes the load, as batch's does. `medgemma serve` (--serve-parallel)
is measured the same way through HTTP: `--parallel P -c 512 -t T` (medgemma's -c is per sequence, llama-server's
is shared by its P slots: 512 positions per sequence on both), the same requests at once.

Prints a Markdown table on stdout and progress on stderr.

Example:
    python scripts/bench_batch.py --model models/synthetic-medgemma-4b-q4_k_m.gguf --jobs 32
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench_report import physical_cores  # scripts/ is on the path when this runs as a script

SYSTEM = "You are a careful medical assistant. Answer briefly."
QUESTIONS = [
    "What is sepsis?", "What causes pneumonia?", "How is asthma treated?", "What are signs of a stroke?",
    "What is type 2 diabetes?", "How is hypertension diagnosed?", "What does insulin do?",
    "What is anemia?", "What are symptoms of a heart attack?", "How is a fever managed in children?",
    "What is chronic kidney disease?", "What causes liver failure?", "What is a normal blood pressure?",
    "When should antibiotics be used?", "What is the first line treatment for sepsis?",
    "What are side effects of chemotherapy?", "How does a vaccine work?", "What is hypotension?",
    "What are common causes of chest pain?", "What is an acute stroke?", "How is a viral infection treated?",
    "What is a bacterial infection?", "What does a chest x ray show?", "What is intensive care?",
    "How is oxygen given to patients?", "What is heart failure?", "What are signs of dehydration?",
    "What causes headaches?", "What is a fracture?", "How is pain managed after surgery?",
    "What is a blood clot?", "What is COPD?", "What are symptoms of anemia?", "What is a seizure?",
    "How is diabetes monitored?", "What is meningitis?", "What does the kidney do?", "What is an allergy?",
    "How is tuberculosis spread?", "What is a migraine?",
]
PARALLELS = (1, 2, 4, 8)
ROOT = Path(__file__).resolve().parent.parent
MAX_TOKENS = 32
THREADS = 2  # --threads; set in main()


def common(max_tokens: int = MAX_TOKENS) -> list[str]:
    """The options every medgemma mode gets."""
    return ["-n", str(max_tokens), "-t", str(THREADS), "-c", "512", "--temp", "0"]


@dataclass
class Result:
    mode: str
    wall_s: float
    jobs: int
    generated: int
    failed: int

    @property
    def jobs_per_min(self) -> float:
        return self.jobs / self.wall_s * 60

    @property
    def tokens_per_s(self) -> float:
        return self.generated / self.wall_s


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Job:
    question: str
    max_tokens: int


def questions(n: int, vary_tokens: bool = False) -> list[Job]:
    """n distinct short questions (numbered variants once the list runs out), each with its token limit: 32, or
    with `vary_tokens` 8 + (13 i mod 49), i.e. 8 to 56 spread evenly over the jobs (32 on average over 49)."""
    out = []
    for i in range(n):
        q = QUESTIONS[i % len(QUESTIONS)]
        q = q if i < len(QUESTIONS) else f"{q[:-1]} (case {i // len(QUESTIONS) + 1})?"
        out.append(Job(q, 8 + (13 * i) % 49 if vary_tokens else MAX_TOKENS))
    return out


def bench_batch(binary: Path, model: Path, jobs: list[Job], parallel: int, tmp: Path) -> Result:
    input_path = tmp / "jobs.jsonl"
    with open(input_path, "w", encoding="utf-8") as f:
        for i, job in enumerate(jobs):
            f.write(json.dumps({"id": f"q{i:03d}", "prompt": job.question, "system": SYSTEM,
                                "max_tokens": job.max_tokens, "temperature": 0}) + "\n")
    output = tmp / f"out-p{parallel}.jsonl"
    cmd = [str(binary), "batch", "-m", str(model), "--input", str(input_path), "--output", str(output),
           "--overwrite", "--parallel", str(parallel), *common()]
    log(f"running: {' '.join(cmd)}")
    start = time.monotonic()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.monotonic() - start
    if proc.returncode != 0:
        log(f"batch --parallel {parallel} exited with {proc.returncode}: {proc.stderr[-2000:]}")
    records = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines() if line.strip()] \
        if output.exists() else []
    generated = sum(r["usage"]["completion_tokens"] for r in records)
    failed = len(jobs) - sum(1 for r in records if r.get("finish_reason") != "error")
    log(f"batch --parallel {parallel}: {wall:.1f} s, {len(records)} records, {generated} tokens, {failed} failed")
    return Result(f"batch --parallel {parallel}", wall, len(jobs), generated, failed)


def bench_loop(binary: Path, model: Path, jobs: list[Job]) -> Result:
    generated = failed = 0
    start = time.monotonic()
    for i, job in enumerate(jobs):
        cmd = [str(binary), "run", "-m", str(model), *common(job.max_tokens), "--system", SYSTEM,
               "--json", job.question]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            failed += 1
            log(f"run {i + 1}/{len(jobs)} exited with {proc.returncode}: {proc.stderr[-1000:]}")
            continue
        generated += len(json.loads(proc.stdout)["generated_token_ids"])
        log(f"run {i + 1}/{len(jobs)} done at {time.monotonic() - start:.1f} s")
    wall = time.monotonic() - start
    log(f"loop: {wall:.1f} s, {generated} tokens, {failed} failed")
    return Result("run once per job (loop)", wall, len(jobs), generated, failed)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: dict, timeout: float) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def llama_server_cmd(server: Path, model: Path, port: int, parallel: int) -> list[str]:
    return [str(server), "-m", str(model), "--host", "127.0.0.1", "--port", str(port), "-np", str(parallel),
            "-c", str(512 * parallel), "-t", str(THREADS), "--temp", "0", "--no-webui"]


def medgemma_serve_cmd(binary: Path, model: Path, port: int, parallel: int, max_tokens: int) -> list[str]:
    """`medgemma serve`; its -n is the largest max_tokens a request may ask for."""
    return [str(binary), "serve", "-m", str(model), "--host", "127.0.0.1", "--port", str(port), "--parallel",
            str(parallel), *common(max_tokens)]


def bench_server(name: str, cmd_for, model: Path, jobs: list[Job], parallel: int, tmp: Path) -> Result:
    """Wall time of `jobs` sent at once to an OpenAI-compatible server started by `cmd_for(port)`, load included."""
    port = free_port()
    cmd = cmd_for(port)
    log(f"running: {' '.join(cmd)}")
    err = open(tmp / f"{name.replace(' ', '-')}-{parallel}.log", "w")
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
    base = f"http://127.0.0.1:{port}"
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}; see {err.name}")
            try:
                with urllib.request.urlopen(base + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        loaded = time.monotonic() - start

        def ask(job: Job) -> dict:
            try:
                return post(base + "/v1/chat/completions", {
                    "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": job.question}],
                    "max_tokens": job.max_tokens, "temperature": 0}, timeout=3600)
            except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError) as e:
                log(f"{name} request failed: {e}")
                return {}

        generated = failed = 0
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(jobs)) as pool:
            for answer in pool.map(ask, jobs):
                if answer.get("choices"):
                    generated += answer["usage"]["completion_tokens"]
                else:
                    failed += 1
        wall = time.monotonic() - start
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        err.close()
    log(f"{name} {parallel}: {wall:.1f} s ({loaded:.1f} s to load), {generated} tokens, {failed} failed")
    return Result(f"{name} {parallel}", wall, len(jobs), generated, failed)


def table(results: list[Result], loop: Result) -> str:
    lines = ["| mode | jobs | wall s | jobs/min | generated tokens | tokens/s | speed-up vs loop | failed |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r.mode} | {r.jobs} | {r.wall_s:.1f} | {r.jobs_per_min:.2f} | {r.generated} | "
                     f"{r.tokens_per_s:.2f} | {loop.wall_s / r.wall_s:.2f}x | {r.failed} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="the GGUF model")
    parser.add_argument("--jobs", type=int, default=32, help="number of jobs (default 32)")
    parser.add_argument("--binary", type=Path, default=Path(__file__).resolve().parent.parent / "target/release/medgemma",
                        help="the medgemma binary (default target/release/medgemma)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads of every tool (default: the physical cores, their own default)")
    parser.add_argument("--vary-tokens", action="store_true",
                        help="token limits of 8 to 56 (32 on average) instead of 32 for every job")
    parser.add_argument("--skip-loop", action="store_true", help="measure batch modes only (ratios then omitted)")
    parser.add_argument("--parallel", type=int, nargs="*", default=list(PARALLELS),
                        help=f"the batch modes to measure (default {' '.join(map(str, PARALLELS))})")
    parser.add_argument("--llama-server", type=Path, default=ROOT / "target/llama-latest/build/bin/llama-server",
                        help="llama.cpp's llama-server (default: the one scripts/bench-report builds; measured "
                             "when it exists)")
    parser.add_argument("--server-parallel", type=int, nargs="*", default=[8],
                        help="llama-server -np values to measure (default 8; none: leave the server out)")
    parser.add_argument("--server-first", action="store_true",
                        help="run llama-server before medgemma serve (to check that the order does not matter)")
    parser.add_argument("--serve-parallel", type=int, nargs="*", default=[8],
                        help="medgemma serve --parallel values to measure (default 8; none: leave it out)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    global THREADS
    args = parse_args(argv)
    THREADS = args.threads or physical_cores()
    if args.jobs < 1:
        log("error: --jobs must be at least 1")
        return 2
    for path in (args.binary, args.model):
        if not path.is_file():
            log(f"error: {path} not found")
            return 2
    jobs = questions(args.jobs, args.vary_tokens)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        for parallel in args.parallel:
            results.append(bench_batch(args.binary, args.model, jobs, parallel, Path(tmp)))
        ours, theirs = [], []
        for parallel in args.serve_parallel:
            limit = max(job.max_tokens for job in jobs)
            cmd = lambda port, p=parallel, n=limit: medgemma_serve_cmd(args.binary, args.model, port, p, n)  # noqa: E731
            ours.append(("medgemma serve --parallel", cmd, parallel))
        if args.llama_server.is_file():
            for parallel in args.server_parallel:
                cmd = lambda port, p=parallel: llama_server_cmd(args.llama_server, args.model, port, p)  # noqa: E731
                theirs.append(("llama-server -np", cmd, parallel))
        elif args.server_parallel:
            log(f"no llama-server at {args.llama_server} (scripts/bench-report builds it): measuring medgemma only")
        for name, cmd, parallel in (theirs + ours if args.server_first else ours + theirs):
            results.append(bench_server(name, cmd, args.model, jobs, parallel, Path(tmp)))
    loop = None if args.skip_loop else bench_loop(args.binary, args.model, jobs)
    limits = "8 to 56 tokens per job" if args.vary_tokens else f"-n {MAX_TOKENS}"
    print(f"Model: {args.model.name}; {args.jobs} jobs, {limits}, -t {THREADS} -c 512, greedy, shared system "
          "prompt\n")
    if loop is None:
        base = next((r for r in results if r.mode.startswith("llama-server")), None) or \
            max(results, key=lambda r: r.wall_s)
        print(table(results, base).replace("vs loop", f"vs {base.mode}"))
    else:
        print(table(results + [loop], loop))
    return 0 if all(r.failed == 0 for r in results + ([loop] if loop else [])) else 1


if __name__ == "__main__":
    sys.exit(main())
