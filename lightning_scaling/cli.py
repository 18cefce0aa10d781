"""`lightning-scaling`: fit laws, replay the stopping rule on finished runs, plan compute.

Subcommands (``lightning-scaling SUBCOMMAND --help`` shows an example for each):
  fit        fit L(D), L(N), L(C) or L(N, D) to a CSV table of runs; writes the JSON DataLimitGap reads
  replay     run the ExtraEarlyStopping rule (the same StoppingRule) over logged runs at several thresholds
  allocate   compute-optimal parameters and tokens for a budget under a law
  crossover  where L(C) meets L(D(C)) (Kaplan 2020 section 6.3)

Runs are read with tensorboard's own event reader (a log directory with event files) or from a
CSVLogger ``metrics.csv``. A run that cannot be read is reported in one line and skipped; the exit code
is 1 when anything was skipped, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import planning, presets
from .errors import FitError
from .laws import ChinchillaLaw, PowerLaw, load_law


# ------------------------------------------------------------------------------------------ reading runs
@dataclass
class RunSeries:
    """One logged scalar series per tag of a run: tag -> (steps, values)."""

    name: str
    series: dict[str, tuple[np.ndarray, np.ndarray]]

    def get(self, tag: str) -> tuple[np.ndarray, np.ndarray] | None:
        return self.series.get(tag)


def read_run(path: str | Path) -> RunSeries:
    """Read a run from a TensorBoard log directory (tensorboard's EventAccumulator) or a metrics.csv."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    csv_file = path if path.is_file() else path / "metrics.csv"
    if csv_file.is_file() and csv_file.suffix == ".csv":
        return _read_csv_run(csv_file)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(path), size_guidance={"scalars": 0})
    acc.Reload()
    tags = acc.Tags().get("scalars", [])
    if not tags:
        raise ValueError(f"{path} has no TensorBoard scalars (not a log directory, or an empty or corrupt run)")
    series = {}
    for tag in tags:
        events = acc.Scalars(tag)
        series[tag] = (np.array([e.step for e in events]), np.array([e.value for e in events], dtype=float))
    return RunSeries(str(path), series)


def _read_csv_run(path: Path) -> RunSeries:
    columns: dict[str, list[tuple[int, float]]] = {}
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            step = row.get("step")
            if not step:
                continue
            for key, value in row.items():
                if key in ("step", "epoch") or value in (None, ""):
                    continue
                columns.setdefault(key, []).append((int(float(step)), float(value)))
    if not columns:
        raise ValueError(f"{path} holds no metrics")
    return RunSeries(str(path.parent), {k: (np.array([s for s, _ in v]), np.array([x for _, x in v]))
                                        for k, v in columns.items()})


# ------------------------------------------------------------------------------------------ subcommands
def _law_arg(text: str):
    if text in presets.names():
        return presets.get(text)
    if not Path(text).is_file():
        raise ValueError(f"{text!r} is neither a preset ({', '.join(presets.names())}) nor a law JSON file")
    return load_law(text)


def cmd_allocate(args: argparse.Namespace) -> int:
    law = _law_arg(args.law)
    flop = args.compute * planning.PF_DAY if args.pf_days else args.compute
    if isinstance(law, ChinchillaLaw):
        a = planning.chinchilla_optimal(law, flop)
    elif args.law == "kaplan2020_lc":
        a = planning.kaplan_optimal(flop / planning.PF_DAY)
    else:
        raise ValueError("allocate needs a Chinchilla law (e.g. hoffmann2022, besiroglu2024, a fitted L(N, D) JSON) "
                         "or kaplan2020_lc")
    out = {"compute_flop": a.compute_flop, "pf_days": a.compute_flop / planning.PF_DAY, "n_params": a.n_params,
           "n_tokens": a.n_tokens, "tokens_per_param": a.tokens_per_param, "loss": a.loss, "source": a.source}
    _emit(out, args.json)
    return 0


def cmd_crossover(args: argparse.Namespace) -> int:
    c = planning.crossover(_law_arg(args.lc), _law_arg(args.ld), data_coefficient=args.data_coefficient,
                           data_exponent=args.data_exponent)
    _emit({"compute_pf_days": c.compute_pf_days, "n_params": c.n_params, "n_tokens": c.n_tokens, "loss": c.loss},
          args.json)
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    from .fitting import fit_chinchilla, fit_power_law

    with open(args.table, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise ValueError(f"{args.table} has no rows")

    def column(name: str) -> np.ndarray:
        if name not in rows[0]:
            raise ValueError(f"column {name!r} not in {args.table} (columns: {', '.join(rows[0])})")
        return np.array([float(r[name]) for r in rows])

    loss = column(args.loss)
    if args.law == "nd":
        n = column(args.params)
        tokens = column(args.tokens) if args.tokens in rows[0] else column(args.flop) / (6 * n)
        fit = fit_chinchilla(n, tokens, loss, bootstrap=args.bootstrap, seed=args.seed)
        x_for_plot = None
    else:
        unit = {"ld": args.unit, "ln": "params", "lc": "flop"}[args.law]
        x = column({"ld": args.tokens, "ln": args.params, "lc": args.flop}[args.law])
        fit = fit_power_law(x, loss, unit=unit, irreducible=args.irreducible, bootstrap=args.bootstrap, seed=args.seed)
        x_for_plot = x
    if not fit.success:
        print(f"fit failed: {fit.message}", file=sys.stderr)
        return 1
    if args.out:
        fit.law.to_json(args.out)
    if args.plot and x_for_plot is not None:
        from .dashboard import _pyplot

        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.loglog(x_for_plot, loss, "o", label="runs")
        grid = np.geomspace(x_for_plot.min(), x_for_plot.max(), 200)
        ax.loglog(grid, fit.law(grid), "-", label="fit")
        ax.set_xlabel(fit.law.unit), ax.set_ylabel(args.loss), ax.legend()
        fig.savefig(args.plot, dpi=120)
    out = {"law": fit.law.to_dict(), "objective": fit.objective, "intervals": fit.intervals}
    _emit(out, args.json)
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from .stopping import replay

    skipped, results = 0, []
    for path in args.runs:
        try:
            run = read_run(path)
            loss = run.get("scaling/monitored_loss") or run.get(args.monitor)
            if loss is None:
                raise ValueError(f"no 'scaling/monitored_loss' or {args.monitor!r} series")
            steps, values = loss
            lr_sum = run.get("scaling/lr_sum") if args.time_axis == "lr_sum" else None
            if args.time_axis == "lr_sum" and lr_sum is None:
                raise ValueError("no 'scaling/lr_sum' series for --time-axis lr_sum")
            flops = run.get("scaling/flops")
            best = float(np.nanmin(values))
            for threshold in args.threshold:
                kwargs = {"threshold": threshold, "warmup_steps": args.warmup_steps}
                if lr_sum is not None:
                    lookup = dict(zip(lr_sum[0].tolist(), lr_sum[1].tolist()))
                    r = replay(steps, values, lr_sum=[lookup.get(int(s), math.nan) for s in steps], **kwargs)
                else:
                    r = replay(steps, values, **kwargs)
                stop_flops = None
                if flops is not None and r.stop_step is not None:
                    stop_flops = float(np.interp(r.stop_step, flops[0], flops[1]))
                total_flops = float(flops[1][-1]) if flops is not None else None
                results.append({
                    "run": run.name, "threshold": threshold, "stop_step": r.stop_step,
                    "loss_at_stop": None if r.stop_index is None else float(values[r.stop_index]),
                    "best_loss": best, "predicted_converged": r.converged_loss,
                    "prediction_error": None if r.converged_loss is None else (r.converged_loss - best) / best,
                    "flops_at_stop": stop_flops,
                    "compute_saved": None if stop_flops is None or not total_flops else 1 - stop_flops / total_flops,
                    "steps_in_run": int(steps[-1])})
        except (OSError, ValueError, FitError) as err:
            skipped += 1
            print(f"skipped {path}: {err}", file=sys.stderr)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        header = f"{'run':40} {'thr':>5} {'stop':>7} {'loss@stop':>9} {'best':>8} {'pred err':>8} {'FLOP@stop':>10} {'saved':>6}"
        print(header)
        for r in results:
            def f(v, spec):
                return "-" if v is None else format(v, spec)
            print(f"{r['run'][-40:]:40} {r['threshold']:5.3f} {f(r['stop_step'], '7d')} {f(r['loss_at_stop'], '9.4f')} "
                  f"{r['best_loss']:8.4f} {f(r['prediction_error'], '+8.2%')} {f(r['flops_at_stop'], '10.3e')} "
                  f"{f(r['compute_saved'], '6.1%')}")
    return 1 if skipped else 0


def _emit(data: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(data, indent=2, default=float))
        return
    for key, value in data.items():
        print(f"{key:18} {value:.6g}" if isinstance(value, float) else f"{key:18} {value}")


# ------------------------------------------------------------------------------------------ parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lightning-scaling", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    raw = argparse.RawDescriptionHelpFormatter

    p = sub.add_parser("allocate", formatter_class=raw, help="compute-optimal N and D for a budget",
                       epilog="example:\n  lightning-scaling allocate 1.21e20 --law besiroglu2024\n"
                              "  lightning-scaling allocate 1 --pf-days --law kaplan2020_lc")
    p.add_argument("compute", type=float, help="the budget, in FLOP (or PF-days with --pf-days)")
    p.add_argument("--pf-days", action="store_true")
    p.add_argument("--law", default="besiroglu2024", help="a preset name or a fitted JSON")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_allocate)

    p = sub.add_parser("crossover", formatter_class=raw, help="where L(C) meets L(D(C))",
                       epilog="example:\n  lightning-scaling crossover   # Kaplan 2020: C* ~ 1.1e4 PF-days, L* ~ 1.67")
    p.add_argument("--lc", default="kaplan2020_lc")
    p.add_argument("--ld", default="kaplan2020_ld")
    p.add_argument("--data-coefficient", type=float, default=2.0e10)
    p.add_argument("--data-exponent", type=float, default=0.27)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_crossover)

    p = sub.add_parser("fit", formatter_class=raw, help="fit a law to a CSV table of runs",
                       epilog="examples:\n  lightning-scaling fit runs.csv --law ld --tokens tokens --loss loss "
                              "--irreducible --out ld.json --plot ld.png\n"
                              "  lightning-scaling fit chinchilla_fig4_points.csv --law nd --params n_params "
                              "--flop training_flop --loss loss")
    p.add_argument("table", help="a CSV file with one row per run")
    p.add_argument("--law", choices=["ld", "ln", "lc", "nd"], default="ld")
    p.add_argument("--loss", default="loss")
    p.add_argument("--tokens", default="tokens", help="column of distinct data seen (L(D), L(N, D))")
    p.add_argument("--unit", default="tokens", choices=["tokens", "examples"], help="unit of --tokens for L(D)")
    p.add_argument("--params", default="n_params")
    p.add_argument("--flop", default="training_flop", help="column of FLOPs (L(C); L(N, D) tokens = flop / 6N)")
    p.add_argument("--irreducible", action="store_true", help="fit an irreducible loss too")
    p.add_argument("--bootstrap", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="write the law as JSON (what DataLimitGap reads)")
    p.add_argument("--plot", help="write a log-log PNG of the data and the fit")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("replay", formatter_class=raw, help="replay the stopping rule over finished runs",
                       epilog="example:\n  lightning-scaling replay runs/demo/version_0 --threshold 1.05 1.1 1.2")
    p.add_argument("runs", nargs="+", help="TensorBoard log directories or CSVLogger metrics.csv files")
    p.add_argument("--threshold", type=float, nargs="+", default=[planning.stopping_factor()])
    p.add_argument("--monitor", default="val_loss", help="used when the run has no scaling/monitored_loss")
    p.add_argument("--time-axis", choices=["steps", "lr_sum"], default="steps")
    p.add_argument("--warmup-steps", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_replay)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, FitError) as err:
        print(f"lightning-scaling {args.command}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
