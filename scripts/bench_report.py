#!/usr/bin/env python3
"""Speed report: `medgemma bench` against llama.cpp's own tools, on the same GGUF files, machine and threads, in one run.

Two llama.cpp references, both built here for this CPU (Release, GGML_NATIVE, OpenMP, and the CFLAGS that
scripts/env.sh sets, e.g. AMX off where it faults); nothing of llama.cpp is committed:

  newest    llama.cpp's `llama-bench`, `llama-mtmd-cli` and `llama-server` from the newest llama.cpp a registry
            offers: the one vendored in the newest `llama-cpp-python` source distribution on PyPI (fetched with
            `pip download llama-cpp-python --no-deps --no-binary :all:` into target/llama-latest, built there once
            per version).
  crate     the very llama.cpp we link (the llama-cpp-sys-2 crate's vendored sources, scripts/bench/CMakeLists.txt,
            into target/llama-ref): `llama-bench` (its source file is not in the crate, so the newest release's
            tools/llama-bench/llama-bench.cpp is compiled against the crate's libraries) and `llama-mtmd-cli`.

Text: every round runs the three tools one after another, in an order that alternates from round to round, on the
same model file and threads:
  medgemma  `medgemma bench -p P -n N -r 1`: P prompt tokens from an empty cache, then N tokens generated after them
  llama     `llama-bench -p P -n 0 -r 1` (prompt from an empty cache) and `llama-bench -p 0 -n N -d P -r 1`
            (N tokens generated at depth P, i.e. after a P-token prompt): the same work as medgemma's
Each round gives one ratio medgemma / reference per measure (tokens/s); rounds are paired, so a slow spell of the
machine hits all three. The report is the geometric mean of the ratios with a 95% confidence interval (Student's t
on the log ratios). Rounds continue from --min-rounds until every interval is narrower than ±--target (3%), or
--max-rounds.

Images: the first encoding of one 896x896 image (the synthetic mmproj of SigLIP's exact geometry), medgemma bench
(no image cache: bench never uses it) against both references' llama-mtmd-cli (mtmd's `image slice encoded in N ms`).

Inputs (made when missing; models/ is git-ignored):
  models/synthetic-medgemma-4b-f16.gguf     scripts/make_synthetic.py (medgemma-4b-it's exact text geometry)
  models/synthetic-medgemma-4b-<quant>.gguf  `medgemma quantize` of the F16 file
  models/synthetic-mmproj-4b-f16.gguf        scripts/make_synthetic.py --mmproj-out (the exact vision tower)
With --variant 27b-text (medgemma-27b-text-it's geometry; text only, so no image rounds):
  models/synthetic-medgemma-27b-text-q8_0.gguf     scripts/make_synthetic.py --outtype q8_0 (29 GB; an F16 file
                                                   would be 54 GB)
  models/synthetic-medgemma-27b-text-<quant>.gguf  `medgemma quantize --allow-requantize` of the Q8_0 file

Writes docs/bench/results.json and docs/bench/tokens-per-second.png (needs matplotlib:
scripts/requirements-bench.txt), prints Markdown tables on stdout and progress on stderr.

On a GPU: --gpu-layers N offloads N layers in every tool (medgemma --gpu-layers N, llama.cpp -ngl N; the vision
projector too, both tools' default), with binaries built elsewhere: --medgemma names a GPU build of medgemma and
--newest-tools a folder holding llama-bench and llama-mtmd-cli built with the same GPU backend from the newest
llama-cpp-python sdist (nothing is fetched or built then; scripts/cuda-check-prebuilt runs it that way). --out
and --models move the results and the model files.

Example (run through scripts/bench-report, which sets the build environment):
    scripts/bench-report --quants q4_k_m q8_0
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
MEDGEMMA = ROOT / "target/release/medgemma"
REF_BUILD = ROOT / "target/llama-ref"
LATEST = ROOT / "target/llama-latest"
OUT = ROOT / "docs/bench"
IMAGE = ROOT / "tests/fixtures/images/chest.png"

sys.path.insert(0, str(ROOT / "scripts"))


def log(msg: str) -> None:
    print(f"bench_report: {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw)
    except subprocess.CalledProcessError as e:
        sys.exit(f"bench_report: {Path(cmd[0]).name} failed (exit {e.returncode}):\n{(e.stdout or '')[-2000:]}"
                 f"{(e.stderr or '')[-3000:]}")


# ---------------------------------------------------------------------------------------------------------------
# The references


def cmake_build(src: Path, build: Path, targets: list[str], extra: list[str]) -> None:
    run(["cmake", "-S", str(src), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=ON",
         "-DGGML_OPENMP=ON", "-DLLAMA_CURL=OFF", "-DBUILD_SHARED_LIBS=OFF", *extra])
    run(["cmake", "--build", str(build), "--target", *targets, "-j", str(os.cpu_count() or 2)])


def version_key(name: str) -> tuple:
    m = re.search(r"llama_cpp_python-([\d.]+)\.tar\.gz$", name)
    return tuple(int(x) for x in m.group(1).split(".") if x) if m else ()


def prebuilt_llama(folder: Path) -> dict:
    """llama-bench and llama-mtmd-cli built elsewhere (e.g. with CUDA), named by --newest-tools."""
    tools = {"bench": folder / "llama-bench", "mtmd": folder / "llama-mtmd-cli"}
    missing = [str(p) for p in tools.values() if not p.exists()]
    if missing:
        sys.exit(f"bench_report: --newest-tools {folder}: missing {', '.join(missing)}")
    version = (folder / "VERSION").read_text().strip() if (folder / "VERSION").exists() else "unknown"
    ggml = (folder / "GGML_VERSION").read_text().strip() if (folder / "GGML_VERSION").exists() else "unknown"
    return {"name": f"llama.cpp from llama-cpp-python {version} (prebuilt)", "version": version, "src": None,
            "ggml_version": ggml, **tools}


def latest_llama() -> dict:
    """The newest llama-cpp-python sdist's llama.cpp: llama-bench, llama-mtmd-cli and llama-server, built here."""
    sdists = LATEST / "sdist"
    sdists.mkdir(parents=True, exist_ok=True)
    log("asking PyPI for the newest llama-cpp-python source distribution")
    run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
         "--no-binary", ":all:", "-d", str(sdists), "llama-cpp-python"])
    tarballs = sorted(sdists.glob("llama_cpp_python-*.tar.gz"), key=lambda p: version_key(p.name))
    if not tarballs:
        sys.exit(f"bench_report: pip download left no llama_cpp_python-*.tar.gz in {sdists}")
    tarball = tarballs[-1]
    version = ".".join(map(str, version_key(tarball.name)))
    src_root = LATEST / f"llama_cpp_python-{version}"
    if not src_root.exists():
        log(f"unpacking {tarball.name}")
        with tarfile.open(tarball) as t:
            t.extractall(LATEST, filter="data")
    src = src_root / "vendor/llama.cpp"
    build = LATEST / "build"
    stamp = build / "medgemma-version"
    if stamp.exists() and stamp.read_text().strip() != version:
        shutil.rmtree(build)
    tools = {"bench": build / "bin/llama-bench", "mtmd": build / "bin/llama-mtmd-cli",
             "server": build / "bin/llama-server"}
    if not all(p.exists() for p in tools.values()):
        log(f"building llama.cpp {version}'s llama-bench, llama-mtmd-cli and llama-server (10+ minutes on 2 cores)")
        cmake_build(src, build, ["llama-bench", "llama-mtmd-cli", "llama-server"],
                    ["-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_OPENSSL=OFF"])
        stamp.write_text(version + "\n")
    return {"name": f"llama.cpp from llama-cpp-python {version}", "version": version, "src": src,
            "ggml_version": ggml_version(src), **{k: v for k, v in tools.items()}}


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


def ggml_version(src: Path) -> str:
    text = (src / "ggml/CMakeLists.txt").read_text()
    parts = [re.search(rf"set\(GGML_VERSION_{k} (\d+)\)", text) for k in ("MAJOR", "MINOR", "PATCH")]
    return ".".join(p.group(1) for p in parts) if all(parts) else "unknown"


def crate_llama(bench_src: Path) -> dict:
    """llama-bench and llama-mtmd-cli built from the llama-cpp-sys-2 crate's llama.cpp (the one we link)."""
    src = sys_crate_llama_src()
    crate = src.parent.name.removeprefix("llama-cpp-sys-2-")
    tools = {"bench": REF_BUILD / "llama-bench", "mtmd": REF_BUILD / "llama-mtmd-cli"}
    if not all(p.exists() for p in tools.values()):
        log(f"building llama-bench and llama-mtmd-cli against {src} (several minutes)")
        cmake_build(ROOT / "scripts/bench", REF_BUILD, ["llama-bench", "llama-mtmd-cli"],
                    [f"-DLLAMA_SRC={src}", f"-DLLAMA_BENCH_SRC={bench_src.resolve()}"])
    return {"name": f"llama.cpp of llama-cpp-sys-2 {crate} (linked by medgemma)", "version": crate, "src": src,
            "ggml_version": ggml_version(src), **tools}


# ---------------------------------------------------------------------------------------------------------------
# Measurements


GPU_LAYERS: int | None = None  # --gpu-layers: layers offloaded by every tool (None: a CPU run)


def gpu_args(flag: str) -> list[str]:
    """A tool's option for --gpu-layers (`-ngl` for llama.cpp's tools, `--gpu-layers` for ours), or none."""
    return [flag, str(GPU_LAYERS)] if GPU_LAYERS is not None else []


def llama_bench(tool: dict, model: Path, threads: int, prompt: int, gen: int) -> dict:
    ngl = gpu_args("-ngl")

    def one(args: list[str]) -> dict:
        out = run([str(tool["bench"]), "-m", str(model), "-t", str(threads), "-r", "1", "-o", "json", *ngl, *args])
        rows = json.loads(out.stdout)
        if len(rows) != 1:
            sys.exit(f"bench_report: llama-bench printed {len(rows)} results, expected 1:\n{out.stdout[-2000:]}")
        tool.setdefault("build_commit", rows[0].get("build_commit"))
        return rows[0]
    pp = one(["-p", str(prompt), "-n", "0"])
    tg = one(["-p", "0", "-n", str(gen), "-d", str(prompt)])
    return {"pp": float(pp["avg_ts"]), "tg": float(tg["avg_ts"]), "flash_attn": tg.get("flash_attn"),
            "n_batch": tg.get("n_batch"), "n_ubatch": tg.get("n_ubatch")}


def ours(model: Path, args: list[str]) -> dict:
    out = run([str(MEDGEMMA), "bench", "-m", str(model), "--json", *gpu_args("--gpu-layers"), *args])
    return json.loads(out.stdout)


def ours_text(model: Path, threads: int, prompt: int, gen: int) -> dict:
    o = ours(model, ["-p", str(prompt), "-n", str(gen), "-r", "1", "-t", str(threads)])
    return {"pp": o["prompt_tokens_per_s"]["mean"], "tg": o["gen_tokens_per_s"]["mean"],
            "flash_attn": o["flash_attention"], "n_batch": o["batch_size"]}


IMAGE_MS = re.compile(r"(?:image slice encoded in|batch encoding done in) (\d+) ms")


def reference_image(tool: dict, model: Path, mmproj: Path, threads: int) -> float:
    out = run([str(tool["mtmd"]), "-m", str(model), "--mmproj", str(mmproj), "-t", str(threads), "-n", "1",
               "--temp", "0", "--image", str(IMAGE), "-p", "Describe this image.", "-lv", "4", *gpu_args("-ngl")])
    m = IMAGE_MS.search(out.stdout + out.stderr)
    if not m:
        sys.exit(f"bench_report: no image timing in llama-mtmd-cli's output:\n{(out.stdout + out.stderr)[-3000:]}")
    return float(m.group(1))


def ours_image(model: Path, mmproj: Path, threads: int) -> float:
    o = ours(model, ["--mmproj", str(mmproj), "--image", str(IMAGE), "-p", "8", "-n", "1", "-r", "1",
                     "--image-repetitions", "1", "-t", str(threads)])
    return o["image_encode_ms"]["mean"]


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


def kv_bytes(model: Path, depth: int) -> int:
    """Bytes of f16 K and V a decode step reads at `depth`, from the model's own geometry (sliding-window layers
    keep at most the window; every sixth layer is global, as in Gemma 3)."""
    from gguf import GGUFReader
    fields = GGUFReader(model).fields

    def value(key: str) -> int:
        return int(fields[f"gemma3.{key}"].contents())
    layers, window = value("block_count"), value("attention.sliding_window")
    per_position = 2 * value("attention.head_count_kv") * value("attention.key_length") * 2
    global_layers = layers // 6
    return per_position * (global_layers * depth + (layers - global_layers) * min(depth, window))


def gpu_name() -> str:
    """The GPU's name as nvidia-smi gives it (the report's heading), or 'unknown GPU'."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                             text=True, capture_output=True, timeout=30)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else "unknown GPU"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown GPU"


def physical_cores() -> int:
    """The default thread count of medgemma and llama-bench: distinct (package, core) pairs in sysfs."""
    cores = set()
    for topo in Path("/sys/devices/system/cpu").glob("cpu[0-9]*/topology"):
        try:
            cores.add(((topo / "physical_package_id").read_text().strip(), (topo / "core_id").read_text().strip()))
        except OSError:
            pass
    return len(cores) or os.cpu_count() or 1


# ---------------------------------------------------------------------------------------------------------------
# Statistics

# Student's t, two-sided 95% (the 0.975 quantile), by degrees of freedom; beyond 30 the 30 value (conservative).
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
        20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048,
        29: 2.045, 30: 2.042}


def ratio_ci(ours_: list[float], ref: list[float]) -> dict:
    """Geometric mean of the paired ratios ours/ref and its 95% confidence interval (t on the log ratios)."""
    logs = [math.log(a / b) for a, b in zip(ours_, ref)]
    n = len(logs)
    mean = statistics.mean(logs)
    half = T975[min(n - 1, 30)] * statistics.stdev(logs) / math.sqrt(n) if n > 1 else math.inf
    return {"ratio": math.exp(mean), "low": math.exp(mean - half), "high": math.exp(mean + half),
            "half_width": math.expm1(half) if half != math.inf else math.inf, "rounds": n}


def spread(values: list[float]) -> dict:
    return {"mean": statistics.mean(values), "stddev": statistics.stdev(values) if len(values) > 1 else 0.0,
            "samples": values}


# ---------------------------------------------------------------------------------------------------------------


def ensure_models(quants: list[str], variant: str) -> tuple[dict[str, Path], Path | None]:
    """The model files (made when missing) and the 4b's mmproj (None for the text-only 27b)."""
    synthetic = [sys.executable, str(ROOT / "scripts/make_synthetic.py"), "--variant", variant]
    models = {q: MODELS / f"synthetic-medgemma-{variant}-{q}.gguf" for q in quants}
    # The 27b's F16 would be 54 GB: its base is written as Q8_0 and the other types are requantised from it.
    base_type = "f16" if variant == "4b" else "q8_0"
    base = MODELS / f"synthetic-medgemma-{variant}-{base_type}.gguf"
    if any(not p.exists() for p in models.values()) and not base.exists():
        log(f"writing {base} (random weights)")
        run([*synthetic, "--out", str(base), "--outtype", base_type])
    for q, p in models.items():
        if not p.exists():
            log(f"quantising {base.name} to {q}")
            run([str(MEDGEMMA), "quantize", str(base), str(p), "--type", q,
                 *(["--allow-requantize"] if base_type != "f16" else [])])
    if variant != "4b":
        return models, None
    mmproj = MODELS / "synthetic-mmproj-4b-f16.gguf"
    if not mmproj.exists():
        log(f"writing {mmproj}")
        run([*synthetic, "--mmproj-out", str(mmproj), "--mmproj-outtype", "f16"])
    return models, mmproj


def text_rounds(model: Path, quant: str, refs: dict[str, dict], args, threads: int) -> dict:
    names = ["medgemma", *refs]
    samples = {name: {"pp": [], "tg": []} for name in names}
    settings = {}

    def intervals() -> dict:
        return {ref: {m: ratio_ci(samples["medgemma"][m], samples[ref][m]) for m in ("pp", "tg")} for ref in refs}

    for r in range(args.max_rounds):
        order = names if r % 2 == 0 else names[::-1]
        log(f"{quant}, {threads} threads, round {r + 1} (order: {', '.join(order)})")
        for name in order:
            if name == "medgemma":
                got = ours_text(model, threads, args.prompt, args.gen)
            else:
                got = llama_bench(refs[name], model, threads, args.prompt, args.gen)
            samples[name]["pp"].append(got["pp"])
            samples[name]["tg"].append(got["tg"])
            settings[name] = {k: v for k, v in got.items() if k not in ("pp", "tg")}
        if r + 1 >= args.min_rounds:
            widths = [ci["half_width"] for ref in intervals().values() for ci in ref.values()]
            log("  interval half-widths: " + ", ".join(f"{w:.1%}" for w in widths))
            if max(widths) < args.target:
                break
    return {"samples": samples, "ratios": intervals(), "settings": settings}


def main() -> int:
    global MEDGEMMA, MODELS, OUT, GPU_LAYERS
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", choices=["4b", "27b-text"], default="4b",
                        help="the synthetic model's geometry: medgemma-4b-it (default) or medgemma-27b-text-it (no "
                             "image rounds)")
    parser.add_argument("--quants", nargs="+", default=["q4_k_m", "q8_0"])
    parser.add_argument("--threads", nargs="+", type=int, default=None,
                        help="thread counts [default: the physical cores, medgemma's and llama-bench's default]")
    parser.add_argument("--prompt", type=int, default=512, help="prompt tokens (and the generation depth)")
    parser.add_argument("--gen", type=int, default=128, help="generated tokens per round")
    parser.add_argument("--min-rounds", type=int, default=5)
    parser.add_argument("--max-rounds", type=int, default=14)
    parser.add_argument("--target", type=float, default=0.03,
                        help="stop when every 95%% interval of a ratio is narrower than ± this (default 0.03)")
    parser.add_argument("--image-reps", type=int, default=2, help="image encodings per tool and thread count (0: none)")
    parser.add_argument("--skip-crate", action="store_true", help="leave out the crate-sources reference")
    parser.add_argument("--gpu-layers", type=int, default=None,
                        help="layers offloaded to the GPU by every tool (medgemma --gpu-layers, llama.cpp -ngl)")
    parser.add_argument("--medgemma", type=Path, default=None, help=f"the medgemma binary [default: {MEDGEMMA}]")
    parser.add_argument("--newest-tools", type=Path, default=None,
                        help="a folder with llama-bench and llama-mtmd-cli already built (and optionally files "
                             "VERSION, GGML_VERSION): no download, no build; implies --skip-crate")
    parser.add_argument("--models", type=Path, default=None, help=f"the model folder [default: {MODELS}]")
    parser.add_argument("--out", type=Path, default=None, help=f"where results go [default: {OUT}]")
    parser.add_argument("--replot", action="store_true",
                        help="measure nothing: print the tables and redraw the chart from docs/bench/results.json")
    args = parser.parse_args()
    MEDGEMMA = args.medgemma.resolve() if args.medgemma else MEDGEMMA
    MODELS = args.models.resolve() if args.models else MODELS
    OUT = args.out.resolve() if args.out else OUT
    GPU_LAYERS = args.gpu_layers
    if args.replot:
        results = json.loads((OUT / "results.json").read_text())
        print_tables(results)
        chart(results, OUT / "tokens-per-second.png")
        return 0
    if args.min_rounds < 2 or args.max_rounds < args.min_rounds:
        parser.error("--min-rounds must be at least 2 and at most --max-rounds")

    if not MEDGEMMA.exists():
        sys.exit("bench_report: build medgemma first (scripts/build)")
    newest = prebuilt_llama(args.newest_tools) if args.newest_tools else latest_llama()
    refs = {"newest": newest}
    if not args.skip_crate and not args.newest_tools:
        refs["crate"] = crate_llama(newest["src"] / "tools/llama-bench")
    models, mmproj = ensure_models(args.quants, args.variant)
    thread_counts = args.threads or [physical_cores()]
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), "unknown CPU")
    results: dict = {
        "cpu": cpu, "logical_cpus": os.cpu_count(), "prompt_tokens": args.prompt, "gen_tokens": args.gen,
        "variant": args.variant, "target": args.target, "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "references": {k: {"name": v["name"], "version": v["version"], "ggml_version": v["ggml_version"]}
                       for k, v in refs.items()},
        "runs": [], "images": [], "bandwidth": {}, "gpu": gpu_name() if GPU_LAYERS is not None else None,
        "gpu_layers": GPU_LAYERS}

    OUT.mkdir(parents=True, exist_ok=True)
    for threads in thread_counts:
        bw = read_bandwidth(threads) if GPU_LAYERS is None else None
        if bw is not None:
            results["bandwidth"][threads] = bw
            log(f"{threads} thread(s): memory read bandwidth {bw / 1e9:.1f} GB/s")
        for quant, model in models.items():
            got = text_rounds(model, quant, refs, args, threads)
            per_token = gguf_tensor_bytes(model) + kv_bytes(model, args.prompt + args.gen // 2)
            results["runs"].append({
                "quant": quant, "threads": threads, "file_bytes": model.stat().st_size,
                "tools": {name: {"pp": spread(s["pp"]), "tg": spread(s["tg"]), "settings": got["settings"][name]}
                          for name, s in got["samples"].items()},
                "ratios": got["ratios"], "bytes_per_token": per_token,
                "tg_bound": bw / per_token if bw is not None else None})
            (OUT / "results.partial.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
        if args.image_reps and mmproj is not None:
            images = {"threads": threads, "mmproj": mmproj.name, "ms": {n: [] for n in ["medgemma", *refs]}}
            first = next(iter(models.values()))
            for rep in range(args.image_reps):
                log(f"image encoding, {threads} thread(s), repetition {rep + 1}/{args.image_reps}")
                order = list(images["ms"]) if rep % 2 == 0 else list(images["ms"])[::-1]
                for name in order:
                    ms = ours_image(first, mmproj, threads) if name == "medgemma" else \
                        reference_image(refs[name], first, mmproj, threads)
                    images["ms"][name].append(ms)
            images["ms"] = {n: spread(v) for n, v in images["ms"].items()}
            results["images"].append(images)
            (OUT / "results.partial.json").write_text(json.dumps(results, indent=2, default=str) + "\n")

    for key, ref in refs.items():
        results["references"][key]["build_commit"] = ref.get("build_commit")
    (OUT / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (OUT / "results.partial.json").unlink(missing_ok=True)
    print_tables(results)
    chart(results, OUT / "tokens-per-second.png")
    return 0


def fmt(s: dict) -> str:
    return f"{s['mean']:.2f} ± {s['stddev']:.2f}"


def fmt_ci(ci: dict) -> str:
    return f"{ci['ratio']:.3f} [{ci['low']:.3f}, {ci['high']:.3f}]"


def print_tables(r: dict) -> None:
    gpu = f"; GPU {r['gpu']}, {r['gpu_layers']} layers offloaded" if r.get("gpu") else ""
    print(f"Machine: {r['cpu']}, {r['logical_cpus']} logical CPUs{gpu}. Model: synthetic "
          f"medgemma-{r.get('variant', '4b')} geometry. Prompt {r['prompt_tokens']} tokens from an empty "
          f"cache; generation of {r['gen_tokens']} tokens at depth {r['prompt_tokens']}. Rounds interleave the "
          "tools; ratios are medgemma / reference (tokens/s, above 1 = medgemma faster), geometric mean [95% "
          "confidence interval].\n")
    for key, ref in r["references"].items():
        print(f"- {key}: {ref['name']}, ggml {ref['ggml_version']}, build {ref.get('build_commit')}")
    refs = list(r["references"])
    print("\n| quant | threads | rounds | pp t/s medgemma | " + " | ".join(f"pp t/s {k}" for k in refs) + " | "
          + " | ".join(f"pp ratio vs {k}" for k in refs) + " | tg t/s medgemma | "
          + " | ".join(f"tg t/s {k}" for k in refs) + " | " + " | ".join(f"tg ratio vs {k}" for k in refs)
          + " | tg bound |")
    print("|" + "---|" * (6 + 4 * len(refs)))
    for x in r["runs"]:
        t, q = x["tools"], x["ratios"]
        rounds = len(t["medgemma"]["pp"]["samples"])
        print(f"| {x['quant'].upper()} | {x['threads']} | {rounds} | {fmt(t['medgemma']['pp'])} | "
              + " | ".join(fmt(t[k]["pp"]) for k in refs) + " | " + " | ".join(fmt_ci(q[k]["pp"]) for k in refs)
              + f" | {fmt(t['medgemma']['tg'])} | " + " | ".join(fmt(t[k]["tg"]) for k in refs) + " | "
              + " | ".join(fmt_ci(q[k]["tg"]) for k in refs) + " | "
              + (f"{x['tg_bound']:.2f}" if x["tg_bound"] is not None else "n/a (GPU)") + " |")
    if r["images"]:
        print("\n| threads | mmproj | encode ms medgemma | " + " | ".join(f"encode ms {k}" for k in refs) + " | "
              + " | ".join(f"time ratio vs {k}" for k in refs) + " |")
        print("|" + "---|" * (3 + 2 * len(refs)))
        for x in r["images"]:
            ms = x["ms"]
            print(f"| {x['threads']} | {x['mmproj']} | {fmt(ms['medgemma'])} | "
                  + " | ".join(fmt(ms[k]) for k in refs) + " | "
                  + " | ".join(f"{ms['medgemma']['mean'] / ms[k]['mean']:.3f}" for k in refs) + " |")
    if r["bandwidth"]:  # a GPU run measures none
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
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8))
    labels = [f"{x['quant'].upper()}\n{x['threads']} thr" for x in r["runs"]]
    tools = ["medgemma", *r["references"]]
    xs = range(len(labels))
    w = 0.8 / len(tools)
    for ax, key, title in ((axes[0], "pp", "prompt processing"), (axes[1], "tg", "generation")):
        for i, tool in enumerate(tools):
            label = "medgemma bench" if tool == "medgemma" else f"llama-bench: {r['references'][tool]['name']}"
            ax.bar([x + (i - (len(tools) - 1) / 2) * w for x in xs], [x["tools"][tool][key]["mean"] for x in r["runs"]],
                   w, label=label, yerr=[x["tools"][tool][key]["stddev"] for x in r["runs"]])
        if key == "tg" and all(x["tg_bound"] is not None for x in r["runs"]):
            ax.scatter(list(xs), [x["tg_bound"] for x in r["runs"]], marker="_", s=900, color="black",
                       label="memory-bandwidth bound", zorder=3)
        ax.set_xticks(list(xs), labels)
        ax.set_ylabel("tokens/s (mean ± sd over rounds)")
        ax.set_title(f"{title}, synthetic MedGemma 4B")
    handles, names = axes[1].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.suptitle(f"{r.get('gpu') or r['cpu']} ({r['logical_cpus']} CPUs)", fontsize=9)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.savefig(path, dpi=110)
    log(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
