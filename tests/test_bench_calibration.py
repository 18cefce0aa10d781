"""benchmarks/bench_calibration.py replays a small subset into every table, and its conformal pieces are sound."""

import math
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_calibration as bc  # noqa: E402


def tables(out: str) -> dict[str, list[list[str]]]:
    """The markdown tables of the output by section number ('1', '2', '2b', '3', '4'): their body rows' cells."""
    found: dict[str, list[list[str]]] = {}
    section = None
    for line in out.splitlines():
        if line.startswith("#"):
            section = line.lstrip("#").split(".")[0].strip()
        elif line.startswith("| ") and section is not None:
            found.setdefault(section, []).append([c.strip() for c in line.strip("|").split("|")])
    return {k: rows[1:] for k, rows in found.items()}  # without the header (the |---| line does not start "| ")


def share(cell: str) -> float:
    value = float(cell.split(" ")[0])
    assert 0.0 <= value <= 1.0, cell
    return value


def test_small_subset_fills_every_table(capsys):
    start = time.perf_counter()
    bc.main(["--sources", "stdlib", "luo", "--limit", "2", "--markdown"])
    assert time.perf_counter() - start < 30
    t = tables(capsys.readouterr().out)
    assert len(t["1"]) == 3 * 2 * len(bc.FRACTIONS)
    for row in t["1"]:
        assert row[0] in bc.OPTION_SETS and row[1] in ("stdlib", "luo") and row[3].endswith("/2")
        assert 0.0 <= float(row[4]) < 2.0
        for cell in row[5:]:
            share(cell)
    assert len(t["2"]) == 3 * 2 * (len(bc.G_BINS) - 1)
    luo_low = next(r for r in t["2"] if r[1] == "luo" and r[2] == "[0, 0.05)")
    assert int(luo_low[3]) == 2 and int(luo_low[4]) > 100
    assert float(luo_low[5]) <= float(luo_low[6]) <= float(luo_low[7])
    assert len(t["2b"]) == 6 and all(-1.0 <= float(c) <= 1.0 for r in t["2b"] for c in r[4:] if c != "--")
    assert len(t["3"]) == 3 * 2 * len(bc.CONDITIONING)
    for row in t["3"]:
        assert row[2] in bc.CONDITIONING and row[3].startswith("2 runs")
        for cell in row[4:4 + len(bc.FRACTIONS)]:
            share(cell)
        assert all(c == "inf" for c in row[4 + len(bc.FRACTIONS):])  # two calibration runs cannot give 80%
    assert len(t["4"]) == 6
    for row in t["4"]:
        assert row[2] == "2/2" and 1.0 < float(row[3]) <= float(row[4]) < 3.0


def test_never_stopping_replay_keeps_the_stopping_replays_decisions():
    curve = bc.load_source("stdlib")[0]
    run = bc.replay_run(curve, "stdlib", "A")
    assert run.stopped_step is not None and run.decisions[-1].step > run.stopped_step
    assert all(d.prediction > 0 and math.isfinite(d.error) and d.n_fitted >= 6 for d in run.decisions)
    assert [d.n_fitted for d in run.decisions] == sorted(d.n_fitted for d in run.decisions)
    assert run.stop_ratio == pytest.approx(bc.loss_at(curve, run.stopped_step) / bc.reference(curve)[0])


def replayed(source: str, run: str, errors, odd: bool = False) -> bc.RunReplay:
    """A run whose decisions (at evenly spaced fractions up to 80%) have these errors e, g = 0.01 and a rule's interval
    of relative width 0.07; ``odd``: g = 0.5 and no rule's interval (its width NaN) instead."""
    g, (lo, hi) = (0.5, (math.nan, math.nan)) if odd else (0.01, (0.965, 1.035))
    decisions = tuple(bc.Decision(source, run, i + 1, 0.8 * (i + 1) / len(errors), True, 1.0, 1.0 + g, lo, hi,
                                  math.exp(e), None, 6, False) for i, e in enumerate(errors))
    return bc.RunReplay(source, run, decisions, None, None, None, None)


def test_leave_one_source_out_rows_are_the_package_calibrations_intervals():
    rng = np.random.default_rng(0)
    runs = {s: [replayed(s, f"r{i}", rng.normal(size=8), odd=i < 3) for i in range(60)] for s in ("a", "b")}
    rows = {(r[1], r[2]): r for r in bc.conformal_rows(runs, "A")}
    # held out "a": calibrated on b's 60 runs (its run names, the same as a's, are other runs), each weighing 1
    cal = bc.calibrate([(f"b/{r.run}", 0.0, d.error) for r in runs["b"] for d in r.decisions])
    lo, hi = cal.log_bounds(0.0, bc.LEVEL)
    none = rows[("a", "none")]
    assert none[3] == "60 runs (0)"
    assert none[4 + len(bc.FRACTIONS):] == [f"{math.exp(hi) - math.exp(lo):.3f}"] * len(bc.FRACTIONS)
    assert 0.7 <= np.mean([share(c) for c in none[4:4 + len(bc.FRACTIONS)]]) <= 0.9  # exchangeable: at its level
    # the 3 odd runs of each source fall in a bin (g >= 0.4; the rule's width NaN: the last bin) of 3 calibration
    # runs, fewer than MIN_RUNS: their decisions at each fraction are given the pooled interval
    for name in ("g", "rule's width"):
        row = rows[("a", name)]
        assert row[3] == f"60 runs ({3 * len(bc.FRACTIONS)})"
        assert none[4 + len(bc.FRACTIONS):] != row[4 + len(bc.FRACTIONS):]  # the others, their own bin's
    assert bc.conformal_calibration(runs["a"][0].decisions, None, (0.0, math.inf)) is None  # one run: no calibration
