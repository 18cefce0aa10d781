"""Tune ExtraEarlyStopping's threshold on finished runs (the recorded corpus, or your own metrics.csv runs).

Each finished run is replayed through the stopping rule (lightning_scaling.replay: exactly the decisions
the live callback would have made) at several thresholds. For each threshold it reports how often the
rule stops, the loss at the stop relative to the run's converged loss (lightning_scaling.corpus.curves.
converged_loss: the lowest smoothed validation loss), how far the predicted converged loss is from it,
and the fraction of the steps to the converged point that were spent. [K] appendix B.2 argues for
1 + alpha_N/alpha_S ~ 1.10 when the compute saved goes to a bigger model.

As in a live run with DataLimitGap, the rule gets L(D) at the data seen as a floor: for the corpus's pydoc
runs, L(D) refitted without the run's own dataset size (lightning_scaling.corpus.ld; ``--no-floor`` to
replay without one: the rule then trusts a prediction only late, and the threshold matters little).

    python examples/tune_threshold.py [--quick] [--no-floor] [--curves DIR] [--thresholds 1.05 1.1 1.2]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from lightning_scaling.corpus.curves import CURVES_DIR, load_curves
from lightning_scaling.corpus.ld import fit_ld, ld_points
from lightning_scaling.corpus.rule_quality import RunQuality, evaluate


def replay_curve(curve, threshold: float, warmup_steps: int = 100, floor_law=None) -> RunQuality:
    """Replay one recorded run at ``threshold`` (time axis: summed LR for decaying schedules, else steps)."""
    return evaluate(curve, threshold=threshold, warmup_steps=warmup_steps, floor_law=floor_law)


def main(argv: list[str] | None = None) -> dict[float, list[RunQuality]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--curves", type=Path, default=CURVES_DIR, help="folder of recorded runs")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[1.02, 1.05, 1.1, 1.15, 1.2, 1.3])
    parser.add_argument("--target", type=float, default=1.10, help="wanted loss at the stop / converged loss")
    parser.add_argument("--quick", action="store_true", help="three runs, two thresholds (tests)")
    parser.add_argument("--no-floor", action="store_true", help="replay without the L(D) floor")
    args = parser.parse_args(argv)
    curves = load_curves(args.curves)
    thresholds = args.thresholds
    if args.quick:
        # one run of each schedule, two thresholds
        picked = {}
        for c in curves:
            picked.setdefault(c.config.get("schedule", "constant"), c)
        curves, thresholds = list(picked.values())[:3], thresholds[:1] + [args.target]
    if not curves:
        raise SystemExit(f"no recorded runs under {args.curves}")
    everything = load_curves(args.curves)
    floors = {c.name: None if args.no_floor or c.config.get("source") != "pydoc"
              else fit_ld(ld_points(everything, exclude_tokens=[c.train_tokens])) for c in curves}
    results = {t: [replay_curve(c, t, floor_law=floors[c.name]) for c in curves] for t in thresholds}
    print(f"{len(curves)} finished runs from {args.curves}")
    print(f"{'threshold':>9} {'stopped':>8} {'loss/conv (median)':>19} {'pred. error (median)':>21} "
          f"{'steps used (median)':>20}")
    best, best_gap = None, float("inf")
    for t, rows in results.items():
        done = [r for r in rows if r.stopped_step is not None]
        med = (lambda xs: float(np.median(xs)) if xs else float("nan"))
        ratio = med([r.stop_ratio for r in done])
        err = med([r.stop_error for r in done if r.stop_error is not None])
        frac = med([r.steps_fraction for r in done])
        print(f"{t:>9.2f} {len(done):>4}/{len(rows):<3} {ratio:>19.3f} {err:>+21.3f} {frac:>20.2f}")
        if done and abs(ratio - args.target) < best_gap:
            best, best_gap = t, abs(ratio - args.target)
    if best is not None:
        print(f"\nthreshold {best:g} stops closest to {args.target:g} x the converged loss on these runs: "
              f"ExtraEarlyStopping(monitor='val_loss', threshold={best:g})")
    return results


if __name__ == "__main__":
    main()
