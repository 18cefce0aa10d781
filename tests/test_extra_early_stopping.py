import functools
import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import yaml
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

from lightning_scaling import DataLimitGap, EffectiveEpochs, ExtraEarlyStopping, FlopCounter, PowerLaw, replay
from models import CurveRegressor, Regressor, loader, make_trainer, regression_data

# the point rule (calibration=False): these tests exercise the rule's mechanics on curves whose stop is known;
# the calibrated default and its stop are tested in test_calibration.py
replay = functools.partial(replay, calibration=False)


def fit_curve(tmp_path, callbacks, module=None, **kw):
    defaults = dict(max_steps=3000, val_check_interval=16, check_val_every_n_epoch=None, limit_val_batches=1)
    defaults.update(kw)
    trainer = make_trainer(tmp_path, callbacks, **defaults)
    trainer.fit(module or CurveRegressor(), loader(regression_data(64)), loader(regression_data(16, seed=1)))
    return trainer


def test_stops_near_the_known_point_and_replay_agrees(tmp_path, capsys):
    stop = ExtraEarlyStopping(calibration=False)
    logger = CSVLogger(tmp_path, name="run")
    trainer = fit_curve(tmp_path, [EffectiveEpochs(), FlopCounter(peak_flops=1e12), stop], logger=logger)
    assert stop.stopped_step is not None and trainer.global_step == stop.stopped_step
    # L = 1 + (40/S)^0.7 reaches 1.1 x 1.0 at S = 40 * 10^(1/0.7) ~ 1073; smoothing lags a little
    assert 900 <= stop.stopped_step <= 1600
    assert stop.decision.converged_loss == pytest.approx(1.0, rel=0.03)
    out = capsys.readouterr().out
    assert "ExtraEarlyStopping: stopped at step" in out and "compute used" in out and "FLOP" in out
    rows = list(csv.DictReader((tmp_path / "run" / "version_0" / "metrics.csv").open()))
    # Lightning logs val_loss one step early mid-epoch; the callback logs the points it used
    points = [(int(r["step"]), float(r["scaling/monitored_loss"])) for r in rows if r.get("scaling/monitored_loss")]
    replayed = replay([s for s, _ in points], [v for _, v in points])
    assert replayed.stop_step == stop.stopped_step
    assert replayed.converged_loss == pytest.approx(stop.decision.converged_loss, rel=1e-9)
    tags = {k for r in rows for k, v in r.items() if v}
    for tag in ("scaling/converged_loss", "scaling/converged_loss_low", "scaling/converged_loss_high",
                "scaling/stop_loss", "scaling/predicted_stop_step", "scaling/progress", "scaling/lr_sum"):
        assert tag in tags


def test_resume_reaches_the_same_stop_step(tmp_path):
    ref = ExtraEarlyStopping(calibration=False, verbose=False)
    fit_curve(tmp_path / "ref", [ref])
    first = ExtraEarlyStopping(calibration=False, verbose=False)
    trainer = fit_curve(tmp_path / "a", [first], max_steps=400)
    assert first.stopped_step is None
    ckpt = tmp_path / "a" / "mid.ckpt"
    trainer.save_checkpoint(ckpt)
    torch.load(ckpt, weights_only=True)
    resumed = ExtraEarlyStopping(calibration=False, verbose=False)
    trainer = make_trainer(tmp_path / "a", [resumed], max_steps=3000, val_check_interval=16,
                           check_val_every_n_epoch=None, limit_val_batches=1)
    trainer.fit(CurveRegressor(), loader(regression_data(64)), loader(regression_data(16, seed=1)), ckpt_path=ckpt)
    assert resumed.stopped_step == ref.stopped_step


def test_missing_metric_follows_strict(tmp_path):
    with pytest.raises(RuntimeError, match="could not find the monitored metric 'val_loss'"):
        make_trainer(tmp_path, [ExtraEarlyStopping(calibration=False)], max_steps=40, val_check_interval=16,
                         check_val_every_n_epoch=None, limit_val_batches=1).fit(
                Regressor(val_name="other"), loader(regression_data(64)), loader(regression_data(16)))
    lenient = ExtraEarlyStopping(calibration=False, strict=False)
    with pytest.warns(UserWarning, match="could not find"):
        make_trainer(tmp_path, [lenient], max_steps=40, val_check_interval=16, check_val_every_n_epoch=None,
                     limit_val_batches=1).fit(Regressor(val_name="other"), loader(regression_data(64)),
                                              loader(regression_data(16)))
    assert lenient.stopped_step is None


def test_nan_is_skipped_or_stops_with_check_finite(tmp_path):
    def run(cb):
        trainer = make_trainer(tmp_path, [cb], max_steps=200, val_check_interval=16, check_val_every_n_epoch=None,
                               limit_val_batches=1)
        trainer.fit(CurveRegressor(nan_at=(64,)), loader(regression_data(64)), loader(regression_data(16)))
        return trainer

    skip = ExtraEarlyStopping(calibration=False, verbose=False)
    assert run(skip).global_step == 200 and skip.stopped_step is None
    stop = ExtraEarlyStopping(calibration=False, check_finite=True, verbose=False)
    assert run(stop).global_step == 64 and stop.stopped_step == 64


@pytest.mark.parametrize("kwargs", [dict(monitor=""), dict(time_axis="epochs"), dict(threshold=0.5),
                                    dict(config={"min_points": 1}), dict(confidence=0.0)])
def test_bad_arguments_raise_at_construction(kwargs):
    with pytest.raises(ValueError):
        ExtraEarlyStopping(calibration=False, **kwargs)


def test_data_limit_gap_says_when_the_loss_goes_below_its_law(tmp_path, capsys):
    """A loss below L(D) means the law is wrong for this data: one warning, and no claim that the run is
    data-limited."""
    law = PowerLaw(scale=2.0, exponent=0.5, irreducible=1.5, unit="examples")  # above the curve's 1 + (40/S)^0.7
    gap = DataLimitGap(law)
    with pytest.warns(UserWarning, match="below the law") as caught:
        fit_curve(tmp_path, [EffectiveEpochs(), gap], max_steps=400)
    assert sum("below the law" in str(w.message) for w in caught) == 1
    assert gap.data_limited_at is None and "data-limited" not in capsys.readouterr().out


def test_data_limit_gap_logs_and_says_when_data_limited(tmp_path, capsys):
    law = PowerLaw(scale=2.0, exponent=0.5, irreducible=0.9, unit="examples")  # L(D) for this toy
    logger = TensorBoardLogger(tmp_path, name="tb")
    gap = DataLimitGap(law, tolerance=0.5)
    fit_curve(tmp_path, [EffectiveEpochs(), gap, ExtraEarlyStopping(calibration=False, verbose=False)], logger=logger, max_steps=200)
    assert gap.data_limited_at is not None
    assert "data-limited" in capsys.readouterr().out
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(logger.log_dir)
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    images = set(acc.Tags()["images"])
    assert "scaling/learning_curve" in images and "scaling/loss_vs_data" in images
    assert len(acc.Images("scaling/learning_curve")) == 1  # at most one a minute (figure_interval=60)
    from tensorboard.plugins.custom_scalar import layout_pb2

    proto = acc.Tensors("custom_scalars__config__")[0].tensor_proto
    layout = layout_pb2.Layout.FromString(proto.string_val[0])
    titles = {c.title for c in layout.category}
    assert titles == {"Data", "Compute", "Data limit", "Stopping"}
    margin = [ch for c in layout.category for ch in c.chart if ch.HasField("margin")]
    assert margin and margin[0].margin.series[0].value == "scaling/converged_loss"
    for tag in ("scaling/ld_loss", "scaling/ld_gap", "scaling/ld_ratio", "scaling/loss_vs_examples",
                "scaling/examples_seen", "scaling/converged_loss"):
        assert tag in tags
    ld = acc.Scalars("scaling/ld_loss")[-1].value
    assert ld == pytest.approx(law(64), rel=1e-5)  # distinct data seen = the whole 64-example dataset


def test_data_limit_gap_needs_matching_units_and_counts(tmp_path, tmp_path_factory):
    path = tmp_path / "ld.json"
    PowerLaw(5.4e13, 0.095, unit="tokens").to_json(path)
    for law in (path, "kaplan2020_ld"):
        with pytest.raises(ValueError, match="tokens_per_example"):
            make_trainer(tmp_path, [EffectiveEpochs(), DataLimitGap(law)]).fit(Regressor(), loader(regression_data()))
    with pytest.raises(ValueError, match="needs the EffectiveEpochs"):
        make_trainer(tmp_path, [DataLimitGap(path)]).fit(Regressor(), loader(regression_data()))
    with pytest.raises(ValueError):
        DataLimitGap("kaplan2020_lc")  # not a data law
    with pytest.raises(ValueError, match="tolerance"):
        DataLimitGap(path, tolerance=-1)


def test_lightning_cli_config_builds_all_four(tmp_path):
    from pytorch_lightning.cli import LightningCLI

    law = tmp_path / "ld.json"
    PowerLaw(2.0, 0.5, 0.9, unit="examples").to_json(law)
    config = {"trainer": {"accelerator": "cpu", "max_steps": 2, "logger": False, "enable_checkpointing": False,
                          "enable_progress_bar": False, "callbacks": [
                              {"class_path": "lightning_scaling.EffectiveEpochs", "init_args": {"dataset_size": 64}},
                              {"class_path": "lightning_scaling.FlopCounter", "init_args": {"peak_flops": 1e12}},
                              {"class_path": "lightning_scaling.DataLimitGap", "init_args": {"law": str(law)}},
                              {"class_path": "lightning_scaling.ExtraEarlyStopping",
                               "init_args": {"threshold": 1.05, "time_axis": "lr_sum"}}]}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    cli = LightningCLI(Regressor, run=False, args=["--config", str(path)], save_config_kwargs={"overwrite": True})
    names = [type(cb).__name__ for cb in cli.trainer.callbacks]
    for name in ("EffectiveEpochs", "FlopCounter", "DataLimitGap", "ExtraEarlyStopping"):
        assert name in names
    stop = next(cb for cb in cli.trainer.callbacks if type(cb).__name__ == "ExtraEarlyStopping")
    assert stop.rule.threshold == 1.05 and stop.time_axis == "lr_sum"


@pytest.mark.slow
def test_ddp_two_ranks_match_a_single_process_run(tmp_path):
    script = Path(__file__).parent / "ddp_run.py"
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    single.mkdir(), ddp.mkdir()
    subprocess.run([sys.executable, str(script), str(single), "1", "16"], check=True, timeout=600, cwd=tmp_path)
    subprocess.run([sys.executable, str(script), str(ddp), "2", "8"], check=True, timeout=600, cwd=tmp_path)
    one = json.loads((single / "rank0.json").read_text())
    ranks = [json.loads((ddp / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert one["stop"] is not None
    for r in ranks:  # same global batch (2 x 8 = 16): same counts, FLOPs and stop step on every rank
        assert r["stop"] == r["step"] == one["stop"]
        assert r["examples"] == one["examples"]
        assert r["flops"] == pytest.approx(one["flops"], rel=1e-6)


@pytest.mark.slow
def test_ddp_cooldown_ends_on_the_same_step_on_both_ranks(tmp_path):
    """The cool-down runs in the optimizer-step hook, where the stop's summary sums the FLOPs over ranks."""
    script = Path(__file__).parent / "ddp_run.py"
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    single.mkdir(), ddp.mkdir()
    subprocess.run([sys.executable, str(script), str(single), "1", "16", "8"], check=True, timeout=600, cwd=tmp_path)
    subprocess.run([sys.executable, str(script), str(ddp), "2", "8", "8"], check=True, timeout=600, cwd=tmp_path)
    one = json.loads((single / "rank0.json").read_text())
    assert one["cooldown_start"] is not None and one["stop"] == one["step"] == one["cooldown_start"] + 8
    for r in (json.loads((ddp / f"rank{r}.json").read_text()) for r in (0, 1)):
        assert (r["cooldown_start"], r["stop"], r["step"]) == (one["cooldown_start"], one["stop"], one["step"])
        assert r["flops"] == pytest.approx(one["flops"], rel=1e-6)


class _LrRecorder(pl.Callback):
    """Records the learning rate each optimizer step actually used, and the one seen at the batch start (where
    Lightning's LearningRateMonitor reads it)."""

    def __init__(self):
        self.lrs, self.at_start = {}, {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.at_start[trainer.global_step] = trainer.optimizers[0].param_groups[0]["lr"]

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.lrs[trainer.global_step] = optimizer.param_groups[0]["lr"]


class _Scheduled(CurveRegressor):
    """A step-interval scheduler that sets the base LR after every optimizer step: the cool-down must win."""

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=self.lr)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: 1.0), "interval": "step"}}


def test_cooldown_hands_over_to_a_linear_decay_then_stops(tmp_path, capsys):
    ref = ExtraEarlyStopping(calibration=False, verbose=False)
    fit_curve(tmp_path / "ref", [ref], module=_Scheduled())
    stop, lrs = ExtraEarlyStopping(calibration=False, cooldown_steps=40), _LrRecorder()
    trainer = fit_curve(tmp_path / "cool", [stop, lrs], module=_Scheduled())
    start = stop.cooldown_start
    assert start == ref.stopped_step  # the same decision, taken at the same step
    assert stop.stopped_step == trainer.global_step == start + 40
    base = lrs.lrs[start - 1]
    for k in (0, 10, 20, 39):
        assert lrs.lrs[start + k] == pytest.approx(base * (1 - k / 40))
    assert lrs.at_start == lrs.lrs  # set before the step: what the step uses is what a monitor sees during it
    assert ref.on_train_batch_start is None and callable(stop.on_train_batch_start)  # dispatched only to cool down
    assert set(lrs.at_start) >= set(range(start, start + 40))
    assert stop.lr_sum == pytest.approx(sum(lrs.lrs[s] for s in sorted(lrs.lrs)), rel=1e-12)  # the decay counted
    out = capsys.readouterr().out
    assert "cooling the learning rate down" in out and "cool-down of 40 steps done" in out
    state = stop.state_dict()
    torch.save(state, tmp_path / "state.pt")
    again = ExtraEarlyStopping(calibration=False, cooldown_steps=40)
    assert again.on_train_batch_start is None  # no cool-down yet: not dispatched
    again.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    assert again.cooldown_start == start and again._cooldown_lrs == stop._cooldown_lrs
    assert callable(again.on_train_batch_start)  # a resume inside a cool-down sets the LR again


def test_cooldown_and_family_arguments_are_checked():
    with pytest.raises(ValueError, match="cooldown_steps"):
        ExtraEarlyStopping(calibration=False, cooldown_steps=-1)
    with pytest.raises(ValueError, match="family"):
        ExtraEarlyStopping(calibration=False, config={"family": "cubic"})
    with pytest.raises(ValueError, match="window was removed"):
        ExtraEarlyStopping(calibration=False, window=1.0)


class _DecayingRegressor(CurveRegressor):
    """A learning rate that falls every optimizer step (0.05 x 0.9^k), so an offset of one step shows."""

    def configure_optimizers(self):
        optimizer = super().configure_optimizers()
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: 0.9 ** k)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


class _LrSumAtValidation(pl.Callback):
    def __init__(self, stop):
        self.stop, self.at = stop, {}

    def on_validation_end(self, trainer, pl_module):
        self.at[trainer.global_step] = self.stop.lr_sum


def test_lr_sum_is_the_lr_each_step_used_once_per_step_and_across_a_resume(tmp_path):
    """After step k, lr_sum = lr_1 + ... + lr_k, the LRs the steps used (what replay(lr=...) sums), with
    gradient accumulation (one LR per optimizer step, not per micro-batch) and across a resume."""
    def run(root, max_steps, ckpt=None):
        stop = ExtraEarlyStopping(calibration=False, verbose=False, strict=False, time_axis="lr_sum")
        lrs, at = _LrRecorder(), _LrSumAtValidation(stop)
        trainer = make_trainer(root, [stop, lrs, at], max_steps=max_steps, accumulate_grad_batches=2,
                               val_check_interval=6, check_val_every_n_epoch=None, limit_val_batches=1)
        trainer.fit(_DecayingRegressor(), loader(regression_data(64)), loader(regression_data(16, seed=1)),
                    ckpt_path=ckpt)
        return trainer, stop, lrs, at.at

    _, whole, lrs, at = run(tmp_path / "whole", 21)
    assert sorted(lrs.lrs) == list(range(21))  # once per optimizer step
    assert lrs.lrs[0] == pytest.approx(0.05) and lrs.lrs[20] == pytest.approx(0.05 * 0.9 ** 20)
    assert len(at) >= 3
    for step, lr_sum in at.items():  # lrs.lrs[i] is the LR of step i+1: replay(lr=...)'s cumulative[step - 1]
        assert lr_sum == pytest.approx(sum(lrs.lrs[i] for i in range(step)), rel=1e-12)
    assert whole.lr_sum == pytest.approx(sum(lrs.lrs.values()), rel=1e-12)
    trainer, first, _, _ = run(tmp_path / "a", 9)
    ckpt = tmp_path / "a" / "mid.ckpt"
    trainer.save_checkpoint(ckpt)
    _, resumed, _, _ = run(tmp_path / "a", 21, ckpt)
    assert resumed.lr_sum == pytest.approx(whole.lr_sum, rel=1e-12)  # the first step after the resume counted


class _TwoOptimizers(Regressor):
    """Manual optimization with two optimizers (a GAN's pattern): only the first one's LR is the time axis."""

    def __init__(self):
        super().__init__()
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        x, y = batch
        for opt in self.optimizers():
            opt.zero_grad()
            self.manual_backward(torch.nn.functional.mse_loss(self.net(x), y))
            opt.step()

    def configure_optimizers(self):
        return [torch.optim.SGD(self.net[0].parameters(), lr=0.1), torch.optim.SGD(self.net[2].parameters(), lr=0.2)]


def test_lr_sum_follows_the_first_optimizer_only_and_is_not_kept_after_the_fit(tmp_path):
    stop = ExtraEarlyStopping(calibration=False, verbose=False, strict=False)
    make_trainer(tmp_path, [stop], max_steps=10).fit(_TwoOptimizers(), loader(regression_data(64)))
    assert stop.lr_sum == pytest.approx(5 * 0.1)  # 5 batches, each one step of each optimizer (global_step 10)
    assert stop._lr_optimizer is None  # no reference to the optimizer (and its state) beyond the fit


def test_data_limit_gap_with_a_law_of_n_and_d_floors_at_this_models_limit(tmp_path, capsys):
    """An OverfittingLaw ([K] eq 1.5) or ChinchillaLaw: the floor is L(N, D_seen) at this model's N."""
    from lightning_scaling import ChinchillaLaw, OverfittingLaw
    from models import TinyLM, TokenData

    law = OverfittingLaw(n_c=1e4, d_c=50.0, alpha_n=0.3, alpha_d=0.3)
    model = TinyLM()
    n = sum(p.numel() for p in model.parameters())
    gap = DataLimitGap(law)
    trainer = make_trainer(tmp_path, [EffectiveEpochs(tokens_per_example=16), gap], max_steps=8,
                           val_check_interval=4)
    trainer.fit(model, loader(TokenData(32)), loader(TokenData(16, seed=1)))
    seen = 32 * 16  # two epochs of 32 examples of 16 tokens: all of D seen
    assert gap.data_floor(trainer) == pytest.approx(law(n, seen))  # at the module's own parameter count
    assert f"L(N, D_seen) at N = {n:,}" in capsys.readouterr().out
    # an explicit N, a ChinchillaLaw, a JSON path, and the errors
    assert DataLimitGap(law, n_params=1000).law(seen) == pytest.approx(law(1000, seen))
    chin = DataLimitGap(ChinchillaLaw(E=1.0, A=400.0, B=400.0, alpha=0.34, beta=0.28), n_params=1000)
    assert chin.law(seen) == pytest.approx(1.0 + 400 / 1000 ** 0.34 + 400 / seen ** 0.28)
    path = tmp_path / "lnd.json"
    law.to_json(path)
    assert DataLimitGap(str(path), n_params=1000).law(seen) == pytest.approx(law(1000, seen))
    with pytest.raises(ValueError, match="n_params"):
        DataLimitGap(PowerLaw(2.0, 0.5, 0.9, unit="tokens"), n_params=1000)
    with pytest.raises(ValueError, match="n_params"):
        DataLimitGap(law, n_params=-5)
