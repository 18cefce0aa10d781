"""Plumbing shared by the four callbacks: logging, rank-zero messages, cross-rank reductions.

Nothing here imports Lightning: the callbacks' logic is written against the duck-typed
``trainer`` / ``pl_module`` objects, so the same code serves ``pytorch_lightning`` and
``lightning.pytorch`` (see :mod:`lightning_scaling.callbacks` and :mod:`lightning_scaling.unified`).
"""

from __future__ import annotations

import logging
import math
from typing import Any, Iterable, Mapping

from ..dashboard import FIGURE_INTERVAL_S
from ..errors import ScalingWarning

log = logging.getLogger("lightning_scaling")


#: The callback hooks Lightning calls at every training micro-batch (six per optimizer step) ...
TRAIN_STEP_HOOKS = ("on_train_batch_start", "on_before_backward", "on_after_backward", "on_before_optimizer_step",
                    "on_before_zero_grad", "on_train_batch_end")
#: ... and at every evaluation batch.
EVAL_BATCH_HOOKS = ("on_validation_batch_start", "on_validation_batch_end", "on_test_batch_start",
                    "on_test_batch_end", "on_predict_batch_start", "on_predict_batch_end")


#: Arguments the callbacks no longer take, each with what to do instead: passing one raises with this message.
REMOVED_ARGUMENTS = {
    "check_finite": "a non-finite monitored loss is skipped with one warning and training goes on; to stop the run on "
                    "one, add Lightning's EarlyStopping(monitor=..., check_finite=True) to the callbacks",
    "figure_interval": "figures are written at most once per lightning_scaling.dashboard.FIGURE_INTERVAL_S seconds "
                       f"({FIGURE_INTERVAL_S:g}; set that module attribute to change it) and at the stop",
}


def refuse(given: Mapping[str, Any], owner: str, others: Any = None) -> None:
    """Raise for the keyword arguments ``given`` that ``owner`` does not take: a removed one (:data:`REMOVED_ARGUMENTS`)
    with a ValueError saying what to do instead; then ``others(given, owner)`` if given, which may say where another
    belongs; any left, a TypeError as Python's own."""
    for key in given:
        if key in REMOVED_ARGUMENTS:
            raise ValueError(f"{owner}: {key} was removed: {REMOVED_ARGUMENTS[key]}")
    if others is not None:
        others(given, owner)
    for key in given:
        raise TypeError(f"{owner}() got an unexpected keyword argument {key!r}")


def skip_unused_hooks(callback: Any) -> None:
    """Set to None, on the instance, each per-batch hook that ``callback``'s class leaves as Lightning's empty
    ``Callback`` method, so that Lightning does not dispatch it.

    Lightning's dispatcher (``_call_callback_hooks`` in ``trainer/call.py``, in every 2.x release) calls a
    callback's hook only ``if callable(fn)``. An empty hook is not free: each call enters the profiler's
    context and formats its name, and six are called per optimizer step on every callback (their cost:
    BENCHMARKS.md, "Callback overhead"). A
    subclass that overrides one of these hooks keeps it (its method is not Lightning's). Call from ``__init__``.
    """
    cls = type(callback)
    for name in TRAIN_STEP_HOOKS + EVAL_BATCH_HOOKS:
        method = getattr(cls, name, None)
        if method is not None and getattr(method, "__qualname__", "") == f"Callback.{name}":
            setattr(callback, name, None)


def is_global_zero(trainer: Any) -> bool:
    return bool(getattr(trainer, "is_global_zero", True))


def world_size(trainer: Any) -> int:
    return int(getattr(trainer, "world_size", 1) or 1)


def rank_zero_info(trainer: Any, message: str) -> None:
    """Show ``message`` once, from global rank zero only: logged at INFO on the ``lightning_scaling`` logger where
    logging would show it (a handler and the INFO level configured), else printed; never both."""
    if is_global_zero(trainer):
        if log.isEnabledFor(logging.INFO) and log.hasHandlers():
            log.info(message)
        else:
            print(message, flush=True)


def rank_zero_warn(trainer: Any, message: str) -> None:
    """One warning on rank zero (a :class:`ScalingWarning`, shown once by Python's filter; not also logged: no echo),
    attributed to the lightning_scaling line that called this, not to Lightning's hook dispatcher."""
    if is_global_zero(trainer):
        import warnings

        warnings.warn(message, ScalingWarning, stacklevel=2)


def write_run_info(trainer: Any, section: str, values: Mapping[str, Any]) -> None:
    """Merge ``values`` into ``section`` of the run-info file (:mod:`lightning_scaling.run_info`) in the log
    directory of every logger that has one; rank zero only. A directory that cannot be written is logged and
    skipped: the run-info file is never worth a user's training."""
    if not is_global_zero(trainer):
        return
    from .. import run_info

    seen = set()
    for logger in getattr(trainer, "loggers", []) or []:
        log_dir = getattr(logger, "log_dir", None)
        if not log_dir or log_dir in seen:
            continue
        seen.add(log_dir)
        try:
            run_info.write(log_dir, section, values)
        except (OSError, TypeError, ValueError) as err:
            log.warning("lightning_scaling: could not write %s in %s: %s", run_info.FILENAME, log_dir, err)


def log_scalars(trainer: Any, metrics: Mapping[str, float], step: int) -> None:
    """Write ``metrics`` (already host floats, tags with the ``scaling/`` prefix) to every logger.

    Rank zero only (loggers are rank-zero objects in Lightning); non-finite values are dropped.
    """
    if not is_global_zero(trainer) or not metrics:
        return
    clean = {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}
    if not clean:
        return
    for logger in getattr(trainer, "loggers", []) or []:
        logger.log_metrics(clean, step=int(step))


def publish(trainer: Any, metrics: Mapping[str, float | None]) -> None:
    """Put host numbers into ``trainer.callback_metrics`` (as 0-d tensors, on every rank), where ``ModelCheckpoint``
    and ``EarlyStopping`` can monitor them; a None or non-finite value removes the key (no number is stale)."""
    import torch

    target = getattr(trainer, "callback_metrics", None)
    if not isinstance(target, dict):
        return
    for key, value in metrics.items():
        if value is None or not math.isfinite(float(value)):
            target.pop(key, None)
        else:
            target[key] = torch.tensor(float(value))


def reduce_sum(trainer: Any, values: Iterable[float], device: Any = None) -> list[float]:
    """Sum host numbers (or 0-d tensors) over all ranks in ONE all-reduce; a no-op on one process.

    Collective: every rank must call it at the same point. Use it at logging/validation time,
    never per step.
    """
    import torch

    items = list(values)
    if world_size(trainer) == 1:
        return [float(v) for v in items]
    if device is None:
        device = trainer.strategy.root_device
    tensor = torch.stack([torch.as_tensor(v, dtype=torch.float64, device=device).reshape(()) for v in items])
    tensor = trainer.strategy.reduce(tensor, reduce_op="sum")
    return [float(v) for v in tensor.tolist()]


def find_callback(trainer: Any, cls_name: str) -> Any | None:
    """The first callback on ``trainer`` whose class (or a base) is named ``cls_name``."""
    for cb in getattr(trainer, "callbacks", []) or []:
        if any(k.__name__ == cls_name for k in type(cb).__mro__):
            return cb
    return None


def step_tracker(trainer: Any, pl_module: Any) -> Any | None:
    """Lightning's own counter behind ``trainer.global_step``: its ``completed`` is the optimizer step, read
    in one attribute access; ``None`` (use ``trainer.global_step``) where that counter is not found or disagrees.

    Why: ``trainer.global_step`` is a chain of properties (the fit loop's epoch loop, the LightningModule,
    its ``automatic_optimization``, the progress tracker), paid on the first read in a hook by each
    counter at every micro-batch. The tracker object is updated in place by Lightning (``increment``,
    ``reset``, ``load_state_dict`` of a resume), so a reference taken in ``on_train_start`` stays current
    for the whole fit; it is checked against ``trainer.global_step`` there, and a Lightning whose internals
    differ falls back to the public property.
    """
    try:
        loop = trainer.fit_loop.epoch_loop
        if pl_module.automatic_optimization:
            tracker = loop.automatic_optimization.optim_progress.optimizer.step.total
        else:
            tracker = loop.manual_optimization.optim_step_progress.total
        if type(tracker.completed) is int and tracker.completed == trainer.global_step:
            return tracker
    except AttributeError:
        pass
    return None


def log_boundary(trainer: Any, owner: Any) -> bool:
    """True once per optimizer step (when the global step moved since ``owner`` last asked) if that step is
    one where Lightning writes step metrics (a multiple of ``log_every_n_steps``); one read of the step
    (``owner._step_tracker``, from :func:`step_tracker`, else ``trainer.global_step``).

    For per-step hooks, where every attribute read of the Trainer costs: EffectiveEpochs and FlopCounter
    call it in ``on_train_batch_start`` (the batch just fetched, the caches warmer than right after an
    optimizer step), so it is true at the first micro-batch after a logging step; the owner sets
    ``_last_global_step`` and ``_step_tracker`` in ``on_train_start`` so that a start or a resume is not a
    boundary.
    """
    tracker = owner._step_tracker
    step = trainer.global_step if tracker is None else tracker.completed
    if step == owner._last_global_step:
        return False
    owner._last_global_step = step
    return step % (trainer.log_every_n_steps or 50) == 0
