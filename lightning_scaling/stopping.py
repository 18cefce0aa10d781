"""The extra-early stopping rule as a pure object, shared by the live callback and the replay.

Kaplan et al. 2020 appendix B.2 ([K] eq B.5): at fixed compute the best trade between model size and
steps stops training at ``L = (1 + alpha_N/alpha_S) L_conv``, about 1.1x the converged loss of the
model being trained. With an irreducible loss L_inf the rule applies to the reducible part:
stop when ``L - L_inf <= threshold (L_conv - L_inf)`` (docs/science.md 4).

The rule predicts the converged loss each time a new point arrives
(:func:`~lightning_scaling.curve_families.predict_converged`: ``L(t) = L_conv + (t_c/t)^alpha``, [K] eq 5.6
at fixed N, a saturating exponential for runs that repeat their data, and by default their equal-weight
average over the trusted ones, as in Domhan et al. 2015, or the power law alone when the floor is the model's own
limit L(N, D): :func:`rule_family`), fitted to the points after warm-up, optionally
only the recent ones (``window``), with t the step or, when the learning rate varies, the summed learning
rate ([T] "forward area"), and never below a known floor (L(D) of the data seen). It stops only when the
prediction is trusted, the last ``stable_fits`` predictions agree within ``stability``, and the smoothed
loss is at or below the stop loss. Feeding the same points gives the same decisions: :func:`replay` runs
exactly this object over a finished run.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import FitError
from .curve_families import FAMILIES, check_effective_data, check_options, predict_converged
from .calibration import Calibration
from .calibration import resolve as resolve_calibration
from .planning import stopping_factor


#: Which evaluation :class:`StoppingRule` stops at (its ``stop_at``).
STOP_AT = ("nearest", "below")
#: What the floor handed to :meth:`StoppingRule.update` is (its ``floor_kind``): ``"data"``, L(D) at the data seen, the
#: best loss any model reaches on it ([H] 6), a bound for every model; ``"model"``, L(N, D) at this model's N ([K]
#: eq 1.5), the loss this model itself converges to on the data seen.
FLOOR_KINDS = ("data", "model")
#: The time axes :class:`StoppingRule` takes (its ``time_axis``): ``"steps"``, ``"lr_sum"`` (the summed learning
#: rate, [T]) or ``"auto"``: the summed learning rate once the learning rate has varied after the warm-up, else steps.
TIME_AXES = ("auto", "steps", "lr_sum")
#: With ``warmup_steps=None`` the points up to this multiple of the detected end of the warm-up are not fitted: the
#: loss right after a warm-up still falls faster than a power law (the transient the corpus benchmark leaves out).
TRANSIENT_FACTOR = 2.0
#: How much the mean learning rate between two evaluations must change, relative to the first one after the warm-up,
#: for ``time_axis="auto"`` to take the summed learning rate as the time axis.
LR_VARIES = 0.01
#: The families :class:`StoppingRule` takes: those of :func:`~lightning_scaling.curve_families.predict_converged` and
#: ``"auto"`` (:func:`rule_family`).
RULE_FAMILIES = ("auto",) + FAMILIES


def rule_family(family: str, floor_kind: str = "data") -> str:
    """The curve family the rule fits: ``family`` itself, or for ``"auto"`` the one the measurements favour for the
    floor at hand (BENCHMARKS.md, stopping rule).

    * ``floor_kind="model"`` (L(N, D), this model's own limit): ``"power"``, [K] eq 5.6 run down to that limit. Held
      out, it stopped every stopping run of the second out-of-sample set within 1.1 +- 0.05 (12 of 12, median 1.094x)
      and 24 of 30 corpus runs at 1.081x; averaging in the exponential, which flattens early, stopped at 1.145x and
      1.121x.
    * ``"data"`` (L(D), a bound that smaller models stay above) or no floor: ``"average"`` of the power law and the
      exponential: the power law alone only ever predicts L(D), so a model too small for its data never stops.
    """
    if family != "auto":
        return family
    if floor_kind not in FLOOR_KINDS:
        raise ValueError(f"floor_kind must be one of {FLOOR_KINDS}, got {floor_kind!r}")
    return "power" if floor_kind == "model" else "average"


@dataclass
class StopDecision:
    """What the rule concluded after one new point."""

    step: int
    should_stop: bool
    reason: str
    converged_loss: float | None = None
    interval: tuple[float, float] | None = None
    stop_loss: float | None = None
    smoothed_loss: float | None = None
    predicted_stop_step: float | None = None
    progress: float | None = None
    trusted: bool = False
    data_limited: bool = False
    error: str | None = None  # why the fit failed at this point (then there is no prediction), else None


class StoppingRule:
    """Decide when a run has reached ``threshold`` x its predicted converged loss.

    Args:
        threshold: stop multiple of the converged loss; default ``1 + alpha_N/alpha_S`` ([K] B.5).
        alpha_N, alpha_S: exponents of [K] eq 1.6 used for the default threshold (0.076, 0.76 -> 1.10).
        irreducible: a known floor of the loss; the rule then applies to the reducible part.
        warmup_steps: points at or before this step are not fitted (warm-up distorts the curve). None (default):
            found from the learning rate the rule observes (``lr_sum`` handed to :meth:`update`): the warm-up lasts
            while the mean learning rate between evaluations rises, and the points up to
            :data:`TRANSIENT_FACTOR` x its end are not fitted (without ``lr_sum`` observations: none).
        time_axis: what the curve is fitted against (:data:`TIME_AXES`): "auto" (default: the summed learning
            rate once it has varied after the warm-up, [T], else steps), "steps" or "lr_sum".
        min_points: points after warm-up needed before the first fit.
        smoothing: weight of the past in the exponential moving average of the loss (0 = no smoothing). The
            default 0.3 comes from the recorded corpus: 0.2-0.4 stop every run at the same step, 0.5 lags
            one evaluation behind (on the 19-run corpus: median stop ratio 1.079 against 1.082 for threshold
            1.1; BENCHMARKS.md).
        stable_fits: number of consecutive trusted predictions that must agree before stopping.
        stability: relative spread allowed among those predictions.
        max_relative_width: widest converged-loss interval (relative) a trusted fit may have.
        confidence: the level of the converged-loss interval (central, reported in every decision) and of the stop:
            the rule stops only when the smoothed loss is at or below ``threshold`` x the one-sided lower bound of the
            converged loss at this level (or x the prediction, if that is lower), so it stops early (the truth below
            that bound) with probability at most ``1 - confidence`` on runs like those it was calibrated on.
        calibration: the :class:`~lightning_scaling.calibration.Calibration` of the interval: None (default) for
            the one the package ships, a path to one (``lightning-scaling calibrate``), or False for none (the
            fit's own Gauss-Newton interval, and the stop at ``threshold`` x the point prediction: the old rule,
            kept as a baseline). A prediction held at a floor keeps the fit's interval (the floor's error is the
            law's, not the curve's).
        stop_when_data_limited: also stop when the smoothed loss has turned up by ``turn_up`` over its
            minimum before the threshold was reached (the run is data-limited: more data is the remedy).
        turn_up: relative rise of the smoothed loss above its minimum that counts as turning up.
        family: the curve family that predicts the converged loss: "auto" (default: :func:`rule_family`, the power
            law with a model's own floor, else the average), "power", "exponential", "average" or the opt-in
            "effective_data" (a log law in [M]'s effective data, fitted alone; steps axis, i.e. a constant
            learning rate, and ``epoch_steps`` needed; see :mod:`lightning_scaling.curve_families`).
        floor_kind: what the ``floor`` given to :meth:`update` is (:data:`FLOOR_KINDS`): "data" (L(D), default) or
            "model" (L(N, D) at this model's N). The live callback sets it from DataLimitGap's law.
        window: fit only the points with time >= ``window`` x the latest time (0 = every point after warm-up).
        weighting: how ``family="average"`` weighs the families: "equal" (default), "bic" or "inverse_mse".
        floor_weight: with equal weights, the weight of a family held at the data floor against a free trusted
            one (see :func:`~lightning_scaling.curve_families.predict_converged`); 1 = equal.
        stop_at: which evaluation stops once the rule may stop. "nearest" (default): the one nearest the crossing
            of the stop loss, i.e. also the last evaluation above it when the next one, falling as much as the
            smoothed loss fell last time, would land further below it than this one is above. "below": the
            first evaluation at or below it, which on average stops half an evaluation's drop late (on the
            corpus the median stop ratio was 1.075 for threshold 1.1 with the median prediction unbiased;
            "nearest" gives 1.088, BENCHMARKS.md).
        epoch_steps: for ``family="effective_data"``: the optimizer steps of one epoch of the unique data (``U``
            of [M] eq 5: dataset size / data per step); a value given to :meth:`update` overrides it.
    """

    def __init__(self, threshold: float | None = None, *, alpha_N: float = 0.076, alpha_S: float = 0.76,
                 irreducible: float = 0.0, warmup_steps: int | None = None, min_points: int = 6,
                 smoothing: float = 0.3,
                 stable_fits: int = 2, stability: float = 0.02, max_relative_width: float = 0.1,
                 stop_when_data_limited: bool = False, turn_up: float = 0.01, family: str = "auto",
                 window: float = 0.0, weighting: str = "equal", floor_weight: float = 1.0,
                 stop_at: str = "nearest", epoch_steps: float | None = None, floor_kind: str = "data",
                 time_axis: str = "auto", confidence: float = 0.8,
                 calibration: "Calibration | str | Path | None | bool" = None) -> None:
        self.threshold = stopping_factor(alpha_N, alpha_S) if threshold is None else float(threshold)
        if not (math.isfinite(self.threshold) and self.threshold > 1.0):
            raise ValueError(f"threshold must be a number > 1 (e.g. 1.1), got {threshold!r}")
        if not (math.isfinite(irreducible) and irreducible >= 0):
            raise ValueError(f"irreducible must be a finite number >= 0, got {irreducible!r}")
        if int(min_points) < 4:
            raise ValueError("min_points must be >= 4 (a learning curve has three parameters)")
        if not (0.0 <= smoothing < 1.0):
            raise ValueError("smoothing must be in [0, 1)")
        if int(stable_fits) < 1 or not (stability > 0) or not (max_relative_width > 0):
            raise ValueError("stable_fits must be >= 1, stability and max_relative_width > 0")
        if warmup_steps is not None and not (isinstance(warmup_steps, (int, np.integer)) and warmup_steps >= 0):
            raise ValueError(f"warmup_steps must be None (found from the learning rate) or an int >= 0 (the last step "
                             f"of the warm-up; 0 = none), got {warmup_steps!r}")
        if time_axis not in TIME_AXES:
            raise ValueError(f"time_axis must be one of {TIME_AXES}, got {time_axis!r}")
        if family == "effective_data" and time_axis == "lr_sum":
            raise ValueError("family='effective_data' fits a curve in optimizer steps: use time_axis='steps' or 'auto'")
        self.time_axis = time_axis
        if not (isinstance(confidence, (int, float)) and 0.0 < confidence < 1.0):
            raise ValueError(f"confidence must be a number in (0, 1), e.g. 0.8, got {confidence!r}")
        self.confidence = float(confidence)
        self.calibration = calibration
        self._calibration = None if calibration is False else resolve_calibration(calibration)
        if not (turn_up > 0):
            raise ValueError(f"turn_up must be > 0 (a relative rise of the smoothed loss, e.g. 0.01), got {turn_up!r}")
        if family not in RULE_FAMILIES:
            raise ValueError(f"family must be one of {RULE_FAMILIES}, got {family!r}")
        check_options(rule_family(family, floor_kind), window, weighting, floor_weight)
        self.floor_kind = floor_kind
        if stop_at not in STOP_AT:
            raise ValueError(f"stop_at must be one of {STOP_AT}, got {stop_at!r}")
        self.stop_at = stop_at
        if epoch_steps is not None:
            check_effective_data(epoch_steps)
        self.epoch_steps = None if epoch_steps is None else float(epoch_steps)
        self.floor_weight = float(floor_weight)
        self.family = family
        self.weighting = weighting
        self.window = float(window)
        self.irreducible = float(irreducible)
        self.warmup_steps = None if warmup_steps is None else int(warmup_steps)
        self.min_points = int(min_points)
        self.smoothing = float(smoothing)
        self.stable_fits = int(stable_fits)
        self.stability = float(stability)
        self.max_relative_width = float(max_relative_width)
        self.stop_when_data_limited = bool(stop_when_data_limited)
        self.turn_up = float(turn_up)
        self.reset()

    def options(self) -> dict[str, Any]:
        """The keyword arguments that build this rule again (``StoppingRule(**rule.options())``; plain types: what
        the live callback writes into the run-info file so that a replay uses the same rule)."""
        return {"threshold": self.threshold, "irreducible": self.irreducible, "warmup_steps": self.warmup_steps,
                "time_axis": self.time_axis, "confidence": self.confidence,
                "calibration": self.calibration if isinstance(self.calibration, (bool, str, type(None))) else (
                    str(self.calibration) if isinstance(self.calibration, Path) else self.calibration.to_json()),
                "min_points": self.min_points, "smoothing": self.smoothing, "stable_fits": self.stable_fits,
                "stability": self.stability, "max_relative_width": self.max_relative_width,
                "stop_when_data_limited": self.stop_when_data_limited, "turn_up": self.turn_up,
                "family": self.family, "window": self.window, "weighting": self.weighting,
                "floor_weight": self.floor_weight, "stop_at": self.stop_at, "epoch_steps": self.epoch_steps,
                "floor_kind": self.floor_kind}

    @property
    def fitted_family(self) -> str:
        """The family the fits use when given a floor: ``family``, with "auto" resolved for ``floor_kind``
        (:func:`rule_family`)."""
        return rule_family(self.family, self.floor_kind)

    def reset(self) -> None:
        # every finite point whose step advanced; which of them are fitted (after the warm-up) and on which axis is
        # decided at each update from what has been observed so far (a warm-up is known only once it is over)
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.lr_sums: list[float | None] = []
        self.smoothed: float | None = None
        self.min_smoothed: float | None = None
        self.first_smoothed: float | None = None
        self._lr_seen: tuple[int, float] | None = None  # the last (step, lr_sum) observed
        self._lr_mean: float | None = None  # the mean learning rate between the last two observations
        self._lr_reference: float | None = None  # the first mean after the warm-up
        self.warmup_end = 0  # the last step whose mean learning rate rose (0: no warm-up seen)
        self.lr_varied = False  # the learning rate has varied after the warm-up
        self.predictions: list[float] = []
        self.last: StopDecision | None = None
        self.last_fit = None  # the latest ConvergedPrediction (callable; for figures; not part of the state)
        self.warm_start: dict[str, list[float]] = {}  # each family's last fitted parameters: the next fit's start
        self.stopped_step: int | None = None

    def update(self, step: int, loss: float, lr_sum: float | None = None, floor: float | None = None,
               epoch_steps: float | None = None) -> StopDecision:
        """Add the loss at ``step`` (and the summed learning rate so far, if the time axis is the LR area).

        ``floor`` is a lower bound of the converged loss known from elsewhere, e.g. the fitted L(D) at the
        data seen (DataLimitGap): the prediction is never allowed below it. ``epoch_steps`` (for
        ``family="effective_data"``) overrides the constructor's for this fit (every point is fitted with it).

        Raises ValueError for ``family="effective_data"`` with ``lr_sum`` or without any ``epoch_steps``.
        """
        if self.family == "effective_data":
            epoch_steps = self.epoch_steps if epoch_steps is None else epoch_steps
            check_effective_data(epoch_steps, "steps")
        step = int(step)
        loss = float(loss)
        lr_sum = None if lr_sum is None or not math.isfinite(float(lr_sum)) else float(lr_sum)
        self._observe_lr(step, lr_sum)
        if not math.isfinite(loss):
            return self._remember(StopDecision(step, False, f"non-finite loss {loss} skipped"))
        if self.steps and step <= self.steps[-1]:
            return self._remember(StopDecision(step, False, "step did not advance: point skipped"))
        if self.axis == "lr_sum" and (lr_sum is None or not lr_sum > 0 or (
                self.lr_sums and self.lr_sums[-1] is not None and lr_sum <= self.lr_sums[-1])):
            return self._remember(StopDecision(step, False, "time axis did not advance: point skipped"))
        if self.warmup_steps is not None and step <= self.warmup_steps:  # a given warm-up: the point is not kept
            return self._remember(StopDecision(step, False, "warm-up: point not fitted"))
        self.steps.append(step)
        self.losses.append(loss)
        self.lr_sums.append(lr_sum)
        keep = self._kept()
        if not keep.size or keep[-1] != len(self.steps) - 1:
            return self._remember(StopDecision(step, False, f"warm-up: point not fitted (the warm-up ended near step "
                                                            f"{self.warmup_end}; points up to step {self.fit_after} "
                                                            "are left out)"))
        losses = [self.losses[i] for i in keep]
        smoothed = self._smooth(losses)
        s = smoothed[-1]
        previous = smoothed[-2] if len(smoothed) > 1 else None
        self.smoothed, self.first_smoothed, self.min_smoothed = s, smoothed[0], min(smoothed)
        data_limited = s > self.min_smoothed * (1 + self.turn_up)
        if len(losses) < self.min_points:
            return self._remember(StopDecision(step, False, f"waiting for {self.min_points} points after warm-up",
                                               smoothed_loss=s, data_limited=data_limited))
        axis = self.axis
        times = self._times(keep)
        base = max(self.irreducible, float(floor) if floor is not None and math.isfinite(floor) else 0.0)
        floored = base > self.irreducible
        # a point without a floor (e.g. DataLimitGap could not count the data) is fitted as without an L(N, D)
        family = rule_family(self.family, self.floor_kind if floored else "data")
        try:
            fit = predict_converged(times, losses, family=family, window=self.window,
                                    irreducible=min(base, min(losses) * (1 - 1e-6)), unit=axis,
                                    max_relative_width=self.max_relative_width, min_points=self.min_points,
                                    known_floor=floored, weighting=self.weighting,
                                    warm_start=self.warm_start, floor_weight=self.floor_weight,
                                    epoch_steps=epoch_steps)
        except FitError as err:  # the points do not admit a fit (yet): no prediction at this point
            return self._stop_if_data_limited(StopDecision(step, False, f"no prediction: {err}", smoothed_loss=s,
                                                           data_limited=data_limited))
        except (ArithmeticError, np.linalg.LinAlgError, ValueError) as err:
            # a numerical failure inside the fit is "no prediction" for this point too, never an exception in the
            # user's training; it is reported (StopDecision.error) so that the callback can say so once
            return self._stop_if_data_limited(StopDecision(step, False, f"no prediction: the fit failed ({err})",
                                                           smoothed_loss=s, data_limited=data_limited,
                                                           error=f"{type(err).__name__}: {err}"))
        self.last_fit = fit
        self.warm_start.update({f.family: f.params for f in fit.fits if f.params is not None})
        if not math.isfinite(fit.converged_loss):
            return self._stop_if_data_limited(StopDecision(step, False, fit.reason, smoothed_loss=s,
                                                           data_limited=data_limited))
        conv = fit.converged_loss
        interval, bound = fit.interval, conv
        calibrated = self._calibration is not None and not fit.held_at_floor
        if calibrated:
            # the calibrated central interval at `confidence` is reported; the stop is judged against the one-sided
            # lower bound at `confidence`: stopping there, the loss is within `threshold` of the truth unless the truth
            # lies below that bound, which happens with probability at most 1 - confidence
            interval = self._calibration.interval(conv, s, self.confidence)
            # never above the point prediction: the calibration may delay a stop (where predictions like this one
            # were too high) but not bring one forward (where they were too low: a curve unlike those need not be)
            bound = max(min(self._calibration.lower(conv, s, self.confidence), conv), self.irreducible)
        stop_loss = self.irreducible + self.threshold * (bound - self.irreducible)
        predicted = None
        if axis == "steps" and stop_loss > conv:
            predicted = fit.inverse(stop_loss)
        span = (self.first_smoothed - stop_loss)
        progress = 1.0 if span <= 0 else float(np.clip((self.first_smoothed - s) / span, 0.0, 1.0))
        reason, note = fit.reason, ""
        if fit.held_at_floor:
            # the curve would go below the best loss any model reaches on the data seen (L(D), [H] 6): the
            # floor is (part of) the prediction, and a known bound is not an untrustworthy fit
            note = f" (held at the data floor L(D_seen) = {base:.4g})"
            reason = "prediction" + note
        decision = StopDecision(step, False, reason, conv, interval, stop_loss, s, predicted, progress,
                                fit.trusted, data_limited)
        if not fit.trusted:
            self.predictions.clear()
            return self._stop_if_data_limited(decision)
        self.predictions.append(conv)
        recent = self.predictions[-self.stable_fits:]
        stable = len(recent) == self.stable_fits and (max(recent) - min(recent)) <= self.stability * conv
        if not stable:
            decision.reason = f"prediction not yet stable over {self.stable_fits} fits"
            return self._stop_if_data_limited(decision)
        # "nearest": stop now if the next evaluation, falling as much as the last, would overshoot the stop loss
        # by more than this one falls short of it (the stop then lands on average on the threshold, not past it)
        nearest = (self.stop_at == "nearest" and previous is not None and previous > s
                   and s - stop_loss < 0.5 * (previous - s))
        if s <= stop_loss or nearest:
            decision.should_stop = True
            reached = "reached" if s <= stop_loss else "is nearer than the next evaluation would be to"
            what = (f"the {self.confidence:.0%} lower bound {bound:.4g} of the converged loss (prediction {conv:.4g})"
                    if calibrated else f"predicted converged loss {conv:.4g}{note}")
            decision.reason = (f"smoothed loss {s:.4g} {reached} {self.threshold:.3g} x {what} (stop loss "
                               f"{stop_loss:.4g})")
            return self._remember(decision)
        if calibrated:
            lo, hi = interval
            decision.reason = (f"prediction {conv:.4g}, {self.confidence:.0%} interval [{lo:.4g}, {hi:.4g}] "
                               f"({lo / conv - 1:+.0%}/{hi / conv - 1:+.0%}): the loss {s:.4g} is above "
                               f"{self.threshold:.3g} x the {self.confidence:.0%} lower bound ({stop_loss:.4g}); more "
                               "of the curve, or a floor from DataLimitGap, is needed")
            return self._stop_if_data_limited(decision)
        decision.reason = f"stable prediction {conv:.4g}{note}; loss {s:.4g} above stop loss {stop_loss:.4g}"
        return self._stop_if_data_limited(decision)

    @property
    def axis(self) -> str:
        """The time axis the next fit uses: ``time_axis``, with "auto" resolved by what has been observed."""
        if self.time_axis != "auto":
            return self.time_axis
        return "lr_sum" if self.lr_varied and self.family != "effective_data" else "steps"

    @property
    def fit_after(self) -> int:
        """The points at or before this step are not fitted: the given warm-up, or the detected one with its transient."""
        if self.warmup_steps is not None:
            return self.warmup_steps
        return int(TRANSIENT_FACTOR * self.warmup_end)

    @property
    def times(self) -> list[float]:
        """The time of each fitted point on the current axis (steps or summed learning rate)."""
        return self._times(self._kept())

    def _times(self, keep: np.ndarray) -> list[float]:
        """The time of the points ``keep`` on the current axis."""
        values = self.steps if self.axis == "steps" else self.lr_sums
        return [float(values[i]) for i in keep]

    @property
    def fitted_losses(self) -> list[float]:
        """The losses of the fitted points (after the warm-up)."""
        return [self.losses[i] for i in self._kept()]

    def _kept(self) -> np.ndarray:
        """Indices of the points fitted now: after the warm-up, and on the summed-LR axis with a summed LR."""
        steps = np.asarray(self.steps, dtype=np.int64)
        keep = steps > self.fit_after
        if self.axis == "lr_sum":
            keep &= np.array([v is not None for v in self.lr_sums], dtype=bool)
        return np.flatnonzero(keep)

    def _smooth(self, losses: list[float]) -> list[float]:
        """The exponential moving average of ``losses`` (weight ``smoothing`` on the past)."""
        out, s = [], None
        for v in losses:
            s = v if s is None else self.smoothing * s + (1 - self.smoothing) * v
            out.append(s)
        return out

    def _observe_lr(self, step: int, lr_sum: float | None) -> None:
        """Follow the mean learning rate between evaluations: the warm-up lasts while it rises (``warmup_end``), and
        it has varied after the warm-up once it moved by more than :data:`LR_VARIES` (``lr_varied``)."""
        if lr_sum is None or (self._lr_seen is not None and step <= self._lr_seen[0]) or step <= 0:
            return
        last_step, last_sum = self._lr_seen if self._lr_seen is not None else (0, 0.0)
        mean = (lr_sum - last_sum) / (step - last_step)
        self._lr_seen = (step, lr_sum)
        if self._lr_reference is None:
            if self._lr_mean is not None and mean > self._lr_mean * (1 + 1e-6):
                self.warmup_end = step  # still rising: the warm-up went on at least to here
            elif self._lr_mean is not None:
                self._lr_reference = mean  # the first interval that did not rise: the warm-up is over
        elif abs(mean - self._lr_reference) > LR_VARIES * abs(self._lr_reference):
            self.lr_varied = True
        self._lr_mean = mean

    def _stop_if_data_limited(self, decision: StopDecision) -> StopDecision:
        if decision.data_limited:
            decision.reason = (f"data-limited: the smoothed loss turned up {self.turn_up:.0%} above its minimum before "
                               "the threshold was reached; more data, not more steps, lowers it")
            decision.should_stop = self.stop_when_data_limited
        return self._remember(decision)

    def _remember(self, decision: StopDecision) -> StopDecision:
        self.last = decision
        if decision.should_stop and self.stopped_step is None:
            self.stopped_step = decision.step
        return decision

    def state_dict(self) -> dict[str, Any]:
        """Plain-typed state (loadable with ``torch.load(weights_only=True)``)."""
        return {"steps": list(self.steps), "losses": list(self.losses), "lr_sums": list(self.lr_sums),
                "lr_seen": None if self._lr_seen is None else list(self._lr_seen), "lr_mean": self._lr_mean,
                "lr_reference": self._lr_reference, "warmup_end": self.warmup_end, "lr_varied": self.lr_varied,
                "smoothed": self.smoothed, "min_smoothed": self.min_smoothed, "first_smoothed": self.first_smoothed,
                "predictions": list(self.predictions), "stopped_step": self.stopped_step,
                "warm_start": {k: list(v) for k, v in self.warm_start.items()},
                "last": None if self.last is None else {k: (list(v) if isinstance(v, tuple) else v)
                                                       for k, v in asdict(self.last).items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = [int(v) for v in state["steps"]]
        self.losses = [float(v) for v in state["losses"]]
        self.lr_sums = [None if v is None else float(v) for v in state.get("lr_sums", state.get("times", []))]
        seen = state.get("lr_seen")
        self._lr_seen = None if seen is None else (int(seen[0]), float(seen[1]))
        self._lr_mean, self._lr_reference = state.get("lr_mean"), state.get("lr_reference")
        self.warmup_end, self.lr_varied = int(state.get("warmup_end", 0)), bool(state.get("lr_varied", False))
        self.smoothed, self.min_smoothed = state["smoothed"], state["min_smoothed"]
        self.first_smoothed = state["first_smoothed"]
        self.predictions = [float(v) for v in state["predictions"]]
        self.stopped_step = state["stopped_step"]
        self.warm_start = {str(k): [float(x) for x in v] for k, v in state.get("warm_start", {}).items()}
        last = state.get("last")
        if last is not None and last.get("interval") is not None:
            last = {**last, "interval": tuple(last["interval"])}
        self.last = None if last is None else StopDecision(**last)


@dataclass
class ReplayResult:
    """The decisions of :class:`StoppingRule` over a finished run."""

    stop_step: int | None  # the step at which the rule stops, or None
    converged_loss: float | None  # the prediction it stopped on, or the last trusted prediction (None: none)
    stop_index: int | None  # index of the stopping point in the inputs
    decisions: list[StopDecision] = field(repr=False, default_factory=list)
    family: str = ""  # the curve family of the last fit (before any fit: StoppingRule.fitted_family)


def replay(steps: Sequence[int], losses: Sequence[float], *, lr_sum: Sequence[float] | None = None,
           lr: Sequence[float] | None = None, floor: Sequence[float] | float | None = None,
           epoch_steps: Sequence[float] | float | None = None, **rule_options: Any) -> ReplayResult:
    """Run :class:`StoppingRule` over logged points, exactly as the live callback would.

    Args:
        steps, losses: the evaluation points (e.g. the logged ``val_loss`` and its steps).
        lr_sum: the summed learning rate at each step (the callback logs it as ``scaling/lr_sum``):
            the same time axis the live callback used, so the decisions agree exactly.
        lr: alternatively, the learning rate of every optimizer step from 1 to max(steps) (index i is
            step i+1); summed here the way the callback sums it.
        floor: a lower bound of the converged loss (scalar, or one per point).
        epoch_steps: for ``family="effective_data"``, the optimizer steps of one epoch (scalar, or one per point:
            the callback logs its value at each evaluation as ``scaling/epoch_steps``).
        **rule_options: passed to :class:`StoppingRule`.
    """
    steps = [int(s) for s in steps]
    losses = [float(v) for v in losses]
    if len(steps) != len(losses):
        raise ValueError("steps and losses must have the same length")
    if lr_sum is not None and lr is not None:
        raise ValueError("give lr_sum or lr, not both")
    times = None
    if lr_sum is not None:
        times = [float(v) for v in lr_sum]
    elif lr is not None:
        cumulative = np.cumsum(np.asarray(lr, dtype=float))
        if steps and max(steps) > cumulative.size:
            raise ValueError(f"lr must hold one learning rate per optimizer step up to step {max(steps)}")
        times = [float(cumulative[s - 1]) if s >= 1 else 0.0 for s in steps]
    if times is not None and len(times) != len(steps):
        raise ValueError("lr_sum must have one value per step")
    floors = floor if isinstance(floor, (list, tuple, np.ndarray)) else [floor] * len(steps)
    per_point = isinstance(epoch_steps, (list, tuple, np.ndarray))
    if per_point and len(epoch_steps) != len(steps):
        raise ValueError("epoch_steps must be one number, or one per step")
    rule = StoppingRule(**rule_options, epoch_steps=None if per_point else epoch_steps)
    decisions = []
    for i, (step, loss) in enumerate(zip(steps, losses)):
        d = rule.update(step, loss, None if times is None else times[i], floors[i],
                        epoch_steps[i] if per_point else None)
        decisions.append(d)
        if d.should_stop:
            return ReplayResult(step, d.converged_loss, i, decisions, _family_of(rule))
    last_pred = next((d.converged_loss for d in reversed(decisions) if d.trusted and d.converged_loss is not None),
                     None)
    return ReplayResult(None, last_pred, None, decisions, _family_of(rule))


def _family_of(rule: StoppingRule) -> str:
    """The family of the rule's last fit (before any fit: the one it would use with its floor)."""
    return rule.last_fit.family if rule.last_fit is not None else rule.fitted_family
