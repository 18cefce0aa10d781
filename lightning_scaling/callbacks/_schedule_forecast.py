"""ExtraEarlyStopping's forecast of the loss at the planned end of the LR schedule (README "Forecasting the loss at
the end of the LR schedule").

At each validation: the points and summed LR the stopping rule holds (a step-wise schedule between validations, as a
replay of ``scaling/lr_sum`` sees it), the plan read once from a copy of the Trainer's first LR scheduler
(:func:`lightning_scaling.schedules.planned_lrs`), and :func:`lightning_scaling.forecasting.forecast`. Under a
fixed-horizon schedule (cosine, linear decay, WSD: :func:`lightning_scaling.schedules.fit_shape`) also the horizon
for the next run that reaches the rule's threshold x L0 (:func:`lightning_scaling.forecasting.recommend_horizon`).
A report: a failure is one warning, and it never stops the run.

Under DDP the fit runs on global rank zero only; :meth:`ScheduleForecaster.share` hands what the other ranks need of it
(the tags published on every rank, the cool-down decision) to every rank, in one broadcast per validation.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import _common


class ScheduleForecaster:
    """The latest schedule forecast of a run (``forecast``: a :class:`~lightning_scaling.forecasting.Forecast`, or
    None before there are points, under a constant LR unless a cool-down is to be decided, or after a failure), the
    plan it read (``plan``), and the horizon recommended for the next run (``horizon``: a
    :class:`~lightning_scaling.forecasting.HorizonRecommendation` under a fixed-horizon schedule, else None).
    ``forecast`` and ``horizon`` are global rank zero's, the only rank that fits: None on the others."""

    def __init__(self) -> None:
        self.forecast: Any = None
        self.horizon: Any = None
        self.plan: Any = None  # (step, the planned LR of every later step), read once from the scheduler
        self.constant_lr = False  # the LR is constant after the warm-up, to the planned end
        self.made = False  # a forecast was made at this validation (on rank zero; every rank knows it alike)

    def update(self, trainer: Any, rule: Any, step: int, warn: Any, cooldown: bool = False) -> Any:
        """The forecast at ``step`` from ``rule``'s points, fitted on global rank zero only (None on the other ranks:
        :meth:`share` hands them what they need of it); ``warn(key, message)`` says a trouble once. ``cooldown``:
        a cool-down is to be decided, so the forecast is made under a constant LR too (its drop term is the
        cool-down's loss)."""
        from ..forecasting import MIN_POINTS, forecast, lr_from_sums, recommend_horizon

        self.forecast = self.horizon = None
        self.made = False
        if len(rule.steps) < MIN_POINTS or any(v is None for v in rule.lr_sums):
            return None
        try:
            plan = self.planned_lr(trainer, step, warn)
            if plan is None:
                return None
            lr = lr_from_sums(rule.steps, rule.lr_sums)
            schedule = np.concatenate([lr, plan])
            self.constant_lr = bool(np.ptp(schedule[rule.fit_after:]) <= 1e-9 * max(float(schedule.max()), 1e-300))
            if self.constant_lr and not cooldown:  # nothing for a schedule law to add (the converged-loss
                return None                         # prediction is the forecast) unless a cool-down is to be decided
            self.made = True  # decided alike on every rank: the same points, LR and plan
            if not _common.is_global_zero(trainer):
                return None
            self.forecast = forecast(rule.steps, rule.losses, lr=lr, planned_lr=plan, warmup_steps=rule.warmup_steps,
                                     confidence=rule.confidence)
            if self.forecast.trusted:
                horizon = recommend_horizon(self.forecast, threshold=rule.threshold)
                self.horizon = horizon if horizon.schedule is not None else None  # a fixed-horizon shape only
        except Exception as err:  # a forecast is a report: it never ends the user's training
            warn("forecast", f"the schedule forecast failed at step {step} ({type(err).__name__}: {err}); it is not "
                             "logged, training goes on")
        return self.forecast

    def share(self, trainer: Any, cooldown_steps: int, cooldown: Any = None) -> tuple[dict[str, float | None], Any]:
        """Global rank zero's forecast tags (:meth:`metrics` with ``cooldown_steps``) and its cool-down decision
        (``cooldown``, from the forecast: a :class:`~lightning_scaling.cooldown.CooldownDecision` or None), on every
        rank: one broadcast from rank zero at a validation where a forecast was made (collective: every rank calls
        it after :meth:`update`); none on one process, nor where no forecast was made (every rank knows that)."""
        shared = (self.metrics(cooldown_steps), cooldown)
        if self.made and _common.world_size(trainer) > 1:
            shared = trainer.strategy.broadcast(shared, src=0)
        return shared

    def planned_lr(self, trainer: Any, step: int, warn: Any) -> Any:
        """The LR of every step after ``step`` to the planned end: read once from a copy of the first LR scheduler,
        else the LR now, held constant (said once when a scheduler exists but cannot be read); None when the planned
        end is unknown."""
        from ..schedules import ScheduleError, planned_lrs

        total = int(trainer.max_steps) if trainer.max_steps and trainer.max_steps > 0 else None
        if total is None:
            estimated = getattr(trainer, "estimated_stepping_batches", None)
            total = int(estimated) if estimated is not None and math.isfinite(estimated) else None
        if total is None:
            warn("plan", "the planned end of training is unknown (no max_steps, no estimated steps): no schedule "
                         "forecast")
            return None
        if self.plan is None or step < self.plan[0]:
            configs = list(getattr(trainer, "lr_scheduler_configs", None) or [])
            try:
                if not configs:
                    raise ScheduleError("the module configures no LR scheduler")
                if configs[0].interval != "step" or configs[0].frequency != 1:
                    raise ScheduleError(f"the scheduler steps once per {configs[0].frequency} {configs[0].interval}(s)")
                self.plan = (step, planned_lrs(configs[0].scheduler, max_steps=total, steps_done=step))
            except ScheduleError as err:
                if configs:
                    warn("plan", f"the planned LR cannot be read ({err}): the schedule forecast assumes a constant LR "
                                 "from here")
                now = float(trainer.optimizers[0].param_groups[0]["lr"])
                self.plan = (step, np.full(max(0, total - step), now))
        start, plan = self.plan
        return plan[step - start:]

    def metrics(self, cooldown_steps: int) -> dict[str, float | None]:
        """The trusted forecast's tags (short names; with ``cooldown_steps``, the loss after a cool-down begun now),
        empty without one: like the prediction, an untrusted forecast is no number."""
        f = self.forecast
        if f is None or not f.trusted:
            return {}
        out: dict[str, float | None] = {"forecast_final_loss": f.final_loss, "forecast_final_low": f.final_interval[0],
                                        "forecast_final_high": f.final_interval[1],
                                        "forecast_converged_loss": f.converged_loss if _bent(f) else None,
                                        "final_over_converged": f.final_loss / f.converged_loss if _bent(f) else None}
        h = self.horizon
        if h is not None:
            out["recommended_horizon_steps"] = float(h.horizon_steps) if h.success else None
        if cooldown_steps:
            try:
                out["forecast_cooldown_loss"] = f.cooldown_loss(cooldown_steps, final_lr=0.0)
            except ValueError:  # a cool-down that cannot be forecast (past the plan): no number
                out["forecast_cooldown_loss"] = None
        return out

    def summary_line(self) -> str | None:
        """The summary's line on the forecast, or why there is none (None before any validation)."""
        f = self.forecast
        if f is not None and f.trusted:
            lo, hi = f.final_interval
            l0 = f"L0 {f.converged_loss:.4f}" if _bent(f) else "L0 at its bound (the curve has not bent yet)"
            line = (f"  forecast under the planned LR schedule: {f.final_loss:.4f} at step {f.final_step} "
                    f"({f.confidence:.0%} interval [{lo:.4f}, {hi:.4f}]); {l0}")
            horizon = self.horizon_line()
            return line if horizon is None else f"{line}\n{horizon}"
        if f is not None:
            return f"  no schedule forecast: {f.reason}"
        if self.constant_lr:
            return ("  no schedule forecast: the LR is constant to the planned end (the converged-loss prediction is "
                    "the forecast)")
        return None

    def horizon_line(self) -> str | None:
        """The summary's line on the horizon for the next run (None when the schedule has no fixed horizon)."""
        h = self.horizon
        if h is None:
            return None
        if not h.success:
            return f"  no horizon recommended for the next run: {h.message}"
        lo, hi = h.horizon_interval
        return (f"  recommended horizon for the next run: {h.horizon_steps} steps of {h.schedule.shape} reach "
                f"{h.threshold:g} x L0 ({h.target_loss:.4f}; {h.confidence:.0%} interval [{lo:.0f}, {hi:.0f}] steps, "
                f"L0's own uncertainty not included)")


def _bent(f: Any) -> bool:
    """Whether the forecast's L0 is off its lower bound 0 (a curve that has not bent leaves L0 open: not logged)."""
    return f.converged_loss > 1e-6 * abs(f.final_loss)
