"""DataLimitGap: the monitored loss against a fitted L(D) at the distinct data seen ([H] section 6)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..laws import PowerLaw, load_law
from . import _common


def _resolve_law(law: PowerLaw | str | Path) -> PowerLaw:
    if isinstance(law, PowerLaw):
        return law
    from .. import presets

    if isinstance(law, str) and law in presets.names():
        resolved = presets.get(law)
    else:
        resolved = load_law(law)
    if not isinstance(resolved, PowerLaw):
        raise ValueError("DataLimitGap needs an L(D) power law; for a ChinchillaLaw pass law.data_law()")
    return resolved


class DataLimitGapBase:
    """Log ``ld_loss`` = L(D_seen), ``ld_gap`` = loss - ld_loss and ``ld_ratio`` = loss / ld_loss.

    L(D) is the best loss any model can reach on D distinct examples or tokens ([K] eq 1.2, [H] eq 1.1):
    when the gap closes, more data, not a bigger model, lowers the loss further.

    Args:
        law: a :class:`PowerLaw` in tokens or examples, a path to its JSON, or a preset name.
        monitor: the loss to compare (default ``val_loss``).
        tolerance: the run is called data-limited when ``ld_gap <= tolerance * ld_loss``.
        figure_interval: with a TensorBoardLogger, add the loss-against-data figure with L(D) at most once
            per this many seconds (needs matplotlib).
    Needs :class:`EffectiveEpochs` in the callbacks (it counts the distinct data seen).
    """

    def __init__(self, law: PowerLaw | str | Path, monitor: str = "val_loss", tolerance: float = 0.02,
                 figure_interval: float = 60.0) -> None:
        self.law = _resolve_law(law)
        if self.law.unit not in ("tokens", "examples"):
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

    @property
    def state_key(self) -> str:
        return self._state_key

    def _counter(self, trainer: Any) -> Any:
        counter = _common.find_callback(trainer, "EffectiveEpochsBase")
        if counter is None:
            raise ValueError("DataLimitGap needs the EffectiveEpochs callback in Trainer(callbacks=[...]) to count "
                             "the distinct data seen")
        return counter

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        from ..dashboard import ensure_layout

        counter = self._counter(trainer)
        if counter.unit != self.law.unit:
            raise ValueError(f"DataLimitGap: the law counts {self.law.unit} but EffectiveEpochs counts {counter.unit}; "
                             + ("give EffectiveEpochs tokens_per_example=... or count_tokens=..." if self.law.unit == "tokens"
                                else "use an L(D) law fitted in tokens, or count examples"))
        ensure_layout(trainer)

    def data_floor(self, trainer: Any) -> float | None:
        """L(D_seen) now (collective), or None before any data or without a dataset size."""
        c = self._counter(trainer).counts(trainer)
        if c.distinct_seen is None or not c.distinct_seen > 0:
            return None
        return float(self.law(c.distinct_seen))

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if getattr(trainer, "sanity_checking", False):
            return
        c = self._counter(trainer).counts(trainer)
        value = trainer.callback_metrics.get(self.monitor)
        if value is None or c.distinct_seen is None or not c.distinct_seen > 0:
            return
        (loss,) = _common.reduce_sum(trainer, [value])
        loss /= _common.world_size(trainer)
        if not math.isfinite(loss):
            return
        ld = float(self.law(c.distinct_seen))
        p = _common.PREFIX
        _common.log_scalars(trainer, {f"{p}ld_loss": ld, f"{p}ld_gap": loss - ld, f"{p}ld_ratio": loss / ld,
                                      f"{p}monitored_loss": loss}, c.step)
        _common.log_scalars(trainer, {f"{p}loss_vs_examples": loss}, int(c.seen))
        self.history.append((float(c.seen), loss))
        from ..dashboard import add_figure, data_limit_figure

        seen, losses = zip(*self.history)
        add_figure(trainer, self, f"{p}loss_vs_data", lambda: data_limit_figure(seen, losses, self.law, unit=c.unit),
                   c.step, self.figure_interval)
        if self.data_limited_at is None and loss - ld <= self.tolerance * ld:
            self.data_limited_at = c.step
            _common.rank_zero_info(trainer, f"DataLimitGap: at step {c.step} {self.monitor} {loss:.4f} is within "
                                            f"{self.tolerance:.0%} of L(D) = {ld:.4f} for the {c.distinct_seen:.4g} "
                                            f"distinct {c.unit} seen: the run is data-limited, more data now beats "
                                            "a bigger model")

    def state_dict(self) -> dict[str, Any]:
        return {"data_limited_at": self.data_limited_at, "history": [list(h) for h in self.history]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.data_limited_at = state["data_limited_at"]
        self.history = [(float(a), float(b)) for a, b in state.get("history", [])]
