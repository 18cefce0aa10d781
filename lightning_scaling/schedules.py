"""The planned learning rate of a run, read from its torch scheduler (the ``planned_lr`` of :func:`forecast`).

:func:`planned_lrs` steps a deep copy of the scheduler (and of its optimizer) to ``max_steps`` and records the
learning rate each remaining optimizer step will use; the live scheduler and optimizer are not touched. Any
scheduler whose ``step()`` sets the optimizer's learning rate from its own state works: LambdaLR (and so
``transformers``' get_*_schedule_with_warmup), MultiplicativeLR, StepLR, CosineAnnealingLR, OneCycleLR, LinearLR,
ConstantLR, ExponentialLR, PolynomialLR, SequentialLR, ChainedScheduler and chains of them. ReduceLROnPlateau
depends on future losses and cannot be read.

Torch is imported by the caller's objects only (this module imports neither torch nor Lightning at import time).
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import numpy as np

__all__ = ["planned_lrs", "ScheduleError"]


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
