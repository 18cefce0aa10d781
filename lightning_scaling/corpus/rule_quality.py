"""How good is the stopping rule on a recorded run: its predictions, its stop and its compute.

For one recorded curve (:mod:`lightning_scaling.corpus.curves`) and one set of :class:`StoppingRule` options,
:func:`evaluate` replays the run through :func:`lightning_scaling.replay` -- exactly the live callback's
decisions -- and measures:

* the relative error of the predicted converged loss at 10, 20, 30 and 50% of the steps to the run's
  converged point (:func:`~lightning_scaling.corpus.curves.converged_step`) and at the stop;
* the stop quality: the smoothed loss known at the stop (the mean of the last two evaluations: no
  look-ahead) over the converged loss (target: the threshold, 1.1);
* the compute used: the stop step against the run's full length and against Lightning's own
  ``EarlyStopping`` (patience-based) replayed on the same points.

:func:`naive_errors` gives the baseline: a plain three-parameter power law in steps fitted to the points
after warm-up (no floor, no window, no stability test). Pure: no Lightning import except in
:func:`early_stopping_step`, which replays the run through a ``Trainer`` with Lightning's ``EarlyStopping``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import FitError
from ..fitting import fit_learning_curve
from ..laws import PowerLaw
from ..stopping import replay, rule_arguments
from .curves import RecordedCurve, converged_loss, converged_step

#: Fractions of the steps to the converged point at which predictions are scored.
FRACTIONS = (0.1, 0.2, 0.3, 0.5)


@dataclass
class RunQuality:
    """The rule on one recorded run."""

    run: str
    schedule: str
    converged_loss: float
    converged_step: int
    full_steps: int
    errors: dict[float, float | None]  # fraction -> predicted / converged - 1 (None: no prediction yet)
    stopped_step: int | None
    stop_error: float | None  # prediction at the stop / converged - 1
    stop_ratio: float | None  # smoothed loss at the stop / converged
    data_limited: bool  # the rule reported the run data-limited before it could stop
    options: dict[str, Any] = field(default_factory=dict, repr=False)
    stop_floor_error: float | None = None  # the floor handed to the rule at the stop / converged - 1 (None: no floor)
    stopped_on_floor: bool = False  # the prediction at the stop was the floor itself (every family held there)

    @property
    def steps_fraction(self) -> float | None:
        """Steps used at the stop over the steps to the converged point."""
        return None if self.stopped_step is None else self.stopped_step / self.converged_step


def time_axis(curve: RecordedCurve) -> dict[str, Any]:
    """The replay arguments for the run's time axis: steps at a constant LR, else the summed LR ([T])."""
    return {} if curve.config.get("schedule", "constant") == "constant" else {"lr": curve.lr}


def data_floor(curve: RecordedCurve, law: PowerLaw) -> list[float]:
    """L(D) at the distinct tokens seen by each evaluation (the floor DataLimitGap hands the rule)."""
    seen = np.minimum(curve.tokens, curve.train_tokens)
    return [float(law(max(float(s), 1.0))) for s in seen]


def evaluate(curve: RecordedCurve, *, floor_law: PowerLaw | None = None, **rule_options: Any) -> RunQuality:
    """Replay ``curve`` through the rule with ``rule_options`` (flat: a StopConfig field by its name) and score it
    (see the module docstring)."""
    conv, cstep = converged_loss(curve), converged_step(curve)
    rule_options.setdefault("calibration", False)  # the point rule unless told: the calibrated stop has its own bench
    floor = data_floor(curve, floor_law) if floor_law is not None else None
    result = replay(curve.steps, curve.val_loss, floor=floor, **time_axis(curve), **rule_arguments(rule_options))
    errors: dict[float, float | None] = {}
    for frac in FRACTIONS:
        upto = [d for d in result.decisions if d.step <= frac * cstep]
        pred = next((d.converged_loss for d in reversed(upto) if d.converged_loss is not None), None)
        errors[frac] = None if pred is None else pred / conv - 1
    stop_error = stop_ratio = floor_error = None
    on_floor = False
    if result.stopped_step is not None:
        stop_error = None if result.converged_loss is None else result.converged_loss / conv - 1
        known = curve.val_loss[: result.stop_index + 1]
        stop_ratio = float(np.mean(known[-2:]) / conv)
        if floor is not None:
            at_stop = floor[result.stop_index]
            floor_error = at_stop / conv - 1
            on_floor = result.converged_loss is not None and abs(result.converged_loss - at_stop) <= 1e-9 * at_stop
    limited = any(d.data_limited for d in result.decisions) and result.stopped_step is None
    return RunQuality(curve.name, curve.config.get("schedule", "constant"), conv, cstep, int(curve.config["steps"]),
                      errors, result.stopped_step, stop_error, stop_ratio, limited, dict(rule_options), floor_error,
                      on_floor)


def naive_errors(curve: RecordedCurve, warmup_steps: int = 100) -> dict[float, float | None]:
    """The baseline: ``L = L_conv + (S_c/S)^alpha`` in steps on every point after warm-up, at each fraction."""
    conv, cstep = converged_loss(curve), converged_step(curve)
    out: dict[float, float | None] = {}
    for frac in FRACTIONS:
        keep = (curve.steps > warmup_steps) & (curve.steps <= frac * cstep)
        try:
            fit = fit_learning_curve(curve.steps[keep], curve.val_loss[keep])
            out[frac] = fit.converged_loss / conv - 1 if math.isfinite(fit.converged_loss) else None
        except (FitError, ValueError):
            out[frac] = None
    return out


def early_stopping_step(curve: RecordedCurve, patience: int = 10, min_delta: float = 0.002) -> int:
    """The step at which Lightning's ``EarlyStopping(patience, min_delta)`` stops on the run's ``val_loss``.

    Replays the recorded losses through a real ``Trainer`` (CPU, one optimizer step and one validation per
    recorded point, a model that does nothing) with Lightning's ``EarlyStopping`` as its callback: Lightning's
    own decision through its public interface. The run's last step when it never stops.
    """
    import logging
    import warnings

    import pytorch_lightning as pl
    import torch
    from pytorch_lightning.callbacks import EarlyStopping

    class _Replay(pl.LightningModule):
        """Logs the recorded ``val_loss`` of the next point at each validation."""

        def __init__(self, values: np.ndarray) -> None:
            super().__init__()
            self.values, self.seen = values, 0
            self.weight = torch.nn.Parameter(torch.zeros(1))

        def training_step(self, batch, batch_idx):
            return (self.weight * 0.0).sum()

        def validation_step(self, batch, batch_idx):
            self.log("val_loss", float(self.values[self.seen]))
            self.seen += 1

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.0)

    values = np.asarray(curve.val_loss, dtype=float)
    points = torch.utils.data.DataLoader([torch.zeros(1)] * values.size)
    model = _Replay(values)
    early = EarlyStopping(monitor="val_loss", patience=patience, min_delta=min_delta, mode="min",
                          check_on_train_epoch_end=False)  # at each validation, not at the end of the one epoch
    quiet = [logging.getLogger(name) for name in ("pytorch_lightning", "lightning_fabric")]
    levels = [q.level for q in quiet]
    for q in quiet:
        q.setLevel(logging.ERROR)  # the Trainer's banner, once per replayed run
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the do-nothing model's dataloader and logging warnings
            trainer = pl.Trainer(accelerator="cpu", max_steps=values.size, val_check_interval=1,
                                 num_sanity_val_steps=0, callbacks=[early], logger=False, enable_checkpointing=False,
                                 enable_progress_bar=False, enable_model_summary=False)
            trainer.fit(model, points, torch.utils.data.DataLoader([torch.zeros(1)]))
    finally:
        for q, level in zip(quiet, levels):
            q.setLevel(level)
    return int(curve.steps[model.seen - 1]) if trainer.should_stop else int(curve.config["steps"])


def loss_at(curve: RecordedCurve, step: int) -> float:
    """The smoothed validation loss known at ``step`` (mean of the last two evaluations up to it)."""
    known = curve.val_loss[curve.steps <= step]
    return float(np.mean(known[-2:])) if known.size else float("nan")


__all__ = ["FRACTIONS", "RunQuality", "evaluate", "naive_errors", "early_stopping_step", "loss_at", "time_axis",
           "data_floor"]
