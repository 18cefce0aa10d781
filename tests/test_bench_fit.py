"""benchmarks/bench_fit.py: fit_chinchilla against the plain L-BFGS-B loop over [C]'s grid, side by side; the package
reaches an optimum at least as good as the plain loop's best start (a reduced run: a few plain starts, a small
bootstrap)."""

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_fit  # noqa: E402


@pytest.mark.slow
def test_the_package_optimum_is_at_least_as_good_as_the_plain_loop(capsys):
    bench_fit.main(["--repeats", "2", "--plain-starts", "8", "--bootstrap", "20"])
    out = capsys.readouterr().out
    gap = float(re.search(r"optimum: package - plain = (\S+)", out).group(1))
    assert gap <= 1e-9  # the package's optimum is no worse than the best of the plain starts
    ratio = float(re.search(r"ratio plain/package\s+(\S+)x", out).group(1))
    assert ratio > 1  # and the full grid is faster than the plain loop over it (BENCHMARKS.md: ~24-33x)
    assert "intervals:" in out and "alpha" in out  # the bootstrap's intervals are printed
