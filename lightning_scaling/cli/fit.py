"""fit: a law fitted to runs or to a CSV table of runs, its JSON and its log-log figure."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

from .. import presets
from ..logs import Run, RunError, run_point
from ..run_info import FILENAME as RUN_INFO
from ._common import _CALLBACK_DEFAULTS, _each_run, _pyplot

_NEEDS = {"ld": ("data",), "ln": ("n_params",), "lc": ("flops",), "nd": ("n_params", "data"),
          "nd-kaplan": ("n_params", "data")}
#: The laws of N and D: "nd" is [C] eq 2 (fit_chinchilla), "nd-kaplan" [K] eq 1.5 (fit_overfitting_law).
_ND = ("nd", "nd-kaplan")
_HOW = {"data": "log scaling/distinct_seen (EffectiveEpochs), or give the dataset size (the hyperparameter "
                "train_tokens or dataset_size, or EffectiveEpochs' run-info file) and tokens_per_step",
        "n_params": f"log the hyperparameter named by --params-key, or train with EffectiveEpochs (it records N in "
                    f"{RUN_INFO})",
        "flops": "log scaling/flops (FlopCounter), or N and tokens seen for 6N"}


def _is_table(path: str) -> bool:
    """A CSV with one row per run (not a CSVLogger metrics.csv, which has a 'step' column)."""
    p = Path(path)
    if not (p.is_file() and p.suffix == ".csv"):
        return False
    with p.open(newline="") as fh:
        header = next(csv.reader(fh), [])
    return "step" not in header


def _points_from_table(args: argparse.Namespace) -> dict[str, np.ndarray]:
    with open(args.sources[0], newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise ValueError(f"{args.sources[0]} has no rows")

    def column(name: str) -> np.ndarray:
        if name not in rows[0]:
            raise ValueError(f"column {name!r} not in {args.sources[0]} (columns: {', '.join(rows[0])})")
        return np.array([float(r[name]) for r in rows])

    out = {"loss": column(args.loss), "name": np.array([f"row {i + 1}" for i in range(len(rows))])}
    if args.law in ("ln",) + _ND:
        out["n_params"] = column(args.params)
    if args.law == "lc":
        out["flops"] = column(args.flop)
    if args.law == "ld":
        out["data"] = column(args.tokens)
    if args.law in _ND:
        out["data"] = column(args.tokens) if args.tokens in rows[0] else column(args.flop) / (6 * out["n_params"])
    return out


def _points_from_runs(args: argparse.Namespace) -> tuple[dict[str, np.ndarray], int, str]:
    def point(run: Run):
        # the loss the run's own ExtraEarlyStopping watched (its run-info file), unless --monitor names one
        monitor = args.monitor or (run.info.get("stopping") or {}).get("monitor") or _CALLBACK_DEFAULTS["monitor"]
        p = run_point(run, monitor=monitor, reduce=args.reduce, params_key=args.params_key)
        missing = [k for k in _NEEDS[args.law] if getattr(p, k) is None]
        if missing:
            raise RunError(run.name, "; ".join(f"no {k} ({_HOW[k]})" for k in missing))
        return p

    rows, skipped = _each_run(args.sources, point)
    units = {p.unit for p in rows}
    if args.law in ("ld",) + _ND and len(units) > 1:
        raise ValueError("the runs count data in different units (some tokens, some examples); fit them apart")
    unit = units.pop() if units else args.unit
    if args.law in _ND and unit != "tokens":
        raise ValueError("L(N, D) needs data in tokens: give EffectiveEpochs tokens_per_example or count_tokens")
    columns = {"name": np.array([p.name for p in rows]), "loss": np.array([p.loss for p in rows])}
    for key in _NEEDS[args.law]:
        columns[key] = np.array([getattr(p, key) for p in rows], dtype=float)
    return columns, skipped, unit


class _BootstrapBar:
    """A progress bar on stderr over the bootstrap resamples, fed by the fitters' ``progress`` callback.

    tqdm (the ``cli`` extra; Lightning brings it too) draws it; without tqdm, one line per tenth.
    """

    def __init__(self, total: int) -> None:
        self.total, self.done, self.bar = total, 0, None
        try:
            from tqdm import tqdm
        except ImportError:
            print(f"bootstrap: fitting {total} resamples", file=sys.stderr, flush=True)
        else:
            self.bar = tqdm(total=total, desc="bootstrap", unit="resample", file=sys.stderr, leave=True)

    def __call__(self, done: int) -> None:
        if self.bar is not None:
            self.bar.update(done - self.done)
        elif done * 10 // self.total > self.done * 10 // self.total or done == self.total:
            print(f"bootstrap: {done}/{self.total} resamples", file=sys.stderr, flush=True)
        self.done = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def cmd_fit(args: argparse.Namespace) -> int:
    from ..fitting import fit_chinchilla, fit_overfitting_law, fit_power_law

    if args.law == "nd-kaplan" and args.bootstrap:
        raise ValueError("--bootstrap is not available for --law nd-kaplan (fit_overfitting_law has no intervals)")

    if len(args.sources) == 1 and _is_table(args.sources[0]):
        pts, skipped, unit = _points_from_table(args), 0, args.unit
    else:
        pts, skipped, unit = _points_from_runs(args)
    if pts["loss"].size == 0:
        raise ValueError("no usable runs to fit")
    bar = _BootstrapBar(args.bootstrap) if args.bootstrap else None
    try:
        if args.law == "nd":
            fit = fit_chinchilla(pts["n_params"], pts["data"], pts["loss"], bootstrap=args.bootstrap, seed=args.seed,
                                 progress=bar)
        elif args.law == "nd-kaplan":
            fit = fit_overfitting_law(pts["n_params"], pts["data"], pts["loss"])
        else:
            key = _NEEDS[args.law][0]
            law_unit = {"ld": unit, "ln": "params", "lc": "flop"}[args.law]
            fit = fit_power_law(pts[key], pts["loss"], unit=law_unit, fit_irreducible=args.fit_irreducible,
                                bootstrap=args.bootstrap, seed=args.seed, progress=bar)
    finally:
        if bar is not None:
            bar.close()
    if not fit.success:
        print(f"fit failed: {fit.message}", file=sys.stderr)
        return 1
    if args.out:
        _write_law(fit.law, args.law, pts, args.out)
    if args.plot:
        _fit_figure(args.law, pts, fit.law, args.plot)
    points = [{k: (v[i].item() if hasattr(v[i], "item") else v[i]) for k, v in pts.items()}
              for i in range(pts["loss"].size)]
    intervals = getattr(fit, "intervals", None)
    out = {"law": fit.law.to_dict(), "objective": fit.objective, "intervals": intervals, "points": points,
           "skipped": skipped}
    if args.json:
        print(json.dumps(out, indent=2, default=float))
    else:
        print(f"{fit.law!r}")
        if intervals:
            for name, (lo, hi) in intervals.items():
                print(f"  {name:12} [{lo:.6g}, {hi:.6g}]")
        print(f"{len(points)} points, {skipped} skipped" + (f"; law written to {args.out}" if args.out else ""))
    return 1 if skipped else 0


def _write_law(law, kind: str, pts: dict[str, np.ndarray], path: str) -> None:
    """The law's JSON (what DataLimitGap and allocate read), with the compute of the points it was fitted on when
    they have one (L(N, D): 6 N D; L(C)): ``allocate`` warns outside it
    (:func:`lightning_scaling.presets.compute_range`)."""
    data = law.to_dict()
    compute = 6 * pts["n_params"] * pts["data"] if kind in _ND else pts["flops"] if kind == "lc" else None
    if compute is not None and compute.size:
        data[presets.FITTED_ON] = {"compute_flop": [float(compute.min()), float(compute.max())],
                                   "points": int(compute.size)}
    Path(path).write_text(json.dumps(data, indent=2) + "\n")


def _fit_figure(kind: str, pts: dict[str, np.ndarray], law, path: str) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    if kind in _ND:
        x = pts["data"]
        sizes = np.unique(pts["n_params"])
        shown = sizes[np.unique(np.linspace(0, sizes.size - 1, min(6, sizes.size)).round().astype(int))]
        sc = ax.scatter(x, pts["loss"], c=np.log10(pts["n_params"]), s=10, cmap="viridis", label="runs")
        grid = np.geomspace(x.min(), x.max(), 200)
        for n in shown:
            ax.plot(grid, law(n, grid), "-", lw=1, color=sc.cmap(sc.norm(np.log10(n))), label=f"fit, N={n:.3g}")
        fig.colorbar(sc, ax=ax, label="log10 N")
        ax.set_xscale("log"), ax.set_yscale("log")
        ax.set_xlabel("tokens")
    else:
        x = pts[_NEEDS[kind][0]]
        ax.loglog(x, pts["loss"], "o", label="runs")
        grid = np.geomspace(x.min(), x.max(), 200)
        ax.loglog(grid, law(grid), "-", label=f"fit: {law.irreducible:.3g} + ({law.scale:.3g}/x)^{law.exponent:.3g}")
        ax.set_xlabel(law.unit)
    ax.set_ylabel("loss")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
