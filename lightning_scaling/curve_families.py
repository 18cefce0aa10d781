"""Learning-curve families and the model-averaged prediction of a run's converged loss.

The stopping rule needs ``L_conv``, the loss a run would reach if trained on. Two families are fitted to
the points seen so far (time ``t``: optimizer steps, or the summed learning rate of [T]):

* ``power``: ``L(t) = L_conv + (t_c/t)^alpha`` ([K] eq 5.6 at fixed N), fitted by
  :func:`~lightning_scaling.fitting.fit_learning_curve`;
* ``exponential``: ``L(t) = L_conv + a exp(-b t / t_last)``, the saturating form of a run that repeats its
  data: the value of repeated tokens decays exponentially with the number of repetitions ([M] eq 5,
  docs/science.md section 7), so a data-limited curve approaches its floor exponentially rather than as a power law
  (the ``exp3`` family of Domhan et al. 2015);
* ``effective_data`` (opt-in, alone, constant learning rate only): ``L(t) = L_conv + A ln((1 + R*)/z(t))``
  with ``z`` the effective data of [M] eq 5 in epochs (:class:`EffectiveDataCurve`,
  :func:`fit_effective_data_curve`); it needs the steps of one epoch, and is not part of ``average``.

``average`` combines the first two with equal weights over the trusted ones, the model averaging of Domhan,
Springenberg & Hutter 2015 ("Speeding up automatic hyperparameter optimization of deep neural networks by
extrapolation of learning curves", IJCAI) in its simplest form. Both families are misspecified on real curves (the
power law runs on below the data-limited plateau, the exponential flattens too soon) and their residuals are
correlated, so likelihood weights (BIC) are nearly all-or-nothing and pick the wrong one about as often as the right
one; the equal-weight combination is the robust choice under misspecification (the "forecast combination puzzle",
Clemen 1989; Stock & Watson 2004).
Pure: numpy and scipy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import brentq

from .errors import FitError
from .results import PredictionResult
from .fitting import CURVE_MAX_NFEV, fit_learning_curve, normal_quantile, solve_from_starts

#: The curve families :func:`predict_converged` knows: ``average`` (power and exponential, weighted) and the
#: opt-in ``effective_data`` (alone; needs ``epoch_steps``).
FAMILIES = ("power", "exponential", "average", "effective_data")
#: The bounds of R* in :func:`fit_effective_data_curve` (repetitions at which the value of repeated data has
#: decayed by 1/e; [M] fits 15.39 on C4, the recorded corpus needs 3-40 run by run).
R_STAR_BOUNDS = (0.5, 100.0)
#: The most residual evaluations one effective-data fit may take (its three parameters need more than the other
#: families; still bounded, as the live rule fits at every evaluation).
EFFECTIVE_DATA_MAX_NFEV = 100


@dataclass(frozen=True)
class ExponentialCurve:
    """``L(t) = converged_loss + amplitude * exp(-rate * t / t_ref)``."""

    converged_loss: float
    amplitude: float
    rate: float
    t_ref: float

    def __call__(self, t):
        t = np.asarray(t, dtype=float)
        out = self.converged_loss + self.amplitude * np.exp(-self.rate * t / self.t_ref)
        return float(out) if out.ndim == 0 else out


def _effective_epochs(r, rstar):
    """``z``: the effective data D'/U of [M] eq 5 after ``r = t/U`` epochs (``r`` itself within the first
    epoch), with ``e = exp(-(r - 1)/R*)`` (1 within the first epoch)."""
    over = np.maximum(r - 1.0, 0.0)
    e = np.exp(-over / rstar)
    return np.where(r <= 1.0, r, 1.0 + rstar * (1.0 - e)), e, over


def _log_gap(r, z, e, rstar):
    """``ln((1 + R*)/z)`` (>= 0: ``z`` never exceeds ``1 + R*``), by ``log1p`` where ``z`` nears its limit."""
    r_safe = np.maximum(r, 1e-300)
    return np.where(r <= 1.0, math.log1p(rstar) - np.log(r_safe), -np.log1p(-rstar * e / (1.0 + rstar)))


@dataclass(frozen=True)
class EffectiveDataCurve:
    """``L(t) = converged_loss + amplitude * ln((1 + rstar) / z(t))``, ``t`` in optimizer steps.

    ``z(t) = t/U`` within the first epoch (``U = epoch_steps``, the steps of one pass over the unique data) and
    ``z(t) = 1 + R* (1 - exp(-(t/U - 1)/R*))`` beyond: the effective data ``D' = U + U R* (1 - exp(-R/R*))``,
    ``R = t/U - 1`` repetitions, of Muennighoff et al. 2023 ([M] eq 5, docs/science.md 7) in units of ``U``. The
    loss is a log law in ``D'``, the ``beta -> 0`` limit of ``C + B (z^-beta - (1 + R*)^-beta)/beta``; it
    falls to ``converged_loss`` as ``t -> infinity`` (``z -> 1 + R*``).
    """

    converged_loss: float
    amplitude: float
    rstar: float
    epoch_steps: float

    def __call__(self, t):
        r = np.asarray(t, dtype=float) / self.epoch_steps
        z, e, _ = _effective_epochs(r, self.rstar)
        out = self.converged_loss + self.amplitude * _log_gap(r, z, e, self.rstar)
        return float(out) if out.ndim == 0 else out


@dataclass
class FamilyFit(PredictionResult):
    """One family fitted to the points: its curve (a callable of t), converged loss and its interval."""

    family: str
    curve: object | None
    converged_loss: float
    interval: tuple[float, float]
    trusted: bool
    reason: str
    rss: float  # sum of squared log residuals
    n_points: int

    @property
    def params(self) -> list[float] | None:
        """The fitted parameters as plain floats (a warm start for the next fit; None without a curve).

        ``power``: (converged_loss, scale, exponent); ``exponential``: (converged_loss, amplitude, rate, t_ref);
        ``effective_data``: (converged_loss, amplitude, rstar).
        """
        c = self.curve
        if isinstance(c, ExponentialCurve):
            return [c.converged_loss, c.amplitude, c.rate, c.t_ref]
        if isinstance(c, EffectiveDataCurve):
            return [c.converged_loss, c.amplitude, c.rstar]
        if c is not None:
            return [float(c.irreducible), float(c.scale), float(c.exponent)]
        return None


@dataclass
class ConvergedPrediction(PredictionResult):
    """The predicted converged loss of a run, from one family or their average (see module docstring).

    Like scipy's ``OptimizeResult``: ``trusted`` says whether the numbers may drive a decision and
    ``reason`` why not. Callable: ``prediction(t)`` is the (weighted) fitted curve, ``inverse(loss)``
    the time at which it reaches ``loss`` (None when it never does).
    """

    converged_loss: float
    interval: tuple[float, float]
    trusted: bool
    reason: str
    family: str
    weights: dict[str, float]
    fits: list[FamilyFit] = field(repr=False, default_factory=list)
    n_points: int = 0
    held_at_floor: bool = False  # a family went down to a known floor, which then is its prediction

    def __call__(self, t):
        t = np.asarray(t, dtype=float)
        out = sum(self.weights[f.family] * np.asarray(f.curve(t), dtype=float) for f in self.fits
                  if f.curve is not None and self.weights.get(f.family, 0) > 0)
        return float(out) if np.ndim(out) == 0 else out

    def inverse(self, loss: float, t_max: float = 1e12) -> float | None:
        """The time at which the fitted curve falls to ``loss``; None if it never does."""
        if not (loss > self.converged_loss):
            return None
        # bracket the crossing on a geometric grid in one vectorised evaluation (10 points a decade), then refine
        # in that bracket: a handful of scalar evaluations instead of ~20 (this runs at every live evaluation)
        grid = np.geomspace(1e-12, t_max, 241)
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            below = np.asarray(self(grid)) <= loss
        if not below.any():
            return None
        i = int(np.argmax(below))
        if i == 0:
            return float(grid[0])
        return float(brentq(lambda x: self(x) - loss, grid[i - 1], grid[i], xtol=1e-6 * grid[i]))  # 1e-6: plenty


def _exp_residuals(theta, tau, logy):
    c, a, b = theta
    return np.log(c + a * np.exp(-b * tau)) - logy


def _exp_jacobian(theta, tau, logy):
    c, a, b = theta
    e = np.exp(-b * tau)
    inv = 1.0 / (c + a * e)
    return np.column_stack([inv, e * inv, -a * tau * e * inv])


def _check_points(t, loss, irreducible: float, what: str):
    """The points as arrays, the floor and the highest converged loss allowed (just below the lowest loss)."""
    ta, la = np.asarray(t, dtype=float), np.asarray(loss, dtype=float)
    if ta.size < 4 or ta.size != la.size or not (np.all(np.isfinite(ta)) and np.all(np.isfinite(la))):
        raise FitError(f"{what} needs >= 4 finite points")
    if np.any(ta <= 0) or np.any(la <= 0):
        raise FitError("times and losses must be > 0")
    floor = float(irreducible)
    hi = float(la.min()) * (1 - 1e-6)
    if floor >= hi:
        raise FitError(f"the floor {floor:g} is not below every loss (min {la.min():g})")
    return ta, la, floor, hi


def _verdict(best, n_points: int, floor: float, hi: float, confidence: float, max_relative_width: float):
    """The converged loss (the first parameter) of a least-squares fit on log loss, its interval and the trust tests.

    The interval is ``c +- z sd`` (``z`` the normal quantile of ``confidence``), ``sd`` from the Gauss-Newton
    covariance ``(J^T J)^+ RSS/(n - p)``, clipped to the bounds ``[floor, hi]``. Untrusted when ``c`` sits on its
    lower bound (the curve has not bent yet), on its upper bound (it has flattened or turned up), or when the
    interval is wider than ``max_relative_width`` of ``c``. Returns ``(c, rss, interval, trusted, reason)``.
    """
    c = float(best.x[0])
    rss = float(2 * best.cost)
    try:
        cov = np.linalg.pinv(best.jac.T @ best.jac) * (rss / max(n_points - best.x.size, 1))
        sd = math.sqrt(max(cov[0, 0], 0.0))
    except (np.linalg.LinAlgError, ValueError):  # pragma: no cover - defensive
        sd = math.inf
    z = normal_quantile(0.5 + confidence / 2)
    interval = (float(max(c - z * sd, floor)), float(min(c + z * sd, hi)))
    trusted, reason = True, "ok"
    width = max(hi - floor, 1e-12)
    if c <= floor + 1e-6 * width:
        trusted, reason = False, "converged loss at its lower bound: the curve has not bent yet"
    elif c >= hi - 1e-6 * width:
        trusted, reason = False, "converged loss at the lowest loss seen: the curve has flattened (or turned up)"
    elif not math.isfinite(sd) or 2 * z * sd > max_relative_width * c:
        trusted, reason = False, f"converged-loss interval too wide (+-{z * sd:.3g} around {c:.4g})"
    return c, rss, interval, trusted, reason


def fit_exponential_curve(t, loss, *, irreducible: float = 0.0, confidence: float = 0.9,
                          max_relative_width: float = 0.1, warm_start=None) -> FamilyFit:
    """Fit ``L(t) = L_conv + a exp(-b t/t_last)`` by least squares on log loss.

    Bounded; the optimizer runs from the best of three starts (:func:`~lightning_scaling.fitting.best_start`).

    ``L_conv`` is bounded to ``[irreducible, min(loss))``; its interval comes from the Gauss-Newton
    covariance, as in :func:`~lightning_scaling.fitting.fit_learning_curve`, and the fit is untrusted when
    ``L_conv`` sits on a bound or the interval is wider than ``max_relative_width`` of it. ``warm_start``:
    ``(converged_loss, amplitude, rate, t_ref)`` of an earlier fit (:attr:`FamilyFit.params`), one more start.
    """
    ta, la, floor, hi = _check_points(t, loss, irreducible, "an exponential learning curve")
    t_ref = float(ta.max())
    tau, logy = ta / t_ref, np.log(la)
    span = float(la.max() - la.min())
    upper = 1e3 * max(span, 1e-3) + 10
    inside = ([floor, 1e-9, 1e-3], [hi, upper, 200.0])  # starts strictly inside the bounds on a and b
    c0 = floor + 0.5 * (hi - floor)
    starts = [np.clip([c0, max((la[0] - c0) / math.exp(-b0 * tau[0]), 1e-6), b0], *inside) for b0 in (0.5, 2.0, 8.0)]
    if warm_start is not None and all(math.isfinite(v) for v in warm_start) and warm_start[3] > 0:
        c_w, a_w, rate_w, t_ref_w = (float(v) for v in warm_start)  # the same curve on this t_ref's scale
        starts.append(np.clip([c_w, a_w, rate_w * t_ref / t_ref_w], *inside))
    best = solve_from_starts(_exp_residuals, _exp_jacobian, starts, (tau, logy),
                             ([floor, 0.0, 1e-3], [hi, upper, 200.0]), max_nfev=CURVE_MAX_NFEV)
    nan = float("nan")
    if best is None or best.status <= 0 or not np.all(np.isfinite(best.x)):
        return FamilyFit("exponential", None, nan, (nan, nan), False, "did not converge", math.inf, ta.size)
    c, rss, interval, trusted, reason = _verdict(best, ta.size, floor, hi, confidence, max_relative_width)
    _, a, b = (float(v) for v in best.x)
    return FamilyFit("exponential", ExponentialCurve(c, a, b, t_ref), c, interval, trusted, reason, rss, ta.size)


def _ed_model(theta, r):
    c, a, rstar = theta
    z, e, over = _effective_epochs(r, rstar)
    g = _log_gap(r, z, e, rstar)
    return c + a * g, g, z, e, over


def _ed_residuals(theta, r, logy):
    return np.log(np.maximum(_ed_model(theta, r)[0], 1e-300)) - logy


def _ed_jacobian(theta, r, logy):
    c, a, rstar = theta
    f, g, z, e, over = _ed_model(theta, r)
    inv = 1.0 / np.maximum(f, 1e-300)
    dz = np.where(over > 0, 1.0 - e - (over / rstar) * e, 0.0)  # dz/dR* (0 within the first epoch)
    dg = 1.0 / (1.0 + rstar) - dz / z  # d ln((1 + R*)/z) / dR*
    return np.column_stack([inv, g * inv, a * dg * inv])


def fit_effective_data_curve(t, loss, *, epoch_steps: float, irreducible: float = 0.0, confidence: float = 0.9,
                             max_relative_width: float = 0.1, warm_start=None) -> FamilyFit:
    """Fit ``L(t) = L_conv + A ln((1 + R*)/z(t))`` (:class:`EffectiveDataCurve`) by least squares on log loss.

    ``z(t) = t/U`` for ``t <= U`` and ``1 + R* (1 - exp(-(t/U - 1)/R*))`` beyond, ``U = epoch_steps`` (the
    optimizer steps of one pass over the unique data): the effective data ``D' = U + U R* (1 - exp(-R/R*))`` of
    Muennighoff et al. 2023 ([M] eq 5, docs/science.md 7), ``R = t/U - 1``, in units of ``U``. Why this shape: a
    run that repeats its data gains less from every pass, and the loss follows the effective data, not the
    steps. The loss is a log law in ``D'``: the ``beta -> 0`` limit of the power law
    ``C + B (z^-beta - (1 + R*)^-beta)/beta``, which is what nearly every 4-parameter fit on the recorded corpus
    chose. ``R*`` is fitted per run, in ``[0.5, 100]`` (3-40 on the corpus; held at [M]'s 15.39 the curve ran
    below the plateau like the power law): an empirical saturating curve with [M]'s shape, not [M]'s constant.
    ``t`` is the step count, so it applies to a constant learning rate only (a decaying schedule's time axis,
    the summed learning rate, has no epoch of its own).

    Parameters ``L_conv`` in ``[irreducible, min(loss))`` (the limit as ``t -> infinity``), ``A >= 0``, ``R*``;
    scipy's ``dogbox`` with the analytic Jacobian from the best of nine starts
    (:func:`~lightning_scaling.fitting.best_start`) and ``warm_start`` (``(converged_loss, amplitude, rstar)``
    of an earlier fit, :attr:`FamilyFit.params`). The interval and the trust tests are those of
    :func:`fit_exponential_curve`.
    """
    ta, la, floor, hi = _check_points(t, loss, irreducible, "an effective-data learning curve")
    u = float(epoch_steps)
    if not (math.isfinite(u) and u > 0):
        raise ValueError(f"epoch_steps must be a finite number of steps > 0 (one epoch of the unique data), got "
                         f"{epoch_steps!r}")
    r, logy = ta / u, np.log(la)
    upper = 1e3 * max(float(la.max() - la.min()), 1e-3) + 10
    lo_r, hi_r = R_STAR_BOUNDS
    inside = ([floor, 1e-9, lo_r], [hi, upper, hi_r])
    starts = []
    for frac in (0.3, 0.6, 0.9):
        c0 = floor + frac * (hi - floor)
        for rstar0 in (2.0, 8.0, 30.0):
            z, e, _ = _effective_epochs(r, rstar0)
            g = _log_gap(r, z, e, rstar0)
            a0 = float(g @ (la - c0) / max(float(g @ g), 1e-300))  # the least-squares amplitude for c0, R*0
            starts.append(np.clip([c0, max(a0, 1e-6), rstar0], *inside))
    if warm_start is not None and len(warm_start) == 3 and all(math.isfinite(v) for v in warm_start):
        starts.append(np.clip([float(v) for v in warm_start], *inside))
    best = solve_from_starts(_ed_residuals, _ed_jacobian, starts, (r, logy), ([floor, 0.0, lo_r], [hi, upper, hi_r]),
                             max_nfev=EFFECTIVE_DATA_MAX_NFEV)
    nan = float("nan")
    if best is None or best.status <= 0 or not np.all(np.isfinite(best.x)):
        return FamilyFit("effective_data", None, nan, (nan, nan), False, "did not converge", math.inf, ta.size)
    c, rss, interval, trusted, reason = _verdict(best, ta.size, floor, hi, confidence, max_relative_width)
    _, a, rstar = (float(v) for v in best.x)
    return FamilyFit("effective_data", EffectiveDataCurve(c, a, rstar, u), c, interval, trusted, reason, rss,
                     ta.size)


def _power_family(t, loss, irreducible, time_axis, confidence, max_relative_width, warm_start=None) -> FamilyFit:
    fit = fit_learning_curve(t, loss, irreducible=irreducible, time_axis=time_axis, confidence=confidence,
                             max_relative_width=max_relative_width, warm_start=warm_start)
    rss = fit.rmse ** 2 * fit.n_points if fit.success else math.inf
    return FamilyFit("power", fit.law, fit.converged_loss, fit.interval, fit.trusted, fit.reason, rss, fit.n_points)


def check_family(family: str) -> None:
    """Raise ValueError, saying what is allowed, for a family :func:`predict_converged` does not know."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")


def check_effective_data(epoch_steps: float | None, time_axis: str = "steps") -> None:
    """Raise ValueError, saying what to do, when ``family="effective_data"`` cannot be fitted: it needs the
    steps of one epoch of the unique data, and steps as the time axis (a constant learning rate)."""
    if time_axis != "steps":
        raise ValueError(f"family='effective_data' fits a curve in optimizer steps (a constant learning rate); the "
                         f"time axis here is {time_axis!r}: use time_axis='steps', or another family for a decaying "
                         "schedule")
    if epoch_steps is None:
        raise ValueError("family='effective_data' needs epoch_steps: the optimizer steps of one epoch of the unique "
                         "data (dataset size / data per step; [M]'s U), e.g. epoch_steps=len(train_dataloader)")
    if not (isinstance(epoch_steps, (int, float, np.floating, np.integer)) and math.isfinite(epoch_steps)
            and epoch_steps > 0):
        raise ValueError(f"epoch_steps must be a finite number of optimizer steps > 0, got {epoch_steps!r}")


def predict_converged(t, loss, *, family: str = "average", irreducible: float = 0.0, time_axis: str = "steps",
                      confidence: float = 0.9, max_relative_width: float = 0.1, known_floor: bool = False,
                      warm_start: dict[str, list[float]] | None = None,
                      epoch_steps: float | None = None) -> ConvergedPrediction:
    """Predict a run's converged loss from its learning curve so far (see the module docstring).

    Args:
        t, loss: the points (time > 0 increasing: steps or summed learning rate).
        family: "power", "exponential", "average" (both, Domhan et al. 2015) or "effective_data" (alone; a
            constant learning rate, ``time_axis="steps"``; needs ``epoch_steps``).
        irreducible: the lower bound of the converged loss (e.g. L(D) of the data seen).
        time_axis, confidence, max_relative_width: as in :func:`~lightning_scaling.fitting.fit_learning_curve`.
        known_floor: ``irreducible`` is a known bound of the converged loss (L(D) of the data seen, [H] 6):
            a family whose fit goes down to it predicts the floor, and that is trusted (a known bound is not
            an untrustworthy fit); otherwise a fit at its lower bound means the curve has not bent yet.
        warm_start: each family's parameters from the previous fit (:attr:`FamilyFit.params`, by family name):
            one more start for its optimizer. The live rule passes its last fit, so a fit that adds one point
            takes a few iterations; the same sequence of points gives the same fits (replay = live).
        epoch_steps: for ``family="effective_data"``: the optimizer steps of one epoch of the unique data (``U``).

    Raises FitError when there are too few points or the floor is not below them; ValueError for
    ``family="effective_data"`` without ``epoch_steps`` or on another time axis than steps.
    """
    check_family(family)
    if family == "effective_data":
        check_effective_data(epoch_steps, time_axis)
    ta, la = np.asarray(t, dtype=float), np.asarray(loss, dtype=float)
    names = ("power", "exponential") if family == "average" else (family,)  # effective_data: alone
    fits, errors = [], []
    for name in names:
        try:
            warm = (warm_start or {}).get(name)
            if name == "power":
                fits.append(_power_family(ta, la, irreducible, time_axis, confidence, max_relative_width, warm))
            elif name == "effective_data":
                fits.append(fit_effective_data_curve(ta, la, epoch_steps=epoch_steps, irreducible=irreducible,
                                                     confidence=confidence, max_relative_width=max_relative_width,
                                                     warm_start=warm))
            else:
                fits.append(fit_exponential_curve(ta, la, irreducible=irreducible, confidence=confidence,
                                                  max_relative_width=max_relative_width, warm_start=warm))
        except FitError as err:
            errors.append(f"{name}: {err}")
    if not fits:
        raise FitError("; ".join(errors))
    # a fit whose limit sits on the lower bound (the fitters' own test): with a known floor it predicts the
    # floor, which is trusted; without one the curve has not bent yet and the limit is left open
    span = max(float(la.min()) - irreducible, 1e-12)
    at_bound = {id(f) for f in fits if f.curve is not None and not f.trusted
                and f.converged_loss <= irreducible + 1e-6 * span}
    held = known_floor and bool(at_bound)
    for f in fits:
        if held and id(f) in at_bound:
            f.trusted, f.reason = True, "held at the data floor"
    usable = [f for f in fits if f.curve is not None and math.isfinite(f.rss)]
    nan = float("nan")
    if not usable:
        return ConvergedPrediction(nan, (nan, nan), False, "; ".join(f"{f.family}: {f.reason}" for f in fits),
                                   family, {}, fits, int(ta.size))
    # equal weights over the families whose fit can be trusted (all of them when none can)
    w = np.array([1.0 if f.trusted else 0.0 for f in usable])
    w = w if w.any() else np.ones(len(usable))
    w /= w.sum()
    # a family that has not bent yet (no known floor) leaves the limit open: no family may then claim it (a
    # saturating fit to an unbent power law is confident and wrong); a family that flattens at the lowest
    # loss seen (does not describe the curve) just drops out of the equal average
    unbent = [f for f in usable if not f.trusted and id(f) in at_bound]
    weights = {f.family: float(wi) for f, wi in zip(usable, w)}
    conv = float(sum(wi * f.converged_loss for f, wi in zip(usable, w)))
    lo = float(sum(wi * f.interval[0] for f, wi in zip(usable, w)))
    hi = float(sum(wi * f.interval[1] for f, wi in zip(usable, w)))
    doubtful = [f for f, wi in zip(usable, w) if wi >= 0.1 and not f.trusted] + unbent
    trusted = not doubtful and not errors and len(usable) == len(fits)
    reason = "ok" if trusted else "; ".join(errors + [f"{f.family}: {f.reason}" for f in fits if not f.trusted])
    return ConvergedPrediction(conv, (lo, hi), trusted, reason or "a family did not converge", family, weights,
                               usable, int(ta.size), held and trusted)
