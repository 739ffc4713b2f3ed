"""The speed report's statistics (scripts/bench_report.py): the ratio's 95% interval, checked against values
computed by hand, and its behaviour where the answer is known without arithmetic."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
import bench_report  # noqa: E402


def test_interval_by_hand():
    # log ratios ln(1.1), ln(0.9), ln(1.0), ln(1.05): mean 0.0096850, sample sd 0.0860042, t(3) = 3.182.
    ci = bench_report.ratio_ci([1.1, 0.9, 1.0, 1.05], [1.0, 1.0, 1.0, 1.0])
    logs = [math.log(x) for x in (1.1, 0.9, 1.0, 1.05)]
    assert ci["ratio"] == pytest.approx(math.exp(sum(logs) / 4))
    assert ci["ratio"] == pytest.approx(1.009732, abs=1e-6)
    assert ci["low"] == pytest.approx(math.exp(0.0096850 - 3.182 * 0.0860042 / 2), abs=1e-5)
    assert ci["high"] == pytest.approx(math.exp(0.0096850 + 3.182 * 0.0860042 / 2), abs=1e-5)
    assert ci["rounds"] == 4


def test_pairing_cancels_a_shared_drift():
    # Both tools slow down together round by round; medgemma is always exactly 5% faster: the interval is a point.
    ref = [30.0, 24.0, 36.0, 27.0, 33.0]
    ci = bench_report.ratio_ci([r * 1.05 for r in ref], ref)
    assert ci["ratio"] == pytest.approx(1.05)
    assert ci["low"] == pytest.approx(1.05) and ci["high"] == pytest.approx(1.05)
    assert ci["half_width"] == pytest.approx(0.0, abs=1e-12)


def test_swapping_the_tools_inverts_the_interval():
    a, b = [10.0, 11.0, 9.5, 10.4], [9.0, 10.5, 9.9, 10.0]
    ab, ba = bench_report.ratio_ci(a, b), bench_report.ratio_ci(b, a)
    assert ab["ratio"] == pytest.approx(1 / ba["ratio"])
    assert ab["low"] == pytest.approx(1 / ba["high"]) and ab["high"] == pytest.approx(1 / ba["low"])


def test_one_round_has_no_interval():
    ci = bench_report.ratio_ci([2.0], [1.0])
    assert ci["ratio"] == pytest.approx(2.0)
    assert math.isinf(ci["half_width"])


def test_beyond_thirty_degrees_of_freedom_uses_the_thirty_value():
    ours = [1.0 + 0.01 * (i % 3) for i in range(40)]
    ci = bench_report.ratio_ci(ours, [1.0] * 40)
    logs = [math.log(x) for x in ours]
    mean = sum(logs) / 40
    sd = math.sqrt(sum((x - mean) ** 2 for x in logs) / 39)
    assert ci["high"] == pytest.approx(math.exp(mean + 2.042 * sd / math.sqrt(40)))
