"""Sweeps: the joint (pooled) prediction of a run's converged loss against the single-run prediction of today.

The sweep order a user follows is simulated on the recorded runs (:mod:`lightning_scaling.corpus.sources`): per data
identity (Luo et al. 2025's GPU runs: one data set, 25M then 100M, the nine schedules of each size in file order; the
CPU sets pydoc, stdlib and spread (with its seeds): one identity per text and dataset size D, the runs in order of N,
small first), each earlier run enters the store truncated where the project's rule stops it (``replay`` with the
default options and the run's learning rate; the whole recording when it never stops). For the k-th run, at 20% and
50% of its reference length (the step of its converged loss; Luo's: the last step), with its own prefix joining the
fit:

* ``single``: the rule's prediction today, ``replay`` observing the learning rate, without stopping (``stable_fits``
  never met), its decision's ``converged_loss`` and ``interval``, calibrated **leave one source out** as the pooled one
  is (:func:`~lightning_scaling.corpus.sources.held_out_calibrations`: the shipped calibration has seen every
  source);
* ``pooled``: :func:`lightning_scaling.sweep.fit_sweep` over the k-1 earlier records and the prefix, its
  ``converged_loss`` at the run's N and the interval at the same confidence (0.8), calibrated split conformal **leave
  one source out**: the log-ratio scores of the pooled predictor on the other three sources (runs as the units), never
  on the source it is scored on.

The fifth source, ``digits`` (classifiers from other training code; one identity per label noise and training-set
size, the MLP of 3k parameters, the CNN of 38k and the MLP of 85k in that order), calibrates nothing: it is scored
with the shipped single-run calibration and the pooled one made from the four sources, and "all" leaves it out.

Printed: per source and k (1, 2, >= 3 earlier-run counts k-1 = 0, 1, >= 2), the cases, the share with a prediction,
the coverage of the reference converged loss (CPU runs: the lowest smoothed validation loss; Luo's: the authors' L0)
and the median relative width (high - low) / L_hat, single and pooled side by side; then the point error of the
joint forms (:data:`~lightning_scaling.sweep.FORMS`) and the fit time of 100 runs.

    .venv/bin/python benchmarks/bench_sweep.py [--markdown] [--forms kaplan power] [--write-calibration PATH]

``--write-calibration PATH`` also writes the pooled predictor's calibration made from all four sources, the earlier runs
stopped by the shipped single-run calibration as a user's are (the shipped one is
:data:`lightning_scaling.sweep.CALIBRATION_PATH`).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from tables import render  # noqa: E402
from lightning_scaling import StopConfig, replay  # noqa: E402
from lightning_scaling.calibration import calibrate  # noqa: E402
from lightning_scaling.calibration import default as default_calibration  # noqa: E402
from lightning_scaling.errors import FitError  # noqa: E402
from lightning_scaling.corpus.curves import SEEDS_DIR, load_curves  # noqa: E402
from lightning_scaling.corpus.rule_quality import early_stopping_step, loss_at  # noqa: E402
from lightning_scaling.corpus.sources import (EXTERNAL, SOURCES, held_out_calibrations, is_luo,  # noqa: E402
                                              load_source, reference, unsafe_stop)
from lightning_scaling.sweep import FORMS, fit_sweep, pooled_fit, record_from_curve, sweep_floor  # noqa: E402

FRACTIONS = (0.2, 0.5)
CONFIDENCE = 0.8
#: The rule without stopping: its predictions at every evaluation (what a run that has not stopped yet sees).
NO_STOP = StopConfig(stable_fits=10 ** 9)


def data_identity(source: str, curve) -> str:
    """The data a run trains on: Luo et al.'s one data set; for the CPU runs the text and the dataset size D."""
    if is_luo(curve):
        return "luo2025"
    noise = f":label noise {curve.config['label_noise']}" if "label_noise" in curve.config else ""
    return f"{source}:{curve.config.get('source')}:{curve.config['train_tokens']}{noise}"


def sweeps(sources=SOURCES) -> list[tuple[str, str, list]]:
    """``(source, data identity, curves in sweep order)``: small models first."""
    out = []
    for source in sources:
        curves = load_source(source) + (load_curves(SEEDS_DIR) if source == "spread" else [])
        by_data: dict[str, list] = {}
        for c in curves:
            by_data.setdefault(data_identity(source, c), []).append(c)
        for data, members in by_data.items():
            out.append((source, data, sorted(members, key=lambda c: (c.n_params, c.name))
                        if source != "luo" else members))
    return out


def record(curve, data: str, until_step: int | None = None, run_id: str | None = None):
    return record_from_curve(run_id or curve.name, curve.steps, curve.val_loss, n_params=curve.n_params,
                             lr=curve.lr, until_step=until_step, data=data,
                             dataset_size=curve.config.get("train_tokens"),
                             tokens_per_step=curve.config.get("tokens_per_step"),
                             config={"schedule": curve.config.get("schedule"),
                                     "warmup_steps": curve.config.get("warmup_steps", curve.config.get("warmup"))})


def at_fraction(curve, f: float) -> int:
    """The index of the last evaluation at or before ``f`` of the run's reference length."""
    length = reference(curve)[1]
    idx = np.nonzero(curve.steps <= f * length)[0]
    return int(idx[-1]) if idx.size else 0


def alone_stop(source: str, data: str, curve, cal, stops: dict) -> int | None:
    """Where the rule with calibration ``cal`` stops ``curve`` on its own (None: it does not), replayed once per run
    and kept in ``stops`` (shared by :func:`simulate` and :func:`simulate_stops`)."""
    key = (source, data, curve.name, id(cal))
    if key not in stops:
        stops[key] = replay(curve.steps, curve.val_loss, lr=curve.lr, calibration=cal).stopped_step
    return stops[key]


def simulate(sources=SOURCES, forms=(FORMS[0],), calibrations=None, stops: dict | None = None) -> list[dict]:
    """Every (run, fraction) case: the single-run decision (calibrated with ``calibrations[source]``; default
    ``held_out_calibrations()``) and each form's pooled point prediction. Each earlier run enters the store where
    the rule with the same calibration stops it (:func:`alone_stop`, kept in ``stops``)."""
    calibrations = source_calibrations() if calibrations is None else calibrations
    stops = {} if stops is None else stops
    cases = []
    for source, data, curves in sweeps(sources):
        store = []
        cal = calibrations[source]
        for k, curve in enumerate(curves, start=1):
            ref = reference(curve)[0]
            single = replay(curve.steps, curve.val_loss, lr=curve.lr, calibration=cal, config=NO_STOP).decisions
            for f in FRACTIONS:
                i = at_fraction(curve, f)
                d = single[i]
                smoothed = d.smoothed_loss if d.smoothed_loss is not None else float(curve.val_loss[i])
                case = {"source": source, "data": data, "run": curve.name, "k": k, "f": f, "ref": ref,
                        "n": curve.n_params, "s": smoothed, "single": None, "pooled": {}}
                if d.converged_loss is not None and d.interval is not None:
                    case["single"] = (d.converged_loss, d.interval)
                prefix = record(curve, data, until_step=int(curve.steps[i]))
                for form in forms:
                    fit = fit_sweep(store + [prefix], form=form)
                    try:
                        point, _ = fit.converged_loss(curve.n_params, curve.config.get("train_tokens"),
                                                      smoothed_loss=smoothed)
                        case["pooled"][form] = point if point > 0 else None
                    except FitError:  # no fit, or the prefix too short and no law of N to extrapolate with
                        case["pooled"][form] = None
                cases.append(case)
            store.append(record(curve, data, until_step=alone_stop(source, data, curve, cal, stops)))
    return cases


#: The stops compared: the run alone, with the sweep's floor for this run's size (what DataLimitGap(sweep=) hands
#: ExtraEarlyStopping), and with a floor for any model (``sweep_floor(..., n_params=None)``, the best earlier size's
#: converged loss even when this run is larger), and with the limit E of the form that extrapolates in N
#: (``kaplan_strict``, eq 1.6's own law of N) for any run.
STOP_MODES = ("alone", "sweep floor", "any-model floor", "kaplan_strict E")


def simulate_stops(sources=SOURCES, calibrations=None, stops: dict | None = None) -> list[dict]:
    """Every run's stop in the same sweep order (:data:`STOP_MODES`): the floor is
    :func:`~lightning_scaling.sweep.sweep_floor` of the earlier runs' joint fit (this run left out, constant over
    the run), replayed with the README's defaults and the source's held-out calibration; and Lightning's
    EarlyStopping(patience=10) on the same points. ``stops``: the runs' own stops already replayed
    (:func:`alone_stop`)."""
    calibrations = source_calibrations() if calibrations is None else calibrations
    known = {} if stops is None else stops
    out = []
    for source, data, curves in sweeps(sources):
        store = []
        cal = calibrations[source]
        for k, curve in enumerate(curves, start=1):
            ref = reference(curve)[0]
            fit = pooled_fit(store, run_id=curve.name, data=data)
            d = curve.config.get("train_tokens")
            others = [r for r in store if r.data == data]
            strict = fit_sweep(others, form="kaplan_strict") if len(others) >= 2 else None
            limit = sweep_floor(strict, d)
            floors = {"alone": None, "sweep floor": sweep_floor(fit, d, n_params=curve.n_params),
                      "any-model floor": sweep_floor(fit, d),
                      "kaplan_strict E": limit if limit is not None and limit.source == "limit" else None}
            alone = alone_stop(source, data, curve, cal, known)
            stops = {mode: alone if floor is None else replay(curve.steps, curve.val_loss, lr=curve.lr,
                                                              calibration=cal, floor=floor.value).stopped_step
                     for mode, floor in floors.items()}
            out.append({"source": source, "run": curve.name, "k": k, "ref": ref, "floors": floors, "stops": stops,
                        "es": None if is_luo(curve) else early_stopping_step(curve, patience=10),
                        "last": int(curve.steps[-1]),
                        "ratio": {m: None if st is None else loss_at(curve, st) / ref for m, st in stops.items()},
                        "unsafe": {m: st is not None and unsafe_stop(curve, st, loss_at(curve, st))
                                   for m, st in stops.items()}})
            store.append(record(curve, data, until_step=stops["alone"]))
    return out


def stop_table(stops, markdown: bool) -> str:
    """Per source, k and mode: the runs that stop, the median and range of the stop ratio (loss at the stop over
    the reference) and how many are within 1.1 +- 0.05, the unsafe stops (CPU: above 1.2x; Luo's: above 1.15x a loss
    the run reaches later), and the steps against the run alone and against EarlyStopping (medians; a run that
    never stops counts its last step)."""
    rows = []
    for source in [s for s in SOURCES + EXTERNAL if any(c["source"] == s for c in stops)] + ["all"]:
        for kb in ("1", "2", ">=3"):
            sel = [c for c in stops if _in(c, source) and k_bucket(c["k"]) == kb]
            for mode in STOP_MODES if kb == ">=3" else STOP_MODES[:1]:
                if not sel:
                    continue
                r = [c["ratio"][mode] for c in sel if c["ratio"][mode] is not None]
                unsafe = sum(c["unsafe"][mode] for c in sel)
                steps = [(c["stops"][mode] or c["last"]) / (c["stops"]["alone"] or c["last"]) for c in sel]
                es = [(c["stops"][mode] or c["last"]) / c["es"] for c in sel if c["es"]]
                rows.append([source, kb, mode, len(sel), sum(c["floors"][mode] is not None for c in sel),
                             f"{len(r)}/{len(sel)}", f"{statistics.median(r):.3f}" if r else "-",
                             f"{min(r):.3f}-{max(r):.3f}" if r else "-", sum(abs(x - 1.1) <= 0.05 for x in r),
                             unsafe, f"{statistics.median(steps):.2f}",
                             f"{statistics.median(es):.2f}" if es else "-"])
    header = ["source", "k", "stop", "runs", "with a floor", "stopped", "median stop ratio", "range",
              "in 1.1 +- 0.05", "unsafe", "steps / alone", "steps / EarlyStopping"]
    return render(header, rows, markdown)


def samples(cases, form: str) -> list[tuple[str, float, float]]:
    """The ``(run, g, e)`` calibration samples of the pooled predictor."""
    out = []
    for c in cases:
        p = c["pooled"].get(form)
        if p is not None and p > 0:
            out.append((f"{c['source']}/{c['run']}", c["s"] / p - 1.0, math.log(c["ref"] / p)))
    return out


def pooled_intervals(cases, form: str) -> None:
    """Each case's pooled interval, calibrated leave one source out (stored in ``case["pooled_interval"]``); the
    :data:`EXTERNAL` source's on every other, and it calibrates none."""
    for held in {c["source"] for c in cases}:
        cal = calibrate(samples([c for c in cases if c["source"] not in (held,) + EXTERNAL], form))
        for c in cases:
            if c["source"] != held:
                continue
            p = c["pooled"].get(form)
            if p is None:
                c["pooled_interval"] = None
                continue
            q_lo, q_hi = cal.log_bounds(c["s"] / p - 1.0, CONFIDENCE)
            c["pooled_interval"] = (p, (p * math.exp(q_lo), p * math.exp(q_hi)))


def _stats(items) -> tuple[str, str, str]:
    """(predicted share, coverage, median relative width) of ``(interval or None, reference)`` items."""
    got = [(pi, r) for pi, r in items if pi is not None]
    if not items:
        return "-", "-", "-"
    share = f"{len(got)}/{len(items)}"
    if not got:
        return share, "-", "-"
    cov = sum(lo <= r <= hi for (p, (lo, hi)), r in got) / len(got)
    width = statistics.median(_width(pi) for pi, r in got)
    return share, f"{cov:.0%}", f"{width:.3f}"


def _in(case, source: str) -> bool:
    """Whether a case belongs to the row of ``source``; "all" is the four calibration sources (not :data:`EXTERNAL`)."""
    return case["source"] == source if source != "all" else case["source"] not in EXTERNAL


def source_calibrations() -> dict:
    """The single-run calibration each source is scored with: the other three's for the four
    (:func:`~lightning_scaling.corpus.sources.held_out_calibrations`), the shipped one for :data:`EXTERNAL`."""
    return {**held_out_calibrations(), **{name: default_calibration() for name in EXTERNAL}}


def k_bucket(k: int) -> str:
    return "1" if k == 1 else "2" if k == 2 else ">=3"


def interval_table(cases, markdown: bool) -> str:
    rows = []
    for source in [s for s in SOURCES + EXTERNAL if any(c["source"] == s for c in cases)] + ["all"]:
        for f in FRACTIONS:
            for kb in ("1", "2", ">=3"):
                sel = [c for c in cases if _in(c, source) and c["f"] == f and k_bucket(c["k"]) == kb]
                if not sel:
                    continue
                s = _stats([(c["single"], c["ref"]) for c in sel])
                p = _stats([(c.get("pooled_interval"), c["ref"]) for c in sel])
                rows.append([source, f"{f:.0%}", kb, len(sel), s[0], s[1], s[2], p[0], p[1], p[2],
                             equal_coverage(sel)])
    header = ["source", "at", "k", "cases", "single: predicted", "coverage", "median width",
              "pooled: predicted", "coverage", "median width", "at the pooled coverage: single / pooled width"]
    return render(header, rows, markdown)


def equal_coverage(sel) -> str:
    """The widths at equal coverage, on the cases where both predict: the pooled interval's coverage c there, and the
    width the single-run prediction needs to cover the same share, ``e^q - e^-q`` with ``q`` the c-quantile of its
    ``|log(L_ref / L_hat)|`` over those cases (an interval fitted to the cases it is scored on: it favours the
    single-run prediction), over the pooled interval's median width. Text: "ratio (c, cases)"."""
    both = [c for c in sel if c["single"] is not None and c["single"][0] > 0 and c.get("pooled_interval")]
    if not both:
        return "-"
    cover = sum(lo <= c["ref"] <= hi for c in both for _, (lo, hi) in [c["pooled_interval"]]) / len(both)
    if cover == 0:
        return f"- (0%, {len(both)})"
    q = float(np.quantile([_log_error(c["ref"], c["single"][0]) for c in both], cover, method="inverted_cdf"))
    pooled = statistics.median(_width(c["pooled_interval"]) for c in both)
    return f"{(math.exp(q) - math.exp(-q)) / pooled:.1f}x ({cover:.0%}, {len(both)})" if pooled > 0 else "-"


def _width(pi) -> float:
    p, (lo, hi) = pi
    return (hi - lo) / p if p > 0 else math.inf


def _log_error(ref: float, prediction: float) -> float:
    return abs(math.log(ref / prediction)) if prediction > 0 else math.inf


def error_table(cases, forms, markdown: bool) -> str:
    rows = []
    for f in FRACTIONS:
        for kb in ("2", ">=3"):
            sel = [c for c in cases if c["f"] == f and k_bucket(c["k"]) == kb and _in(c, "all")]
            cells = []
            singles = [_log_error(c["ref"], c["single"][0]) for c in sel if c["single"] is not None]
            cells.append(f"{statistics.median(singles):.1%} ({len(singles)})" if singles else "-")
            for form in forms:
                errs = [abs(math.log(c["ref"] / c["pooled"][form])) for c in sel if c["pooled"].get(form)]
                cells.append(f"{statistics.median(errs):.1%} ({len(errs)})" if errs else "-")
            rows.append([f"{f:.0%}", kb, len(sel)] + cells)
    return render(["at", "k", "cases", "single |log error|"] + [f"{form} |log error|" for form in forms],
                  rows, markdown)


def fit_time(n_runs: int = 100, repeats: int = 3) -> tuple[float, float]:
    """Seconds to fit ``n_runs`` synthetic runs (10 sizes, 200 evaluations each, from a known [K] eq 1.6 with E):
    the best of ``repeats``, and the point error of one size."""
    rng = np.random.default_rng(0)
    e, n_c, a_n, s_c, a_s = 1.5, 1e6, 0.3, 2000.0, 0.7
    steps = np.arange(50, 10001, 50)
    sizes = np.geomspace(1e4, 1e7, 10)
    recs = []
    for i in range(n_runs):
        n = sizes[i % sizes.size]
        loss = (e + ((n_c / n) ** (a_n / a_s) + s_c / steps) ** a_s) * np.exp(rng.normal(0, 0.005, steps.size))
        recs.append(record_from_curve(f"r{i}", steps, loss, n_params=n, data="synthetic"))
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fit = fit_sweep(recs)
        best = min(best, time.perf_counter() - t0)
    n = sizes[3]
    return best, abs(fit.point(n) / (e + (n_c / n) ** a_n) - 1)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--forms", nargs="+", default=list(FORMS), choices=FORMS)
    parser.add_argument("--sources", nargs="+", default=list(SOURCES + EXTERNAL), choices=SOURCES + EXTERNAL)
    parser.add_argument("--write-calibration", metavar="PATH",
                        help="write the pooled predictor's calibration from all sources to PATH")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    calibrations, alone = source_calibrations(), {}
    cases = simulate(args.sources, tuple(args.forms), calibrations, alone)
    form = args.forms[0]
    pooled_intervals(cases, form)
    print(f"## Pooled ({form}) against single-run, confidence {CONFIDENCE}, pooled calibrated leave one source out\n")
    print(interval_table(cases, args.markdown))
    print("\n## Median |log(L_ref / L_hat)| of the point predictions (cases with one)\n")
    print(error_table(cases, args.forms, args.markdown))
    print("\n## The stop with the sweep's floor (DataLimitGap(sweep=...)) against the run alone\n")
    print(stop_table(simulate_stops(args.sources, calibrations, alone), args.markdown))
    seconds, err = fit_time()
    print(f"\nfit of 100 synthetic runs (10 sizes x 200 evaluations, form {FORMS[0]}): {seconds:.3f} s "
          f"(best of 3); converged-loss error at one size {err:.2%}")
    if args.write_calibration:  # the earlier runs stopped as a user's are, by the shipped calibration
        own = [name for name in args.sources if name in SOURCES]  # the external source calibrates nothing
        shipped = simulate(own, (form,), {name: default_calibration() for name in SOURCES})
        calibrate(samples(shipped, form), sources=own).to_json(args.write_calibration)
        print(f"\ncalibration of the pooled predictor -> {args.write_calibration}")
    print(f"\n{time.perf_counter() - t0:.0f} s in all")


if __name__ == "__main__":
    main()
