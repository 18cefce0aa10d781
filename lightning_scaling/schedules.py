"""The planned learning rate of a run, read from its torch scheduler (the ``planned_lr`` of :func:`forecast`).

:func:`planned_lrs` steps a deep copy of the scheduler (and of its optimizer) to ``max_steps`` and records the
learning rate each remaining optimizer step will use; the live scheduler and optimizer are not touched. Any
scheduler whose ``step()`` sets the optimizer's learning rate from its own state works: LambdaLR (and so
``transformers``' get_*_schedule_with_warmup), MultiplicativeLR, StepLR, CosineAnnealingLR, OneCycleLR, LinearLR,
ConstantLR, ExponentialLR, PolynomialLR, SequentialLR, ChainedScheduler and chains of them. ReduceLROnPlateau
depends on future losses and cannot be read.

:func:`schedule_lr` builds the learning rate of a warm-up-then-decay schedule of a given length (cosine, linear
decay, or warmup-stable-decay; :func:`lr_multiplier`: the same as a ``LambdaLR`` lambda), and :func:`fit_shape`
recognises which of them a run's schedule is: what :func:`lightning_scaling.forecasting.recommend_horizon` stretches
to another horizon.

Torch is imported by the caller's objects only (this module imports neither torch nor Lightning at import time).
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

__all__ = ["planned_lrs", "ScheduleError", "SHAPES", "ScheduleShape", "schedule_lr", "lr_multiplier", "fit_shape"]

#: The schedule shapes :func:`schedule_lr` builds: a linear warm-up to the peak, then a cosine decay to the floor,
#: a linear decay to it, or warmup-stable-decay (the peak until the last ``decay_fraction`` of the steps, then a
#: linear decay to the floor).
SHAPES = ("cosine", "linear", "wsd")
#: The largest root-mean-square difference of the summed learning rate, over its total, at which :func:`fit_shape`
#: takes a schedule to be of a shape (a cosine and a linear decay of one length differ by a few times more).
SHAPE_TOLERANCE = 0.01


class ScheduleError(ValueError):
    """The scheduler cannot be read ahead (its future depends on the run, or it cannot be copied)."""


def planned_lrs(scheduler: Any, optimizer_lr_group: int = 0, *, max_steps: int, steps_done: int | None = None
                ) -> np.ndarray:
    """The learning rate of every remaining optimizer step to ``max_steps``, read from a copy of ``scheduler``.

    The scheduler is taken as stepped once per optimizer step (Lightning's ``interval="step"``), and as it stands
    after ``steps_done`` optimizer steps, its optimizer's group LR being the one the next step (``steps_done + 1``)
    uses: index j of the result is the LR of step ``steps_done + j + 1``, the convention of ``forecast``'s
    ``planned_lr``.

    Args:
        scheduler: a ``torch.optim.lr_scheduler`` scheduler (``LRScheduler``) with its optimizer.
        optimizer_lr_group: the parameter group whose LR is read (the callback sums group 0's).
        max_steps: the planned last optimizer step.
        steps_done: the optimizer steps completed so far (default: the scheduler's ``last_epoch``, the number of
            times it has been stepped).

    Returns:
        float64 array of length ``max_steps - steps_done`` (empty when the plan is done).

    Raises:
        ScheduleError: a scheduler whose future depends on the run (ReduceLROnPlateau), one without an optimizer,
            or one that cannot be deep-copied; say "constant learning rate from here" instead.
        ValueError: ``max_steps`` or ``steps_done`` not whole numbers >= 0, or a group index out of range.

    Example:
        >>> import torch
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        >>> sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 2))
        >>> planned_lrs(sched, max_steps=4).tolist()
        [0.5, 1.0, 1.0, 1.0]
    """
    name = type(scheduler).__name__
    if "Plateau" in name:
        raise ScheduleError(f"{name} decides its learning rate from losses not yet seen: it cannot be read ahead")
    optimizer = getattr(scheduler, "optimizer", None)
    if optimizer is None or not hasattr(optimizer, "param_groups") or not callable(getattr(scheduler, "step", None)):
        raise ScheduleError(f"{name} is not a torch LR scheduler with an optimizer (no .optimizer.param_groups "
                            "or .step())")
    if not (isinstance(max_steps, (int, np.integer)) and max_steps >= 0):
        raise ValueError(f"max_steps must be a whole number >= 0 (the planned last optimizer step), got {max_steps!r}")
    done = int(getattr(scheduler, "last_epoch", 0)) if steps_done is None else steps_done
    if not (isinstance(done, (int, np.integer)) and done >= 0):
        raise ValueError(f"steps_done must be a whole number >= 0, got {steps_done!r}")
    if not 0 <= optimizer_lr_group < len(optimizer.param_groups):
        raise ValueError(f"optimizer_lr_group {optimizer_lr_group} is out of range: the optimizer has "
                         f"{len(optimizer.param_groups)} parameter groups")
    try:
        # one deepcopy of both keeps the scheduler's reference to its optimizer (and SequentialLR's children's);
        # the parameters and the optimizer's state (Adam's moments: the model's size again) are not copied
        memo: dict[int, Any] = {id(p): p for g in optimizer.param_groups for p in g["params"]}
        memo[id(getattr(optimizer, "state", None))] = {}
        sched, _ = copy.deepcopy((scheduler, optimizer), memo)
    except Exception as err:  # a lambda holding an unpicklable object, a generator, ...
        raise ScheduleError(f"{name} cannot be copied to read its plan ahead: {err}") from None
    group = sched.optimizer.param_groups[optimizer_lr_group]
    out = np.empty(max(0, int(max_steps) - int(done)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()" and OneCycleLR's end
        for j in range(out.size):
            out[j] = float(group["lr"])
            if j + 1 < out.size:
                try:
                    sched.step()
                except ValueError as err:  # OneCycleLR stepped past total_steps
                    raise ScheduleError(f"{name} cannot be stepped to step {done + j + 2} (max_steps "
                                        f"{max_steps}): {err}") from None
    return out


@dataclass(frozen=True)
class ScheduleShape:
    """A warm-up-then-decay schedule, independent of its length: what :func:`schedule_lr` builds at any length.

    Attributes:
        shape: one of :data:`SHAPES`.
        warmup_steps: the steps of the linear warm-up (step ``warmup_steps`` runs at the peak).
        peak_lr: the peak learning rate.
        final_lr_ratio: the floor, as a fraction of the peak (the learning rate the decay ends at).
        decay_fraction: for "wsd", the fraction of the steps the decay takes (the last ones).
    """

    shape: str
    warmup_steps: int
    peak_lr: float
    final_lr_ratio: float
    decay_fraction: float = 0.2

    def lr(self, total_steps: int) -> np.ndarray:
        """The learning rate of every optimizer step of this schedule run for ``total_steps`` (:func:`schedule_lr`)."""
        return schedule_lr(self.shape, total_steps, warmup_steps=self.warmup_steps, peak_lr=self.peak_lr,
                           final_lr_ratio=self.final_lr_ratio, decay_fraction=self.decay_fraction)


def schedule_lr(shape: str, total_steps: int, *, warmup_steps: int, peak_lr: float, final_lr_ratio: float = 0.1,
                decay_fraction: float = 0.2) -> np.ndarray:
    """The learning rate of every optimizer step 1..``total_steps`` (index i = step i + 1, ``forecast``'s convention).

    A linear warm-up (step i + 1 at ``peak_lr * (i + 1) / warmup_steps``), then, with the progress
    ``p = (i - warmup_steps) / (total_steps - warmup_steps)``:

    * ``cosine``: ``floor + (peak - floor) (1 + cos(pi p)) / 2``;
    * ``linear``: ``peak - (peak - floor) p``;
    * ``wsd``: the peak until the last ``round(decay_fraction * total_steps)`` steps, then linear to the floor
      over them;

    the floor being ``final_lr_ratio * peak_lr`` (:func:`lr_multiplier` is the same schedule as a ``LambdaLR``
    lambda: the demo model's).

    Args:
        shape: one of :data:`SHAPES`.
        total_steps: the schedule's length (whole number >= 1).
        warmup_steps: the warm-up's steps (whole number >= 0).
        peak_lr: the peak learning rate (> 0).
        final_lr_ratio: the floor over the peak, in [0, 1].
        decay_fraction: "wsd" only: the fraction of the steps the decay takes, in (0, 1].

    Raises:
        ValueError: an unknown shape or a value out of range, saying which.

    Example:
        >>> schedule_lr("linear", 5, warmup_steps=1, peak_lr=1.0, final_lr_ratio=0.0).tolist()
        [1.0, 1.0, 0.75, 0.5, 0.25]
    """
    _check(shape, total_steps, warmup_steps, peak_lr, final_lr_ratio, decay_fraction)
    return _rates(shape, np.arange(int(total_steps), dtype=float), int(total_steps), int(warmup_steps), peak_lr,
                  final_lr_ratio, decay_fraction)


def lr_multiplier(shape: str, total_steps: int, *, warmup_steps: int, final_lr_ratio: float = 0.1,
                  decay_fraction: float = 0.2) -> Callable[[int], float]:
    """:func:`schedule_lr`'s schedule as a ``torch.optim.lr_scheduler.LambdaLR`` lambda: the learning rate after
    ``step`` optimizer steps over the peak, ``factor(i) == schedule_lr(...)[i] / peak_lr`` to the last bit for
    ``peak_lr = 1``; past ``total_steps``, the floor.

    Raises:
        ValueError: as :func:`schedule_lr`, once, here.

    Example:
        >>> factor = lr_multiplier("linear", 5, warmup_steps=1, final_lr_ratio=0.0)
        >>> [factor(i) for i in range(6)]
        [1.0, 1.0, 0.75, 0.5, 0.25, 0.0]
    """
    _check(shape, total_steps, warmup_steps, 1.0, final_lr_ratio, decay_fraction)
    total, warmup = int(total_steps), int(warmup_steps)

    def factor(step: int) -> float:
        return float(_rates(shape, step, total, warmup, 1.0, final_lr_ratio, decay_fraction))

    return factor


def _check(shape: str, total_steps: Any, warmup_steps: Any, peak_lr: Any, final_lr_ratio: float,
           decay_fraction: float) -> None:
    """Raise a ValueError naming the first of :func:`schedule_lr`'s arguments out of its range."""
    if shape not in SHAPES:
        raise ValueError(f"shape must be one of {SHAPES}, got {shape!r}")
    if not (isinstance(total_steps, (int, np.integer)) and total_steps >= 1):
        raise ValueError(f"total_steps must be a whole number >= 1, got {total_steps!r}")
    if not (isinstance(warmup_steps, (int, np.integer)) and warmup_steps >= 0):
        raise ValueError(f"warmup_steps must be a whole number >= 0, got {warmup_steps!r}")
    if not (isinstance(peak_lr, (int, float, np.floating)) and math.isfinite(peak_lr) and peak_lr > 0):
        raise ValueError(f"peak_lr must be a finite number > 0, got {peak_lr!r}")
    if not 0.0 <= final_lr_ratio <= 1.0:
        raise ValueError(f"final_lr_ratio must be in [0, 1], got {final_lr_ratio!r}")
    if not 0.0 < decay_fraction <= 1.0:
        raise ValueError(f"decay_fraction must be in (0, 1], got {decay_fraction!r}")


def _rates(shape: str, i: Any, total_steps: int, w: int, peak_lr: float, final_lr_ratio: float,
           decay_fraction: float) -> np.ndarray:
    """The learning rate of step ``i + 1`` (``i`` an array of indices, or one index) of :func:`schedule_lr`'s
    schedule; checked arguments."""
    floor = final_lr_ratio * peak_lr
    if shape == "wsd":
        start = total_steps - int(round(decay_fraction * total_steps))
        p = np.clip((i - start) / max(1, total_steps - start), 0.0, 1.0)
        after = peak_lr - (peak_lr - floor) * p
    else:
        p = np.clip((i - w) / max(1, total_steps - w), 0.0, 1.0)
        after = (floor + (peak_lr - floor) * 0.5 * (1.0 + np.cos(np.pi * p)) if shape == "cosine"
                 else peak_lr - (peak_lr - floor) * p)
    return np.where(i < w, peak_lr * (i + 1) / max(w, 1), after)


def fit_shape(lr: Any, tolerance: float = SHAPE_TOLERANCE) -> ScheduleShape | None:
    """Which of :data:`SHAPES` the schedule ``lr`` (every optimizer step's learning rate) is, or None.

    The peak is the largest learning rate, the floor the last one over it, a "wsd" decay starts after the last step
    at the peak, and the warm-up ends at the first step at the peak (or where the summed learning rate puts the end
    of a linear ramp, whichever rebuilds closer: a history known only as means between validations, as the callback
    holds it, has no exact first step at the peak). The shape is the one whose summed learning rate
    (:func:`schedule_lr`) follows the schedule's closest, if the root-mean-square difference is at most
    ``tolerance`` x the schedule's total. A schedule that does not decay (its last learning rate above 0.9 x the
    peak) is none of them.

    Example:
        >>> fit_shape(schedule_lr("cosine", 1000, warmup_steps=50, peak_lr=3e-4)).shape
        'cosine'
    """
    rates = np.asarray(lr, dtype=float).ravel()
    if rates.size < 4 or not np.all(np.isfinite(rates)):
        return None
    peak = float(rates.max())
    if not peak > 0 or rates[-1] > 0.9 * peak:
        return None
    at_peak = np.flatnonzero(rates >= peak * (1 - 1e-9))
    summed = np.cumsum(rates)
    first = int(at_peak[0])
    warmups = {first + 1 if first else 0, max(0, int(round(2.0 * (first + 1 - summed[first] / peak))))}
    ratio = float(rates[-1]) / peak
    best, best_err = None, math.inf
    for shape in SHAPES:
        fraction = (rates.size - int(at_peak[-1]) - 1) / rates.size if shape == "wsd" else 0.2
        if not 0.0 < fraction <= 1.0:
            continue
        for warmup in sorted(warmups):
            candidate = ScheduleShape(shape, warmup, peak, ratio, fraction)
            err = float(np.sqrt(np.mean(np.square(np.cumsum(candidate.lr(rates.size)) - summed)))) / summed[-1]
            if err < best_err:
                best, best_err = candidate, err
    return best if best_err <= tolerance else None
