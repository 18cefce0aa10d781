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
the trusted forecasts; the same over every forecast with a number, the untrusted ones too (how far a user who used
them anyway would be); the coverage of the calibrated 80% interval and its median relative width (hi - lo) / L_hat;
the mean time of one forecast.

    .venv/bin/python benchmarks/bench_forecast.py [--markdown] [--laws mpl tissue power] [--prior] [--shipped-prior]
        [--write-calibration PATH]
    .venv/bin/python benchmarks/bench_forecast.py --horizon [--markdown] [--threshold 1.1]

``--prior`` prints the priors fitted on every group (the shipped ``DEFAULT_PRIORS``); ``--write-calibration`` writes
the calibration from every group's held-out errors (the shipped ``data/forecast_calibration.json``).

``--horizon``: the horizon recommendation (:func:`~lightning_scaling.forecasting.recommend_horizon`) on Luo et al.'s
four cosine runs. From the points up to 25% and 50% of each, with the prior fitted on the other size, the fewest
steps of the same cosine (warm-up, peak, floor) whose forecast final loss is at most ``threshold`` x L0, with the
forecast's own L0 and with the authors' (``LUO_L0``). The reference: the law fitted jointly on the full curves of
the other eight runs of the same size (L0, A, alpha and B shared, the shipped prior's shape), the horizon at which
its cosine final loss is ``threshold`` x the authors' L0 (their L0 is fitted on all their runs with the law's shape
free, not on this run; with two cosine horizons per size recorded, the law interpolates between the runs).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

from scipy.optimize import brentq

from lightning_scaling.calibration import calibrate
from lightning_scaling.corpus.curves import DIGITS_DIR, LUO_L0, load_curves, load_luo_curves
from lightning_scaling.forecasting import (DEFAULT_PRIORS, G_EDGES, LAWS, Run, _drop_term, _fit, _predict,
                                           _warmup_cut, fit_prior, prefix_forecasts, recommend_horizon)
from lightning_scaling.planning import stopping_factor
from lightning_scaling.schedules import ScheduleShape

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


def external_runs() -> list[Run]:
    """The runs with a decaying schedule of the source that fitted and calibrated nothing (``curves_digits``: MLPs and
    a CNN on handwritten digits, other training code; cosine and a x0.1 step decay)."""
    return [Run(c.name, c.steps, c.val_loss, c.lr, group="digits") for c in load_curves(DIGITS_DIR)
            if c.config.get("schedule") in ("cosine", "step")]


def held_out(runs: list[Run], law: str,
             shipped_prior: bool = False) -> dict[str, list[tuple[Run, float, object, float, float]]]:
    """Per group: ``(run, fraction, forecast, truth, seconds)`` with the prior fitted on the other groups of its source
    (the other size: the drop's size in nats does not carry from the CPU corpus to the GPU runs; what a sweep store of
    the same data would give), or on every other group when it is its source's only one; ``shipped_prior``: the
    package's :data:`~lightning_scaling.forecasting.DEFAULT_PRIORS` instead (fitted on Luo et al.'s runs: held out
    for the corpus only)."""
    out: dict[str, list] = {}
    for group in sorted({r.group for r in runs}):
        source = group.split()[0]
        same = [r for r in runs if r.group != group and r.group.split()[0] == source]
        others = same or [r for r in runs if r.group != group]
        prior = DEFAULT_PRIORS[law] if shipped_prior else fit_prior(others, law)
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


def _entry(run: Run, f, truth: float, seconds: float, cal) -> dict:
    """One forecast scored: its error (trusted or not), and for a trusted one the calibrated interval's coverage and
    relative width."""
    entry = {"trusted": f.trusted, "seconds": seconds,
             "err_any": abs(f.final_loss / truth - 1) if math.isfinite(f.final_loss) else math.nan}
    if f.trusted:
        lo, hi = cal.interval(f.final_loss, float(np.mean(run.losses[run.steps <= f.step][-3:])), LEVEL)
        entry.update(err=abs(f.final_loss / truth - 1), covered=lo <= truth <= hi, width=(hi - lo) / f.final_loss)
    return entry


def table(runs: list[Run], laws, shipped_prior: bool = False,
          external: list[Run] = ()) -> tuple[list[list], dict]:
    rows, cal_samples = [], {}
    for law in laws:
        per_group = held_out(runs, law, shipped_prior)
        cal_samples[law] = [s for g in per_group.values() for s in samples(g)]
        scored = {}
        for group, grows in per_group.items():
            cal = calibrate([s for g, other in per_group.items() if g != group for s in samples(other)], edges=G_EDGES)
            for run, frac, f, truth, seconds in grows:
                if frac not in PREFIXES:
                    continue
                scored.setdefault((group.split()[0], frac), []).append(_entry(run, f, truth, seconds, cal))
        # the source that fitted nothing: the shipped prior and the calibration from every held-out error above
        cal = calibrate(cal_samples[law], edges=G_EDGES)
        for run in external:
            t0 = time.perf_counter()
            results = prefix_forecasts(run, PREFIXES, law=law, prior=DEFAULT_PRIORS[law], calibration=False)
            seconds = (time.perf_counter() - t0) / len(PREFIXES)
            for frac, f, truth in results:
                scored.setdefault(("digits", frac), []).append(_entry(run, f, truth, seconds, cal))
        for (source, frac), entries in sorted(scored.items(), key=lambda kv: (kv[0][0] == "digits", kv[0])):
            ok = [e for e in entries if e["trusted"]]
            errs = [e["err"] for e in ok]
            every = [e["err_any"] for e in entries if math.isfinite(e["err_any"])]
            rows.append([law, source, f"{frac:.0%}", len(entries), len(ok),
                         f"{np.median(errs):.2%}" if errs else "-", f"{max(errs):.2%}" if errs else "-",
                         f"{np.median(every):.2%}, {max(every):.2%} ({len(every)})" if every else "-",
                         f"{np.mean([e['covered'] for e in ok]):.0%}" if ok else "-",
                         f"{np.median([e['width'] for e in ok]):.2%}" if ok else "-",
                         f"{1e3 * np.mean([e['seconds'] for e in entries]):.1f} ms"])
    return rows, cal_samples


def joint_law(runs: list[Run], prior) -> dict[str, float]:
    """The law fitted jointly on the full curves of ``runs`` (one model on one stream): L0, A, alpha, B shared, the
    drop's shape the prior's; the points after the warm-up's transient, as :func:`forecast` leaves them out."""
    zs, xs, ys = [], [], []
    for run in runs:
        eta = np.asarray(run.lr, dtype=float) / float(np.max(run.lr))
        z = np.cumsum(eta)
        st = np.asarray(run.steps, dtype=np.int64)
        t = st[st > _warmup_cut(st, z, run.warmup_steps)] - 1
        zs.append(z[t])
        xs.append(_drop_term("mpl", prior.shape, eta, t))
        ys.append(np.asarray(run.losses, dtype=float)[st > _warmup_cut(st, z, run.warmup_steps)])
    res, _ = _fit("mpl", prior, np.concatenate(zs), np.concatenate(xs), np.concatenate(ys), 400)
    return {"L0": float(res.x[0]), "A": math.exp(res.x[1]), "alpha": float(res.x[2]), "B": math.exp(res.x[3]),
            **prior.shape}


def reference_horizon(params: dict[str, float], shape: ScheduleShape, target: float, cap: int = 10 ** 7) -> float:
    """The horizon T at which the law ``params`` under ``shape`` stretched to T steps ends at ``target`` (inf when
    it does not within ``cap``)."""
    def gap(log_t: float) -> float:
        t = int(round(math.exp(log_t)))
        return float(_predict("mpl", params, shape.lr(t) / shape.peak_lr, np.array([t - 1]))[0]) - target
    lo, hi = math.log(shape.warmup_steps + 2), math.log(cap)
    if gap(hi) > 0:
        return math.inf
    return math.exp(brentq(gap, lo, hi, xtol=1e-4)) if gap(lo) > 0 else math.exp(lo)


def horizon_table(threshold: float) -> tuple[list[list], list[str]]:
    """The rows of ``--horizon`` and the notes below them (the reference laws' L0 and the recorded finals)."""
    curves = load_luo_curves()
    rows, notes, seconds = [], [], []
    for size in sorted(LUO_L0, key=lambda m: float(m[:-1])):
        same = [c for c in curves if c.config["model"] == size]
        prior = fit_prior([Run(c.name, c.steps, c.val_loss, c.lr, group=c.config["model"]) for c in curves
                           if c.config["model"] != size], "mpl")
        target = threshold * LUO_L0[size]
        finals = []
        for c in (c for c in same if c.config["lr_schedule"] == "cosine"):
            finals.append(f"{c.steps[-1]} steps {np.mean(c.val_loss[-3:]):.4f}")
            ref = joint_law([Run(o.name, o.steps, o.val_loss, o.lr) for o in same if o is not c], prior)
            shape = ScheduleShape("cosine", int(c.config["warmup_steps"]), float(c.lr.max()), 0.1)
            t_ref = reference_horizon(ref, shape, target)
            for frac, f, _ in prefix_forecasts(Run(c.name, c.steps, c.val_loss, c.lr), PREFIXES, prior=prior):
                t0 = time.perf_counter()
                own = recommend_horizon(f, threshold=threshold)
                seconds.append(time.perf_counter() - t0)
                given = recommend_horizon(f, threshold=threshold, converged_loss=LUO_L0[size])
                rows.append([c.name, f"{frac:.0%}", f"{f.converged_loss:.3f}", _steps(own), _steps(given),
                             f"{t_ref:.0f} (L0 {ref['L0']:.3f})",
                             f"{own.horizon_steps / t_ref:.2f}" if own.success else "-",
                             f"{given.horizon_steps / t_ref:.2f}" if given.success else "-"])
        notes.append(f"{size}: authors' L0 {LUO_L0[size]}, target {target:.4f}; recorded cosine finals (mean of the "
                     f"last 3): {', '.join(finals)}")
    notes.append(f"time/recommendation: median {1e3 * np.median(seconds):.0f} ms, max {1e3 * max(seconds):.0f} ms")
    return rows, notes


def _steps(r) -> str:
    """A recommendation's horizon with its interval, or why there is none."""
    if r.horizon_steps is None:
        return "none: " + r.message.split("(")[0].strip()
    lo, hi = r.horizon_interval
    flag = "" if r.success else " (untrusted)"
    return f"{r.horizon_steps} [{lo:.0f}, {hi:.0f}]{flag}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--laws", nargs="+", default=list(LAWS), choices=LAWS)
    parser.add_argument("--prior", action="store_true", help="print the priors fitted on every group")
    parser.add_argument("--shipped-prior", action="store_true",
                        help="forecast with the shipped prior (Luo et al.'s) instead of one fitted on the other group")
    parser.add_argument("--write-calibration", metavar="PATH", help="write the calibration of the first law")
    parser.add_argument("--horizon", action="store_true", help="the cosine horizon recommendation on Luo's runs")
    parser.add_argument("--threshold", type=float, default=stopping_factor(), help="the multiple of L0 (--horizon)")
    args = parser.parse_args(argv)
    if args.horizon:
        t0 = time.perf_counter()
        rows, notes = horizon_table(args.threshold)
        header = ["run", "prefix", "forecast L0", "recommended (own L0) [interval]",
                  "recommended (authors' L0) [interval]", "reference (its L0)", "own / ref", "authors' / ref"]
        print(render(header, rows, args.markdown))
        print("\n" + "\n".join(notes) + f"\n{time.perf_counter() - t0:.0f} s")
        return
    runs = recorded_runs()
    t0 = time.perf_counter()
    if args.prior:
        for law in args.laws:
            print(law, fit_prior(runs, law))
    rows, cal_samples = table(runs, args.laws, args.shipped_prior, external_runs())
    header = ["law", "source", "prefix", "runs", "trusted", "median error", "max error",
              "median, max error of every forecast with a number (untrusted too)", f"{LEVEL:.0%} coverage",
              "median width", "time/forecast"]
    print(render(header, rows, args.markdown))
    print(f"\n{len(runs)} runs, {time.perf_counter() - t0:.0f} s")
    if args.write_calibration:
        law = args.laws[0]
        calibrate(cal_samples[law], edges=G_EDGES,
                  sources=tuple(sorted({r.group for r in runs}))).to_json(args.write_calibration)
        print(f"wrote the {law} calibration to {args.write_calibration}")


if __name__ == "__main__":
    main()
