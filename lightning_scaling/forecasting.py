"""Forecast the loss a run will end at under its planned learning-rate schedule (docs/science.md section 14).

The law is the multi-power law of Luo et al. 2025 ([MPL], arXiv 2503.12811, eq 4-5), with its loss-drop shape held
at a prior fitted on finished runs and only its size fitted to the run, under a prior:

    L(t) = L0 + A Z(t)^(-alpha) - B X(t),
    X(t) = sum_k (eta_{k-1} - eta_k) G(eta_k^(-gamma) S_k(t)),   G(x) = 1 - (C x + 1)^(-beta),

with eta the learning rate divided by the schedule's peak, Z(t) = eta_1 + ... + eta_t the summed learning rate
through step t ([MPL]'s S1 + S_W, the warm-up included), S_k(t) = eta_k + ... + eta_t, and the sum over the steps
after the peak (a decrease adds, a rise subtracts). L0 is the loss at infinite learning-rate area (the converged loss
in [K]'s sense on a stream that does not repeat). ``law="tissue"`` replaces X by the annealing area of Tissue et al.
2024 ([T], arXiv 2408.11029, eq 3): S2(t) = m_1 + ... + m_t, m_i = lam m_{i-1} + (eta_{i-1} - eta_i);
``law="power"`` drops the term (B = 0: a power law in the summed learning rate, the baseline).

Why this form. A prefix of a run seldom shows the drop its schedule's decay will cause (a WSD or two-stage run at 50%
has not decayed yet), so the drop's shape (C, beta, gamma; [T]'s lam) cannot be fitted to the run: it is the prior's,
fitted jointly on finished runs (:func:`fit_prior`), and the drop's size B is fitted with a log-normal prior around
the prior's B (the data decide once the learning rate has decayed enough to show it; before, the prior does). The
law was chosen over [T]'s and the plain power law by the forecast errors on the recorded runs, held out by size
(``benchmarks/bench_forecast.py``, BENCHMARKS.md "Forecasting the final loss under the planned schedule").

The interval is split-conformal (docs/science.md sections 11-12): a :class:`~lightning_scaling.calibration.Calibration`
of ``e = log(L_final / L_hat)`` on finished runs, binned by ``g = s / L_hat - 1`` (``s`` the mean of the last three
losses fitted), made by :func:`calibrate_forecast`; the package ships one (``data/forecast_calibration.json``).

Pure: numpy and scipy, never Lightning or torch. Learning rates follow the callback's convention (index i of ``lr``
is the learning rate of optimizer step i + 1; a loss at step s is measured after s optimizer steps, so it has seen
``lr[:s]``), the one :func:`lightning_scaling.replay` sums.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from scipy.signal import lfilter

from .calibration import Calibration, calibrate
from .errors import FitError
from .results import PredictionResult
from .fitting import noise_sd, solve_from_starts
from .stopping import TRANSIENT_FACTOR, warmup_end

__all__ = ["Forecast", "SchedulePrior", "forecast", "lr_from_sums", "fit_prior", "forecast_samples",
           "calibrate_forecast", "LAWS", "DEFAULT_PRIORS", "HorizonRecommendation", "recommend_horizon"]

#: The laws :func:`forecast` fits (its ``law``): the multi-power law, [T]'s, and the power law in summed LR alone.
LAWS = ("mpl", "tissue", "power")
#: The fewest points after the warm-up a forecast is made from (fewer: an untrusted forecast with NaN numbers).
MIN_POINTS = 5
#: The farthest a trusted forecast extrapolates: the summed learning rate at the end over that at the last point.
MAX_EXTRAPOLATION = 10.0
#: The largest number of blocks the steps after the peak are gathered into to evaluate the drop term (accurate to
#: a few 1e-5 of the loss on the recorded runs; the cost of a forecast is then independent of the run's length).
BLOCKS = 512
#: The largest share of the forecast final loss the drop still to come (of the planned decay after the last point)
#: may make for a trusted forecast. The recorded forecasts above it were all 8-35% too low (BENCHMARKS.md): the
#: drop's size then rests on the prior, fitted on other runs, more than on this run.
MAX_DROP_SHARE = 0.1
#: Bounds of the exponent alpha.
ALPHA_BOUNDS = (0.02, 3.0)
#: A group of runs in :func:`fit_prior` whose fitted drop B is below this (nats) shows none and is left out.
NO_DROP = 1e-3
#: The bins of ``g = s / L_hat - 1`` of the interval's calibration (fewer than the converged loss': the forecast's
#: errors are calibrated on fewer runs).
G_EDGES = (0.0, 0.05, math.inf)
#: Where the shipped calibration of the interval lies.
CALIBRATION_PATH = Path(__file__).parent / "data" / "forecast_calibration.json"


@dataclass(frozen=True)
class SchedulePrior:
    """The prior of the loss-drop term: its shape (held) and its size B (fitted to the run around ``B``).

    Attributes:
        law: "mpl", "tissue" or "power".
        B: the prior median of B: the loss (nats) a full decay of the learning rate to zero drops, once settled.
        B_log_sd: the prior's standard deviation of log B.
        shape: [MPL]'s ``C``, ``beta``, ``gamma``, or [T]'s ``lam``.
        sources: what it was fitted on (for the record).
    """

    law: str
    B: float
    B_log_sd: float
    shape: Mapping[str, float] = field(default_factory=dict)
    sources: tuple[str, ...] = ()


#: The shipped priors, fitted by :func:`fit_prior` on Luo et al.'s 18 GPU runs (25M and 100M, the GPU language
#: models a user trains; the CPU corpus' drop is larger and of another shape, BENCHMARKS.md).
DEFAULT_PRIORS = {
    "mpl": SchedulePrior("mpl", 0.117, 0.25, {"C": 0.004103, "beta": 2.300827, "gamma": 0.973978},
                         ("luo 100M", "luo 25M")),
    "tissue": SchedulePrior("tissue", 0.117, 0.25, {"lam": 0.997592}, ("luo 100M", "luo 25M")),
    "power": SchedulePrior("power", 0.0, 1.0, {}, ()),
}


@dataclass(frozen=True)
class Forecast(PredictionResult):
    """A forecast of the loss under the planned schedule.

    Attributes:
        final_loss: the loss forecast at the planned end (``final_step``); NaN when no fit could be made.
        final_interval: its calibrated central interval at ``confidence`` (``(0, inf)`` when the calibration holds
            too few runs for the level, NaN when there is no forecast).
        converged_loss: L0, the loss at infinite learning-rate area (NaN without a fit).
        trusted: whether the numbers may be used; ``reason`` says why not (or what the forecast rests on).
        reason: in words.
        final_step: the planned last step (len(lr) + len(planned_lr)).
        step: the last optimizer step seen (len(lr)).
        confidence: the interval's level.
        law: the law fitted; ``params``: its L0, A, alpha, B (in units of the peak learning rate) and shape.
        points: the points fitted (after the warm-up); ``fit_after``: the step up to which points were left out.
        peak_lr: the schedule's peak learning rate (the unit of the summed learning rate).
        smoothed_loss: the mean of the last three losses fitted (the ``s`` of the interval's calibration).
        early: fitted from the end of the warm-up, its transient included, because fewer than :data:`MIN_POINTS`
            points lie past the transient yet (``warmup_steps=None`` only; a run whose warm-up is long against its
            length). Its numbers are reported and calibrated like the others, but no cool-down is begun on it
            (:func:`~lightning_scaling.cooldown.cooldown_decision`): that decision cannot be undone.
    """

    VALUE = "final_loss"  # its success: a finite final loss (results.PredictionResult)

    final_loss: float
    final_interval: tuple[float, float]
    converged_loss: float
    trusted: bool
    reason: str
    final_step: int
    step: int
    confidence: float
    law: str
    params: Mapping[str, float]
    points: int
    fit_after: int
    peak_lr: float
    smoothed_loss: float = math.nan
    early: bool = False
    _lr: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False, compare=False)
    _planned: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False, compare=False)

    @property
    def lr(self) -> np.ndarray:
        """The learning rate of every optimizer step seen (index i = step i + 1), as the forecast was given it."""
        return self._lr

    @property
    def planned_lr(self) -> np.ndarray:
        """The planned learning rate of every later step to the planned end."""
        return self._planned

    def loss_at(self, steps: Sequence[int] | int, lr: Sequence[float] | None = None) -> np.ndarray | float:
        """The law's loss after ``steps`` optimizer steps of the schedule ``lr`` (default: the history then the plan).

        Raises ValueError for a step outside 1..len(schedule) or a schedule that is not finite and >= 0.
        """
        schedule = np.concatenate([self._lr, self._planned]) if lr is None else _rates(lr, "lr")
        scalar = np.ndim(steps) == 0
        s = np.atleast_1d(np.asarray(steps))
        if s.size and (not np.issubdtype(s.dtype, np.integer) or s.min() < 1 or s.max() > schedule.size):
            raise ValueError(f"steps must be whole numbers in 1..{schedule.size} (the schedule's length)")
        if not math.isfinite(self.final_loss):
            out = np.full(s.size, math.nan)
        else:
            out = _predict(self.law, self.params, schedule / self.peak_lr, s.astype(np.int64) - 1)
        return float(out[0]) if scalar else out

    def cooldown_loss(self, cooldown_steps: int, *, start: int | None = None, final_lr: float | None = None) -> float:
        """The loss if a linear cool-down of ``cooldown_steps`` steps began after step ``start`` (default: now).

        The learning rate follows the run to ``start`` (the plan after the last step seen), then falls linearly from
        the learning rate of step ``start`` to ``final_lr`` (default: the plan's last learning rate, or a tenth of the
        peak when the plan is a constant or empty) at the cool-down's last step; returned is the law's loss there
        (a point forecast: the interval is calibrated for the planned end only).

        Raises ValueError for ``cooldown_steps`` < 1, a ``start`` before the last step seen or beyond the plan, or a
        negative ``final_lr``.

        Example:
            >>> f = forecast([3000, 4000, 5000, 6000, 7000, 8000], [3.6, 3.52, 3.47, 3.43, 3.40, 3.38],
            ...              lr=[3e-4] * 8000, planned_lr=[3e-4] * 8000)
            >>> f.cooldown_loss(2000) < f.loss_at(10000)
            True
        """
        if not (isinstance(cooldown_steps, (int, np.integer)) and cooldown_steps >= 1):
            raise ValueError(f"cooldown_steps must be a whole number >= 1, got {cooldown_steps!r}")
        now = self._lr.size
        start = now if start is None else start
        if not (isinstance(start, (int, np.integer)) and now <= start <= now + self._planned.size):
            raise ValueError(f"start must be a step from the last seen ({now}) to the plan's end "
                             f"({now + self._planned.size}), got {start!r}")
        history = np.concatenate([self._lr, self._planned[:start - now]])
        if final_lr is None:
            flat = self._planned.size == 0 or np.ptp(self._planned) <= 1e-12 * self.peak_lr
            final_lr = 0.1 * self.peak_lr if flat else float(self._planned[-1])
        if not (math.isfinite(final_lr) and final_lr >= 0):
            raise ValueError(f"final_lr must be a number >= 0, got {final_lr!r}")
        begin = float(history[-1]) if history.size else self.peak_lr
        ramp = begin + (final_lr - begin) * np.arange(1, cooldown_steps + 1) / cooldown_steps
        schedule = np.concatenate([history, ramp])
        return float(self.loss_at(schedule.size, schedule))


def _rates(values: Any, name: str) -> np.ndarray:
    try:
        out = np.asarray(values, dtype=float).ravel()
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a sequence of learning rates (one per optimizer step)") from None
    if out.size and not (np.all(np.isfinite(out)) and out.min() >= 0):
        raise ValueError(f"{name} must hold finite learning rates >= 0 (one per optimizer step)")
    return out


def _drop_term(law: str, shape: Mapping[str, float], eta: np.ndarray, t: np.ndarray) -> np.ndarray:
    """X (MPL) or S2 ([T]) at the step indices ``t`` (step t + 1) of the normalised schedule ``eta``."""
    if law == "power" or eta.size < 2:
        return np.zeros(t.size)
    peak = int(np.argmax(eta))
    d = np.zeros(eta.size)
    d[peak + 1:] = eta[peak:-1] - eta[peak + 1:]  # the decrease into step k + 1, after the peak
    if law == "tissue":
        lam = float(shape["lam"])  # S2 x (1 - lam): a full decay settles at a drop of B, as in the MPL form
        return np.cumsum(lfilter([1.0 - lam], [1.0, -lam], d))[t]
    nz = np.flatnonzero(d)
    if nz.size == 0:
        return np.zeros(t.size)
    edges = np.unique(np.linspace(nz[0], nz[-1] + 1, min(BLOCKS, nz.size) + 1).astype(np.int64))
    cum = np.concatenate([[0.0], np.cumsum(d)])
    drop = cum[edges[1:]] - cum[edges[:-1]]
    k = (edges[1:] + edges[:-1] - 1) // 2  # a block's middle step index
    z = np.cumsum(eta)
    z_before = np.concatenate([[0.0], z])[k]  # summed LR before step k
    area = z[t][:, None] - z_before[None, :]  # S_k(t), negative for blocks after t
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        x = np.maximum(area, 0.0) * np.maximum(eta[k], 1e-12) ** (-float(shape["gamma"]))
        g = 1.0 - (float(shape["C"]) * x + 1.0) ** (-float(shape["beta"]))
    return np.where(area > 0, g, 0.0) @ drop


def _predict(law: str, params: Mapping[str, float], eta: np.ndarray, t: np.ndarray) -> np.ndarray:
    z = np.cumsum(eta)[t]
    with np.errstate(divide="ignore", over="ignore"):
        power = params["A"] * z ** (-params["alpha"])
    return params["L0"] + power - params["B"] * _drop_term(law, params, eta, t)


def _noise(y: np.ndarray) -> float:
    """The losses' noise: a robust standard deviation of their second differences (6 sigma^2 for white noise)."""
    floor = 1e-4 * float(np.median(y))
    if y.size < 4:
        return max(floor, 1e-3 * float(np.median(y)))
    return max(floor, noise_sd(y))


def _fit(law: str, prior: SchedulePrior, z: np.ndarray, x: np.ndarray, y: np.ndarray, max_nfev: int):
    """Bounded least squares of (L0, log A, alpha[, log B]) with the prior on log B as one more residual."""
    sigma = _noise(y)
    lo_y = float(y.min())
    with_b = law != "power"
    log_b0 = math.log(max(prior.B, 1e-8))
    logz = np.log(z)

    def unpack(th):
        return th[0], math.exp(th[1]), th[2], (math.exp(th[3]) if with_b else 0.0)

    def residuals(th):
        l0, a, alpha, b = unpack(th)
        r = (l0 + a * np.exp(-alpha * logz) - b * x - y) / sigma
        return np.append(r, (th[3] - log_b0) / prior.B_log_sd) if with_b else r

    def jacobian(th):
        l0, a, alpha, b = unpack(th)
        p = a * np.exp(-alpha * logz)
        cols = [np.ones_like(z), p, -p * logz] + ([-b * x] if with_b else [])
        jac = np.column_stack(cols) / sigma
        if with_b:
            jac = np.vstack([jac, np.r_[np.zeros(3), 1.0 / prior.B_log_sd]])
        return jac

    starts = []
    for frac in (0.5, 0.8, 0.95):
        for alpha in (0.3, 0.7):
            l0 = frac * lo_y
            gap = np.maximum(y + (prior.B * x if with_b else 0.0) - l0, 1e-6 * lo_y)
            log_a = float(np.median(np.log(gap) + alpha * logz))
            starts.append([l0, log_a, alpha] + ([log_b0] if with_b else []))
    bounds = ([0.0, -50.0, ALPHA_BOUNDS[0]] + ([math.log(1e-6)] if with_b else []),
              [lo_y, 50.0, ALPHA_BOUNDS[1]] + ([math.log(10.0 * lo_y)] if with_b else []))
    res = solve_from_starts(residuals, jacobian, starts, (), bounds,
                            tol=1e-8, max_nfev=max_nfev)
    return res, sigma


def _warmup_cut(steps: np.ndarray, cumulative: np.ndarray, warmup_steps: int | None) -> int:
    """The step up to which points are not fitted: ``warmup_steps``, or the stopping rule's own detection from the
    summed learning rate at each evaluation (docs/science.md section 13)."""
    if warmup_steps is not None:
        return int(warmup_steps)
    return int(TRANSIENT_FACTOR * _warmup_end(steps, cumulative))


def _warmup_end(steps: np.ndarray, cumulative: np.ndarray) -> int:
    """The detected end of the rising learning rate (the rule's detection, not a copy of it)."""
    return warmup_end(steps, [float(cumulative[s - 1]) for s in steps])


@lru_cache(maxsize=1)
def default_calibration() -> Calibration | None:
    """The calibration the package ships for the interval (``data/forecast_calibration.json``), None if absent."""
    return Calibration.from_json(CALIBRATION_PATH) if CALIBRATION_PATH.is_file() else None


def lr_from_sums(steps: Sequence[int], lr_sums: Sequence[float]) -> np.ndarray:
    """The learning rate of every optimizer step 1..steps[-1] from the summed learning rate at each evaluation: the
    mean between two evaluations at each of their steps (what the logs hold: ``scaling/lr_sum`` at each validation).

    Between evaluations the law's drop term sees a step-wise schedule; on the recorded runs the forecast from it agrees
    with the one from the exact schedule to ~1e-4 of the loss.

    Raises:
        ValueError: steps not ascending whole numbers >= 1, or a summed learning rate that falls.

    Example:
        >>> lr_from_sums([2, 4], [0.5, 0.75]).tolist()
        [0.25, 0.25, 0.125, 0.125]
    """
    s = np.asarray(steps, dtype=np.int64)
    z = np.asarray(lr_sums, dtype=float)
    if s.ndim != 1 or s.size != z.size or s.size == 0 or s[0] < 1 or np.any(np.diff(s) <= 0):
        raise ValueError("steps must be ascending whole numbers >= 1, one per summed learning rate")
    gaps = np.diff(np.r_[0, s])
    rates = np.diff(np.r_[0.0, z]) / gaps
    if not np.all(np.isfinite(rates)) or np.any(rates < 0):
        raise ValueError("the summed learning rate must be finite and never fall")
    return np.repeat(rates, gaps)


def forecast(steps: Sequence[int], losses: Sequence[float], *, lr: Sequence[float], planned_lr: Sequence[float],
             warmup_steps: int | None = None, law: str = "mpl", prior: SchedulePrior | None = None,
             confidence: float = 0.8, calibration: Calibration | str | Path | None | bool = None,
             max_nfev: int = 200) -> Forecast:
    """Forecast the loss at the planned end of the schedule from the points seen so far.

    Args:
        steps: the optimizer steps completed at each evaluation (ascending whole numbers >= 1, at most len(lr)).
        losses: the (validation) loss at each of ``steps``.
        lr: the learning rate of every optimizer step so far (index i = step i + 1), as the callback sums it.
        planned_lr: the learning rate of every remaining step to the planned end (index j = step len(lr) + j + 1;
            empty: the run ends now). :func:`lightning_scaling.schedules.planned_lrs` reads it from a scheduler.
        warmup_steps: points at or before this step are not fitted. None (default): the warm-up is found from the
            learning rate as :class:`~lightning_scaling.StoppingRule` finds it, and the points up to
            ``TRANSIENT_FACTOR`` x its end are left out; while fewer than :data:`MIN_POINTS` lie past that, the
            points after the warm-up's end are fitted (``Forecast.early``).
        law: "mpl" (default), "tissue" or "power" (:data:`LAWS`).
        prior: the drop term's :class:`SchedulePrior` (default :data:`DEFAULT_PRIORS` of the law; :func:`fit_prior`).
        confidence: the level of ``final_interval`` (central).
        calibration: the interval's calibration (:func:`calibrate_forecast`): None for the shipped one, a
            Calibration or a path to its JSON, False for none (the interval is then NaN).
        max_nfev: the most residual evaluations of one fit start.

    Returns:
        A :class:`Forecast`; ``trusted=False`` with a ``reason`` when its numbers should not be used (too few points
        after the warm-up, a failed fit, an exponent at its bound, too far an extrapolation).

    Raises:
        ValueError: malformed input, saying what to give instead.

    Example:
        >>> lr = [3e-4] * 10000
        >>> steps = list(range(3000, 10001, 1000))
        >>> losses = [3.1 + 0.5 * (s / 1000) ** -0.5 for s in steps]
        >>> f = forecast(steps, losses, lr=lr, planned_lr=[3e-4] * 10000, law="power", calibration=False)
        >>> f.trusted, round(f.final_loss, 3)
        (True, 3.212)
    """
    if law not in LAWS:
        raise ValueError(f"law must be one of {LAWS}, got {law!r}")
    if not (isinstance(confidence, (int, float)) and 0.0 < confidence < 1.0):
        raise ValueError(f"confidence must be in (0, 1), e.g. 0.8, got {confidence!r}")
    if warmup_steps is not None and not (isinstance(warmup_steps, (int, np.integer)) and warmup_steps >= 0):
        raise ValueError(f"warmup_steps must be None (found from the learning rate) or a whole number >= 0, "
                         f"got {warmup_steps!r}")
    if not (isinstance(max_nfev, (int, np.integer)) and max_nfev >= 1):
        raise ValueError(f"max_nfev must be a whole number >= 1, got {max_nfev!r}")
    history, plan = _rates(lr, "lr"), _rates(planned_lr, "planned_lr")
    try:
        s = np.asarray(steps, dtype=float).ravel()
        y = np.asarray(losses, dtype=float).ravel()
    except (TypeError, ValueError):
        raise ValueError("steps and losses must be sequences of numbers") from None
    if s.size != y.size:
        raise ValueError(f"steps and losses must have the same length, got {s.size} and {y.size}")
    if s.size and not (np.all(np.isfinite(s)) and np.all(s == np.round(s)) and s.min() >= 1
                       and np.all(np.diff(s) > 0)):
        raise ValueError("steps must be ascending whole numbers >= 1 (the optimizer steps completed)")
    if s.size and s.max() > history.size:
        raise ValueError(f"lr must hold the learning rate of every optimizer step up to the last of steps "
                         f"({int(s.max())}), got {history.size}")
    if not np.all(np.isfinite(y) & (y > 0)):
        raise ValueError("losses must be finite and > 0 (drop NaN evaluations before forecasting)")
    schedule = np.concatenate([history, plan])
    peak = float(schedule.max()) if schedule.size else 0.0
    if not peak > 0:
        raise ValueError("lr and planned_lr hold no positive learning rate: nothing to forecast against")
    prior = DEFAULT_PRIORS[law] if prior is None else prior
    if prior.law != law:
        raise ValueError(f"the prior is for law {prior.law!r}, not {law!r}")
    steps_i = s.astype(np.int64)
    eta = schedule / peak
    cumulative = np.cumsum(eta)
    cut = _warmup_cut(steps_i, cumulative, None if warmup_steps is None else int(warmup_steps))
    positive = cumulative[np.maximum(steps_i, 1) - 1] > 0
    keep = (steps_i > cut) & positive
    early = False
    if warmup_steps is None and keep.sum() < MIN_POINTS:
        # too few points past the transient yet (a run whose warm-up is long against its length): fit from the end
        # of the warm-up instead, transient included, and say so (an early forecast begins no cool-down)
        end = _warmup_end(steps_i, cumulative)
        if ((steps_i > end) & positive).sum() >= MIN_POINTS:
            cut, keep, early = end, (steps_i > end) & positive, True
    final_step = schedule.size
    base = dict(final_step=final_step, step=history.size, confidence=float(confidence), law=law, fit_after=cut,
                peak_lr=peak, points=int(keep.sum()), early=early, _lr=history, _planned=plan)
    nan = math.nan
    if keep.sum() < MIN_POINTS or final_step < 1:
        return Forecast(nan, (nan, nan), nan, False, f"{int(keep.sum())} points after the warm-up (step {cut}); "
                        f"a forecast needs {MIN_POINTS}", params={}, **base)
    t = steps_i[keep] - 1
    shape = dict(prior.shape)
    x = _drop_term(law, shape, eta, t)
    res, sigma = _fit(law, prior, cumulative[t], x, y[keep], int(max_nfev))
    if res is None or not np.all(np.isfinite(res.x)):
        return Forecast(nan, (nan, nan), nan, False, "the fit failed from every start", params={}, **base)
    l0, log_a, alpha = (float(v) for v in res.x[:3])
    params = {"L0": l0, "A": math.exp(log_a), "alpha": alpha,
              "B": math.exp(float(res.x[3])) if law != "power" else 0.0, **shape}
    final = float(_predict(law, params, eta, np.array([final_step - 1]))[0])
    smoothed = float(np.mean(y[keep][-3:]))
    interval = _interval(calibration, final, smoothed, float(confidence))
    base["smoothed_loss"] = smoothed
    problems = []
    if not res.success:
        problems.append(f"the fit did not converge in {max_nfev} evaluations")
    if not ALPHA_BOUNDS[0] * 1.05 < alpha < ALPHA_BOUNDS[1] * 0.95:
        problems.append(f"the exponent alpha = {alpha:.3g} is at its bound")
    reach = cumulative[-1] / cumulative[t[-1]]
    if reach > MAX_EXTRAPOLATION:
        problems.append(f"the plan sums {reach:.1f}x the learning rate seen so far (at most {MAX_EXTRAPOLATION:g})")
    if not (math.isfinite(final) and final > 0):
        problems.append(f"the forecast {final!r} is not a positive number")
    rms = float(np.sqrt(np.mean(np.square(res.fun[:t.size])))) * sigma
    ahead = _drop_term(law, shape, eta, np.array([t[-1], final_step - 1]))  # X at the last point and at the end
    if law != "power" and math.isfinite(final) and final > 0:
        unseen = params["B"] * float(ahead[1] - ahead[0])
        if unseen > MAX_DROP_SHARE * final:
            problems.append(f"the decay still planned is forecast to drop {unseen:.3g} ({unseen / final:.0%} of the "
                            f"forecast, more than {MAX_DROP_SHARE:.0%}): a drop that rests on the prior, not this run")
    if problems:
        return Forecast(final, interval, l0, False, "; ".join(problems), params=params, **base)
    drop = params["B"] * float(ahead[1])
    reason = (f"{law} law on {t.size} points after step {cut} (rms residual {rms:.2g}); the planned decay drops "
              f"{drop:.3g} at the end" + (f"; early: fitted from the end of the warm-up, fewer than {MIN_POINTS} "
                                          "points lie past its transient yet" if early else ""))
    return Forecast(final, interval, l0, True, reason, params=params, **base)


def _interval(calibration: Any, final: float, smoothed: float, confidence: float) -> tuple[float, float]:
    if calibration is False or not math.isfinite(final) or final <= 0:
        return (math.nan, math.nan)
    cal = default_calibration() if calibration is None else (
        calibration if isinstance(calibration, Calibration) else Calibration.from_json(calibration))
    if cal is None:
        return (math.nan, math.nan)
    return cal.interval(final, smoothed, confidence)


# ---------------------------------------------------------------------------------------------
# the horizon of the next run
# ---------------------------------------------------------------------------------------------
#: The horizons :func:`recommend_horizon` scans (log-spaced from the shortest to the cap) before it bisects.
HORIZON_GRID = 16
#: The relative precision of a recommended horizon (its bisection stops at this width, or at one step).
HORIZON_RTOL = 1e-3


@dataclass(frozen=True)
class HorizonRecommendation:
    """The horizon for the next run: the fewest steps of the same-shaped schedule whose forecast final loss is at
    most ``threshold`` x L0 (:func:`recommend_horizon`).

    Attributes:
        horizon_steps: that number of optimizer steps (None when there is none: see ``message``).
        horizon_interval: the horizons at which the lower and the upper end of the final loss' calibrated interval
            reach the target (the optimistic and the conservative horizon; ``inf`` when that end does not reach it
            within the cap, NaN without a calibration).
        final_loss: the law's final loss at ``horizon_steps`` (NaN without one); ``final_interval`` its interval.
        ratio: ``final_loss / converged_loss``.
        converged_loss: the L0 the threshold multiplies; ``target_loss`` = ``threshold`` x it.
        schedule: the :class:`~lightning_scaling.schedules.ScheduleShape` stretched (None when none was found).
        confidence: the interval's level (the forecast's).
        success: whether ``horizon_steps`` may be used; ``message`` says what it rests on, or why not.
    """

    horizon_steps: int | None
    horizon_interval: tuple[float, float]
    final_loss: float
    final_interval: tuple[float, float]
    ratio: float
    converged_loss: float
    threshold: float
    target_loss: float
    schedule: Any
    confidence: float
    success: bool
    message: str

    def __bool__(self) -> bool:
        return self.success


def recommend_horizon(fc: Forecast, *, threshold: float | None = None, schedule: str | None = None,
                      warmup_steps: int | None = None, peak_lr: float | None = None,
                      final_lr_ratio: float | None = None, decay_fraction: float | None = None,
                      max_steps_cap: int | None = None, converged_loss: float | None = None,
                      calibration: Calibration | str | Path | None | bool = None) -> HorizonRecommendation:
    """The fewest total steps T of a fixed-horizon schedule whose forecast final loss is at most ``threshold`` x L0.

    The law fitted by :func:`forecast` ([MPL] eq 4-5, its parameters ``fc.params``) is evaluated at the end of the
    run's schedule stretched to T steps (the same shape, warm-up, peak and floor:
    :func:`lightning_scaling.schedules.schedule_lr`), and T is found by a log-spaced scan of :data:`HORIZON_GRID`
    horizons from the end of the warm-up (or of the points left out) to the cap, then a bisection in log T to
    :data:`HORIZON_RTOL` (the final loss falls as T grows). The threshold defaults to [K]'s stopping factor
    ``1 + alpha_N / alpha_S`` (:func:`lightning_scaling.planning.stopping_factor`, [K] B.2/B.5): a run is long
    enough when its loss is within that factor of the converged loss.

    The interval is the final loss' own: at each T the split-conformal interval of :func:`forecast` around the
    law's final loss at T (the same calibration, ``g`` from the same smoothed loss), and the horizon interval
    the T at which its upper end (the conservative horizon) and its lower end reach the target. L0 is held at its
    point value: its own uncertainty is not in the interval, and it is the larger one on a single run (a run's
    prefix seldom pins its asymptote; pass ``converged_loss`` from a better source, such as a sweep's joint fit).

    Args:
        fc: a forecast of the run (:func:`forecast`).
        threshold: the multiple of L0 to reach (default :func:`~lightning_scaling.planning.stopping_factor`, 1.1).
        schedule: "cosine", "linear" or "wsd" (:data:`lightning_scaling.schedules.SHAPES`); default: the shape
            of the forecast's schedule (history and plan; :func:`~lightning_scaling.schedules.fit_shape`).
        warmup_steps, peak_lr, final_lr_ratio, decay_fraction: the stretched schedule's; default: those of the
            forecast's schedule (the peak: ``fc.peak_lr``; the law's summed learning rate is in its units, so another
            peak is an extrapolation the law was not fitted for).
        max_steps_cap: the longest horizon searched (default: the one whose summed learning rate is
            :data:`MAX_EXTRAPOLATION` x the summed learning rate seen, the farthest a trusted forecast reaches).
        converged_loss: the L0 the threshold multiplies (default: the forecast's, ``fc.converged_loss``).
        calibration: the interval's calibration, as :func:`forecast` takes it (False: no interval).

    Returns:
        A :class:`HorizonRecommendation`; ``success=False`` with a ``message`` when the forecast is untrusted, L0
        is at its bound (the curve has not bent), the schedule is none of the shapes, the target is not reached
        within the cap, or the horizon lies beyond the extrapolation a trusted forecast makes (its numbers are
        then still given).

    Raises:
        ValueError: a threshold or L0 that is not a positive number, an unknown shape, a schedule value out of
            range (:func:`~lightning_scaling.schedules.schedule_lr`), or a cap that is not a whole number >= 1.

    Example:
        >>> from lightning_scaling.schedules import schedule_lr
        >>> lr = schedule_lr("cosine", 20000, warmup_steps=500, peak_lr=1e-3)
        >>> steps = np.arange(1000, 10001, 250)
        >>> truth = {"L0": 3.0, "A": 20.0, "alpha": 0.5, "B": 0.1, **DEFAULT_PRIORS["mpl"].shape}
        >>> losses = _predict("mpl", truth, lr / lr.max(), steps - 1)
        >>> f = forecast(steps, losses, lr=lr[:10000], planned_lr=lr[10000:], calibration=False)
        >>> r = recommend_horizon(f, threshold=1.05)
        >>> r.success, r.horizon_steps < 20000, r.ratio <= 1.05
        (True, True, True)
    """
    from .planning import stopping_factor
    from .schedules import SHAPES, ScheduleShape, fit_shape

    threshold = stopping_factor() if threshold is None else threshold
    if not (isinstance(threshold, (int, float, np.floating)) and math.isfinite(threshold) and threshold > 0):
        raise ValueError(f"threshold must be a number > 0 (a multiple of L0, e.g. 1.1), got {threshold!r}")
    if schedule is not None and schedule not in SHAPES:
        raise ValueError(f"schedule must be one of {SHAPES} or None (the forecast's own), got {schedule!r}")
    if max_steps_cap is not None and not (isinstance(max_steps_cap, (int, np.integer)) and max_steps_cap >= 1):
        raise ValueError(f"max_steps_cap must be None or a whole number >= 1, got {max_steps_cap!r}")
    if converged_loss is not None and not (math.isfinite(converged_loss) and converged_loss > 0):
        raise ValueError(f"converged_loss must be None (the forecast's) or a number > 0, got {converged_loss!r}")
    full = np.concatenate([fc.lr, fc.planned_lr])
    found = fit_shape(full) if full.size else None
    if found is None:
        top = int(np.argmax(full)) if full.size else 0
        found = ScheduleShape(schedule or "cosine", top + 1 if top else 0, fc.peak_lr,
                              float(full[-1]) / fc.peak_lr if full.size and fc.peak_lr > 0 else 0.1)
        recognised = schedule is not None
    else:
        recognised = True
    shape = ScheduleShape(schedule or found.shape, found.warmup_steps if warmup_steps is None else warmup_steps,
                          found.peak_lr if peak_lr is None else peak_lr,
                          found.final_lr_ratio if final_lr_ratio is None else final_lr_ratio,
                          (found.decay_fraction if found.shape == "wsd" else 0.2) if decay_fraction is None
                          else decay_fraction)
    shape.lr(1)  # its values checked (ValueError)
    l0 = fc.converged_loss if converged_loss is None else float(converged_loss)
    target = threshold * l0
    nan2 = (math.nan, math.nan)

    def result(horizon, final=math.nan, interval=nan2, horizons=nan2, ok=False, message=""):
        return HorizonRecommendation(horizon, horizons, final, interval, final / l0 if l0 > 0 else math.nan, l0,
                                     float(threshold), target, shape if recognised else None, fc.confidence, ok,
                                     message)

    if not fc.trusted:
        return result(None, message=f"the forecast is untrusted: {fc.reason}")
    if not recognised:
        return result(None, message=f"the schedule is none of {SHAPES}: name the shape to stretch (schedule=)")
    if converged_loss is None and not l0 > 1e-6 * abs(fc.final_loss):
        return result(None, message="L0 is at its bound 0 (the curve has not bent yet): no multiple of it to reach")
    seen = float(np.sum(fc.lr)) / fc.peak_lr
    planned_mean = float(np.mean(shape.lr(max(fc.final_step, 1)))) / fc.peak_lr
    reach_cap = int(math.ceil(MAX_EXTRAPOLATION * seen / planned_mean)) if planned_mean > 0 else 1
    cap = reach_cap if max_steps_cap is None else int(max_steps_cap)
    shortest = max(shape.warmup_steps, fc.fit_after) + 1
    if cap < shortest:
        return result(None, message=f"the cap ({cap} steps) is shorter than the warm-up and the points left out "
                                    f"({shortest - 1} steps)")
    losses: dict[int, float] = {}

    def final_at(t: int) -> float:
        if t not in losses:
            losses[t] = float(_predict(fc.law, fc.params, shape.lr(t) / fc.peak_lr, np.array([t - 1]))[0])
        return losses[t]

    def interval_at(t: int) -> tuple[float, float]:
        if not math.isfinite(fc.smoothed_loss):
            return nan2
        return _interval(calibration, final_at(t), fc.smoothed_loss, fc.confidence)

    grid = np.unique(np.round(np.geomspace(shortest, cap, HORIZON_GRID)).astype(np.int64)).tolist()
    horizon = _smallest(grid, lambda t: final_at(t) <= target)
    if horizon is None:
        return result(None, message=f"{threshold:g} x L0 = {target:.4g} is not reached within {cap} steps (the law's "
                                    f"final loss there is {final_at(cap):.4g}, {final_at(cap) / l0:.3f} x L0)")
    ends = []
    for side in (0, 1):
        if math.isnan(interval_at(horizon)[side]):
            ends.append(math.nan)
        else:
            t = _smallest(grid, lambda t, side=side: interval_at(t)[side] <= target)
            ends.append(math.inf if t is None else float(t))
    final = final_at(horizon)
    what = (f"{horizon} steps of {shape.shape} (warm-up {shape.warmup_steps}, floor {shape.final_lr_ratio:.3g} x "
            f"peak) forecast {final:.4f} = {final / l0:.3f} x L0 ({l0:.4f}), at most {threshold:g} x L0")
    reach = float(np.sum(shape.lr(horizon))) / fc.peak_lr / seen if seen > 0 else math.inf
    if reach > MAX_EXTRAPOLATION:
        return result(horizon, final, interval_at(horizon), tuple(ends), False,
                      f"{what}; but that horizon sums {reach:.1f}x the learning rate seen (a trusted forecast "
                      f"reaches at most {MAX_EXTRAPOLATION:g}x)")
    if horizon == grid[0]:
        what += f" (already at the shortest horizon searched, the end of the first {shortest - 1} steps)"
    return result(horizon, final, interval_at(horizon), tuple(ends), True, what)


def _smallest(grid: list[int], ok: Any) -> int | None:
    """The smallest whole T in ``grid[0]..grid[-1]`` with ``ok(T)`` (true from some T on): the first grid point that
    is, then a bisection in log T to :data:`HORIZON_RTOL`; None when no grid point is."""
    below = None
    for t in grid:
        if ok(t):
            break
        below = t
    else:
        return None
    if below is None:
        return t
    lo, hi = below, t
    while hi - lo > max(1, HORIZON_RTOL * hi):
        mid = min(max(int(round(math.sqrt(lo * hi))), lo + 1), hi - 1)
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return hi


# ---------------------------------------------------------------------------------------------
# priors and calibration from finished runs
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Run:
    """A finished run for :func:`fit_prior` and :func:`forecast_samples`: its evaluations and every step's LR.

    ``group``: runs of one model on one data stream share L0, A and alpha in :func:`fit_prior`.
    """

    name: str
    steps: np.ndarray
    losses: np.ndarray
    lr: np.ndarray
    group: str = ""
    warmup_steps: int | None = None


def fit_prior(runs: Iterable[Run], law: str = "mpl", *, max_nfev: int = 100) -> SchedulePrior:
    """The drop term's prior from finished runs: per group (one model on one stream), a joint fit of the whole
    law, L0, A, alpha shared by the group's runs, B per group and the shape by all; the prior's B is the median of
    the groups' B, its log-sd their spread (within 0.25..1). A group whose decay drops less than :data:`NO_DROP`
    (a run that repeats its data, whose decay is masked by overfitting) is left out and the rest refitted.

    Raises:
        FitError: no group has a run whose learning rate decays.
        ValueError: an unknown law.
    """
    if law not in LAWS:
        raise ValueError(f"law must be one of {LAWS}, got {law!r}")
    if law == "power":
        return DEFAULT_PRIORS["power"]
    from scipy.optimize import least_squares

    groups: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]] = {}
    by_group: dict[str, list[Run]] = {}
    for run in runs:
        by_group.setdefault(run.group or run.name, []).append(run)
        eta = np.asarray(run.lr, dtype=float) / float(np.max(run.lr))
        z = np.cumsum(eta)
        st = np.asarray(run.steps, dtype=np.int64)
        cut = _warmup_cut(st, z, run.warmup_steps)
        keep = st > cut
        groups.setdefault(run.group or run.name, []).append((eta, z, st[keep] - 1, np.asarray(run.losses)[keep]))
    names = sorted(groups)
    decaying = [g for g in names if any(np.ptp(e[t[0]:]) > 0.1 for e, _, t, _ in groups[g] if t.size)]
    if not decaying:
        raise FitError("fit_prior needs finished runs whose learning rate decays after the warm-up")
    shape_keys = ("C", "beta", "gamma") if law == "mpl" else ("lam",)
    shape0 = dict(DEFAULT_PRIORS[law].shape)

    def unpack(p):
        n = len(decaying)
        shape = ({"C": math.exp(p[0]), "beta": p[1], "gamma": p[2]} if law == "mpl"
                 else {"lam": 1 - math.exp(p[0])})
        k = len(shape_keys)
        return shape, p[k:k + n], p[k + n:].reshape(n, 3)

    def residuals(p):
        shape, log_b, per = unpack(p)
        out = []
        for (l0, log_a, alpha), lb, g in zip(per, log_b, decaying):
            for eta, z, t, y in groups[g]:
                pred = l0 + math.exp(log_a) * z[t] ** (-alpha) - math.exp(lb) * _drop_term(law, shape, eta, t)
                out.append((pred - y) / max(_noise(y), 1e-3 * float(np.median(y))))
        return np.concatenate(out)

    if law == "mpl":
        p0, lo, hi = [math.log(shape0["C"]), shape0["beta"], shape0["gamma"]], [-12, 0.1, 0.0], [2, 6, 2]
    else:
        p0, lo, hi = [math.log(1 - shape0["lam"])], [math.log(1e-4)], [math.log(0.2)]
    for g in decaying:
        ys = np.concatenate([y for _, _, _, y in groups[g]])
        p0.append(math.log(0.1))
        lo.append(math.log(1e-6))
        hi.append(math.log(10 * ys.min()))
    for g in decaying:
        ys = np.concatenate([y for _, _, _, y in groups[g]])
        p0 += [0.8 * ys.min(), math.log(max(ys.max() - 0.8 * ys.min(), 1e-3)) + 0.4 * 8, 0.4]
        lo += [0.0, -50, ALPHA_BOUNDS[0]]
        hi += [ys.min(), 50, ALPHA_BOUNDS[1]]
    p0 = np.clip(p0, np.array(lo) + 1e-9, np.array(hi) - 1e-9)
    res = least_squares(residuals, p0, bounds=(lo, hi), max_nfev=max_nfev, x_scale="jac")
    shape, log_b, _ = unpack(res.x)
    shows = log_b > math.log(NO_DROP)
    if not shows.any():
        raise FitError("no group of runs shows a loss drop when the learning rate decays (all B below "
                       f"{NO_DROP:g}): the prior cannot be fitted on them")
    if not shows.all():  # a group whose decay drops nothing (a run that repeats its data): not in the prior
        kept = [g for g, ok in zip(decaying, shows) if ok]
        return fit_prior([r for g in kept for r in by_group[g]], law, max_nfev=max_nfev)
    spread = float(np.std(log_b)) if log_b.size > 1 else DEFAULT_PRIORS[law].B_log_sd
    return SchedulePrior(law, float(np.exp(np.median(log_b))), min(1.0, max(0.25, spread)),
                         {k: round(float(shape[k]), 6) for k in shape_keys}, tuple(decaying))


def forecast_samples(run: Run, fractions: Sequence[float] = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7),
                     **options: Any) -> list[tuple[str, float, float]]:
    """The ``(run, g, e)`` samples of one finished run for :func:`calibrate_forecast`: at each fraction of its steps,
    the trusted forecast ``L_hat`` of its final loss from the points so far (its own schedule as the plan),
    ``g = s / L_hat - 1`` and ``e = log(L_final / L_hat)``, L_final the mean of its last three losses against the
    forecast's mean at those steps (so that one noisy last evaluation does not set the truth)."""
    out = []
    for frac, f, truth in prefix_forecasts(run, fractions, **options):
        if f.trusted and truth > 0:
            s = float(np.mean(run.losses[run.steps <= f.step][-3:]))
            out.append((run.name, s / f.final_loss - 1.0, math.log(truth / f.final_loss)))
    return out


def prefix_forecasts(run: Run, fractions: Sequence[float], **options: Any):
    """``(fraction, forecast, truth)`` for each fraction of the run's last step: the forecast from the points at or
    before that step, truth the run's final loss as :func:`forecast_samples` defines it, mapped onto the forecast's
    final step (the final loss forecast x the mean ratio of loss to forecast over the last three evaluations)."""
    steps, losses, lr = np.asarray(run.steps, dtype=np.int64), np.asarray(run.losses, dtype=float), np.asarray(run.lr)
    out = []
    for frac in fractions:
        now = int(round(frac * lr.size))
        seen = steps <= now
        f = forecast(steps[seen], losses[seen], lr=lr[:now], planned_lr=lr[now:],
                     warmup_steps=run.warmup_steps, **options)
        truth = math.nan
        if math.isfinite(f.final_loss):
            tail = f.loss_at(steps[-3:])
            truth = f.final_loss * float(np.mean(losses[-3:])) / float(np.mean(tail))
        out.append((frac, f, truth))
    return out


def calibrate_forecast(runs: Iterable[Run], fractions: Sequence[float] = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7),
                       **options: Any) -> Calibration:
    """The split-conformal :class:`~lightning_scaling.calibration.Calibration` of the forecast's interval from
    finished runs (each run weighs 1; :func:`~lightning_scaling.calibration.calibrate`).

    Raises ValueError with fewer than two runs with a trusted forecast.
    """
    runs = list(runs)
    samples = [row for run in runs for row in forecast_samples(run, fractions, **options)]
    return calibrate(samples, edges=G_EDGES, sources=tuple(sorted({r.group or r.name for r in runs})))
