"""Reading finished runs: TensorBoard event directories and ``CSVLogger`` ``metrics.csv`` files.

Event files are read with tensorboard's own reader (``EventAccumulator``, and ``EventFileLoader`` to tell
a corrupt file from an empty run); ``metrics.csv`` with the standard ``csv`` module. Hyperparameters come
from the ``hparams.yaml`` both Lightning loggers write beside their metrics, or from a ``config.json``
beside ``metrics.csv`` (the recorded corpus, ``lightning_scaling/data/curves``).

Nothing here imports Lightning. A run that cannot be read raises :class:`RunError` naming the run and the
reason; :func:`read_runs` collects those and goes on with the other runs.

A run resumed from a checkpoint into the same log directory writes the steps after the checkpoint again: the
readers keep, per step, the value written last, and drop what the first session wrote after the step the resumed
one went back to (:attr:`Run.restarts` records those steps). A run logged by a TensorBoardLogger and a CSVLogger
at once is one run: in one folder the event files are read; in two folders (loggers with different names) the
CSV copy is recognised by its values and read once (:func:`read_runs`, :attr:`Run.also_logged_at`).

The run-info file the callbacks write beside the logs (:mod:`lightning_scaling.run_info`) is read too
(:attr:`Run.info`): N and the dataset size when the hyperparameters do not hold them, and the stopping rule's
options and outcome for replays.

One point per run (:func:`run_point`) is what the ``fit`` subcommand fits:

- loss: the best (lowest) or the final finite value of the monitored metric (default ``val_loss``);
- parameters N: the hyperparameter ``n_params`` (the key is an option: log it with
  ``self.save_hyperparameters()`` or ``logger.log_hyperparameters({"n_params": ...})``), else the run-info
  file's ``model.n_params``;
- distinct data seen: ``scaling/distinct_seen`` (EffectiveEpochs) at the loss's step, in tokens when the
  run logged ``scaling/tokens_seen``, otherwise in examples. Without the tag, min(data seen, dataset size):
  data seen from ``scaling/tokens_seen``/``examples_seen`` or the hyperparameter ``tokens_per_step`` (the
  corpus), the dataset size from the hyperparameters ``train_tokens``/``dataset_size``, else the run-info
  file's ``data.dataset_size``, else ``scaling/dataset_size`` (:meth:`Run.dataset_size`);
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

from . import run_info
from .tags import tag


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
    """A finished run: every logged scalar series, the hyperparameters and the run-info sections.

    Attributes:
        name, path: the run's folder.
        kind: "tensorboard" or "csv".
        series: tag -> :class:`Series`, one value per step (the value written last).
        hparams: ``hparams.yaml`` / ``config.json``.
        info: the run-info sections (:func:`lightning_scaling.run_info.read`), ``{}`` without the file.
        restarts: tag -> the steps at which a later session (a resume) went back and wrote the series again.
        also_logged_at: folders of other loggers' copies of this run, read as this one (:func:`read_runs`).
    """

    name: str
    path: Path
    kind: str  # "tensorboard" or "csv"
    series: dict[str, Series]
    hparams: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    restarts: dict[str, list[int]] = field(default_factory=dict)
    also_logged_at: list[str] = field(default_factory=list)

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
        return "tokens" if (tag("tokens_seen")) in self.series or "tokens_per_step" in self.hparams else "examples"

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

    def n_params(self, key: str = "n_params") -> float | None:
        """N: the hyperparameter ``key`` when logged (a finite number > 0), else the run-info file's
        ``model.n_params`` (written by the callbacks), else None."""
        for value in (self.hparams.get(key), self.info.get("model", {}).get("n_params")):
            if _positive_number(value):
                return float(value)
        return None

    def dataset_size(self) -> float | None:
        """D in :attr:`unit`: the hyperparameters ``train_tokens``/``dataset_size``, else the run-info file's
        ``data.dataset_size`` (when its unit is the run's), else the last ``scaling/dataset_size``, else None."""
        data = self.info.get("data", {})
        logged = self.get(tag("dataset_size"))
        candidates = [self.hparams.get("train_tokens", self.hparams.get("dataset_size")),
                      data.get("dataset_size") if data.get("unit", self.unit) == self.unit else None,
                      None if logged is None or logged.values.size == 0 else logged.values[-1]]
        return next((float(v) for v in candidates if _positive_number(v)), None)

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
    flops_source: str | None  # tag("flops"), "6N" or None


def _positive_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


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
    found = sorted({p.parent for p in path.rglob("events.out.tfevents.*")}
                   | {p.parent for p in path.rglob("metrics.csv")})
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
        pairs = _read_events(folder if path.is_dir() else path, events)
        kind = "tensorboard"
    elif csv_file.is_file():
        pairs = _read_csv(csv_file)
        kind = "csv"
    else:
        raise RunError(path, "holds no TensorBoard event files and no metrics.csv")
    series, restarts = {}, {}
    for tag, written in pairs.items():
        series[tag], back = _last_written(written)
        if back:
            restarts[tag] = back
    try:
        info = run_info.read(folder)
    except ValueError as err:
        raise RunError(folder, f"{err}; fix or delete the file (it only holds what the callbacks recorded)") from None
    return Run(str(folder), folder, kind, series, read_hparams(folder), info, restarts)


def _last_written(pairs: list[tuple[int, float]]) -> tuple[Series, list[int]]:
    """One series from its points in the order written: per step the value written last.

    A step lower than the one before means a later session (a run resumed from a checkpoint) went back there:
    what the earlier session wrote at that step and after is replaced by the later session's points, and is
    dropped where the later session did not reach it. Returns the series and the steps the sessions went back to.

    Example:
        >>> s, back = _last_written([(10, 1.0), (20, 0.9), (30, 0.8), (20, 0.95), (30, 0.85)])
        >>> s.steps.tolist(), s.values.tolist(), back
        ([10, 20, 30], [1.0, 0.95, 0.85], [20])
    """
    kept: list[tuple[int, float]] = []
    back: list[int] = []
    for step, value in pairs:
        if kept and step < kept[-1][0]:
            back.append(int(step))
        while kept and kept[-1][0] >= step:
            kept.pop()
        kept.append((step, value))
    return Series(np.array([s for s, _ in kept], dtype=np.int64), np.array([v for _, v in kept], dtype=float)), back


def _read_events(source: Path, files: list[Path]) -> dict[str, list[tuple[int, float]]]:
    """Every scalar event of ``source``, per tag in the order written (by the events' wall time).

    tensorboard's own purge of orphaned data only acts on a TensorFlow SessionLog.START, which torch's writer never
    writes, so it is off here and :func:`_last_written` resolves a resume instead."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(source), size_guidance={"scalars": 0}, purge_orphaned_data=False)
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
    # by the time written (stable): a resumed session's file follows the first one's whatever the names' order
    return {tag: [(int(e.step), float(e.value)) for e in sorted(acc.Scalars(tag), key=lambda e: e.wall_time)]
            for tag in tags}


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


def _read_csv(path: Path) -> dict[str, list[tuple[int, float]]]:
    """Every value of a ``metrics.csv``, per column in the order written (rows without a step are left out)."""
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
    return columns


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
    """Read every run found at ``paths``, each once; runs that fail are returned as errors, the others still read.

    A folder found twice (two of ``paths`` lead to it) is read once. A CSVLogger copy of a TensorBoard run (one
    trainer with both loggers under different names) is read once, from the event files: it is recognised by
    :func:`same_run`, and its folder is added to the TensorBoard run's :attr:`Run.also_logged_at`. An unexpected
    error while reading a run becomes a :class:`RunError` naming it.

    Example:
        >>> runs, errors = read_runs(["runs/"])  # doctest: +SKIP
        >>> [r.name for r in runs], [str(e) for e in errors]  # doctest: +SKIP
    """
    runs: list[Run] = []
    errors: list[RunError] = []
    seen: set[Path] = set()
    for path in paths:
        try:
            found = find_runs(path)
        except RunError as err:
            errors.append(err)
            continue
        for run_path in found:
            key = (run_path.parent if run_path.is_file() else run_path).resolve()
            if key in seen:
                continue
            seen.add(key)
            try:
                runs.append(read_run(run_path))
            except RunError as err:
                errors.append(err)
            except Exception as err:  # noqa: BLE001 - one unreadable run must not hide the others
                errors.append(RunError(run_path, f"cannot be read ({type(err).__name__}: {err})"))
    return _merge_copies(runs), errors


def same_run(a: Run, b: Run) -> bool:
    """Whether ``a`` and ``b`` are one run written by two loggers: the same hyperparameters, and at every step both
    logged, the same value of every scalar both logged (to float32 precision, what TensorBoard stores), with at
    least one loss (a tag with "loss" in its name) among them. Counters alone (examples seen, FLOPs, the epoch)
    are the same for every run of one configuration, so they do not make two runs one.

    Example:
        >>> s = Series(np.array([10, 20]), np.array([1.5, 1.2]))
        >>> same_run(Run("a", Path("a"), "tensorboard", {"val_loss": s}), Run("b", Path("b"), "csv", {"val_loss": s}))
        True
    """
    if a.hparams != b.hparams:
        return False
    loss_agrees = False
    for name in a.series.keys() & b.series.keys():
        sa, sb = a.series[name], b.series[name]
        _, ia, ib = np.intersect1d(sa.steps, sb.steps, return_indices=True)
        if ia.size == 0:
            continue
        if not np.allclose(sa.values[ia], sb.values[ib], rtol=1e-6, atol=0.0, equal_nan=True):
            return False
        loss_agrees = loss_agrees or "loss" in name.lower()
    return loss_agrees


def _merge_copies(runs: list[Run]) -> list[Run]:
    """``runs`` without the CSV runs that are a TensorBoard run's copy (:func:`same_run`), named in its
    :attr:`Run.also_logged_at`."""
    event_runs = [r for r in runs if r.kind == "tensorboard"]
    kept = []
    for run in runs:
        original = None if run.kind != "csv" else next((r for r in event_runs if same_run(r, run)), None)
        if original is None:
            kept.append(run)
        else:
            original.also_logged_at.append(run.name)
    return kept


# ------------------------------------------------------------------------------------------------ points
def tokens_seen(run: Run, step: float) -> float | None:
    """Tokens (or examples) processed by ``step``: ``scaling/tokens_seen`` / ``examples_seen``, or the config."""
    for name in (tag("tokens_seen"), tag("examples_seen")):
        s = run.get(name)
        if s is not None:
            return s.at(step)
    per_step = run.hparams.get("tokens_per_step")
    return float(step) * float(per_step) if per_step else None


def distinct_seen(run: Run, step: float) -> float | None:
    """Distinct data seen by ``step``: ``scaling/distinct_seen``, or min(data seen, :meth:`Run.dataset_size`)."""
    s = run.get(tag("distinct_seen"))
    if s is not None:
        return s.at(step)
    size = run.dataset_size()
    seen = tokens_seen(run, step)
    if size and seen is not None:
        return min(seen, size)
    return None


def flops_at(run: Run, step: float, n_params: float | None) -> tuple[float | None, str | None]:
    """Cumulative FLOPs by ``step``: ``scaling/flops``, else 6 N x tokens seen ([K] 2.1), else None."""
    s = run.get(tag("flops"))
    if s is not None:
        return s.at(step), tag("flops")
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
    n_params = run.n_params(params_key)
    flops, source = flops_at(run, step, n_params)
    return RunPoint(run.name, float(s.values[i]), step, n_params, distinct_seen(run, step), run.unit, flops, source)
