"""How wrong are the stopping rule's predicted converged losses, and which observable features of a decision say so?

Replays every curve of each source through the rule (:func:`lightning_scaling.replay`, exactly the live callback's
decisions) on the corpus benchmark's time axis (steps at a constant learning rate, the summed learning rate
otherwise) with two option sets, no floor (the README's snippet has none):

* ``A``: the README defaults exactly (``replay(steps, losses)`` plus the time axis);
* ``B``: the same with the run's true warm-up (``warmup_steps``: ``bench_stopping.WARMUP`` for the CPU corpus,
  2160 for Luo et al.'s runs);
* ``C``: the README defaults with the learning rate of every step handed to the rule whatever the schedule (as the
  live callback hands it the summed learning rate at every validation), so that the rule's own choices of time axis
  and warm-up, where it makes them, see it.

Sources: ``pydoc`` (``load_curves()``, ``data/curves``), ``stdlib`` (``data/curves_holdout``), ``spread``
(``data/curves_spread``) and ``luo`` (Luo et al. 2025's GPU runs,
:func:`~lightning_scaling.corpus.curves.load_luo_curves`).
The reference converged loss L_ref is :func:`~lightning_scaling.corpus.curves.converged_loss` for the CPU runs (they
converge or turn up) and the authors' fitted L0 for Luo's (which never converge); for every run the one-sided check
"a prediction above the lowest (smoothed) loss the run reaches later is wrong" is reported beside it.

Every decision with a point prediction (trusted or not) is kept, from a replay that does not end at the stop
(``stable_fits`` out of reach: the predictions, intervals and trust do not depend on it, and the decisions up to the
stop are checked to be the stopping replay's). Per decision: the prediction L_hat, the rule's smoothed loss s, its
90% interval, the error ``e = log(L_ref / L_hat)`` and the observable features ``g = s / L_hat - 1`` (how far the
prediction extrapolates below the current loss), the points fitted, the interval's relative width, and whether it
was held at a floor. The fraction of a run is step / :func:`~lightning_scaling.corpus.curves.converged_step` (CPU) or
step / last step (Luo); "at 20%" is the latest decision with a prediction at or before 20% of the run.

Tables:

1. per source and fraction: median |e|, how often the rule's own 90% interval covers L_ref, how often the
   prediction is above a loss the run reaches later, and the share trusted;
2. the 10/50/90% quantiles of e per bin of g (:data:`G_BINS`) per source (each run weighs 1 in a bin, however many
   of its decisions fall there), and the rank correlation of e with each feature;
3. a leave-one-source-out split-conformal check at level :data:`LEVEL`: per held-out source, the package's
   calibration (:func:`~lightning_scaling.calibration.calibrate`, as ``lightning-scaling calibrate`` and
   ``scripts/calibrate_default.py`` make it: each run weighing 1 per bin, a bin with fewer than
   :data:`~lightning_scaling.calibration.MIN_RUNS` calibration runs, or too few for a finite bound at the level,
   takes the pooled quantiles) of e on the other sources' decisions (:func:`conformal_calibration`), then on the
   held-out source the coverage of its :meth:`~lightning_scaling.calibration.Calibration.log_bounds`
   ``[L_hat e^q_lo, L_hat e^q_hi]`` at 20/40/60/80% and its median width ``e^q_hi - e^q_lo`` (relative to L_hat),
   conditioned on nothing, on g, and on the rule's interval width;
4. the stops of every option set (the README defaults: ``A``, and ``C`` for a rule that reads the learning rate):
   the smoothed loss at the stop (mean of the last two evaluations) over L_ref per run, and the unsafe ones: above
   :data:`UNSAFE_CPU` x L_ref (CPU sources), above :data:`UNSAFE_LUO` x a loss the run reaches later (Luo).

    .venv/bin/python benchmarks/bench_calibration.py [--markdown] [--sources pydoc stdlib spread luo]
        [--options A B C] [--limit N]

``--limit N`` keeps the first N runs of each source (a quick look; the smoke test uses it). The rule measured is
the one ``import lightning_scaling`` finds (the first line prints its folder and defaults: option set A is those
defaults); to measure a committed version instead of the working tree, put an export of it first on the path:

    git archive HEAD lightning_scaling | tar -x -C /tmp/head
    PYTHONPATH=/tmp/head .venv/bin/python benchmarks/bench_calibration.py --markdown
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from scipy.stats import spearmanr

import lightning_scaling
from lightning_scaling import StopConfig, StoppingRule, replay
from lightning_scaling.calibration import G_EDGES, MIN_RUNS, Calibration, calibrate, weighted_quantiles
from lightning_scaling.corpus.curves import RecordedCurve, smooth
from lightning_scaling.corpus.rule_quality import loss_at, time_axis
from lightning_scaling.corpus.sources import SOURCES, is_luo, load_source, reference

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_stopping import WARMUP as CORPUS_WARMUP  # noqa: E402
from tables import render  # noqa: E402

OPTION_SETS = ("A", "B", "C")
#: Fractions of a run at which predictions are scored.
FRACTIONS = (0.2, 0.4, 0.6, 0.8)
#: Bin edges of g = s / L_hat - 1 (the last bin is open): the package calibration's.
G_BINS = G_EDGES
#: Bin edges of the rule's own interval width relative to its prediction.
WIDTH_BINS = (0.0, 0.02, 0.05, 0.1, 0.2, math.inf)
#: Coverage level of the split-conformal interval.
LEVEL = 0.8
#: A CPU run's stop is unsafe above this multiple of its converged loss.
UNSAFE_CPU = 1.2
#: A Luo run's stop is unsafe above this multiple of a loss the run reaches later.
UNSAFE_LUO = 1.15
#: A ``stable_fits`` no run reaches: the replay then never stops and keeps every decision.
NEVER = 10 ** 9


@dataclass(frozen=True)
class Decision:
    """One decision of the rule with a point prediction, its reference and its observable features.

    Attributes:
        source, run: where the curve comes from and its name.
        step: the decision's optimizer step; fraction: step over the run's reference length.
        trusted: the rule trusted the prediction.
        prediction: L_hat; smoothed: the rule's smoothed loss s; lo, hi: the rule's 90% interval.
        reference: L_ref; later_min: the lowest smoothed loss after this step (None at the last point).
        n_fitted: the points fitted so far; held_at_floor: the prediction was held at a floor.
    """

    source: str
    run: str
    step: int
    fraction: float
    trusted: bool
    prediction: float
    smoothed: float
    lo: float
    hi: float
    reference: float
    later_min: float | None
    n_fitted: int
    held_at_floor: bool

    @property
    def error(self) -> float:
        """e = log(L_ref / L_hat)."""
        return math.log(self.reference / self.prediction)

    @property
    def g(self) -> float:
        """s / L_hat - 1: how far below the current smoothed loss the prediction extrapolates."""
        return self.smoothed / self.prediction - 1

    @property
    def relative_width(self) -> float:
        """The width of the rule's interval over its prediction."""
        return (self.hi - self.lo) / self.prediction

    @property
    def covered(self) -> bool:
        """The rule's own interval holds L_ref."""
        return self.lo <= self.reference <= self.hi

    @property
    def above_later(self) -> bool | None:
        """The prediction is above a loss the run reaches later (certainly wrong); None at the last point."""
        return None if self.later_min is None else self.prediction > self.later_min


@dataclass(frozen=True)
class RunReplay:
    """One run replayed with one option set: its decisions and its stop.

    Attributes:
        source, run: the curve; decisions: those with a point prediction (:class:`Decision`).
        stopped_step: where the rule stops (None: never); stop_fraction: that over the run's reference length.
        stop_ratio: the smoothed loss at the stop over L_ref; stop_over_later: over the lowest loss reached later.
    """

    source: str
    run: str
    decisions: tuple[Decision, ...]
    stopped_step: int | None
    stop_fraction: float | None
    stop_ratio: float | None
    stop_over_later: float | None


def replay_axis(curve: RecordedCurve, option_set: str = "A") -> dict[str, Any]:
    """The corpus benchmark's time axis (:func:`~lightning_scaling.corpus.rule_quality.time_axis`); for Luo's runs,
    steps for the constant schedules and the summed learning rate for the others; option set ``C``: the learning
    rate always."""
    if option_set == "C":
        return {"lr": curve.lr}
    if is_luo(curve):
        return {} if curve.config["lr_schedule"] == "constant" else {"lr": curve.lr}
    return time_axis(curve)


def rule_options(curve: RecordedCurve, option_set: str) -> dict[str, Any]:
    """The rule's options of an option set: ``A`` and ``C`` none (the README defaults), ``B`` the run's true warm-up;
    always without calibration (this study measures the errors of the point prediction the calibration corrects)."""
    if option_set in ("A", "C"):
        return {"calibration": False}
    if option_set == "B":
        return {"calibration": False,
                "warmup_steps": int(curve.config["warmup_steps"]) if is_luo(curve) else CORPUS_WARMUP}
    raise ValueError(f"option set must be one of {OPTION_SETS}, got {option_set!r}")


def later_minima(values: np.ndarray) -> list[float | None]:
    """At each index, the lowest of ``values`` after it (None at the last).

    Example:
        >>> later_minima(np.array([3.0, 1.0, 2.0]))
        [1.0, 2.0, None]
    """
    out: list[float | None] = [None] * len(values)
    low = math.inf
    for i in range(len(values) - 1, 0, -1):
        low = min(low, float(values[i]))
        out[i - 1] = low
    return out


def replay_run(curve: RecordedCurve, source: str, option_set: str) -> RunReplay:
    """Replay ``curve`` with one option set; keep its decisions with a point prediction and score its stop."""
    ref, length = reference(curve)
    axis, options = replay_axis(curve, option_set), rule_options(curve, option_set)
    full = replay(curve.steps, curve.val_loss, **axis, **options, config=StopConfig(stable_fits=NEVER))
    stop = replay(curve.steps, curve.val_loss, **axis, **options)
    for a, b in zip(stop.decisions, full.decisions):  # the decisions up to the stop do not depend on stable_fits
        if (a.converged_loss, a.interval, a.trusted) != (b.converged_loss, b.interval, b.trusted):
            raise RuntimeError(f"{curve.name}: the never-stopping replay disagrees with the rule at step {a.step}")
    later = later_minima(smooth(curve.val_loss))
    decisions, fitted = [], 0
    for i, d in enumerate(full.decisions):
        fitted += d.smoothed_loss is not None  # every point the rule fitted has a smoothed loss
        if d.converged_loss is None or not math.isfinite(d.converged_loss) or d.converged_loss <= 0:
            continue
        lo, hi = d.interval if d.interval is not None else (math.nan, math.nan)
        decisions.append(Decision(source, curve.name, d.step, d.step / length, bool(d.trusted), d.converged_loss,
                                  float(d.smoothed_loss), lo, hi, ref, later[i], fitted,
                                  "held at the data floor" in d.reason))
    ratio = over_later = frac = None
    if stop.stopped_step is not None:
        known = loss_at(curve, stop.stopped_step)
        ratio, frac = known / ref, stop.stopped_step / length
        low = later[stop.stop_index]
        over_later = None if low is None else known / low
    return RunReplay(source, curve.name, tuple(decisions), stop.stopped_step, frac, ratio, over_later)


def at_fraction(run: RunReplay, fraction: float) -> Decision | None:
    """The latest decision with a prediction at or before ``fraction`` of the run (None: none yet).

    Example:
        >>> at_fraction(RunReplay("s", "r", (), None, None, None, None), 0.5) is None
        True
    """
    return next((d for d in reversed(run.decisions) if d.fraction <= fraction), None)


def bin_of(value: float, edges: Sequence[float]) -> int:
    """The index of the bin ``[edges[i], edges[i + 1])`` holding ``value``; below the first edge: bin 0.

    Example:
        >>> bin_of(0.07, G_BINS), bin_of(-0.1, G_BINS), bin_of(9.0, G_BINS)
        (1, 0, 4)
    """
    return int(np.clip(np.searchsorted(edges, value, side="right") - 1, 0, len(edges) - 2))


def bin_label(i: int, edges: Sequence[float]) -> str:
    return f"[{edges[i]:g}, {edges[i + 1]:g})"


def run_weights(decisions: Sequence[Decision]) -> np.ndarray:
    """A weight per decision such that each run sums to 1 (a run counts once however long it is).

    Example:
        >>> a, b = (Decision("s", run, 1, 0.1, True, 1.0, 1.1, 0.9, 1.1, 1.0, None, 6, False) for run in "ab")
        >>> run_weights([a, a, b]).tolist()
        [0.5, 0.5, 1.0]
    """
    counts: dict[tuple[str, str], int] = {}
    for d in decisions:
        counts[(d.source, d.run)] = counts.get((d.source, d.run), 0) + 1
    return np.array([1.0 / counts[(d.source, d.run)] for d in decisions])


def conformal_calibration(decisions: Sequence[Decision], feature: Callable[[Decision], float] | None,
                          edges: Sequence[float]) -> Calibration | None:
    """The package's split-conformal calibration of e over ``decisions``
    (:func:`lightning_scaling.calibration.calibrate`: each run, a source's run, weighing 1 per bin), binned by
    ``feature`` (None: one bin; a feature that is not finite, a rule's width without an interval, falls in the last
    bin); None with fewer than the 2 runs it needs.

    Example:
        >>> conformal_calibration([], None, (0.0, math.inf)) is None
        True
    """
    def x(d: Decision) -> float:
        value = 0.0 if feature is None else float(feature(d))
        return value if math.isfinite(value) else edges[-2]

    samples = [(f"{d.source}/{d.run}", x(d), d.error) for d in decisions]
    return calibrate(samples, edges=edges) if len({r for r, _, _ in samples}) >= 2 else None


CONDITIONING: dict[str, tuple[Callable[[Decision], float] | None, Sequence[float]]] = {
    "none": (None, (0.0, math.inf)),
    "g": (lambda d: d.g, G_BINS),
    "rule's width": (lambda d: d.relative_width, WIDTH_BINS),
}


def _share(flags: Sequence[bool | None]) -> str:
    known = [f for f in flags if f is not None]
    return "--" if not known else f"{sum(known) / len(known):.2f} ({sum(known)}/{len(known)})"


def _num(v: float | None, spec: str = ".3f") -> str:
    if v is None or math.isnan(v):
        return "--"
    return format(v, spec) if math.isfinite(v) else ("inf" if v > 0 else "-inf")


def accuracy_rows(runs: dict[str, list[RunReplay]], option_set: str) -> list[list[str]]:
    """Table 1: per source and fraction, |e|, the rule's interval coverage, predictions above a later loss."""
    rows = []
    for source, rs in runs.items():
        for f in FRACTIONS:
            ds = [d for d in (at_fraction(r, f) for r in rs) if d is not None]
            rows.append([option_set, source, f"{f:.0%}", f"{len(ds)}/{len(rs)}",
                         _num(statistics.median(abs(d.error) for d in ds) if ds else None),
                         _share([d.covered for d in ds]), _share([d.above_later for d in ds]),
                         _share([d.trusted for d in ds])])
    return rows


def error_by_g_rows(runs: dict[str, list[RunReplay]], option_set: str) -> list[list[str]]:
    """Table 2: the 10/50/90% quantiles of e per bin of g per source (each run weighs 1 per bin)."""
    rows = []
    for source, rs in runs.items():
        ds = [d for r in rs for d in r.decisions]
        for i in range(len(G_BINS) - 1):
            inside = [d for d in ds if bin_of(d.g, G_BINS) == i]
            w = run_weights(inside)
            qs = weighted_quantiles([d.error for d in inside], w, (0.1, 0.5, 0.9)) if inside else [None] * 3
            rows.append([option_set, source, bin_label(i, G_BINS), len({d.run for d in inside}), len(inside),
                         *(_num(q, "+.3f") for q in qs)])
    return rows


def correlation_rows(runs: dict[str, list[RunReplay]], option_set: str) -> tuple[list[list[Any]], list[str]]:
    """Table 2b: Spearman's rank correlation of e with each feature over a source's decisions, and the features."""
    features: dict[str, Callable[[Decision], float]] = {
        "g": lambda d: d.g, "points fitted": lambda d: d.n_fitted, "rule's width": lambda d: d.relative_width,
        "trusted": lambda d: float(d.trusted), "fraction (not observable)": lambda d: d.fraction}
    rows = []
    for source, rs in runs.items():
        ds = [d for r in rs for d in r.decisions]
        e = [d.error for d in ds]
        cells = []
        for f in features.values():
            x = [f(d) for d in ds]
            rho = spearmanr(x, e).statistic if len(ds) > 2 and len(set(x)) > 1 else math.nan
            cells.append(_num(float(rho), "+.2f"))
        rows.append([option_set, source, len(ds), sum(d.held_at_floor for d in ds), *cells])
    return rows, list(features)


def conformal_rows(runs: dict[str, list[RunReplay]], option_set: str, level: float = LEVEL) -> list[list[str]]:
    """Table 3: leave-one-source-out split-conformal coverage and width at each fraction of the held-out runs."""
    rows = []
    for held in runs:
        calibration = [d for source, rs in runs.items() if source != held for r in rs for d in r.decisions]
        pooled = conformal_calibration(calibration, None, CONDITIONING["none"][1])
        unbinned = None if pooled is None else pooled.log_bounds(0.0, level)  # what a bin falls back on
        for name, (feature, edges) in CONDITIONING.items():
            cal = conformal_calibration(calibration, feature, edges)
            if cal is None:
                rows.append([option_set, held, name, "--", *(["--"] * (2 * len(FRACTIONS)))])
                continue
            coverage, width, fallback = [], [], 0
            for f in FRACTIONS:
                ds = [d for d in (at_fraction(r, f) for r in runs[held]) if d is not None]
                hit, widths = 0, []
                for d in ds:
                    lo, hi = cal.log_bounds(0.0 if feature is None else feature(d), level)
                    fallback += feature is not None and (lo, hi) == unbinned
                    hit += lo <= d.error <= hi
                    widths.append(math.exp(hi) - math.exp(lo))
                coverage.append(f"{hit / len(ds):.2f} ({hit}/{len(ds)})" if ds else "--")
                width.append(_num(statistics.median(widths)) if ds else "--")
            rows.append([option_set, held, name, f"{cal.n_total} runs ({fallback})", *coverage, *width])
    return rows


def stop_rows(runs: dict[str, list[RunReplay]], option_set: str) -> list[list[str]]:
    """Table 4: the stops' loss over L_ref per source, and the unsafe ones."""
    rows = []
    for source, rs in runs.items():
        stopped = [r for r in rs if r.stopped_step is not None]
        luo = source == "luo"
        unsafe = [r for r in stopped if (r.stop_over_later or 0.0) > UNSAFE_LUO] if luo else [
            r for r in stopped if r.stop_ratio > UNSAFE_CPU]
        ratios = [r.stop_ratio for r in stopped]
        over = [r.stop_over_later for r in stopped if r.stop_over_later is not None]
        listed = ", ".join(f"{r.run} ({r.stop_ratio:.3f}; at {r.stop_fraction:.0%})" for r in unsafe) or "--"
        rows.append([option_set, source, f"{len(stopped)}/{len(rs)}",
                     _num(statistics.median(ratios) if ratios else None), _num(max(ratios) if ratios else None),
                     _num(statistics.median(over) if over else None),
                     f"{len(unsafe)} (> {UNSAFE_LUO} x later loss)" if luo
                     else f"{len(unsafe)} (> {UNSAFE_CPU} x L_ref)",
                     listed])
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--markdown", action="store_true", help="print markdown tables")
    parser.add_argument("--sources", nargs="+", choices=SOURCES, default=list(SOURCES), help="the sources to replay")
    parser.add_argument("--options", nargs="+", choices=OPTION_SETS, default=list(OPTION_SETS),
                        help="the option sets (A: README defaults, B: with the true warm-up, C: README defaults with "
                             "the learning rate always handed to the rule)")
    parser.add_argument("--limit", type=int, default=None, help="keep the first N runs of each source")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    curves = {s: load_source(s)[: args.limit] for s in args.sources}
    runs = {o: {s: [replay_run(c, s, o) for c in cs] for s, cs in curves.items()} for o in args.options}
    seconds = time.perf_counter() - start
    md = args.markdown
    print(f"{sum(map(len, curves.values()))} runs ({', '.join(f'{s} {len(c)}' for s, c in curves.items())}), "
          f"option sets {', '.join(args.options)}, replayed in {seconds:.1f} s; rule from "
          f"{Path(lightning_scaling.__file__).parent}, defaults {StoppingRule().options()}\n")

    print("## 1. The rule's predictions at fractions of the run (latest prediction at or before)\n")
    print(render(["options", "source", "fraction", "runs with a prediction", "median abs e",
                  "rule's 90% interval covers L_ref", "prediction above a later loss", "trusted"],
                 [r for o in args.options for r in accuracy_rows(runs[o], o)], md))

    print("\n## 2. e = log(L_ref / L_hat) by g = s / L_hat - 1 (quantiles, each run weighing 1 per bin)\n")
    print(render(["options", "source", "g", "runs", "decisions", "e q10", "e q50", "e q90"],
                 [r for o in args.options for r in error_by_g_rows(runs[o], o)], md))
    corr = [correlation_rows(runs[o], o) for o in args.options]
    print("\n### 2b. Spearman's rank correlation of e with each feature (every decision)\n")
    print(render(["options", "source", "decisions", "held at a floor", *corr[0][1]], [r for c in corr for r in c[0]],
                 md))

    print(f"\n## 3. Leave-one-source-out split conformal at level {LEVEL}: coverage and median width "
          "(e^q_hi - e^q_lo) on the held-out source\n")
    print("(calibrated on: the other sources' runs, and in brackets the held-out decisions given the pooled interval: "
          f"their bin had fewer than {MIN_RUNS} calibration runs, or too few for a finite bound at the level; width "
          "inf: too few runs in all for the level)\n")
    print(render(["options", "held out", "conditioned on", "calibrated on", *(f"covers at {f:.0%}" for f in FRACTIONS),
                  *(f"width at {f:.0%}" for f in FRACTIONS)],
                 [r for o in args.options for r in conformal_rows(runs[o], o)], md))

    print("\n## 4. Stops: smoothed loss at the stop / L_ref (unsafe: CPU above "
          f"{UNSAFE_CPU} x L_ref, Luo above {UNSAFE_LUO} x a loss the run reaches later)\n")
    print(render(["options", "source", "stopped", "median ratio", "max ratio", "median loss / later loss", "unsafe",
                  "unsafe runs (ratio; at fraction of the run)"],
                 [r for o in args.options for r in stop_rows(runs[o], o)], md))


if __name__ == "__main__":
    main()
