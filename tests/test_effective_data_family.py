"""The opt-in effective-data curve family ([M] eq 5's D' in a log law) in the core, the rule and the callback."""

import functools
import csv
import json

import numpy as np
import pytest
import torch
from pytorch_lightning.loggers import CSVLogger

from lightning_scaling import EffectiveEpochs, ExtraEarlyStopping, StopConfig, StoppingRule, replay
from lightning_scaling.cli import main
from lightning_scaling.curve_families import EffectiveDataCurve, fit_effective_data_curve, predict_converged
from models import Regressor, loader, make_trainer, regression_data

# the point rule (calibration=False): these tests exercise the rule's mechanics on curves whose stop is known;
# the calibrated default and its stop are tested in test_calibration.py
replay = functools.partial(replay, calibration=False)

U = 200.0  # steps of one epoch
ED = StopConfig(family="effective_data")
TRUE = EffectiveDataCurve(converged_loss=1.3, amplitude=0.25, rstar=6.0, epoch_steps=U)
T = np.arange(100.0, 3001.0, 50.0)  # 0.5 to 15 epochs


def noisy(seed=0, rel=0.003):
    return TRUE(T) * (1 + rel * np.random.default_rng(seed).standard_normal(T.size))


def test_curve_is_the_log_law_in_effective_data():
    # within the first epoch z = t/U; beyond, z = D'/U of [M] eq 5; the limit t -> infinity is the converged loss
    assert TRUE(U / 2) == pytest.approx(1.3 + 0.25 * np.log(7.0 / 0.5), rel=1e-12)
    r = 5.0
    z = 1 + 6.0 * (1 - np.exp(-(r - 1) / 6.0))
    assert TRUE(r * U) == pytest.approx(1.3 + 0.25 * np.log(7.0 / z), rel=1e-12)
    assert TRUE(1e9) == pytest.approx(1.3, rel=1e-12)
    assert np.all(np.diff(TRUE(T)) < 0)


def test_fit_recovers_a_noise_free_curve():
    fit = fit_effective_data_curve(T, TRUE(T), epoch_steps=U)
    assert fit.family == "effective_data" and fit.trusted, fit.reason
    c, a, rstar = fit.params
    assert c == pytest.approx(1.3, rel=1e-6) and a == pytest.approx(0.25, rel=1e-6)
    assert rstar == pytest.approx(6.0, rel=1e-6)
    assert fit.interval[0] <= fit.converged_loss <= fit.interval[1]


def test_warm_started_fit_equals_the_cold_one():
    y = noisy()
    cold = fit_effective_data_curve(T, y, epoch_steps=U)
    earlier = fit_effective_data_curve(T[:-3], y[:-3], epoch_steps=U)  # the previous evaluations' fit
    warm = fit_effective_data_curve(T, y, epoch_steps=U, warm_start=earlier.params)
    assert warm.params == pytest.approx(cold.params, rel=1e-6)
    assert warm.interval == pytest.approx(cold.interval, rel=1e-6) and warm.trusted == cold.trusted
    assert cold.converged_loss == pytest.approx(1.3, rel=0.01)


def test_predict_converged_fits_the_family_alone():
    p = predict_converged(T, noisy(), family="effective_data", epoch_steps=U)
    assert [f.family for f in p.fits] == ["effective_data"] and p.weights == {"effective_data": 1.0}
    assert p.trusted and p.converged_loss == pytest.approx(1.3, rel=0.01)
    t_stop = p.inverse(1.1 * p.converged_loss)
    assert p(t_stop) == pytest.approx(1.1 * p.converged_loss, rel=1e-6)


def test_replay_stops_near_1_1_times_the_true_limit():
    y = noisy(seed=1)
    result = replay(T, y, config=ED, epoch_steps=U)
    assert result.stopped_step is not None
    ratio = result.decisions[result.stop_index].smoothed_loss / 1.3
    assert ratio == pytest.approx(1.1, abs=0.03)
    # one value per point (as the callback logs it) decides the same
    per_point = replay(T, y, config=ED, epoch_steps=[U] * T.size)
    assert per_point.stopped_step == result.stopped_step and per_point.converged_loss == result.converged_loss
    # a per-update value overrides the constructor's
    rule = StoppingRule(config=StopConfig(family="effective_data", epoch_steps=10 * U))
    stops = [rule.update(int(t), v, epoch_steps=U).should_stop for t, v in zip(T, y)]
    assert int(T[stops.index(True)]) == result.stopped_step


def test_errors_say_what_to_do():
    with pytest.raises(ValueError, match="needs epoch_steps"):
        predict_converged(T, noisy(), family="effective_data")
    with pytest.raises(ValueError, match="optimizer steps"):
        predict_converged(T, noisy(), family="effective_data", epoch_steps=U, time_axis="lr_sum")
    with pytest.raises(ValueError, match="needs epoch_steps"):
        replay(T, noisy(), config=ED)
    with pytest.raises(ValueError, match="time_axis='steps'"):
        replay(T, noisy(), config=ED, epoch_steps=U, lr_sum=T * 1e-3, time_axis="lr_sum")
    with pytest.raises(ValueError, match="epoch_steps must be"):
        StopConfig(family="effective_data", epoch_steps=0)
    with pytest.raises(ValueError, match="one per step"):
        replay(T, noisy(), config=ED, epoch_steps=[U, U])
    with pytest.raises(ValueError, match="time_axis='steps'"):
        ExtraEarlyStopping(calibration=False, config=ED, time_axis="lr_sum")


class EffectiveDataRegressor(Regressor):
    """Trains for real, but reports a known effective-data curve as val_loss: C = 1, A = 0.3, R* = 3, U = 8."""

    curve = EffectiveDataCurve(1.0, 0.3, 3.0, 8.0)

    def validation_step(self, batch, batch_idx):
        self.log(self.val_name, torch.tensor(self.curve(max(int(self.global_step), 1)), dtype=torch.float64))


def fit_run(tmp_path, callbacks, max_steps=400, **kw):
    """A validation every 4 steps; 64 examples in batches of 8: 8 optimizer steps per epoch."""
    trainer = make_trainer(tmp_path, callbacks, max_steps=max_steps, val_check_interval=4, check_val_every_n_epoch=None,
                           limit_val_batches=1, **kw)
    trainer.fit(EffectiveDataRegressor(), loader(regression_data(64)), loader(regression_data(16, seed=1)))
    return trainer


def test_callback_derives_the_epoch_from_effective_epochs_and_fits_the_family(tmp_path, capsys):
    stop = ExtraEarlyStopping(calibration=False, config=ED, verbose=False)
    logger = CSVLogger(tmp_path, name="run")
    trainer = fit_run(tmp_path, [EffectiveEpochs(), stop], logger=logger)
    assert stop.rule.last_fit.fits[0].family == "effective_data"
    assert stop.decision.converged_loss == pytest.approx(1.0, rel=1e-3)
    assert stop.stopped_step is not None and trainer.global_step == stop.stopped_step
    rows = list(csv.DictReader((tmp_path / "run" / "version_0" / "metrics.csv").open()))
    points = [(int(r["step"]), float(r["scaling/monitored_loss"]), float(r["scaling/epoch_steps"]))
              for r in rows if r.get("scaling/monitored_loss")]
    assert len(points) >= 6
    assert all(u == pytest.approx(64 / 8, rel=1e-12) for _, _, u in points)  # dataset size / examples per step
    # the logged inputs replay to the live decision
    replayed = replay([s for s, _, _ in points], [v for _, v, _ in points], config=ED,
                      epoch_steps=[u for _, _, u in points])
    assert replayed.stopped_step == stop.stopped_step
    # and so does the command line, which reads scaling/epoch_steps from the log (or takes --rule epoch_steps=U)
    for extra in ([], ["--rule", "epoch_steps=8"]):
        assert main(["replay", logger.log_dir, "--rule", "family=effective_data", *extra, "--json"]) == 0
        (row,) = json.loads(capsys.readouterr().out)
        assert row["stopped_step"] == stop.stopped_step


def test_callback_without_a_way_to_know_the_epoch(tmp_path):
    with pytest.raises(ValueError, match=r"pass config=StopConfig\(epoch_steps=...\) or add the EffectiveEpochs"):
        fit_run(tmp_path, [ExtraEarlyStopping(calibration=False, config=ED, verbose=False)], max_steps=16)
    lenient = ExtraEarlyStopping(calibration=False, config=ED, strict=False, verbose=False)
    with pytest.warns(UserWarning, match="needs the steps of one epoch"):
        fit_run(tmp_path, [lenient], max_steps=40)
    assert lenient.stopped_step is None and lenient.rule.steps == []
    # given explicitly, no counter is needed
    given = ExtraEarlyStopping(calibration=False, verbose=False,
                               config=StopConfig(family="effective_data", epoch_steps=8))
    fit_run(tmp_path, [given])
    assert given.stopped_step is not None and given.rule.last_fit.fits[0].family == "effective_data"
