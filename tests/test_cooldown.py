"""The WSD cool-down decision (lightning_scaling.cooldown): the rule on a multi-power-law curve whose answer is known
analytically, untrusted forecasts, bad arguments, and one recorded stable run (data/curves_cooldown)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from lightning_scaling import StoppingRule, forecast
from lightning_scaling.cooldown import CooldownDecision, cooldown_decision, first_begin, replay_cooldown
from lightning_scaling.forecasting import DEFAULT_PRIORS

DATA = Path(__file__).resolve().parent.parent / "lightning_scaling" / "data" / "curves_cooldown"
PEAK, WARMUP, H, K = 1e-3, 50, 4000, 400
L0, A, ALPHA = 2.0, 7.0, 0.5
SHAPE = DEFAULT_PRIORS["mpl"].shape
B = DEFAULT_PRIORS["mpl"].B


def _schedule() -> np.ndarray:
    """Linear warm-up, then the peak LR to H - K, then the planned linear decay to 0 over K steps."""
    lr = np.full(H, PEAK)
    lr[:WARMUP] = PEAK * np.arange(1, WARMUP + 1) / WARMUP
    lr[H - K:] = PEAK * (1 - np.arange(1, K + 1) / K)
    return lr


def _x_k(k: int) -> float:
    """[MPL]'s drop term at the end of a linear decay from the peak to 0 over k steps, summed step by step."""
    eta = 1.0 - np.arange(1, k + 1) / k
    area = np.cumsum(eta[::-1])[::-1]  # S_j = eta_j + ... + eta_k
    x = 0.0
    for e, s in zip(eta, area):
        if s > 0:
            x += (1.0 / k) * (1.0 - (SHAPE["C"] * s * e ** -SHAPE["gamma"] + 1.0) ** -SHAPE["beta"])
    return x


def _curve():
    z = np.cumsum(_schedule() / PEAK)
    steps = np.arange(100, H - K + 1, 25)
    return steps, L0 + A * z[steps - 1] ** -ALPHA  # constant LR before the decay: no drop term


def test_synthetic_decision_at_the_analytic_step():
    threshold = 1.1
    converged = L0 - B * _x_k(K)
    # begin when A (Z_now + Z_K)^-alpha <= (threshold - 1) L_K(inf); Z_now = warm-up sum + steps at the peak
    z_needed = (A / ((threshold - 1) * converged)) ** (1 / ALPHA) - (K - 1) / 2
    warm = (WARMUP + 1) / 2
    analytic = math.ceil(WARMUP + z_needed - warm)
    assert 500 < analytic < H - K - 200
    steps, losses = _curve()
    ds = replay_cooldown(steps, losses, schedule=_schedule(), cooldown_steps=K, threshold=threshold, warmup_steps=75)
    d = first_begin(ds)
    assert d is not None and analytic <= d.step < analytic + 25, (analytic, d)
    assert d.converged_loss == pytest.approx(converged, abs=2e-3)
    assert d.target == pytest.approx(threshold * d.converged_loss)
    assert d.loss_after <= d.target and d.progress <= 1.0
    before = [x for x in ds if x.step < d.step and math.isfinite(x.loss_after)]
    assert before and all(not x.begin and x.loss_after > x.target for x in before)
    assert d.end_step == d.step + K and not d.ends_past_plan
    # E > 0: the multiple applies above it, so the cool-down begins later
    later = first_begin(replay_cooldown(steps, losses, schedule=_schedule(), cooldown_steps=K, threshold=threshold,
                                        warmup_steps=75, irreducible=0.5))
    assert later is not None and later.step > d.step


def test_untrusted_forecast_never_begins():
    steps, losses = _curve()
    lr = _schedule()
    few = forecast(steps[:3], losses[:3], lr=lr[:steps[2]], planned_lr=lr[steps[2]:], calibration=False)
    assert not few.trusted
    d = cooldown_decision(few, K, 1.1)
    assert isinstance(d, CooldownDecision) and not d.begin and "not trusted" in d.reason
    assert math.isnan(d.loss_after) and math.isnan(d.target)


@pytest.mark.parametrize("kwargs, name", [
    ({"cooldown_steps": 0}, "cooldown_steps"), ({"cooldown_steps": 2.5}, "cooldown_steps"),
    ({"cooldown_steps": True}, "cooldown_steps"), ({"threshold": 1.0}, "threshold"),
    ({"threshold": math.nan}, "threshold"), ({"irreducible": -1.0}, "irreducible"),
    ({"final_lr": -1e-3}, "final_lr"), ({"converged_loss": 0.0}, "converged_loss"),
])
def test_bad_arguments_are_named(kwargs, name):
    steps, losses = _curve()
    lr = _schedule()
    f = forecast(steps[:20], losses[:20], lr=lr[:steps[19]], planned_lr=lr[steps[19]:], calibration=False)
    args = {"cooldown_steps": K, "threshold": 1.1, **kwargs}
    k, thr = args.pop("cooldown_steps"), args.pop("threshold")
    with pytest.raises(ValueError, match=name):
        cooldown_decision(f, k, thr, **args)
    with pytest.raises(ValueError, match="forecast"):
        cooldown_decision("not a forecast", K, 1.1)


def _stable_run(size: str):
    from lightning_scaling.corpus.curves import load_curve

    c = load_curve(DATA / f"{size}_stable")
    horizon, k = int(c.config["horizon"]), 480
    lr = np.asarray(c.lr, dtype=float)
    sched = np.concatenate([lr[:horizon - k], lr[horizon - k - 1] * (1 - np.arange(1, k + 1) / k)])
    steps, losses = np.asarray(c.steps), np.asarray(c.val_loss)
    keep = steps <= horizon - k
    return c, sched, steps[keep], losses[keep], k


def test_recorded_s_run_decision():
    """Measured (benchmarks/bench_cooldown.py): on s_stable the forecast's L0 stays at its bound (no decision); with
    the StoppingRule's converged loss the rule begins at step 1525 (bound with margin: 1300-1800)."""
    c, sched, steps, losses, k = _stable_run("s")
    own = replay_cooldown(steps, losses, schedule=sched, cooldown_steps=k, threshold=1.1)
    assert first_begin(own) is None
    assert any("lower bound" in d.reason for d in own)
    rule, lr_sum, conv = StoppingRule(), np.cumsum(np.asarray(c.lr, dtype=float)), []
    for s, y in zip(steps, losses):
        d = rule.update(int(s), float(y), float(lr_sum[int(s) - 1]))
        conv.append(d.converged_loss if d.trusted and d.converged_loss else None)
    chosen = first_begin(replay_cooldown(steps, losses, schedule=sched, cooldown_steps=k, threshold=1.1,
                                         converged_losses=conv))
    assert chosen is not None and 1300 <= chosen.step <= 1800, chosen
