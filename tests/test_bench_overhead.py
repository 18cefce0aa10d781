"""benchmarks/bench_overhead.py's direct measurement of Lightning's dispatch floor runs and reads sensibly."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_dispatch_floor_counts_six_per_step_hooks_and_times_them():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_overhead.py"), "--dispatch", "--width",
                           "32", "--steps", "60", "--val-every", "20"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("dispatch floor"))
    # the per-step hooks Lightning calls on every callback, overridden or not
    assert "6 callback hooks per step" in line
    for hook in ("on_train_batch_start", "on_before_backward", "on_after_backward", "on_before_optimizer_step",
                 "on_before_zero_grad", "on_train_batch_end"):
        assert hook in line
    extra_ns = float(re.search(r"\+(-?\d+) ns per empty callback", line).group(1))
    per_step_us, percent = (float(v) for v in re.search(r"([\d.]+) us per step = ([\d.]+)%", line).groups())
    assert 0 < extra_ns < 100_000  # one more callback costs something, and not a tenth of a millisecond per hook
    assert per_step_us == pytest.approx(6 * extra_ns * 4 / 1000, rel=0.01)
    assert percent > 0
