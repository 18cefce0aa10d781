"""benchmarks/bench_calibrated_stop.py holds a source out and prints every rule's row for it."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_calibrated_stop  # noqa: E402


def test_one_held_out_source_has_a_row_per_rule(capsys):
    bench_calibrated_stop.main(["--markdown", "--confidence", "0.8", "--held-out", "stdlib"])
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines() if line.startswith("| stdlib")]
    assert [r[1] for r in rows] == ["old", "power law in steps", "power law in summed LR", "point", "calibrated 0.8",
                                    "calibrated 0.8, no tail guard", "calibrated 0.8, no data-limited stop",
                                    "calibrated 0.8 + fallback patience 10"]
    calibrated = rows[4]
    assert calibrated[-2].strip() == "0"  # no unsafe stop
    assert all(cell.strip() for cell in calibrated)
