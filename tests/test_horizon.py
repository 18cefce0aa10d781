"""forecasting.recommend_horizon and schedules.schedule_lr / fit_shape: the horizon for the next run of a fixed-horizon
schedule, and ScheduleForecaster's tags and summary line for it."""

import dataclasses
import math
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from scipy.optimize import brentq

from lightning_scaling.callbacks._schedule_forecast import ScheduleForecaster
from lightning_scaling.corpus.curves import LUO_DIR, LUO_L0, load_luo_curve
from lightning_scaling.forecasting import DEFAULT_PRIORS, _predict, forecast, recommend_horizon
from lightning_scaling.schedules import SHAPES, ScheduleShape, fit_shape, schedule_lr

TRUTH = {"L0": 3.0, "A": 20.0, "alpha": 0.5, "B": 0.1, **DEFAULT_PRIORS["mpl"].shape}
SHAPE = ScheduleShape("cosine", 500, 1e-3, 0.1)


def true_horizon(threshold, shape=SHAPE, params=TRUTH):
    """The horizon at which the law with ``params`` ends at ``threshold`` x L0, solved apart from the function."""
    def gap(t):
        n = int(round(t))
        return float(_predict("mpl", params, shape.lr(n) / shape.peak_lr, np.array([n - 1]))[0]) \
            - threshold * params["L0"]
    return brentq(gap, 1000, 10 ** 6, xtol=0.5)


@pytest.fixture(scope="module")
def half():
    """A forecast from the first half of a noise-free multi-power-law cosine run of 20000 steps."""
    lr = SHAPE.lr(20000)
    steps = np.arange(1000, 10001, 250)
    losses = _predict("mpl", TRUTH, lr / lr.max(), steps - 1)
    return forecast(steps, losses, lr=lr[:10000], planned_lr=lr[10000:])


def test_the_search_finds_the_law_s_own_horizon():
    f = dataclasses.replace(forecast_of_truth(), params=TRUTH, converged_loss=3.0)
    r = recommend_horizon(f, threshold=1.02, calibration=False)
    assert r.success and r.schedule == dataclasses.replace(SHAPE, final_lr_ratio=r.schedule.final_lr_ratio)
    assert r.horizon_steps == pytest.approx(true_horizon(1.02), rel=1.5e-3)
    assert r.ratio <= 1.02 and r.target_loss == pytest.approx(3.06)
    assert math.isnan(r.horizon_interval[0])  # no calibration, no interval


def forecast_of_truth():
    lr = SHAPE.lr(20000)
    steps = np.arange(1000, 10001, 250)
    return forecast(steps, _predict("mpl", TRUTH, lr / lr.max(), steps - 1), lr=lr[:10000], planned_lr=lr[10000:],
                    calibration=False)


def test_the_horizon_of_a_synthetic_curve_is_recovered_from_half_of_it(half):
    # the fit recovers L0 to ~0.1% on noise-free points; the horizon, set where the curve is flat, to a few %
    for threshold in (1.02, 1.05):
        r = recommend_horizon(half, threshold=threshold)
        assert r.success, r.message
        assert r.horizon_steps == pytest.approx(true_horizon(threshold), rel=0.05)
        lo, hi = r.horizon_interval
        assert lo <= r.horizon_steps <= hi
        lo_loss, hi_loss = r.final_interval
        assert lo_loss <= r.final_loss <= hi_loss


def test_a_stricter_threshold_asks_for_a_longer_run(half):
    horizons = [recommend_horizon(half, threshold=t, calibration=False).horizon_steps for t in (1.05, 1.03, 1.02)]
    assert horizons == sorted(horizons) and len(set(horizons)) == 3


def test_a_target_out_of_reach_says_so(half):
    below = recommend_horizon(half, threshold=0.9, calibration=False)  # the law ends near L0 - B, above 0.9 x L0
    assert not below and below.horizon_steps is None and "not reached within" in below.message
    capped = recommend_horizon(half, threshold=1.02, max_steps_cap=12000, calibration=False)
    assert not capped.success and "within 12000 steps" in capped.message
    far = recommend_horizon(half, threshold=0.99, max_steps_cap=10 ** 6, calibration=False)
    assert not far.success and "learning rate seen" in far.message and far.horizon_steps > 100000


def test_an_untrusted_forecast_or_an_open_l0_recommends_nothing(half):
    lr = SHAPE.lr(20000)
    few = forecast([1000, 1500, 2000], [4.0, 3.9, 3.8], lr=lr[:2000], planned_lr=lr[2000:])
    r = recommend_horizon(few)
    assert not r.success and r.horizon_steps is None and "untrusted" in r.message
    open_l0 = recommend_horizon(dataclasses.replace(half, converged_loss=0.0))
    assert not open_l0.success and "bound" in open_l0.message


def test_a_schedule_of_no_known_shape_needs_one_named(half):
    stepped = np.where(np.arange(20000) < 15000, 1e-3, 1e-4)
    f = dataclasses.replace(half, _lr=stepped[:10000], _planned=stepped[10000:])
    assert not recommend_horizon(f).success and recommend_horizon(f).schedule is None
    assert recommend_horizon(f, schedule="cosine", final_lr_ratio=0.1, warmup_steps=500, threshold=1.05).success


@pytest.mark.parametrize("kwargs, match", [({"threshold": -1.0}, "threshold"), ({"schedule": "step"}, "schedule"),
                                           ({"max_steps_cap": 0}, "max_steps_cap"),
                                           ({"converged_loss": math.nan}, "converged_loss"),
                                           ({"final_lr_ratio": 2.0}, "final_lr_ratio")])
def test_bad_arguments_raise_value_error(half, kwargs, match):
    with pytest.raises(ValueError, match=match):
        recommend_horizon(half, **kwargs)


def test_on_a_real_cosine_run_the_recommendation_is_finite_and_ordered():
    c = load_luo_curve(LUO_DIR / "csv_25" / "cosine_72000.csv")
    now = c.lr.size // 2
    seen = c.steps <= now
    f = forecast(c.steps[seen], c.val_loss[seen], lr=c.lr[:now], planned_lr=c.lr[now:])
    assert fit_shape(c.lr).shape == "cosine"
    for l0 in (None, LUO_L0["25M"]):
        loose, strict = (recommend_horizon(f, threshold=t, converged_loss=l0) for t in (1.1, 1.07))
        assert loose.success and strict.success, (loose.message, strict.message)
        assert 2160 < loose.horizon_steps < strict.horizon_steps < 10 ** 6


def test_schedule_lr_builds_each_shape_and_fit_shape_recognises_it():
    c = load_luo_curve(LUO_DIR / "csv_100" / "cosine_24000.csv")
    rebuilt = schedule_lr("cosine", 24000, warmup_steps=2160, peak_lr=3e-4, final_lr_ratio=0.1)[:c.lr.size]
    assert np.max(np.abs(rebuilt - c.lr)) < 1e-3 * 3e-4  # Luo et al.'s cosine, to its warm-up's first step
    for shape in SHAPES:
        lr = schedule_lr(shape, 5000, warmup_steps=200, peak_lr=1e-3, final_lr_ratio=0.05, decay_fraction=0.3)
        assert lr[199] == pytest.approx(1e-3) and lr[-1] == pytest.approx(5e-5, rel=0.05)
        found = fit_shape(lr)
        assert found.shape == shape and found.warmup_steps == 200
        assert np.max(np.abs(found.lr(5000) - lr)) < 1e-3 * 1e-3
    assert fit_shape(np.full(1000, 1e-3)) is None
    with pytest.raises(ValueError, match="shape"):
        schedule_lr("step", 10, warmup_steps=0, peak_lr=1.0)


def test_the_callback_logs_the_ratio_and_the_horizon_and_summarises_them():
    torch = pytest.importorskip("torch")
    lr = SHAPE.lr(20000)
    steps = np.arange(1000, 10001, 500)
    losses = _predict("mpl", TRUTH, lr / lr.max(), steps - 1)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: SHAPE.lr(20000)[min(s, 19999)] / 1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()": only its LR is read
        for _ in range(10000):
            sched.step()
    trainer = SimpleNamespace(max_steps=20000, lr_scheduler_configs=[SimpleNamespace(
        interval="step", frequency=1, scheduler=sched)], optimizers=[opt])
    rule = SimpleNamespace(steps=list(steps), losses=list(losses), lr_sums=[float(np.sum(lr[:s])) for s in steps],
                           fit_after=0, warmup_steps=None, confidence=0.8, threshold=1.05)
    said = []
    forecaster = ScheduleForecaster()
    f = forecaster.update(trainer, rule, 10000, lambda key, message: said.append(message))
    assert said == [] and f.trusted
    m = forecaster.metrics(0)
    assert m["final_over_converged"] == pytest.approx(f.final_loss / f.converged_loss)
    assert m["recommended_horizon_steps"] == forecaster.horizon.horizon_steps
    assert forecaster.horizon.horizon_steps == pytest.approx(true_horizon(1.05), rel=0.05)
    assert "recommended horizon for the next run" in forecaster.summary_line()
