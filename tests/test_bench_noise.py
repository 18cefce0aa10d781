"""benchmarks/bench_noise.py and bench_conditioning.py: every row printed, the module constants put back, and the
held-out scoring sound on exchangeable sources."""

import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_conditioning  # noqa: E402
import bench_noise  # noqa: E402

from lightning_scaling import stopping  # noqa: E402


def test_every_arm_on_every_curve_and_noise_and_the_constants_restored(capsys):
    before = (stopping.TURN_UP_Z, stopping.TURN_UP_EARLY, stopping.TURN_UP_WINDOW_LATER, stopping.TURN_UP_FELL)
    bench_noise.main(["--seeds", "1", "--markdown"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| falling") or
            line.startswith("| turns up") or line.startswith("| plateau")]
    assert len(rows) == 3 * len(bench_noise.NOISES)
    assert (stopping.TURN_UP_Z, stopping.TURN_UP_EARLY, stopping.TURN_UP_WINDOW_LATER, stopping.TURN_UP_FELL) == before
    # the noiseless falling curve is not data-limited in any arm; the bare 1% stops the 2%-noise one as data-limited
    assert all(cell.strip().startswith("0/1,") for cell in rows[0].split("|")[3:6])
    noisy = next(row for row in rows if "| falling | 2.00% |" in row)
    assert noisy.split("|")[5].strip().startswith("1/1,")


def test_held_out_scoring_covers_exchangeable_sources_at_its_level():
    rng = np.random.default_rng(0)
    rows = [{"source": source, "run": f"{source}/{i}", "e": float(rng.normal(0, 0.05)), "g": float(rng.uniform(0, 0.5)),
             "log_span": float(rng.uniform(0, 3))} for source in bench_conditioning.SOURCES for i in range(300)]
    for feature in (None, "log_span"):
        for coverage, width, runs in bench_conditioning.score(rows, feature).values():
            assert abs(coverage - bench_conditioning.LEVEL) < 0.08 and math.isfinite(width) and runs == 300
