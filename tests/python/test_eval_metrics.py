"""`medgemma eval --report` and `--compare` against scikit-learn and scipy on random runs.

Each test writes an eval folder (DIR/eval.json and DIR/predictions.jsonl, the format the run mode writes), runs the
real binary, and compares its JSON with the reference libraries: accuracy, per-class precision/recall/F1/support
(zero_division=0), macro-F1, Cohen's kappa, the confusion matrix, binary ROC AUC, the Wilson interval (its formula),
the ECE (a direct numpy computation) and McNemar's exact p (scipy's binomtest).

Tolerances: the metrics are the same arithmetic on the same integer counts, summed in another order, so they agree
to a few ulps; 1e-12 absolute on values in [0, 1] leaves room for that and for nothing else. The binomial tail is
summed in log space from ln C(n, k): its relative error is below (n + k) * 2^-52 * ln n, under 1e-12 for n <= 400.

The binary is target/release/medgemma (scripts/test builds it first) or MEDGEMMA_BINARY.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binomtest, chi2, norm
from sklearn.metrics import (accuracy_score, cohen_kappa_score, confusion_matrix, f1_score,
                             precision_recall_fscore_support, roc_auc_score)

REPO = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("MEDGEMMA_BINARY", REPO / "target" / "release" / "medgemma"))
NONE = "<no answer>"  # what a null prediction is for scikit-learn: a value outside the classes
ABS = 1e-12


@pytest.fixture(scope="module")
def binary() -> Path:
    if not BINARY.is_file():
        pytest.fail(f"{BINARY} is missing: run `cargo build --release` first (or set MEDGEMMA_BINARY)", pytrace=False)
    return BINARY


def medgemma(binary: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=120)


def write_run(folder: Path, classes: list[str], records: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"version": 1, "classes": classes, "mode": "choices", "field": None, "model": "tiny.gguf",
            "input": "labelled.jsonl"}
    (folder / "eval.json").write_text(json.dumps(meta))
    (folder / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


def random_run(rng: np.random.Generator, n: int, classes: list[str], *, probabilities: bool,
               no_answer_share: float) -> list[dict]:
    """n records: random labels; with probabilities, Dirichlet draws and prediction = argmax; else random predictions,
    a share of them null."""
    k = len(classes)
    records = []
    for i in range(n):
        label = classes[rng.integers(k)]
        record: dict = {"id": f"item-{i}", "label": label, "finish": "stop"}
        if probabilities:
            p = rng.dirichlet(np.full(k, 0.7))
            record["probabilities"] = {c: float(v) for c, v in zip(classes, p)}
            record["prediction"] = classes[int(np.argmax(p))]
        elif rng.random() < no_answer_share:
            record["prediction"] = None
            record["finish"] = "length"
        else:
            # Right more often than chance, so that kappa is not near 0 every time.
            record["prediction"] = label if rng.random() < 0.5 else classes[rng.integers(k)]
        records.append(record)
    return records


def classes_for(seed: int) -> list[str]:
    """2 to 5 classes, in turn over the seeds."""
    return ["normal", "pleural effusion", "pneumonia", "cardiomegaly", "nodule"][:2 + seed % 4]


def ece_reference(records: list[dict], classes: list[str]) -> tuple[float, list[int]]:
    """ECE with 10 bins, bin i = (i/10, (i+1)/10], the first also holding 0; the edges are the doubles i/10."""
    p = np.array([[r["probabilities"][c] for c in classes] for r in records])
    labels = np.array([classes.index(r["label"]) for r in records])
    confidence, predicted = p.max(axis=1), p.argmax(axis=1)
    edges = np.array([i / 10 for i in range(11)])
    bins = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, 9)
    ece, counts = 0.0, []
    for b in range(10):
        mask = bins == b
        counts.append(int(mask.sum()))
        if mask.any():
            ece += mask.sum() / len(records) * abs((predicted[mask] == labels[mask]).mean() - confidence[mask].mean())
    return ece, counts


def wilson(successes: int, n: int) -> tuple[float, float]:
    z = norm.ppf(0.975)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


CASES = [(seed, probabilities) for seed in range(8) for probabilities in (False, True)]


@pytest.mark.parametrize("seed,probabilities", CASES)
def test_report_matches_scikit_learn(binary: Path, tmp_path: Path, seed: int, probabilities: bool) -> None:
    rng = np.random.default_rng(seed)
    classes = classes_for(seed)
    n = int(rng.integers(20, 300))
    # Nulls in the seed-0 case without probabilities (and a few in the other seeds without them).
    share = 0.25 if seed == 0 else (0.05 if not probabilities else 0.0)
    records = random_run(rng, n, classes, probabilities=probabilities, no_answer_share=share)
    folder = write_run(tmp_path / "run", classes, records)
    done = medgemma(binary, "eval", "--report", str(folder), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)

    y_true = [r["label"] for r in records]
    y_pred = [r["prediction"] if r["prediction"] is not None else NONE for r in records]
    assert report["n"] == n
    assert report["classes"] == classes
    assert report["no_answer"] == sum(r["prediction"] is None for r in records)
    assert report["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred), abs=ABS)
    lo, hi = wilson(report["correct"], n)
    assert report["accuracy_ci95"] == pytest.approx([lo, hi], abs=ABS)

    cm = confusion_matrix(y_true, y_pred, labels=classes)
    assert report["confusion_matrix"]["labels"] == classes
    assert report["confusion_matrix"]["matrix"] == cm.tolist()
    assert report["confusion_matrix"]["no_answer"] == [
        sum(1 for t, p in zip(y_true, y_pred) if t == c and p == NONE) for c in classes]

    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=classes, zero_division=0)
    assert list(report["per_class"]) == classes
    for i, c in enumerate(classes):
        got = report["per_class"][c]
        assert got["support"] == support[i]
        assert got["precision"] == pytest.approx(precision[i], abs=ABS)
        assert got["recall"] == pytest.approx(recall[i], abs=ABS)
        assert got["f1"] == pytest.approx(f1[i], abs=ABS)
    assert report["macro_f1"] == pytest.approx(
        f1_score(y_true, y_pred, labels=classes, average="macro", zero_division=0), abs=ABS)
    assert report["weighted_f1"] == pytest.approx(
        f1_score(y_true, y_pred, labels=classes, average="weighted", zero_division=0), abs=ABS)
    # "No answer" is one more category for kappa, which is what scikit-learn does with the NONE value.
    assert report["cohen_kappa"] == pytest.approx(cohen_kappa_score(y_true, y_pred), abs=ABS)

    if probabilities and len(classes) == 2:
        positive = [t == classes[1] for t in y_true]
        scores = [r["probabilities"][classes[1]] for r in records]
        assert report["roc_auc_positive"] == classes[1]
        assert report["roc_auc"] == pytest.approx(roc_auc_score(positive, scores), abs=ABS)
    else:
        assert report["roc_auc"] is None
    if probabilities:
        ece, counts = ece_reference(records, classes)
        assert report["calibration"]["ece"] == pytest.approx(ece, abs=ABS)
        assert [b["count"] for b in report["calibration"]["bins"]] == counts
        assert (folder / "reliability.png").is_file()
    else:
        assert report["calibration"] is None
    for name in ("report.json", "report.md", "confusion-matrix.png"):
        assert (folder / name).is_file()
    assert json.loads((folder / "report.json").read_text()) == report


def test_binary_roc_auc_with_ties_and_items_without_probabilities(binary: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(42)
    classes = ["benign", "malignant"]
    records = []
    for i in range(120):
        label = classes[rng.integers(2)]
        p1 = float(rng.integers(0, 5)) / 4  # five distinct scores: many ties
        records.append({"id": str(i), "label": label, "prediction": classes[int(p1 > 0.5)],
                        "probabilities": {"benign": 1 - p1, "malignant": p1}})
    records.append({"id": "no-probabilities", "label": "benign", "prediction": None, "error": "cut off"})
    folder = write_run(tmp_path / "run", classes, records)
    done = medgemma(binary, "eval", "--report", str(folder), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    scored = records[:-1]
    want = roc_auc_score([r["label"] == "malignant" for r in scored], [r["probabilities"]["malignant"] for r in scored])
    assert report["roc_auc"] == pytest.approx(want, abs=ABS)
    assert (report["roc_auc_items"], report["roc_auc_excluded"]) == (120, 1)


@pytest.mark.parametrize("seed", range(6))
def test_compare_matches_scipy_binomtest(binary: Path, tmp_path: Path, seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    classes = classes_for(seed)
    n = int(rng.integers(30, 400))
    a = random_run(rng, n, classes, probabilities=False, no_answer_share=0.05)
    # B: A's records with a share of the answers changed, plus items only one run holds.
    b = []
    for r in a:
        r = dict(r)
        if rng.random() < 0.3:
            r["prediction"] = r["label"] if rng.random() < 0.5 + 0.1 * seed else classes[rng.integers(len(classes))]
        b.append(r)
    a_only = {"id": "only-a", "label": classes[0], "prediction": classes[0]}
    b_only = {"id": "only-b", "label": classes[0], "prediction": None}
    dir_a = write_run(tmp_path / "a", classes, a + [a_only])
    dir_b = write_run(tmp_path / "b", classes, list(reversed(b)) + [b_only])
    done = medgemma(binary, "eval", "--compare", str(dir_a), str(dir_b), "--json")
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)

    right_a = np.array([r["prediction"] == r["label"] for r in a])
    right_b = np.array([r["prediction"] == r["label"] for r in b])
    b_count, c_count = int((right_a & ~right_b).sum()), int((~right_a & right_b).sum())
    assert (got["paired"], got["only_in_a"], got["only_in_b"]) == (n, 1, 1)
    assert (got["a_right_b_wrong"], got["a_wrong_b_right"]) == (b_count, c_count)
    assert got["a"]["accuracy"] == pytest.approx(right_a.mean(), abs=ABS)
    assert got["b"]["accuracy"] == pytest.approx(right_b.mean(), abs=ABS)
    m = b_count + c_count
    if m == 0:
        assert got["mcnemar_exact_p"] == 1.0
    else:
        want = binomtest(min(b_count, c_count), m, 0.5).pvalue
        assert got["mcnemar_exact_p"] == pytest.approx(want, rel=1e-12)
        stat = max(0, abs(b_count - c_count) - 1) ** 2 / m
        assert got["mcnemar_chi_square"] == pytest.approx(stat, abs=ABS)
        assert got["mcnemar_chi_square_p"] == pytest.approx(chi2.sf(stat, 1), rel=1e-12)
    diff = (c_count - b_count) / n
    half = norm.ppf(0.975) * math.sqrt(m - (c_count - b_count) ** 2 / n) / n
    assert got["accuracy_difference"] == pytest.approx(diff, abs=ABS)
    assert got["accuracy_difference_ci95"] == pytest.approx([diff - half, diff + half], abs=ABS)
    significant = got["mcnemar_exact_p"] < 0.05
    assert got["reading"].startswith("no significant difference") != significant
    print(f"seed {seed}: b={b_count} c={c_count} exact p={got['mcnemar_exact_p']:.3g}")


def test_table_and_refusals(binary: Path, tmp_path: Path) -> None:
    folder = write_run(tmp_path / "run", ["a", "b"], [{"id": "1", "label": "a", "prediction": "a"},
                                                      {"id": "2", "label": "b", "prediction": "a"}])
    done = medgemma(binary, "eval", "--report", str(folder))
    assert done.returncode == 0, done.stderr
    assert "accuracy   0.5000" in done.stdout and "Research use only" in done.stdout
    assert "wrote report.json" in done.stderr and "wrote" not in done.stdout

    missing = medgemma(binary, "eval", "--report", str(tmp_path / "nothing-here"))
    assert missing.returncode != 0 and missing.stdout == ""
    assert "not an eval folder" in missing.stderr and "medgemma eval --output DIR" in missing.stderr

    other = write_run(tmp_path / "other", ["b", "a"], [{"id": "1", "label": "a", "prediction": "a"}])
    refused = medgemma(binary, "eval", "--compare", str(folder), str(other))
    assert refused.returncode != 0 and "different classes" in refused.stderr

    (folder / "predictions.jsonl").write_text(
        '{"id": "1", "label": "a", "prediction": "a"}\n{"id": "1", "label": "b", "prediction": "b"}\n')
    duplicate = medgemma(binary, "eval", "--report", str(folder))
    assert duplicate.returncode != 0 and "line 2" in duplicate.stderr and '"1"' in duplicate.stderr
