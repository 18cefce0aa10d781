"""Reading finished runs: TensorBoard event directories and ``CSVLogger`` ``metrics.csv`` files.

Event files are read with tensorboard's own reader (``EventAccumulator``, and ``EventFileLoader`` to tell
a corrupt file from an empty run); ``metrics.csv`` with the standard ``csv`` module. Hyperparameters come
from the ``hparams.yaml`` both Lightning loggers write beside their metrics, or from a ``config.json``
beside ``metrics.csv`` (the recorded corpus, ``lightning_scaling/data/curves``).

Nothing here imports Lightning. A run that cannot be read raises :class:`RunError` naming the run and the
reason; :func:`read_runs` collects those and goes on with the other runs.

One point per run (:func:`run_point`) is what the ``fit`` subcommand fits:

- loss: the best (lowest) or the final finite value of the monitored metric (default ``val_loss``);
- parameters N: the hyperparameter ``n_params`` (the key is an option: log it with
  ``self.save_hyperparameters()`` or ``logger.log_hyperparameters({"n_params": ...})``);
- distinct data seen: ``scaling/distinct_seen`` (EffectiveEpochs) at the loss's step, in tokens when the
  run logged ``scaling/tokens_seen``, otherwise in examples. Without the tag, from the hyperparameters
  ``train_tokens`` and ``tokens_per_step`` (the corpus): min(step x tokens_per_step, train_tokens);
- FLOPs: ``scaling/flops`` (FlopCounter) at that step; without the tag, 6 N x tokens seen ([K] 2.1),
  marked ``flops_source="6N"``.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

P = "scaling/"


class RunError(ValueError):
    """A run that cannot be used, with the path and the reason (printed as one line)."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass
class Series:
    """One logged scalar: the steps and the values, in the order logged (steps ascending)."""

    steps: np.ndarray
    values: np.ndarray

    def at(self, step: float) -> float:
        """The value at ``step``, interpolated linearly between logged steps (clamped at the ends)."""
        return float(np.interp(step, self.steps, self.values))


@dataclass
class Run:
    """A finished run: every logged scalar series and the hyperparameters."""

    name: str
    path: Path
    kind: str  # "tensorboard" or "csv"
    series: dict[str, Series]
    hparams: dict[str, Any] = field(default_factory=dict)

    def get(self, tag: str) -> Series | None:
        return self.series.get(tag)

    def require(self, tag: str, hint: str = "") -> Series:
        s = self.series.get(tag)
        if s is None:
            raise RunError(self.name, f"no {tag!r} series{hint}")
        return s

    @property
    def unit(self) -> str:
        """Unit of ``scaling/distinct_seen``: "tokens" when EffectiveEpochs counted tokens, else "examples"."""
        return "tokens" if (P + "tokens_seen") in self.series or "tokens_per_step" in self.hparams else "examples"

    def evaluations(self, monitor: str) -> Series:
        """The monitored metric with its steps as optimizer steps completed.

        When a CSV row also holds ``optimizer_steps`` (the recorded corpus) that count is the step;
        otherwise Lightning's logged step is used as it is.
        """
        s = self.require(monitor, f" (tags: {', '.join(sorted(self.series)[:12])})")
        counts = self.series.get("optimizer_steps")
        if counts is not None:
            lookup = dict(zip(counts.steps.tolist(), counts.values.tolist()))
            if all(int(st) in lookup for st in s.steps):
                return Series(np.array([int(lookup[int(st)]) for st in s.steps]), s.values)
        return s

    def lr_per_step(self, tag: str = "lr") -> np.ndarray | None:
        """The learning rate of every optimizer step (index i = step i + 1), when logged every step."""
        s = self.series.get(tag)
        if s is None or s.steps.size == 0 or not np.array_equal(s.steps, np.arange(s.steps.size)):
            return None
        return s.values


@dataclass
class RunPoint:
    """One run reduced to one point of a scaling law (see the module docstring for where each comes from)."""

    name: str
    loss: float
    step: int
    n_params: float | None
    data: float | None  # distinct data seen, in ``unit``
    unit: str
    flops: float | None
    flops_source: str | None  # "scaling/flops", "6N" or None


# ------------------------------------------------------------------------------------------------ finding
def _is_run_dir(path: Path) -> bool:
    return (path / "metrics.csv").is_file() or any(path.glob("events.out.tfevents.*"))


def find_runs(path: str | Path) -> list[Path]:
    """The runs at ``path``: a metrics.csv file, a run directory, or a directory of runs (searched below).

    Raises:
        RunError: the path does not exist, or holds no event files and no metrics.csv.
    """
    path = Path(path)
    if not path.exists():
        raise RunError(path, "does not exist")
    if path.is_file():
        if path.suffix == ".csv" or path.name.startswith("events.out.tfevents."):
            return [path]
        raise RunError(path, "is neither a metrics.csv nor an event file")
    if _is_run_dir(path):
        return [path]
    found = sorted({p.parent for p in path.rglob("events.out.tfevents.*")} | {p.parent for p in path.rglob("metrics.csv")})
    if not found:
        raise RunError(path, "holds no TensorBoard event files and no metrics.csv")
    return found


# ------------------------------------------------------------------------------------------------ reading
def read_run(path: str | Path) -> Run:
    """Read one run: a TensorBoard log directory (or event file), or a CSVLogger ``metrics.csv``/its directory.

    Raises:
        RunError: missing, empty or corrupt, with the reason.
    """
    path = Path(path)
    if not path.exists():
        raise RunError(path, "does not exist")
    folder = path.parent if path.is_file() else path
    csv_file = path if path.suffix == ".csv" else folder / "metrics.csv"
    events = [path] if path.name.startswith("events.out.tfevents.") else sorted(folder.glob("events.out.tfevents.*"))
    if events:
        series = _read_events(folder if path.is_dir() else path, events)
        kind = "tensorboard"
    elif csv_file.is_file():
        series = _read_csv(csv_file)
        kind = "csv"
    else:
        raise RunError(path, "holds no TensorBoard event files and no metrics.csv")
    return Run(str(folder), folder, kind, series, read_hparams(folder))


def _read_events(source: Path, files: list[Path]) -> dict[str, Series]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(source), size_guidance={"scalars": 0})
    try:
        acc.Reload()
    except Exception as err:  # tensorboard raises several kinds on damaged files
        raise RunError(source, f"cannot read the event files ({type(err).__name__}: {err})") from None
    tags = acc.Tags().get("scalars", [])
    if not tags:
        unreadable = [f.name for f in files if f.stat().st_size > 0 and _count_events(f) == 0]
        if unreadable:
            raise RunError(source, f"corrupt event file(s), no readable record: {', '.join(unreadable)}")
        raise RunError(source, "the event files hold no scalars (an empty run?)")
    out = {}
    for tag in tags:
        events = acc.Scalars(tag)
        out[tag] = Series(np.array([e.step for e in events], dtype=np.int64),
                          np.array([e.value for e in events], dtype=float))
    return out


def _count_events(path: Path) -> int:
    """Records tensorboard's own loader can read from one event file (a valid file has at least one)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    n = 0
    try:
        for _ in EventFileLoader(str(path)).Load():
            n += 1
    except Exception:
        pass
    return n


def _read_csv(path: Path) -> dict[str, Series]:
    columns: dict[str, list[tuple[int, float]]] = {}
    try:
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or "step" not in reader.fieldnames:
                raise RunError(path, "is not a CSVLogger metrics.csv (no 'step' column)")
            for row in reader:
                if not row.get("step"):
                    continue
                step = int(float(row["step"]))
                for key, value in row.items():
                    if key in ("step", None) or value in (None, ""):
                        continue
                    columns.setdefault(key, []).append((step, float(value)))
    except (UnicodeDecodeError, csv.Error) as err:
        raise RunError(path, f"cannot be parsed as CSV ({err})") from None
    except ValueError as err:
        if isinstance(err, RunError):
            raise
        raise RunError(path, f"holds a value that is not a number ({err})") from None
    if not columns:
        raise RunError(path, "holds no metrics")
    out = {}
    for key, pairs in columns.items():
        pairs.sort(key=lambda p: p[0])
        out[key] = Series(np.array([s for s, _ in pairs], dtype=np.int64), np.array([v for _, v in pairs]))
    return out


def read_hparams(folder: Path) -> dict[str, Any]:
    """``hparams.yaml`` (both Lightning loggers write it) and/or ``config.json`` beside the metrics."""
    hparams: dict[str, Any] = {}
    config = folder / "config.json"
    if config.is_file():
        try:
            hparams.update(json.loads(config.read_text()))
        except json.JSONDecodeError as err:
            raise RunError(config, f"is not valid JSON ({err})") from None
    yaml_file = folder / "hparams.yaml"
    if yaml_file.is_file():
        import yaml

        try:
            data = yaml.safe_load(yaml_file.read_text())
        except yaml.YAMLError as err:
            raise RunError(yaml_file, f"is not valid YAML ({err})") from None
        if isinstance(data, dict):
            hparams.update(data)
    return hparams


def read_runs(paths: Iterable[str | Path]) -> tuple[list[Run], list[RunError]]:
    """Read every run found at ``paths``; runs that fail are returned as errors, the others still read."""
    runs, errors = [], []
    for path in paths:
        try:
            found = find_runs(path)
        except RunError as err:
            errors.append(err)
            continue
        for run_path in found:
            try:
                runs.append(read_run(run_path))
            except RunError as err:
                errors.append(err)
    return runs, errors


# ------------------------------------------------------------------------------------------------ points
def tokens_seen(run: Run, step: float) -> float | None:
    """Tokens (or examples) processed by ``step``: ``scaling/tokens_seen`` / ``examples_seen``, or the config."""
    for tag in (P + "tokens_seen", P + "examples_seen"):
        s = run.get(tag)
        if s is not None:
            return s.at(step)
    per_step = run.hparams.get("tokens_per_step")
    return float(step) * float(per_step) if per_step else None


def distinct_seen(run: Run, step: float) -> float | None:
    """Distinct data seen by ``step``: ``scaling/distinct_seen``, or min(tokens seen, ``train_tokens``)."""
    s = run.get(P + "distinct_seen")
    if s is not None:
        return s.at(step)
    size = run.hparams.get("train_tokens", run.hparams.get("dataset_size"))
    seen = tokens_seen(run, step)
    if size and seen is not None:
        return min(seen, float(size))
    return None


def flops_at(run: Run, step: float, n_params: float | None) -> tuple[float | None, str | None]:
    """Cumulative FLOPs by ``step``: ``scaling/flops``, else 6 N x tokens seen ([K] 2.1), else None."""
    s = run.get(P + "flops")
    if s is not None:
        return s.at(step), P + "flops"
    seen = tokens_seen(run, step)
    if n_params and seen is not None and run.unit == "tokens":
        return 6.0 * float(n_params) * seen, "6N"
    return None, None


def run_point(run: Run, *, monitor: str = "val_loss", reduce: str = "best", params_key: str = "n_params") -> RunPoint:
    """Reduce a run to one point: the best or final monitored loss and N, data seen and FLOPs at that step.

    Raises:
        RunError: the run has no finite value of ``monitor``.
    """
    if reduce not in ("best", "final"):
        raise ValueError("reduce must be 'best' or 'final'")
    s = run.evaluations(monitor)
    finite = np.flatnonzero(np.isfinite(s.values))
    if finite.size == 0:
        raise RunError(run.name, f"no finite value of {monitor!r}")
    i = int(finite[np.argmin(s.values[finite])]) if reduce == "best" else int(finite[-1])
    step = int(s.steps[i])
    n = run.hparams.get(params_key)
    n_params = float(n) if isinstance(n, (int, float)) and math.isfinite(n) and n > 0 else None
    flops, source = flops_at(run, step, n_params)
    return RunPoint(run.name, float(s.values[i]), step, n_params, distinct_seen(run, step), run.unit, flops, source)
