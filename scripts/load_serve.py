#!/usr/bin/env python3
"""A bounded load test of `medgemma serve`: N concurrent clients for a fixed time; latency, throughput, errors and
the server's resident memory over the run.

Starts `medgemma serve` on 127.0.0.1 (a free port), waits for /health, then runs --clients threads that each send
chat completions back to back until --duration seconds have passed (half streamed, half not; each question a
different one of a fixed list, with one shared system prompt; with --image, every other request carries the image as
a data URL). The server's VmRSS is sampled every second from /proc.

Reports (a Markdown table on stdout, progress on stderr): requests, errors, p50/p95/max latency, generated tokens/s,
and resident memory after the first tenth of the run (warm) against the end. Exits 1 when any request failed or the
memory grew more than --max-rss-growth percent from warm to end.

Example:
    python scripts/load_serve.py --model models/synthetic-medgemma-4b-q4_k_m.gguf --clients 8 --duration 120
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SYSTEM = "You are a careful medical assistant. Answer briefly."
QUESTIONS = [
    "What is sepsis?", "What causes pneumonia?", "How is asthma treated?", "What are signs of a stroke?",
    "What is type 2 diabetes?", "How is hypertension diagnosed?", "What does insulin do?", "What is anemia?",
    "What are symptoms of a heart attack?", "What is chronic kidney disease?", "What is COPD?", "What is a seizure?",
]


def log(message: str) -> None:
    print(f"load_serve: {message}", file=sys.stderr, flush=True)


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    tokens: int = 0
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    m = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(m.group(1)) / 1024 if m else None


def request(base: str, body: dict, timeout: float) -> int:
    """Sends one chat completion; returns its generated tokens (streamed answers count their content chunks)."""
    req = urllib.request.Request(base + "/v1/chat/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        if not body.get("stream"):
            return json.loads(r.read())["usage"]["completion_tokens"]
        usage = None
        for raw in r:
            line = raw.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                raise RuntimeError(chunk["error"]["message"])
            usage = chunk.get("usage") or usage
        if usage is None:
            raise RuntimeError("the stream ended without usage")
        return usage["completion_tokens"]


def client(base: str, index: int, deadline: float, args: argparse.Namespace, image: str | None, tally: Tally) -> None:
    n = index
    while time.monotonic() < deadline:
        question = QUESTIONS[n % len(QUESTIONS)]
        content: object = question
        if image is not None and n % 2 == 1:
            content = [{"type": "image_url", "image_url": {"url": image}}, {"type": "text", "text": question}]
        stream = n % 2 == 0
        body = {"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": content}],
                "max_tokens": args.max_tokens, "temperature": 0, "stream": stream}
        if stream:
            body["stream_options"] = {"include_usage": True}
        started = time.monotonic()
        try:
            tokens = request(base, body, timeout=600)
            with tally.lock:
                tally.latencies.append(time.monotonic() - started)
                tally.tokens += tokens
        except (urllib.error.URLError, ConnectionError, TimeoutError, RuntimeError, ValueError, KeyError) as e:
            with tally.lock:
                tally.errors.append(f"{type(e).__name__}: {e}")
        n += args.clients


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="the GGUF model")
    parser.add_argument("--mmproj", type=Path, help="a vision projector (needed for --image)")
    parser.add_argument("--image", type=Path, help="an image sent with every other request (needs --mmproj)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60)")
    parser.add_argument("--parallel", type=int, help="the server's --parallel (default: --clients)")
    parser.add_argument("--max-tokens", type=int, default=32, help="max_tokens of each request (default 32)")
    parser.add_argument("--threads", type=int, default=2, help="the server's -t (default 2)")
    parser.add_argument("--ctx-size", type=int, default=1024, help="the server's -c per sequence (default 1024)")
    parser.add_argument("--max-rss-growth", type=float, default=10.0,
                        help="percent of resident memory growth from warm to end that fails the run (default 10)")
    parser.add_argument("--binary", type=Path, default=ROOT / "target/release/medgemma",
                        help="the medgemma binary (default target/release/medgemma)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for path in [args.binary, args.model] + [p for p in (args.mmproj, args.image) if p]:
        if not path.is_file():
            log(f"error: {path} not found")
            return 2
    if args.image and not args.mmproj:
        log("error: --image needs --mmproj")
        return 2
    if args.clients < 1 or args.duration <= 0:
        log("error: --clients must be at least 1 and --duration positive")
        return 2
    image = None
    if args.image:
        image = "data:image/png;base64," + base64.b64encode(args.image.read_bytes()).decode()
    port = free_port()
    cmd = [str(args.binary), "serve", "-m", str(args.model), "--port", str(port), "--parallel",
           str(args.parallel or args.clients), "--queue", str(4 * args.clients), "-t", str(args.threads),
           "-c", str(args.ctx_size), "-n", str(args.max_tokens)]
    if args.mmproj:
        cmd += ["--mmproj", str(args.mmproj)]
    log(f"running: {' '.join(cmd)}")
    server_log = open(ROOT / "target" / "load_serve.log", "w")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=server_log)
    base = f"http://127.0.0.1:{port}"
    samples: list[tuple[float, float]] = []
    try:
        while True:
            if proc.poll() is not None:
                log(f"error: the server exited with {proc.returncode}; see target/load_serve.log")
                return 1
            try:
                with urllib.request.urlopen(base + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        tally = Tally()
        start = time.monotonic()
        deadline = start + args.duration
        threads = [threading.Thread(target=client, args=(base, i, deadline, args, image, tally))
                   for i in range(args.clients)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            rss = rss_mib(proc.pid)
            if rss is not None:
                samples.append((time.monotonic() - start, rss))
            time.sleep(1.0)
        for t in threads:
            t.join()
        wall = time.monotonic() - start
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        server_log.close()
    if not tally.latencies:
        log(f"error: no request succeeded ({len(tally.errors)} errors: {tally.errors[:3]})")
        return 1
    warm = next((rss for t, rss in samples if t >= args.duration / 10), samples[0][1] if samples else 0.0)
    end = samples[-1][1] if samples else 0.0
    peak = max((rss for _, rss in samples), default=0.0)
    growth = 100.0 * (end - warm) / warm if warm else 0.0
    print(f"Model: {args.model.name}; {args.clients} clients for {args.duration:.0f} s, max_tokens {args.max_tokens}, "
          f"--parallel {args.parallel or args.clients}, -t {args.threads}{', image every other request' if image else ''}\n")
    print("| requests | errors | p50 s | p95 s | max s | generated tokens/s | RSS warm MiB | RSS end MiB | RSS peak MiB | growth |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {len(tally.latencies)} | {len(tally.errors)} | {statistics.median(tally.latencies):.2f} | "
          f"{percentile(tally.latencies, 95):.2f} | {max(tally.latencies):.2f} | {tally.tokens / wall:.1f} | "
          f"{warm:.0f} | {end:.0f} | {peak:.0f} | {growth:+.1f}% |")
    for e in tally.errors[:5]:
        log(f"error: {e}")
    failed = bool(tally.errors) or growth > args.max_rss_growth
    if growth > args.max_rss_growth:
        log(f"resident memory grew {growth:.1f}% (limit {args.max_rss_growth}%)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
