"""How well does :func:`lightning_scaling.forecasting.forecast` forecast a run's final loss from a prefix of it?

On every recorded run with a decaying schedule (Luo et al. 2025's 18 GPU runs, 25M and 100M, nine schedules; the
CPU corpus' cosine and WSD runs, ``load_curves()`` with ``schedule`` "cosine" or "wsd"), from the points at or before
25% and 50% of the run's steps, forecast its final loss under its own schedule (the recorded LR of the later steps
is the plan), for each law (``mpl``, ``tissue``, and ``power``, the power law in summed LR alone, the baseline).

Held out by group (one model on one data stream: Luo 25M, Luo 100M, each CPU model and data size): the drop term's
prior (:func:`~lightning_scaling.forecasting.fit_prior`) is fitted on the full runs of the other groups of the same
source (the other size), and the interval's
split-conformal calibration (:func:`~lightning_scaling.forecasting.calibrate_forecast` machinery) on the other groups'
forecast errors, each made with their own held-out prior. The truth is the mean of a run's last three losses,
against the forecast's mean at those steps.

Columns: runs; trusted (forecasts the function trusts); the median and largest relative error |L_hat / L - 1| over
the trusted forecasts; the coverage of the calibrated 80% interval and its median relative width (hi - lo) / L_hat;
the mean time of one forecast.

    .venv/bin/python benchmarks/bench_forecast.py [--markdown] [--laws mpl tissue power] [--prior]
        [--write-calibration PATH]

``--prior`` prints the priors fitted on every group (the shipped ``DEFAULT_PRIORS``); ``--write-calibration`` writes
the calibration from every group's held-out errors (the shipped ``data/forecast_calibration.json``).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

from lightning_scaling.calibration import calibrate
from lightning_scaling.corpus.curves import load_curves, load_luo_curves
from lightning_scaling.forecasting import G_EDGES, LAWS, Run, fit_prior, prefix_forecasts

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tables import render  # noqa: E402

#: The prefixes scored, as fractions of a run's steps.
PREFIXES = (0.25, 0.5)
#: The prefixes whose errors calibrate the interval (the scored ones among them).
CALIBRATION_FRACTIONS = (0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7)
#: The interval's level.
LEVEL = 0.8


def recorded_runs() -> list[Run]:
    """Every recorded run with a decaying schedule, as :class:`~lightning_scaling.forecasting.Run` with its group."""
    runs = [Run(c.name, c.steps, c.val_loss, c.lr, group=f"luo {c.config['model']}") for c in load_luo_curves()]
    for c in load_curves():
        if c.config.get("schedule") in ("cosine", "wsd"):
            runs.append(Run(c.name, c.steps, c.val_loss, c.lr,
                            group=f"pydoc {c.config['model']} D={c.config['train_tokens']}"))
    return runs


def held_out(runs: list[Run], law: str) -> dict[str, list[tuple[Run, float, object, float, float]]]:
    """Per group: ``(run, fraction, forecast, truth, seconds)`` with the prior fitted on the other groups of its source
    (the other size: the drop's size in nats does not carry from the CPU corpus to the GPU runs), or on every other
    group when it is its source's only one."""
    out: dict[str, list] = {}
    for group in sorted({r.group for r in runs}):
        source = group.split()[0]
        same = [r for r in runs if r.group != group and r.group.split()[0] == source]
        others = same or [r for r in runs if r.group != group]
        prior = fit_prior(others, law)
        rows = []
        for run in (r for r in runs if r.group == group):
            t0 = time.perf_counter()
            results = prefix_forecasts(run, CALIBRATION_FRACTIONS, law=law, prior=prior, calibration=False)
            seconds = (time.perf_counter() - t0) / len(CALIBRATION_FRACTIONS)
            rows += [(run, frac, f, truth, seconds) for frac, f, truth in results]
        out[group] = rows
    return out


def samples(rows) -> list[tuple[str, float, float]]:
    """The ``(run, g, e)`` calibration samples of trusted forecasts (as :func:`forecast_samples` makes them)."""
    out = []
    for run, _, f, truth, _ in rows:
        if f.trusted and truth > 0:
            s = float(np.mean(run.losses[run.steps <= f.step][-3:]))
            out.append((run.name, s / f.final_loss - 1.0, math.log(truth / f.final_loss)))
    return out


def table(runs: list[Run], laws) -> tuple[list[list], dict]:
    rows, cal_samples = [], {}
    for law in laws:
        per_group = held_out(runs, law)
        cal_samples[law] = [s for g in per_group.values() for s in samples(g)]
        scored = {}
        for group, grows in per_group.items():
            cal = calibrate([s for g, other in per_group.items() if g != group for s in samples(other)], edges=G_EDGES)
            for run, frac, f, truth, seconds in grows:
                if frac not in PREFIXES:
                    continue
                source = group.split()[0]
                entry = {"trusted": f.trusted, "seconds": seconds}
                if f.trusted:
                    lo, hi = cal.interval(f.final_loss, float(np.mean(run.losses[run.steps <= f.step][-3:])), LEVEL)
                    entry.update(err=abs(f.final_loss / truth - 1), covered=lo <= truth <= hi,
                                 width=(hi - lo) / f.final_loss)
                scored.setdefault((source, frac), []).append(entry)
        for (source, frac), entries in sorted(scored.items()):
            ok = [e for e in entries if e["trusted"]]
            errs = [e["err"] for e in ok]
            rows.append([law, source, f"{frac:.0%}", len(entries), len(ok),
                         f"{np.median(errs):.2%}" if errs else "-", f"{max(errs):.2%}" if errs else "-",
                         f"{np.mean([e['covered'] for e in ok]):.0%}" if ok else "-",
                         f"{np.median([e['width'] for e in ok]):.2%}" if ok else "-",
                         f"{1e3 * np.mean([e['seconds'] for e in entries]):.1f} ms"])
    return rows, cal_samples


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--laws", nargs="+", default=list(LAWS), choices=LAWS)
    parser.add_argument("--prior", action="store_true", help="print the priors fitted on every group")
    parser.add_argument("--write-calibration", metavar="PATH", help="write the calibration of the first law")
    args = parser.parse_args(argv)
    runs = recorded_runs()
    t0 = time.perf_counter()
    if args.prior:
        for law in args.laws:
            print(law, fit_prior(runs, law))
    rows, cal_samples = table(runs, args.laws)
    header = ["law", "source", "prefix", "runs", "trusted", "median error", "max error", f"{LEVEL:.0%} coverage",
              "median width", "time/forecast"]
    print(render(header, rows, args.markdown))
    print(f"\n{len(runs)} runs, {time.perf_counter() - t0:.0f} s")
    if args.write_calibration:
        law = args.laws[0]
        calibrate(cal_samples[law], edges=G_EDGES, sources=tuple(sorted({r.group for r in runs}))).to_json(args.write_calibration)
        print(f"wrote the {law} calibration to {args.write_calibration}")


if __name__ == "__main__":
    main()
