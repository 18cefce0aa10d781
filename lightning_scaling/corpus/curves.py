"""The recorded corpus of real learning curves (``lightning_scaling/data/curves``), replayable in milliseconds.

Each run folder holds ``metrics.csv`` as Lightning's ``CSVLogger`` writes it (``train_loss`` and ``lr``
every optimizer step, ``val_loss`` with ``optimizer_steps`` at each validation) and ``config.json``
beside it. ``scripts/record_curves.py`` regenerates them. Pure: numpy and the standard library only.

The corpora are benchmark data: they live in the repository, not in the installed package (a wheel ships only
``data/*.json``), and the loaders raise FileNotFoundError on a folder that does not exist.

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
#: Held out from everything (``scripts/record_digits.py``): MLPs and a CNN on handwritten digits, other training code.
DIGITS_DIR = CURVES_DIR.parent / "curves_digits"
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


def _corpus_folder(root: str | Path) -> Path:
    """``root`` as a Path; FileNotFoundError if it does not exist (a glob of a missing folder would find nothing)."""
    folder = Path(root)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{folder} does not exist: the recorded corpora (data/curves, curves_holdout, curves_spread, curves_seeds, "
            "curves_digits, curves_luo) live in the lightning-scaling repository, not in the installed package; run from a "
            "checkout of the repository or pass the folder of recorded runs")
    return folder


def list_curves(root: str | Path = CURVES_DIR) -> list[Path]:
    """The run folders under ``root`` (those with a ``config.json``), sorted by name.

    Raises:
        FileNotFoundError: ``root`` does not exist (an installed package has no recorded corpora).
    """
    return sorted(p.parent for p in _corpus_folder(root).glob("*/config.json"))


def load_curves(root: str | Path = CURVES_DIR, **match: Any) -> list[RecordedCurve]:
    """Load every recorded run under ``root`` whose config matches ``match`` (e.g. ``schedule="constant"``).

    Raises:
        FileNotFoundError: ``root`` does not exist (an installed package has no recorded corpora).
    """
    curves = [load_curve(p) for p in list_curves(root)]
    return [c for c in curves if all(c.config.get(k) == v for k, v in match.items())]


#: Luo et al. 2025's GPU language-model loss curves (``data/curves_luo``, MIT licence): read by
#: :func:`load_luo_curves`, never by :func:`load_curves` (their layout is the authors' CSVs, not run folders).
LUO_DIR = CURVES_DIR.parent / "curves_luo"
#: The authors' fitted L0 (the multi-power law's loss at infinite summed learning rate) per model: the reference
#: asymptote of those runs, which never converge.
LUO_L0 = {"25M": 3.040, "100M": 2.651}
#: Their linear warm-up (optimizer steps) and peak learning rate, shared by every schedule.
LUO_WARMUP_STEPS = 2160
LUO_PEAK_LR = 3e-4


def luo_lr(steps: np.ndarray, lr: np.ndarray, last_step: int) -> np.ndarray:
    """The learning rate of every optimizer step 1..``last_step`` (index i = step i + 1) of one of Luo et al.'s runs.

    The warm-up is the authors' ``np.linspace(0, 3e-4, 2160)`` over steps 1..2160; after it, the CSV's ``lr`` column
    (``lr`` at ``steps``) is interpolated linearly between its rows and held at the first row's value before it.

    Args:
        steps: the CSV's ``step`` column (ascending).
        lr: its ``lr`` column.
        last_step: the last optimizer step to reconstruct.

    Example:
        >>> luo_lr(np.array([2176, 2304]), np.array([3e-4, 3e-4]), 2304)[[0, 2159, 2303]].tolist()
        [0.0, 0.0003, 0.0003]
    """
    warm = min(LUO_WARMUP_STEPS, last_step)
    after = np.arange(LUO_WARMUP_STEPS + 1, last_step + 1)
    return np.concatenate([np.linspace(0.0, LUO_PEAK_LR, LUO_WARMUP_STEPS)[:warm],
                           np.interp(after, steps, lr)])


def load_luo_curve(path: str | Path) -> RecordedCurve:
    """Read one of Luo et al.'s CSVs (``step,lr,loss``; folder ``csv_25`` or ``csv_100``) as a :class:`RecordedCurve`.

    ``steps`` and ``val_loss`` are the CSV's rows (a single-epoch stream: the training loss is the validation
    loss); ``train_loss`` holds that loss at the logged steps and NaN at the others; ``lr`` is :func:`luo_lr`. The
    config says ``source="luo2025"``, ``model`` ("25M"/"100M"), ``n_params`` (the authors' nominal size, not a
    count: ``n_params_nominal=True``), ``schedule`` (the file stem), ``lr_schedule`` (its kind: "constant",
    "cosine", "wsd", "wsdld", "wsdcon"), ``steps`` (the last step), ``warmup_steps``, ``reference_loss`` (the
    authors' L0, :data:`LUO_L0`) and ``converged=False``.

    Args:
        path: the CSV file.

    Example:
        >>> load_luo_curve(LUO_DIR / "csv_25" / "constant_24000.csv").config["reference_loss"]
        3.04
    """
    path = Path(path)
    model = f"{path.parent.name.removeprefix('csv_')}M"
    if model not in LUO_L0:
        raise ValueError(f"{path}: expected a file under csv_25/ or csv_100/ (models {sorted(LUO_L0)})")
    table = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    steps, lr, loss = table[:, 0].astype(np.int64), table[:, 1], table[:, 2]
    last = int(steps[-1])
    train = np.full(last, math.nan)
    train[steps - 1] = loss
    stem = path.stem
    config = {"source": "luo2025", "name": f"{model}_{stem}", "model": model,
              "n_params": int(float(model[:-1]) * 1e6), "n_params_nominal": True, "schedule": stem,
              "lr_schedule": stem.split("_")[0], "steps": last, "warmup_steps": LUO_WARMUP_STEPS,
              "peak_lr": LUO_PEAK_LR, "reference_loss": LUO_L0[model], "converged": False, "ended_by": "max_steps",
              "file": f"{path.parent.name}/{path.name}"}
    return RecordedCurve(name=config["name"], config=config, steps=steps, val_loss=loss, train_loss=train,
                         lr=luo_lr(steps, lr, last), path=path)


def load_luo_curves(root: str | Path = LUO_DIR, **match: Any) -> list[RecordedCurve]:
    """Load every Luo et al. curve under ``root`` (``csv_25/*.csv``, ``csv_100/*.csv``) whose config matches ``match``.

    Args:
        root: the folder holding ``csv_25`` and ``csv_100``.
        **match: config values to keep, e.g. ``model="25M"`` or ``lr_schedule="cosine"``.

    Raises:
        FileNotFoundError: ``root`` does not exist (an installed package has no recorded corpora).

    Example:
        >>> [c.name for c in load_luo_curves(model="100M", lr_schedule="constant")]
        ['100M_constant_24000', '100M_constant_72000']
    """
    files = sorted(_corpus_folder(root).glob("csv_*/*.csv"),
                   key=lambda p: (int(p.parent.name.removeprefix("csv_")), p.name))
    curves = [load_luo_curve(p) for p in files]
    return [c for c in curves if all(c.config.get(k) == v for k, v in match.items())]
