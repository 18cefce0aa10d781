"""A calibrated predictive interval for the converged loss: split-conformal calibration of the rule's errors.

The rule's point prediction ``L_hat`` of the converged loss is wrong in a way a single fit cannot see: its residuals
are correlated and its family misspecified, so the Gauss-Newton interval of the fit is far too narrow. What does
predict the error is how far the prediction extrapolates below the loss seen so far, ``g = s / L_hat - 1`` (``s``
the smoothed loss): a prediction far below the current loss is too low more often, one close to it is about right.

A :class:`Calibration` holds, for bins of ``g``, the distribution of the log-ratio ``e = log(L_ref / L_hat)``
between the reference converged loss of finished runs and the rule's prediction at each of their evaluations, each
run weighing 1 in a bin (a long run does not count more than a short one). The interval at ``confidence`` is
``[L_hat e^q_lo, L_hat e^q_hi]`` with ``q_lo``, ``q_hi`` the split-conformal quantiles of the bin ``g`` falls in
(Vovk et al. 2005; Lei et al. 2018, "Distribution-free predictive inference for regression", JASA, eq 2.3: the
``ceil((n + 1) p)``-th of ``n`` exchangeable scores, here with the runs as the exchangeable units). A bin with fewer
than :data:`MIN_RUNS` runs, or too few for a finite bound at the level asked (``n >= (1 - a) / a`` for a tail of
probability ``a``: 9 runs for a central 80% interval, 4 for an 80% one-sided bound), uses the pooled distribution.

The package ships one (:func:`default`, ``data/calibration.json``) made by ``scripts/calibrate_default.py`` from the
recorded curves; ``lightning-scaling calibrate RUNS... --out calibration.json`` makes one from a user's own finished
runs. Pure: numpy only.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

#: Bin edges of ``g = s / L_hat - 1`` (the last bin is open).
G_EDGES = (0.0, 0.05, 0.1, 0.2, 0.4, math.inf)
#: The fewest runs a bin needs to use its own distribution (else the pooled one).
MIN_RUNS = 5
#: The probabilities at which each bin's distribution is stored.
PROBABILITIES = tuple(round(i / 200, 3) for i in range(201))
#: The format's version.
VERSION = 1
#: Where the shipped calibration lies.
DEFAULT_PATH = Path(__file__).parent / "data" / "calibration.json"


def weighted_quantiles(values: Sequence[float], weights: Sequence[float],
                       probabilities: Sequence[float]) -> list[float]:
    """The smallest value whose cumulative weight share reaches each probability (a conservative step quantile).

    Example:
        >>> weighted_quantiles([3.0, 1.0, 2.0], [1, 1, 2], [0.25, 0.5, 1.0])
        [1.0, 2.0, 3.0]
    """
    order = np.argsort(values)
    v, w = np.asarray(values, dtype=float)[order], np.asarray(weights, dtype=float)[order]
    share = np.cumsum(w) / w.sum()
    idx = np.minimum(np.searchsorted(share, np.asarray(probabilities, dtype=float) - 1e-12), v.size - 1)
    return [float(x) for x in v[idx]]


@dataclass(frozen=True)
class Calibration:
    """The distribution of ``e = log(L_ref / L_hat)`` per bin of ``g = s / L_hat - 1`` (see the module docstring).

    Attributes:
        edges: the bin edges of ``g``.
        quantiles: per bin, ``e`` at each of :data:`PROBABILITIES` (None: the bin had too few runs).
        pooled: ``e`` at each probability over every bin.
        n_runs: per bin, the runs with a decision in it; ``n_total``: the runs in all.
        sources: what it was calibrated on (for the record).
    """

    edges: tuple[float, ...]
    quantiles: tuple[tuple[float, ...] | None, ...]
    pooled: tuple[float, ...]
    n_runs: tuple[int, ...]
    n_total: int
    sources: tuple[str, ...] = ()

    def log_bounds(self, g: float, confidence: float) -> tuple[float, float]:
        """``(q_lo, q_hi)`` of ``e`` at ``confidence`` (central) for a prediction with this ``g``; infinite when the
        calibration has too few runs for the level.

        Raises ValueError for a confidence outside (0, 1).
        """
        if not (0.0 < confidence < 1.0):
            raise ValueError(f"confidence must be in (0, 1), e.g. 0.8, got {confidence!r}")
        tail = (1.0 - confidence) / 2
        table, n = self._table(g, (1.0 - tail) / tail)
        p_lo, p_hi = tail * (1 + 1 / n) - 1 / n, (1 - tail) * (1 + 1 / n)  # split conformal, n runs
        lo = -math.inf if p_lo < 0 else float(np.interp(p_lo, PROBABILITIES, table))
        hi = math.inf if p_hi > 1 else float(np.interp(p_hi, PROBABILITIES, table))
        return lo, hi

    def _table(self, g: float, need: float = 0.0) -> tuple[tuple[float, ...], int]:
        """The scores of the bin ``g`` falls in, or the pooled ones when the bin holds too few runs (fewer than
        :data:`MIN_RUNS`, or than ``need``: the runs split conformal needs for a finite bound at the level asked)."""
        i = int(np.clip(np.searchsorted(self.edges, max(float(g), 0.0), side="right") - 1, 0, len(self.edges) - 2))
        if self.quantiles[i] is not None and self.n_runs[i] >= need - 1e-9:
            return self.quantiles[i], self.n_runs[i]
        return self.pooled, self.n_total

    def lower(self, prediction: float, smoothed: float, confidence: float) -> float:
        """The one-sided lower bound of the converged loss at ``confidence``: the truth is below it with probability
        at most ``1 - confidence`` (split conformal, the runs exchangeable); 0 with too few runs for the level.

        Raises ValueError for a confidence outside (0, 1).
        """
        if not (0.0 < confidence < 1.0):
            raise ValueError(f"confidence must be in (0, 1), e.g. 0.8, got {confidence!r}")
        table, n = self._table(smoothed / prediction - 1.0 if prediction > 0 else math.inf,
                               confidence / (1.0 - confidence))
        p = (1.0 - confidence) * (1 + 1 / n) - 1 / n
        return 0.0 if p < 0 else prediction * math.exp(float(np.interp(p, PROBABILITIES, table)))

    def interval(self, prediction: float, smoothed: float, confidence: float) -> tuple[float, float]:
        """The calibrated interval of the converged loss around ``prediction`` given the smoothed loss now.

        Example:
            >>> cal = calibrate([("a", 0.0, 0.0), ("b", 0.0, 0.1), ("c", 0.0, -0.1)] * 4)
            >>> lo, hi = cal.interval(2.0, 2.0, 0.5)
            >>> lo <= 2.0 <= hi
            True
        """
        g = smoothed / prediction - 1.0 if prediction > 0 else math.inf
        q_lo, q_hi = self.log_bounds(g, confidence)
        return prediction * math.exp(q_lo) if math.isfinite(q_lo) else 0.0, \
            prediction * math.exp(q_hi) if math.isfinite(q_hi) else math.inf

    def to_json(self, path: str | Path | None = None) -> str:
        """The calibration as versioned JSON text (written to ``path`` when given)."""
        data = {"version": VERSION, "kind": "lightning_scaling.calibration", "feature": "g = s / L_hat - 1",
                "edges": [e if math.isfinite(e) else "inf" for e in self.edges], "probabilities": list(PROBABILITIES),
                "quantiles": [None if q is None else list(q) for q in self.quantiles], "pooled": list(self.pooled),
                "n_runs": list(self.n_runs), "n_total": self.n_total, "sources": list(self.sources)}
        text = json.dumps(data, indent=1)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_json(cls, path_or_text: str | Path) -> "Calibration":
        """Read a calibration written by :meth:`to_json`. Raises ValueError naming the file when it is not one."""
        where = str(path_or_text)
        try:
            text = Path(path_or_text).read_text() if Path(str(path_or_text)).is_file() else str(path_or_text)
            data = json.loads(text)
            if data.get("kind") != "lightning_scaling.calibration" or data.get("version") != VERSION:
                raise ValueError("not a lightning-scaling calibration of version 1")
            if [round(p, 3) for p in data["probabilities"]] != list(PROBABILITIES):
                raise ValueError("its probability grid is not this version's")
            edges = tuple(math.inf if e == "inf" else float(e) for e in data["edges"])
            return cls(edges, tuple(None if q is None else tuple(float(v) for v in q) for q in data["quantiles"]),
                       tuple(float(v) for v in data["pooled"]), tuple(int(n) for n in data["n_runs"]),
                       int(data["n_total"]), tuple(data.get("sources", ())))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            shown = where if len(where) < 200 else where[:200] + "..."
            raise ValueError(f"{shown}: not a calibration JSON (lightning-scaling calibrate ... --out FILE makes "
                             f"one): {err}") from None


def calibrate(samples: Iterable[tuple[str, float, float]], *, edges: Sequence[float] = G_EDGES,
              sources: Sequence[str] = ()) -> Calibration:
    """A :class:`Calibration` from ``(run, g, e)`` samples: one per evaluation of each finished run with a prediction.

    Args:
        samples: the run's name (the exchangeable unit), ``g = s / L_hat - 1`` and ``e = log(L_ref / L_hat)``.
        edges: the bins of ``g``.
        sources: recorded in the result.

    Raises ValueError with fewer than two runs or a non-finite sample.
    """
    rows = [(str(r), float(g), float(e)) for r, g, e in samples]
    if any(not (math.isfinite(g) and math.isfinite(e)) for _, g, e in rows):
        raise ValueError("every sample's g and e must be finite")
    runs = {r for r, _, _ in rows}
    if len(runs) < 2:
        raise ValueError(f"calibration needs at least 2 finished runs with trusted predictions, got {len(runs)}")
    edges = tuple(float(e) for e in edges)

    def table(subset):
        count: dict[str, int] = {}
        for r, _, _ in subset:
            count[r] = count.get(r, 0) + 1
        weights = [1.0 / count[r] for r, _, _ in subset]
        return tuple(weighted_quantiles([e for _, _, e in subset], weights, PROBABILITIES)), len(count)

    pooled, n_total = table(rows)
    quantiles, n_runs = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        subset = [row for row in rows if lo <= max(row[1], 0.0) < hi]
        q, n = table(subset) if subset else (None, 0)
        quantiles.append(q if n >= MIN_RUNS else None)
        n_runs.append(n)
    return Calibration(edges, tuple(quantiles), pooled, tuple(n_runs), n_total, tuple(sources))


@lru_cache(maxsize=1)
def default() -> Calibration:
    """The calibration the package ships (``data/calibration.json``)."""
    return Calibration.from_json(DEFAULT_PATH)


def resolve(calibration: "Calibration | str | Path | None") -> Calibration:
    """A calibration object, a path to its JSON, or None for :func:`default`."""
    if calibration is None:
        return default()
    if isinstance(calibration, Calibration):
        return calibration
    return Calibration.from_json(calibration)


def run_samples(name: str, steps: Sequence[int], losses: Sequence[float], reference: float,
                **replay_inputs) -> list[tuple[str, float, float]]:
    """The ``(run, g, e)`` samples of one finished run: the rule replayed over it without calibration and without
    stopping (``stable_fits`` never met, no data-limited or fallback stop), and at every evaluation with a trusted
    prediction ``L_hat``, ``g = s / L_hat - 1`` and ``e = log(reference / L_hat)``.

    Args:
        name: the run's name (each run weighs 1 in :func:`calibrate`).
        steps, losses: its evaluations.
        reference: its converged loss (e.g. the lowest smoothed loss it reached, or a published asymptote).
        **replay_inputs: ``lr``/``lr_sum``, ``floor`` and rule options (``config``, ...) for
            :func:`lightning_scaling.replay`.

    Raises ValueError for a reference that is not a positive number.
    """
    from dataclasses import replace

    from .stopping import StopConfig, replay

    if not (math.isfinite(reference) and reference > 0):
        raise ValueError(f"the reference converged loss must be a positive number, got {reference!r}")
    config = replace(StopConfig.from_value(replay_inputs.pop("config", None)), stable_fits=10 ** 9,
                     fallback_patience=0)
    result = replay(steps, losses, **{**replay_inputs, "calibration": False, "stop_when_data_limited": False},
                    config=config)
    out = []
    for d in result.decisions:
        c = d.converged_loss
        if d.trusted and c is not None and math.isfinite(c) and c > 0 and d.smoothed_loss is not None:
            out.append((name, d.smoothed_loss / c - 1.0, math.log(reference / c)))
    return out
