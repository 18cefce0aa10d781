"""DataLimitGap: the monitored loss against a fitted L(D) at the distinct data seen ([H] section 6), or against the
floor a sweep store's joint fit gives on the same data (``sweep=``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .. import presets
from ..laws import ChinchillaLaw, OverfittingLaw, PowerLaw
from .. import tags
from . import _common

#: Laws of N and D: DataLimitGap evaluates them at the model's parameter count.
MODEL_LAWS = (OverfittingLaw, ChinchillaLaw)
#: The codes of the floor's source shared across ranks (0: the law).
_SOURCE_CODES = {"limit": 1.0, "best_size": 2.0}


class DataLimitGapBase:
    """Log ``ld_loss`` = L(D_seen), ``ld_gap`` = loss - ld_loss and ``ld_ratio`` = loss / ld_loss.

    L(D) is the best loss any model can reach on D distinct examples or tokens ([K] eq 1.2, [H] eq 1.1):
    when the gap closes, more data, not a bigger model, lowers the loss further. Given a law of N and D
    instead (:class:`~lightning_scaling.laws.OverfittingLaw`, [K] eq 1.5, or a ChinchillaLaw), the floor is
    L(N, D_seen) for this model's N: the loss this model converges to on the data seen, which for a model too
    small for its data lies well above L(D). ExtraEarlyStopping uses the floor (``use_data_floor``); with
    an L(N, D) floor its default ``family="auto"`` fits the power law alone, the measured best rule (BENCHMARKS.md).

    Args:
        law: a :class:`PowerLaw` in tokens or examples, an :class:`OverfittingLaw` or :class:`ChinchillaLaw`
            (tokens), a path to a law's JSON, or a preset name.
        monitor: the loss to compare (default ``val_loss``).
        tolerance: the run is called data-limited when ``ld_gap <= tolerance * ld_loss``.
        n_params: N for a law of N and D, counted the way the law was fitted; default: every parameter of the
            LightningModule, counted at setup (pass it under a strategy that shards parameters, such as FSDP or
            DeepSpeed, where a rank sees only its shard).
        sweep: None, or a sweep store (:class:`lightning_scaling.Sweep`, or a folder path: ``Sweep(path)``) of
            earlier runs on this run's data (``ExtraEarlyStopping(sweep=...)`` writes it). The floor is then the
            one the store's joint fit gives on this data (:func:`lightning_scaling.sweep.sweep_floor`): with a law
            of N across its sizes ([K] eq 1.6) and a run smaller than the largest size, its limit N -> infinity,
            ``E``; else (one size, or a run as large as the largest) the lowest converged loss of a size at this D
            larger than this run's N, which extrapolates nothing. A smaller or equal size's converged loss is one
            this run goes below, no floor: without a larger size there is no sweep floor
            (``sweep_floor(..., n_params=N)``, N as ExtraEarlyStopping's record counts it;
            :class:`lightning_scaling.sweep.SweepFloor` says which: ``floor_source``, and a message when it
            changes). It is a constant: the N -> infinity limit on all of
            this run's D, at or below L(D_seen) before the whole dataset is seen. Only runs with the Sweep's
            ``data`` are pooled; this run's own record (ExtraEarlyStopping's ``run_id``) is left out. The store is
            fitted at the train start and again at a validation when it changed (another run wrote), never more
            often than ExtraEarlyStopping's sweep budget allows (``SWEEP_MS_PER_VALIDATION``); rank zero fits, and
            every rank gets its floor with the loss's all-reduce. With no usable earlier runs (none, one, or none
            that fits), the floor is ``law``'s, exactly as without a sweep, and it says so once; a store that
            cannot be read or fitted is one warning, and the last floor stays. Needs an L(D) ``law`` (the
            fallback): the pooled floor is an L(D), not this model's own L(N, D).
    Needs :class:`EffectiveEpochs` in the callbacks (it counts the distinct data seen). With a TensorBoardLogger (and
    matplotlib) the loss-against-data figure with the floor is added at most once per
    :data:`lightning_scaling.dashboard.FIGURE_INTERVAL_S` seconds (60).

    Raises:
        ValueError: a law of the wrong unit or kind, ``n_params`` or ``tolerance`` out of range, ``sweep`` that is
            neither a Sweep nor a folder, or given with a law of N and D; ``figure_interval`` (removed), saying what
            to do instead.

    Example:
        >>> from lightning_scaling import DataLimitGap, PowerLaw, Sweep
        >>> gap = DataLimitGap(PowerLaw(2.0, 0.5, 0.9, unit="examples"), sweep=Sweep("sweeps/text", data="text"))
        >>> gap.floor_source
        'law'
    """

    def __init__(self, law: PowerLaw | OverfittingLaw | ChinchillaLaw | str | Path, monitor: str = "val_loss",
                 tolerance: float = 0.02, n_params: int | None = None, sweep: Any = None, **misplaced: Any) -> None:
        from ._sweep_member import StoreWatch, as_sweep

        _common.refuse(misplaced, "DataLimitGap")
        resolved = presets.resolve(law)
        self.model_law = resolved if isinstance(resolved, MODEL_LAWS) else None  # L(N, D): evaluated at setup
        self.sweep = as_sweep(sweep)
        if self.sweep is not None and self.model_law is not None:
            raise ValueError("sweep= gives a floor for any model on this data (an L(D)), not this model's own "
                             "L(N, D): give an L(D) PowerLaw as the law (used until the sweep has usable runs)")
        self._sweep_n: float | None = None  # with sweep=: this run's N (sweep_floor takes it)
        self.floor: Any = None  # the sweep's floor in use (a SweepFloor, the same on every rank), or None: the law's
        self._watch = None if self.sweep is None else StoreWatch(self.sweep)
        self._sweep_fit: Any = None  # rank zero: the latest joint fit of the store
        self._said: set[str] = set()  # the floor sources already announced
        if n_params is not None and not (isinstance(n_params, int) and n_params > 0):
            raise ValueError(f"n_params must be a positive int (the model's parameter count), got {n_params!r}"
                             + (" (the fourth positional argument was figure_interval, now removed: pass the "
                                "arguments after monitor by name)" if isinstance(n_params, float) else ""))
        if n_params is not None and self.model_law is None:
            raise ValueError("n_params is for a law of N and D (OverfittingLaw, ChinchillaLaw); an L(D) PowerLaw "
                             "does not depend on the model size")
        self.n_params = n_params
        if self.model_law is None:
            self.law = resolved
        else:  # L(D) at this model's N: now if given, else counted at setup
            self.law = resolved.data_law(n_params) if n_params else None
        if self.model_law is None and self.law.unit not in ("tokens", "examples"):
            raise ValueError(f"the L(D) law must count tokens or examples, not {self.law.unit!r}")
        if not (isinstance(tolerance, (int, float)) and tolerance >= 0):
            raise ValueError("tolerance must be a number >= 0 (a fraction of L(D), e.g. 0.02)")
        self.monitor = monitor
        self._state_key = f"DataLimitGap{{monitor={monitor}}}"  # once: Lightning reads it at every hook
        self.tolerance = float(tolerance)
        self.data_limited_at: int | None = None
        self.history: list[tuple[float, float]] = []  # (data seen, loss) at each evaluation
        self._warned_below = False  # the loss has gone below the law (warned once)
        self._warned: set[str] = set()  # the kinds of skipped evaluation already warned about
        _common.skip_unused_hooks(self)  # per-batch hooks it leaves empty: not dispatched at all

    @property
    def state_key(self) -> str:
        return self._state_key

    def _counter(self, trainer: Any) -> Any:
        counter = _common.find_callback(trainer, "EffectiveEpochsBase")
        if counter is None:
            raise ValueError("DataLimitGap needs the EffectiveEpochs callback in Trainer(callbacks=[...]) to count "
                             "the distinct data seen")
        return counter

    @property
    def unit(self) -> str:
        return "tokens" if self.model_law is not None else self.law.unit

    @property
    def floor_source(self) -> str:
        """Where the floor comes from: "law" (``law``), or the sweep's :attr:`SweepFloor.source
        <lightning_scaling.sweep.SweepFloor.source>` ("limit", "best_size")."""
        return "law" if self.floor is None else self.floor.source

    def _floor_at(self, distinct: Any) -> Any:
        """The floor at ``distinct`` data seen: the sweep's (a constant) when there is one, else the law's."""
        return float(self.floor.value) if self.floor is not None else self.law(distinct)

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        """With ``sweep=``: fit the store (rank zero) and share its floor with every rank (one all-reduce)."""
        if self.sweep is not None:
            if _common.is_global_zero(trainer):
                self._changed(trainer)  # read the store as it is now
                self._refit(trainer)
            self._share(trainer, _common.reduce_sum(trainer, self._encoded(trainer)))

    def _own_run_id(self, trainer: Any) -> str | None:
        """This run's id in a sweep store (ExtraEarlyStopping's, with its ``sweep=``), or None."""
        stopping = _common.find_callback(trainer, "ExtraEarlyStoppingBase")
        return getattr(stopping, "run_id", None) if stopping is not None else None

    def _changed(self, trainer: Any) -> bool:
        """Rank zero, at a validation: whether the store changed and its refit is due within the budget
        (:class:`~lightning_scaling.callbacks._sweep_member.StoreWatch`); a store that cannot be listed is one
        warning and no change."""
        try:
            last = self._sweep_fit.seconds if self._sweep_fit is not None else 0.0
            return self._watch.due(self._own_run_id(trainer), math.inf, last)
        except Exception as err:  # never ends the user's training
            self._warn_once(trainer, "sweep_read", f"the sweep store {self.sweep.path} could not be read "
                                                   f"({type(err).__name__}: {err}); the floor stays as it is")
            return False

    def _refit(self, trainer: Any) -> None:
        """Rank zero: the joint fit of the store's runs on this data, this run's own record left out. A store that
        cannot be read or fitted, or a fit that fails, is one warning; a successful earlier fit then stays."""
        from ..sweep import pooled_fit

        self._watch.fitted()
        try:
            fit = pooled_fit(self.sweep.records, run_id=self._own_run_id(trainer), data=self.sweep.data)
        except Exception as err:  # the floor is a report and a bound: it never ends the user's training
            fit, why = None, f"could not be read or fitted ({type(err).__name__}: {err})"
        else:
            why = None if fit is None or fit.success or fit.n_runs < 2 else \
                f"has a joint fit of {fit.n_runs} runs that failed ({fit.message})"
        kept = self._sweep_fit is not None and self._sweep_fit.success
        if why is not None:
            self._warn_once(trainer, "sweep", f"the sweep store {self.sweep.path or '(in memory)'} {why}; the floor "
                                              f"stays {'the last fit' if kept else 'the law'}'s")
        if why is None or not kept:
            self._sweep_fit = fit

    def _encoded(self, trainer: Any) -> list[float]:
        """Rank zero's floor as numbers for the all-reduce (value, low, high, source code, runs, N); zeros on the
        other ranks, and on rank zero without a floor (so the sum is rank zero's)."""
        from ..sweep import sweep_floor

        floor = None
        if _common.is_global_zero(trainer):
            from ._sweep_member import model_size

            if self._sweep_n is None:  # this run's N, found once (the floor must bound its converged loss)
                self._sweep_n = model_size(trainer, getattr(trainer, "lightning_module", None))
            floor = sweep_floor(self._sweep_fit, self._dataset_size(trainer), n_params=self._sweep_n)
        if floor is None:
            return [0.0] * 6
        return [floor.value, *floor.interval, _SOURCE_CODES[floor.source], float(floor.n_runs),
                float(floor.n_params or 0.0)]

    @staticmethod
    def _dataset_size(trainer: Any) -> float | None:
        """D as EffectiveEpochs resolved it at its train start (None without it, or before)."""
        return getattr(_common.find_callback(trainer, "EffectiveEpochsBase"), "_size", None)

    def _share(self, trainer: Any, numbers: list[float]) -> None:
        """Take the floor rank zero sent (:meth:`_encoded`), and say once per source where it comes from."""
        from ..sweep import SweepFloor, groups_at

        value, lo, hi, code, n_runs, n = numbers
        source = next((k for k, v in _SOURCE_CODES.items() if v == code), None)
        self.floor = None if source is None else SweepFloor(value, (lo, hi), source, n or None, int(n_runs))
        where = f"the sweep store {self.sweep.path or '(in memory)'} on data {self.sweep.data!r}"
        if source is None and self.floor_source not in self._said:
            fit = self._sweep_fit
            if fit is None:
                why = "no earlier run on this data"
            elif not fit.success:
                why = fit.message
            elif not groups_at(fit, self._dataset_size(trainer)):
                why = "no size of the sweep at this run's dataset size D"
            else:
                why = (f"no size of the sweep at this D is larger than this run's N = {self._sweep_n or 0:,.0f}: a "
                       "smaller or equal model's converged loss is no floor for it")
            message = f"no usable earlier runs in {where} ({why}): the floor is the law's L(D_seen), as without a sweep"
        elif source is not None and source not in self._said:
            what = ("E, the converged loss as N -> infinity of [K] eq 1.6's law of N across its sizes" if
                    source == "limit" else f"the lowest converged loss of its sizes on this D (N = {n:,.0f}; one "
                                           "size, or several D: no law of N to take N -> infinity)")
            message = (f"the floor is the joint fit of {int(n_runs)} runs in {where}: {what}, {value:.4f} "
                       f"(interval [{lo:.4f}, {hi:.4f}])")
        else:
            return
        self._said.add(self.floor_source)
        _common.rank_zero_info(trainer, f"DataLimitGap: {message}")

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        from ..dashboard import ensure_layout

        if self.model_law is not None:
            from ..flops import n_params

            n = self.n_params or n_params(pl_module)
            if self.n_params is None:
                self.law = self.model_law.data_law(n)
            _common.rank_zero_info(trainer, f"DataLimitGap: the floor is L(N, D_seen) at N = {n:,} parameters "
                                            f"({type(self.model_law).__name__}); pass n_params= to count otherwise")
        counter = self._counter(trainer)
        if counter.unit != self.unit:
            raise ValueError(f"DataLimitGap: the law counts {self.unit} but EffectiveEpochs counts {counter.unit}; "
                             + ("give EffectiveEpochs tokens_per_example=... or count_tokens=..."
                                if self.unit == "tokens"
                                else "use an L(D) law fitted in tokens, or count examples"))
        ensure_layout(trainer)

    def _stopping_logs_loss(self, trainer: Any) -> bool:
        """Whether an ExtraEarlyStopping on the same metric logs ``scaling/monitored_loss`` (one writer per step)."""
        stopping = _common.find_callback(trainer, "ExtraEarlyStoppingBase")
        return stopping is not None and getattr(stopping, "monitor", None) == self.monitor

    def data_floor(self, trainer: Any) -> float | None:
        """The floor now (collective): L(D_seen), or the sweep's (``sweep=``); None before any data or without a
        dataset size."""
        c = self._counter(trainer).counts(trainer)
        if c.distinct_seen is None or not c.distinct_seen > 0:
            return None
        return float(self._floor_at(c.distinct_seen))

    def _warn_once(self, trainer: Any, key: str, message: str) -> None:
        """One warning per kind of trouble (``key``) per fit: the evaluation is skipped, training goes on."""
        if key not in self._warned:
            self._warned.add(key)
            _common.rank_zero_warn(trainer, f"DataLimitGap: {message}")

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if getattr(trainer, "sanity_checking", False):
            return
        c = self._counter(trainer).counts(trainer)
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            self._warn_once(trainer, "monitor", f"the monitored metric {self.monitor!r} was not logged at this "
                                                f"validation (available: {sorted(trainer.callback_metrics)}); log it "
                                                f"with self.log({self.monitor!r}, ...) or pass monitor=...; nothing is "
                                                "compared with the law until it appears")
            return
        if c.distinct_seen is None or not c.distinct_seen > 0:
            self._warn_once(trainer, "size", "the dataset size D is unknown, so the distinct data seen and L(D_seen) "
                                             "are too; give EffectiveEpochs(dataset_size=...) (the train dataset has "
                                             "no length); the gap is not logged")
            return
        if self.sweep is not None and _common.is_global_zero(trainer) and self._changed(trainer):
            self._refit(trainer)  # the store changed: refit (rank zero), within the budget
        # the floor rides on the loss's all-reduce: every rank takes rank zero's
        (loss, *floor) = _common.reduce_sum(trainer,
                                            [value] + (self._encoded(trainer) if self.sweep is not None else []))
        loss /= _common.world_size(trainer)
        if self.sweep is not None:
            self._share(trainer, floor)
        if not math.isfinite(loss):
            self._warn_once(trainer, "finite", f"{self.monitor} = {loss} at step {c.step} is not finite: that "
                                               "evaluation (and any later non-finite one) is skipped")
            return
        ld = float(self._floor_at(c.distinct_seen))
        metrics = {"ld_loss": ld, "ld_gap": loss - ld, "ld_ratio": loss / ld}
        if not self._stopping_logs_loss(trainer):  # ExtraEarlyStopping on the same metric writes it at this step
            metrics["monitored_loss"] = loss
        metrics = tags.named(metrics)
        _common.log_scalars(trainer, metrics, c.step)
        _common.publish(trainer, metrics)
        _common.log_scalars(trainer, tags.named({"loss_vs_examples": loss}), int(c.seen))
        self.history.append((float(c.seen), loss))
        from ..dashboard import FIGURE_INTERVAL_S, add_figure, data_limit_figure

        add_figure(trainer, self, tags.tag("loss_vs_data"),  # drawn only with a TensorBoardLogger, at a bounded rate
                   lambda: data_limit_figure(*zip(*self.history), self._floor_at, unit=c.unit,
                                             dataset_size=c.dataset_size),
                   c.step, FIGURE_INTERVAL_S)
        if loss < (1 - self.tolerance) * ld:
            if not self._warned_below:  # no model beats L(D): the law is wrong for this data, not the run
                self._warned_below = True
                fix = ("the law does not describe this run's data (fit it on runs over the same data and validation "
                       "set, e.g. `lightning-scaling fit runs/ --law ld`)" if self.floor is None else
                       f"the sweep's floor ({self.floor.source}) does not describe this run's data (are its runs on "
                       "the same data and validation set? a larger model than the sweep's?)")
                _common.rank_zero_warn(trainer, (
                    f"DataLimitGap: at step {c.step} {self.monitor} {loss:.4f} is {1 - loss / ld:.0%} below the "
                    f"{'law' if self.floor is None else 'sweep'}'s {ld:.4f} for the {c.distinct_seen:.4g} distinct "
                    f"{c.unit} seen, which no model should "
                    f"beat: {fix}; until then the gap is meaningless and ExtraEarlyStopping's floor from it is too "
                    "high, so it stops early"))
        elif self.data_limited_at is None and loss - ld <= self.tolerance * ld:
            self.data_limited_at = c.step
            if self.floor is not None:
                what = (f"the sweep's floor {ld:.4f} on this data ({self.floor.source}): the run is data-limited, "
                        "more data now beats a bigger model")
            elif self.model_law is None:
                what = (f"L(D) = {ld:.4f} for the {c.distinct_seen:.4g} distinct {c.unit} seen: the run is "
                        "data-limited, more data now beats a bigger model")
            else:
                what = (f"L(N, D) = {ld:.4f} for this model on the {c.distinct_seen:.4g} distinct {c.unit} seen: it "
                        "has converged on this data; more data or a bigger model lowers the loss further")
            _common.rank_zero_info(trainer, f"DataLimitGap: at step {c.step} {self.monitor} {loss:.4f} is within "
                                            f"{self.tolerance:.0%} of {what}")

    def state_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {"data_limited_at": self.data_limited_at, "history": [list(h) for h in self.history],
                "sweep_floor": None if self.floor is None else asdict(self.floor), "said": sorted(self._said)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        from ..sweep import SweepFloor

        self.data_limited_at = state["data_limited_at"]
        self.history = [(float(a), float(b)) for a, b in state.get("history", [])]
        floor = state.get("sweep_floor")
        self.floor = None if floor is None else SweepFloor(**{**floor, "interval": tuple(floor["interval"])})
        self._said = set(state.get("said", []))
