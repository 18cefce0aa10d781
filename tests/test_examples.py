"""Each example in examples/ runs in its reduced form (--quick)."""

import importlib.util
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest

from lightning_scaling import DataLimitGap, PowerLaw, load_law

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _example(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_quickstart_is_short_and_logs_the_scaling_dashboard(tmp_path, monkeypatch):
    assert len((EXAMPLES / "quickstart.py").read_text().splitlines()) <= 35
    monkeypatch.setattr(sys, "argv", ["quickstart.py", "--quick", "--out", str(tmp_path)])
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(EXAMPLES / "quickstart.py"), run_name="__main__")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "quickstart" / "version_0"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"scaling/flops", "scaling/effective_epochs", "scaling/ld_loss", "scaling/ld_gap", "val_loss"} <= tags


def test_finetune_frozen_costs_about_4n_per_token_not_a_fraction_of_6n():
    full, layernorm, probe = _example("finetune_frozen").main(["--quick"])
    assert full["per_N"] == pytest.approx(6.0, rel=0.1)  # [K] 6N, plus attention
    assert layernorm["trainable_fraction"] < 0.005
    assert layernorm["per_N"] == pytest.approx(4.0, rel=0.1)  # SCIENCE.md 8: 2N + 2N_act + 2N_trainable
    assert layernorm["flops_per_token"] == pytest.approx(layernorm["estimate"], rel=0.1)
    assert layernorm["flops_per_token"] > 100 * layernorm["naive"]
    assert probe["per_N"] == pytest.approx(2.0, rel=0.15)


@pytest.mark.slow
def test_sweep_fits_the_laws_and_first_epoch_curves_approach_ld(tmp_path, capsys):
    out = _example("sweep").main(["--quick", "--out", str(tmp_path)])
    text = capsys.readouterr().out
    assert {p.name for p in tmp_path.iterdir()} >= {"ld.json", "ln.json", "lc.json", "runs.json", "sweep.png"}
    ld = PowerLaw.from_json(tmp_path / "ld.json")
    assert ld.unit == "tokens" and PowerLaw.from_json(tmp_path / "lc.json").unit == "flop"
    assert PowerLaw.from_json(tmp_path / "ln.json").unit == "params"
    DataLimitGap(law=str(tmp_path / "ld.json"))  # the JSON DataLimitGap reads
    lnd = load_law(tmp_path / "lnd.json")  # L(N, D) of [K] eq 1.5 over the 12 runs, at a model's N
    n_small, n_big = sorted({r.n_params for r in out["runs"]})[::2]
    assert lnd(n_small, 16_384) > lnd(n_big, 16_384)
    assert DataLimitGap(law=str(tmp_path / "lnd.json"), n_params=n_big).law(16_384) == pytest.approx(lnd(n_big, 16_384))
    runs = out["runs"]
    largest_d = max(r.train_tokens for r in runs)
    lines = {line.split("] ", 1)[1].split(":")[0]: line for line in text.splitlines() if line.startswith("[")}
    for r in runs:  # a run cut by max_steps is flagged (QUICK: val_every 10, max_steps 100)
        assert r.converged == (len(r.val_loss) * 10 < 100)
        assert ("not converged" in lines[f"N = {r.n_params:,}, D = {r.train_tokens:,}"]) == (not r.converged)
    cut = [r.train_tokens for r in runs if r.n_params == max(x.n_params for x in runs) and not r.converged]
    assert ("warning: L(D) uses runs that hit max_steps" in text) == bool(cut)
    ratios = {}
    for r in runs:
        if r.train_tokens == largest_d:
            t, loss = np.array(r.tokens), np.array(r.val_loss)
            first = (t <= largest_d) & (t >= min(x.train_tokens for x in runs))
            ratios[r.n_params] = loss[first] / ld(t[first])
    big, small = ratios[max(ratios)], ratios[min(ratios)]
    assert np.all(big > 1.0) and big[-1] < big[0]  # above L(D) and approaching it over the first epoch
    assert big[-1] <= small[-1]  # the larger model is closer


def test_tune_threshold_on_the_recorded_runs():
    results = _example("tune_threshold").main(["--quick"])
    (low, outcomes_low), (high, outcomes_high) = sorted(results.items())
    assert low < high and len(outcomes_low) == len(outcomes_high) == 3
    for a, b in zip(outcomes_low, outcomes_high):
        assert a.run == b.run
        if a.stopped_step is not None:
            assert b.stopped_step is not None and b.stopped_step <= a.stopped_step  # a higher threshold stops no later
        if b.stopped_step is not None:
            assert b.stop_ratio > 0.98  # not below the converged loss (up to the smoothing)
