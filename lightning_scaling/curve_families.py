"""Learning-curve families and the model-averaged prediction of a run's converged loss.

The stopping rule needs ``L_conv``, the loss a run would reach if trained on. Two families are fitted to
the points seen so far (time ``t``: optimizer steps, or the summed learning rate of [T]):

* ``power``: ``L(t) = L_conv + (t_c/t)^alpha`` ([K] eq 5.6 at fixed N), fitted by
  :func:`~lightning_scaling.fitting.fit_learning_curve`;
* ``exponential``: ``L(t) = L_conv + a exp(-b t / t_last)``, the saturating form of a run that repeats its
  data: the value of repeated tokens decays exponentially with the number of repetitions ([M] eq 5,
  SCIENCE.md 6), so a data-limited curve approaches its floor exponentially rather than as a power law
  (the ``exp3`` family of Domhan et al. 2015).

``average`` combines the two, the model averaging of Domhan, Springenberg & Hutter 2015 ("Speeding up
automatic hyperparameter optimization of deep neural networks by extrapolation of learning curves", IJCAI)
in its simplest form: with equal weights by default, or (``weighting="bic"``) by their Bayesian information
criterion (equal parameter counts, so ``exp(-n/2 log RSS)`` normalised). Both families are misspecified on
real curves (the power law runs on below the data-limited plateau, the exponential flattens too soon) and
their residuals are correlated, so the BIC weights are nearly all-or-nothing and pick the wrong one about as
often as the right one; the equal-weight combination is the robust choice under misspecification (the
"forecast combination puzzle", Clemen 1989; Stock & Watson 2004), and the corpus measurements agree
(BENCHMARKS.md, stopping rule). ``window`` fits only the
points with ``t >= window * t_last`` (recent points; the early transient of a run is not a power law).
Pure: numpy and scipy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import brentq, least_squares

from .errors import FitError
from .fitting import best_start, fit_learning_curve, normal_quantile

#: The curve families :func:`predict_converged` knows, and ``average`` (both, weighted).
FAMILIES = ("power", "exponential", "average")
#: How ``average`` weighs the families.
WEIGHTINGS = ("inverse_mse", "equal", "bic")


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


@dataclass
class FamilyFit:
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

        ``power``: (converged_loss, scale, exponent); ``exponential``: (converged_loss, amplitude, rate, t_ref).
        """
        c = self.curve
        if isinstance(c, ExponentialCurve):
            return [c.converged_loss, c.amplitude, c.rate, c.t_ref]
        if c is not None:
            return [float(c.irreducible), float(c.scale), float(c.exponent)]
        return None


@dataclass
class ConvergedPrediction:
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
        lo, hi = 1e-12, 1.0
        while self(hi) > loss:
            hi *= 4
            if hi > t_max:
                return None
        if self(lo) <= loss:
            return lo
        return float(brentq(lambda x: self(x) - loss, lo, hi, xtol=1e-6 * hi))  # a step count: 1e-6 is plenty


def _exp_residuals(theta, tau, logy):
    c, a, b = theta
    return np.log(c + a * np.exp(-b * tau)) - logy


def _exp_jacobian(theta, tau, logy):
    c, a, b = theta
    e = np.exp(-b * tau)
    inv = 1.0 / (c + a * e)
    return np.column_stack([inv, e * inv, -a * tau * e * inv])


def fit_exponential_curve(t, loss, *, irreducible: float = 0.0, confidence: float = 0.9,
                          max_relative_width: float = 0.1, warm_start=None) -> FamilyFit:
    """Fit ``L(t) = L_conv + a exp(-b t/t_last)`` by least squares on log loss.

    Bounded; the optimizer runs from the best of three starts (:func:`~lightning_scaling.fitting.best_start`).

    ``L_conv`` is bounded to ``[irreducible, min(loss))``; its interval comes from the Gauss-Newton
    covariance, as in :func:`~lightning_scaling.fitting.fit_learning_curve`, and the fit is untrusted when
    ``L_conv`` sits on a bound or the interval is wider than ``max_relative_width`` of it. ``warm_start``:
    ``(converged_loss, amplitude, rate, t_ref)`` of an earlier fit (:attr:`FamilyFit.params`), one more start.
    """
    ta, la = np.asarray(t, dtype=float), np.asarray(loss, dtype=float)
    if ta.size < 4 or ta.size != la.size or not (np.all(np.isfinite(ta)) and np.all(np.isfinite(la))):
        raise FitError("an exponential learning curve needs >= 4 finite points")
    if np.any(ta <= 0) or np.any(la <= 0):
        raise FitError("times and losses must be > 0")
    floor = float(irreducible)
    hi = float(la.min()) * (1 - 1e-6)
    if floor >= hi:
        raise FitError(f"the floor {floor:g} is not below every loss (min {la.min():g})")
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
    best = None
    for theta0 in best_start(starts, lambda th: _exp_residuals(th, tau, logy)):
        try:
            res = least_squares(_exp_residuals, theta0, jac=_exp_jacobian, args=(tau, logy), method="dogbox",
                                x_scale="jac", bounds=([floor, 0.0, 1e-3], [hi, upper, 200.0]),
                                xtol=1e-10, ftol=1e-10, gtol=1e-10, max_nfev=500)
        except (ValueError, FloatingPointError):  # pragma: no cover - defensive
            continue
        if best is None or res.cost < best.cost:
            best = res
    nan = float("nan")
    if best is None or best.status <= 0 or not np.all(np.isfinite(best.x)):
        return FamilyFit("exponential", None, nan, (nan, nan), False, "did not converge", math.inf, ta.size)
    c, a, b = (float(v) for v in best.x)
    rss = float(2 * best.cost)
    try:
        cov = np.linalg.pinv(best.jac.T @ best.jac) * (rss / max(ta.size - 3, 1))
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
    return FamilyFit("exponential", ExponentialCurve(c, a, b, t_ref), c, interval, trusted, reason, rss, ta.size)


def _power_family(t, loss, irreducible, unit, confidence, max_relative_width, warm_start=None) -> FamilyFit:
    fit = fit_learning_curve(t, loss, irreducible=irreducible, unit=unit, confidence=confidence,
                             max_relative_width=max_relative_width, warm_start=warm_start)
    rss = fit.rmse ** 2 * fit.n_points if fit.success else math.inf
    return FamilyFit("power", fit.law, fit.converged_loss, fit.interval, fit.trusted, fit.reason, rss, fit.n_points)


def check_options(family: str, window: float, weighting: str, floor_weight: float = 1.0) -> None:
    """Raise ValueError, saying what is allowed, for options :func:`predict_converged` does not take."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
    if not (0.0 <= window < 1.0):
        raise ValueError(f"window must be in [0, 1) (the fraction of the latest time before which points are "
                         f"not fitted), got {window!r}")
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    if not (isinstance(floor_weight, (int, float)) and 0.0 <= floor_weight <= 1.0):
        raise ValueError(f"floor_weight must be a number in [0, 1] (the weight of a family held at the data floor "
                         f"against a free one), got {floor_weight!r}")


def predict_converged(t, loss, *, family: str = "average", window: float = 0.0, irreducible: float = 0.0,
                      unit: str = "steps", confidence: float = 0.9, max_relative_width: float = 0.1,
                      min_points: int = 4, known_floor: bool = False, weighting: str = "equal",
                      warm_start: dict[str, list[float]] | None = None,
                      floor_weight: float = 1.0) -> ConvergedPrediction:
    """Predict a run's converged loss from its learning curve so far (see the module docstring).

    Args:
        t, loss: the points (time > 0 increasing: steps or summed learning rate).
        family: "power", "exponential" or "average" (both, Domhan et al. 2015).
        weighting: how ``average`` weighs the families: "equal" (over the trusted ones), "bic" or
            "inverse_mse" (Bates & Granger 1969).
        window: fit only the points with ``t >= window * t_last`` (0 = all; at least ``min_points`` kept).
        irreducible: the lower bound of the converged loss (e.g. L(D) of the data seen).
        unit, confidence, max_relative_width: as in :func:`~lightning_scaling.fitting.fit_learning_curve`.
        min_points: the fewest points a fit may use.
        known_floor: ``irreducible`` is a known bound of the converged loss (L(D) of the data seen, [H] 6):
            a family whose fit goes down to it predicts the floor, and that is trusted (a known bound is not
            an untrustworthy fit); otherwise a fit at its lower bound means the curve has not bent yet.
        floor_weight: in the equal average, the weight of a family held at the known floor when another
            trusted family is not (1: equal). The floor is a bound for every model; a model too small to reach
            it converges above it, which only the free family sees (BENCHMARKS.md measures 0.5).
        warm_start: each family's parameters from the previous fit (:attr:`FamilyFit.params`, by family name):
            one more start for its optimizer. The live rule passes its last fit, so a fit that adds one point
            takes a few iterations; the same sequence of points gives the same fits (replay = live).

    Raises FitError when there are too few points or the floor is not below them.
    """
    check_options(family, window, weighting, floor_weight)
    ta, la = np.asarray(t, dtype=float), np.asarray(loss, dtype=float)
    keep = ta >= window * ta.max(initial=0.0)
    if np.count_nonzero(keep) < min_points:
        keep = np.zeros(ta.size, dtype=bool)
        keep[-min_points:] = True
    ta, la = ta[keep], la[keep]
    names = ("power", "exponential") if family == "average" else (family,)
    fits, errors = [], []
    for name in names:
        try:
            warm = (warm_start or {}).get(name)
            if name == "power":
                fits.append(_power_family(ta, la, irreducible, unit, confidence, max_relative_width, warm))
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
    n = ta.size
    if weighting == "bic":
        bic = np.array([n * math.log(max(f.rss, 1e-300) / n) for f in usable])  # same parameter count
        w = np.exp(-(bic - bic.min()) / 2)
    elif weighting == "inverse_mse":
        rss = np.array([max(f.rss, 1e-300) for f in usable])
        w = rss.min() / rss  # Bates & Granger 1969: weights proportional to 1 / mean squared error
    else:  # equal weights over the families whose fit can be trusted (all of them when none can)
        free = [f for f in usable if f.trusted and id(f) not in at_bound]
        w = np.array([(floor_weight if free and id(f) in at_bound else 1.0) if f.trusted else 0.0 for f in usable])
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
