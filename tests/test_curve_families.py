"""Curve families and the model-averaged prediction of the converged loss (lightning_scaling.curve_families)."""

import numpy as np
import pytest

from lightning_scaling import FitError
from lightning_scaling.curve_families import fit_exponential_curve, predict_converged

T = np.arange(100.0, 2001.0, 50.0)
POWER = 1.5 + (300.0 / T) ** 0.6  # [K] eq 5.6 at fixed N
SATURATING = 1.2 + 1.5 * np.exp(-2.5 * T / T[-1])  # a run whose repeated data runs out


def test_exponential_family_recovers_its_limit_with_an_interval():
    fit = fit_exponential_curve(T, SATURATING * (1 + 0.002 * np.sin(T)))
    assert fit.trusted and fit.converged_loss == pytest.approx(1.2, rel=0.01)
    assert fit.interval[0] <= fit.converged_loss <= fit.interval[1]
    assert fit.curve(T[-1]) == pytest.approx(SATURATING[-1], rel=0.01)


@pytest.mark.parametrize("curve, family, limit", [(POWER, "power", 1.5), (SATURATING, "exponential", 1.2)])
def test_average_weighs_the_family_that_describes_the_points(curve, family, limit):
    p = predict_converged(T, curve, family="average")
    assert p.weights[family] > 0.9 and p.trusted
    assert p.converged_loss == pytest.approx(limit, rel=0.01)
    assert p(T[10]) == pytest.approx(curve[10], rel=0.01)  # the prediction is callable: the weighted curve
    t_half = p.inverse(limit + 0.5 * (curve[-1] - limit))
    assert t_half > T[-1] and p(t_half) == pytest.approx(limit + 0.5 * (curve[-1] - limit), rel=1e-6)
    assert p.inverse(limit * 0.99) is None  # never reached


def test_window_fits_only_the_recent_points():
    # an early transient that is not part of the law: the window leaves it out
    curve = POWER.copy()
    curve[:5] += 0.5
    whole = predict_converged(T, curve, family="power")
    recent = predict_converged(T, curve, family="power", window=0.3)
    assert recent.n_points == np.count_nonzero(T >= 0.3 * T[-1]) < whole.n_points
    assert abs(recent.converged_loss - 1.5) < abs(whole.converged_loss - 1.5)
    assert recent.converged_loss == pytest.approx(1.5, rel=0.02)


def test_floor_bounds_the_prediction_and_bad_input_is_refused():
    p = predict_converged(T, POWER, family="exponential", irreducible=1.6)
    assert p.converged_loss >= 1.6
    with pytest.raises(ValueError, match="family"):
        predict_converged(T, POWER, family="spline")
    with pytest.raises(ValueError, match="window"):
        predict_converged(T, POWER, window=1.5)
    with pytest.raises(FitError):
        predict_converged(T[:3], POWER[:3], min_points=3)
    with pytest.raises(FitError):
        fit_exponential_curve(T, POWER, irreducible=10.0)
