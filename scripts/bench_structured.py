#!/usr/bin/env python3
"""Generation speed with and without an answer format, on one model, in one run.

Runs `medgemma run` on the same prompt with free text and with `--json-schema` (a schema with a free string
field, so that the answer runs to -n: `--format json` is not measured, as the synthetic model's greedy answer is
`{}`, two tokens), interleaved round by round so that drift of a noisy machine hits every
variant alike, and reports the generation tokens/s of each (mean and 95% confidence interval over rounds) and the
ratio of each constrained variant to free text (per round, then mean and 95% CI of the ratios).

    .venv/bin/python scripts/bench_structured.py --model models/synthetic-medgemma-4b-q4_k_m.gguf --rounds 5

The synthetic 4B (scripts/make_synthetic.py) has random weights and a synthetic vocabulary: its text is garbage,
so how often a grammar refuses its most likely tokens (which decides how much work the constrained draw does) is
not what a trained MedGemma's would be. The figures are the cost of the machinery on a model of the real size.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Student's t 97.5% quantiles for n-1 degrees of freedom.
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 19: 2.093, 24: 2.064, 29: 2.045}


def t975(df: int) -> float:
    if df in T975:
        return T975[df]
    below = max(k for k in T975 if k <= df)
    return T975[below]


def mean_ci(values: list[float]) -> tuple[float, float]:
    m = statistics.fmean(values)
    if len(values) < 2:
        return m, float("nan")
    return m, t975(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))


def run_once(binary: str, model: str, threads: int, tokens: int, extra: list[str]) -> dict:
    cmd = [binary, "run", "-m", model, "-t", str(threads), "-n", str(tokens), "--json", "--no-sandbox", *extra,
           "Summarise the chest X-ray findings as a short report."]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.stdout.strip() == "":
        sys.exit(f"medgemma failed ({out.returncode}): {out.stderr}")
    report = json.loads(out.stdout)
    t = report["timings"]
    n = t["generated_tokens"]
    return {"tokens": n, "tps": (n - 1) * 1000.0 / t["generation_ms"] if t["generation_ms"] > 0 else 0.0,
            "finish": report["finish_reason"], "valid": report.get("valid"),
            "grammar_share": t.get("grammar_ms", 0.0) / t["generation_ms"] if t["generation_ms"] > 0 else 0.0,
            "full_scans": t.get("grammar_full_scans")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "models/synthetic-medgemma-4b-q4_k_m.gguf"))
    ap.add_argument("--binary", default=str(ROOT / "target/release/medgemma"))
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        schema = Path(tmp) / "report.schema.json"
        schema.write_text(json.dumps({
            "type": "object",
            "properties": {"finding": {"enum": ["normal", "pneumonia", "effusion"]},
                           "report": {"type": "string"}},
            "required": ["finding", "report"], "additionalProperties": False}))
        variants = {"free text": [], "--json-schema": ["--json-schema", str(schema)]}
        results: dict[str, list[dict]] = {v: [] for v in variants}
        for r in range(args.rounds):
            for name, extra in variants.items():
                res = run_once(args.binary, args.model, args.threads, args.tokens, extra)
                results[name].append(res)
                print(f"round {r + 1} {name:14} {res['tps']:6.2f} tokens/s ({res['tokens']} tokens, "
                      f"{res['finish']}, valid {res['valid']}, grammar {100 * res['grammar_share']:.2f}% of the "
                      f"generation time, {res['full_scans']} full scans)", file=sys.stderr)

    print(f"model {Path(args.model).name}, {args.threads} threads, -n {args.tokens}, {args.rounds} rounds "
          "(interleaved)")
    print("| answer | generation tokens/s (mean ± 95% CI) | ratio to free text (mean ± 95% CI) | time choosing "
          "tokens under the grammar, share of generation (mean) |")
    print("|---|---|---|---|")
    free = [x["tps"] for x in results["free text"]]
    for name in variants:
        tps = [x["tps"] for x in results[name]]
        m, ci = mean_ci(tps)
        if any(x["tokens"] < args.tokens for x in results[name]):
            print(f"note: some {name} answers stopped before -n {args.tokens}", file=sys.stderr)
        ratios = [a / b for a, b in zip(tps, free)]
        rm, rci = mean_ci(ratios)
        share = statistics.fmean(x["grammar_share"] for x in results[name])
        print(f"| {name} | {m:.2f} ± {ci:.2f} | {rm:.3f} ± {rci:.3f} | {100 * share:.2f}% |")


if __name__ == "__main__":
    main()
