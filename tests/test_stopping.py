import functools
import math

import numpy as np
import pytest

from lightning_scaling import StoppingRule, replay
from lightning_scaling.planning import stopping_factor

# the point rule (calibration=False): these tests exercise the rule's mechanics on curves whose stop is known;
# the calibrated default and its stop are tested in test_calibration.py
replay = functools.partial(replay, calibration=False)


def curve(steps, conv=2.0, t_c=300.0, alpha=0.5, noise=0.0, seed=0):
    steps = np.asarray(steps, dtype=float)
    loss = conv + (t_c / steps) ** alpha
    return loss * np.exp(np.random.default_rng(seed).normal(0, noise, steps.size)) if noise else loss


STEPS = np.arange(100, 40001, 100)


def test_default_threshold_is_kaplan_b5():
    assert StoppingRule().threshold == pytest.approx(stopping_factor()) == pytest.approx(1.1)


@pytest.mark.parametrize("noise", [0.0, 0.002])
def test_replay_stops_near_1p1_times_the_converged_loss(noise):
    losses = curve(STEPS, noise=noise)
    result = replay(STEPS, losses)
    assert result.stop_step is not None
    assert result.converged_loss == pytest.approx(2.0, rel=0.03)
    smoothed_at_stop = result.decisions[-1].smoothed_loss
    assert smoothed_at_stop / 2.0 == pytest.approx(1.1, abs=0.03)
    # (300/S)^0.5 = 0.2 at S = 7500: the rule stops about there, far before the end of the run
    assert 5000 <= result.stop_step <= 10000


def test_no_stop_on_a_curve_that_has_not_bent():
    losses = 10 * STEPS[:40] ** -0.3
    result = replay(STEPS[:40], losses)
    assert result.stop_step is None
    assert all(not d.trusted for d in result.decisions if d.converged_loss is not None)


def test_nan_points_are_skipped():
    losses = curve(STEPS).copy()
    losses[[10, 50, 90]] = [np.nan, np.inf, np.nan]
    clean = replay(np.delete(STEPS, [10, 50, 90]), np.delete(losses, [10, 50, 90]))
    dirty = replay(STEPS, losses)
    assert dirty.stop_step == clean.stop_step
    assert "non-finite" in dirty.decisions[10].reason


def test_learning_rate_axis_with_constant_lr_gives_the_same_stop():
    losses = curve(STEPS, t_c=310.0)  # (not 300: its 1.1x point falls exactly on an evaluation step)
    lr = np.full(STEPS.max(), 3e-4)
    assert replay(STEPS, losses, lr=lr).stop_step == replay(STEPS, losses).stop_step
    lr_sum = np.cumsum(lr)[STEPS - 1]
    assert replay(STEPS, losses, lr_sum=lr_sum).stop_step == replay(STEPS, losses).stop_step


def test_state_dict_round_trip_gives_identical_decisions():
    losses = curve(STEPS, noise=0.002)
    rule = StoppingRule()
    for s, l in zip(STEPS[:60], losses[:60]):
        rule.update(int(s), float(l))
    clone = StoppingRule()
    clone.load_state_dict(rule.state_dict())
    for s, l in zip(STEPS[60:120], losses[60:120]):
        a, b = rule.update(int(s), float(l)), clone.update(int(s), float(l))
        assert a == b


def test_warmup_points_are_ignored_and_the_irreducible_part_is_used():
    losses = curve(STEPS)
    losses[:4] = 50.0  # warm-up garbage
    assert replay(STEPS, losses, warmup_steps=int(STEPS[3])).stop_step == replay(STEPS[4:], losses[4:]).stop_step
    # with a known irreducible loss the rule applies to the reducible part: it stops later
    plain = replay(STEPS, curve(STEPS)).stop_step
    reducible = replay(STEPS, curve(STEPS), irreducible=1.0).stop_step
    assert reducible > plain


def test_data_limited_curve_is_reported_and_stops_only_if_asked():
    steps = STEPS[:100]
    losses = curve(steps, conv=2.0, t_c=30.0, alpha=0.5) + 1e-9 * (steps - 3000.0) ** 2  # turns up late
    losses[steps > 3000] += 0.0001 * (steps[steps > 3000] - 3000) / 25
    result = replay(steps, losses, threshold=1.01)
    assert any(d.data_limited and "data-limited" in d.reason for d in result.decisions)
    stopped = replay(steps, losses, threshold=1.01, stop_when_data_limited=True)
    assert stopped.stop_step is not None and "data-limited" in stopped.decisions[-1].reason


def test_floor_bounds_the_prediction():
    losses = curve(STEPS[:100], noise=0.003, seed=4)
    result = replay(STEPS[:100], losses, floor=2.05)
    assert all(d.converged_loss is None or d.converged_loss >= 2.05 - 1e-9 for d in result.decisions)


@pytest.mark.parametrize("kwargs", [dict(threshold=0.9), dict(threshold=float("nan")), dict(min_points=2),
                                    dict(smoothing=1.0), dict(irreducible=-1), dict(stable_fits=0),
                                    dict(floor_weight=-0.1), dict(stop_at="soon"), dict(family="magic"),
                                    dict(floor_kind="bound")])
def test_bad_options_raise(kwargs):
    with pytest.raises(ValueError):
        StoppingRule(**kwargs)


def test_replay_checks_its_inputs():
    with pytest.raises(ValueError, match="same length"):
        replay([1, 2], [1.0])
    with pytest.raises(ValueError, match="one learning rate per"):
        replay([10, 20], [1.0, 0.9], lr=[0.1] * 5)


def test_a_data_floor_above_the_fit_is_a_trusted_prediction():
    """Data-limited: the fit wants to go below L(D_seen); the floor then is the prediction and the rule stops."""
    losses = curve(STEPS, conv=1.0, t_c=300.0, alpha=0.5)
    free = replay(STEPS, losses, family="power")
    floored = replay(STEPS, losses, floor=1.5, family="power")
    assert floored.stop_step is not None and floored.converged_loss == pytest.approx(1.5, rel=1e-4)
    assert any("data floor" in d.reason for d in floored.decisions)
    assert floored.stop_step < (free.stop_step or STEPS.max() + 1)
    assert floored.decisions[-1].smoothed_loss <= 1.1 * 1.5 + 1e-9
    # the default averages in the saturating family, which may sit above the floor: never below it
    averaged = replay(STEPS, losses, floor=1.5)
    assert averaged.stop_step is not None and averaged.converged_loss >= 1.5
    assert averaged.decisions[averaged.stop_index].smoothed_loss <= 1.1 * averaged.converged_loss + 1e-9


def test_warm_started_fits_give_the_cold_fits_predictions():
    """The rule starts each fit from its previous optimum (fast); the predictions equal fits from scratch."""
    from lightning_scaling.curve_families import predict_converged

    losses = curve(STEPS[:80], noise=0.002, seed=3)
    rule = StoppingRule()
    compared = 0
    for i, (s, l) in enumerate(zip(STEPS[:80], losses)):
        d = rule.update(int(s), float(l))
        if d.converged_loss is None or i < 10:
            continue
        cold = predict_converged(STEPS[: i + 1], losses[: i + 1], min_points=rule.min_points)
        assert rule.warm_start.keys() == {"power", "exponential"}
        assert d.converged_loss == pytest.approx(cold.converged_loss, rel=1e-5)
        assert d.trusted == cold.trusted
        compared += 1
    assert compared > 50


def test_stop_at_nearest_lands_on_the_threshold_and_below_lands_past_it():
    # coarse evaluations: one evaluation's fall near the stop is several % of the loss, so the first evaluation
    # at or below the stop loss overshoots the threshold by half a fall on average; "nearest" stops at the
    # evaluation nearest the crossing (sometimes one earlier), which centres the stop on 1.1x
    steps = np.arange(100, 40001, 400)
    off_below, off_nearest, earlier = [], [], 0
    for t_c in np.linspace(250, 400, 16):
        losses = curve(steps, t_c=t_c)
        below, nearest = replay(steps, losses, stop_at="below"), replay(steps, losses)
        assert below.stop_index is not None and nearest.stop_index in (below.stop_index - 1, below.stop_index)
        earlier += nearest.stop_index == below.stop_index - 1
        d_below, d_nearest = below.decisions[-1], nearest.decisions[-1]
        assert d_below.smoothed_loss <= d_below.stop_loss  # "below": at or past the stop loss
        off_below.append(d_below.smoothed_loss / 2.0 - 1.1)
        off_nearest.append(d_nearest.smoothed_loss / 2.0 - 1.1)
    assert 0 < earlier < 16
    assert np.mean(np.abs(off_nearest)) < np.mean(np.abs(off_below))
    assert abs(np.mean(off_nearest)) < abs(np.mean(off_below))


def test_the_callback_passes_stop_at_to_the_rule_and_checks_it():
    from lightning_scaling import ExtraEarlyStopping

    assert ExtraEarlyStopping().rule.stop_at == "nearest"
    assert ExtraEarlyStopping(stop_at="below").rule.stop_at == "below"
    with pytest.raises(ValueError, match="stop_at"):
        ExtraEarlyStopping(stop_at="later")


def test_auto_family_fits_the_power_law_to_a_models_own_floor_and_averages_under_ld():
    """family="auto" (the default): with floor_kind="model" (L(N, D), this model's own limit) the power law alone,
    otherwise the average of both families (stopping.rule_family; BENCHMARKS.md measures both choices)."""
    assert StoppingRule().family == "auto" and StoppingRule().fitted_family == "average"
    assert StoppingRule(floor_kind="model").fitted_family == "power"
    assert StoppingRule(family="exponential", floor_kind="model").fitted_family == "exponential"  # a named family
    losses = curve(STEPS, conv=1.0, t_c=300.0, alpha=0.5, noise=0.002, seed=3)

    def decisions(**options):
        return [(d.step, d.converged_loss, d.should_stop) for d in replay(STEPS, losses, floor=1.5, **options).decisions]

    assert decisions(floor_kind="model") == decisions(family="power")
    assert decisions() == decisions(family="average") == decisions(floor_kind="data")
    assert decisions(floor_kind="model") != decisions()
    assert replay(STEPS, losses, floor=1.5, floor_kind="model").family == "power"
    # points given no floor (DataLimitGap could not count the data) are fitted as without L(N, D): the average
    unfloored = replay(STEPS, losses, floor_kind="model")
    assert unfloored.family == "average" and unfloored.stop_step == replay(STEPS, losses).stop_step
