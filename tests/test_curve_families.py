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
def test_bic_average_weighs_the_family_that_describes_the_points(curve, family, limit):
    p = predict_converged(T, curve, family="average", weighting="bic")
    assert p.weights[family] > 0.9
    # a power law that has not bent (limit at 0, no known floor) leaves the limit open: the saturating fit
    # alone is not trusted to claim it
    assert p.trusted == (family == "power")
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
    with pytest.raises(ValueError, match="weighting"):
        predict_converged(T, SATURATING, family="average", weighting="aic")


def test_floor_weight_lowers_the_share_of_a_family_held_at_the_floor():
    # the floor (1.1) bounds every model; this run converges above it (1.2), which only the exponential sees
    kw = dict(irreducible=1.1, known_floor=True)
    half = predict_converged(T, SATURATING, floor_weight=0.5, **kw)
    assert half.trusted and half.held_at_floor
    assert half.weights == pytest.approx({"power": 1 / 3, "exponential": 2 / 3})
    exp = predict_converged(T, SATURATING, family="exponential", **kw).converged_loss
    assert half.converged_loss == pytest.approx((0.5 * 1.1 + exp) / 1.5)
    # nothing changes where no family is held at the floor, or where every trusted family is
    assert predict_converged(T, POWER, floor_weight=0.5).converged_loss == predict_converged(T, POWER).converged_loss
    both = predict_converged(T, SATURATING, irreducible=1.25, known_floor=True, floor_weight=0.5)
    assert both.converged_loss == pytest.approx(1.25, rel=1e-4)
    with pytest.raises(ValueError, match="floor_weight"):
        predict_converged(T, SATURATING, floor_weight=1.5)
