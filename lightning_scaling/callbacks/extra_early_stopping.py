"""ExtraEarlyStopping: stop at ~1.1x the predicted converged loss ([K] appendix B.2, eq B.5)."""

from __future__ import annotations

import math
from typing import Any

from ..stopping import TIME_AXES, StopConfig, StopDecision, StoppingRule, _refuse
from .. import tags
from . import _common
from ._schedule_forecast import ScheduleForecaster
from ._sweep_member import SweepMember

class ExtraEarlyStoppingBase:
    """Fit the learning curve of ``monitor`` as evaluations arrive and stop at ``threshold`` x its limit.

    The decision is made by :class:`lightning_scaling.stopping.StoppingRule`, the same object
    ``lightning_scaling.replay`` runs over logged points, so a replay reaches the identical decision. The
    learning rate of every optimizer step is summed on the host (free) and used as the time axis when
    ``time_axis`` is "lr_sum", or "auto" and the learning rate has varied after the warm-up ([T]); it is logged as
    ``scaling/lr_sum`` so that replays can use it, and with ``warmup_steps=None`` it shows the rule where the
    warm-up ends (:class:`~lightning_scaling.stopping.StoppingRule`). With a TensorBoardLogger (and matplotlib) the
    learning-curve figure is added when a new fit arrives, at most once per
    :data:`lightning_scaling.dashboard.FIGURE_INTERVAL_S` seconds (60), and at the stop.

    Args:
        monitor: the loss to watch (logged by the module, e.g. ``val_loss``).
        threshold: stop multiple; default ``1 + alpha_N/alpha_S`` = 1.10 ([K] B.5).
        warmup_steps: None (default: found from the learning rate), or the last step of the warm-up (see
            :class:`StoppingRule`).
        stop_when_data_limited: stop when the loss turns up before the threshold (default; see :class:`StoppingRule`).
        config: the research knobs, one :class:`~lightning_scaling.stopping.StopConfig` (or a dict of its fields):
            the curve family, smoothing, points needed, stability, a known irreducible loss, the opt-in fallback
            patience, and ``epoch_steps``.
        confidence, calibration: the calibrated converged-loss interval and the stop's stated risk (see
            :class:`StoppingRule`): the interval is the central ``confidence`` one, logged as
            ``converged_loss_low`` / ``_high``, and the run stops only when the smoothed loss is at or below
            ``threshold`` x the one-sided lower bound at ``confidence``. ``calibration``: None for the package's own,
            a path from ``lightning-scaling calibrate``, or False for the uncalibrated rule.
        time_axis: "auto" (default: the summed learning rate once the learning rate has varied after the warm-up,
            [T], else steps), "steps" or "lr_sum". The summed learning rate is observed at every validation whatever
            the axis: it also tells the rule where the warm-up ends (``warmup_steps=None``).
        ``config.epoch_steps``: for ``family="effective_data"`` (steps axis only): the optimizer steps of one epoch of
            the unique data, ``U`` of [M] eq 5. Default: derived at each validation from the EffectiveEpochs callback's
            counts, dataset size / data seen per optimizer step (so gradient accumulation, several ranks and a
            short last batch are counted as they ran). With that family it is logged as ``scaling/epoch_steps``
            at each validation, so that a replay (``replay(..., epoch_steps=...)``) reaches the same decisions.
        strict: raise when ``monitor`` is missing (like ``EarlyStopping``), or, for ``family="effective_data"``,
            when the steps of an epoch cannot be known; otherwise warn once and skip. A NaN or inf monitored loss is
            odd data whatever ``strict``: the point is skipped with one warning and training goes on (whether it
            should go on after a NaN is the user's decision, not the stopping rule's: to stop on one, add Lightning's
            ``EarlyStopping(monitor=..., check_finite=True)``).
        use_data_floor: use the DataLimitGap callback's L(D) at the data seen as a floor of the prediction. When
            DataLimitGap holds a law of N and D (L(N, D): this model's own limit), the rule's ``floor_kind`` is
            "model", and ``family="auto"`` (the default) fits the power law alone
            (:func:`lightning_scaling.stopping.rule_family`); it is logged as ``scaling/floor_kind`` = 1 so that a
            replay of the logs does the same.
        cooldown_steps: 0 stops at the decision. N > 0 hands over to a cool-down instead: the learning rate of
            every parameter group falls linearly from its value at the decision to 0 over N optimizer steps
            (the decay phase of a warmup-stable-decay schedule: Hagele et al. 2024, "Scaling Laws and
            Compute-Optimal Training Beyond Fixed Training Durations", arXiv 2405.18392), and the run stops
            after it. The decision is then when to *begin* the cool-down ([K] B.2 with the annealing term,
            :func:`lightning_scaling.cooldown.cooldown_decision`): at the first validation where the schedule
            forecast's loss after N cool-down steps begun now is at most ``threshold`` x the converged loss that
            cool-down reaches (the rule's calibrated lower bound less the cool-down's drop), or where the rule
            itself stops, whichever comes first; without a trusted prediction and forecast it does not begin.
            The callback owns the learning rate during those steps (a scheduler's own updates are overwritten);
            use it with constant or WSD-style schedules, not in the middle of a cosine.
        verbose: print the summary at the stop (rank zero).
        sweep: None, or a sweep store (:class:`lightning_scaling.Sweep`, or a folder path: ``Sweep(path)``) this run
            belongs to. Give the data identity: ``Sweep("sweeps/my-data", data="my-data")``; only records with the
            Sweep's ``data`` are pooled, and this run's record carries it (runs on other data are never pooled).
            **Written**: rank zero writes this run's record (:func:`lightning_scaling.sweep.write_record`, atomic)
            at each checkpoint save and at the end of fit: the rule's points (step, loss, summed LR), N (the
            run-info ``model`` section, else the module's parameter count, as EffectiveEpochs counts it), D, its
            unit and the data seen (EffectiveEpochs), the FLOPs (FlopCounter), the last decision (reason, code,
            trusted prediction and interval) and the threshold; the run id (``run_id``: the logger's name and
            version with a random suffix) is kept in the checkpoint, so a resumed run rewrites the same record.
            **Read**: at the train start and at validations (never per step), rank zero fits the store's runs on this
            data jointly with this run's own points (:func:`~lightning_scaling.sweep.fit_sweep`, ``sweep_fit``) --
            again only when the store changed or every :data:`SWEEP_REFIT_EVERY`-th validation, and no more often
            than keeps it to about :data:`SWEEP_MS_PER_VALIDATION` ms per validation (BENCHMARKS.md "Sweeps") --
            and logs the pooled prediction at this model's N and D (``pooled_converged_loss`` with
            ``_low`` / ``_high``; ``pooled``) beside the single-run one, and one line of the summary. The pool never
            changes the stopping decision (its calibrated interval is not narrower, BENCHMARKS.md "Sweeps"). With
            fewer than 2 usable runs nothing is logged; a write or fit failure is one warning, never fatal.

    Raises:
        ValueError: an argument out of its range, naming it (a :class:`StopConfig` field given by name says to pass
            it in ``config``; a removed argument, ``check_finite`` or ``figure_interval``, says what to do instead).

    Example:
        >>> stop = ExtraEarlyStopping(monitor="val_loss")  # calibrated, warm-up and time axis found by itself
        >>> stop = ExtraEarlyStopping("val_loss", 1.1, confidence=0.9, config=StopConfig(fallback_patience=20))
    """

    def __init__(self, monitor: str = "val_loss", threshold: float | None = None, *, confidence: float = 0.8,
                 calibration: Any = None, warmup_steps: int | None = None, time_axis: str = "auto",
                 use_data_floor: bool = True, stop_when_data_limited: bool = True, cooldown_steps: int = 0,
                 strict: bool = True, verbose: bool = True, config: StopConfig | dict | None = None,
                 sweep: Any = None, **misplaced: Any) -> None:
        _common.refuse(misplaced, "ExtraEarlyStopping", _refuse)
        if not isinstance(monitor, str) or not monitor:
            raise ValueError("monitor must be the name of a logged metric, e.g. 'val_loss'")
        if time_axis not in TIME_AXES:
            raise ValueError(f"time_axis must be one of {TIME_AXES}, got {time_axis!r}")
        config = StopConfig.from_value(config)
        if config.family == "effective_data" and time_axis == "lr_sum":
            raise ValueError("family='effective_data' fits a curve in optimizer steps (a constant learning rate): use "
                             "time_axis='steps', or another family with time_axis='lr_sum' for a decaying schedule")
        self.monitor = monitor
        self._state_key = f"ExtraEarlyStopping{{monitor={monitor}}}"  # once: Lightning reads it at every hook
        self.time_axis = time_axis
        self.strict = strict
        self.use_data_floor = use_data_floor
        self.verbose = verbose
        if not (isinstance(cooldown_steps, int) and cooldown_steps >= 0):
            raise ValueError(f"cooldown_steps must be an int >= 0 (0 = stop at the decision), got {cooldown_steps!r}")
        self.cooldown_steps = cooldown_steps
        self.cooldown_start: int | None = None  # the step at which the cool-down began
        self._cooldown_lrs: list[list[float]] = []  # each optimizer's group LRs at the decision
        self._cooldown_reason = ""
        self.cooldown_decision: Any = None  # the latest cool-down decision (a CooldownDecision), or None
        self.rule = StoppingRule(threshold, confidence, calibration=calibration, warmup_steps=warmup_steps,
                                 time_axis=time_axis, stop_when_data_limited=stop_when_data_limited, config=config)
        self.lr_sum = 0.0
        self._lr_optimizer: Any = None  # the optimizer whose LR is summed, found at its first step
        self.stopped_step: int | None = None
        self._stop_reason = ""
        self.decision: StopDecision | None = None
        self._last_eval_step: int | None = None
        self._warned: set[str] = set()  # the kinds of trouble already warned about (once each)
        self._counter: Any = None  # the EffectiveEpochs callback, found at the train start (U from its counts)
        self._no_epoch_steps = ""  # why family="effective_data" cannot run (strict=False: warned, skipped)
        self._schedule = ScheduleForecaster()  # the forecast of the loss at the planned end of the LR schedule
        self._member = None if sweep is None else SweepMember(sweep, self)  # this run in a sweep store
        _common.skip_unused_hooks(self)  # per-batch hooks it leaves empty: not dispatched at all
        if type(self).on_train_batch_start is ExtraEarlyStoppingBase.on_train_batch_start:
            self.on_train_batch_start = None  # the cool-down's hook: dispatched only once a cool-down has begun

    @property
    def state_key(self) -> str:
        return self._state_key

    @property
    def forecast(self) -> Any:
        """The latest schedule forecast (:class:`lightning_scaling.forecasting.Forecast`), or None. Under DDP, global
        rank zero's, the only rank that fits it (None on the others, which get its tags and cool-down decision)."""
        return self._schedule.forecast

    @property
    def _plan(self) -> Any:
        """(step, the planned LR of every later step) as read from the scheduler, or None before it is read."""
        return self._schedule.plan

    @property
    def sweep(self) -> Any:
        """The sweep store (:class:`lightning_scaling.Sweep`), or None."""
        return None if self._member is None else self._member.sweep

    @property
    def run_id(self) -> str | None:
        """This run's id in the sweep store (kept in the checkpoint), or None."""
        return None if self._member is None else self._member.run_id

    @property
    def sweep_fit(self) -> Any:
        """The latest joint fit of the sweep store and this run (:class:`lightning_scaling.SweepFit`), or None."""
        return None if self._member is None else self._member.fit

    @property
    def pooled(self) -> tuple[float, tuple[float, float]] | None:
        """The pooled prediction at this model's N and D with its interval, or None."""
        return None if self._member is None else self._member.pooled

    def sweep_summary(self) -> str:
        """The summary's line on the sweep: the pooled prediction beside this run's own, or why there is none; empty
        without ``sweep=``."""
        return "" if self._member is None else self._member.summary_line().strip()

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        from ..dashboard import ensure_layout

        ensure_layout(trainer)

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self._counter = _common.find_callback(trainer, "EffectiveEpochsBase")
        gap = _common.find_callback(trainer, "DataLimitGapBase") if self.use_data_floor else None
        self.rule.floor_kind = "model" if gap is not None and gap.model_law is not None else "data"
        self._no_epoch_steps = ""
        if self.rule.family == "effective_data" and self.rule.epoch_steps is None and self._counter is None:
            self._missing_epoch_steps(trainer, "ExtraEarlyStopping(family='effective_data') needs the steps of one "
                                               "epoch: pass config=StopConfig(epoch_steps=...) or add the "
                                               "EffectiveEpochs callback, "
                                               "from whose counts it is derived")
        _common.write_run_info(trainer, "stopping", {"monitor": self.monitor, "time_axis": self.time_axis,
                                                     "use_data_floor": self.use_data_floor,
                                                     "options": self.rule.options()})
        if self._member is not None:
            self._member.start(trainer, pl_module)

    def _warn_once(self, trainer: Any, key: str, message: str) -> None:
        """One warning per kind of trouble (``key``) per fit; the point is skipped and training goes on."""
        if key not in self._warned:
            self._warned.add(key)
            _common.rank_zero_warn(trainer, f"ExtraEarlyStopping: {message}")

    def _missing_epoch_steps(self, trainer: Any, message: str) -> None:
        """Raise (strict), or warn once and skip the rule from now on (as for a missing metric)."""
        if self.strict:
            raise ValueError(message + " (or set strict=False to skip the rule)")
        self._no_epoch_steps = message
        _common.rank_zero_warn(trainer, message + "; the rule is skipped")

    def _epoch_steps(self, trainer: Any) -> float | None:
        """``U``: the constructor's, else the dataset size over the data seen per optimizer step (EffectiveEpochs'
        counts: collective, cached per step, already asked for by DataLimitGap at this validation); None when
        neither is known."""
        if self.rule.epoch_steps is not None:
            return self.rule.epoch_steps
        if self._counter is None:
            return None
        c = self._counter.counts(trainer)
        if not c.dataset_size or not c.seen or not c.step:
            return None
        return float(c.dataset_size) * c.step / float(c.seen)

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        """During the hand-over, set the LR of every group of every optimizer before the step runs: a linear decay
        from its value at the decision, by 1/``cooldown_steps`` per optimizer step (a WSD cool-down), overwriting
        a scheduler's update, so that the step and whatever reads the LR during it (a ``LearningRateMonitor``
        placed after this callback) see the LR used. Dispatched only from the start of a cool-down on."""
        if self.cooldown_start is None:
            return
        done = int(trainer.global_step) - self.cooldown_start  # cool-down steps completed before this one
        factor = max(0.0, 1.0 - done / self.cooldown_steps)
        for optimizer, lrs in zip(trainer.optimizers, self._cooldown_lrs):
            for group, lr in zip(optimizer.param_groups, lrs):
                group["lr"] = lr * factor

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        """The per-step hook: add the learning rate of the optimizer step about to run to ``lr_sum`` (a host float:
        no sync); at the last step of a cool-down, ask the Trainer to stop after it.

        Lightning calls it once per optimizer step (under gradient accumulation after the last micro-batch's
        backward), after a scheduler's update, with the optimizer whose first group's "lr" is the LR this step uses:
        after step k, ``lr_sum`` is lr_1 + ... + lr_k, what ``replay(lr=...)`` sums, whatever the resumes. The time
        axis is the first optimizer's LR (another optimizer's steps, a GAN's second, are not added); the optimizer is
        remembered, and looked up again only when a different one arrives.
        """
        if self.cooldown_start is not None and self.stopped_step is None:
            self._end_cooldown(trainer)
        if optimizer is not self._lr_optimizer:
            optimizers = trainer.optimizers
            if optimizer is not optimizers[0] and len(optimizers) > 1:
                return
            self._lr_optimizer = optimizer
        self.lr_sum += float(optimizer.param_groups[0]["lr"])

    def _end_cooldown(self, trainer: Any) -> None:
        """Stop after the ``cooldown_steps``-th step of the cool-down (set before that step runs, it still
        completes): the stop comes in a hook that is dispatched anyway, not in one more per-step hook."""
        done = int(trainer.global_step) - self.cooldown_start  # cool-down steps completed before this one
        if done + 1 >= self.cooldown_steps:
            self._stop(trainer, f"cool-down of {self.cooldown_steps} steps done after: {self._cooldown_reason}",
                       step=int(trainer.global_step) + 1)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self._lr_optimizer = None  # hold no optimizer (and its state) beyond the fit
        d = self.decision
        reason = self._stop_reason if self.stopped_step is not None else (
            "no evaluation of the monitored metric reached the rule" if d is None else d.reason)
        _common.write_run_info(trainer, "stopping", {"outcome": {
            "stopped_step": self.stopped_step, "reason": reason, "code": None if d is None else d.code.value,
            "n_points": len(self.rule.steps), "last_step": None if d is None else d.step,
            "converged_loss": d.converged_loss if d is not None and d.trusted else None}})
        if self._member is not None:
            self._member.write(trainer, pl_module, finished=True)
        if self.verbose and self.stopped_step is None:
            _common.rank_zero_info(trainer, self.summary(trainer, f"the rule did not stop the run: {reason}",
                                                         stopped=False))

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._lr_optimizer = None

    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        """With ``sweep=``: write this run's record as of the checkpoint (so a killed run leaves its last one)."""
        if self._member is not None:
            self._member.write(trainer, pl_module, finished=False)

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if getattr(trainer, "sanity_checking", False) or getattr(trainer, "fast_dev_run", False):
            return
        step = int(trainer.global_step)
        if step == self._last_eval_step or step == 0:
            return
        self._last_eval_step = step
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            message = (f"could not find the monitored metric {self.monitor!r}; available: "
                       f"{sorted(trainer.callback_metrics)}. Log it with self.log({self.monitor!r}, ...)")
            if self.strict:
                raise RuntimeError(f"ExtraEarlyStopping {message}, or set strict=False to skip such evaluations")
            self._warn_once(trainer, "monitor", f"{message}; evaluations without it are skipped")
            return
        if self._no_epoch_steps:
            return
        # every rank decides on the same number: the mean over ranks (one reduce per evaluation)
        (loss,) = _common.reduce_sum(trainer, [value])
        loss /= _common.world_size(trainer)
        if not math.isfinite(loss):
            self._warn_once(trainer, "finite", f"{self.monitor} = {loss} at step {step} is not finite: the point is "
                                               "skipped (and any later non-finite one) and training goes on; to "
                                               "stop on one, add Lightning's EarlyStopping(monitor="
                                               f"{self.monitor!r}, check_finite=True)")
        floor = self._data_floor(trainer)
        # U only for the family that uses it: other families add no collective (EffectiveEpochs' counts) here
        epoch_steps = self._epoch_steps(trainer) if self.rule.family == "effective_data" else None
        if epoch_steps is None and self.rule.family == "effective_data":
            self._missing_epoch_steps(trainer, "ExtraEarlyStopping(family='effective_data'): the steps of one epoch "
                                               "cannot be derived (EffectiveEpochs does not know the dataset size); "
                                               "pass epoch_steps=... or EffectiveEpochs(dataset_size=...)")
            return
        try:
            decision = self.rule.update(step, loss, self.lr_sum, floor, epoch_steps)
        except Exception as err:  # the rule reports a failed fit as a decision; anything else must not end training
            self._warn_once(trainer, "update", f"the stopping rule failed at step {step} ({type(err).__name__}: "
                                               f"{err}); the point is skipped and training goes on")
            return
        if decision.error is not None:
            self._warn_once(trainer, "fit", f"the learning-curve fit failed at step {step} ({decision.error}): no "
                                            "prediction at that point (nor at later ones that fail the same way); "
                                            "training goes on")
        self.decision = decision
        deciding = bool(self.cooldown_steps) and self.cooldown_start is None
        # the schedule forecast and the cool-down decision on it are made on global rank zero only; its tags and
        # that decision reach every rank (one broadcast per validation with a forecast, none on one process)
        self._schedule.update(trainer, self.rule, step, lambda key, message: self._warn_once(trainer, key, message),
                              cooldown=deciding)
        begin = self._cooldown_due(trainer, decision) if deciding and not decision.should_stop else None
        forecast_tags, begin = self._schedule.share(trainer, self.cooldown_steps if deciding else 0, begin)
        if deciding:
            self.cooldown_decision = begin  # the latest (the summary says why no cool-down has begun)
        if self._member is not None:
            self._member.validated(trainer, pl_module)
        self._log(trainer, decision, loss, epoch_steps, forecast_tags)
        should_stop = trainer.strategy.reduce_boolean_decision(decision.should_stop, all=False)
        if self.rule.last_fit is not None and self.rule.last_fit.fits:
            self._figure(trainer, decision, force=should_stop)
        if deciding and not should_stop:  # every rank begins together: on rank zero's decision, shared above
            if begin is not None and begin.begin:
                self._begin_cooldown(trainer, begin.reason)
        elif should_stop and deciding:
            self._begin_cooldown(trainer, decision.reason)
        elif should_stop and self.cooldown_start is None:
            self._stop(trainer, decision.reason)

    def _cooldown_due(self, trainer: Any, decision: StopDecision) -> Any:
        """With ``cooldown_steps``: the cool-down decision at this validation (:func:`~lightning_scaling.cooldown.
        cooldown_decision`, docs/science.md "The WSD cool-down"): the schedule forecast's loss after a cool-down begun
        now against ``threshold`` x the converged loss that cool-down reaches, the stable run's converged loss being
        the rule's calibrated one-sided lower bound at ``confidence`` (the one its stop uses). None without a trusted
        prediction of the rule or a forecast; a failure is one warning."""
        from ..cooldown import cooldown_decision

        f = self._schedule.forecast
        if f is None or not decision.trusted or decision.stop_loss is None:
            return None
        rule = self.rule
        bound = rule.irreducible + (decision.stop_loss - rule.irreducible) / rule.threshold
        try:
            return cooldown_decision(f, self.cooldown_steps, rule.threshold, irreducible=rule.irreducible,
                                     converged_loss=bound)
        except Exception as err:  # a decision that cannot be made is no cool-down, never an end of training
            self._warn_once(trainer, "cooldown", f"the cool-down decision failed at step {decision.step} "
                                                 f"({type(err).__name__}: {err}); the stable phase goes on")
            return None

    def _enable_cooldown_hook(self) -> None:
        """From the start of a cool-down (or a resume inside one), let Lightning dispatch ``on_train_batch_start``
        again: remove the instance's None that hid the class's hook (``__init__``)."""
        if "on_train_batch_start" in self.__dict__ and self.on_train_batch_start is None:
            del self.on_train_batch_start

    def _begin_cooldown(self, trainer: Any, reason: str) -> None:
        self._enable_cooldown_hook()
        self.cooldown_start = int(trainer.global_step)
        self._cooldown_lrs = [[float(g["lr"]) for g in opt.param_groups] for opt in trainer.optimizers]
        self._cooldown_reason = reason
        if self.verbose:
            _common.rank_zero_info(trainer, f"ExtraEarlyStopping: decision at step {self.cooldown_start} ({reason}); "
                                            f"cooling the learning rate down to 0 over {self.cooldown_steps} steps "
                                            "before stopping")

    def _figure(self, trainer: Any, d: StopDecision, force: bool) -> None:
        from ..dashboard import FIGURE_INTERVAL_S, add_figure, learning_curve_figure

        rule = self.rule
        add_figure(trainer, self, tags.tag("learning_curve"),
                   lambda: learning_curve_figure(rule.times, rule.fitted_losses, rule.last_fit, d.converged_loss,
                                                 d.stop_loss, xlabel=rule.axis.replace("_", " ")),
                   d.step, FIGURE_INTERVAL_S, force)

    def _data_floor(self, trainer: Any) -> float | None:
        if not self.use_data_floor:
            return None
        gap = _common.find_callback(trainer, "DataLimitGapBase")
        return None if gap is None else gap.data_floor(trainer)

    def _log(self, trainer: Any, d: StopDecision, loss: float, epoch_steps: float | None = None,
             forecast_tags: dict[str, float | None] | None = None) -> None:
        # the rule's own inputs (step = global_step, the loss, the LR sum, the steps of an epoch, a floor that is the
        # model's own limit) go to the logs, so a replay of scaling/monitored_loss, scaling/lr_sum (and
        # scaling/epoch_steps, scaling/floor_kind, with DataLimitGap's scaling/ld_loss) reaches this decision
        metrics = tags.named({"monitored_loss": loss, "lr_sum": self.lr_sum, "epoch_steps": epoch_steps,
                              "floor_kind": tags.encode_floor_kind(self.rule.floor_kind),
                              "smoothed_loss": d.smoothed_loss})
        # a prediction exists only where the fit is trusted: an untrusted one is not logged as a number
        prediction = tags.named({"converged_loss": d.converged_loss, "stop_loss": d.stop_loss,
                                 "predicted_stop_step": d.predicted_stop_step, "progress": d.progress,
                                 "converged_loss_low": d.interval[0] if d.interval else None,
                                 "converged_loss_high": d.interval[1] if d.interval else None})
        if not d.trusted:
            prediction = dict.fromkeys(prediction)
        prediction.update(tags.named(forecast_tags or {}))  # the schedule forecast's, rank zero's on every rank
        if self._member is not None:  # shown beside the single-run prediction, never used to stop (rank zero only)
            metrics.update(tags.named(self._member.metrics()))
        _common.log_scalars(trainer, {**metrics, **prediction}, d.step)
        _common.publish(trainer, prediction)

    def _stop(self, trainer: Any, reason: str, step: int | None = None) -> None:
        """Ask the Trainer to stop; ``step``: the last optimizer step of the run (default: the current one)."""
        trainer.should_stop = True
        self.stopped_step = int(trainer.global_step) if step is None else step
        self._stop_reason = reason
        if self.verbose:
            _common.rank_zero_info(trainer, self.summary(trainer, reason))

    def summary(self, trainer: Any, reason: str, stopped: bool = True) -> str:
        """What the rule concluded and why: the stop (or that there was none), the prediction and its interval, the
        compute used."""
        d = self.decision
        step = trainer.global_step if self.stopped_step is None else self.stopped_step
        lines = [f"ExtraEarlyStopping: stopped at step {step}: {reason}" if stopped else
                 f"ExtraEarlyStopping: training ended at step {step}; {reason}"]
        if d is not None and d.converged_loss is not None and d.trusted:
            lo, hi = d.interval or (float("nan"), float("nan"))
            level = f"{self.rule.confidence:.0%} interval" if self.rule._calibration is not None else "fit's interval"
            lines.append(f"  predicted converged {self.monitor}: {d.converged_loss:.4f}, {level} [{lo:.4f}, {hi:.4f}]; "
                         f"smoothed loss now {d.smoothed_loss:.4f}")
        line = self._schedule.summary_line()
        if line is not None:
            lines.append(line)
        if self.cooldown_steps and self.cooldown_start is None:
            c = self.cooldown_decision
            lines.append(f"  no cool-down begun: {c.reason}" if c is not None else
                         "  no cool-down begun: no trusted prediction and schedule forecast to decide it with")
        if self._member is not None and _common.is_global_zero(trainer):
            lines.append(self._member.summary_line())
        counter = _common.find_callback(trainer, "FlopCounterBase")
        if counter is not None:
            from ..flops import pf_days

            total = counter.sync(trainer)
            lines.append(f"  compute used: {total:.3e} FLOP ({pf_days(total):.3e} PF-days)")
            if stopped and d is not None and d.trusted and self.rule.axis == "steps":
                from ..planning import tradeoff

                t = tradeoff(self.rule.threshold - 1.0, 0.02)
                lines.append(f"  training on to within 2% of convergence would take about {1 / t.steps_ratio:.1f}x "
                             f"these steps (~{total / t.steps_ratio:.3e} FLOP), [K] B.13")
        return "\n".join(lines)

    def state_dict(self) -> dict[str, Any]:
        return {"rule": self.rule.state_dict(), "lr_sum": self.lr_sum, "stopped_step": self.stopped_step,
                "last_eval_step": self._last_eval_step, "cooldown_start": self.cooldown_start,
                "cooldown_lrs": [list(v) for v in self._cooldown_lrs], "cooldown_reason": self._cooldown_reason,
                "stop_reason": self._stop_reason, "run_id": self.run_id}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rule.load_state_dict(state["rule"])
        self.lr_sum = float(state["lr_sum"])
        self.stopped_step = state["stopped_step"]
        self._last_eval_step = state["last_eval_step"]
        self.cooldown_start = state.get("cooldown_start")
        if self.cooldown_start is not None:
            self._enable_cooldown_hook()
        self._cooldown_lrs = [[float(v) for v in lrs] for lrs in state.get("cooldown_lrs", [])]
        self._cooldown_reason = state.get("cooldown_reason", "")
        self._stop_reason = state.get("stop_reason", "")
        if self._member is not None:
            self._member.run_id = state.get("run_id") or self._member.run_id

