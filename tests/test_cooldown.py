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


def _recorded_stable_module():
    """A module that trains for real but reports the recorded s_stable run's validation loss at each validation
    step, under the recorded LR (a 50-step linear warm-up, then constant) from a step-interval LambdaLR; and the
    recorded curve."""
    import torch

    from lightning_scaling.corpus.curves import load_curve
    from models import Regressor

    c = load_curve(DATA / "s_stable")
    lr = np.asarray(c.lr, dtype=float)
    peak = float(lr.max())

    class Module(Regressor):
        def validation_step(self, batch, batch_idx):  # the stable run's loss (after a cool-down begins: unused)
            value = float(np.interp(int(self.global_step), c.steps, c.val_loss))
            self.log("val_loss", torch.tensor(value, dtype=torch.float64))

        def configure_optimizers(self):
            optimizer = torch.optim.SGD(self.parameters(), lr=peak)
            scale = lambda step: float(lr[min(step, lr.size - 1)]) / peak  # noqa: E731 (the recorded LR)
            return {"optimizer": optimizer, "lr_scheduler": {
                "scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, scale), "interval": "step"}}

    return Module(lr=peak), c


def test_the_callback_begins_the_cooldown_where_the_rule_and_its_replay_do(tmp_path, capsys):
    """A real Trainer on the recorded stable run with ExtraEarlyStopping(cooldown_steps=480): the cool-down begins at
    the first validation where cooldown_decision, with the rule's calibrated lower bound as the stable run's
    converged loss, says so (measured: step 1575, near the ~1560 of [K]'s criterion on the real cool-downs), long
    before the rule's own stop (none by step 1920); a replay of the logged points reaches the same step; the run
    ends K steps later."""
    from lightning_scaling import ExtraEarlyStopping, replay
    from lightning_scaling.forecasting import lr_from_sums
    from models import loader, make_trainer, regression_data

    module, c = _recorded_stable_module()
    stop = ExtraEarlyStopping(cooldown_steps=480)
    trainer = make_trainer(tmp_path, [stop], max_steps=2400, val_check_interval=25, check_val_every_n_epoch=None,
                           limit_val_batches=1)
    trainer.fit(module, loader(regression_data(64)), loader(regression_data(16, seed=1)))
    start = stop.cooldown_start
    assert start is not None and 1400 <= start <= 1700, start
    assert stop.stopped_step == trainer.global_step == start + 480
    assert "cooling the learning rate down" in capsys.readouterr().out and stop.cooldown_decision.begin
    # the replay: the logged points (the rule's), the summed LR, the plan (constant to max_steps)
    steps, losses = np.asarray(stop.rule.steps), np.asarray(stop.rule.losses)
    seen = steps <= start
    steps, losses, sums = steps[seen], losses[seen], np.asarray(stop.rule.lr_sums)[seen]
    rule = replay(steps.tolist(), losses.tolist(), lr_sum=sums.tolist())
    assert rule.stopped_step is None  # the rule alone would not have stopped
    bounds = [d.stop_loss / stop.rule.threshold if d.trusted and d.stop_loss else None for d in rule.decisions]
    schedule = np.concatenate([lr_from_sums(steps, sums), np.full(2400 - start, float(c.lr[-1]))])
    chosen = first_begin(replay_cooldown(steps, losses, schedule=schedule, cooldown_steps=480,
                                         converged_losses=bounds))
    assert chosen is not None and chosen.step == start
