"""DataLimitGap: the monitored loss against a fitted L(D) at the distinct data seen ([H] section 6)."""

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
        figure_interval: with a TensorBoardLogger, add the loss-against-data figure with L(D) at most once
            per this many seconds (needs matplotlib).
        n_params: N for a law of N and D, counted the way the law was fitted; default: every parameter of the
            LightningModule, counted at setup (pass it under a strategy that shards parameters, such as FSDP or
            DeepSpeed, where a rank sees only its shard).
    Needs :class:`EffectiveEpochs` in the callbacks (it counts the distinct data seen).
    """

    def __init__(self, law: PowerLaw | OverfittingLaw | ChinchillaLaw | str | Path, monitor: str = "val_loss",
                 tolerance: float = 0.02, figure_interval: float = 60.0, n_params: int | None = None) -> None:
        resolved = presets.resolve(law)
        self.model_law = resolved if isinstance(resolved, MODEL_LAWS) else None  # L(N, D): evaluated at setup
        if n_params is not None and not (isinstance(n_params, int) and n_params > 0):
            raise ValueError(f"n_params must be a positive int (the model's parameter count), got {n_params!r}")
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
        if not figure_interval >= 0:
            raise ValueError("figure_interval must be a number of seconds >= 0")
        self.monitor = monitor
        self._state_key = f"DataLimitGap{{monitor={monitor}}}"  # once: Lightning reads it at every hook
        self.tolerance = float(tolerance)
        self.figure_interval = float(figure_interval)
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
                             + ("give EffectiveEpochs tokens_per_example=... or count_tokens=..." if self.unit == "tokens"
                                else "use an L(D) law fitted in tokens, or count examples"))
        ensure_layout(trainer)

    def _stopping_logs_loss(self, trainer: Any) -> bool:
        """Whether an ExtraEarlyStopping on the same metric logs ``scaling/monitored_loss`` (one writer per step)."""
        stopping = _common.find_callback(trainer, "ExtraEarlyStoppingBase")
        return stopping is not None and getattr(stopping, "monitor", None) == self.monitor

    def data_floor(self, trainer: Any) -> float | None:
        """L(D_seen) now (collective), or None before any data or without a dataset size."""
        c = self._counter(trainer).counts(trainer)
        if c.distinct_seen is None or not c.distinct_seen > 0:
            return None
        return float(self.law(c.distinct_seen))

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
        (loss,) = _common.reduce_sum(trainer, [value])
        loss /= _common.world_size(trainer)
        if not math.isfinite(loss):
            self._warn_once(trainer, "finite", f"{self.monitor} = {loss} at step {c.step} is not finite: that "
                                               "evaluation (and any later non-finite one) is skipped")
            return
        ld = float(self.law(c.distinct_seen))
        metrics = {"ld_loss": ld, "ld_gap": loss - ld, "ld_ratio": loss / ld}
        if not self._stopping_logs_loss(trainer):  # ExtraEarlyStopping on the same metric writes it at this step
            metrics["monitored_loss"] = loss
        metrics = tags.named(metrics)
        _common.log_scalars(trainer, metrics, c.step)
        _common.publish(trainer, metrics)
        _common.log_scalars(trainer, tags.named({"loss_vs_examples": loss}), int(c.seen))
        self.history.append((float(c.seen), loss))
        from ..dashboard import add_figure, data_limit_figure

        add_figure(trainer, self, tags.tag("loss_vs_data"),  # drawn only with a TensorBoardLogger, at a bounded rate
                   lambda: data_limit_figure(*zip(*self.history), self.law, unit=c.unit, dataset_size=c.dataset_size),
                   c.step, self.figure_interval)
        if loss < (1 - self.tolerance) * ld:
            if not self._warned_below:  # no model beats L(D): the law is wrong for this data, not the run
                self._warned_below = True
                _common.rank_zero_warn(trainer, (
                    f"DataLimitGap: at step {c.step} {self.monitor} {loss:.4f} is {1 - loss / ld:.0%} below the law's "
                    f"{ld:.4f} for the {c.distinct_seen:.4g} distinct {c.unit} seen, which no model should beat: the "
                    "law does not describe this run's data (fit it on runs over the same data and validation set, "
                    "e.g. `lightning-scaling fit runs/ --law ld`); until then the gap is meaningless and "
                    "ExtraEarlyStopping's floor from it is too high, so it stops early"))
        elif self.data_limited_at is None and loss - ld <= self.tolerance * ld:
            self.data_limited_at = c.step
            if self.model_law is None:
                what = (f"L(D) = {ld:.4f} for the {c.distinct_seen:.4g} distinct {c.unit} seen: the run is "
                        "data-limited, more data now beats a bigger model")
            else:
                what = (f"L(N, D) = {ld:.4f} for this model on the {c.distinct_seen:.4g} distinct {c.unit} seen: it "
                        "has converged on this data; more data or a bigger model lowers the loss further")
            _common.rank_zero_info(trainer, f"DataLimitGap: at step {c.step} {self.monitor} {loss:.4f} is within "
                                            f"{self.tolerance:.0%} of {what}")

    def state_dict(self) -> dict[str, Any]:
        return {"data_limited_at": self.data_limited_at, "history": [list(h) for h in self.history]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.data_limited_at = state["data_limited_at"]
        self.history = [(float(a), float(b)) for a, b in state.get("history", [])]
