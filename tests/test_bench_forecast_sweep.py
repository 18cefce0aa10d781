"""benchmarks/bench_forecast.py and bench_sweep.py: the rows they print, and the schedule forecast's targets on Luo et
al.'s runs held out by group (BENCHMARKS.md "Forecasting the final loss"), so that a regression fails here."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_forecast  # noqa: E402
import bench_sweep  # noqa: E402

from lightning_scaling.calibration import Calibration  # noqa: E402


def _cells(out: str, prefix: str) -> list[str]:
    row = next(line for line in out.splitlines() if line.startswith(prefix))
    return [c.strip() for c in row.split("|")[1:-1]]


@pytest.mark.slow
def test_the_forecast_meets_its_targets_on_every_luo_run(capsys):
    bench_forecast.main(["--markdown", "--laws", "mpl"])
    out = capsys.readouterr().out
    at_half, at_quarter = _cells(out, "| mpl | luo | 50% |"), _cells(out, "| mpl | luo | 25% |")
    assert at_half[3] == at_half[4] == "18"  # every run, every forecast trusted
    assert float(at_half[5].rstrip("%")) <= 1.0  # median error at 50%: at most 1%
    assert float(at_quarter[5].rstrip("%")) <= 2.0  # at 25%, over the trusted forecasts
    every = at_quarter[7]  # "median, max (runs)" over every forecast with a number, the untrusted too
    assert every.endswith("(18)") and float(every.split(",")[0].rstrip("%")) <= 2.0
    assert _cells(out, "| mpl | pydoc | 25% |")[3] == "5"  # the corpus' cosine/WSD runs are scored too
    digits = _cells(out, "| mpl | digits | 25% |")  # other training code, the shipped prior: no trusted forecast
    assert digits[3] == "12" and digits[4] == "0"  # rests on a drop the runs have not shown (33% off if used)


@pytest.mark.slow
def test_the_sweep_table_compares_held_out_intervals_at_equal_coverage(capsys):
    cals = bench_sweep.held_out_calibrations()
    assert set(cals) == set(bench_sweep.SOURCES)
    for held, cal in cals.items():  # each source's single-run calibration has not seen it
        assert isinstance(cal, Calibration) and held not in cal.sources and len(cal.sources) == 3
    cases = bench_sweep.simulate(["stdlib", "spread"], ("kaplan",), cals)
    assert {c["source"] for c in cases} == {"stdlib", "spread"}
    bench_sweep.pooled_intervals(cases, "kaplan")  # each source's pooled interval calibrated on the other's
    table = bench_sweep.interval_table(cases, markdown=True)
    rows = [line for line in table.splitlines() if line.startswith("| stdlib |")]
    assert len(rows) == 6  # 20% and 50%, k = 1, 2, >= 3
    assert all(len(r.split("|")) == 13 for r in rows)


def test_the_external_source_is_scored_with_what_ships_and_its_label_noise_is_other_data():
    cals = bench_sweep.source_calibrations()
    assert set(cals) == set(bench_sweep.SOURCES + bench_sweep.EXTERNAL) and cals["digits"] is not None
    digits = {c.name: c for c in bench_sweep.load_source("digits")}
    clean, noisy = digits["mlp32_n400_clean_constant"], digits["mlp32_n400_noisy_constant"]
    assert bench_sweep.data_identity("digits", clean) != bench_sweep.data_identity("digits", noisy)
    assert bench_sweep.data_identity("digits", clean) == bench_sweep.data_identity(
        "digits", digits["cnn16_n400_clean_constant"])  # one sweep: the sizes on the same data
