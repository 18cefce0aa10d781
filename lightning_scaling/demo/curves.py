"""The recorded corpus of real learning curves (``lightning_scaling/data/curves``), replayable in milliseconds.

Each run folder holds ``metrics.csv`` as Lightning's ``CSVLogger`` writes it (``train_loss`` and ``lr``
every optimizer step, ``val_loss`` with ``optimizer_steps`` at each validation) and ``config.json``
beside it. ``scripts/record_curves.py`` regenerates them. Pure: numpy and the standard library only.

"Converged loss" of a recorded run is defined here, once: :func:`converged_loss`.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

CURVES_DIR = Path(__file__).resolve().parent.parent / "data" / "curves"
#: The out-of-sample runs (``scripts/record_curves.py --holdout``), recorded after the rule's options were chosen.
HOLDOUT_DIR = CURVES_DIR.parent / "curves_holdout"
#: The out-of-sample runs with training and validation text drawn from the same pool
#: (``scripts/record_curves.py --spread``; :func:`lightning_scaling.demo.data.split`, layout "spread").
SPREAD_DIR = CURVES_DIR.parent / "curves_spread"
#: Four of the spread runs again with seeds 1 and 2 (``scripts/record_curves.py --seeds``): the same data.
SEEDS_DIR = CURVES_DIR.parent / "curves_seeds"

#: Number of consecutive validations averaged by :func:`smooth` (centred, odd).
SMOOTHING = 3


@dataclass(frozen=True)
class RecordedCurve:
    """One recorded run.

    Attributes:
        name: the run's folder name.
        config: its ``config.json`` (model, data, schedule, ``n_params``, ``train_tokens``, ...).
        steps: optimizer steps completed at each validation.
        val_loss: validation loss at those steps.
        train_loss: training loss of optimizer step i + 1 at index i (every step).
        lr: learning rate used by optimizer step i + 1 at index i (every step).
        path: the run's folder.
    """

    name: str
    config: dict[str, Any]
    steps: np.ndarray
    val_loss: np.ndarray
    train_loss: np.ndarray
    lr: np.ndarray
    path: Path | None = field(default=None, compare=False)

    @property
    def n_params(self) -> int:
        return int(self.config["n_params"])

    @property
    def train_tokens(self) -> int:
        """D: the distinct training tokens (bytes) of the run."""
        return int(self.config["train_tokens"])

    @property
    def tokens(self) -> np.ndarray:
        """Tokens processed at each validation (steps x batch x context)."""
        return self.steps * int(self.config["tokens_per_step"])

    @property
    def epochs(self) -> np.ndarray:
        """E/D at each validation (E counted in whole batches, as the loader drops the last short one)."""
        return self.steps / int(self.config["steps_per_epoch"])

    @property
    def lr_sum(self) -> np.ndarray:
        """The summed learning rate over the optimizer steps before each validation ([T] S1)."""
        cumulative = np.concatenate([[0.0], np.cumsum(self.lr)])
        return cumulative[np.minimum(self.steps, self.lr.size)]

    @property
    def smoothed_val_loss(self) -> np.ndarray:
        return smooth(self.val_loss)


def smooth(values: np.ndarray, window: int = SMOOTHING) -> np.ndarray:
    """Centred moving average over ``window`` consecutive points (fewer at the two ends).

    Centred rather than causal: a finished run may look ahead, and a causal average would lag behind a
    curve that turns up quickly (the data-limited runs) and overstate its minimum.
    """
    if window < 1 or window % 2 == 0:
        raise ValueError("window must be an odd number >= 1")
    v = np.asarray(values, dtype=float)
    half = window // 2
    return np.array([v[max(0, i - half): i + half + 1].mean() for i in range(v.size)])


def converged_loss(curve: RecordedCurve, window: int = SMOOTHING) -> float:
    """The converged loss of a recorded run: the lowest smoothed validation loss it reaches.

    Smoothing is :func:`smooth`, a centred moving average of 3 consecutive validations (75 steps in the
    corpus), so one lucky evaluation does not set it. For a data-limited run whose
    validation loss turns up this is the bottom before the turn; for a run cut at ``max_steps`` it is an
    upper bound of the true converged loss ([K] L(N, S -> inf), section 5).
    """
    return float(np.min(smooth(curve.val_loss, window)))


def converged_step(curve: RecordedCurve, window: int = SMOOTHING) -> int:
    """The optimizer step at which :func:`converged_loss` is reached."""
    return int(curve.steps[int(np.argmin(smooth(curve.val_loss, window)))])


def load_curve(path: str | Path) -> RecordedCurve:
    """Read a run folder (``metrics.csv`` and ``config.json``) or a ``metrics.csv`` with a config beside it."""
    folder = Path(path)
    if folder.is_file():
        folder = folder.parent
    config_path, metrics_path = folder / "config.json", folder / "metrics.csv"
    for p in (config_path, metrics_path):
        if not p.is_file():
            raise FileNotFoundError(f"{p} is missing: a recorded run needs metrics.csv with config.json beside it")
    config = json.loads(config_path.read_text())
    steps, val, train, lr = [], [], {}, {}
    with metrics_path.open(newline="") as f:
        for row in csv.DictReader(f):
            if row.get("val_loss"):
                steps.append(int(float(row["optimizer_steps"])) if row.get("optimizer_steps")
                             else int(row["step"]) + 1)
                val.append(float(row["val_loss"]))
            if row.get("train_loss"):
                train[int(row["step"])] = float(row["train_loss"])
            if row.get("lr"):
                lr[int(row["step"])] = float(row["lr"])
    n = max(lr) + 1 if lr else 0
    return RecordedCurve(
        name=folder.name, config=config, steps=np.asarray(steps, dtype=np.int64), val_loss=np.asarray(val),
        train_loss=np.asarray([train.get(i, math.nan) for i in range(n)]),
        lr=np.asarray([lr.get(i, math.nan) for i in range(n)]), path=folder)


def list_curves(root: str | Path = CURVES_DIR) -> list[Path]:
    """The run folders under ``root`` (those with a ``config.json``), sorted by name."""
    return sorted(p.parent for p in Path(root).glob("*/config.json"))


def load_curves(root: str | Path = CURVES_DIR, **match: Any) -> list[RecordedCurve]:
    """Load every recorded run under ``root`` whose config matches ``match`` (e.g. ``schedule="constant"``)."""
    curves = [load_curve(p) for p in list_curves(root)]
    return [c for c in curves if all(c.config.get(k) == v for k, v in match.items())]
