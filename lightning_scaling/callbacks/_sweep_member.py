"""ExtraEarlyStopping's membership in a sweep store (``ExtraEarlyStopping(sweep=...)``, docs/design.md "The sweep
store").

Rank zero writes this run's record (:func:`lightning_scaling.sweep.write_record`, atomic) at each checkpoint and at
the end of fit, and fits the store's runs on the same data jointly with this run's points
(:func:`lightning_scaling.sweep.fit_sweep`): the pooled prediction at this model's N and D is shown beside the
single-run one, never used to stop (:func:`lightning_scaling.sweep.pooled_fit` and
:func:`~lightning_scaling.sweep.pooled_prediction`, which ``replay(..., sweep=...)`` calls too). A failure to write or
fit is one warning; training goes on. :class:`StoreWatch` (when to refit) serves DataLimitGap's floor too.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

from . import _common

#: With ``sweep=``: the pooled (joint) fit is refitted at a validation when the store has changed (another run wrote
#: or rewrote a record) or when this many validations have passed since the last fit; in between, the last fit's
#: prediction is re-read at the run's current N, D and smoothed loss (the cost of a joint fit against the number of
#: stored runs: BENCHMARKS.md "Sweeps").
SWEEP_REFIT_EVERY = 5
#: ... and, whatever changed, a fit that took t ms waits t / this many validations before the next (at most about
#: this many ms per validation on average: a store of 100 runs is refitted every 20-200 validations).
SWEEP_MS_PER_VALIDATION = 5.0


class StoreWatch:
    """When to refit a sweep store: it changed (another run wrote or rewrote a record; this run's own record left
    out), or ``every`` calls passed since the last fit; and, whatever changed, a fit that took t ms waits
    t / :data:`SWEEP_MS_PER_VALIDATION` calls before the next. Used at validations, never per step (rank zero).

    Args:
        sweep: the store (:class:`~lightning_scaling.sweep.Sweep`).
    """

    def __init__(self, sweep: Any) -> None:
        self.sweep = sweep
        self.signature: Any = None  # what the store's files looked like when last read
        self.since = 0  # calls since the last fit
        self.stale = False  # the store changed since the last fit

    def due(self, run_id: str | None, every: float, last_seconds: float) -> bool:
        """One call: re-read the store when its files changed (``run_id``'s own record left out of the comparison),
        and whether a refit is due (``every``: calls between refits of an unchanged store, ``math.inf``: only on a
        change; ``last_seconds``: the last fit's wall time)."""
        self.since += 1
        signature = self._signature(run_id)
        if signature != self.signature:
            self.signature = signature
            self.sweep.refresh()
            self.stale = True
        wait = max(1 if self.stale else every, 1e3 * last_seconds / SWEEP_MS_PER_VALIDATION)
        return self.since >= wait

    def fitted(self) -> None:
        """A fit was made now."""
        self.since, self.stale = 0, False

    def _signature(self, run_id: str | None) -> Any:
        """The store's record files (name, mtime, size), ``run_id``'s left out: a change means another run wrote."""
        if self.sweep.path is None:
            return len(self.sweep.records)
        from ..sweep import record_filename

        own = record_filename(run_id) if run_id else None
        try:
            with os.scandir(self.sweep.path) as entries:
                return tuple(sorted((e.name, e.stat().st_mtime_ns, e.stat().st_size) for e in entries
                                    if e.name.endswith(".json") and e.name != own))
        except OSError:
            return ()


def model_size(trainer: Any, pl_module: Any) -> float | None:
    """A run's N as its sweep record holds it: the run-info file's ``model`` section (EffectiveEpochs writes it), else
    the module's parameters counted the same way (every parameter's ``numel``); None when neither is known."""
    from .. import run_info

    for logger in getattr(trainer, "loggers", []) or []:
        log_dir = getattr(logger, "log_dir", None)
        try:
            n = run_info.read(log_dir).get("model", {}).get("n_params") if log_dir else None
        except (OSError, ValueError, AttributeError):
            n = None
        if isinstance(n, (int, float)) and not isinstance(n, bool) and n > 0:
            return float(n)
    if pl_module is not None:
        from ..flops import n_params

        n = n_params(pl_module)
        return float(n) if n > 0 else None
    return None


class SweepMember:
    """This run in a sweep store: its id, its record, and the pooled (joint) fit of the store with its points.

    Args:
        sweep: the store (:class:`~lightning_scaling.sweep.Sweep`, or a folder path: ``Sweep(path)``).
        owner: the ExtraEarlyStopping callback whose rule, decision and counts the record is made of.

    Raises:
        ValueError: ``sweep`` is neither a Sweep nor a folder path.
    """

    def __init__(self, sweep: Any, owner: Any) -> None:
        self.sweep = as_sweep(sweep)
        self.owner = owner
        self.run_id: str | None = None  # this run's id in the store (kept in the checkpoint)
        self.fit: Any = None  # the latest joint fit of the store and this run (a SweepFit), or None
        self.pooled: tuple[float, tuple[float, float]] | None = None  # its (L, (low, high)) at this N, D, or None
        self._watch = StoreWatch(self.sweep)  # when to refit
        self._sweep_seconds = 0.0  # wall time spent in joint fits (the store read included)
        self._sweep_fits = 0
        self._n_params: float | None = None

    def start(self, trainer: Any, pl_module: Any) -> None:
        """At the train start (rank zero): the run's id, and the stored runs alone fitted (a prior)."""
        if _common.is_global_zero(trainer):
            self.run_id_for(trainer)
            self.refit(trainer, pl_module, refit=True, own=False)

    def validated(self, trainer: Any, pl_module: Any) -> None:
        """After each validation's decision (rank zero): refit within the budget, and the pooled prediction."""
        if _common.is_global_zero(trainer):
            self.refit(trainer, pl_module)

    def metrics(self) -> dict[str, float]:
        """The pooled prediction's tags (short names), empty without one."""
        if self.pooled is None:
            return {}
        value, (lo, hi) = self.pooled
        return {"pooled_converged_loss": value, "pooled_converged_loss_low": lo, "pooled_converged_loss_high": hi}

    def run_id_for(self, trainer: Any) -> str:
        """This run's id in the store: the one restored from a checkpoint, else the logger's name and version with a
        random suffix (two runs whose loggers share a name and version, in different folders, never share a record)."""
        if self.run_id is None:
            logger = getattr(trainer, "logger", None)
            parts = []
            for attr in ("name", "version"):
                try:
                    value = getattr(logger, attr, None) if logger is not None else None
                except Exception:  # a logger property that cannot be read here: the suffix alone identifies the run
                    value = None
                if value not in (None, ""):
                    parts.append(str(value))
            self.run_id = "-".join(parts + [uuid.uuid4().hex[:8]])
        return self.run_id

    def model_size(self, trainer: Any, pl_module: Any) -> float | None:
        """N (:func:`model_size`), found once."""
        if self._n_params is None:
            self._n_params = model_size(trainer, pl_module)
        return self._n_params

    def dataset(self) -> tuple[float | None, str]:
        """D and its unit as EffectiveEpochs resolved them at its train start (what its counts report as
        ``dataset_size``; read without a collective), or ``(None, "examples")`` without it."""
        counter = self.owner._counter
        if counter is None:
            return None, "examples"
        return getattr(counter, "_size", None), counter.unit

    def record(self, trainer: Any, pl_module: Any, counts: Any = None, flops: float | None = None,
                     finished: bool = False) -> Any:
        """This run's :class:`~lightning_scaling.sweep.SweepRecord` from what the callback holds: the rule's finite
        points, N, D (``counts``: EffectiveEpochs' counts, for the data seen), ``flops``, the last decision; None
        when N is unknown (a module without parameters)."""
        from ..sweep import record_from_rule

        size, unit = self.dataset()
        if counts is not None:
            size, unit = counts.dataset_size or size, counts.unit
        seen = counts.seen if counts is not None else None
        n = self.model_size(trainer, pl_module)
        if n is None:
            return None
        d = self.owner.decision
        trusted = d is not None and d.trusted and d.converged_loss is not None
        reason = self.owner._stop_reason if self.owner.stopped_step is not None else (None if d is None else d.reason)
        return record_from_rule(
            self.run_id_for(trainer), self.owner.rule, n_params=n, data=self.sweep.data,
            dataset_size=size, unit=unit, examples_seen=seen,
            tokens_per_step=seen / counts.step if seen and counts.step else None, flops=flops,
            stop_reason=reason, stop_code=None if d is None else d.code.value,
            converged_loss=d.converged_loss if trusted else None, interval=tuple(d.interval) if trusted and d.interval
            else None,
            config={"monitor": self.owner.monitor, "stopped_step": self.owner.stopped_step,
                    "cooldown_steps": self.owner.cooldown_steps, "last_step": int(trainer.global_step),
                    "finished": finished})

    def write(self, trainer: Any, pl_module: Any, finished: bool) -> None:
        """Rank zero writes this run's record, atomically; the counts and FLOPs are summed over ranks first
        (collective: every rank calls this at the same hook). An OSError is one warning."""
        if self.sweep is None:
            return
        counts = flops = None
        try:
            if self.owner._counter is not None:
                counts = self.owner._counter.counts(trainer)
            flop_counter = _common.find_callback(trainer, "FlopCounterBase")
            if flop_counter is not None:
                flops = flop_counter.sync(trainer)
        except Exception as err:  # the record is a report: it never ends the user's training
            self.owner._warn_once(trainer, "sweep_counts", f"the data and FLOP counts for the sweep record could not "
                                                     f"be read ({type(err).__name__}: {err}); written without them")
        if not _common.is_global_zero(trainer):
            return
        try:
            record = self.record(trainer, pl_module, counts, flops, finished)
            if record is None:
                return
            if self.sweep.path is None:
                self.sweep.add(record)
            else:
                from ..sweep import write_record

                write_record(self.sweep.path, record)
        except (OSError, ValueError) as err:
            self.owner._warn_once(trainer, "sweep_write", f"could not write this run's record into the sweep store "
                                                    f"{self.sweep.path} ({type(err).__name__}: {err}); training goes "
                                                    "on")

    def refit(self, trainer: Any, pl_module: Any, refit: bool = False, own: bool = True) -> None:
        """Rank zero: re-read the store when it changed, and fit it jointly with this run's points (``own``) when it
        changed or every :data:`SWEEP_REFIT_EVERY`-th call, within :data:`SWEEP_MS_PER_VALIDATION` (``refit``: now,
        the train start); then the pooled prediction at this N and D (``pooled``)."""
        t0 = time.perf_counter()
        try:
            last = self.fit.seconds if self.fit is not None else 0.0
            if self._watch.due(self.run_id, SWEEP_REFIT_EVERY, last) or refit:
                self._watch.fitted()
                self.fit = self._fit(trainer, pl_module, own)
                self._sweep_fits += 1
            self.pooled = self._pooled(trainer, pl_module)
        except Exception as err:  # the pooled fit is shown, never used to stop: it never ends the user's training
            self.fit, self.pooled = None, None
            self.owner._warn_once(trainer, "sweep_fit", f"the sweep's joint fit failed ({type(err).__name__}: {err}); "
                                                  "no pooled prediction, training goes on")
        self._sweep_seconds += time.perf_counter() - t0

    def _fit(self, trainer: Any, pl_module: Any, own: bool = True) -> Any:
        """The joint fit of the store's runs on this data and (``own``) this run's points so far
        (:func:`lightning_scaling.sweep.pooled_fit`); None with no other run on this data."""
        from ..sweep import pooled_fit

        run_id = self.run_id_for(trainer)
        fit = pooled_fit(self.sweep.records, self.record(trainer, pl_module) if own else None, run_id=run_id,
                         data=self.sweep.data)
        if fit is not None and not fit.success and fit.n_runs >= 2:
            self.owner._warn_once(trainer, "sweep_fit", f"the sweep's joint fit of {fit.n_runs} runs failed "
                                                  f"({fit.message}); no pooled prediction until it succeeds")
        return fit

    def _pooled(self, trainer: Any, pl_module: Any) -> tuple[float, tuple[float, float]] | None:
        """The joint fit's converged loss at this model's N and D with its interval at the rule's confidence, in the
        bin of the run's smoothed loss now (:func:`lightning_scaling.sweep.pooled_prediction`); None without a
        successful fit that covers this N."""
        from ..sweep import pooled_prediction

        n = self.model_size(trainer, pl_module) if self.fit is not None else None
        if n is None:
            return None
        d = self.owner.decision
        return pooled_prediction(self.fit, n, self.dataset()[0], confidence=self.owner.rule.confidence,
                                 smoothed_loss=None if d is None else d.smoothed_loss)

    def summary_line(self) -> str:
        """The summary's line on the sweep: the pooled prediction beside the single-run one, or why there is none."""
        fit = self.fit
        if self.pooled is not None:
            value, (lo, hi) = self.pooled
            return (f"  pooled prediction (sweep of {fit.n_runs} runs on data {self.sweep.data!r}): {value:.4f}, "
                    f"{self.owner.rule.confidence:.0%} interval [{lo:.4f}, {hi:.4f}] (shown only: the stop uses this "
                    "run's own prediction)")
        why = ("no other run on this data in the store" if fit is None else fit.message if not fit.success
               else "this model's N is not in the sweep and no law of N was fitted")
        return f"  no pooled prediction from the sweep {self.sweep.path or '(in memory)'}: {why}"


def as_sweep(value: Any) -> Any:
    """``sweep=`` as a :class:`~lightning_scaling.sweep.Sweep` (:func:`lightning_scaling.sweep.as_sweep`: a path is
    ``Sweep(path)``), or None.

    Raises:
        ValueError: neither None, a Sweep, a path nor a list of records, or a path that is a file.
    """
    from ..sweep import as_sweep as resolve

    return resolve(value)
