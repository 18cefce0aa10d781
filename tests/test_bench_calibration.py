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


def decision(run: str, e: float, g: float = 0.1) -> bc.Decision:
    return bc.Decision("s", run, 1, 0.5, True, 1.0, 1.0 + g, 0.9, 1.1, math.exp(e), None, 6, False)


def test_conformal_interval_covers_exchangeable_runs_at_its_level():
    rng = np.random.default_rng(0)
    calibration = [decision(f"c{i}", x) for i in range(200) for x in rng.normal(size=int(rng.integers(1, 30)))]
    (lo, hi, own), = bc.conformal_bounds(calibration, None, (0.0, math.inf))[0]
    test = rng.normal(size=4000)
    assert own and 0.78 <= np.mean((test >= lo) & (test <= hi)) <= 0.86


def test_long_runs_do_not_dominate_and_bins_condition():
    long_run = [decision("long", 1.0, g=0.01)] * 1000
    short = [decision(f"r{i}", 0.01 * i, g=0.01) for i in range(20)]
    lo, hi, n = bc.conformal_quantiles(long_run + short)
    assert n == 21 and lo < 0.05 and hi < 0.2  # the long run is one of 21 (unweighted, 1000 of 1020: hi = 1)
    assert bc.weighted_quantile([1.0, 2.0], [1, 1], 0.5) == 1.0 and bc.weighted_quantile([1.0], [1], 1.01) == math.inf
    far = [decision(f"f{i}", 0.5 + 0.01 * i, g=0.5) for i in range(20)]
    bounds, which = bc.conformal_bounds(short + far, lambda d: d.g, bc.G_BINS)
    assert bounds[which(short[0])][1] < 0.25 < bounds[which(far[0])][0]
    assert not bounds[2][2]  # an empty bin takes the unbinned quantiles
