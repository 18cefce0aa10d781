"""What the subcommands share: output and skip lines, the per-run loop, pyplot, a run's monitored points, and the
stopping rule's command-line options (replay, calibrate, report)."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FitError
from ..logs import Run, RunError, Series, read_runs
from ..run_info import FILENAME as RUN_INFO
from ..tags import tag

RAW = argparse.RawDescriptionHelpFormatter


def _plain(text: str) -> str:
    """A docstring as plain text for ``--help``: reStructuredText roles, literals and ``::`` without their markup.

    >>> _plain("see :mod:`a.b` and ``x``::")
    'see a.b and x:'
    """
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", text)
    text = re.sub(r"``([^`]+)``", r"\1", text)
    return re.sub(r"::$", ":", text, flags=re.MULTILINE)


def _emit(data: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(data, indent=2, default=float))
        return
    for key, value in data.items():
        print(f"{key:18} {value:.6g}" if isinstance(value, float) else f"{key:18} {value}")


def _skip(err: Exception) -> None:
    print(f"skipped {err}", file=sys.stderr)


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _each_run(paths: list[str], work) -> tuple[list[Any], int]:
    """``work(run)`` for every run found at ``paths``; a run that fails, for whatever reason, is one line on
    stderr naming it and is counted, and the other runs are still processed."""
    runs, errors = read_runs(paths)
    for err in errors:
        _skip(err)
    for run in runs:
        for copy in run.also_logged_at:
            print(f"note: {copy} holds the same run as {run.name} (a second logger): read once, from the event files",
                  file=sys.stderr)
    results, skipped = [], len(errors)
    for run in _progress(runs, "runs"):
        try:
            results.append(work(run))
        except RunError as err:
            skipped += 1
            _skip(err)
        except (FitError, ValueError) as err:
            skipped += 1
            _skip(RunError(run.name, _one_line(err)))
        except Exception as err:  # noqa: BLE001 - one run's failure must not drop the others' results
            skipped += 1
            _skip(RunError(run.name, f"unexpected {type(err).__name__}: {_one_line(err)} (a bug: please report it)"))
    return results, skipped


def _progress(items: list, unit: str):
    """A tqdm bar on stderr over many runs when stderr is a terminal (tqdm comes with Lightning)."""
    if len(items) < 5 or not sys.stderr.isatty():
        return items
    try:
        from tqdm import tqdm
    except ImportError:
        return items
    return tqdm(items, unit=unit, file=sys.stderr, leave=False)


def _pyplot():
    """pyplot on the Agg backend (the dashboard's loader), or a clear error without matplotlib."""
    from ..dashboard import _pyplot as dashboard_pyplot

    plt = dashboard_pyplot()
    if plt is None:
        raise ValueError("figures need matplotlib: pip install 'lightning-scaling[plots]'")
    return plt


def _rule_value(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` of ``--rule``: the value read as JSON (numbers, true/false) or else as a string."""
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (a StoppingRule argument), got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _given_options(args: argparse.Namespace) -> dict[str, Any]:
    """The StoppingRule arguments given on the command line, flat (a StopConfig field by its name): the named options
    given, then every ``--rule KEY=VALUE`` passed through as is (so options the rule gains need no change here)."""
    named = {"warmup_steps": args.warmup_steps, "min_points": args.min_points, "irreducible": args.irreducible,
             "stop_when_data_limited": args.stop_when_data_limited}
    options = {key: value for key, value in named.items() if value is not None}
    options.update(dict(args.rule or []))
    return options


def _check_rule_options(args: argparse.Namespace, thresholds: list[float] | None) -> None:
    """Build the rule with the command line's options once per threshold before reading any run, so a bad option
    is a usage error."""
    from ..stopping import StoppingRule, rule_arguments

    if "threshold" in dict(args.rule or []):
        raise ValueError("give the threshold with --threshold, not --rule")
    for threshold in thresholds or [None]:
        try:
            StoppingRule(threshold, **rule_arguments(_given_options(args)))
        except (TypeError, ValueError) as err:
            raise ValueError(f"--rule: {err} (the keys are StoppingRule's arguments and StopConfig's fields)") \
                from None


#: What the live callback used where neither the run-info file nor the command line says: its defaults.
_CALLBACK_DEFAULTS = {"monitor": "val_loss", "time_axis": "auto", "use_data_floor": True}


def _at_steps(series: Series | None, steps: np.ndarray) -> list[float | None]:
    """The value of ``series`` at each of ``steps`` (logged at the same steps), None where it was not logged."""
    lookup = {} if series is None else dict(zip(series.steps.tolist(), series.values.tolist()))
    return [lookup.get(int(st)) for st in steps]


def _monitored(run: Run, monitor: str) -> tuple[str, Series]:
    """The points the live rule saw: ``scaling/monitored_loss`` (logged by the callback), else ``monitor``."""
    name = tag("monitored_loss")
    return (name, run.get(name)) if run.get(name) is not None else (monitor, run.evaluations(monitor))


def _short(name: str) -> str:
    """The last two parts of a run's path (e.g. ``demo/version_0``)."""
    return "/".join([p for p in Path(name).parts if p not in ("/", ".")][-2:])


def _save(plt, fig, path: Path) -> str:
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def _add_rule_options(p: argparse.ArgumentParser) -> None:
    logged = f"default: the run's {RUN_INFO}, else"
    p.add_argument("--monitor", help=f"metric used when the run has no scaling/monitored_loss ({logged} val_loss)")
    p.add_argument("--time-axis", choices=["auto", "steps", "lr_sum"],
                   help=f"the live callback's time_axis ({logged} auto: the summed LR once the LR has varied); "
                        "lr_sum reads scaling/lr_sum or --lr-tag")
    p.add_argument("--lr-tag", default="lr", help="per-step learning rate series for --time-axis lr_sum")
    p.add_argument("--warmup-steps", type=int, help=f"{logged} found from the LR, as the live rule finds it")
    p.add_argument("--min-points", type=int, help=f"{logged} the rule's")
    p.add_argument("--irreducible", type=float, help=f"{logged} 0")
    p.add_argument("--stop-when-data-limited", action=argparse.BooleanOptionalAction, help=f"{logged} on")
    p.add_argument("--rule", action="append", type=_rule_value, metavar="KEY=VALUE",
                   help="any other StoppingRule argument, over the logged one (repeatable), "
                        "e.g. --rule family=power --rule smoothing=0.3")
    p.add_argument("--data-floor", dest="data_floor", action=argparse.BooleanOptionalAction,
                   help=f"use scaling/ld_loss as the floor, as the live callback's use_data_floor ({logged} on)")
    p.add_argument("--params-key", default="n_params",
                   help=f"hyperparameter holding N, for 6N FLOPs (else the run's {RUN_INFO})")
    p.add_argument("--json", action="store_true")
