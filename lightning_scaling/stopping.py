"""The extra-early stopping rule as a pure object, shared by the live callback and the replay.

Kaplan et al. 2020 appendix B.2 ([K] eq B.5): at fixed compute the best trade between model size and
steps stops training at ``L = (1 + alpha_N/alpha_S) L_conv``, about 1.1x the converged loss of the
model being trained. With an irreducible loss L_inf the rule applies to the reducible part:
stop when ``L - L_inf <= threshold (L_conv - L_inf)`` (docs/science.md 4).

The rule predicts the converged loss each time a new point arrives
(:func:`~lightning_scaling.curve_families.predict_converged`: ``L(t) = L_conv + (t_c/t)^alpha``, [K] eq 5.6
at fixed N, a saturating exponential for runs that repeat their data, and by default their equal-weight
average over the trusted ones, as in Domhan et al. 2015, or the power law alone when the floor is the model's own
limit L(N, D): :func:`rule_family`), fitted to the points after warm-up, with t the step or, when the learning
rate varies, the summed learning rate ([T] "forward area"), and never below a known floor (L(D) of the data seen).
It stops only when the prediction is trusted, the last ``stable_fits`` predictions agree within ``stability``, and
the smoothed loss is at or below the stop loss: ``threshold`` x the calibrated lower bound of the converged loss
(docs/science.md 4). The research knobs are fields of one :class:`StopConfig`. Feeding the same points gives the
same decisions: :func:`replay` runs exactly this object over a finished run.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import FitError
from .curve_families import FAMILIES, check_effective_data, check_family, predict_converged
from .calibration import Calibration
from .calibration import resolve as resolve_calibration
from .fitting import noise_sd
from .planning import stopping_factor
from .presets import KAPLAN_ALPHA_N, KAPLAN_ALPHA_S


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
#: The loss turns up (data-limited) only when the median of this many latest evaluations is above the bar too: a
#: spike of one evaluation is not a turn-up.
TURN_UP_WINDOW = 3
#: Once the noise can be estimated (:data:`TURN_UP_NOISE_POINTS`), the median is of this many: a spike of two
#: evaluations is not a turn-up either.
TURN_UP_WINDOW_LATER = 5
#: A turn-up must also exceed this many standard deviations of the smoothed loss's noise (estimated from the losses
#: since the warm-up, :func:`~lightning_scaling.fitting.noise_sd` of their logarithm): the lowest of a few hundred
#: noisy smoothed values lies ~3 of them below the curve and the latest may lie ~2 above, so on a still-falling curve
#: whose evaluations are noisier than ~0.3% a bare ``turn_up`` of 1% is crossed by noise alone.
TURN_UP_Z = 5.0
#: With fewer points than this since the warm-up their noise cannot be estimated: only a rise of
#: ``TURN_UP_EARLY`` x ``turn_up`` counts then (a run that overfits at once rises far faster), or of ``TURN_UP_Z``
#: standard deviations of the noise of every point held, the warm-up's included, if that is more.
TURN_UP_NOISE_POINTS = 6
TURN_UP_EARLY = 5.0
#: A turn-up needs the smoothed minimum below the highest of the first :data:`TURN_UP_WINDOW` losses seen by this many
#: times the rise that counts: a run still on the plateau it began on (a classifier before it learns) is not
#: data-limited, however its noise goes (a few points estimate that noise low as often as not).
TURN_UP_FELL = 3.0
#: How much the mean learning rate between two evaluations must change, relative to the first one after the warm-up,
#: for ``time_axis="auto"`` to take the summed learning rate as the time axis.
LR_VARIES = 0.01
#: The steepest tail a stop believes (``StopConfig.max_tail_exponent``): a power law ``L_inf + A t^-alpha`` falls at
#: ``alpha (L - L_inf)`` per e-fold of time, so a loss still falling at ``b`` lies at least ``b / alpha`` above its
#: converged loss. Published exponents of the loss in steps or summed LR are below 1 ([K] alpha_S 0.76, [MPL] about
#: 0.5); the calibration sources' threshold stops imply at most 3.3 (docs/science.md section 12).
MAX_TAIL_EXPONENT = 5.0
#: The span of log time over which :func:`tail_fall` measures the loss's recent fall: the last third of the time.
TAIL_SPAN = math.log(1.5)
#: The families :class:`StoppingRule` takes: those of :func:`~lightning_scaling.curve_families.predict_converged` and
#: ``"auto"`` (:func:`rule_family`).
RULE_FAMILIES = ("auto",) + FAMILIES


def rule_family(family: str, floor_kind: str = "data") -> str:
    """The curve family the rule fits: ``family`` itself, or for ``"auto"`` the one the measurements favour for the
    floor at hand (BENCHMARKS.md, the uncalibrated rule on the recorded sets).

    * ``floor_kind="model"`` (L(N, D), this model's own limit, [K] eq 1.5): ``"power"``, [K] eq 5.6 run down to that
      limit; averaging in the exponential, which flattens early, stops later.
    * ``"data"`` (L(D), a bound that smaller models stay above, [H] 6) or no floor: ``"average"`` of the power law
      and the exponential: the power law alone only ever predicts L(D), so a model too small for its data would
      never stop.

    Raises:
        ValueError: an unknown ``floor_kind``.

    Example:
        >>> rule_family("auto", "model"), rule_family("auto"), rule_family("exponential", "model")
        ('power', 'average', 'exponential')
    """
    if family != "auto":
        return family
    if floor_kind not in FLOOR_KINDS:
        raise ValueError(f"floor_kind must be one of {FLOOR_KINDS}, got {floor_kind!r}")
    return "power" if floor_kind == "model" else "average"


class StopReason(str, Enum):
    """What a :class:`StopDecision` concluded, as a code (its ``reason`` says it in words).

    The stopping codes are ``THRESHOLD`` (the loss reached ``threshold`` x the converged loss), ``DATA_LIMITED``
    (the loss turned up, with ``stop_when_data_limited``) and ``PATIENCE`` (the opt-in fallback,
    :attr:`StopConfig.fallback_patience`); every other code is a reason not to stop yet.
    """

    SKIPPED = "skipped"  # the point was not used: a non-finite loss, or a step or time that did not advance
    WARMUP = "warmup"  # the point lies in the warm-up or the transient after it
    WAITING = "waiting"  # fewer than ``min_points`` points after the warm-up
    NO_PREDICTION = "no_prediction"  # the points admit no fit (yet), or the fit failed numerically
    UNTRUSTED = "untrusted"  # a prediction, but the fit cannot be trusted (too wide, not bent, at a bound)
    UNSTABLE = "unstable"  # trusted, but the last ``stable_fits`` predictions do not agree
    UNSURE = "unsure"  # calibrated: the loss is above threshold x the lower bound of the converged loss
    ABOVE = "above"  # uncalibrated (or held at a floor): the loss is above threshold x the prediction
    DATA_LIMITED = "data_limited"  # the smoothed loss turned up above its minimum
    THRESHOLD = "threshold"  # stop: the loss reached the stop loss
    PATIENCE = "patience"  # stop: the fallback patience ran out on a plateau


#: The codes of a decision that stops.
STOP_CODES = (StopReason.THRESHOLD, StopReason.DATA_LIMITED, StopReason.PATIENCE)


@dataclass
class StopDecision:
    """What the rule concluded after one new point: ``should_stop``, a ``code`` (:class:`StopReason`) and the
    ``reason`` in words, with the prediction, its interval and the stop loss when there is one."""

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
    code: StopReason = StopReason.WAITING


@dataclass(frozen=True)
class StopConfig:
    """The research knobs of :class:`StoppingRule` and :class:`ExtraEarlyStopping`, validated at construction.

    The defaults are the ones the shipped calibration was made with (``lightning_scaling/data/calibration.json``):
    changing a field that shapes the prediction (``family``, ``min_points``, ``smoothing``, ``max_relative_width``)
    makes the calibrated interval describe another predictor; recalibrate with ``lightning-scaling calibrate``.

    Args:
        alpha_N, alpha_S: exponents of [K] eq 1.6 that set the default threshold ``1 + alpha_N/alpha_S`` ([K] B.5;
            0.076 and 0.76 give 1.10).
        irreducible: a known floor of the loss (e.g. the entropy of the text); the rule then applies to the
            reducible part, ``L - L_inf <= threshold (L_conv - L_inf)``.
        min_points: points after the warm-up needed before the first fit (>= 4: a learning curve has three
            parameters).
        smoothing: weight of the past in the exponential moving average of the loss, in [0, 1) (0 = none).
        stable_fits: consecutive trusted predictions that must agree before a stop (>= 1).
        stability: relative spread allowed among those predictions (> 0).
        max_relative_width: the widest relative interval of the fit a trusted prediction may have (> 0).
        turn_up: relative rise of the smoothed loss above its minimum that counts as data-limited (> 0).
        family: the curve family that predicts the converged loss (:data:`RULE_FAMILIES`): "auto" (default,
            :func:`rule_family`), "power", "exponential", "average" or the opt-in "effective_data" (a log law in
            [M]'s effective data; steps axis and ``epoch_steps`` needed).
        epoch_steps: for ``family="effective_data"``: the optimizer steps of one epoch of the unique data (``U`` of
            [M] eq 5); a value given to :meth:`StoppingRule.update` overrides it.
        fallback_patience: 0 (default: off), or stop when the rule has not stopped and the smoothed loss has not
            fallen below ``(1 - fallback_min_delta)`` x its best for this many evaluations after the warm-up (a
            patience stop on the plateau, as Lightning's ``EarlyStopping``, for runs the rule stays unsure on).
        fallback_min_delta: the relative improvement that resets the fallback's patience (>= 0).
        max_tail_exponent: the steepest power-law tail a stop believes (> 0; ``math.inf``: off). A curve still
            falling at ``b`` per e-fold of time (:func:`tail_fall`) has its converged loss at most
            ``L - b / max_tail_exponent``; the stop is judged against that when it is lower than the prediction's
            bound (:data:`MAX_TAIL_EXPONENT`).

    Raises:
        ValueError: a field out of its range, naming the field.

    Example:
        >>> StopConfig(min_points=8, fallback_patience=20).min_points
        8
    """

    alpha_N: float = KAPLAN_ALPHA_N
    alpha_S: float = KAPLAN_ALPHA_S
    irreducible: float = 0.0
    min_points: int = 6
    smoothing: float = 0.3
    stable_fits: int = 2
    stability: float = 0.02
    max_relative_width: float = 0.1
    turn_up: float = 0.01
    family: str = "auto"
    epoch_steps: float | None = None
    fallback_patience: int = 0
    fallback_min_delta: float = 0.001
    max_tail_exponent: float = MAX_TAIL_EXPONENT

    def __post_init__(self) -> None:
        if not (_number(self.alpha_N) and _number(self.alpha_S) and self.alpha_N > 0 and self.alpha_S > 0):
            raise ValueError(f"alpha_N and alpha_S must be numbers > 0, got {self.alpha_N!r}, {self.alpha_S!r}")
        if not (_number(self.irreducible) and self.irreducible >= 0):
            raise ValueError(f"irreducible must be a finite number >= 0, got {self.irreducible!r}")
        if not (_integer(self.min_points) and self.min_points >= 4):
            raise ValueError(f"min_points must be an int >= 4 (a learning curve has three parameters), got "
                             f"{self.min_points!r}")
        if not (_number(self.smoothing) and 0.0 <= self.smoothing < 1.0):
            raise ValueError(f"smoothing must be in [0, 1), got {self.smoothing!r}")
        if not (_integer(self.stable_fits) and self.stable_fits >= 1):
            raise ValueError(f"stable_fits must be an int >= 1, got {self.stable_fits!r}")
        for name in ("stability", "max_relative_width", "turn_up"):
            value = getattr(self, name)
            if not (_number(value) and value > 0):
                raise ValueError(f"{name} must be a number > 0, got {value!r}")
        if self.family not in RULE_FAMILIES:
            raise ValueError(f"family must be one of {RULE_FAMILIES}, got {self.family!r}")
        if self.epoch_steps is not None:
            check_effective_data(self.epoch_steps)
        if not (_integer(self.fallback_patience) and self.fallback_patience >= 0):
            raise ValueError(f"fallback_patience must be an int >= 0 (0 = off), got {self.fallback_patience!r}")
        if not (_number(self.fallback_min_delta) and self.fallback_min_delta >= 0):
            raise ValueError(f"fallback_min_delta must be a number >= 0, got {self.fallback_min_delta!r}")
        if not (isinstance(self.max_tail_exponent, (int, float)) and not isinstance(self.max_tail_exponent, bool)
                and self.max_tail_exponent > 0):
            raise ValueError(f"max_tail_exponent must be a number > 0 (math.inf: off), got {self.max_tail_exponent!r}")

    @classmethod
    def from_value(cls, value: "StopConfig | Mapping[str, Any] | None") -> "StopConfig":
        """``value`` itself, the default for None, or built from a mapping of its fields (e.g. a run-info file's)."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, Mapping):
            unknown = sorted(set(value) - CONFIG_FIELDS)
            if unknown:
                raise ValueError(f"unknown StopConfig field(s) {unknown}; the fields are {sorted(CONFIG_FIELDS)}")
            return cls(**value)
        raise ValueError(f"config must be a StopConfig, a dict of its fields or None, got {type(value).__name__}")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) and \
        math.isfinite(value)


def _integer(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


#: The fields of :class:`StopConfig`.
CONFIG_FIELDS = frozenset(f.name for f in dataclasses.fields(StopConfig))
#: Options an earlier version took, which the measurements did not favour (docs/design.md): refused by name.
REMOVED_OPTIONS = {"window": 0.0, "weighting": "equal", "floor_weight": 1.0, "stop_at": "nearest"}


def rule_arguments(options: Mapping[str, Any]) -> dict[str, Any]:
    """:class:`StoppingRule` keyword arguments from flat options, where a :class:`StopConfig` field may be given by
    its name (``--rule min_points=8`` on the command line, a run-info file of an earlier version) or inside
    ``config``. A removed option holding its only value is dropped; any other value of it raises ValueError."""
    options = dict(options)
    config = dict(asdict(options.pop("config")) if isinstance(options.get("config"), StopConfig)
                  else options.pop("config", None) or {})
    for key in list(options):
        if key in CONFIG_FIELDS:
            config[key] = options.pop(key)
        elif key in REMOVED_OPTIONS:
            value = options.pop(key)
            if value != REMOVED_OPTIONS[key]:
                raise ValueError(f"{key} was removed (the measurements did not favour it over {key}="
                                 f"{REMOVED_OPTIONS[key]!r}, which the rule now always uses)")
    return {**options, "config": StopConfig.from_value(config)}


def _refuse(misplaced: Mapping[str, Any], owner: str) -> None:
    """Raise for keyword arguments ``owner`` does not take, saying where each belongs."""
    for key in misplaced:
        if key in CONFIG_FIELDS:
            raise ValueError(f"{key} is a StopConfig field: pass {owner}(config=StopConfig({key}=...))")
        if key in REMOVED_OPTIONS:
            raise ValueError(f"{key} was removed: the measurements did not favour it over {key}="
                             f"{REMOVED_OPTIONS[key]!r}, which the rule now always uses")
        raise TypeError(f"{owner}() got an unexpected keyword argument {key!r}")


def flat_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse view of :func:`rule_arguments`: every option by name, the config's fields included."""
    args = rule_arguments(options)
    return {**{k: v for k, v in args.items() if k != "config"}, **asdict(args["config"])}


class StoppingRule:
    """Decide when a run has reached ``threshold`` x its predicted converged loss.

    Args:
        threshold: stop multiple of the converged loss; default ``1 + alpha_N/alpha_S`` ([K] B.5) of ``config``.
        confidence: the level of the converged-loss interval (central, reported in every decision) and of the stop:
            the rule stops only when the smoothed loss is at or below ``threshold`` x the one-sided lower bound of the
            converged loss at this level (or x the prediction, if that is lower), so it stops early (the truth below
            that bound) with probability at most ``1 - confidence`` on runs like those it was calibrated on.
        calibration: the :class:`~lightning_scaling.calibration.Calibration` of the interval: None (default) for
            the one the package ships, a path to one (``lightning-scaling calibrate``), or False for none (the
            fit's own Gauss-Newton interval, and the stop at ``threshold`` x the point prediction, kept for
            comparison). A prediction held at a floor keeps the fit's interval (the floor's error is the law's,
            not the curve's).
        warmup_steps: points at or before this step are not fitted (warm-up distorts the curve). None (default):
            found from the learning rate the rule observes (``lr_sum`` handed to :meth:`update`): the warm-up lasts
            while the mean learning rate between evaluations rises, and the points up to
            :data:`TRANSIENT_FACTOR` x its end are not fitted (without ``lr_sum`` observations: none).
        time_axis: what the curve is fitted against (:data:`TIME_AXES`): "auto" (default: the summed learning
            rate once it has varied after the warm-up, [T], else steps), "steps" or "lr_sum".
        stop_when_data_limited: stop when the smoothed loss has turned up by ``config.turn_up`` over its minimum
            since the warm-up, before the threshold was reached (default True): the run is data-limited, more steps
            only raise the held-out loss ([K] 5.7: the early-stopping step of a data-limited run), more data is the
            remedy. False: such a run is not stopped by this rule (the decision still says it is data-limited).
        floor_kind: what the ``floor`` given to :meth:`update` is (:data:`FLOOR_KINDS`): "data" (L(D), default) or
            "model" (L(N, D) at this model's N). The live callback sets it from DataLimitGap's law.
        config: the research knobs (:class:`StopConfig`, or a dict of its fields); default ``StopConfig()``.

    Once the rule may stop, it stops at the evaluation nearest the crossing of the stop loss: also at the last
    evaluation above it when the next one, falling as much as the smoothed loss fell last time, would land
    further below it than this one is above (so the stop lands on the threshold on average, not past it).

    Raises:
        ValueError: an argument out of its range, naming it; a :class:`StopConfig` field given by name says to
            pass it in ``config``.

    Example:
        >>> rule = StoppingRule(confidence=0.8, config=StopConfig(min_points=8))
        >>> decision = rule.update(100, 3.2, lr_sum=0.05)
        >>> decision.should_stop, decision.code.value
        (False, 'waiting')
    """

    def __init__(self, threshold: float | None = None, confidence: float = 0.8, *,
                 calibration: "Calibration | str | Path | None | bool" = None, warmup_steps: int | None = None,
                 time_axis: str = "auto", stop_when_data_limited: bool = True, floor_kind: str = "data",
                 config: "StopConfig | Mapping[str, Any] | None" = None, **misplaced: Any) -> None:
        _refuse(misplaced, "StoppingRule")
        self.config = config = StopConfig.from_value(config)
        self.threshold = stopping_factor(config.alpha_N, config.alpha_S) if threshold is None else float(threshold)
        if not (math.isfinite(self.threshold) and self.threshold > 1.0):
            raise ValueError(f"threshold must be a number > 1 (e.g. 1.1), got {threshold!r}")
        if warmup_steps is not None and not (isinstance(warmup_steps, (int, np.integer)) and warmup_steps >= 0):
            raise ValueError(f"warmup_steps must be None (found from the learning rate) or an int >= 0 (the last step "
                             f"of the warm-up; 0 = none), got {warmup_steps!r}")
        if time_axis not in TIME_AXES:
            raise ValueError(f"time_axis must be one of {TIME_AXES}, got {time_axis!r}")
        if config.family == "effective_data" and time_axis == "lr_sum":
            raise ValueError("family='effective_data' fits a curve in optimizer steps: use time_axis='steps' or 'auto'")
        self.time_axis = time_axis
        if not (isinstance(confidence, (int, float)) and 0.0 < confidence < 1.0):
            raise ValueError(f"confidence must be a number in (0, 1), e.g. 0.8, got {confidence!r}")
        self.confidence = float(confidence)
        self.calibration = calibration
        self._calibration = None if calibration is False else resolve_calibration(calibration)
        if floor_kind not in FLOOR_KINDS:
            raise ValueError(f"floor_kind must be one of {FLOOR_KINDS}, got {floor_kind!r}")
        check_family(rule_family(config.family, floor_kind))
        self.floor_kind = floor_kind
        self.warmup_steps = None if warmup_steps is None else int(warmup_steps)
        self.stop_when_data_limited = bool(stop_when_data_limited)
        self.family, self.epoch_steps = config.family, config.epoch_steps
        self.irreducible, self.min_points = float(config.irreducible), int(config.min_points)
        self.smoothing, self.stable_fits = float(config.smoothing), int(config.stable_fits)
        self.stability, self.max_relative_width = float(config.stability), float(config.max_relative_width)
        self.turn_up = float(config.turn_up)
        self.reset()

    def options(self) -> dict[str, Any]:
        """The keyword arguments that build this rule again (``StoppingRule(**rule.options())``; plain types: what
        the live callback writes into the run-info file so that a replay uses the same rule)."""
        return {"threshold": self.threshold, "confidence": self.confidence,
                "calibration": self.calibration if isinstance(self.calibration, (bool, str, type(None))) else (
                    str(self.calibration) if isinstance(self.calibration, Path) else self.calibration.to_json()),
                "warmup_steps": self.warmup_steps, "time_axis": self.time_axis,
                "stop_when_data_limited": self.stop_when_data_limited, "floor_kind": self.floor_kind,
                "config": asdict(self.config)}

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
        self.first_losses: list[float] = []  # the first TURN_UP_WINDOW losses seen, a given warm-up's too
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
        self._since_best = 0  # evaluations since the smoothed loss last improved (the fallback's patience)
        self.turn_up_bar = self.turn_up  # the relative rise the last turn-up test asked for (turn_up_rise)
        self._turn_up_few = True  # that test had too few points to estimate the noise

    def update(self, step: int, loss: float, lr_sum: float | None = None, floor: float | None = None,
               epoch_steps: float | None = None) -> StopDecision:
        """Add the loss at ``step`` (and the summed learning rate so far, if the time axis is the LR area).

        ``floor`` is a lower bound of the converged loss known from elsewhere, e.g. the fitted L(D) at the
        data seen (DataLimitGap): the prediction is never allowed below it. ``epoch_steps`` (for
        ``family="effective_data"``) overrides the config's for this fit (every point is fitted with it).

        Raises ValueError for ``family="effective_data"`` with ``lr_sum`` or without any ``epoch_steps``.
        """
        R = StopReason
        if self.family == "effective_data":
            epoch_steps = self.epoch_steps if epoch_steps is None else epoch_steps
            check_effective_data(epoch_steps, "steps")
        step = int(step)
        loss = float(loss)
        lr_sum = None if lr_sum is None or not math.isfinite(float(lr_sum)) else float(lr_sum)
        self.observe_lr(step, lr_sum)
        if not math.isfinite(loss):
            return self._remember(StopDecision(step, False, f"non-finite loss {loss} skipped", code=R.SKIPPED))
        if self.steps and step <= self.steps[-1]:
            return self._remember(StopDecision(step, False, "step did not advance: point skipped", code=R.SKIPPED))
        if self.axis == "lr_sum" and (lr_sum is None or not lr_sum > 0 or (
                self.lr_sums and self.lr_sums[-1] is not None and lr_sum <= self.lr_sums[-1])):
            return self._remember(StopDecision(step, False, "time axis did not advance: point skipped",
                                               code=R.SKIPPED))
        if len(self.first_losses) < TURN_UP_WINDOW:  # where the loss began, for the turn-up's fall test
            self.first_losses.append(loss)
        if self.warmup_steps is not None and step <= self.warmup_steps:  # a given warm-up: the point is not kept
            return self._remember(StopDecision(step, False, "warm-up: point not fitted", code=R.WARMUP))
        self.steps.append(step)
        self.losses.append(loss)
        self.lr_sums.append(lr_sum)
        keep = self._kept()
        turned_up = self._turned_up()
        if not keep.size or keep[-1] != len(self.steps) - 1:
            decision = StopDecision(step, False, f"warm-up: point not fitted (the warm-up ended near step "
                                                 f"{self.warmup_end}; points up to step {self.fit_after} are left "
                                                 "out)", data_limited=turned_up, code=R.WARMUP)
            return self._finish(decision) if turned_up else self._remember(decision)
        losses = [self.losses[i] for i in keep]
        smoothed = self._smooth(losses)
        s = smoothed[-1]
        previous = smoothed[-2] if len(smoothed) > 1 else None
        self.smoothed, self.first_smoothed, self.min_smoothed = s, smoothed[0], min(smoothed)
        if self.config.fallback_patience:
            self._since_best = _since_best(smoothed, self.config.fallback_min_delta)
        data_limited = turned_up
        if len(losses) < self.min_points:
            return self._finish(StopDecision(step, False, f"waiting for {self.min_points} points after warm-up",
                                             smoothed_loss=s, data_limited=data_limited, code=R.WAITING))
        axis = self.axis
        times = self._times(keep)
        base = max(self.irreducible, float(floor) if floor is not None and math.isfinite(floor) else 0.0)
        floored = base > self.irreducible
        # a point without a floor (e.g. DataLimitGap could not count the data) is fitted as without an L(N, D)
        family = rule_family(self.family, self.floor_kind if floored else "data")
        try:
            fit = predict_converged(times, losses, family=family,
                                    irreducible=min(base, min(losses) * (1 - 1e-6)), time_axis=axis,
                                    max_relative_width=self.max_relative_width, known_floor=floored,
                                    warm_start=self.warm_start, epoch_steps=epoch_steps)
        except FitError as err:  # the points do not admit a fit (yet): no prediction at this point
            return self._finish(StopDecision(step, False, f"no prediction: {err}", smoothed_loss=s,
                                             data_limited=data_limited, code=R.NO_PREDICTION))
        except (ArithmeticError, np.linalg.LinAlgError, ValueError) as err:
            # a numerical failure inside the fit is "no prediction" for this point too, never an exception in the
            # user's training; it is reported (StopDecision.error) so that the callback can say so once
            return self._finish(StopDecision(step, False, f"no prediction: the fit failed ({err})",
                                             smoothed_loss=s, data_limited=data_limited,
                                             error=f"{type(err).__name__}: {err}", code=R.NO_PREDICTION))
        self.last_fit = fit
        self.warm_start.update({f.family: f.params for f in fit.fits if f.params is not None})
        if not math.isfinite(fit.converged_loss):
            return self._finish(StopDecision(step, False, fit.reason, smoothed_loss=s, data_limited=data_limited,
                                             code=R.NO_PREDICTION))
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
        # a curve still falling fast lies far above its converged loss, whatever its fit says; a prediction held at a
        # known floor (L(D) of the data seen) is no extrapolation of this curve and is judged as it is
        fall = 0.0 if fit.held_at_floor else tail_fall(times, losses)
        tail_cap = s - fall / self.config.max_tail_exponent
        capped = tail_cap < bound
        if capped:
            bound = max(tail_cap, self.irreducible)
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
                                fit.trusted, data_limited, code=R.UNTRUSTED)
        if not fit.trusted:
            self.predictions.clear()
            return self._finish(decision)
        self.predictions.append(conv)
        recent = self.predictions[-self.stable_fits:]
        stable = len(recent) == self.stable_fits and (max(recent) - min(recent)) <= self.stability * conv
        if not stable:
            decision.reason, decision.code = f"prediction not yet stable over {self.stable_fits} fits", R.UNSTABLE
            return self._finish(decision)
        # stop now if the next evaluation, falling as much as the last, would overshoot the stop loss by more than
        # this one falls short of it (the stop then lands on average on the threshold, not past it)
        nearest = previous is not None and previous > s and s - stop_loss < 0.5 * (previous - s)
        if s <= stop_loss or nearest:
            decision.should_stop, decision.code = True, R.THRESHOLD
            reached = "reached" if s <= stop_loss else "is nearer than the next evaluation would be to"
            what = (f"the {self.confidence:.0%} lower bound {bound:.4g} of the converged loss (prediction {conv:.4g})"
                    if calibrated else f"predicted converged loss {conv:.4g}{note}")
            decision.reason = (f"smoothed loss {s:.4g} {reached} {self.threshold:.3g} x {what} (stop loss "
                               f"{stop_loss:.4g})")
            return self._remember(decision)
        if capped:
            decision.code = R.UNSURE
            decision.reason = (f"prediction {conv:.4g}; the loss still falls {fall / s:.0%} per e-fold of time, so "
                               f"the converged loss lies below {tail_cap:.4g} unless the curve's tail exponent is "
                               f"above {self.config.max_tail_exponent:g}: the loss {s:.4g} is above "
                               f"{self.threshold:.3g} x that ({stop_loss:.4g}); more of the curve is needed")
            return self._finish(decision)
        if calibrated:
            lo, hi = interval
            decision.code = R.UNSURE
            decision.reason = (f"prediction {conv:.4g}, {self.confidence:.0%} interval [{lo:.4g}, {hi:.4g}] "
                               f"({lo / conv - 1:+.0%}/{hi / conv - 1:+.0%}): the loss {s:.4g} is above "
                               f"{self.threshold:.3g} x the {self.confidence:.0%} lower bound ({stop_loss:.4g}); more "
                               "of the curve, or a floor from DataLimitGap, is needed")
            return self._finish(decision)
        decision.code = R.ABOVE
        decision.reason = f"stable prediction {conv:.4g}{note}; loss {s:.4g} above stop loss {stop_loss:.4g}"
        return self._finish(decision)

    @property
    def axis(self) -> str:
        """The time axis the next fit uses: ``time_axis``, with "auto" resolved by what has been observed."""
        if self.time_axis != "auto":
            return self.time_axis
        return "lr_sum" if self.lr_varied and self.family != "effective_data" else "steps"

    @property
    def fit_after(self) -> int:
        """The points at or before this step are not fitted: the given warm-up, or the detected one with its
        transient."""
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

    def _turned_up(self) -> bool:
        """Whether the loss has turned up since the warm-up ended (the given one, or the detected end of the rising
        learning rate: the transient after it is left out of the fit, not out of this test, so that a run that
        overfits that early is still seen to): the smoothed loss and the median of the last :data:`TURN_UP_WINDOW`
        losses (:data:`TURN_UP_WINDOW_LATER` once :data:`TURN_UP_NOISE_POINTS` are there) both above the smoothed
        minimum by :meth:`turn_up_rise` (``turn_up``, or more than the noise can explain), so that a loss spike
        shorter than half the window, or the noise of a curve still falling, is not a turn-up; and that minimum
        below the first losses seen (a given warm-up's too) by :data:`TURN_UP_FELL` times that rise, so that the
        noise of a plateau the run has not yet left is not one either."""
        after = self.warmup_steps if self.warmup_steps is not None else self.warmup_end
        losses = [v for t, v in zip(self.steps, self.losses) if t > after]
        if len(losses) < TURN_UP_WINDOW:
            return False
        smoothed = self._smooth(losses)
        low = min(smoothed)
        self.turn_up_bar = math.expm1(self.turn_up_rise(losses))
        self._turn_up_few = len(losses) < TURN_UP_NOISE_POINTS
        bar = low + abs(low) * self.turn_up_bar  # low x (1 + rise) for a positive loss, and the same rise below 0
        window = TURN_UP_WINDOW if self._turn_up_few else TURN_UP_WINDOW_LATER
        # a loss that has not yet come down from where it began (a plateau before it learns) has nothing to turn up
        # from: the minimum must lie below the first losses seen by TURN_UP_FELL times the rise that counts
        fell = max(self.first_losses) - low > TURN_UP_FELL * abs(low) * self.turn_up_bar
        return fell and smoothed[-1] > bar and float(np.median(losses[-window:])) > bar

    def turn_up_rise(self, losses: Sequence[float]) -> float:
        """The rise in log loss over the smoothed minimum that counts as a turn-up, given the losses since the
        warm-up: ``log(1 + turn_up)``, or :data:`TURN_UP_Z` standard deviations of the smoothed loss's noise if that
        is more (an exponential moving average with weight ``b`` on the past keeps ``sqrt((1 - b) / (1 + b))`` of
        the noise of single evaluations). With fewer than :data:`TURN_UP_NOISE_POINTS` losses since the warm-up,
        ``log(1 + TURN_UP_EARLY x turn_up)``, or the same number of standard deviations of the noise of every point
        the rule holds (the warm-up's too) if that is more: the curvature of a falling warm-up only raises that
        estimate, so a run as noisy as its warm-up is not stopped by the noise of its first few points."""
        z = TURN_UP_Z * math.sqrt((1 - self.smoothing) / (1 + self.smoothing))
        if len(losses) < TURN_UP_NOISE_POINTS:
            early = math.log1p(TURN_UP_EARLY * self.turn_up)
            held = self.losses
            return max(early, z * _relative_noise(held)) if len(held) >= TURN_UP_NOISE_POINTS else early
        return max(math.log1p(self.turn_up), z * _relative_noise(losses))

    def _smooth(self, losses: list[float]) -> list[float]:
        """The exponential moving average of ``losses`` (weight ``smoothing`` on the past)."""
        out, s = [], None
        for v in losses:
            s = v if s is None else self.smoothing * s + (1 - self.smoothing) * v
            out.append(s)
        return out

    def observe_lr(self, step: int, lr_sum: float | None) -> None:
        """Observe the summed learning rate at ``step`` (what :meth:`update` does first): the warm-up lasts while the
        mean learning rate between observations rises (``warmup_end``; points up to :attr:`fit_after` are not
        fitted), and it has varied after the warm-up once it moved by more than :data:`LR_VARIES` (``lr_varied``).
        Observing without updating is how :func:`lightning_scaling.forecasting.forecast` finds the same warm-up."""
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

    def _finish(self, decision: StopDecision) -> StopDecision:
        """A decision that has not reached the stop loss: data-limited if the loss turned up, else the fallback's
        patience stop if it is on and has run out."""
        if decision.data_limited:
            bar = self.turn_up_bar
            why = "" if bar <= self.turn_up * (1 + 1e-9) else (
                f" (fewer than {TURN_UP_NOISE_POINTS} points since the warm-up: a larger rise)" if self._turn_up_few
                else " (more than its noise explains)")
            decision.reason = (f"data-limited: the smoothed loss turned up more than {bar:.1%} above its minimum{why} "
                               "before the threshold was reached; more data, not more steps, lowers it")
            decision.should_stop, decision.code = self.stop_when_data_limited, StopReason.DATA_LIMITED
        elif 0 < self.config.fallback_patience <= self._since_best:
            decision.reason = (f"fallback patience: the smoothed loss has not improved by "
                               f"{self.config.fallback_min_delta:.2%} in {self._since_best} evaluations, and the rule "
                               f"did not stop ({decision.reason})")
            decision.should_stop, decision.code = True, StopReason.PATIENCE
        return self._remember(decision)

    def _remember(self, decision: StopDecision) -> StopDecision:
        self.last = decision
        if decision.should_stop and self.stopped_step is None:
            self.stopped_step = decision.step
        return decision

    def state_dict(self) -> dict[str, Any]:
        """Plain-typed state (loadable with ``torch.load(weights_only=True)``)."""
        return {"steps": list(self.steps), "losses": list(self.losses), "lr_sums": list(self.lr_sums),
                "first_losses": list(self.first_losses),
                "lr_seen": None if self._lr_seen is None else list(self._lr_seen), "lr_mean": self._lr_mean,
                "lr_reference": self._lr_reference, "warmup_end": self.warmup_end, "lr_varied": self.lr_varied,
                "smoothed": self.smoothed, "min_smoothed": self.min_smoothed, "first_smoothed": self.first_smoothed,
                "predictions": list(self.predictions), "stopped_step": self.stopped_step,
                "warm_start": {k: list(v) for k, v in self.warm_start.items()},
                "last": None if self.last is None else {
                    k: (list(v) if isinstance(v, tuple) else v.value if isinstance(v, StopReason) else v)
                    for k, v in asdict(self.last).items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = [int(v) for v in state["steps"]]
        self.losses = [float(v) for v in state["losses"]]
        self.first_losses = [float(v) for v in state.get("first_losses", self.losses[:TURN_UP_WINDOW])]
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
        if last is not None and "code" in last:
            last = {**last, "code": StopReason(last["code"])}
        self.last = None if last is None else StopDecision(**last)


def tail_fall(times: Sequence[float], losses: Sequence[float], span: float = TAIL_SPAN) -> float:
    """How fast the loss falls now: ``-dL/d ln t``, the least-squares slope of the losses against log time over the
    points in the last ``span`` of log time (at least 3 points), or 0 when it does not fall.

    A power-law tail ``L = L_inf + A t^-alpha`` falls at ``alpha (L - L_inf)`` per unit of ``ln t``, so a curve still
    falling at ``b`` has a converged loss at most ``L - b / alpha``.

    Example:
        >>> t = [100.0, 120.0, 140.0, 160.0]
        >>> round(tail_fall(t, [1.0 + 10.0 / x for x in t]), 3)  # alpha 1, L - L_inf = 0.07 at t = 140
        0.073
    """
    t = np.log(np.asarray(times, dtype=float))
    y = np.asarray(losses, dtype=float)
    if t.size < 3:
        return 0.0
    first = min(int(np.searchsorted(t, t[-1] - span)), t.size - 3)  # the last `span`, at least 3 points
    if np.ptp(t[first:]) <= 0:
        return 0.0
    slope = float(np.polyfit(t[first:], y[first:], 1)[0])
    return max(0.0, -slope) if math.isfinite(slope) else 0.0


def _relative_noise(losses: Sequence[float]) -> float:
    """The noise of single evaluations relative to the loss: :func:`~lightning_scaling.fitting.noise_sd` of the log
    losses, or, for a loss that reaches 0 or below (e.g. a negative log-likelihood), of the losses over their median's
    size (0 when that is 0)."""
    values = np.asarray(losses, dtype=float)
    if np.all(values > 0):
        return noise_sd(np.log(values))
    scale = abs(float(np.median(values)))
    return noise_sd(values) / scale if scale > 0 else 0.0


def warmup_end(steps: Sequence[int], lr_sums: Sequence[float]) -> int:
    """The end of the warm-up that :class:`StoppingRule` finds from the summed learning rate at each evaluation (its
    ``warmup_end``: the last step whose mean learning rate since the previous evaluation rose; 0 for none). The
    points up to :data:`TRANSIENT_FACTOR` x it are the ones the rule leaves out.

    Example:
        >>> warmup_end([10, 20, 30, 40, 50], [0.05, 0.2, 0.4, 0.6, 0.8])  # mean LR 0.005, 0.015, 0.02, 0.02, 0.02
        30
    """
    rule = StoppingRule(calibration=False)
    for step, z in zip(steps, lr_sums):
        rule.observe_lr(int(step), None if z is None else float(z))
    return rule.warmup_end


def _since_best(smoothed: Sequence[float], min_delta: float) -> int:
    """Evaluations since the last one that fell below the best before it by more than ``min_delta`` (relative)."""
    best, last = math.inf, 0
    for i, v in enumerate(smoothed):
        if v < best - min_delta * abs(best) or i == 0:
            best, last = v, i
    return len(smoothed) - 1 - last


@dataclass
class ReplayResult:
    """The decisions of :class:`StoppingRule` over a finished run (and, with ``sweep=``, the pooled prediction
    beside each)."""

    stopped_step: int | None  # the step at which the rule stops, or None
    converged_loss: float | None  # the prediction it stopped on, or the last trusted prediction (None: none)
    stop_index: int | None  # index of the stopping point in the inputs
    decisions: list[StopDecision] = field(repr=False, default_factory=list)
    family: str = ""  # the curve family of the last fit (before any fit: StoppingRule.fitted_family)
    reason: str = ""  # the last decision's reason: why it stopped, or why it did not
    code: StopReason | None = None  # the last decision's code (None: no points)
    # with sweep=: one entry per decision, (step, pooled converged loss, low, high) or None where there is none;
    # without: empty
    pooled: list[tuple[int, float, float, float] | None] = field(repr=False, default_factory=list)


def replay(steps: Sequence[int], losses: Sequence[float], *, lr_sum: Sequence[float] | None = None,
           lr: Sequence[float] | None = None, floor: Sequence[float] | float | None = None,
           epoch_steps: Sequence[float] | float | None = None, sweep: Any = None, n_params: float | None = None,
           dataset_size: float | None = None, run_id: str | None = None, data: str | None = None,
           **rule_options: Any) -> ReplayResult:
    """Run :class:`StoppingRule` over logged points, exactly as the live callback would.

    With ``sweep=``, the run is replayed as if the sweep had existed when it ran: at each evaluation, the pooled
    prediction ``ExtraEarlyStopping(sweep=...)`` shows beside its own (the joint fit of the stored runs on the same
    data, this run's stored record left out, with this run's points up to that step, [K] eq 1.6 across the sweep;
    :func:`lightning_scaling.sweep.pooled_fit` and :func:`~lightning_scaling.sweep.pooled_prediction`, the functions
    the callback calls) goes into :attr:`ReplayResult.pooled`. The stop decisions are those without a sweep (the pool
    is shown, never used to stop). The joint fit is refitted at every evaluation: the live callback refits only when
    the store changed, every :data:`~lightning_scaling.callbacks._sweep_member.SWEEP_REFIT_EVERY`-th validation and
    within a time budget per validation that depends on the machine, and re-reads the last fit in between; a replay
    cannot know when that was, and the prediction with all the points up to each step is the one the live refits
    give. At a validation where the live run refitted, the two agree exactly. This costs one joint fit per
    evaluation.

    Args:
        steps, losses: the evaluation points (e.g. the logged ``val_loss`` and its steps).
        lr_sum: the summed learning rate at each step (the callback logs it as ``scaling/lr_sum``):
            the same time axis the live callback used, so the decisions agree exactly.
        lr: alternatively, the learning rate of every optimizer step from 1 to max(steps) (index i is
            step i+1); summed here the way the callback sums it.
        floor: a lower bound of the converged loss (scalar, or one per point).
        epoch_steps: for ``family="effective_data"``, the optimizer steps of one epoch (scalar, or one per point:
            the callback logs its value at each evaluation as ``scaling/epoch_steps``).
        sweep: a sweep store (:class:`~lightning_scaling.sweep.Sweep`, a folder path, or a list of
            :class:`~lightning_scaling.sweep.SweepRecord`), or None.
        n_params: with ``sweep``: this run's N (its record's ``n_params``).
        dataset_size: with ``sweep``: this run's D (its record's ``dataset_size``; None: any).
        run_id: with ``sweep``: this run's id, whose record in the store is left out (a finished run's record holds
            its whole curve: pooling it would show the future).
        data: with ``sweep``: this run's data identity, the only one pooled (default: the Sweep's ``data``; for a
            path or a list of records, None: the records without one, as the live ``Sweep(path)``).
        **rule_options: passed to :class:`StoppingRule` (``threshold``, ``confidence``, ``config``, ...).

    Raises:
        ValueError: mismatched lengths, both ``lr`` and ``lr_sum``, ``sweep`` without ``n_params`` (or the sweep
            options without ``sweep``), or a ``sweep`` that is none of the kinds above.

    Example:
        >>> r = replay([100, 200, 300], [3.0, 2.5, 2.3], lr_sum=[0.1, 0.2, 0.3])
        >>> r.stopped_step is None, r.code.value
        (True, 'waiting')
        >>> from lightning_scaling.sweep import record_from_curve
        >>> other = record_from_curve("other", [100, 200, 300, 400], [3.0, 2.5, 2.3, 2.2], n_params=1e6)
        >>> r = replay([100, 200, 300], [3.0, 2.5, 2.3], sweep=[other], n_params=1e6)
        >>> len(r.pooled) == len(r.decisions)
        True
    """
    steps = [int(s) for s in steps]
    losses = [float(v) for v in losses]
    if len(steps) != len(losses):
        raise ValueError("steps and losses must have the same length")
    if lr_sum is not None and lr is not None:
        raise ValueError("give lr_sum or lr, not both")
    pool = None
    if sweep is not None:
        from .sweep import as_sweep, pooled_fit, pooled_prediction, record_from_rule  # sweep.py imports this module

        if n_params is None:
            raise ValueError("replay(sweep=...) needs this run's model size: pass n_params=... (its record's "
                             "n_params)")
        pool = as_sweep(sweep, data)
        data = pool.data if data is None else data
        if pool.records and not any(r.data == data for r in pool.records):
            import warnings

            from .errors import ScalingWarning

            warnings.warn(f"replay: none of the sweep's {len(pool.records)} runs is on data={data!r}, so nothing is "
                          "pooled; pass data=... (runs on different data are never pooled)", ScalingWarning,
                          stacklevel=2)
    elif n_params is not None or dataset_size is not None or run_id is not None or data is not None:
        raise ValueError("n_params, dataset_size, run_id and data are for replay(sweep=...): pass sweep=...")
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
    if epoch_steps is not None and not per_point:
        config = StopConfig.from_value(rule_options.get("config"))
        rule_options = {**rule_options, "config": dataclasses.replace(config, epoch_steps=epoch_steps)}
    rule = StoppingRule(**rule_options)
    decisions: list[StopDecision] = []
    pooled: list[tuple[int, float, float, float] | None] = []
    for i, (step, loss) in enumerate(zip(steps, losses)):
        d = rule.update(step, loss, None if times is None else times[i], floors[i],
                        epoch_steps[i] if per_point else None)
        decisions.append(d)
        if pool is not None:  # what ExtraEarlyStopping(sweep=...) logs at a validation where it refits
            own = record_from_rule(run_id or "(replayed run)", rule, n_params=n_params, data=data,
                                   dataset_size=dataset_size)
            value = pooled_prediction(pooled_fit(pool.records, own, run_id=run_id, data=data), n_params,
                                      dataset_size, confidence=rule.confidence, smoothed_loss=d.smoothed_loss)
            pooled.append(None if value is None else (step, value[0], *value[1]))
        if d.should_stop:
            return ReplayResult(step, d.converged_loss, i, decisions, _family_of(rule), d.reason, d.code, pooled)
    last_pred = next((d.converged_loss for d in reversed(decisions) if d.trusted and d.converged_loss is not None),
                     None)
    last = decisions[-1] if decisions else None
    return ReplayResult(None, last_pred, None, decisions, _family_of(rule), last.reason if last else "",
                        last.code if last else None, pooled)


def _family_of(rule: StoppingRule) -> str:
    """The family of the rule's last fit (before any fit: the one it would use with its floor)."""
    return rule.last_fit.family if rule.last_fit is not None else rule.fitted_family
