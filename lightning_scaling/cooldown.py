"""When to begin the cool-down of a warmup-stable-decay run (docs/science.md section 16).

Under a WSD schedule the extra-early-stopping decision is not *when to stop* but *when to begin the cool-down*: the
run ends ``cooldown_steps`` (K) steps after it, at the loss the cool-down reaches. The rule is [K] appendix B.2 with
the multi-power law's annealing term (:mod:`lightning_scaling.forecasting`, docs/science.md section 14):

    L_K(t) = L0 + A (Z(t) + Z_K)^(-alpha) - B X_K

is the law's loss at the end of a linear cool-down of K steps begun after step t (Z(t) the summed learning rate in
units of the peak, Z_K the cool-down's own, X_K its drop term: :meth:`Forecast.cooldown_loss`). X_K depends on the
cool-down (its length, the learning rate it falls from and to) and not on when it begins, so with infinitely many
more stable steps the same cool-down ends at

    L_K(inf) = L0 - B X_K            (the power term A Z^(-alpha) gone; computed as L_K(t) - A (Z(t) + Z_K)^(-alpha)),

the converged loss of "this model, finished with this cool-down". The run ends at step t + K with loss L_K(t):
at fixed compute C ~ N (t + K), L_K(t) = L_K(inf; N) + A Z^(-alpha) has [K] eq 1.6's form in (N, S) with the
cool-down's end as the loss the compute buys, so [K] B.4-B.5 carry over unchanged: the compute-efficient run ends
at (1 + alpha_N / alpha_S) x its converged loss. Hence: **begin the cool-down at the first evaluation where
L_K(t) <= threshold x L_K(inf)** (with an irreducible loss E, ``L_K(t) - E <= threshold (L_K(inf) - E)``, as
:class:`~lightning_scaling.StoppingRule` does), ``threshold`` by default ``planning.stopping_factor()`` = 1.1.
Both sides come from one fit, so the rule needs no separate converged-loss prediction; an untrusted forecast never
begins a cool-down, nor does an L0 at the fit's lower bound (0: a curve that has not bent, as on the CPU corpus'
recorded stable runs; ``converged_loss=`` then takes the stable run's L0 from another predictor, e.g. the
StoppingRule's, and L_K(inf) is it minus B X_K). Measured on real cool-downs: BENCHMARKS.md "The WSD cool-down
decision" (``benchmarks/bench_cooldown.py``).

Pure: numpy only (with :mod:`lightning_scaling.forecasting`'s scipy fit), never Lightning or torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .forecasting import Forecast, forecast
from .planning import stopping_factor

__all__ = ["CooldownDecision", "cooldown_decision", "replay_cooldown", "first_begin"]

#: An L0 at most this fraction of the loss after the cool-down is at the fit's lower bound (0): no converged loss.
L0_AT_BOUND = 0.01


@dataclass(frozen=True)
class CooldownDecision:
    """Whether to begin a cool-down of ``cooldown_steps`` steps now, and why.

    Attributes:
        begin: True when the rule decides to begin the cool-down now.
        reason: in words.
        loss_after: the forecast loss at the end of a cool-down begun now, L_K(t) (NaN when untrusted).
        target: ``threshold`` x the converged loss L_K(inf) (above ``irreducible``): the cool-down begins once
            ``loss_after`` is at or below it (NaN when untrusted).
        converged_loss: L_K(inf) = L0 - B X_K, the loss the same cool-down reaches after infinitely many more stable
            steps (NaN when untrusted).
        step: the last optimizer step the forecast saw; ``end_step``: the cool-down's last step (step + K).
        ends_past_plan: the cool-down begun now would end after the planned last step.
        threshold, cooldown_steps: the rule's settings.
        progress: (L_K(t) - E) / (L_K(inf) - E) - 1 over threshold - 1: 1 at the decision (NaN when untrusted).
    """

    begin: bool
    reason: str
    loss_after: float
    target: float
    converged_loss: float
    step: int
    end_step: int
    ends_past_plan: bool
    threshold: float
    cooldown_steps: int
    progress: float = math.nan


def _check(cooldown_steps: Any, threshold: Any, irreducible: Any, final_lr: Any) -> tuple[int, float, float, float]:
    if isinstance(cooldown_steps, bool) or not (isinstance(cooldown_steps, (int, np.integer)) and cooldown_steps >= 1):
        raise ValueError(f"cooldown_steps must be a whole number >= 1 (the length of the cool-down), "
                         f"got {cooldown_steps!r}")
    thr = stopping_factor() if threshold is None else threshold
    if isinstance(thr, bool) or not (isinstance(thr, (int, float, np.floating)) and math.isfinite(thr) and thr > 1):
        raise ValueError(f"threshold must be a number > 1 (e.g. 1.1, [K] B.5), got {threshold!r}")
    if isinstance(irreducible, bool) or not (isinstance(irreducible, (int, float, np.floating))
                                             and math.isfinite(irreducible) and irreducible >= 0):
        raise ValueError(f"irreducible must be a number >= 0 (the loss no model reaches below), got {irreducible!r}")
    if isinstance(final_lr, bool) or not (isinstance(final_lr, (int, float, np.floating))
                                          and math.isfinite(final_lr) and final_lr >= 0):
        raise ValueError(f"final_lr must be a learning rate >= 0 (where the cool-down ends), got {final_lr!r}")
    return int(cooldown_steps), float(thr), float(irreducible), float(final_lr)


def cooldown_decision(forecast: Forecast, cooldown_steps: int, threshold: float | None = None, *,
                      irreducible: float = 0.0, final_lr: float = 0.0,
                      converged_loss: float | None = None) -> CooldownDecision:
    """Whether to begin a linear cool-down of ``cooldown_steps`` steps now (the module's rule, docs/science.md 16).

    Args:
        forecast: the :func:`lightning_scaling.forecast` of the run so far (its plan only sets the planned end).
        cooldown_steps: K, the cool-down's length in optimizer steps.
        threshold: begin once the loss after the cool-down is at most this multiple of the converged loss L_K(inf)
            (default ``planning.stopping_factor()`` = 1 + alpha_N / alpha_S = 1.1, [K] B.5).
        irreducible: E, the multiple applies to the loss above it (default 0, as [K] B.5).
        final_lr: the learning rate the cool-down falls to (default 0, as ExtraEarlyStopping's cool-down).
        converged_loss: the stable run's converged loss L0 from another predictor (e.g. the StoppingRule's
            ``decision.converged_loss``) in place of the forecast's L0; L_K(inf) is then it minus B X_K. Default
            None: the forecast's L0. An L0 at the fit's lower bound (0: the curve has not bent) is no converged loss,
            and then there is no decision.

    Returns:
        A :class:`CooldownDecision`; ``begin=False`` with the forecast's reason when the forecast is not trusted.

    Raises:
        ValueError: ``forecast`` not a Forecast, or a bad ``cooldown_steps``, ``threshold``, ``irreducible`` or
            ``final_lr`` (the message names it).

    Example:
        >>> steps = list(range(200, 2001, 100))
        >>> losses = [1.3 + 8.0 * s ** -0.5 for s in steps]
        >>> f = forecast(steps, losses, lr=[1e-3] * 2000, planned_lr=[1e-3] * 400, calibration=False)
        >>> d = cooldown_decision(f, 400, 1.1)
        >>> d.begin, round(d.converged_loss, 3), d.loss_after > d.target
        (False, 1.209, True)
    """
    if not isinstance(forecast, Forecast):
        raise ValueError(f"forecast must be a lightning_scaling.Forecast (from lightning_scaling.forecast), "
                         f"got {type(forecast).__name__}")
    k, thr, e, final = _check(cooldown_steps, threshold, irreducible, final_lr)
    if converged_loss is not None and not (isinstance(converged_loss, (int, float, np.floating))
                                           and not isinstance(converged_loss, bool)
                                           and math.isfinite(converged_loss) and converged_loss > 0):
        raise ValueError(f"converged_loss must be None (the forecast's L0) or a loss > 0, got {converged_loss!r}")
    step, end = int(forecast.step), int(forecast.step) + k
    past = end > forecast.final_step
    nan = math.nan
    base = dict(step=step, end_step=end, ends_past_plan=past, threshold=thr, cooldown_steps=k)
    if not forecast.trusted or forecast.step < 1:
        why = forecast.reason if forecast.step >= 1 else "no optimizer step seen yet"
        return CooldownDecision(False, f"no decision: the forecast is not trusted ({why})", nan, nan, nan, **base)
    if forecast.early:
        return CooldownDecision(False, f"no decision: the forecast is fitted from the end of the warm-up (step "
                                       f"{forecast.fit_after}), its transient included; a cool-down waits for a fit "
                                       "past the transient", nan, nan, nan, **base)
    loss_after = forecast.cooldown_loss(k, final_lr=final)
    # the same schedule as cooldown_loss's: the run so far, then the linear ramp from the LR now to final_lr
    history = np.asarray(forecast.lr, dtype=float)
    begin_lr = float(history[-1])
    ramp_sum = float(np.sum(begin_lr + (final - begin_lr) * np.arange(1, k + 1) / k))
    z = (float(history.sum()) + ramp_sum) / forecast.peak_lr
    p = forecast.params
    converged = loss_after - p["A"] * z ** (-p["alpha"])  # L0 - B X_K
    if converged_loss is not None:
        converged += float(converged_loss) - p["L0"]
    elif p["L0"] <= L0_AT_BOUND * loss_after:
        return CooldownDecision(False, f"no decision: the forecast's converged loss L0 = {p['L0']:.3g} is at its lower "
                                       "bound (the curve has not bent yet); give converged_loss from another "
                                       "predictor or wait", nan, nan, nan, **base)
    if not (math.isfinite(loss_after) and math.isfinite(converged) and converged > e):
        return CooldownDecision(False, f"no decision: the loss after the cool-down ({loss_after:.4g}) or its converged "
                                       f"value ({converged:.4g}) is not a number above the irreducible loss {e:g}",
                                nan, nan, nan, **base)
    target = e + thr * (converged - e)
    progress = ((loss_after - e) / (converged - e) - 1.0) / (thr - 1.0)
    begin = loss_after <= target
    where = f"ending at step {end}" + (f", after the planned end ({forecast.final_step})" if past else "")
    reason = (f"a {k}-step cool-down begun at step {step} ({where}) is forecast to end at {loss_after:.4g}, "
              f"{'at or below' if begin else 'above'} {thr:.3g} x its converged loss {converged:.4g} "
              f"(target {target:.4g})" + ("" if begin else "; the stable phase goes on"))
    return CooldownDecision(bool(begin), reason, float(loss_after), float(target), float(converged),
                            progress=float(progress), **base)


def replay_cooldown(steps: Sequence[int], losses: Sequence[float], *, schedule: Sequence[float],
                    cooldown_steps: int, threshold: float | None = None, irreducible: float = 0.0,
                    final_lr: float = 0.0, converged_losses: Sequence[float | None] | None = None,
                    **forecast_options: Any) -> list[CooldownDecision]:
    """The decision at each evaluation of a recorded stable run, as the callback would make it.

    Args:
        steps, losses: the run's evaluations (optimizer steps completed, loss).
        schedule: the learning rate of every optimizer step of the planned run (the history and the plan: e.g. the
            stable learning rate then the planned decay); evaluations after its end are not replayed.
        cooldown_steps, threshold, irreducible, final_lr: as :func:`cooldown_decision`.
        converged_losses: one ``converged_loss`` of :func:`cooldown_decision` per evaluation (None: the forecast's L0).
        **forecast_options: passed to :func:`lightning_scaling.forecast` (``warmup_steps``, ``law``, ...).

    Returns:
        One :class:`CooldownDecision` per evaluation replayed (:func:`first_begin` finds the rule's choice).
    """
    sched = np.asarray(schedule, dtype=float).ravel()
    s = np.asarray(steps, dtype=np.int64).ravel()
    y = np.asarray(losses, dtype=float).ravel()
    if s.size != y.size:
        raise ValueError(f"steps and losses must have the same length, got {s.size} and {y.size}")
    _check(cooldown_steps, threshold, irreducible, final_lr)
    forecast_options.setdefault("calibration", False)  # the interval is not used by the decision
    out = []
    for i, now in enumerate(s):
        if now > sched.size:
            break
        f = forecast(s[:i + 1], y[:i + 1], lr=sched[:now], planned_lr=sched[now:], **forecast_options)
        conv = None if converged_losses is None else converged_losses[i]
        out.append(cooldown_decision(f, cooldown_steps, threshold, irreducible=irreducible, final_lr=final_lr,
                                     converged_loss=conv))
    return out


def first_begin(decisions: Sequence[CooldownDecision]) -> CooldownDecision | None:
    """The first decision that begins the cool-down (the rule's choice), None if none does."""
    return next((d for d in decisions if d.begin), None)
