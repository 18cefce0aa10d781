"""Sweeps: a folder of one record per run, and the joint fit of all their learning curves with shared exponents.

* The **store** is a folder of versioned JSON files, one per run (:func:`write_record`, atomic: a temporary file in
  the same folder, then ``os.replace``, so runs of one sweep on several machines sharing the folder never leave half
  a record; writing a run id again replaces its record). :class:`Sweep` reads it; a corrupt or foreign file is
  skipped with one :class:`~lightning_scaling.errors.ScalingWarning` naming it, never an error. Runs on different
  data (the ``data`` identity string) are never pooled.
* The **joint fit** (:meth:`Sweep.fit`, :func:`fit_sweep`) fits every run's learning curve at once
  (docs/science.md section 15). The default form is [K] eq 1.6 with an irreducible term, on the summed learning
  rate when it is recorded ([T]), with one free model term per model size (the sizes' converged losses need not
  lie on a power law of N: on data-limited runs they do not):

      L_i(S) = E + [u_g(i) + S_c / S]^alpha_S,   converged loss of size g: E + u_g^alpha_S,

  and, across sizes, ``u_g = (N_c / N_g)^(alpha_N / alpha_S)`` (eq 1.6 itself, fitted through the u_g) for a
  size not in the sweep. Only each run's tail is fitted (:data:`TAIL_FROM`). The alternatives: ``form="power"``
  (per-run power laws with a shared exponent and a converged loss per size, ``L_i(S) = C_g(i) + A_i S^-alpha``)
  is as accurate on the recorded sweeps but predicts fewer cases (a per-run amplitude needs more points); the strict
  eq 1.6 (``form="kaplan_strict"``, u_g on the power law) is worse on data-limited runs, whose sizes' converged losses
  are no power law of N, and recovers the exponents on a sweep that follows the law (tests/test_sweep.py;
  BENCHMARKS.md "Sweeps" measures the three forms).
* The **interval** of a converged loss is split conformal on the log-ratio ``e = log(L_ref / L_hat)``
  ([LEI] eq 2.3, the runs the exchangeable units), binned by ``g = s / L_hat - 1`` like the single-run rule's
  (:mod:`lightning_scaling.calibration`): the same machinery, with scores of *this* predictor, measured on simulated
  sweeps of the recorded runs (``benchmarks/bench_sweep.py --write-calibration`` writes :data:`CALIBRATION_PATH`).

Pure: numpy, scipy and json only; no Lightning, no torch.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import re
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .calibration import Calibration
from .errors import FitError, ScalingWarning
from .fitting import solve_from_starts
from .run_info import write_atomic
from .stopping import TRANSIENT_FACTOR, warmup_end

__all__ = ["FORMAT", "VERSION", "SweepRecord", "Sweep", "SweepFit", "write_record", "read_record",
           "record_from_curve", "record_from_rule", "as_sweep", "fit_sweep", "pooled_fit", "pooled_prediction",
           "SweepFloor", "sweep_floor", "groups_at", "FLOOR_SOURCES", "FORMS", "pooled_calibration"]

#: The ``format`` key of a record file.
FORMAT = "lightning-scaling/sweep-record"
#: The record format's version (the ``version`` key).
VERSION = 1
#: The joint forms :func:`fit_sweep` takes (the first is the default; BENCHMARKS.md "Sweeps" measures them).
FORMS = ("kaplan", "power", "kaplan_strict")
#: The most points of one run the joint fit uses (log-spaced in time): 100 runs must fit in under a second.
MAX_POINTS_PER_RUN = 40
#: Only the points at or after this fraction of a run's last fitted time are fitted: the early fast fall of a curve
#: is no power law of the step (chosen among 0.2, 0.3, 0.4, 0.6 on the recorded sweeps, BENCHMARKS.md "Sweeps").
TAIL_FROM = 0.6
#: The fewest fitted points a run needs to join the fit.
MIN_POINTS = 3
#: The most residual evaluations of one start.
MAX_NFEV = 200
#: Default confidence of the central interval (the rule's default, docs/science.md section 12).
CONFIDENCE = 0.8
#: A pooled prediction more than this many times below the run's loss now is a collapsed fit (the size's own model
#: term fitted to ~0, or a law of N through such a size), not a prediction: :meth:`SweepFit.converged_loss` refuses it.
MAX_FALL = 4.0


# ---------------------------------------------------------------------------------------------
# records and the store
# ---------------------------------------------------------------------------------------------
@dataclass
class SweepRecord:
    """One run of a sweep, as its record file holds it.

    Attributes:
        run_id: the run's name, unique in the store (its file name is derived from it).
        n_params: N, the parameters (as the user counts them); ``n_params_non_embedding`` optional.
        steps, loss: the monitored curve (optimizer steps, the monitored loss at each).
        lr_sum: the summed learning rate at each of those steps ([T] S1), or None.
        data: the data identity (runs on different data are never pooled); None when not given.
        dataset_size: D, distinct examples/tokens; ``unit`` what they count; ``tokens_per_step``: per optimizer step.
        examples_seen: E at the end; ``flops``: cumulative training FLOPs.
        stop_reason / stop_code: why the run ended (a StopReason code, "max_steps", ...).
        converged_loss / interval: the run's own final prediction and interval.
        config: what matters for pooling and replay (``threshold``, ``schedule``, ``warmup_steps``, ...).
        written: Unix time of the write (set by :func:`write_record`).
    """

    run_id: str
    n_params: float
    steps: list[int]
    loss: list[float]
    lr_sum: list[float] | None = None
    data: str | None = None
    n_params_non_embedding: float | None = None
    dataset_size: float | None = None
    unit: str = "tokens"
    tokens_per_step: float | None = None
    examples_seen: float | None = None
    flops: float | None = None
    stop_reason: str | None = None
    stop_code: str | None = None
    converged_loss: float | None = None
    interval: tuple[float, float] | None = None
    config: dict[str, Any] = field(default_factory=dict)
    written: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.run_id, str) or not self.run_id:
            raise ValueError("run_id must be a non-empty string")
        if not (_positive(self.n_params)):
            raise ValueError(f"n_params must be a positive number, got {self.n_params!r}")
        self.n_params = float(self.n_params)
        self.steps = [int(s) for s in self.steps]
        self.loss = [float(v) for v in self.loss]
        if len(self.steps) != len(self.loss):
            raise ValueError("steps and loss must have the same length")
        if self.lr_sum is not None:
            self.lr_sum = [float(v) for v in self.lr_sum]
            if len(self.lr_sum) != len(self.steps):
                raise ValueError("lr_sum must have one value per step")
        if self.data is not None:
            self.data = str(self.data)
        for name in ("n_params_non_embedding", "dataset_size", "tokens_per_step", "examples_seen", "flops",
                     "converged_loss", "written"):
            value = getattr(self, name)
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ValueError(f"{name} must be a number or None, got {value!r}")
                setattr(self, name, float(value))
        if self.interval is not None:
            lo, hi = self.interval
            self.interval = (float(lo), float(hi))
        if not isinstance(self.config, dict):
            raise ValueError("config must be a dict")

    def to_dict(self) -> dict[str, Any]:
        """The record as the JSON object its file holds (``format`` and ``version`` first)."""
        body = asdict(self)
        body["interval"] = list(self.interval) if self.interval is not None else None
        return {"format": FORMAT, "version": VERSION, **{k: _finite_or_none(v) for k, v in body.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SweepRecord":
        """A record from its JSON object. Raises ValueError when it is not a version-1 sweep record."""
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise ValueError(f"not a sweep record (format {FORMAT!r})")
        if data.get("version") != VERSION:
            raise ValueError(f"sweep record version {data.get('version')!r}, this package reads {VERSION}")
        known = set(cls.__dataclass_fields__)
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as err:
            raise ValueError(f"malformed sweep record: {err}") from None

    @property
    def group(self) -> tuple[float, float | None]:
        """The model the run trains: ``(N, D)``; runs of one group share a converged loss."""
        return (self.n_params, self.dataset_size)


def _positive(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def _finite_or_none(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, list):
        return [_finite_or_none(x) for x in v]
    return v


def record_filename(run_id: str) -> str:
    """The file name of a run's record: the id made safe, and a short hash so two ids never share a file."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", run_id).strip("._")[:80] or "run"
    return f"{safe}-{hashlib.sha1(run_id.encode()).hexdigest()[:8]}.json"


def write_record(folder: str | Path, record: SweepRecord) -> Path:
    """Write ``record`` into the sweep folder ``folder`` (created if needed), atomically, and return its path.

    The write is :func:`lightning_scaling.run_info.write_atomic`: a reader sees the old record or the new one, never
    half of one, and a writer killed mid-write leaves only a ``.partial`` file, which readers ignore. Writing a run id
    again replaces its record (checkpoints write it again).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    record.written = time.time()
    text = json.dumps(record.to_dict(), allow_nan=False, separators=(",", ":"))
    return write_atomic(folder / record_filename(record.run_id), text)


def read_record(path: str | Path) -> SweepRecord:
    """Read one record file. Raises ValueError naming the file when it is not a readable version-1 record."""
    try:
        data = json.loads(Path(path).read_text())
        return SweepRecord.from_dict(data)
    except (OSError, ValueError, TypeError, AttributeError) as err:
        raise ValueError(f"{path}: {err}") from None


def record_from_curve(run_id: str, steps: Sequence[int], loss: Sequence[float], *, n_params: float,
                      lr: Sequence[float] | None = None, lr_sum: Sequence[float] | None = None,
                      until_step: int | None = None, **fields: Any) -> SweepRecord:
    """A record from a recorded curve (benchmarks, tests, the CLI's import).

    Args:
        run_id: the run's name.
        steps, loss: its evaluations.
        n_params: N.
        lr: the learning rate of every optimizer step 1..max(steps) (index i = step i + 1), summed here; or
        lr_sum: the summed learning rate at each step.
        until_step: keep only the points at or before this step (a run stopped there, or a live run's prefix).
        **fields: the other :class:`SweepRecord` fields (``data``, ``dataset_size``, ``config``, ...).
    """
    s = np.asarray(steps, dtype=np.int64)
    y = np.asarray(loss, dtype=float)
    if lr is not None and lr_sum is not None:
        raise ValueError("give lr or lr_sum, not both")
    sums = None
    if lr is not None:
        cumulative = np.concatenate([[0.0], np.cumsum(np.asarray(lr, dtype=float))])
        sums = cumulative[np.clip(s, 0, cumulative.size - 1)]
    elif lr_sum is not None:
        sums = np.asarray(lr_sum, dtype=float)
    keep = np.ones(s.size, dtype=bool) if until_step is None else s <= until_step
    return SweepRecord(run_id=run_id, n_params=n_params, steps=s[keep].tolist(), loss=y[keep].tolist(),
                       lr_sum=None if sums is None else sums[keep].tolist(), **fields)


def record_from_rule(run_id: str, rule: Any, *, n_params: float, config: Mapping[str, Any] | None = None,
                     **fields: Any) -> SweepRecord:
    """The record of a run from the points its :class:`~lightning_scaling.stopping.StoppingRule` kept: what
    ``ExtraEarlyStopping(sweep=...)`` writes and what ``replay(..., sweep=...)`` fits as the run's own points.

    Only the finite points are kept; the summed learning rate only when every kept point has one. The config holds
    the rule's settings the joint fit reads (``warmup_steps``) and reports (``threshold``, ``confidence``,
    ``time_axis``), then ``config``.

    Args:
        run_id: the run's name.
        rule: the run's StoppingRule (its ``steps``, ``losses``, ``lr_sums``).
        n_params: N.
        config: more of the run's settings for the record's ``config``.
        **fields: the other :class:`SweepRecord` fields (``data``, ``dataset_size``, ...).

    Example:
        >>> from lightning_scaling.stopping import StoppingRule
        >>> rule = StoppingRule(calibration=False)
        >>> for step, loss in ((10, 3.0), (20, 2.5), (30, 2.3)):
        ...     _ = rule.update(step, loss)
        >>> record_from_rule("run-1", rule, n_params=1e6, data="text").steps
        [10, 20, 30]
    """
    points = [(s, v, a) for s, v, a in zip(rule.steps, rule.losses, rule.lr_sums)
              if math.isfinite(v) and (a is None or math.isfinite(a))]
    with_lr = bool(points) and all(a is not None for _, _, a in points)
    settings = {"threshold": rule.threshold, "confidence": rule.confidence, "warmup_steps": rule.warmup_steps,
                "time_axis": rule.axis, **(config or {})}
    return SweepRecord(run_id=run_id, n_params=n_params, steps=[s for s, _, _ in points],
                       loss=[v for _, v, _ in points], lr_sum=[a for _, _, a in points] if with_lr else None,
                       config=settings, **fields)


class Sweep:
    """A sweep store: the records of a folder (``*.json``), optionally only those on one data identity.

    Args:
        path: the folder (it need not exist yet: then there are no records).
        data: keep only the runs with this data identity (None: every run; :meth:`fit` refuses to pool several).

    A file that is not a readable version-1 record (corrupt, half-written by another tool, another format) is
    skipped with one :class:`ScalingWarning` naming it (once per file and content, however often the store is
    read). Two files with the same run id: the one written last is kept.
    """

    def __init__(self, path: str | Path, data: str | None = None) -> None:
        self.path = Path(path)
        self.data = data
        self._warned: set[tuple[str, float]] = set()
        self._records: list[SweepRecord] = []
        self.refresh()

    @classmethod
    def from_records(cls, records: Iterable[SweepRecord], data: str | None = None) -> "Sweep":
        """A sweep held in memory (no folder): benchmarks and replays."""
        sweep = cls.__new__(cls)
        sweep.path, sweep.data, sweep._warned = None, data, set()
        sweep._records = _dedupe(r for r in records if data is None or r.data == data)
        return sweep

    def refresh(self) -> list[SweepRecord]:
        """Read the folder again (a run of the sweep may have written a record since); returns :attr:`records`."""
        if self.path is None:
            return self._records
        records = []
        files = sorted(self.path.glob("*.json")) if self.path.is_dir() else []
        for file in files:
            try:
                record = read_record(file)
            except ValueError as err:
                try:
                    key = (str(file), file.stat().st_mtime)
                except OSError:  # removed meanwhile
                    continue
                if key not in self._warned:
                    self._warned.add(key)
                    warnings.warn(f"sweep store: skipping {file}: {str(err).removeprefix(str(file) + ': ')}",
                                  ScalingWarning, stacklevel=2)
                continue
            if self.data is None or record.data == self.data:
                records.append(record)
        self._records = _dedupe(records)
        return self._records

    @property
    def records(self) -> list[SweepRecord]:
        """The runs read (in order of their writes)."""
        return list(self._records)

    def add(self, record: SweepRecord) -> Path | None:
        """Write ``record`` into the store (:func:`write_record`) and re-read it (in memory: keep it; None)."""
        if self.path is None:
            self._records = _dedupe(self._records + [record])
            return None
        out = write_record(self.path, record)
        self.refresh()
        return out

    def fit(self, extra: Iterable[SweepRecord] = (), *, form: str = FORMS[0],
            calibration: Calibration | None = None) -> "SweepFit":
        """The joint fit of the stored runs and ``extra`` (e.g. the live run's own prefix, which replaces a stored
        record of the same run id). See :func:`fit_sweep`."""
        return fit_sweep(_dedupe(self._records + list(extra)), form=form, calibration=calibration)

    def __len__(self) -> int:
        return len(self._records)

    def __repr__(self) -> str:
        return f"Sweep({str(self.path)!r}, data={self.data!r}, runs={len(self._records)})"


def as_sweep(value: Any, data: str | None = None) -> Sweep | None:
    """``sweep=`` as a :class:`Sweep`: a Sweep as it is, a folder path as ``Sweep(path, data)``, records as
    ``Sweep.from_records(records, data)`` (in memory); None stays None.

    Raises:
        ValueError: none of these, or a path that is a file.
    """
    if value is None or isinstance(value, Sweep):
        return value
    if isinstance(value, (str, os.PathLike)) and str(value):
        if os.path.isfile(value):
            raise ValueError(f"sweep={str(value)!r} is a file: give the sweep store's folder (it is created if "
                             "needed) or a Sweep")
        return Sweep(value, data=data)
    if isinstance(value, (list, tuple)) and all(isinstance(r, SweepRecord) for r in value):
        return Sweep.from_records(value, data=data)
    raise ValueError(f"sweep must be a lightning_scaling.Sweep, a folder path, a list of SweepRecord or None, got "
                     f"{type(value).__name__}: give Sweep('sweeps/my-data', data='my-data') so that runs on other "
                     "data are never pooled")


def _dedupe(records: Iterable[SweepRecord]) -> list[SweepRecord]:
    """One record per run id, the last given (a later write replaces an earlier one), in first-seen order."""
    out: dict[str, SweepRecord] = {}
    for r in records:
        out.pop(r.run_id, None)
        out[r.run_id] = r
    return list(out.values())


# ---------------------------------------------------------------------------------------------
# the joint fit
# ---------------------------------------------------------------------------------------------
@dataclass
class SweepFit:
    """Result of :func:`fit_sweep` (cf. scipy.optimize.OptimizeResult: ``success`` and ``message`` say whether the
    numbers can be used; an unsuccessful fit has no parameters and :meth:`converged_loss` raises FitError).

    Attributes:
        form: the joint form (:data:`FORMS`); ``axis``: the time axis, "lr_sum" or "steps".
        params: the shared parameters (``E``, ``alpha_S``, ``S_c`` for the Kaplan forms, ``alpha`` for "power";
            ``alpha_N``, ``N_c`` when eq 1.6's law of N is fitted across sizes).
        groups: per model ``(N, D)``: its converged loss, the runs in it, and the lowest loss any of them reached.
        n_runs: runs fitted; ``n_points``: points fitted; ``rmse``: root mean square log residual;
        skipped: runs left out, with why.
        data: the data identity of the runs (all equal).
        seconds: the fit's wall time.
    """

    success: bool
    message: str
    form: str = FORMS[0]
    axis: str = "steps"
    params: dict[str, float] = field(default_factory=dict)
    groups: dict[tuple[float, float | None], dict[str, Any]] = field(default_factory=dict)
    n_runs: int = 0
    n_points: int = 0
    rmse: float = math.nan
    skipped: dict[str, str] = field(default_factory=dict)
    data: str | None = None
    seconds: float = 0.0
    calibration: Calibration | None = field(default=None, repr=False)
    _law_n: tuple[float, float, float] | None = field(default=None, repr=False)  # (E, log N_c, alpha_N)

    def __bool__(self) -> bool:
        return self.success

    def point(self, n_params: float, dataset_size: float | None = None) -> float:
        """The predicted converged loss of a model of ``n_params`` on this data (``dataset_size``: its D, needed
        only when the sweep's runs differ in D).

        Raises:
            FitError: the fit did not succeed, or the size is not in the sweep and no law of N could be fitted
                (fewer than 2 sizes at that D).
        """
        if not self.success:
            raise FitError(f"the sweep fit did not succeed: {self.message}")
        group = self._group(n_params, dataset_size)
        if group is not None:
            return float(self.groups[group]["converged_loss"])
        if self._law_n is None:
            raise FitError(f"N = {n_params:g} is not a size of the sweep and no law of N was fitted "
                           f"(it needs 2 sizes on the same data)")
        e, log_nc, a_n = self._law_n
        return float(e + math.exp(a_n * (log_nc - math.log(n_params))))

    def converged_loss(self, n_params: float, dataset_size: float | None = None, *, confidence: float = CONFIDENCE,
                       smoothed_loss: float | None = None) -> tuple[float, tuple[float, float]]:
        """``(L_hat, (low, high))``: the converged loss of a model of ``n_params`` and its central interval at
        ``confidence``.

        The interval is split conformal on the log-ratio of this predictor (:attr:`calibration`, by default
        :func:`pooled_calibration`), in the bin of ``g = s / L_hat - 1`` with ``s`` = ``smoothed_loss`` (the run's
        loss now; default: the lowest loss a run of that size reached in the sweep; a size not in the sweep
        extrapolates in N and takes the widest bin).

        Raises:
            FitError: as :meth:`point`; also when this size's converged loss sits on a bound of the fit (form
                "power": its own curve has not bent, the single-run rule's test), or, with ``smoothed_loss``, when
                the prediction is more than :data:`MAX_FALL` x below it (a collapsed fit).
            ValueError: a confidence outside (0, 1).
        """
        value = self.point(n_params, dataset_size)
        group = self._group(n_params, dataset_size)
        if group is not None and self.groups[group].get("at_bound"):
            raise FitError(f"the converged loss of N = {n_params:g} sits on its bound (its curve has not bent yet)")
        if smoothed_loss is None:
            smoothed_loss = self.groups[group]["lowest_loss"] if group is not None else math.inf
        elif not value * MAX_FALL >= smoothed_loss:
            raise FitError(f"the joint fit's converged loss {value:.4g} of N = {n_params:g} is more than {MAX_FALL:g}x "
                           f"below the loss now ({smoothed_loss:.4g}): a collapsed fit, not a prediction")
        cal = self.calibration if self.calibration is not None else pooled_calibration()
        g = smoothed_loss / value - 1.0 if value > 0 else math.inf
        q_lo, q_hi = cal.log_bounds(g, confidence)
        return value, (value * math.exp(q_lo) if math.isfinite(q_lo) else 0.0,
                       value * math.exp(q_hi) if math.isfinite(q_hi) else math.inf)

    def curve(self, run_id: str, t: Sequence[float]) -> np.ndarray:
        """The joint fit's loss of run ``run_id`` at times ``t`` (on :attr:`axis`): for figures."""
        if not self.success or run_id not in self._curves:
            raise FitError(f"no fitted curve for run {run_id!r}")
        return self._curves[run_id](np.asarray(t, dtype=float))

    def _group(self, n_params: float, dataset_size: float | None):
        for (n, d) in self.groups:
            if math.isclose(n, n_params, rel_tol=1e-9) and (dataset_size is None or d is None
                                                             or math.isclose(d, dataset_size, rel_tol=1e-9)):
                return (n, d)
        return None

    _curves: dict = field(default_factory=dict, repr=False)


def _failed(message: str, form: str, n_runs: int = 0, skipped=None, data=None, t0=None) -> SweepFit:
    return SweepFit(False, message, form=form, n_runs=n_runs, skipped=dict(skipped or {}), data=data,
                    seconds=0.0 if t0 is None else time.perf_counter() - t0)


def _prepared(record: SweepRecord, axis: str) -> tuple[np.ndarray, np.ndarray] | str:
    """The (t, loss) points of a record the fit uses, or why there are none: after the warm-up's transient,
    finite and positive, at most :data:`MAX_POINTS_PER_RUN` log-spaced in t."""
    steps = np.asarray(record.steps, dtype=float)
    loss = np.asarray(record.loss, dtype=float)
    t = np.asarray(record.lr_sum, dtype=float) if axis == "lr_sum" else steps.copy()
    ok = np.isfinite(t) & np.isfinite(loss) & (t > 0) & (loss > 0) & np.isfinite(steps)
    steps, loss, t = steps[ok], loss[ok], t[ok]
    if steps.size == 0:
        return "no finite positive points"
    order = np.argsort(steps, kind="stable")
    steps, loss, t = steps[order], loss[order], t[order]
    warm = record.config.get("warmup_steps") if isinstance(record.config, dict) else None
    if not _positive(warm):
        warm = warmup_end(steps, np.asarray(record.lr_sum, dtype=float)[ok][order]) if record.lr_sum else 0.0
    keep = steps > TRANSIENT_FACTOR * float(warm)
    steps, loss, t = steps[keep], loss[keep], t[keep]
    if loss.size >= 3:  # the points after the lowest smoothed loss overfit ([K] eq 1.5's regime, not eq 1.6's)
        smoothed = np.convolve(np.pad(loss, 1, mode="edge"), np.ones(3) / 3, mode="valid")
        last = int(np.argmin(smoothed)) + 1
        steps, loss, t = steps[:last], loss[:last], t[:last]
    if TAIL_FROM > 0 and t.size:  # the curve's tail: its early fast fall is no power law of the step
        keep = t >= TAIL_FROM * t[-1]
        steps, loss, t = steps[keep], loss[keep], t[keep]
    if t.size < MIN_POINTS or np.unique(t).size < MIN_POINTS:
        return f"fewer than {MIN_POINTS} points after the warm-up"
    if t.size > MAX_POINTS_PER_RUN:
        grid = np.geomspace(t[0], t[-1], MAX_POINTS_PER_RUN)
        idx = np.unique(np.clip(np.searchsorted(t, grid), 0, t.size - 1))
        idx = np.unique(np.concatenate([idx, [t.size - 1]]))
        t, loss = t[idx], loss[idx]
    return t, loss


class _Problem:
    """The stacked points of every run: t (scaled to a median of 1), log loss, run and group index per point, and
    per-point weights so each run weighs the same in all."""

    def __init__(self, runs: list[tuple[SweepRecord, np.ndarray, np.ndarray]], groups: list):
        self.t_scale = float(np.median(np.concatenate([t for _, t, _ in runs])))
        self.logt = np.concatenate([np.log(t / self.t_scale) for _, t, _ in runs])
        self.logy = np.concatenate([np.log(y) for _, _, y in runs])
        self.run = np.concatenate([np.full(t.size, i) for i, (_, t, _) in enumerate(runs)])
        gidx = {g: j for j, g in enumerate(groups)}
        self.group = np.concatenate([np.full(t.size, gidx[r.group]) for r, t, _ in runs])
        counts = np.array([t.size for _, t, _ in runs], dtype=float)
        self.w = np.sqrt(counts.mean() / counts[self.run])
        self.n_runs, self.n_groups = len(runs), len(groups)
        self.min_loss = np.array([min(float(y.min()) for r, _, y in runs if r.group == g) for g in groups])
        self.logn = np.log([g[0] for g in groups])


# ---- form "kaplan": L = E + exp(aS * logaddexp(v_g, c - log t)); theta = (E, log aS, c, v_1..v_G) ----------------
def _kaplan_parts(theta, p: _Problem):
    e, a_s = theta[0], math.exp(theta[1])
    z = np.logaddexp(theta[3 + p.group], theta[2] - p.logt)
    k = np.exp(a_s * z)
    return e, a_s, z, k, e + k


def _kaplan_res(theta, p: _Problem):
    return (np.log(_kaplan_parts(theta, p)[4]) - p.logy) * p.w


def _kaplan_jac(theta, p: _Problem):
    e, a_s, z, k, pred = _kaplan_parts(theta, p)
    wu = np.exp(theta[3 + p.group] - z)
    base = p.w / pred
    jac = np.zeros((p.logy.size, theta.size))
    jac[:, 0] = base
    jac[:, 1] = base * k * a_s * z
    jac[:, 2] = base * k * a_s * (1.0 - wu)
    jac[np.arange(p.logy.size), 3 + p.group] = base * k * a_s * wu
    return jac


# ---- form "kaplan_strict": v_g = b (log N_c - log N_g), b = alpha_N / alpha_S; theta = (E, log aS, c, log N_c, b) ---
def _strict_theta(theta, p: _Problem):
    return np.concatenate([theta[:3], theta[4] * (theta[3] - p.logn)])


def _strict_res(theta, p: _Problem):
    return _kaplan_res(_strict_theta(theta, p), p)


def _strict_jac(theta, p: _Problem):
    full = _kaplan_jac(_strict_theta(theta, p), p)
    dv = full[:, 3:]
    return np.column_stack([full[:, :3], dv.sum(axis=1) * theta[4], dv @ (theta[3] - p.logn)])


# ---- form "power": L = C_g + exp(b_i - alpha log t); theta = (log alpha, C_1..C_G, b_1..b_R) ----------------------
def _power_parts(theta, p: _Problem):
    alpha = math.exp(theta[0])
    c = theta[1 + p.group]
    term = np.exp(theta[1 + p.n_groups + p.run] - alpha * p.logt)
    return alpha, c, term, c + term


def _power_res(theta, p: _Problem):
    return (np.log(_power_parts(theta, p)[3]) - p.logy) * p.w


def _power_jac(theta, p: _Problem):
    alpha, _, term, pred = _power_parts(theta, p)
    base = p.w / pred
    rows = np.arange(p.logy.size)
    jac = np.zeros((p.logy.size, theta.size))
    jac[:, 0] = -base * term * alpha * p.logt
    jac[rows, 1 + p.group] = base
    jac[rows, 1 + p.n_groups + p.run] = base * term
    return jac


def _solve(form: str, p: _Problem):
    lowest = float(p.min_loss.min())
    hi_c = p.min_loss * (1 - 1e-6)
    if form == "power":
        starts = []
        for alpha in (0.5, 1.0):
            for frac in (0.5, 0.85):
                c = p.min_loss * frac
                b = np.array([np.log(max(np.exp(p.logy[p.run == i]).mean() - c[p.group[p.run == i][0]], 1e-6))
                              + alpha * p.logt[p.run == i].mean() for i in range(p.n_runs)])
                starts.append(np.concatenate([[math.log(alpha)], c, b]))
        lb = np.concatenate([[math.log(1e-3)], np.zeros(p.n_groups), np.full(p.n_runs, -60.0)])
        ub = np.concatenate([[math.log(5.0)], hi_c, np.full(p.n_runs, 60.0)])
        res, jac = _power_res, _power_jac
    else:
        starts = []
        for a_s in (0.3, 0.8):
            for e_frac in (0.3, 0.7):
                e = e_frac * lowest
                v = np.log(np.maximum(0.9 * p.min_loss - e, 1e-6)) / a_s
                if form == "kaplan":
                    starts.append(np.concatenate([[e, math.log(a_s), 0.0], v]))
                else:
                    b = 0.3
                    log_nc = float(np.mean(v / b + p.logn))
                    starts.append(np.array([e, math.log(a_s), 0.0, log_nc, b]))
        if form == "kaplan":
            lb = np.concatenate([[0.0, math.log(1e-2), -30.0], np.full(p.n_groups, -60.0)])
            ub = np.concatenate([[lowest * (1 - 1e-6), math.log(5.0), 30.0], np.full(p.n_groups, 60.0)])
            res, jac = _kaplan_res, _kaplan_jac
        else:
            lb = np.array([0.0, math.log(1e-2), -30.0, -200.0, 1e-4])
            ub = np.array([lowest * (1 - 1e-6), math.log(5.0), 30.0, 200.0, 20.0])
            res, jac = _strict_res, _strict_jac
    starts = [np.clip(s, lb + 1e-9 * (ub - lb), ub - 1e-9 * (ub - lb)) for s in starts]
    best = solve_from_starts(res, jac, starts, (p,), (lb, ub), screen=True, tol=1e-8, max_nfev=MAX_NFEV)
    return best, lb, ub


def fit_sweep(records: Sequence[SweepRecord], *, form: str = FORMS[0],
              calibration: Calibration | None = None) -> SweepFit:
    """The joint fit of the learning curves of a sweep's runs (docs/science.md section 15).

    Every run's points after its warm-up transient (at most :data:`MAX_POINTS_PER_RUN`, each run weighing the same)
    are fitted at once by scipy's bounded least squares on log loss (:func:`~lightning_scaling.fitting.
    solve_from_starts`, a few starts screened, bounded evaluations). The time axis is the summed learning rate when
    every run records it, else the step. Runs of one model ``(N, D)`` share its converged loss; the exponents and
    ``E``, ``S_c`` are shared by all.

    Args:
        records: the runs (one data identity: runs on different data are never pooled).
        form: :data:`FORMS`.
        calibration: the interval's calibration (default :func:`pooled_calibration`).

    Returns a :class:`SweepFit`; ``success=False`` with a ``message`` (never an exception) for fewer than two usable
    runs, several data identities, or a fit that did not converge.

    Raises:
        ValueError: an unknown form.
        FitError: records that are not :class:`SweepRecord` objects.
    """
    t0 = time.perf_counter()
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    records = list(records)
    if any(not isinstance(r, SweepRecord) for r in records):
        raise FitError("fit_sweep takes SweepRecord objects")
    identities = sorted({str(r.data) for r in records})
    if len(identities) > 1:
        return _failed(f"the runs are on {len(identities)} data identities ({', '.join(identities[:4])}): runs on "
                       f"different data are never pooled (Sweep(path, data=...) picks one)", form, len(records))
    data = records[0].data if records else None
    if len(records) < 2:
        return _failed(f"a joint fit needs at least 2 runs, the sweep has {len(records)}", form, len(records),
                       data=data, t0=t0)
    axis = "lr_sum" if all(r.lr_sum is not None and any(v > 0 for v in r.lr_sum if math.isfinite(v))
                           for r in records) else "steps"
    runs, skipped = [], {}
    for r in records:
        prepared = _prepared(r, axis)
        if isinstance(prepared, str):
            skipped[r.run_id] = prepared
        else:
            runs.append((r, *prepared))
    if len(runs) < 2:
        return _failed(f"a joint fit needs at least 2 runs with {MIN_POINTS} points after the warm-up, "
                       f"got {len(runs)}", form, len(runs), skipped, data, t0)
    groups = list(dict.fromkeys(r.group for r, _, _ in runs))
    if form == "kaplan_strict" and len({g[0] for g in groups}) < 2:
        return _failed("the strict eq 1.6 needs at least 2 model sizes", form, len(runs), skipped, data, t0)
    p = _Problem(runs, groups)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        best, lb, ub = _solve(form, p)
    if best is None or not np.all(np.isfinite(best.x)) or best.status < 0 or not math.isfinite(best.cost):
        return _failed("the joint fit did not converge from any start", form, len(runs), skipped, data, t0)
    theta = best.x
    rmse = math.sqrt(2 * best.cost / p.logy.size)
    params: dict[str, float] = {}
    curves = {}
    conv = np.empty(len(groups))
    if form == "power":
        alpha = math.exp(theta[0])
        conv[:] = theta[1:1 + p.n_groups]
        params["alpha"] = alpha
        for i, (r, _, _) in enumerate(runs):
            c, b = conv[groups.index(r.group)], theta[1 + p.n_groups + i]
            curves[r.run_id] = (lambda tt, c=c, b=b: c + np.exp(b - alpha * np.log(tt / p.t_scale)))
        at_bound = np.isclose(conv, 0.0) | np.isclose(conv, p.min_loss * (1 - 1e-6), rtol=1e-6)
    else:
        full = theta if form == "kaplan" else _strict_theta(theta, p)
        e, a_s, c = float(full[0]), math.exp(full[1]), float(full[2])
        v = full[3:]
        conv[:] = e + np.exp(a_s * v)
        params.update(E=e, alpha_S=a_s, S_c=math.exp(c) * p.t_scale)
        if form == "kaplan_strict":
            params.update(alpha_N=float(theta[4]) * a_s, N_c=math.exp(float(theta[3])))
        for r, _, _ in runs:
            vg = v[groups.index(r.group)]
            curves[r.run_id] = (lambda tt, vg=vg: e + np.exp(a_s * np.logaddexp(vg, c - np.log(tt / p.t_scale))))
        at_bound = np.zeros(len(groups), dtype=bool)
    law_n = _law_of_n(groups, conv, params, form)
    if law_n is not None and form != "kaplan_strict":
        params.update(alpha_N=law_n[2], N_c=math.exp(law_n[1]), E_N=law_n[0])
    group_info = {}
    for j, g in enumerate(groups):
        members = [r.run_id for r, _, _ in runs if r.group == g]
        group_info[g] = {"converged_loss": float(conv[j]), "runs": members, "lowest_loss": float(p.min_loss[j]),
                         "at_bound": bool(at_bound[j])}
    message = "converged" if not at_bound.any() else \
        "converged; a converged loss sits on its bound (the curves have not bent yet)"
    fit = SweepFit(True, message, form=form, axis=axis, params=params, groups=group_info, n_runs=len(runs),
                   n_points=int(p.logy.size), rmse=rmse, skipped=skipped, data=data,
                   seconds=time.perf_counter() - t0, calibration=calibration, _law_n=law_n)
    fit._curves = curves
    return fit


def _law_of_n(groups, conv: np.ndarray, params: Mapping[str, float], form: str):
    """``(E, log N_c, alpha_N)`` of ``L(N) = E + (N_c/N)^alpha_N`` through the sizes' converged losses (at one D):
    eq 1.6's model term with the joint fit's ``E`` (form "power": the lowest loss floor 0); None with < 2 sizes."""
    ds = {g[1] for g in groups}
    if len(ds) > 1:
        return None
    sizes = np.array([g[0] for g in groups])
    if np.unique(sizes).size < 2:
        return None
    e = float(params.get("E", 0.0))
    if form == "kaplan_strict":
        return None if "N_c" not in params else (e, math.log(params["N_c"]), params["alpha_N"])
    gap = conv - e
    if np.any(gap <= 0):
        return None
    x, y = np.log(sizes), np.log(gap)
    slope, intercept = np.polyfit(x, y, 1)
    if not slope < 0:
        return None
    a_n = float(-slope)
    return e, float(intercept / a_n), a_n


# ---------------------------------------------------------------------------------------------
# a run in a sweep: the pooled prediction and the pooled floor
# ---------------------------------------------------------------------------------------------
def pooled_fit(stored: Iterable[SweepRecord], own: SweepRecord | None = None, *, run_id: str | None = None,
               data: str | None = None) -> SweepFit | None:
    """The joint fit a run of a sweep makes: the stored runs on its data, its own record left out, with its own
    points so far (``ExtraEarlyStopping(sweep=...)`` live, ``replay(..., sweep=...)`` afterwards, DataLimitGap's
    floor without ``own``).

    Args:
        stored: the store's records (:attr:`Sweep.records`).
        own: the run's record of its points so far (:func:`record_from_rule`), or None: the stored runs alone; a
            record without points is left out.
        run_id: the run's id, whose stored record is left out (default: ``own``'s).
        data: the run's data identity: only stored runs on it are pooled.

    Returns the :class:`SweepFit` (``success=False`` with fewer than 2 usable runs), or None when no other run is
    on this data.

    Example:
        >>> a = record_from_curve("a", [100, 200, 300, 400], [2.0, 1.8, 1.7, 1.65], n_params=1e6, data="text")
        >>> pooled_fit([a], run_id="b", data="other") is None  # runs on other data are never pooled
        True
    """
    if run_id is None and own is not None:
        run_id = own.run_id
    others = [r for r in stored if r.data == data and r.run_id != run_id]
    if not others:
        return None
    return fit_sweep(others + ([own] if own is not None and own.steps else []))


def pooled_prediction(fit: SweepFit | None, n_params: float, dataset_size: float | None = None, *,
                      confidence: float = CONFIDENCE,
                      smoothed_loss: float | None = None) -> tuple[float, tuple[float, float]] | None:
    """The pooled prediction of a run: the joint fit's converged loss at its N and D with its central interval at
    ``confidence`` (:meth:`SweepFit.converged_loss`, in the bin of ``smoothed_loss``, the run's smoothed loss now);
    None without a successful fit, or when the fit does not cover this N (a size not in the sweep, no law of N).

    Example:
        >>> pooled_prediction(None, 1e6) is None
        True
    """
    if fit is None or not fit.success:
        return None
    try:
        value, (lo, hi) = fit.converged_loss(n_params, dataset_size, confidence=confidence,
                                             smoothed_loss=smoothed_loss)
    except FitError:  # this N is not in the sweep and no law of N was fitted: nothing to show
        return None
    return (value, (lo, hi)) if math.isfinite(value) else None


#: Where a pooled floor comes from (:attr:`SweepFloor.source`).
FLOOR_SOURCES = ("limit", "best_size")


@dataclass
class SweepFloor:
    """The best loss any model reaches on a sweep's data, from its joint fit (``DataLimitGap(sweep=...)``).

    Attributes:
        value: the floor.
        interval: its central interval at the confidence asked: the pooled calibration's of the best size's
            converged loss; for the limit, that one reaching down to ``E`` (``E`` has no calibrated interval of its
            own: the calibration's scores are of sizes in a sweep, not of N -> infinity; the floor lies between the
            fit's limit and a loss a model of the sweep reaches).
        source: :data:`FLOOR_SOURCES`: "limit", ``E``, the converged loss as N -> infinity of [K] eq 1.6's law of N
            fitted across the sweep's sizes; "best_size", the lowest converged loss among the sweep's sizes at this
            D (the fit has no law of N: one size, or several D).
        n_params: the size whose converged loss it is ("best_size"); None for the limit.
        n_runs: the runs of the fit.
    """

    value: float
    interval: tuple[float, float]
    source: str
    n_params: float | None = None
    n_runs: int = 0


def sweep_floor(fit: SweepFit | None, dataset_size: float | None = None, *, n_params: float | None = None,
                confidence: float = CONFIDENCE) -> SweepFloor | None:
    """The floor a sweep's joint fit gives on its data at D = ``dataset_size``: no model of any size converges below
    it (the sweep's analogue of L(D), [K] eq 1.5 as N -> infinity).

    * With a law of N across the sweep's sizes ([K] eq 1.6, :attr:`SweepFit.params` ``alpha_N``, ``N_c``), all at
      this D: its limit N -> infinity, ``E``, the term no model size removes. The default form bounds ``E`` by the
      lowest loss of the sweep and leaves it free of the law of N, so it does not extrapolate far: on data-limited
      sizes, whose converged losses level off in N, it is where they level off (L(D)); on sizes still far from
      their data limit it is not identified by the curves and stays near the largest size's converged loss, a
      floor no model of the sweep's sizes goes below (``form="kaplan_strict"`` extrapolates along eq 1.6).
    * Without one (one size, several D): the N -> infinity limit is not identified (``E`` then trades off against the
      one size's model term), so the floor is the lowest converged loss among the sizes at this D, with its
      interval: a loss the fit has a model reach, with no extrapolation in N. It is the largest size's where the
      loss falls with N ([K] eq 1.5); where it does not (data-limited sizes), the lowest is the lower floor, and a
      lower floor never makes ExtraEarlyStopping stop earlier.
    * For a run of ``n_params``, the floor must be below *its* converged loss: a size's converged loss bounds only
      smaller models' ([K] eq 1.5 falls with N at fixed D), so "best_size" is taken among the strictly larger sizes,
      and the limit only for a run smaller than the sweep's largest size (the default form's ``E`` is where the
      sizes level off, near the largest size's converged loss when they do not; ``kaplan_strict``'s extrapolates
      in N, but measured as a floor it stopped runs up to 1.29x too early). Otherwise there is no floor: the best
      earlier size's converged loss is then a loss this run will go below, and handed to the stopping rule as a
      floor it stops a model-limited run early (BENCHMARKS.md "Sweeps").

    Args:
        fit: the joint fit (:func:`pooled_fit`), or None.
        dataset_size: this run's D (None: any group's).
        n_params: this run's N (None: a floor for any model, as L(D) is).
        confidence: of the interval.

    Returns the :class:`SweepFloor`, or None without a successful fit with a size at this D (larger than
    ``n_params``, or a limit that holds at ``n_params``).

    Example:
        >>> sweep_floor(None) is None
        True
    """
    if fit is None or not fit.success:
        return None
    here = groups_at(fit, dataset_size)
    if not here:
        return None

    def converged(group):
        return fit.groups[group]["converged_loss"]

    best = min(here, key=converged)
    value, (lo, hi) = fit.converged_loss(best[0], best[1], confidence=confidence)
    if fit._law_n is not None and len(here) == len(fit.groups):
        limit = fit.point(math.inf, dataset_size)  # the law of N's limit N -> infinity: E
        # E bounds the sizes it was fitted through, not a run as large as the largest: the default form's E is where
        # the sizes level off (near the largest size's converged loss when they do not), and kaplan_strict's E
        # extrapolates in N too far to be safe (BENCHMARKS.md "Sweeps")
        beyond = n_params is not None and n_params >= max(g[0] for g in here)
        if math.isfinite(limit) and 0 < limit <= value and not beyond:
            return SweepFloor(limit, (min(limit, lo), hi), "limit", None, fit.n_runs)
    if n_params is not None and best[0] <= n_params:  # the best size bounds only smaller runs: the best larger one
        larger = [g for g in here if g[0] > n_params]
        if not larger:
            return None
        best = min(larger, key=converged)
        value, (lo, hi) = fit.converged_loss(best[0], best[1], confidence=confidence)
    return SweepFloor(value, (lo, hi), "best_size", best[0], fit.n_runs)


def groups_at(fit: SweepFit, dataset_size: float | None) -> list[tuple[float, float | None]]:
    """The joint fit's model groups ``(N, D)`` at D = ``dataset_size`` (a group of unknown D, or no D given, counts).

    Example:
        >>> groups_at(SweepFit(False, "none"), 1e6)
        []
    """
    return [g for g in fit.groups if dataset_size is None or g[1] is None
            or math.isclose(g[1], dataset_size, rel_tol=1e-9)]


# ---------------------------------------------------------------------------------------------
# the pooled predictor's calibration
# ---------------------------------------------------------------------------------------------
#: Where the calibration of the pooled predictor the package ships lies (``benchmarks/bench_sweep.py
#: --write-calibration`` makes it from the simulated sweeps of all four recorded sources).
CALIBRATION_PATH = Path(__file__).parent / "data" / "sweep_calibration.json"


@functools.lru_cache(maxsize=1)
def pooled_calibration() -> Calibration:
    """The calibration of the pooled predictor the package ships (:data:`CALIBRATION_PATH`)."""
    return Calibration.from_json(CALIBRATION_PATH)
