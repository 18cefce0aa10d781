"""Fitting scaling laws and learning curves with scipy.optimize.

* :func:`fit_power_law` -- ``L(x) = c + (scale/x)^alpha`` in log space ([K] eq 1.1-1.3, [H] eq 1.1).
* :func:`fit_learning_curve` -- ``L(t) = L_conv + (t_c/t)^alpha`` for one run ([K] eq 5.6 at fixed N),
  with an interval for the converged loss and a verdict on whether the fit can be trusted.
* :func:`fit_chinchilla` -- the Huber fit of ``L(N, D) = E + A/N^alpha + B/D^beta`` on log loss with
  log-sum-exp over the full initialisation grid of [C] appendix D.2.

Results are dataclasses that report themselves like scipy's ``OptimizeResult``: ``success`` and
``message`` say whether the numbers can be used; a failed fit never passes NaN off as a success.
Garbage input raises :class:`~lightning_scaling.errors.FitError`.
"""

from __future__ import annotations

import functools
import itertools
import math
import statistics
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from scipy.optimize import least_squares, minimize

from .errors import FitError
from .laws import UNITS, ChinchillaLaw, OverfittingLaw, PowerLaw

__all__ = [
    "PowerLawFit", "LearningCurveFit", "ChinchillaFit",
    "fit_power_law", "fit_learning_curve", "fit_chinchilla", "chinchilla_grid",
]


# ---------------------------------------------------------------------------------------------
# input checks shared by every fitter
# ---------------------------------------------------------------------------------------------
def _as_points(x, y, *, min_points: int, names: tuple[str, str] = ("x", "y")) -> tuple[np.ndarray, np.ndarray]:
    try:
        xa = np.asarray(x, dtype=float).ravel()
        ya = np.asarray(y, dtype=float).ravel()
    except (TypeError, ValueError):
        raise FitError(f"{names[0]} and {names[1]} must be sequences of numbers") from None
    if xa.shape != ya.shape:
        raise FitError(f"{names[0]} and {names[1]} must have the same length, got {xa.size} and {ya.size}")
    if xa.size < min_points:
        raise FitError(f"need at least {min_points} points to fit, got {xa.size}")
    if not (np.all(np.isfinite(xa)) and np.all(np.isfinite(ya))):
        raise FitError(f"{names[0]} and {names[1]} must be finite (drop NaN/inf points first)")
    if np.any(xa <= 0):
        raise FitError(f"{names[0]} must be > 0 for a power law")
    if np.any(ya <= 0):
        raise FitError(f"{names[1]} must be > 0 (losses are fitted in log space)")
    if np.unique(xa).size < min(3, min_points):
        raise FitError(f"need at least 3 distinct values of {names[0]}")
    return xa, ya


def _slopes(x: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Least-squares slopes of the straight lines through each row of ``ys`` against ``x`` (closed form: a tenth
    of ``np.polyfit``'s cost, which the live rule would pay at every evaluation)."""
    dx = x - x.mean()
    return (ys - ys.mean(axis=-1, keepdims=True)) @ dx / (dx @ dx)


def _check_decreasing(x: np.ndarray, y: np.ndarray) -> None:
    slope = float(_slopes(np.log(x), np.log(y)))
    if not slope < 0:
        raise FitError("the curve does not decrease with x: a decaying power law cannot describe it")


def noise_sd(values: Sequence[float]) -> float:
    """The noise of a sequence with a smooth trend: a robust standard deviation (1.4826 x the median absolute
    deviation) of its second differences over sqrt(6), since white noise of standard deviation sigma has second
    differences of variance 6 sigma^2 and a smooth trend adds little to them. NaN for fewer than 3 values.

    Example:
        >>> round(noise_sd(np.linspace(3.0, 2.0, 50)), 12)  # a straight line has no noise
        0.0
    """
    d2 = np.diff(np.asarray(values, dtype=float), 2)
    if d2.size == 0:
        return math.nan
    return 1.4826 * float(np.median(np.abs(d2 - np.median(d2)))) / math.sqrt(6.0)


@functools.lru_cache(maxsize=16)
def normal_quantile(p: float) -> float:
    """The standard normal quantile (stdlib ``statistics.NormalDist``, Wichura's AS241, exact to ~1e-16), cached:
    the fits ask for the same confidence at every evaluation, and scipy.stats' ``norm.ppf`` is far slower per call."""
    return statistics.NormalDist().inv_cdf(p)


def _interval(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    lo, hi = np.quantile(samples, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(lo), float(hi)


# ---------------------------------------------------------------------------------------------
# single power law with an optional constant
# ---------------------------------------------------------------------------------------------
@dataclass
class PowerLawFit:
    """Result of :func:`fit_power_law` (cf. scipy.optimize.OptimizeResult)."""

    law: PowerLaw | None
    success: bool
    message: str
    objective: float  # sum of squared log residuals
    n_points: int
    intervals: dict[str, tuple[float, float]] | None = None
    confidence: float = 0.95
    n_bootstrap: int = 0

    def __bool__(self) -> bool:
        return self.success


def _log_prediction(theta: np.ndarray, logx: np.ndarray, fit_c: bool, c_fixed: float):
    """``(log(c + exp(term)), term, alpha)`` with term = alpha (log s - log x), theta = (log s, log alpha[, c])."""
    alpha = math.exp(theta[1])
    c = theta[2] if fit_c else c_fixed
    term = alpha * (theta[0] - logx)
    return (np.logaddexp(math.log(c), term) if c > 0 else term), term, alpha


def _log_residuals(theta: np.ndarray, logx: np.ndarray, logy: np.ndarray, fit_c: bool, c_fixed: float,
                   weights: np.ndarray | None = None) -> np.ndarray:
    """log(c + exp(alpha (log s - log x))) - log y, with theta = (log s, log alpha[, c])."""
    r = _log_prediction(theta, logx, fit_c, c_fixed)[0] - logy
    return r if weights is None else r * weights


def _log_jacobian(theta: np.ndarray, logx: np.ndarray, logy: np.ndarray, fit_c: bool, c_fixed: float,
                  weights: np.ndarray | None = None) -> np.ndarray:
    """The analytic Jacobian of :func:`_log_residuals` (columns: log s, log alpha[, c])."""
    pred, term, alpha = _log_prediction(theta, logx, fit_c, c_fixed)
    share = np.exp(term - pred)  # d pred / d term
    cols = [share * alpha, share * term] + ([np.exp(-pred)] if fit_c else [])
    jac = np.column_stack(cols)
    return jac if weights is None else jac * weights[:, None]


def best_start(starts: list, residuals: Callable[[np.ndarray], np.ndarray]) -> list:
    """The one start, of several, whose residuals have the smallest sum of squares: a screen before the optimizer,
    which then runs once instead of once per start (the fits run at every evaluation of a live run).

    Args:
        starts: candidate parameter vectors.
        residuals: the residuals at a parameter vector.

    Returns:
        A list of the best start, or all of ``starts`` when none has finite residuals.
    """
    costs = [float(np.sum(np.square(residuals(np.asarray(th, dtype=float))))) for th in starts]
    return [starts[int(np.nanargmin(costs))]] if np.isfinite(costs).any() else starts


def solve_from_starts(residuals: Callable, jacobian: Callable, starts: list, args: tuple, bounds: tuple, *,
                      screen: bool = True, tol: float = 1e-10, max_nfev: int = 500):
    """scipy's box-bounded least squares (``dogbox``, ``x_scale="jac"``) from each of ``starts`` (only the best of
    them, :func:`best_start`, when ``screen``); the result with the lowest cost, or None when every start failed.

    ``dogbox`` is a dogleg in rectangular trust regions, made for box bounds like these (scipy's
    ``least_squares``); ``max_nfev`` bounds the cost of one start, which the live rule pays at every evaluation.
    """
    if screen:
        starts = best_start(starts, lambda th: residuals(th, *args))
    best = None
    for theta0 in starts:
        try:
            res = least_squares(residuals, theta0, jac=jacobian, args=args, method="dogbox", x_scale="jac",
                                bounds=bounds, xtol=tol, ftol=tol, gtol=tol, max_nfev=max_nfev)
        except (ValueError, FloatingPointError):  # pragma: no cover - defensive
            continue
        if best is None or res.cost < best.cost:
            best = res
    return best


#: The most residual evaluations one learning-curve fit may take (the live rule fits at every evaluation: its cost must
#: stay bounded on every curve shape; a fit that needs more, e.g. on a noisy plateau, did not converge).
CURVE_MAX_NFEV = 40
#: How far (in e-folds) the fitted scale of a power law may lie from the range of the data it is fitted to.
LOG_SCALE_MARGIN = 600.0


def _solve_power_law(logx: np.ndarray, logy: np.ndarray, c_mode: bool | float, c_bounds: tuple[float, float],
                     start: np.ndarray | None = None, weights: np.ndarray | None = None, screen: bool = False,
                     extra_starts: Sequence[np.ndarray] = (), max_nfev: int = 2000):
    """Least squares in log space; returns (theta, cost, success, message, jacobian).

    ``start``: the only start (bootstrap resamples); else the standard starts plus ``extra_starts`` (e.g. the
    previous fit's optimum). ``screen``: run the optimizer only from the start with the lowest initial cost
    (:func:`best_start`). The solver: :func:`solve_from_starts`.
    """
    y = np.exp(logy)
    fit_c = c_mode is True
    c_fixed = 0.0 if c_mode is False else (0.0 if fit_c else float(c_mode))
    if start is not None:
        starts = [start]
    elif fit_c:
        lo, hi = c_bounds
        cs = lo + np.array([0.0, 0.5, 0.8, 0.95]) * (hi - lo)
        starts = [np.append(theta, c0) for theta, c0 in zip(_linear_starts(logx, y, cs), cs)]
    else:
        starts = list(_linear_starts(logx, y, np.array([c_fixed])))
    if start is None:
        starts += [np.asarray(th, dtype=float) for th in extra_starts]
    # log s within 600 e-folds of the data: every scale the fit may reach is a finite, positive float (a flat
    # curve otherwise sends log s past exp's range as alpha falls to its bound)
    s_lo, s_hi = max(float(logx.min()) - LOG_SCALE_MARGIN, -700.0), min(float(logx.max()) + LOG_SCALE_MARGIN, 700.0)
    if fit_c:
        bounds = ([s_lo, math.log(1e-4), c_bounds[0]], [s_hi, math.log(20.0), c_bounds[1]])
        inner = ([s_lo + 1e-9, math.log(1e-4) + 1e-9, c_bounds[0]], [s_hi - 1e-9, math.log(20.0) - 1e-9, c_bounds[1]])
    else:
        bounds = ([s_lo, math.log(1e-4)], [s_hi, math.log(20.0)])
        inner = ([s_lo + 1e-9, math.log(1e-4) + 1e-9], [s_hi - 1e-9, math.log(20.0) - 1e-9])
    starts = [np.clip(theta0, *inner) for theta0 in starts]
    best = solve_from_starts(_log_residuals, _log_jacobian, starts, (logx, logy, fit_c, c_fixed, weights), bounds,
                             screen=screen, tol=1e-12, max_nfev=max_nfev)
    if best is None:
        return None, math.inf, False, "the optimizer failed from every start", None
    ok = bool(best.status > 0 and np.all(np.isfinite(best.x)))
    return best.x, float(2 * best.cost), ok, best.message, best.jac


def _linear_starts(logx: np.ndarray, y: np.ndarray, cs: np.ndarray) -> np.ndarray:
    """Starts ``(log s, log alpha)``, one row per constant in ``cs``: the least-squares straight line through
    log(y - c) against log x (ordinary regression in closed form, all constants at once)."""
    red = np.log(np.maximum(y[None, :] - cs[:, None], 1e-12 * np.max(y)))
    slope = _slopes(logx, red)
    intercept = red.mean(axis=1) - slope * logx.mean()
    alpha = np.maximum(-slope, 1e-3)
    return np.column_stack([intercept / alpha, np.log(alpha)])


def _theta_to_law(theta: np.ndarray, c_mode, unit: str, source: str) -> PowerLaw:
    c = float(theta[2]) if c_mode is True else (0.0 if c_mode is False else float(c_mode))
    return PowerLaw(scale=math.exp(theta[0]), exponent=math.exp(theta[1]), irreducible=max(c, 0.0), unit=unit,
                    source=source)


def fit_power_law(x, y, *, unit: str = "tokens", irreducible: float = 0.0, fit_irreducible: bool = False,
                  bootstrap: int = 0, seed: int | None = None, confidence: float = 0.95,
                  progress: Callable[[int], None] | None = None) -> PowerLawFit:
    """Fit ``L(x) = irreducible + (scale/x)^exponent`` by least squares on log L ([K] eq 1.1-1.3).

    Args:
        x, y: positive, finite points (e.g. tokens and loss), at least 3 (4 when fitting the constant).
        unit: the unit of x, one of :data:`lightning_scaling.laws.UNITS`.
        irreducible: the constant L_inf held fixed (a number >= 0); 0 is Kaplan's pure power law.
        fit_irreducible: fit L_inf instead ([H] eq 1.1, bounded to [0, min(y))); ``irreducible`` must then be 0.
        bootstrap: number of resamples (with replacement) for percentile intervals of the parameters.
        seed: random seed of the bootstrap.
        confidence: level of the bootstrap intervals.
        progress: called with the number of bootstrap resamples done after each one (e.g. a progress bar).

    Raises:
        FitError: too few points, non-finite or non-positive values, or a curve that does not decrease.
    """
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
    if isinstance(irreducible, bool):
        raise TypeError("irreducible is the fixed constant L_inf (a number >= 0); to fit it, pass fit_irreducible=True")
    if not (isinstance(irreducible, (int, float)) and math.isfinite(irreducible) and irreducible >= 0):
        raise ValueError(f"irreducible must be a finite number >= 0, got {irreducible!r}")
    if fit_irreducible and irreducible:
        raise ValueError("give a fixed irreducible or fit_irreducible=True, not both")
    irreducible = True if fit_irreducible else float(irreducible)  # the solver's mode: fit it, or hold it fixed
    if int(bootstrap) < 0 or not (0 < confidence < 1):
        raise ValueError("bootstrap must be >= 0 and confidence in (0, 1)")
    xa, ya = _as_points(x, y, min_points=4 if irreducible is True else 3)
    _check_decreasing(xa, ya)
    if irreducible is not True and irreducible is not False and irreducible >= ya.min():
        raise FitError(f"the fixed irreducible loss {irreducible:g} is not below every loss (min {ya.min():g})")
    c_bounds = (0.0, float(ya.min()) * (1 - 1e-9))
    logx, logy = np.log(xa), np.log(ya)
    theta, cost, ok, message, _ = _solve_power_law(logx, logy, irreducible, c_bounds)
    if theta is None or not ok:
        return PowerLawFit(None, False, f"did not converge: {message}", cost, xa.size)
    law = _theta_to_law(theta, irreducible, unit, "fit_power_law")
    intervals = None
    if bootstrap:
        rng = np.random.default_rng(seed)
        samples = []
        for done in range(1, int(bootstrap) + 1):
            counts = rng.multinomial(xa.size, np.full(xa.size, 1 / xa.size)).astype(float)
            if np.count_nonzero(counts) >= 3:
                th, _, ok_b, _, _ = _solve_power_law(logx, logy, irreducible, c_bounds, start=theta,
                                                     weights=np.sqrt(counts))
                if th is not None and ok_b:
                    samples.append([math.exp(th[0]), math.exp(th[1]),
                                    th[2] if irreducible is True else law.irreducible])
            if progress is not None:
                progress(done)
        if len(samples) < max(10, bootstrap // 2):
            return PowerLawFit(law, False, "bootstrap failed: too few resamples converged", cost, xa.size)
        s = np.asarray(samples)
        intervals = {name: _interval(s[:, i], confidence)
                     for i, name in enumerate(("scale", "exponent", "irreducible"))}
    return PowerLawFit(law, True, "converged", cost, xa.size, intervals, confidence, int(bootstrap))


# ---------------------------------------------------------------------------------------------
# learning curve of one run
# ---------------------------------------------------------------------------------------------
@dataclass
class LearningCurveFit:
    """Result of :func:`fit_learning_curve`: ``L(t) = converged_loss + (scale/t)^exponent``.

    ``trusted`` is False (with ``reason``) when the numbers should not drive a decision: the
    optimizer failed, the converged loss sits on a bound (the curve has not bent yet), or its
    interval is wider than ``max_relative_width`` of the estimate.
    """

    law: PowerLaw | None
    converged_loss: float
    exponent: float
    scale: float
    interval: tuple[float, float]
    success: bool
    trusted: bool
    reason: str
    n_points: int
    rmse: float  # root mean square of the log residuals

    @property
    def message(self) -> str:
        return self.reason

    def __bool__(self) -> bool:
        return self.success


def fit_learning_curve(t, loss, *, irreducible: float = 0.0, time_axis: str = "steps",
                       confidence: float = 0.9, max_relative_width: float = 0.1,
                       warm_start: Sequence[float] | None = None) -> LearningCurveFit:
    """Fit ``L(t) = L_conv + (t_c/t)^alpha`` to one run's losses ([K] eq 5.6 at fixed N).

    ``L_conv`` is bounded to ``[irreducible, min(loss))`` (docs/science.md 9: alpha > 0, L_conv between the
    irreducible loss and the lowest loss seen). The interval of ``L_conv`` comes from the Gauss-Newton
    covariance of the log-space least squares (normal approximation at ``confidence``).

    Args:
        t: time of each point, > 0: optimizer steps, or the summed learning rate ([T]).
        loss: the monitored loss at those times.
        irreducible: a known floor of the loss (e.g. L(D) for the data seen, or the data entropy).
        time_axis: what ``t`` counts, "steps" or "lr_sum" (the returned law's ``unit``).
        confidence: level of the converged-loss interval.
        max_relative_width: an interval wider than this fraction of L_conv makes the fit untrusted.
        warm_start: ``(converged_loss, scale, exponent)`` of an earlier fit to (most of) the same points: one
            more candidate start. In a live run each fit adds one point, so the previous optimum starts the
            optimizer a few iterations from the new one.
    """
    ta, la = _as_points(t, loss, min_points=4, names=("t", "loss"))
    order = np.argsort(ta)
    ta, la = ta[order], la[order]
    _check_decreasing(ta, la)
    floor = float(irreducible)
    if not (math.isfinite(floor) and floor >= 0):
        raise ValueError("irreducible must be a finite number >= 0")
    if floor >= la.min():
        raise FitError(f"the floor {floor:g} is not below every loss (min {la.min():g})")
    logx, logy = np.log(ta), np.log(la)
    c_bounds = (floor, float(la.min()) * (1 - 1e-6))
    extra = []
    if warm_start is not None and all(math.isfinite(v) for v in warm_start) and min(warm_start[1:]) > 0:
        c0, scale0, exponent0 = (float(v) for v in warm_start)
        extra.append(np.array([math.log(scale0), math.log(exponent0), c0]))
    theta, cost, ok, message, jac = _solve_power_law(logx, logy, True, c_bounds, screen=True, extra_starts=extra,
                                                     max_nfev=CURVE_MAX_NFEV)
    nan = float("nan")
    if theta is None or not ok:
        return LearningCurveFit(None, nan, nan, nan, (nan, nan), False, False, f"did not converge: {message}",
                                ta.size, nan)
    law = _theta_to_law(theta, True, time_axis, "fit_learning_curve")
    c = law.irreducible
    rmse = math.sqrt(cost / ta.size)
    dof = max(ta.size - 3, 1)
    try:
        cov = np.linalg.pinv(jac.T @ jac) * (cost / dof)
        sd = math.sqrt(max(cov[2, 2], 0.0))
    except (np.linalg.LinAlgError, ValueError):  # pragma: no cover - defensive
        sd = math.inf
    z = normal_quantile(0.5 + confidence / 2)
    interval = (float(max(c - z * sd, floor)), float(min(c + z * sd, float(la.min()))))
    trusted, reason = True, "ok"
    span = c_bounds[1] - c_bounds[0]
    if c <= floor + 1e-6 * max(span, 1e-12):
        trusted, reason = False, "converged loss at its lower bound: the curve has not bent yet"
    elif c >= c_bounds[1] - 1e-6 * max(span, 1e-12):
        trusted, reason = False, "converged loss at the lowest loss seen: the curve has flattened (or turned up)"
    elif not math.isfinite(sd) or 2 * z * sd > max_relative_width * c:
        trusted, reason = False, f"converged-loss interval too wide (+-{z * sd:.3g} around {c:.4g})"
    return LearningCurveFit(law, c, law.exponent, law.scale, interval, True, trusted, reason, ta.size, rmse)


# ---------------------------------------------------------------------------------------------
# Chinchilla: Huber on log loss with log-sum-exp ([C] appendix D.2)
# ---------------------------------------------------------------------------------------------
@dataclass
class ChinchillaFit:
    """Result of :func:`fit_chinchilla`."""

    law: ChinchillaLaw | None
    objective: float  # the Huber objective (sum over points) at the optimum
    success: bool
    message: str
    n_points: int
    n_starts: int
    params: np.ndarray = field(repr=False, default=None)  # (a, b, e, alpha, beta); A, B, E = exp(a, b, e)
    intervals: dict[str, tuple[float, float]] | None = None
    confidence: float = 0.95
    n_bootstrap: int = 0

    def __bool__(self) -> bool:
        return self.success


#: The upper bound of the log-coefficients a, b and e of :func:`fit_chinchilla` (A = exp(a), ...): far above any
#: loss coefficient (the [C] fit has a = 5.98), far below where exp() overflows.
CHINCHILLA_LOG_BOUND = 200.0


def chinchilla_grid() -> np.ndarray:
    """The initialisation grid of [C] appendix D.2: rows of (a, b, e, alpha, beta); 4500 starts."""
    alphas = np.arange(0.0, 2.01, 0.5)
    es = np.arange(-1.0, 1.01, 0.5)
    abs_ = np.arange(0.0, 25.01, 5.0)
    return np.array([(a, b, e, al, be) for a, b, e, al, be in itertools.product(abs_, abs_, es, alphas, alphas)])


def _huber(r: np.ndarray, delta: float) -> tuple[np.ndarray, np.ndarray]:
    """Huber loss of residuals and its derivative."""
    grad = np.clip(r, -delta, delta)
    value = grad * (r - 0.5 * grad)  # 0.5 r^2 inside [-delta, delta], delta (|r| - delta/2) outside
    return value, grad


def _chinchilla_rows(p: np.ndarray, logn: np.ndarray, logd: np.ndarray, logl: np.ndarray, delta: float,
                     weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Huber objectives of k independent parameter rows ``p`` (k x 5) and their gradients (k x 5).

    Row j of ``weights`` (k x n) weighs the points of problem j (bootstrap counts); None = all 1.
    """
    a, b, e, al, be = (p[:, i:i + 1] for i in range(5))
    t1 = a - al * logn
    t2 = b - be * logd
    t3 = np.broadcast_to(e, t1.shape)
    m = np.maximum(np.maximum(t1, t2), t3)  # log-sum-exp of three terms, written out for speed
    x1, x2, x3 = np.exp(t1 - m), np.exp(t2 - m), np.exp(t3 - m)
    s = x1 + x2 + x3
    r = m + np.log(s) - logl
    value, dr = _huber(r, delta)
    if weights is not None:
        value, dr = value * weights, dr * weights
    dr = dr / s  # d objective / d term_k = dr * softmax_k
    w1, w2, w3 = x1 * dr, x2 * dr, x3 * dr
    grad = np.stack([w1.sum(1), w2.sum(1), w3.sum(1), -(w1 @ logn), -(w2 @ logd)], axis=1)
    return value.sum(1), grad


def _chinchilla_objective(flat: np.ndarray, logn: np.ndarray, logd: np.ndarray, logl: np.ndarray, delta: float,
                          weights: np.ndarray | None) -> tuple[float, np.ndarray]:
    """The sum of the independent objectives of the rows stacked in ``flat``, and its gradient (for scipy)."""
    values, grad = _chinchilla_rows(flat.reshape(-1, 5), logn, logd, logl, delta, weights)
    return float(values.sum()), grad.ravel()


def _chinchilla_single(x0, logn, logd, logl, delta, weights=None, tol=1e-12):
    # a, b and e are bounded above (exp(CHINCHILLA_LOG_BOUND) is no loss coefficient): on data that do not pin them
    # the optimum drifts off to infinity, which would take every iteration; at the bound it stops, and is reported
    x0 = np.minimum(np.asarray(x0, dtype=float), [CHINCHILLA_LOG_BOUND] * 3 + [np.inf] * 2)
    res = minimize(_chinchilla_objective, x0, args=(logn, logd, logl, delta, weights), jac=True,
                   method="L-BFGS-B", bounds=[(None, CHINCHILLA_LOG_BOUND)] * 3 + [(None, None)] * 2,
                   options={"maxiter": 5000, "ftol": tol, "gtol": 1e-10})
    return res


def fit_chinchilla(n_params, n_tokens, loss, *, delta: float = 1e-3, bootstrap: int = 0, seed: int | None = None,
                   confidence: float = 0.95, grid: np.ndarray | None = None, polish: int = 32,
                   stacked_iterations: int = 10, screen: int = 1000,
                   progress: Callable[[int], None] | None = None) -> ChinchillaFit:
    """Fit ``L(N, D) = E + A/N^alpha + B/D^beta`` as in [C] appendix D.2.

    Minimises ``sum_i Huber_delta(LSE(a - alpha log N_i, b - beta log D_i, e) - log L_i)`` with L-BFGS from
    every point of the [C] grid (``chinchilla_grid()``, 4500 starts). All starts first descend at once:
    the problems are independent, so ``stacked_iterations`` iterations of one L-BFGS-B run on the
    stacked parameters with the summed objective move every start downhill together (one vectorised
    numpy evaluation per iteration). The ``screen`` best then descend together for twice as many
    iterations, and the ``polish`` best distinct end points are refined one by one with L-BFGS-B to
    full tolerance; the best is returned. ``benchmarks/bench_fit.py`` checks that this reaches the
    optimum of a plain loop of L-BFGS-B over every grid point. Bootstrap resamples are fitted one by
    one with L-BFGS-B, warm-started at the optimum.

    Args:
        n_params, n_tokens, loss: one entry per training run, all > 0 and finite (at least 6 runs).
        delta: the Huber threshold ([C]: 1e-3).
        bootstrap: number of resamples of the runs for percentile intervals of E, A, B, alpha, beta.
        seed: seed of the bootstrap.
        grid: starting points (rows of a, b, e, alpha, beta); default the full [C] grid.
        stacked_iterations, screen, polish: the sizes of the three stages above.
        progress: called with the number of bootstrap resamples done after each one (e.g. a progress bar).
    """
    if not (delta > 0 and math.isfinite(delta)):
        raise ValueError("delta must be a finite number > 0")
    if int(bootstrap) < 0 or not (0 < confidence < 1):
        raise ValueError("bootstrap must be >= 0 and confidence in (0, 1)")
    n, d = _as_points(n_params, n_tokens, min_points=6, names=("n_params", "n_tokens"))
    _, l = _as_points(n_params, loss, min_points=6, names=("n_params", "loss"))
    logn, logd, logl = np.log(n), np.log(d), np.log(l)
    starts = chinchilla_grid() if grid is None else np.asarray(grid, dtype=float).reshape(-1, 5)

    ends = starts
    for iterations, keep in ((stacked_iterations, screen), (2 * stacked_iterations, None)):
        stacked = minimize(_chinchilla_objective, ends.ravel(), args=(logn, logd, logl, delta, None), jac=True,
                           method="L-BFGS-B", options={"maxiter": int(iterations), "ftol": 0.0, "gtol": 0.0})
        ends = stacked.x.reshape(-1, 5)
        values = _chinchilla_rows(ends, logn, logd, logl, delta, None)[0]
        values[~np.all(np.isfinite(ends), axis=1)] = np.inf
        if keep is not None:  # the most promising starts go on descending together
            best_rows = np.argsort(values)[: int(keep)]
            ends, values = ends[best_rows], values[best_rows]
    order = np.argsort(values)
    picked: list[np.ndarray] = []
    for i in order:
        if not np.all(np.isfinite(ends[i])):
            continue
        if all(np.max(np.abs(ends[i] - q)) > 1e-3 for q in picked):
            picked.append(ends[i])
        if len(picked) >= polish:
            break
    best = None
    for x0 in picked:
        res = _chinchilla_single(x0, logn, logd, logl, delta)
        if np.all(np.isfinite(res.x)) and (best is None or res.fun < best.fun):
            best = res
    if best is None:
        return ChinchillaFit(None, math.inf, False, "no start converged to finite parameters", n.size, len(starts))
    a, b, e, al, be = best.x
    if not (al > 0 and be > 0):
        return ChinchillaFit(None, float(best.fun), False,
                             f"optimum has non-positive exponents (alpha={al:.3g}, beta={be:.3g}): the data do not "
                             "decrease with N and D", n.size, len(starts), best.x)
    if max(a, b, e) >= CHINCHILLA_LOG_BOUND * (1 - 1e-9):
        return ChinchillaFit(None, float(best.fun), False,
                             f"optimum at the bound of the log-coefficients (a={a:.3g}, b={b:.3g}, e={e:.3g}): the "
                             "data do not pin A, B and E; fit runs that span more N and D", n.size, len(starts), best.x)
    law = ChinchillaLaw(math.exp(e), math.exp(a), math.exp(b), al, be, source="fit_chinchilla")
    message = "converged" if best.success else f"stopped: {best.message}"
    intervals = None
    if bootstrap:
        rng = np.random.default_rng(seed)
        weights = rng.multinomial(n.size, np.full(n.size, 1 / n.size), size=int(bootstrap)).astype(float)
        rows = []
        for done, w in enumerate(weights, 1):  # one warm-started L-BFGS-B per resample
            res = _chinchilla_single(best.x, logn, logd, logl, delta, w[None, :], tol=1e-10)
            if np.all(np.isfinite(res.x)):
                rows.append(res.x)
            if progress is not None:
                progress(done)
        p = np.asarray(rows).reshape(-1, 5)
        samples = {"E": np.exp(p[:, 2]), "A": np.exp(p[:, 0]), "B": np.exp(p[:, 1]), "alpha": p[:, 3], "beta": p[:, 4]}
        intervals = {k: _interval(v, confidence) for k, v in samples.items()}
    return ChinchillaFit(law, float(best.fun), bool(best.success), message, n.size, len(starts), best.x, intervals,
                         confidence, int(bootstrap))


# ---------------------------------------------------------------------------------------------
# Kaplan's L(N, D) with overfitting ([K] eq 1.5)
# ---------------------------------------------------------------------------------------------
@dataclass
class OverfittingFit:
    """Result of :func:`fit_overfitting_law` (cf. scipy.optimize.OptimizeResult)."""

    law: OverfittingLaw | None
    success: bool
    message: str
    objective: float  # sum of squared log residuals
    n_points: int
    rmse: float  # root mean square of the log residuals

    def __bool__(self) -> bool:
        return self.success


def _overfitting_residuals(theta: np.ndarray, logn: np.ndarray, logd: np.ndarray, logy: np.ndarray) -> np.ndarray:
    """log L(N, D) - log y with theta = (log N_c, log D_c, alpha_N, alpha_D) ([K] eq 1.5)."""
    log_nc, log_dc, a_n, a_d = theta
    return a_d * np.logaddexp((a_n / a_d) * (log_nc - logn), log_dc - logd) - logy


def _overfitting_jacobian(theta: np.ndarray, logn: np.ndarray, logd: np.ndarray, logy: np.ndarray) -> np.ndarray:
    """d residual / d theta of :func:`_overfitting_residuals`: with u = (alpha_N/alpha_D)(log N_c - log N),
    v = log D_c - log D and w = e^u / (e^u + e^v), the residual is alpha_D logaddexp(u, v) - log y."""
    log_nc, log_dc, a_n, a_d = theta
    u = (a_n / a_d) * (log_nc - logn)
    lse = np.logaddexp(u, log_dc - logd)
    w = np.exp(u - lse)
    return np.column_stack([a_n * w, a_d * (1.0 - w), w * (log_nc - logn), lse - w * u])


def fit_overfitting_law(n_params, n_tokens, loss) -> OverfittingFit:
    """Fit ``L(N, D) = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D`` ([K] eq 1.5) by least squares on log L.

    Each point is one run's converged loss (e.g. ``corpus.curves.converged_loss``) at its N and D; the sweep
    must vary both (at least 5 runs, 3 model sizes, 2 dataset sizes). scipy's bounded ``least_squares``
    (:func:`solve_from_starts`, with the analytic Jacobian) from a small grid of starts (36), the best kept.
    ``law.data_law(N)`` is the floor DataLimitGap gives a model of N parameters.

    Raises:
        FitError: too few points, non-finite or non-positive values, or a sweep that does not vary N and D.
    """
    n, d = _as_points(n_params, n_tokens, min_points=5, names=("n_params", "n_tokens"))  # >= 3 model sizes
    _, y = _as_points(n_params, loss, min_points=5, names=("n_params", "loss"))
    if np.unique(d).size < 2:
        raise FitError("L(N, D) needs runs at >= 2 dataset sizes")
    logn, logd, logy = np.log(n), np.log(d), np.log(y)
    # every start is run (no screen): a sweep is fitted once, off the training path, so robustness beats speed
    starts = list(itertools.product((5.0, 10.0, 15.0), (5.0, 10.0, 15.0), (0.1, 0.3), (0.1, 0.3)))
    best = solve_from_starts(_overfitting_residuals, _overfitting_jacobian, starts, (logn, logd, logy),
                             ([-50.0, -50.0, 1e-3, 1e-3], [100.0, 100.0, 3.0, 3.0]), screen=False)
    if best is None or not np.all(np.isfinite(best.x)) or best.status <= 0:
        return OverfittingFit(None, False, "did not converge from any start", math.inf, n.size, math.nan)
    log_nc, log_dc, a_n, a_d = (float(v) for v in best.x)
    law = OverfittingLaw(math.exp(log_nc), math.exp(log_dc), a_n, a_d, source="fit_overfitting_law")
    cost = float(2 * best.cost)
    return OverfittingFit(law, True, "converged", cost, n.size, math.sqrt(cost / n.size))
