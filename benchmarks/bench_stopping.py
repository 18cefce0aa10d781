"""The stopping rule on the recorded corpus of real learning curves, against the naive fit and EarlyStopping.

Replays every run of ``lightning_scaling/data/curves`` (``scripts/record_curves.py``) through the rule
(:func:`lightning_scaling.replay`, exactly the live callback's decisions) with the default options and the
variants named below, and prints, side by side in one run:

1. prediction accuracy: median |relative error| of the predicted converged loss at 10/20/30/50% of the
   steps to each run's converged point and at the stop, per schedule, against the naive baseline (a plain
   three-parameter power law in steps, every point after warm-up);
2. stop quality per run: smoothed loss at the stop / converged loss (threshold 1.1; target 1.1 +- 0.02 for
   the median run, +- 0.05 for every run);
3. compute: steps (= FLOPs: fixed model and batch) used by ExtraEarlyStopping, by Lightning's
   ``EarlyStopping`` (patience 5 and 10 validations, min_delta 0.002) and by the full run, and the
   loss each reached.

    .venv/bin/python benchmarks/bench_stopping.py [--variants] [--holdout | --spread]

``--holdout`` scores the out-of-sample runs instead (``lightning_scaling/data/curves_holdout``, recorded by
``scripts/record_curves.py --holdout`` after the rule's options were chosen on the corpus): constant-LR runs on
the standard library's source, with the floors fitted on the runs on that text. ``--spread`` scores the second
out-of-sample set (``curves_spread``, ``record_curves.py --spread``): the same text with every training set and the
validation set drawn from the same 1M characters, the floors fitted on those runs only, and the run-to-run noise of
four of its configurations (``curves_seeds``, ``record_curves.py --seeds``).

The stop-quality table also says how often the prediction at the stop was the floor itself (every family held
there) and the floor's own error at the stops: where the rule stops on the floor, its error at the stop is the
floor's error.

The floor: with DataLimitGap the rule gets L(D) at the distinct tokens seen. ``demo_ld.json`` is fitted
from the converged losses of this very corpus, so for the runs it was fitted on it knows their answer; the
headline rows use instead, for each run, L(D) refitted without that run's dataset size ("held out",
:mod:`lightning_scaling.corpus.ld`), and the rows "no floor" show the rule without any. The rows "L(N, D)" give
the rule the converged loss of a model of the run's size instead, [K] eq 1.5 fitted without the run's own
(N, D) point (``corpus.ld.held_out_overfitting_floor``): the floor of a model too small for its data, with which the
default ``family="auto"`` fits the power law alone (``floor_kind="model"``). Runs on other text
(stdlib) get no floor: the pydoc L(D) does not describe them.

The rows "effective-data family" give the constant-LR runs the opt-in ``family="effective_data"`` (a log law in
[M]'s effective data, :func:`lightning_scaling.curve_families.fit_effective_data_curve`) with ``epoch_steps`` the
run's ``steps_per_epoch``; the cosine and WSD runs keep the default family in those rows (the effective-data
family is fitted in steps, which a decaying schedule's time axis is not).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from lightning_scaling import PowerLaw
from lightning_scaling.corpus.curves import CURVES_DIR, HOLDOUT_DIR, SEEDS_DIR, SPREAD_DIR, converged_loss, load_curves
from lightning_scaling.corpus.ld import fit_ld, held_out_overfitting_floor, ld_points, overfitting_law
from lightning_scaling.corpus.rule_quality import FRACTIONS, early_stopping_step, evaluate, loss_at, naive_errors
from lightning_scaling.flops import six_n

LD = Path(__file__).resolve().parents[1] / "lightning_scaling" / "data" / "demo_ld.json"
WARMUP = 100  # steps: the runs warm up for 50 steps; the first evaluations after it are still transient


def _med(values) -> float:
    values = [abs(v) for v in values if v is not None]
    return statistics.median(values) if values else float("nan")


def _fmt(v, spec=".3f") -> str:
    return "--" if v is None or (isinstance(v, float) and not np.isfinite(v)) else format(v, spec)


def _effective_data(curve) -> dict:
    """The rule options of the effective-data rows: the family at a constant LR, the default under a schedule."""
    if curve.config["schedule"] != "constant":
        return {}
    return dict(family="effective_data", epoch_steps=float(curve.config["steps_per_epoch"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", action="store_true", help="also each family alone (slower)")
    parser.add_argument("--holdout", action="store_true",
                        help="score the out-of-sample runs (data/curves_holdout, the standard library's source) "
                             "instead")
    parser.add_argument("--spread", action="store_true",
                        help="score the out-of-sample runs with training and validation text from one pool "
                             "(data/curves_spread) instead")
    args = parser.parse_args()
    if args.holdout and args.spread:
        parser.error("give --holdout or --spread, not both")
    law = PowerLaw.from_json(LD)
    curves = load_curves(HOLDOUT_DIR if args.holdout else SPREAD_DIR if args.spread else CURVES_DIR)
    source = "stdlib" if args.holdout or args.spread else "pydoc"
    # the floors are fitted on the runs on the scored runs' text (held out: without the scored run's D, or (N, D));
    # for the first out-of-sample runs that includes the main corpus's run on the same text (the same layout)
    pool = curves + (load_curves(source=source) if args.holdout else [])
    held_out = {c.name: (fit_ld(ld_points(pool, exclude_tokens=[c.train_tokens], source=source))
                         if c.config.get("source") == source else None) for c in curves}
    in_sample = {c.name: law if c.config.get("source") == "pydoc" else None for c in curves}
    # L(N, D) ([K] eq 1.5) at the run's N, fitted without the runs at the run's own (N, D)
    held_out_nd = {c.name: held_out_overfitting_floor(pool, c) if c.config.get("source") == source else None
                   for c in curves}
    variants = {"default, floor L(D) held out": ({}, held_out), "default, floor demo_ld.json": ({}, in_sample),
                "default, no floor": ({}, None),
                "default without the data-limited stop, floor held out": (dict(stop_when_data_limited=False), held_out),
                "default (auto: power law), floor L(N, D) held out": (dict(floor_kind="model"), held_out_nd),
                "both families averaged, floor L(N, D) held out": (dict(family="average", floor_kind="model"),
                                                                   held_out_nd),
                "effective-data family, floor L(D) held out": (_effective_data, held_out),
                "effective-data family, no floor": (_effective_data, None)}
    if args.holdout or args.spread:  # demo_ld.json is the other text's law
        del variants["default, floor demo_ld.json"]
    if args.variants:
        for fam in ("power", "exponential", "average"):
            variants[f"{fam}, floor held out"] = (dict(family=fam), held_out)
            variants[f"{fam}, no floor"] = (dict(family=fam), None)
    start = time.perf_counter()
    results = {name: [evaluate(c, warmup_steps=WARMUP, floor_law=None if floors is None else floors[c.name],
                               **(opts(c) if callable(opts) else opts))
                      for c in curves] for name, (opts, floors) in variants.items()}
    naive = {c.name: naive_errors(c, WARMUP) for c in curves}
    seconds = time.perf_counter() - start
    schedules = sorted({c.config["schedule"] for c in curves})
    print(f"{len(curves)} recorded runs, {len(variants)} rule variants + naive baseline, replayed in {seconds:.1f} s\n")

    print("## Prediction accuracy: median |predicted / converged - 1| (runs with a prediction / runs)\n")
    head = " | ".join(f"{int(f * 100)}%" for f in FRACTIONS)
    print(f"| schedule | method | {head} | at the stop |\n|---|---|" + "---|" * (len(FRACTIONS) + 1))
    for sched in schedules:
        runs = [c.name for c in curves if c.config["schedule"] == sched]
        cells = " | ".join(f"{_med([naive[r][f] for r in runs]):.3f} "
                           f"({sum(naive[r][f] is not None for r in runs)}/{len(runs)})"
                           for f in FRACTIONS)
        print(f"| {sched} | naive power law in steps | {cells} | -- |")
        for name, qs in results.items():
            q = [x for x in qs if x.schedule == sched]
            cells = " | ".join(f"{_med([x.errors[f] for x in q]):.3f} "
                               f"({sum(x.errors[f] is not None for x in q)}/{len(q)})"
                               for f in FRACTIONS)
            stop = _med([x.stop_error for x in q])
            print(f"| {sched} | rule: {name} | {cells} | {stop:.3f} "
                  f"({sum(x.stop_error is not None for x in q)}/{len(q)}) |")

    print("\n## Stop quality (threshold 1.1): smoothed loss at the stop / converged loss\n")
    print("| variant | stopped | median ratio | within 1.1 +- 0.05 | on the floor | floor's error | "
          "runs outside (ratio) | data-limited, no stop |")
    print("|---|---|---|---|---|---|---|---|")
    for name, qs in results.items():
        ratios = [x.stop_ratio for x in qs if x.stop_ratio is not None]
        outside = [f"{x.run} ({x.stop_ratio:.3f})" for x in qs
                   if x.stop_ratio is not None and abs(x.stop_ratio - 1.1) > 0.05]
        never = [x.run for x in qs if x.stop_ratio is None and x.data_limited]
        floored = [x for x in qs if x.stop_floor_error is not None]
        print(f"| {name} | {len(ratios)}/{len(qs)} | {_fmt(statistics.median(ratios) if ratios else None)} | "
              f"{sum(abs(r - 1.1) <= 0.05 for r in ratios)}/{len(ratios)} | "
              f"{sum(x.stopped_on_floor for x in floored)}/{len(floored)} | "
              f"{_fmt(_med([x.stop_floor_error for x in floored]) if floored else None)} | "
              f"{', '.join(outside) or '--'} | "
              f"{', '.join(never) or '--'} |")
    print("\n(on the floor: stops whose prediction was the floor itself, every family held there; floor's error: "
          "median |floor at the stop / converged - 1| over the stops with a floor)")

    first = next(iter(results))
    print(f"\n## Compute per run (rule: {first}; FLOPs = 6N x tokens, [K] 2.1)\n")
    print("| run | schedule | converged (step) | rule stop: step, loss/conv, error | EarlyStopping p=5 | p=10 | "
          "full run | rule FLOPs / full | rule FLOPs / ES p=10 |")
    print("|---|---|---|---|---|---|---|---|---|")
    saved_full, saved_es = [], []
    for c, q in zip(curves, results[first]):
        conv = q.converged_loss
        es5, es10, full = early_stopping_step(c, 5), early_stopping_step(c, 10), q.full_steps
        flop_step = six_n(c.n_params) * c.config["tokens_per_step"]
        error = "no prediction" if q.stop_error is None else f"{q.stop_error:+.3f}"  # a data-limited stop may have none
        rule = (f"{q.stopped_step}, {q.stop_ratio:.3f}, {error}" if q.stopped_step is not None
                else ("no stop (data-limited)" if q.data_limited else "no stop"))
        used = q.stopped_step if q.stopped_step is not None else full
        saved_full.append(used / full)
        saved_es.append(used / es10)
        print(f"| {c.name} | {q.schedule} | {conv:.4f} ({q.converged_step}) | {rule} | "
              f"{es5}, {loss_at(c, es5) / conv:.3f} | {es10}, {loss_at(c, es10) / conv:.3f} | "
              f"{full} ({full * flop_step:.2e} FLOP) | {used / full:.2f} | {used / es10:.2f} |")
    stopped = [q for q in results[first] if q.stopped_step is not None]
    print(f"\nmedian FLOPs of the rule (a run that never stops counts as the full run): "
          f"{statistics.median(saved_full):.2f} of the full run, {statistics.median(saved_es):.2f} of EarlyStopping "
          f"(patience 10); steps to the stop / steps to the converged point, median over the {len(stopped)} stops: "
          f"{_fmt(statistics.median([q.steps_fraction for q in stopped]) if stopped else None, '.2f')} "
          f"([K] B.13 predicts ~0.12-0.13 of the steps to within 2% for an ideal power law)")
    print_law_fits(pool, source, seeds=args.spread)


def print_law_fits(pool, source: str, seeds: bool = False) -> None:
    """How well the floors' laws fit the runs they are fitted on (in sample): the bound on the error of a rule that
    stops on the floor; with ``seeds``, how far apart the converged losses of one configuration land across seeds."""
    points = ld_points(pool, source=source)
    ld = fit_ld(points)
    ld_miss = [abs(ld(d) / loss - 1) for d, loss in zip(points.tokens, points.losses)]
    nd = overfitting_law(pool, source=source)
    fitted = [c for c in pool if c.config.get("source") == source and c.config.get("schedule") == "constant"
              and c.config.get("ended_by") == "patience" and c.train_tokens >= points.tokens[0]]
    nd_miss = [abs(nd(c.n_params, c.train_tokens) / converged_loss(c) - 1) for c in fitted]
    print(f"\n## The laws in sample\n\nL(D) on the best run of {len(ld_miss)} dataset sizes: max |misfit| "
          f"{max(ld_miss):.3f}; L(N, D) ([K] eq 1.5) on {len(nd_miss)} runs: median |misfit| "
          f"{statistics.median(nd_miss):.3f}, max {max(nd_miss):.3f}")
    if not seeds:
        return
    by_name = {c.name: c for c in pool}
    print("\n## Run-to-run noise (curves_seeds: the same data, seeds 0, 1, 2)\n\n| configuration | converged losses | "
          "max / min - 1 | relative sd |\n|---|---|---|---|")
    repeats: dict[str, list[float]] = {}
    for c in load_curves(SEEDS_DIR):
        base = c.name.rsplit("_seed", 1)[0]
        repeats.setdefault(base, [converged_loss(by_name[base])]).append(converged_loss(c))
    for base, losses in sorted(repeats.items()):
        v = np.array(losses)
        print(f"| {base} | {', '.join(f'{x:.4f}' for x in v)} | {v.max() / v.min() - 1:.3f} | "
              f"{v.std(ddof=1) / v.mean():.4f} |")


if __name__ == "__main__":
    main()
