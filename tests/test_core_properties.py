"""Property tests of the pure core: for any finite sequence of points the rule, the replay and every fit return a
result; the only exception any of them raises is a documented ValueError (FitError is one) for bad input."""

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lightning_scaling import StopConfig, StoppingRule, StopReason, forecast, replay
from lightning_scaling.curve_families import (fit_effective_data_curve, fit_exponential_curve, predict_converged)
from lightning_scaling.errors import FitError
from lightning_scaling.stopping import STOP_CODES, rule_arguments
from lightning_scaling.fitting import fit_chinchilla, fit_learning_curve, fit_overfitting_law, fit_power_law

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# the reproducer of the crash on a plateau: a noisy plateau after warm-up, with and without a floor
PLATEAU = [5.001257, 4.998679, 5.006404, 5.001049, 4.994643, 5.003616]


@st.composite
def curves(draw, min_size=6, max_size=30):
    """A learning curve of any shape: plateau, noise, decay, spikes, turn-ups; tiny to huge scales; steps of 1."""
    n = draw(st.integers(min_size, max_size))
    shape = draw(st.sampled_from(["plateau", "decay", "spiky", "turnup", "random", "constant"]))
    scale = draw(st.sampled_from([1e-6, 1e-3, 1.0, 5.0, 1e3, 1e6]))
    noise = draw(st.sampled_from([0.0, 1e-6, 1e-3, 1e-2, 0.1]))
    stride = draw(st.sampled_from([1, 2, 25, 1000]))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    t = np.arange(1, n + 1, dtype=float) * stride
    base = {"plateau": np.ones(n), "constant": np.ones(n), "decay": 1 + (t / t[0]) ** -0.5,
            "spiky": 1 + np.where(rng.random(n) < 0.2, 3.0, 0.0), "turnup": 1 + (t / t[0]) ** -0.5 + 0.01 * t / t[-1],
            "random": rng.uniform(0.5, 2.0, n)}[shape]
    loss = scale * base * (1 + (0 if shape == "constant" else noise) * rng.standard_normal(n))
    loss = np.abs(loss) + 1e-12 * scale
    steps = [int(s) for s in t]
    return steps, [float(v) for v in loss]


def _floor(draw_value, losses):
    return None if draw_value is None else draw_value * min(losses)


def test_the_reproducer_returns_decisions():
    for floor in (None, 4.827447):
        out = replay(list(range(10, 70, 10)), PLATEAU, floor=floor)
        assert out.stopped_step is None and len(out.decisions) == 6
        assert all(isinstance(d.reason, str) and d.reason for d in out.decisions)


@SETTINGS
@given(curves(), st.sampled_from([None, 0.5, 0.9, 0.99, 0.999999]),
       st.sampled_from(["auto", "power", "exponential", "average"]), st.booleans(), st.booleans(),
       st.sampled_from([0, 3]))
def test_rule_and_replay_never_raise(curve, floor_frac, family, lr_axis, model_floor, patience):
    steps, losses = curve
    floor = _floor(floor_frac, losses)
    lr_sum = list(np.cumsum(np.full(max(steps), 1e-3))[np.array(steps) - 1]) if lr_axis else None
    out = replay(steps, losses, lr_sum=lr_sum, floor=floor, floor_kind="model" if model_floor else "data",
                 config=StopConfig(family=family, min_points=4, fallback_patience=patience))
    assert len(out.decisions) == (out.stop_index + 1 if out.stop_index is not None else len(steps))
    for d in out.decisions:
        assert isinstance(d.reason, str) and d.reason and isinstance(d.code, StopReason)
        assert d.should_stop == (d.code in STOP_CODES)  # a data-limited loss stops by default
        if d.trusted:
            assert math.isfinite(d.converged_loss) and d.converged_loss > 0
            assert floor is None or d.converged_loss >= floor * (1 - 1e-9)
    if out.converged_loss is not None:
        assert math.isfinite(out.converged_loss)


@SETTINGS
@given(curves())
def test_rule_update_survives_non_finite_and_repeated_points(curve):
    steps, losses = curve
    rule = StoppingRule(config=StopConfig(min_points=4))
    for i, (s, v) in enumerate(zip(steps, losses)):
        value = float("nan") if i % 7 == 3 else (float("inf") if i % 11 == 5 else v)
        rule.update(s, value)
        rule.update(s, v)  # the same step again: the time axis did not advance
    assert rule.last is not None


@SETTINGS
@given(curves(), st.sampled_from([-5.0, -1.0, -1e-3, 0.0]), st.sampled_from(["constant", "cosine"]))
def test_rule_and_forecast_on_losses_at_or_below_zero_under_a_schedule(curve, shift, shape):
    """A loss that reaches 0 or below (a negative log-likelihood) under a warm-up and a schedule: the rule replays
    with a decision and a reason at every point, and the forecast (a logarithmic law) returns or refuses with the
    documented ValueError, never another exception."""
    steps, losses = curve
    losses = [v / max(losses) * 2.0 + shift for v in losses]  # the same shape, moved to end at or below 0
    total = steps[-1]
    t = np.arange(total, dtype=float)
    lr = 1e-3 * np.minimum((t + 1) / max(1, total // 10), 1.0)
    if shape == "cosine":
        lr = lr * 0.5 * (1 + np.cos(np.pi * t / total))
    out = replay(steps, losses, lr=list(lr), config=StopConfig(min_points=4))
    assert len(out.decisions) == (out.stop_index + 1 if out.stop_index is not None else len(steps))
    assert all(isinstance(d.reason, str) and d.reason and isinstance(d.code, StopReason) for d in out.decisions)
    try:
        result = forecast(steps, losses, lr=list(lr), planned_lr=list(lr) + [float(lr[-1])] * total)
    except ValueError as err:
        assert "losses must be finite and > 0" in str(err) or isinstance(err, FitError)
        return
    assert math.isfinite(result.final_loss) or not result.trusted


@SETTINGS
@given(curves(min_size=4), st.sampled_from([0.0, 0.5, 0.99]))
def test_curve_fits_return_or_raise_fit_error(curve, floor_frac):
    steps, losses = curve
    irreducible = floor_frac * min(losses)
    fits = [lambda: fit_learning_curve(steps, losses, irreducible=irreducible),
            lambda: fit_exponential_curve(steps, losses, irreducible=irreducible),
            lambda: fit_effective_data_curve(steps, losses, epoch_steps=max(steps) / 4, irreducible=irreducible),
            lambda: predict_converged(steps, losses, irreducible=irreducible, known_floor=floor_frac > 0)]
    for fit in fits:
        try:
            result = fit()
        except FitError:
            continue
        assert isinstance(result.reason, str)
        if result.trusted:
            assert math.isfinite(result.converged_loss)


@SETTINGS
@given(curves(min_size=4, max_size=12), st.booleans())
def test_power_law_fits_return_or_raise_fit_error(curve, irreducible):
    x, y = curve
    try:
        fit = fit_power_law(np.asarray(x, dtype=float) * 1e3, y, fit_irreducible=irreducible)
    except FitError:
        return
    assert fit.success == (fit.law is not None)
    if fit.success:
        assert all(math.isfinite(v) for v in (fit.law.scale, fit.law.exponent, fit.law.irreducible))


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**16), st.sampled_from([1e-3, 1.0, 1e3]), st.sampled_from([0.0, 0.01, 0.3]))
@example(seed=19815, scale=1000.0, noise=0.3)  # once overflowed exp() of the fitted log-coefficients
def test_laws_of_n_and_d_return_or_raise_fit_error(seed, scale, noise):
    rng = np.random.default_rng(seed)
    n = np.repeat([1e5, 1e6, 1e7], 3)
    d = np.tile([1e7, 1e8, 1e9], 3)
    loss = scale * (1.7 + 400 / n ** 0.34 + 410 / d ** 0.28) * (1 + noise * rng.standard_normal(9))
    loss = np.abs(loss) + 1e-9
    for fit in (lambda: fit_chinchilla(n, d, loss), lambda: fit_overfitting_law(n, d, loss)):
        try:
            result = fit()
        except FitError:
            continue
        assert isinstance(result.success, bool) and isinstance(result.message, str)


@pytest.mark.parametrize("bad", [dict(warmup_steps=-1), dict(threshold=0.9), dict(min_points=2), dict(smoothing=1.0),
                                 dict(family="spline"), dict(stop_at="never"), dict(turn_up=0.0)])
def test_bad_arguments_raise_value_error_that_names_the_argument(bad):
    (name,) = bad
    with pytest.raises(ValueError, match=name):
        StoppingRule(**rule_arguments(bad))
