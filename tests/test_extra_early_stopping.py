"""ExtraEarlyStopping in real Trainer runs: the stop on a known curve and its replay, resume, strict, a NaN loss
skipped, its arguments (the removed ones refused), the cool-down and the lr_sum time axis.

(The rule itself is tested in test_stopping.py, the calibrated default in test_calibration.py; the callbacks
together, under DDP and from a LightningCLI config, in test_callbacks_together.py.)
"""

import csv
import inspect
import math
import warnings
import functools

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger

from lightning_scaling import DataLimitGap, EffectiveEpochs, ExtraEarlyStopping, FlopCounter, replay
from lightning_scaling.unified import DataLimitGap as UnifiedDataLimitGap
from lightning_scaling.unified import ExtraEarlyStopping as UnifiedExtraEarlyStopping
from models import CurveRegressor, Regressor, loader, make_trainer, regression_data

# the point rule (calibration=False): these tests exercise the rule's mechanics on curves whose stop is known;
# the calibrated default and its stop are tested in test_calibration.py
replay = functools.partial(replay, calibration=False)


def test_stops_near_the_known_point_and_replay_agrees(tmp_path, capsys, fit_curve):
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
    assert replayed.stopped_step == stop.stopped_step
    assert replayed.converged_loss == pytest.approx(stop.decision.converged_loss, rel=1e-9)
    tags = {k for r in rows for k, v in r.items() if v}
    for tag in ("scaling/converged_loss", "scaling/converged_loss_low", "scaling/converged_loss_high",
                "scaling/stop_loss", "scaling/predicted_stop_step", "scaling/progress", "scaling/lr_sum"):
        assert tag in tags


def test_resume_reaches_the_same_stop_step(tmp_path, fit_curve):
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


def test_a_nan_loss_is_skipped_with_one_warning_and_training_goes_on(tmp_path):
    skip = ExtraEarlyStopping(calibration=False, verbose=False)
    trainer = make_trainer(tmp_path, [skip], max_steps=200, val_check_interval=16, check_val_every_n_epoch=None,
                           limit_val_batches=1)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        trainer.fit(CurveRegressor(nan_at=(64, 128)), loader(regression_data(64)), loader(regression_data(16)))
    nan = [str(w.message) for w in record if "not finite" in str(w.message)]
    assert len(nan) == 1 and "step 64" in nan[0] and "EarlyStopping(monitor='val_loss', check_finite=True)" in nan[0]
    assert trainer.global_step == 200 and skip.stopped_step is None
    assert 64 not in skip.rule.steps and 128 not in skip.rule.steps and 80 in skip.rule.steps


#: ExtraEarlyStopping's keyword arguments, in order (and ``**misplaced``, which refuses the rest by name).
EXTRA_EARLY_STOPPING_ARGUMENTS = ["monitor", "threshold", "confidence", "calibration", "warmup_steps", "time_axis",
                                  "use_data_floor", "stop_when_data_limited", "cooldown_steps", "strict", "verbose",
                                  "config", "sweep"]
DATA_LIMIT_GAP_ARGUMENTS = ["law", "monitor", "tolerance", "n_params", "sweep"]


@pytest.mark.parametrize("cls, names", [(ExtraEarlyStopping, EXTRA_EARLY_STOPPING_ARGUMENTS),
                                        (UnifiedExtraEarlyStopping, EXTRA_EARLY_STOPPING_ARGUMENTS),
                                        (DataLimitGap, DATA_LIMIT_GAP_ARGUMENTS),
                                        (UnifiedDataLimitGap, DATA_LIMIT_GAP_ARGUMENTS)])
def test_the_signature_holds_exactly_these_arguments(cls, names):
    params = inspect.signature(cls).parameters.values()
    assert [p.name for p in params if p.kind is not p.VAR_KEYWORD] == names
    assert [p.kind for p in params if p.kind is p.VAR_KEYWORD] == [inspect.Parameter.VAR_KEYWORD]


@pytest.mark.parametrize("make", [lambda **kw: ExtraEarlyStopping(calibration=False, **kw),
                                  lambda **kw: UnifiedExtraEarlyStopping(calibration=False, **kw),
                                  lambda **kw: DataLimitGap("kaplan2020_ld", **kw),
                                  lambda **kw: UnifiedDataLimitGap("kaplan2020_ld", **kw)])
@pytest.mark.parametrize("value", [True, False, 0.0])
def test_a_removed_argument_raises_saying_what_to_do_instead(make, value):
    with pytest.raises(ValueError, match=r"figure_interval was removed: .*FIGURE_INTERVAL_S"):
        make(figure_interval=value)
    with pytest.raises(TypeError, match="unexpected keyword argument 'no_such_argument'"):
        make(no_such_argument=value)


@pytest.mark.parametrize("cls", [DataLimitGap, UnifiedDataLimitGap])
def test_figure_interval_given_by_position_says_to_name_the_arguments(cls):
    with pytest.raises(ValueError, match="fourth positional argument was figure_interval"):
        cls("kaplan2020_ld", "val_loss", 0.02, 60.0)


@pytest.mark.parametrize("cls", [ExtraEarlyStopping, UnifiedExtraEarlyStopping])
def test_check_finite_raises_saying_to_add_lightnings_early_stopping(cls):
    with pytest.raises(ValueError, match=r"check_finite was removed: a non-finite monitored loss is skipped with one "
                                         r"warning.*EarlyStopping\(monitor=\.\.\., check_finite=True\)"):
        cls(calibration=False, check_finite=True)
    with pytest.raises(ValueError, match="min_points is a StopConfig field"):  # the rule's own refusals stay
        cls(calibration=False, min_points=8)


@pytest.mark.parametrize("kwargs", [dict(monitor=""), dict(time_axis="epochs"), dict(threshold=0.5),
                                    dict(config={"min_points": 1}), dict(confidence=0.0)])
def test_bad_arguments_raise_at_construction(kwargs):
    with pytest.raises(ValueError):
        ExtraEarlyStopping(calibration=False, **kwargs)


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


def test_cooldown_hands_over_to_a_linear_decay_then_stops(tmp_path, capsys, fit_curve):
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


def test_a_cooldown_not_begun_says_why(tmp_path, capsys, fit_curve):
    stop = ExtraEarlyStopping(calibration=False, cooldown_steps=40)
    fit_curve(tmp_path, [stop], module=_Scheduled(), max_steps=320)
    out = capsys.readouterr().out
    assert stop.cooldown_start is None and stop.stopped_step is None
    assert "no cool-down begun: " in out and "training ended at step 320" in out


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


def _warmup_cosine(optimizer, total=480, warmup=40):
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))


def _wsd(optimizer, total=480, warmup=40, decay=120):
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [
        torch.optim.lr_scheduler.LinearLR(optimizer, 0.05, 1.0, total_iters=warmup),
        torch.optim.lr_scheduler.ConstantLR(optimizer, 1.0, total_iters=total - warmup - decay),
        torch.optim.lr_scheduler.LinearLR(optimizer, 1.0, 0.01, total_iters=decay)], [warmup, total - decay])


@pytest.mark.parametrize("make_schedule", [_warmup_cosine, _wsd], ids=["warmup_cosine", "wsd"])
def test_the_schedule_forecast_reads_the_plan_the_run_then_follows_and_replays(tmp_path, capsys, make_schedule):
    """The forecast of the loss at the planned end: the plan read from the scheduler is the LR the run then uses,
    it is logged at each validation, and the command line's forecast from the logs reaches the live one."""
    import json

    from lightning_scaling import StopConfig
    from lightning_scaling.cli import main

    class Module(CurveRegressor):
        def configure_optimizers(self):
            optimizer = torch.optim.SGD(self.parameters(), lr=0.05)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": make_schedule(optimizer), "interval": "step"}}

    class Snapshot(pl.Callback):  # the live forecast at one validation
        def __init__(self, stop, at):
            self.stop, self.at, self.seen = stop, at, None

        def on_validation_end(self, trainer, pl_module):
            if trainer.global_step == self.at:
                self.seen = self.stop.forecast

    # a rule that never stops (stable_fits unreachable): the run follows its whole plan
    stop = ExtraEarlyStopping(calibration=False, verbose=False, config=StopConfig(stable_fits=10 ** 6))
    lrs, snap = _LrRecorder(), Snapshot(stop, 240)
    logger = CSVLogger(tmp_path, name="run")
    make_trainer(tmp_path, [stop, lrs, snap], logger=logger, max_steps=480, val_check_interval=16,
                 check_val_every_n_epoch=None, limit_val_batches=1).fit(
        Module(), loader(regression_data(64)), loader(regression_data(16, seed=1)))
    start, plan = stop._plan
    assert plan.size == 480 - start
    assert plan.tolist() == pytest.approx([lrs.lrs[start + j] for j in range(plan.size)], rel=1e-12)
    live = snap.seen
    assert live is not None and live.trusted and live.final_step == 480 and live.step == 240
    rows = list(csv.DictReader((tmp_path / "run" / "version_0" / "metrics.csv").open()))
    logged = {int(r["step"]): float(r["scaling/forecast_final_loss"]) for r in rows
              if r.get("scaling/forecast_final_loss")}
    assert logged[240] == pytest.approx(live.final_loss, rel=1e-6)
    assert main(["forecast", logger.log_dir, "--at", "240", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    # the replay sees the future schedule as the mean LR between validations, the live rule the exact plan
    assert row["at_step"] == 240 and row["trusted"]
    assert row["forecast_final_loss"] == pytest.approx(live.final_loss, rel=2e-3)


def test_a_plan_that_cannot_be_read_is_said_once_and_forecast_at_a_constant_lr(tmp_path):
    from lightning_scaling import StopConfig

    class EpochScheduled(CurveRegressor):
        def configure_optimizers(self):
            optimizer = torch.optim.SGD(self.parameters(), lr=0.05)
            schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda e: 0.5 ** e)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "epoch"}}

    stop = ExtraEarlyStopping(calibration=False, verbose=False, config=StopConfig(stable_fits=10 ** 6))
    with pytest.warns(UserWarning, match="planned LR cannot be read") as record:
        make_trainer(tmp_path, [stop], max_steps=160, val_check_interval=16, check_val_every_n_epoch=None,
                     limit_val_batches=1).fit(EpochScheduled(), loader(regression_data(64)),
                                              loader(regression_data(16, seed=1)))
    assert sum("planned LR cannot be read" in str(w.message) for w in record) == 1
    start, plan = stop._plan
    assert plan.size == 160 - start and len(set(plan.tolist())) == 1  # the LR then, held
    assert stop.forecast is not None and stop.forecast.final_step == 160
    # a module without a scheduler: a constant LR, no warning; the converged-loss prediction is the forecast, and
    # the summary says why there is no schedule forecast
    plain = ExtraEarlyStopping(calibration=False, verbose=False, config=StopConfig(stable_fits=10 ** 6))
    trainer = make_trainer(tmp_path / "plain", [plain], max_steps=160, val_check_interval=16,
                           check_val_every_n_epoch=None, limit_val_batches=1)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*planned LR.*")
        trainer.fit(CurveRegressor(), loader(regression_data(64)), loader(regression_data(16, seed=1)))
    assert plain._plan[1].tolist() == [0.05] * (160 - plain._plan[0])
    assert plain.forecast is None and "the LR is constant" in plain.summary(trainer, "", stopped=False)


def test_the_run_info_reader_drops_exactly_the_removed_arguments():
    from lightning_scaling import run_info
    from lightning_scaling.callbacks import _common

    assert set(run_info.REMOVED_KEYS) == set(_common.REMOVED_ARGUMENTS)
