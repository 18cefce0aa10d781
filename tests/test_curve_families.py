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
def test_each_family_recovers_the_limit_of_the_curve_it_describes(curve, family, limit):
    p = predict_converged(T, curve, family=family)
    assert p.trusted and p.weights == {family: 1.0}
    assert p.converged_loss == pytest.approx(limit, rel=0.01)
    assert p(T[10]) == pytest.approx(curve[10], rel=0.01)  # the prediction is callable: the fitted curve
    t_half = p.inverse(limit + 0.5 * (curve[-1] - limit))
    assert t_half > T[-1] and p(t_half) == pytest.approx(limit + 0.5 * (curve[-1] - limit), rel=1e-6)
    assert p.inverse(limit * 0.99) is None  # never reached


def test_an_unbent_power_law_leaves_the_limit_open_in_the_average():
    # without a known floor, the saturating fit alone is not trusted to claim the limit of a curve whose power
    # law has not bent
    p = predict_converged(T, SATURATING, family="average")
    assert not p.trusted and "power" in p.reason


def test_floor_bounds_the_prediction_and_bad_input_is_refused():
    p = predict_converged(T, POWER, family="exponential", irreducible=1.6)
    assert p.converged_loss >= 1.6
    with pytest.raises(ValueError, match="family"):
        predict_converged(T, POWER, family="spline")
    with pytest.raises(FitError):
        predict_converged(T[:3], POWER[:3])
    with pytest.raises(FitError):
        fit_exponential_curve(T, POWER, irreducible=10.0)


def test_equal_average_is_the_mean_of_the_trusted_families():
    # with a known floor (L(D) of the data seen) the power law that runs on below it is held there, trusted
    kw = dict(irreducible=1.1, known_floor=True)
    p = predict_converged(T, SATURATING, family="average", **kw)
    one = {f: predict_converged(T, SATURATING, family=f, **kw) for f in ("power", "exponential")}
    assert one["power"].held_at_floor and one["power"].converged_loss == pytest.approx(1.1)
    assert one["exponential"].trusted and one["exponential"].converged_loss == pytest.approx(1.2, rel=0.01)
    assert p.trusted and p.weights == {"power": 0.5, "exponential": 0.5}
    assert p.converged_loss == pytest.approx((one["power"].converged_loss + one["exponential"].converged_loss) / 2)
    # on a clean power law the exponential family flattens at the last point (untrusted) and drops out
    clean = predict_converged(T, POWER, family="average")
    assert clean.weights["exponential"] == 0.0 and clean.converged_loss == pytest.approx(1.5, rel=0.01)
