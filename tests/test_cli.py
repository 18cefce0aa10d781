import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lightning_scaling import PowerLaw, fit_chinchilla, load_law
from lightning_scaling.cli import main

DATA = Path(__file__).parent / "data" / "chinchilla_fig4_points.csv"


def run_json(capsys, argv):
    assert main(argv + ["--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_allocate_reproduces_the_published_allocations(capsys):
    out = run_json(capsys, ["allocate", "1.21e20", "--law", "besiroglu2024"])  # [C] Table 3: 1e9 params, 20.2e9 tokens
    assert out["n_params"] == pytest.approx(1e9, rel=0.1) and out["n_tokens"] == pytest.approx(20.2e9, rel=0.1)
    out = run_json(capsys, ["allocate", "1", "--pf-days", "--law", "kaplan2020_lc"])  # [K] Table 6
    assert out["n_params"] == pytest.approx(1.3e9) and out["n_tokens"] == pytest.approx(2e10)


def test_crossover_reproduces_kaplan(capsys):
    out = run_json(capsys, ["crossover"])
    assert out["compute_pf_days"] == pytest.approx(1.1e4, rel=0.05) and out["loss"] == pytest.approx(1.67, abs=0.01)


def test_fit_nd_matches_fit_chinchilla(capsys):
    out = run_json(capsys, ["fit", str(DATA), "--law", "nd"])
    n, flop, loss = np.loadtxt(DATA, delimiter=",", skiprows=1).T
    ref = fit_chinchilla(n, flop / (6 * n), loss).law
    got = load_law(out["law"])
    for name in ("E", "A", "B", "alpha", "beta"):
        assert getattr(got, name) == pytest.approx(getattr(ref, name), rel=1e-9)


def test_fit_ld_writes_the_json_datalimitgap_reads(tmp_path, capsys):
    law = PowerLaw(1e6, 0.3, 1.2, unit="tokens")
    d = np.logspace(4, 8, 10)
    table = tmp_path / "runs.csv"
    table.write_text("tokens,loss\n" + "\n".join(f"{x},{law(x)}" for x in d))
    out_json, png = tmp_path / "ld.json", tmp_path / "ld.png"
    assert main(["fit", str(table), "--law", "ld", "--irreducible", "--out", str(out_json), "--plot", str(png)]) == 0
    fitted = PowerLaw.from_json(out_json)
    assert fitted.unit == "tokens" and fitted.irreducible == pytest.approx(1.2, rel=1e-3)
    assert png.stat().st_size > 1000


def test_replay_agrees_with_the_live_callback_and_skips_bad_runs(tmp_path, capsys):
    from pytorch_lightning.loggers import TensorBoardLogger

    from lightning_scaling import EffectiveEpochs, ExtraEarlyStopping, FlopCounter
    from models import CurveRegressor, loader, make_trainer, regression_data

    stop = ExtraEarlyStopping(verbose=False)
    logger = TensorBoardLogger(tmp_path, name="run")
    trainer = make_trainer(tmp_path, [EffectiveEpochs(), FlopCounter(peak_flops=1e12), stop], logger=logger,
                           max_steps=3000, val_check_interval=16, check_val_every_n_epoch=None, limit_val_batches=1)
    trainer.fit(CurveRegressor(), loader(regression_data(64)), loader(regression_data(16, seed=1)))
    assert stop.stopped_step is not None
    capsys.readouterr()  # the callbacks' own messages
    code = main(["replay", logger.log_dir, str(tmp_path / "missing"), "--threshold", "1.1", "1.2", "--json"])
    captured = capsys.readouterr()
    assert code == 1 and "skipped" in captured.err and "missing" in captured.err
    rows = json.loads(captured.out)
    at_11 = next(r for r in rows if r["threshold"] == 1.1)
    at_12 = next(r for r in rows if r["threshold"] == 1.2)
    assert at_11["stop_step"] == stop.stopped_step
    assert at_12["stop_step"] < at_11["stop_step"] and at_12["flops_at_stop"] < at_11["flops_at_stop"]


def test_help_shows_examples_and_module_entry_point():
    for sub in ("allocate", "crossover", "fit", "replay"):
        out = subprocess.run([sys.executable, "-m", "lightning_scaling", sub, "--help"], capture_output=True, text=True,
                             check=True).stdout
        assert "example" in out
    bad = subprocess.run([sys.executable, "-m", "lightning_scaling", "allocate", "1e20", "--law", "nope"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "neither a preset" in bad.stderr
