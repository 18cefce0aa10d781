"""benchmarks/bench_rule_cost.py runs every curve shape through the rule in both arms and restores the budgets."""

import sys
from pathlib import Path

from lightning_scaling import curve_families, fitting

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_rule_cost  # noqa: E402


def test_every_shape_is_timed_in_both_arms_and_the_budgets_are_restored(capsys):
    shipped = (fitting.CURVE_MAX_NFEV, curve_families.CURVE_MAX_NFEV, curve_families.EFFECTIVE_DATA_MAX_NFEV)
    bench_rule_cost.main(["--repeats", "1", "--points", "10", "--markdown"])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "curve shape" not in line]
    names = set(bench_rule_cost.synthetic(10, 0)) | set(bench_rule_cost.recorded(10))
    assert {r.split(" | ")[0][2:] for r in rows} == names
    for r in rows:
        cells = [c.strip() for c in r.strip("|").split("|")]
        assert all(float(c) > 0 for c in cells[1:5]) and cells[5].endswith("x")
    assert "bounded, every shape: median" in out
    assert (fitting.CURVE_MAX_NFEV, curve_families.CURVE_MAX_NFEV, curve_families.EFFECTIVE_DATA_MAX_NFEV) == shipped
