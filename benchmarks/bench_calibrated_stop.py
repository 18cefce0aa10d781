"""The calibrated interval and the stop it decides, leave one source out, against the uncalibrated rules.

For each held-out source (pydoc, stdlib, spread, Luo et al. 2025's GPU runs: :mod:`lightning_scaling.corpus.sources`)
the calibration is made from the other three (:func:`~lightning_scaling.corpus.sources.held_out_calibrations`) and
every run of the held-out source is replayed with the README's defaults, observing the learning rate as the live
callback does. The fifth source, ``digits`` (MLPs and a CNN on handwritten digits, other training code), calibrated
and chose nothing: it is scored with the shipped calibration, as a user's curves are. Side by side in one run:

* ``old``: the rule as it was (no calibration, ``warmup_steps=0``, ``time_axis="steps"``: what the README's snippet
  did on a run with a warm-up);
* ``power law in steps`` / ``in summed LR``: the naive baselines, the power law alone on one axis (uncalibrated,
  with the rule's trust and stability tests and the warm-up found from the learning rate);
* ``point``: the rule with the warm-up found from the learning rate, stopping at threshold x its point prediction
  (``calibration=False``);
* ``calibrated c``: the same with the held-out calibration at confidence c, stopping at threshold x the interval's
  one-sided lower bound at c (the default is c = 0.8);
* ``calibrated c, no tail guard``: the first of those without the guard against a curve still falling fast
  (``StopConfig(max_tail_exponent=math.inf)``: a stop judged on the calibrated bound alone);
* ``calibrated c, no data-limited stop``: the first of those with ``stop_when_data_limited=False`` (a loss that
  turns up is reported, not stopped);
* ``calibrated c + fallback patience 10``: the first of those with the opt-in ``StopConfig(fallback_patience=10)``,
  a patience stop on the plateau where the rule stays unsure.

Printed per source: the coverage of the interval (the rule's own for ``old``/``point``) of the reference converged
loss at 20/40/60/80% of each run (the latest trusted prediction at or before it), with the exact binomial 95% interval
of that rate over the runs (Clopper-Pearson), and its median relative width; the
runs that stop, the median and largest stop ratio (smoothed loss at the stop / reference), and the unsafe stops
(CPU runs: above 1.2x the reference; Luo's: above 1.15x a loss the run reaches later), and against Lightning's
``EarlyStopping(patience=10, min_delta=0.002)`` replayed on the same points, the median of the stop's steps over its
steps and of the loss at the stop over its loss (runs where both stop; the FLOPs are in proportion to the steps).
Below the table: how many trusted predictions of the default lie at or above a loss the run had already reached.

    .venv/bin/python benchmarks/bench_calibrated_stop.py [--markdown] [--confidence 0.8 0.6] [--held-out stdlib]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

import numpy as np
from scipy.stats import binomtest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from tables import render  # noqa: E402
from lightning_scaling import StopConfig, replay  # noqa: E402
from lightning_scaling.corpus.rule_quality import early_stopping_step, loss_at  # noqa: E402
from lightning_scaling.corpus.sources import (EXTERNAL, SOURCES, held_out_calibrations, load_source,  # noqa: E402
                                              reference, unsafe_stop)

FRACTIONS = (0.2, 0.4, 0.6, 0.8)
#: The baseline: the rule as it was before the calibration, which the README's snippet then ran on a run with a
#: warm-up: no calibration (a stop at threshold x the point prediction), the warm-up fitted, steps as the time axis,
#: no learning rate observed, and no stop on a loss that turned up.
OLD_RULE = {"calibration": False, "warmup_steps": 0, "time_axis": "steps", "stop_when_data_limited": False}
#: The naive baselines' family: the power law alone.
POWER = StopConfig(family="power")
#: The calibrated rule without the guard against a curve still falling fast (``StopConfig.max_tail_exponent``).
NO_TAIL_GUARD = StopConfig(max_tail_exponent=math.inf)
#: The opt-in fallback: a patience stop on the plateau where the calibrated rule stays unsure.
FALLBACK = StopConfig(fallback_patience=10)


def score(curve, options: dict, lr: bool) -> dict:
    """One run under one rule: its interval's coverage and width at each fraction, and its stop."""
    ref, length = reference(curve)
    result = replay(curve.steps, curve.val_loss, **({"lr": curve.lr} if lr else {}), **options)
    out: dict = {"cover": {}, "width": {}, "ratio": None, "unsafe": False, "vs_es": None}
    reached = np.minimum.accumulate(curve.val_loss)  # the lowest loss reached by each evaluation
    trusted = [(i, d) for i, d in enumerate(result.decisions) if d.trusted and d.converged_loss is not None]
    out["above"] = (sum(d.converged_loss >= reached[i] for i, d in trusted), len(trusted))
    for f in FRACTIONS:
        d = next((d for d in reversed(result.decisions) if d.step <= f * length and d.trusted and d.interval), None)
        if d is not None:
            lo, hi = d.interval
            out["cover"][f] = lo <= ref <= hi
            out["width"][f] = (hi - lo) / d.converged_loss
    if result.stopped_step is not None:
        known = loss_at(curve, result.stopped_step)
        out["ratio"] = known / ref
        es = early_stopping_step(curve, patience=10)  # Lightning's EarlyStopping on the same points
        out["vs_es"] = (result.stopped_step / es, known / loss_at(curve, es))
        out["unsafe"] = unsafe_stop(curve, result.stopped_step, known)
    return out


def coverage_ci(covered: list[bool], level: float = 0.95) -> str:
    """The exact (Clopper-Pearson) ``level`` interval of the coverage rate from these runs, as text: with a handful of
    runs per source and fraction, whether a coverage is off its nominal rate or only a small sample."""
    ci = binomtest(sum(covered), len(covered)).proportion_ci(confidence_level=level, method="exact")
    return f"{ci.low:.2f}-{ci.high:.2f}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--confidence", type=float, nargs="+", default=[0.8, 0.6])
    parser.add_argument("--held-out", nargs="+", choices=SOURCES + EXTERNAL, default=list(SOURCES + EXTERNAL),
                        help="the sources to hold out in turn (each is calibrated on all the others; digits, which "
                             "calibrates nothing, with the shipped calibration)")
    args = parser.parse_args(argv)
    calibrations = held_out_calibrations([h for h in args.held_out if h in SOURCES])
    rows, above = [], []
    for held in args.held_out:
        cal = calibrations.get(held)  # None: the shipped calibration (made from every source in SOURCES)
        rules = [("old", OLD_RULE, False),
                 ("power law in steps", {"calibration": False, "config": POWER, "time_axis": "steps"}, True),
                 ("power law in summed LR", {"calibration": False, "config": POWER, "time_axis": "lr_sum"}, True),
                 ("point", {"calibration": False}, True)]
        rules += [(f"calibrated {c:g}", {"calibration": cal, "confidence": c}, True) for c in args.confidence]
        rules += [(f"calibrated {args.confidence[0]:g}, no tail guard",
                   {"calibration": cal, "confidence": args.confidence[0], "config": NO_TAIL_GUARD}, True)]
        rules += [(f"calibrated {args.confidence[0]:g}, no data-limited stop",
                   {"calibration": cal, "confidence": args.confidence[0], "stop_when_data_limited": False}, True)]
        rules += [(f"calibrated {args.confidence[0]:g} + fallback patience {FALLBACK.fallback_patience}",
                   {"calibration": cal, "confidence": args.confidence[0], "config": FALLBACK}, True)]
        curves = load_source(held)
        for label, options, lr in rules:
            scores = [score(c, options, lr) for c in curves]
            cells = [held, label]
            for f in FRACTIONS:
                cov = [s["cover"][f] for s in scores if f in s["cover"]]
                wid = [s["width"][f] for s in scores if f in s["width"]]
                cells.append(f"{np.mean(cov):.2f} ({sum(cov)}/{len(cov)}; {coverage_ci(cov)}), "
                             f"{statistics.median(wid):.3f}" if cov else "--")
            ratios = [s["ratio"] for s in scores if s["ratio"] is not None]
            cells += [f"{len(ratios)}/{len(curves)}", f"{statistics.median(ratios):.3f}" if ratios else "--",
                      f"{max(ratios):.3f}" if ratios else "--", str(sum(s["unsafe"] for s in scores))]
            vs = [s["vs_es"] for s in scores if s["vs_es"] is not None]
            cells += [f"{statistics.median(v[0] for v in vs):.2f}, {statistics.median(v[1] for v in vs):.3f}"
                      if vs else "--"]
            rows.append(cells)
            if label == f"calibrated {args.confidence[0]:g}":
                above.append(f"{held} {sum(s['above'][0] for s in scores)}/{sum(s['above'][1] for s in scores)}")
    head = ["held out", "rule"] + [f"covers at {f:.0%}, width" for f in FRACTIONS] + [
        "stopped", "median stop ratio", "max stop ratio", "unsafe stops",
        "vs EarlyStopping(patience 10): steps, loss (median)"]
    print(f"calibrated on the other sources; confidence {', '.join(f'{c:g}' for c in args.confidence)}")
    print(render(head, rows, args.markdown))
    print(f"\ntrusted predictions at or above a loss the run had already reached (calibrated "
          f"{args.confidence[0]:g}, every evaluation until the stop): {', '.join(above)}")


if __name__ == "__main__":
    main()
