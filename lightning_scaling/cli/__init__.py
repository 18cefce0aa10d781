"""`lightning-scaling`: fit laws, replay the stopping rule, report on finished runs, plan compute.

Subcommands (``lightning-scaling SUBCOMMAND --help`` shows an example for each):
  fit        fit L(D), L(N), L(C) or L(N, D) to runs (log directories) or a CSV table; JSON + log-log PNG
  replay     run the ExtraEarlyStopping rule (the same StoppingRule) over finished runs at several thresholds
  calibrate  calibrate the converged-loss interval on finished runs
  forecast   the loss at the end of a run's LR schedule, forecast from a prefix of it
  sweep      a sweep store of runs and the joint fit of their learning curves
  report     per-run summary and figures: learning curve with fit and stop, loss vs FLOPs, loss vs data
  allocate   compute-optimal parameters and tokens for a budget under a law
  crossover  where L(C) meets L(D(C)) (Kaplan 2020 section 6.3)

Runs are TensorBoard log directories (read with tensorboard's own event reader) or CSVLogger
``metrics.csv`` files, or directories holding several of them; see :mod:`lightning_scaling.logs` for
where each number comes from (a resumed run is read with the values written last; a run logged by both a
TensorBoard and a CSV logger is read once). replay and report run the core StoppingRule (stopping.replay) on
the callback's logged inputs (scaling/monitored_loss, scaling/lr_sum, the L(D) floor scaling/ld_loss) with the
live callback's options, read from the run-info file the callbacks write beside the logs
(``lightning_scaling.json``); options given on the command line override them (the common ones by name, any
other as --rule KEY=VALUE). A run that cannot be used is reported in one line naming it and the reason, the
other runs are still processed, and the exit code is 1 when anything was skipped (2 on bad arguments, 0
otherwise).
"""

from __future__ import annotations

import argparse
import sys

from .. import planning
from ..errors import FitError
from ..run_info import FILENAME as RUN_INFO
from ._common import RAW, _add_rule_options, _plain
from .compute import _CROSSOVER, cmd_allocate, cmd_crossover
from .fit import cmd_fit
from .forecast import cmd_forecast, forecast_run
from .replay import calibration_samples, cmd_calibrate, cmd_replay, replay_run
from .report import cmd_report, report_run
from .sweep import _flop_budget, cmd_sweep, sweep_record

__all__ = ["build_parser", "calibration_samples", "cmd_allocate", "cmd_calibrate", "cmd_crossover", "cmd_fit",
           "cmd_forecast", "cmd_replay", "cmd_report", "cmd_sweep", "forecast_run", "main", "replay_run", "report_run",
           "sweep_record"]

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lightning-scaling", description=_plain(__doc__), formatter_class=RAW)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("allocate", formatter_class=RAW, help="compute-optimal N and D for a budget",
                       epilog="examples:\n  lightning-scaling allocate 1.21e20 --law besiroglu2024\n"
                              "  lightning-scaling allocate 1 --pf-days --law kaplan2020_lc\n"
                              "  lightning-scaling allocate 1e21 --law fits/nd.json --json")
    p.add_argument("compute", type=float, help="the budget, in FLOP (or PF-days with --pf-days)")
    p.add_argument("--pf-days", action="store_true")
    p.add_argument("--law", default="besiroglu2024", help="a preset name or a fitted L(N, D) JSON")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_allocate)

    p = sub.add_parser("crossover", formatter_class=RAW, help="where L(C) meets L(D(C))",
                       epilog="examples:\n"
                              "  lightning-scaling crossover   # Kaplan 2020: C* ~ 1.1e4 PF-days, L* ~ 1.67\n"
                              "  lightning-scaling crossover --data-coefficient 4e10 --data-exponent 0.26")
    kaplan = "default: Kaplan et al. 2020's"
    p.add_argument("--lc", help=f"L(C) in PF-days: preset or JSON ({kaplan} kaplan2020_lc)")
    p.add_argument("--ld", help=f"L(D) in tokens: preset or JSON ({kaplan} kaplan2020_ld)")
    p.add_argument("--data-coefficient", type=float,
                   help=f"D(C) = coefficient x C^exponent ({kaplan} {_CROSSOVER['data_coefficient'][1]:g})")
    p.add_argument("--data-exponent", type=float, help=f"{kaplan} {_CROSSOVER['data_exponent'][1]:g}")
    p.add_argument("--params-coefficient", type=float,
                   help=f"N(C), for N* ({kaplan} {_CROSSOVER['params_coefficient'][1]:g})")
    p.add_argument("--params-exponent", type=float, help=f"{kaplan} {_CROSSOVER['params_exponent'][1]:g}")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_crossover)

    p = sub.add_parser("fit", formatter_class=RAW, help="fit a law to runs or to a CSV table of runs",
                       epilog="examples:\n"
                              "  lightning-scaling fit runs/ --law ld --fit-irreducible --out ld.json --plot ld.png\n"
                              "  lightning-scaling fit runs/ --law nd --reduce final --bootstrap 200\n"
                              "  lightning-scaling fit chinchilla_fig4_points.csv --law nd --params n_params "
                              "--flop training_flop --loss loss")
    p.add_argument("sources", nargs="+", help="log directories / metrics.csv files (one point per run), or one "
                                              "CSV table with one row per run")
    p.add_argument("--law", choices=["ld", "ln", "lc", "nd", "nd-kaplan"], default="ld",
                   help="ld: L(D); ln: L(N); lc: L(C); nd: L(N, D) of [C] eq 2; nd-kaplan: L(N, D) of [K] eq 1.5, "
                        "the floor DataLimitGap gives a model too small for its data")
    p.add_argument("--monitor", help="runs: the loss metric (default: the one each run's run-info file names, else "
                                     "val_loss)")
    p.add_argument("--reduce", choices=["best", "final"], default="best", help="runs: best or final loss")
    p.add_argument("--params-key", default="n_params", help="runs: hyperparameter holding N")
    p.add_argument("--loss", default="loss", help="table: loss column")
    p.add_argument("--tokens", default="tokens", help="table: data column (L(D); L(N, D))")
    p.add_argument("--unit", default="tokens", choices=["tokens", "examples"], help="table: unit of --tokens")
    p.add_argument("--params", default="n_params", help="table: parameters column")
    p.add_argument("--flop", default="training_flop", help="table: FLOP column (L(C); L(N, D) tokens = flop / 6N)")
    p.add_argument("--fit-irreducible", action="store_true", help="fit an irreducible loss too (L(D), L(N), L(C))")
    p.add_argument("--bootstrap", type=int, default=0, help="resamples for percentile intervals")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="write the law as JSON (what DataLimitGap reads)")
    p.add_argument("--plot", help="write a log-log PNG of the points and the fit")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("replay", formatter_class=RAW, help="replay the stopping rule over finished runs",
                       epilog="examples:\n  lightning-scaling replay runs/   # each run with the options its "
                              f"{RUN_INFO} records\n"
                              "  lightning-scaling replay runs/demo/version_0 --threshold 1.05 1.1 1.2\n"
                              "  lightning-scaling replay runs/ --time-axis lr_sum --warmup-steps 0 --json   "
                              "# override\n"
                              "  lightning-scaling replay runs/ --rule family=power --rule min_points=8")
    p.add_argument("runs", nargs="+", help="TensorBoard log directories, metrics.csv files, or folders of runs")
    p.add_argument("--threshold", type=float, nargs="+", help=f"default: the live rule's (the run's {RUN_INFO}), "
                                                                f"else {planning.stopping_factor():.3g}")
    _add_rule_options(p)
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("calibrate", formatter_class=RAW,
                       help="calibrate the converged-loss interval on finished runs",
                       epilog="examples:\n  lightning-scaling calibrate sweep/ --out calibration.json\n"
                              "  lightning-scaling calibrate runs/a runs/b runs/c --warmup-steps 200 --out cal.json\n"
                              "Each run is replayed with the options its lightning_scaling.json records (as replay "
                              "does);\nits reference converged loss is the lowest 3-point moving average of the "
                              "monitored loss,\nso use runs trained to convergence (or until the loss turned up).")
    p.add_argument("runs", nargs="+", help="TensorBoard log directories, metrics.csv files, or folders of runs")
    p.add_argument("--out", default="calibration.json", help="the calibration JSON to write")
    _add_rule_options(p)
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("forecast", formatter_class=RAW, help="forecast the loss at the end of a run's LR schedule",
                       epilog="examples:\n"
                              "  lightning-scaling forecast runs/ --at 0.5   # from the first half of each run\n"
                              "  lightning-scaling forecast runs/demo/version_0 --at 2000 --constant\n"
                              "The plan is the rest of the run's own schedule (its logged scaling/lr_sum), so the\n"
                              "forecast is scored against the loss the run reached; --constant holds the LR instead.")
    p.add_argument("runs", nargs="+", help="TensorBoard log directories, metrics.csv files, or folders of runs")
    p.add_argument("--at", type=float, default=0.5, help="the step to forecast from, or a fraction of the run (0.5)")
    p.add_argument("--constant", action="store_true", help="plan: the LR at --at, held to the end")
    p.add_argument("--lr-tag", default="lr", help="per-step learning rate series, for runs without scaling/lr_sum")
    p.add_argument("--warmup-steps", type=int, help="default: found from the LR, as the rule finds it")
    p.add_argument("--monitor", help="metric used when the run has no scaling/monitored_loss (default val_loss)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_forecast)

    p = sub.add_parser("sweep", formatter_class=RAW, help="a sweep store: its runs and the joint fit of their curves",
                       epilog="examples:\n"
                              "  lightning-scaling sweep sweeps/my-data --import runs/   # finished runs in\n"
                              "  lightning-scaling sweep sweeps/my-data --data my-data\n"
                              "  lightning-scaling sweep sweeps/my-data --budget 1e18 --plot figures/\n"
                              "Runs on different data must not be pooled: give each store one data identity (--data).")
    p.add_argument("dir", help="the sweep folder (one JSON record per run)")
    p.add_argument("--import", dest="imports", nargs="+", metavar="RUN",
                   help="TensorBoard/CSVLogger runs to add as records first")
    p.add_argument("--data", help="the data identity of the imported runs, and the only one read")
    p.add_argument("--confidence", type=float, default=0.8)
    p.add_argument("--monitor", help="metric used when a run has no scaling/monitored_loss (default val_loss)")
    p.add_argument("--params-key", default="n_params", help="hyperparameter holding N")
    p.add_argument("--budget", type=_flop_budget, metavar="FLOPS",
                   help="what to train next for this compute: N, D and the loss from the joint fit")
    p.add_argument("--plot", metavar="DIR", help="write sweep_curves.png and sweep_frontier.png into DIR")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("report", formatter_class=RAW, help="per-run summary and PNG figures",
                       epilog="examples:\n  lightning-scaling report runs/ --out report/\n"
                              "  lightning-scaling report runs/demo/version_0 --law ld.json --threshold 1.1")
    p.add_argument("runs", nargs="+", help="TensorBoard log directories, metrics.csv files, or folders of runs")
    p.add_argument("--out", default="scaling_report", help="folder for the figures (one subfolder per run)")
    p.add_argument("--threshold", type=float, help=f"default: the live rule's (the run's {RUN_INFO}), else "
                                                     f"{planning.stopping_factor():.3g}")
    p.add_argument("--law", help="L(D) for the loss-against-data figure: a fitted JSON or preset (a law of N and D "
                                  "at the run's N)")
    _add_rule_options(p)
    p.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError, FitError) as err:
        print(f"lightning-scaling {args.command}: {err}", file=sys.stderr)
        return 2

