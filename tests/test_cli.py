"""`lightning-scaling` end to end: published numbers, real short runs with the callbacks, the recorded corpus."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

from lightning_scaling import DataLimitGap, PowerLaw, fit_chinchilla, fit_power_law, load_law
from lightning_scaling.cli import main
from lightning_scaling.corpus.curves import list_curves, load_curve
from lightning_scaling.stopping import StopConfig, replay
from models import CurveRegressor, Regressor, loader, make_trainer, regression_data

DATA = Path(__file__).parent / "data" / "chinchilla_fig4_points.csv"


def run_json(capsys, argv, code=0):
    assert main(argv + ["--json"]) == code
    return json.loads(capsys.readouterr().out)


# ------------------------------------------------------------------------------------ published numbers
def test_allocate_reproduces_the_published_allocations(capsys):
    out = run_json(capsys, ["allocate", "1.21e20", "--law", "besiroglu2024"])  # [C] Table 3: 1e9 params, 20.2e9 tokens
    assert out["n_params"] == pytest.approx(1e9, rel=0.1) and out["n_tokens"] == pytest.approx(20.2e9, rel=0.1)
    assert out["tokens_per_param"] == pytest.approx(20.2, rel=0.15)  # [C] Table 3 ratio; the [B] refit gives 22.8
    out = run_json(capsys, ["allocate", "1.23e22", "--law", "besiroglu2024"])  # [C] Table 3: 10e9 -> 205.1e9 tokens
    assert out["n_params"] == pytest.approx(10e9, rel=0.1) and out["n_tokens"] == pytest.approx(205.1e9, rel=0.1)
    out = run_json(capsys, ["allocate", "1", "--pf-days", "--law", "kaplan2020_lc"])  # [K] Table 6
    assert out["n_params"] == pytest.approx(1.3e9) and out["n_tokens"] == pytest.approx(2e10)


def test_crossover_reproduces_kaplan(capsys):
    out = run_json(capsys, ["crossover"])  # SCIENCE.md 5: C* ~ 1.1e4 PF-days, L* ~ 1.67 ([K] eq 6.8: ~1e4, ~1.7)
    assert out["compute_pf_days"] == pytest.approx(1.1e4, rel=0.05) and out["loss"] == pytest.approx(1.67, abs=0.01)
    assert out["n_params"] == pytest.approx(1e12, rel=0.3)  # [K] eq 6.8: N* ~ 1e12
    out = run_json(capsys, ["crossover", "--data-coefficient", "4e10", "--data-exponent", "0.26"])  # [K] eq 6.7
    assert out["compute_pf_days"] == pytest.approx(1e5, rel=0.3) and out["loss"] == pytest.approx(1.49, abs=0.01)


def test_fit_nd_on_the_chinchilla_points_matches_fit_chinchilla(capsys):
    assert main(["fit", str(DATA), "--law", "nd", "--bootstrap", "20", "--json"]) == 0
    captured = capsys.readouterr()
    assert "bootstrap" in captured.err and "20/20" in captured.err  # the bar over fit_chinchilla's resamples
    out = json.loads(captured.out)
    n, flop, loss = np.loadtxt(DATA, delimiter=",", skiprows=1).T
    ref = fit_chinchilla(n, flop / (6 * n), loss).law
    got = load_law(out["law"])
    for name in ("E", "A", "B", "alpha", "beta"):
        assert getattr(got, name) == pytest.approx(getattr(ref, name), rel=1e-9)
        lo, hi = out["intervals"][name]
        assert lo <= getattr(got, name) <= hi


def test_fit_ld_table_writes_the_json_datalimitgap_reads_with_bootstrap_intervals(tmp_path, capsys):
    law = PowerLaw(1e6, 0.3, 1.2, unit="tokens")
    d = np.logspace(4, 8, 10)
    rng = np.random.default_rng(0)
    table = tmp_path / "runs.csv"
    table.write_text("tokens,loss\n" + "\n".join(f"{x},{law(x) * (1 + 0.002 * rng.standard_normal())}" for x in d))
    out_json, png = tmp_path / "ld.json", tmp_path / "ld.png"
    assert main(["fit", str(table), "--law", "ld", "--fit-irreducible", "--out", str(out_json), "--plot", str(png),
                 "--bootstrap", "40", "--json"]) == 0
    captured = capsys.readouterr()
    assert "bootstrap" in captured.err and "40/40" in captured.err  # the bar over the resamples (tqdm)
    lo, hi = json.loads(captured.out)["intervals"]["exponent"]
    fitted = PowerLaw.from_json(out_json)
    assert lo <= fitted.exponent <= hi
    assert fitted.unit == "tokens" and fitted.irreducible == pytest.approx(1.2, rel=0.02)
    assert DataLimitGap(law=str(out_json)).law == fitted
    assert png.stat().st_size > 1000



def test_fit_nd_kaplan_table_writes_the_l_n_d_datalimitgap_reads(tmp_path, capsys):
    from lightning_scaling import OverfittingLaw

    truth = OverfittingLaw(N_c=2e5, D_c=4e5, alpha_N=0.25, alpha_D=0.3)
    n = np.repeat([3e4, 8e4, 2e5, 5e5], 4)
    d = np.tile([3e4, 6e4, 1.3e5, 4e5], 4)
    table = tmp_path / "sweep.csv"
    table.write_text("n_params,tokens,loss\n" + "\n".join(f"{a},{b},{truth(a, b)}" for a, b in zip(n, d)))
    out_json, png = tmp_path / "lnd.json", tmp_path / "lnd.png"
    out = run_json(capsys, ["fit", str(table), "--law", "nd-kaplan", "--out", str(out_json), "--plot", str(png)])
    assert out["law"]["kind"] == "overfitting" and len(out["points"]) == 16
    fitted = load_law(out_json)
    assert fitted(n, d) == pytest.approx(truth(n, d), rel=1e-3)
    assert DataLimitGap(law=str(out_json), n_params=80_000).law(1e5) == pytest.approx(truth(8e4, 1e5), rel=1e-3)
    assert png.stat().st_size > 1000
    assert main(["fit", str(table), "--law", "nd-kaplan", "--bootstrap", "10"]) == 2  # bad input: a clear error
    assert "bootstrap" in capsys.readouterr().err

def test_bootstrap_progress_without_tqdm_is_a_plain_line_per_tenth(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm now raises ImportError
    law = PowerLaw(1e6, 0.3, unit="tokens")
    table = tmp_path / "runs.csv"
    table.write_text("tokens,loss\n" + "\n".join(f"{x},{law(x) * (1 + 0.01 * (-1) ** i)}"
                                                 for i, x in enumerate(np.logspace(4, 8, 8))))
    assert main(["fit", str(table), "--bootstrap", "30"]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "bootstrap: fitting 30 resamples" and lines[-1] == "bootstrap: 30/30 resamples"
    assert len(lines) == 11  # the announcement and one line per tenth


# ------------------------------------------------------------------------------------ the recorded corpus
def corpus(model: str):
    return [p for p in list_curves() if load_curve(p).config.get("model") == model
            and load_curve(p).config.get("schedule") == "constant"]


def test_fit_from_the_recorded_runs_uses_their_best_loss_data_seen_and_6n_flops(tmp_path, capsys):
    paths = corpus("l")
    assert len(paths) >= 3
    curves = [load_curve(p) for p in paths]
    best = [int(np.argmin(c.val_loss)) for c in curves]
    loss = [c.val_loss[i] for c, i in zip(curves, best)]
    data = [min(c.tokens[i], c.train_tokens) for c, i in zip(curves, best)]
    out = run_json(capsys, ["fit", *map(str, paths), "--law", "ld", "--plot", str(tmp_path / "ld.png")])
    ref = fit_power_law(data, loss, unit="tokens").law
    got = load_law(out["law"])
    assert got.unit == "tokens" and got.exponent == pytest.approx(ref.exponent, rel=1e-9)
    assert got.scale == pytest.approx(ref.scale, rel=1e-9) and out["skipped"] == 0
    flop = [6 * c.n_params * c.tokens[i] for c, i in zip(curves, best)]
    out = run_json(capsys, ["fit", *map(str, paths), "--law", "lc"])
    assert sorted(p["flops"] for p in out["points"]) == pytest.approx(sorted(flop))
    assert load_law(out["law"]).unit == "flop"


def test_fit_ln_and_nd_from_the_recorded_runs_are_the_core_fitters_on_their_points(capsys):
    full = [p for p in list_curves() if p.name.endswith("_dfull_const")]  # s, m, l on all the data: L(N)
    curves = [load_curve(p) for p in full]
    out = run_json(capsys, ["fit", *map(str, full), "--law", "ln"])
    ref = fit_power_law([c.n_params for c in curves], [c.val_loss.min() for c in curves], unit="params").law
    got = load_law(out["law"])
    assert got.unit == "params" and got.exponent == pytest.approx(ref.exponent, rel=1e-9)
    assert got.scale == pytest.approx(ref.scale, rel=1e-9)
    paths = corpus("s") + corpus("m") + corpus("l")  # every constant-schedule run on the same text: L(N, D)
    paths = [p for p in paths if "stdlib" not in p.name]
    curves = [load_curve(p) for p in paths]
    best = [int(np.argmin(c.val_loss)) for c in curves]
    out = run_json(capsys, ["fit", *map(str, paths), "--law", "nd"])
    ref = fit_chinchilla([c.n_params for c in curves], [min(c.tokens[i], c.train_tokens) for c, i in zip(curves, best)],
                         [c.val_loss[i] for c, i in zip(curves, best)]).law
    got = load_law(out["law"])
    for name in ("E", "A", "B", "alpha", "beta"):
        assert getattr(got, name) == pytest.approx(getattr(ref, name), rel=1e-9)


def test_replay_of_a_recorded_run_is_the_core_rule_on_its_curve(capsys):
    path = corpus("s")[0]
    curve = load_curve(path)
    rows = run_json(capsys, ["replay", str(path), "--threshold", "1.05", "1.1", "--time-axis", "lr_sum",
                             "--warmup-steps", "50"])
    for row in rows:
        ref = replay(curve.steps, curve.val_loss, lr=curve.lr, threshold=row["threshold"], warmup_steps=50,
                     time_axis="lr_sum")
        assert row["stopped_step"] == ref.stopped_step and row["predicted_converged"] == ref.converged_loss
        assert row["best_loss"] == pytest.approx(curve.val_loss.min())
        if ref.stopped_step is not None:
            assert row["flops_at_stop"] == pytest.approx(6 * curve.n_params * ref.stopped_step
                                                         * curve.config["tokens_per_step"])


# ------------------------------------------------------------------------------------ real short runs
@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory):
    """A real run stopped by ExtraEarlyStopping (CurveRegressor's known curve stops near step 1070)."""
    from lightning_scaling import EffectiveEpochs, ExtraEarlyStopping, FlopCounter

    root = tmp_path_factory.mktemp("stopped")
    stop = ExtraEarlyStopping(calibration=False, verbose=False,
                              config=StopConfig(family="power"))  # replayed with --rule family=power
    logger = TensorBoardLogger(root, name="run")
    trainer = make_trainer(root, [EffectiveEpochs(), FlopCounter(peak_flops=1e12), stop], logger=logger,
                           max_steps=3000, val_check_interval=16, check_val_every_n_epoch=None, limit_val_batches=1)
    trainer.fit(CurveRegressor(), loader(regression_data(64)), loader(regression_data(16, seed=1)))
    assert stop.stopped_step is not None
    return logger.log_dir, stop.stopped_step


@pytest.mark.slow
def test_replay_agrees_with_the_live_callback_and_skips_bad_runs(stopped_run, tmp_path, capsys):
    log_dir, stopped_step = stopped_run
    code = main(["replay", log_dir, str(tmp_path / "missing"), "--threshold", "1.1", "1.2", "--rule", "family=power",
                 "--json"])
    captured = capsys.readouterr()
    assert code == 1 and captured.err.count("\n") == 1 and "missing: does not exist" in captured.err
    rows = json.loads(captured.out)
    at_11 = next(r for r in rows if r["threshold"] == 1.1)
    at_12 = next(r for r in rows if r["threshold"] == 1.2)
    assert at_11["stopped_step"] == stopped_step
    assert at_12["stopped_step"] < at_11["stopped_step"] and at_12["flops_at_stop"] < at_11["flops_at_stop"]
    assert at_12["compute_saved"] > 0.5 and at_11["compute_saved"] == pytest.approx(0.0, abs=1e-9)
    assert main(["replay", log_dir, "--rule", "family=power"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert "FLOP@stop" in table[0] and f" {stopped_step} " in table[1]


@pytest.mark.slow
def test_replay_of_a_csvlogger_run_on_the_lr_sum_axis_agrees_with_the_live_callback(tmp_path, capsys):
    from lightning_scaling import EffectiveEpochs, ExtraEarlyStopping

    stop = ExtraEarlyStopping(calibration=False, verbose=False, time_axis="lr_sum", warmup_steps=30,
                              config=StopConfig(family="power"))
    logger = CSVLogger(tmp_path, name="run")
    make_trainer(tmp_path, [EffectiveEpochs(), stop], logger=logger, max_steps=3000, val_check_interval=16,
                 check_val_every_n_epoch=None, limit_val_batches=1).fit(
        CurveRegressor(), loader(regression_data(64)), loader(regression_data(16, seed=1)))
    assert stop.stopped_step is not None
    (row,) = run_json(capsys, ["replay", logger.log_dir, "--time-axis", "lr_sum", "--warmup-steps", "30",
                               "--rule", "family=power"])
    assert row["stopped_step"] == stop.stopped_step


@pytest.mark.slow
def test_replay_takes_the_data_floor_the_live_callback_had_from_datalimitgap(tmp_path, capsys):
    """With DataLimitGap the live rule holds its prediction at L(D_seen) = 1.05 (above the curve's own
    limit 1.0), so it stops early (near step 570); replay reads that floor from scaling/ld_loss."""
    from lightning_scaling import EffectiveEpochs, ExtraEarlyStopping

    stop = ExtraEarlyStopping(calibration=False, verbose=False, config=StopConfig(family="power"))
    gap = DataLimitGap(law=PowerLaw(0.16, 0.5, 1.0, unit="examples"))  # L(64 examples) = 1.05
    logger = TensorBoardLogger(tmp_path, name="run")
    trainer = make_trainer(tmp_path, [EffectiveEpochs(), gap, stop], logger=logger, max_steps=1500,
                           val_check_interval=16, check_val_every_n_epoch=None, limit_val_batches=1)
    trainer.fit(CurveRegressor(), loader(regression_data(64)), loader(regression_data(16, seed=1)))
    assert stop.stopped_step is not None and stop.stopped_step < 1000
    (row,) = run_json(capsys, ["replay", logger.log_dir, "--rule", "family=power"])
    assert row["stopped_step"] == stop.stopped_step
    (no_floor,) = run_json(capsys, ["replay", logger.log_dir, "--rule", "family=power", "--no-data-floor"])
    assert no_floor["stopped_step"] is None or no_floor["stopped_step"] > stop.stopped_step


@pytest.mark.slow
def test_with_an_ln_d_floor_the_live_rule_fits_the_power_law_and_replay_does_the_same(tmp_path, capsys):
    """DataLimitGap given L(N, D) (an OverfittingLaw): the floor is this model's own limit, so the default
    family="auto" fits the power law alone; the callback logs scaling/floor_kind = 1 and replay reads it."""
    from lightning_scaling import EffectiveEpochs, ExtraEarlyStopping, OverfittingLaw

    # at N = 1e9, L(64 examples) = 0.9: below the curve's limit 1.0, where the power law fits it exactly and the
    # exponential does not
    law = OverfittingLaw(N_c=1.0, D_c=51.84, alpha_N=0.3, alpha_D=0.5)
    stop = ExtraEarlyStopping(calibration=False, verbose=False)
    logger = TensorBoardLogger(tmp_path, name="run")
    trainer = make_trainer(tmp_path, [EffectiveEpochs(tokens_per_example=1), DataLimitGap(law, n_params=10**9), stop],
                           logger=logger, max_steps=1500, val_check_interval=16, check_val_every_n_epoch=None,
                           limit_val_batches=1)
    trainer.fit(CurveRegressor(), loader(regression_data(64)), loader(regression_data(16, seed=1)))
    assert stop.rule.floor_kind == "model" and stop.rule.fitted_family == "power"
    assert stop.stopped_step is not None
    assert "L(N, D_seen)" in capsys.readouterr().out  # DataLimitGap's note at setup
    (row,) = run_json(capsys, ["replay", logger.log_dir])
    assert (row["family"], row["stopped_step"]) == ("power", stop.stopped_step)
    (power,) = run_json(capsys, ["replay", logger.log_dir, "--rule", "family=power", "--rule", "floor_kind=data"])
    assert (power["family"], power["stopped_step"]) == ("power", stop.stopped_step)
    (averaged,) = run_json(capsys, ["replay", logger.log_dir, "--rule", "floor_kind=data"])
    assert averaged["family"] == "average"  # the logged floor kind is what made it the power law


@pytest.mark.slow
def test_report_draws_the_three_figures_and_names_what_it_cannot_draw(stopped_run, tmp_path, capsys):
    log_dir, stopped_step = stopped_run
    law = tmp_path / "ld.json"
    PowerLaw(32.0, 0.5, 0.5, unit="examples").to_json(law)
    reports = run_json(capsys, ["report", log_dir, str(corpus("s")[0]), "--out", str(tmp_path / "rep"),
                                "--law", str(law), "--rule", "family=power"])
    live, recorded = reports
    assert live["stopped_step"] == stopped_step
    assert [Path(f).name for f in live["figures"]] == ["learning_curve.png", "loss_vs_flops.png", "loss_vs_data.png"]
    assert all(Path(f).stat().st_size > 1000 for f in live["figures"]) and live["not_drawn"] == []
    assert live["fit_converged_loss"] == pytest.approx(1.0, abs=0.05)  # CurveRegressor: L = 1 + (40/S)^0.7
    assert live["stop_loss"] == pytest.approx(live["threshold"] * live["predicted_converged"])  # the rule's lines
    assert len(recorded["figures"]) == 2 and "counts examples, the run tokens" in recorded["not_drawn"][0]


class KnownLD(Regressor):
    """Trains for real, reports val_loss = L(D) + (5/S)^1.5 with L(D) = 0.5 + (64/D)^0.4, N as a hyperparameter."""

    def __init__(self, dataset_size: int):
        super().__init__()
        self.save_hyperparameters({"n_params": sum(p.numel() for p in self.parameters())})
        self.size, self.values = dataset_size, []

    def validation_step(self, batch, batch_idx):
        value = torch.tensor(0.5 + (64 / self.size) ** 0.4 + (5 / max(self.global_step, 1)) ** 1.5)
        self.values.append(float(value))
        self.log("val_loss", value)


@pytest.mark.slow
def test_fit_from_log_directories_of_real_runs_with_one_broken(tmp_path, capsys):
    from lightning_scaling import EffectiveEpochs, FlopCounter

    sizes, best = [16, 32, 64, 128], []
    for i, size in enumerate(sizes):
        logger = (TensorBoardLogger if i % 2 else CSVLogger)(tmp_path / "runs", name=f"d{size}")
        model = KnownLD(size)
        make_trainer(tmp_path, [EffectiveEpochs(), FlopCounter()], logger=logger, max_steps=60, val_check_interval=20,
                     check_val_every_n_epoch=None, limit_val_batches=1).fit(
            model, loader(regression_data(size)), loader(regression_data(8, seed=1)))
        best.append(min(model.values))
    (tmp_path / "runs" / "broken").mkdir()
    (tmp_path / "runs" / "broken" / "events.out.tfevents.0.host.0").write_bytes(b"\x00garbage" * 64)
    capsys.readouterr()
    out_json = tmp_path / "ld.json"
    code = main(["fit", str(tmp_path / "runs"), "--law", "ld", "--fit-irreducible", "--out", str(out_json), "--json"])
    captured = capsys.readouterr()
    assert code == 1 and "broken: corrupt event file" in captured.err
    out = json.loads(captured.out)
    assert sorted(p["data"] for p in out["points"]) == sizes  # every example seen: distinct = D
    ref = fit_power_law(sizes, best, unit="examples", fit_irreducible=True).law
    got = PowerLaw.from_json(out_json)
    assert got.unit == "examples" and DataLimitGap(law=str(out_json)).law == got
    for name in ("scale", "exponent", "irreducible"):
        assert getattr(got, name) == pytest.approx(getattr(ref, name), rel=1e-6)
    assert got.exponent == pytest.approx(0.4, rel=0.2)


# ------------------------------------------------------------------------------------ the command itself
def test_help_shows_examples_and_module_entry_point():
    for sub in ("fit", "replay", "report", "allocate", "crossover"):
        out = subprocess.run([sys.executable, "-m", "lightning_scaling", sub, "--help"], capture_output=True, text=True,
                             check=True).stdout
        assert "example" in out and f"lightning-scaling {sub}" in out.split("example")[-1]
    bad = subprocess.run([sys.executable, "-m", "lightning_scaling", "allocate", "1e20", "--law", "nope"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "neither a preset" in bad.stderr


def test_console_script_is_declared_and_installed():
    import tomllib

    scripts = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["lightning-scaling"] == "lightning_scaling.cli:main"
    exe = Path(sys.executable).parent / "lightning-scaling"  # written by the (editable) install
    out = subprocess.run([str(exe), "crossover", "--json"], capture_output=True, text=True, check=True).stdout
    assert json.loads(out)["loss"] == pytest.approx(1.67, abs=0.01)


def test_rule_options_pass_through_to_the_core_rule(capsys):
    path = corpus("s")[0]
    curve = load_curve(path)
    config = StopConfig(family="power", smoothing=0.3, min_points=8)
    rows = run_json(capsys, ["replay", str(path), "--warmup-steps", "50", "--rule", "family=power",
                             "--rule", "smoothing=0.3", "--rule", "min_points=8"])
    ref = replay(curve.steps, curve.val_loss, threshold=rows[0]["threshold"], warmup_steps=50, config=config)
    assert rows[0]["stopped_step"] == ref.stopped_step and rows[0]["predicted_converged"] == ref.converged_loss
    assert main(["replay", str(path), "--rule", "no_such_option=1"]) == 2
    assert "no_such_option" in capsys.readouterr().err
    assert main(["replay", str(path), "--rule", "family=nope"]) == 2  # the rule's own ValueError, one line
    assert "family must be one of" in capsys.readouterr().err
    assert main(["replay", str(path), "--rule", "window=0.2"]) == 2  # an option the rule no longer has
    assert "window was removed" in capsys.readouterr().err


def test_a_missing_dir_a_run_without_the_tags_and_a_corrupt_file_are_each_one_line_and_skipped(tmp_path, capsys):
    good = [str(p) for p in corpus("l")[:3]]  # three, so that fit has enough points
    untagged = tmp_path / "untagged"
    untagged.mkdir()
    (untagged / "metrics.csv").write_text("step,train_loss\n0,2.0\n1,1.9\n")
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "events.out.tfevents.1.host.1").write_bytes(bytes(range(256)) * 4)
    missing = tmp_path / "missing"
    for argv in (["replay"], ["fit", "--law", "ld"], ["report", "--out", str(tmp_path / "rep")]):
        code = main(argv[:1] + [str(missing), str(untagged), *good, str(corrupt)] + argv[1:] + ["--json"])
        captured = capsys.readouterr()
        lines = captured.err.splitlines()
        assert code == 1 and len(lines) == 3, (argv, lines)
        assert any(str(missing) in ln and "does not exist" in ln for ln in lines)
        assert any(str(untagged) in ln and "'val_loss'" in ln for ln in lines)
        assert any(str(corrupt) in ln and "corrupt event file" in ln for ln in lines)
        out = json.loads(captured.out)
        runs = [p["name"] for p in out["points"]] if argv[0] == "fit" else [r["run"] for r in out]
        assert sorted(runs) == sorted(good)


def test_help_is_plain_text():
    for sub in ([], ["fit"], ["replay"], ["report"], ["allocate"], ["crossover"]):
        out = subprocess.run([sys.executable, "-m", "lightning_scaling", *sub, "--help"], capture_output=True,
                             text=True, check=True).stdout
        for markup in ("``", ":mod:", ":func:", ":class:", "::"):
            assert markup not in out, (sub, markup)
        if not sub:
            assert "see lightning_scaling.logs for" in " ".join(out.split())


def test_a_law_that_is_neither_a_preset_nor_a_file_lists_the_presets_and_a_bad_file_is_named(tmp_path, capsys):
    from lightning_scaling import presets

    assert main(["allocate", "1e20", "--law", "kaplan2020"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'kaplan2020' is neither a preset law nor an existing law JSON file" in err
    assert all(name in err for name in presets.names())
    bad = tmp_path / "nd.json"
    bad.write_text('{"E": 1.7, "A": 400')
    for argv in (["allocate", "1e20", "--law", str(bad)], ["crossover", "--ld", str(bad)],
                 ["report", str(tmp_path), "--law", str(bad)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{bad}: not valid JSON" in err, argv
    bad.write_text('{"E": 1.7, "A": 400.0, "B": 400.0, "alpha": 0.34, "beta": 0.28}')
    assert main(["allocate", "1e20", "--law", str(bad)]) == 2
    assert f"{bad} has no 'kind' field" in capsys.readouterr().err


def test_allocate_warns_outside_the_compute_the_law_was_fitted_on(tmp_path, capsys):
    assert main(["allocate", "1.21e20", "--law", "besiroglu2024"]) == 0
    assert capsys.readouterr().err == ""
    assert main(["allocate", "1.3e12", "--law", "besiroglu2024", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["n_params"] > 0  # still answered
    assert captured.err.count("\n") == 1 and "warning: 1.3e+12 FLOP is" in captured.err
    assert "below the compute besiroglu2024 was fitted on" in captured.err and "extrapolates" in captured.err
    assert main(["allocate", "1e5", "--pf-days", "--law", "kaplan2020_lc"]) == 0
    assert "above the compute kaplan2020_lc was fitted on" in capsys.readouterr().err
    # a law fitted here records the compute of its points; one written without it says that it cannot tell
    n = np.repeat([1e6, 3e6, 1e7, 3e7], 4)
    d = np.tile([2e7, 6e7, 2e8, 6e8], 4)
    law = load_law('{"kind": "chinchilla", "E": 1.7, "A": 400, "B": 400, "alpha": 0.34, "beta": 0.28}')
    table = tmp_path / "sweep.csv"
    table.write_text("n_params,tokens,loss\n" + "\n".join(f"{a},{b},{law(a, b)}" for a, b in zip(n, d)))
    assert main(["fit", str(table), "--law", "nd", "--out", str(tmp_path / "nd.json")]) == 0
    capsys.readouterr()
    fitted_on = json.loads((tmp_path / "nd.json").read_text())["fitted_on"]
    assert fitted_on == {"compute_flop": [pytest.approx(6 * 1e6 * 2e7), pytest.approx(6 * 3e7 * 6e8)], "points": 16}
    assert main(["allocate", "1e15", "--law", str(tmp_path / "nd.json")]) == 0
    assert capsys.readouterr().err == ""
    assert main(["allocate", "1e21", "--law", str(tmp_path / "nd.json")]) == 0
    assert "above the compute" in capsys.readouterr().err
    law.to_json(tmp_path / "old.json")
    assert main(["allocate", "1e21", "--law", str(tmp_path / "old.json")]) == 0
    assert "records no compute range" in capsys.readouterr().err


def test_crossover_says_which_inputs_are_the_users_and_which_kaplans(tmp_path, capsys):
    assert main(["crossover"]) == 0
    assert capsys.readouterr().err == ""  # all Kaplan's: nothing mixed
    PowerLaw(1e13, 0.1, unit="tokens").to_json(tmp_path / "ld.json")
    assert main(["crossover", "--ld", str(tmp_path / "ld.json"), "--json"]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"your L(D) = {tmp_path / 'ld.json'}" in err
    assert "Kaplan et al. 2020's L(C) = kaplan2020_lc" in err and "D(C)'s coefficient = 2e+10" in err
    assert main(["crossover", "--data-coefficient", "4e10", "--data-exponent", "0.26"]) == 0
    err = capsys.readouterr().err
    assert "your D(C)'s coefficient = 4e+10, D(C)'s exponent = 0.26 with Kaplan" in err
    assert main(["crossover", "--ld", "hoffmann2022"]) == 2  # not an L(D) power law: a clear error, not a traceback
    assert "crossover needs L(D) as a power law in tokens" in capsys.readouterr().err


@pytest.mark.slow
def test_a_killed_and_resumed_run_replays_to_its_live_stop_with_no_options_retyped(tmp_path, capsys):
    """A real Trainer with a warm-up and the lr_sum axis is killed after a checkpoint (the killed session logged
    evaluations past it), resumed from that checkpoint into the same TensorBoard version, and stops where an
    uninterrupted run stops; `replay` with no options reads them from lightning_scaling.json and reaches that stop."""
    from pytorch_lightning import Callback
    from pytorch_lightning.callbacks import ModelCheckpoint

    from lightning_scaling import EffectiveEpochs, ExtraEarlyStopping

    class Kill(Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == 240:
                raise RuntimeError("killed")

    def rule():
        return ExtraEarlyStopping(calibration=False, verbose=False, warmup_steps=48, time_axis="lr_sum",
                                  config=StopConfig(min_points=5))

    def trainer(root, callbacks, logger=None, **kw):
        return make_trainer(root, callbacks, logger=logger or False, max_steps=3000, val_check_interval=16,
                            check_val_every_n_epoch=None, limit_val_batches=1, **kw)

    data = loader(regression_data(64)), loader(regression_data(16, seed=1))
    reference = rule()
    trainer(tmp_path / "ref", [EffectiveEpochs(), reference]).fit(CurveRegressor(), *data)
    assert reference.stopped_step is not None and reference.stopped_step > 240

    checkpoints = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=160, save_top_k=-1)
    first = trainer(tmp_path, [EffectiveEpochs(), rule(), Kill(), checkpoints],
                    TensorBoardLogger(tmp_path, name="run", version=0), enable_checkpointing=True)
    with pytest.raises(RuntimeError, match="killed"):
        first.fit(CurveRegressor(), *data)
    (ckpt,) = sorted((tmp_path / "ckpt").glob("*step=160*.ckpt"))
    resumed = rule()
    logger = TensorBoardLogger(tmp_path, name="run", version=0)
    trainer(tmp_path, [EffectiveEpochs(), resumed], logger).fit(CurveRegressor(), *data, ckpt_path=str(ckpt))
    assert resumed.stopped_step == reference.stopped_step
    (row,) = run_json(capsys, ["replay", logger.log_dir])
    assert row["stopped_step"] == resumed.stopped_step
    assert "lightning_scaling.json" in row["options_from"]


def test_forecast_from_half_a_recorded_run_under_its_own_schedule(capsys):
    from lightning_scaling.corpus.curves import CURVES_DIR

    path = CURVES_DIR / "m_dfull_wsd"  # warm-up, constant, then the decay: the drop is still to come at 50%
    (row,) = run_json(capsys, ["forecast", str(path), "--at", "0.5"])
    curve = load_curve(path)
    assert row["at_step"] <= 0.5 * curve.steps[-1] and row["final_step"] == curve.steps[-1]
    assert row["trusted"] and row["interval_low"] <= row["forecast_final_loss"] <= row["interval_high"]
    assert abs(row["error"]) < 0.02  # measured -0.45%
    # holding the LR at its value then forecasts no decay: a higher final loss
    (flat,) = run_json(capsys, ["forecast", str(path), "--at", "0.5", "--constant"])
    assert flat["forecast_final_loss"] > row["forecast_final_loss"]
    assert main(["forecast", str(path), "--at", "0"]) == 2


def test_sweep_imports_finished_runs_and_fits_them_jointly(tmp_path, capsys):
    paths = [p for p in corpus("l") + corpus("m") + corpus("s") if p.name.endswith("d128k_const")]
    assert len(paths) == 3
    store = tmp_path / "store"
    assert main(["sweep", str(store), "--import", *map(str, paths), "--data", "pydoc"]) == 0
    out = capsys.readouterr().out
    assert "imported 3 run(s)" in out and "joint fit (kaplan, 3 runs): converged" in out
    from lightning_scaling import Sweep

    records = Sweep(store, data="pydoc").records
    assert sorted(r.n_params for r in records) == sorted(load_curve(p).config["n_params"] for p in paths)
    assert Sweep(store, data="other text").records == []  # another data identity is not pooled
