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
import csv
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import planning, presets
from .errors import FitError
from .laws import ChinchillaLaw, Law, OverfittingLaw, PowerLaw
from .logs import Run, RunError, Series, flops_at, read_runs, run_point, tokens_seen
from .run_info import FILENAME as RUN_INFO
from .tags import decode_floor_kind, tag

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
    from .dashboard import _pyplot as dashboard_pyplot

    plt = dashboard_pyplot()
    if plt is None:
        raise ValueError("figures need matplotlib: pip install 'lightning-scaling[plots]'")
    return plt


# ------------------------------------------------------------------------------------------ allocate
def cmd_allocate(args: argparse.Namespace) -> int:
    law = presets.resolve(args.law)
    flop = args.compute * planning.PF_DAY if args.pf_days else args.compute
    if isinstance(law, ChinchillaLaw):
        a = planning.chinchilla_optimal(law, flop)
    elif args.law == "kaplan2020_lc":
        a = planning.kaplan_optimal(flop / planning.PF_DAY)
    else:
        raise ValueError("allocate needs a Chinchilla law (e.g. hoffmann2022, besiroglu2024, a fitted L(N, D) JSON) "
                         "or kaplan2020_lc (Kaplan 2020 Table 6)")
    _warn_if_extrapolated(args.law, flop)
    _emit({"compute_flop": a.compute_flop, "pf_days": a.compute_flop / planning.PF_DAY, "n_params": a.n_params,
           "n_tokens": a.n_tokens, "tokens_per_param": a.tokens_per_param, "loss": a.loss, "source": a.source},
          args.json)
    return 0


def _warn_if_extrapolated(law: str, flop: float) -> None:
    """One line on stderr when ``flop`` is outside the compute ``law`` was fitted on (or that is unknown)."""
    fitted = presets.compute_range(law)
    if fitted is None:
        _warn(f"{law} records no compute range, so whether {flop:.3g} FLOP is inside what it was fitted on is "
              "unknown (`lightning-scaling fit --law nd --out` records it)")
    elif not fitted.contains(flop):
        factor, side = (fitted.low / flop, "below") if flop < fitted.low else (flop / fitted.high, "above")
        _warn(f"{flop:.3g} FLOP is {factor:.3g}x {side} the compute {law} was fitted on ({fitted.low:.2g} to "
              f"{fitted.high:.2g} FLOP, {fitted.what}): the allocation extrapolates the law")


# ------------------------------------------------------------------------------------------ crossover
_TABLE6 = presets.KAPLAN_TABLE6
#: crossover's inputs: option -> what it is, Kaplan 2020's value (the default).
_CROSSOVER = {"lc": ("L(C)", "kaplan2020_lc"), "ld": ("L(D)", "kaplan2020_ld"),
              "data_coefficient": ("D(C)'s coefficient", _TABLE6["tokens"].coefficient),
              "data_exponent": ("D(C)'s exponent", _TABLE6["tokens"].exponent),
              "params_coefficient": ("N(C)'s coefficient", _TABLE6["n_params"].coefficient),
              "params_exponent": ("N(C)'s exponent", _TABLE6["n_params"].exponent)}


def cmd_crossover(args: argparse.Namespace) -> int:
    given = [key for key in _CROSSOVER if getattr(args, key) is not None]
    value = {key: getattr(args, key) if key in given else default for key, (_, default) in _CROSSOVER.items()}
    laws = {}
    for key, unit in (("lc", "pf_days"), ("ld", "tokens")):
        law = presets.resolve(value[key])
        if not (isinstance(law, PowerLaw) and law.unit == unit):
            raise ValueError(f"--{key} {value[key]}: crossover needs {_CROSSOVER[key][0]} as a power law in {unit} "
                             f"(e.g. {_CROSSOVER[key][1]})")
        laws[key] = law
    if given and len(given) < len(_CROSSOVER):
        def show(keys):
            return ", ".join(f"{_CROSSOVER[k][0]} = {value[k]:g}" if isinstance(value[k], float)
                             else f"{_CROSSOVER[k][0]} = {value[k]}" for k in keys)
        print(f"note: crossover combines your {show(given)} with Kaplan et al. 2020's "
              f"{show(k for k in _CROSSOVER if k not in given)} (eq 1.2-1.3, Table 6); give those too to replace them",
              file=sys.stderr)
    c = planning.crossover(laws["lc"], laws["ld"], data_coefficient=value["data_coefficient"],
                           data_exponent=value["data_exponent"], params_coefficient=value["params_coefficient"],
                           params_exponent=value["params_exponent"])
    _emit({"compute_pf_days": c.compute_pf_days, "compute_flop": c.compute_pf_days * planning.PF_DAY,
           "n_params": c.n_params, "n_tokens": c.n_tokens, "loss": c.loss}, args.json)
    return 0


# ------------------------------------------------------------------------------------------ fit
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
    from .fitting import fit_chinchilla, fit_overfitting_law, fit_power_law

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


# ------------------------------------------------------------------------------------------ replay
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
    from .stopping import StoppingRule, rule_arguments

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


@dataclass
class _Settings:
    """How one run is replayed: the live rule's options from its run-info file, overridden by the command line."""

    options: dict[str, Any]  # StoppingRule keyword arguments, flat (stopping.flat_options), without the threshold
    threshold: float  # the live rule's threshold: the default of --threshold
    monitor: str
    time_axis: str
    use_data_floor: bool
    given: set[str]  # what the command line gave (options and the three above)
    source: str  # where the settings came from, for the replay row
    as_live: bool  # the settings are the live run's own: the replay should reach its decision
    outcome: dict[str, Any]  # the live rule's outcome in the run-info file ({} when not recorded)


def _settings(run: Run, args: argparse.Namespace) -> _Settings:
    """The run-info file's ``stopping`` section (options, monitor, time_axis, use_data_floor), then the
    command line's options over it, then the callback's defaults for what neither gives."""
    from .stopping import flat_options

    stopping = run.info.get("stopping") or {}
    try:
        options = flat_options(stopping["options"]) if stopping.get("options") else {}
    except (TypeError, ValueError) as err:
        raise RunError(run.name, f"the stopping options in {RUN_INFO} are not the rule's: {_one_line(err)}") from None
    logged = {**options,
              **{key: stopping[key] for key in _CALLBACK_DEFAULTS if key in stopping}}
    threshold = logged.pop("threshold", None)
    if threshold is None:
        threshold = planning.stopping_factor(logged.get("alpha_N", presets.KAPLAN_ALPHA_N),
                                             logged.get("alpha_S", presets.KAPLAN_ALPHA_S))
    section_given = {"monitor": args.monitor, "time_axis": args.time_axis, "use_data_floor": args.data_floor}
    given = {**_given_options(args), **{key: value for key, value in section_given.items() if value is not None}}
    merged = {**_CALLBACK_DEFAULTS, **logged, **given}
    section = {key: merged.pop(key) for key in _CALLBACK_DEFAULTS}
    missing = object()
    changed = [key for key, value in given.items() if logged.get(key, missing) != value]
    if stopping:
        source = RUN_INFO + (f" + command line ({', '.join(sorted(given))})" if given else "")
    else:
        source = "command line" if given else "defaults"
    return _Settings(merged, float(threshold), section["monitor"], section["time_axis"],
                     bool(section["use_data_floor"]), set(given), source, bool(stopping) and not changed,
                     dict(stopping.get("outcome") or {}))


def _at_steps(series: Series | None, steps: np.ndarray) -> list[float | None]:
    """The value of ``series`` at each of ``steps`` (logged at the same steps), None where it was not logged."""
    lookup = {} if series is None else dict(zip(series.steps.tolist(), series.values.tolist()))
    return [lookup.get(int(st)) for st in steps]


def _monitored(run: Run, monitor: str) -> tuple[str, Series]:
    """The points the live rule saw: ``scaling/monitored_loss`` (logged by the callback), else ``monitor``."""
    name = tag("monitored_loss")
    return (name, run.get(name)) if run.get(name) is not None else (monitor, run.evaluations(monitor))


def _replay_inputs(run: Run, st: _Settings, lr_tag: str) -> tuple[Series, dict[str, Any], dict[str, Any]]:
    """The monitored points (:func:`_monitored`), the per-point inputs of ``stopping.replay`` and the rule's options.

    The inputs: the time axis, ``scaling/lr_sum`` or the per-step learning rate ``lr_tag``; the L(D) floor the live
    callback took from DataLimitGap (``scaling/ld_loss``, logged at the same steps) unless ``use_data_floor`` is off;
    for ``family="effective_data"`` the steps of an epoch it used (``scaling/epoch_steps``) unless the command line
    gives ``epoch_steps``. A floor that was the model's own limit L(N, D) (``scaling/floor_kind`` = 1) is replayed as
    such (``floor_kind="model"``) unless the command line says otherwise.
    """
    _, s = _monitored(run, st.monitor)
    inputs: dict[str, Any] = {}
    options = dict(st.options)
    ld_loss = run.get(tag("ld_loss"))
    if st.use_data_floor and ld_loss is not None:
        inputs["floor"] = _at_steps(ld_loss, s.steps)
        kind = run.get(tag("floor_kind"))
        if kind is not None and "floor_kind" not in st.given and decode_floor_kind(kind.values) == "model":
            options["floor_kind"] = "model"
    epoch_steps = options.pop("epoch_steps", None)
    if options.get("family") == "effective_data" and "epoch_steps" not in st.given:
        # the steps of one epoch the live callback derived from EffectiveEpochs and logged at each evaluation
        logged = _at_steps(run.get(tag("epoch_steps")), s.steps)
        if all(v is not None for v in logged):
            epoch_steps = logged
        elif epoch_steps is None:
            raise RunError(run.name, f"family=effective_data needs {tag('epoch_steps')!r} at every evaluation (logged "
                                     "by ExtraEarlyStopping with that family) or --rule epoch_steps=U")
    if epoch_steps is not None:
        inputs["epoch_steps"] = epoch_steps
    # the summed learning rate is an observation of the live rule whatever its axis (it also shows where the
    # warm-up ends); the axis itself is the rule's time_axis option
    options["time_axis"] = st.time_axis
    lr_sum = _at_steps(run.get(tag("lr_sum")), s.steps)
    if all(v is not None for v in lr_sum) and lr_sum:
        inputs["lr_sum"] = lr_sum
    elif st.time_axis == "lr_sum":
            lr = run.lr_per_step(lr_tag)
            if lr is None:
                raise RunError(run.name, f"time_axis lr_sum needs {tag('lr_sum')!r} at every evaluation or "
                                         f"{lr_tag!r} logged every step")
            inputs["lr"] = lr
    return s, inputs, options


def replay_run(run: Run, args: argparse.Namespace, thresholds: list[float] | None = None) -> list[dict[str, Any]]:
    """Replay the rule over one run at each threshold (default: the live rule's); one result row per threshold.

    The options are the live run's (:func:`_settings`); the row says where they came from (``options_from``). When
    the log holds fewer points than the live rule had, or a replay with the live options does not stop where the
    live run stopped, one line on stderr says so (and ``log_warning`` in each row); the rows are still returned.
    """
    from .stopping import StoppingRule, replay, rule_arguments

    st = _settings(run, args)
    s, inputs, options = _replay_inputs(run, st, args.lr_tag)
    steps, values = s.steps, s.values
    resumed_at = run.restarts.get(_monitored(run, st.monitor)[0], [])
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        raise RunError(run.name, "no finite loss")
    thresholds = thresholds or [st.threshold]
    try:
        arguments = rule_arguments(options)
        for threshold in thresholds:
            StoppingRule(threshold, **arguments)
    except (TypeError, ValueError) as err:
        raise RunError(run.name, f"the stopping options ({st.source}) are not the rule's: {_one_line(err)}; override "
                                 "them on the command line (--rule KEY=VALUE)") from None
    best = float(finite.min())
    n = run.n_params(args.params_key)
    end_flops, _ = flops_at(run, int(steps[-1]), n)
    shown = {**options, "monitor": st.monitor, "time_axis": st.time_axis, "use_data_floor": st.use_data_floor}
    rows = []
    for threshold in thresholds:
        r = replay(steps, values, threshold=threshold, **inputs, **arguments)
        stop_flops = flops_at(run, r.stopped_step, n)[0] if r.stopped_step is not None else None
        target = next((d.stop_loss for d in reversed(r.decisions) if d.stop_loss is not None), None)
        rows.append({
            "run": run.name, "threshold": threshold, "family": r.family, "stopped_step": r.stopped_step,
            "flops_at_stop": stop_flops,
            "loss_at_stop": None if r.stop_index is None else float(values[r.stop_index]),
            "best_loss": best, "predicted_converged": r.converged_loss, "stop_loss": target,
            "prediction_error": None if r.converged_loss is None else (r.converged_loss - best) / best,
            "compute_saved": None if stop_flops is None or not end_flops else 1 - stop_flops / end_flops,
            "last_step": int(steps[-1]), "flops_at_end": end_flops, "options_from": st.source, "options": shown,
            "live_stop_step": st.outcome.get("stopped_step"), "resumed_at": resumed_at})
    warning = _log_warning(run, st, steps, rows)
    if warning:
        print(f"warning {run.name}: {warning}", file=sys.stderr)
    for row in rows:
        row["log_warning"] = warning
    return rows


def _log_warning(run: Run, st: _Settings, steps: np.ndarray, rows: list[dict[str, Any]]) -> str | None:
    """What is wrong with replaying this log, in one line, or None: the live rule had more points than the log holds
    (by the run-info outcome's ``n_points``; without one, a first evaluation far later than their spacing), or a
    replay with the live options does not stop where the live run stopped."""
    notes = []
    stopped, n_live = st.outcome.get("stopped_step"), st.outcome.get("n_points")
    csv_hint = (" (a CSVLogger resumed into the same version deletes the rows written before the resume: log with a "
                "TensorBoardLogger too, or resume into a new version)" if run.kind == "csv" else "")
    if isinstance(n_live, int):
        held = int(np.sum(steps <= stopped)) if isinstance(stopped, int) else int(steps.size)
        if n_live > held:
            notes.append(f"incomplete log: the live rule had {n_live} points, the log holds {held}{csv_hint}")
    elif steps.size >= 3 and steps[0] > 2 * float(np.median(np.diff(steps))):
        notes.append(f"incomplete log?: the first evaluation is at step {int(steps[0])} though they are "
                     f"{float(np.median(np.diff(steps))):g} steps apart{csv_hint}")
    live_row = next((r for r in rows if math.isclose(r["threshold"], st.threshold)), None)
    if "stopped_step" in st.outcome and st.as_live and live_row is not None and live_row["stopped_step"] != stopped:
        reason = f" ({_one_line(st.outcome['reason'])})" if st.outcome.get("reason") else ""
        notes.append(f"the replay with the live options stops at {_step(live_row['stopped_step'])}, the live run "
                     f"stopped at {_step(stopped)}{reason}")
    return "; ".join(notes) or None


def _step(step: int | None) -> str:
    return "no step" if step is None else f"step {step}"


def cmd_replay(args: argparse.Namespace) -> int:
    _check_rule_options(args, args.threshold)
    per_run, skipped = _each_run(args.runs, lambda run: replay_run(run, args, args.threshold))
    results = [row for rows in per_run for row in rows]
    if args.json:
        print(json.dumps(results, indent=2))
        return 1 if skipped else 0

    def f(v, spec, width):
        return f"{'-' if v is None else format(v, spec):>{width}}"
    print(f"{'run':32} {'thr':>5} {'stop':>7} {'FLOP@stop':>10} {'loss@stop':>9} {'best':>8} {'pred err':>8} "
          f"{'saved':>6}  options from")
    for r in results:
        print(f"{_short(r['run'])[-32:]:32} {r['threshold']:5.3f} {f(r['stopped_step'], 'd', 7)} "
              f"{f(r['flops_at_stop'], '.3e', 10)} {f(r['loss_at_stop'], '.4f', 9)} {r['best_loss']:8.4f} "
              f"{f(r['prediction_error'], '+.2%', 8)} {f(r['compute_saved'], '.1%', 6)}  {r['options_from']}")
    return 1 if skipped else 0


# ------------------------------------------------------------------------------------------ calibrate
def calibration_samples(run: Run, args: argparse.Namespace) -> list[tuple[str, float, float]]:
    """One finished run's calibration samples (:func:`lightning_scaling.calibration.run_samples`): the live rule's
    inputs and options (:func:`_settings`), and as the reference converged loss the lowest 3-point centred moving
    average of the monitored loss (the loss it converged to, or the bottom before it turned up)."""
    from .calibration import run_samples
    from .corpus.curves import smooth
    from .stopping import rule_arguments

    st = _settings(run, args)
    s, inputs, options = _replay_inputs(run, st, args.lr_tag)
    keep = np.isfinite(s.values)
    steps, values = s.steps[keep], s.values[keep]
    if values.size < 3:
        raise RunError(run.name, "fewer than 3 finite evaluations")
    reference = float(np.min(smooth(values)))  # as corpus.curves.converged_loss defines it for the recorded runs
    for key in ("calibration", "confidence", "stable_fits"):
        options.pop(key, None)
    per_point = {k: [v for v, ok in zip(inputs[k], keep) if ok] for k in ("lr_sum", "floor", "epoch_steps")
                 if isinstance(inputs.get(k), list)}
    return run_samples(run.name, steps, values, reference, **{**inputs, **per_point}, **rule_arguments(options))


def cmd_calibrate(args: argparse.Namespace) -> int:
    from .calibration import calibrate

    _check_rule_options(args, None)
    per_run, skipped = _each_run(args.runs, lambda run: calibration_samples(run, args))
    samples = [s for rows in per_run for s in rows]
    runs = {s[0] for s in samples}
    if len(runs) < 2:
        print(f"lightning-scaling calibrate: {len(runs)} run(s) with a trusted prediction; a calibration needs at "
              "least 2 (and means something from about 20)", file=sys.stderr)
        return 2
    cal = calibrate(samples, sources=sorted(runs))
    cal.to_json(args.out)
    print(f"{len(samples)} predictions of {len(runs)} runs -> {args.out}")
    for i, n in enumerate(cal.n_runs):
        lo, hi = cal.edges[i], cal.edges[i + 1]
        own = "its own" if cal.quantiles[i] is not None else "the pooled (too few runs)"
        print(f"  g in [{lo:g}, {hi:g}): {n} runs, {own} distribution")
    print(f"use it: ExtraEarlyStopping(calibration={args.out!r}) or replay --rule calibration={args.out}")
    return 1 if skipped else 0


# ------------------------------------------------------------------------------------------ forecast
def forecast_run(run: Run, args: argparse.Namespace) -> dict[str, Any]:
    """The schedule forecast the live callback would have made at ``--at`` (a step, or a fraction of the run): the
    monitored points and ``scaling/lr_sum`` up to it, and as the plan the rest of the run's own schedule (the mean LR
    between its validations), or with ``--constant`` the LR then, held; scored against the loss the run reached."""
    from .corpus.curves import smooth
    from .forecasting import forecast, lr_from_sums

    _, s = _monitored(run, args.monitor or "val_loss")
    per_step = run.lr_per_step(args.lr_tag) if run.get(tag("lr_sum")) is None else None
    if per_step is not None:  # the LR of every step, logged: the exact schedule
        cumulative = np.cumsum(per_step)
        sums = [float(cumulative[st - 1]) if 0 < st <= cumulative.size else None for st in s.steps]
    elif run.get(tag("lr_sum")) is not None:
        sums = _at_steps(run.get(tag("lr_sum")), s.steps)
    else:
        raise RunError(run.name, f"no {tag('lr_sum')!r} (ExtraEarlyStopping logs it) nor {args.lr_tag!r} logged every "
                                 "step: the forecast needs the learning rate")
    keep = np.array([v is not None for v in sums]) & np.isfinite(s.values) & (s.steps > 0)
    steps, values = s.steps[keep], s.values[keep]
    if steps.size < 3:
        raise RunError(run.name, "fewer than 3 evaluations with a learning rate")
    lr = per_step[: int(steps[-1])] if per_step is not None else lr_from_sums(steps, [v for v, k in zip(sums, keep)
                                                                                      if k])
    at = int(round(args.at * steps[-1])) if args.at <= 1 else int(args.at)
    upto = steps <= at
    if not upto.any():
        raise RunError(run.name, f"no evaluation at or before step {at}")
    now = int(steps[upto][-1])
    plan = np.full(lr.size - now, lr[now - 1]) if args.constant else lr[now:]
    f = forecast(steps[upto], values[upto], lr=lr[:now], planned_lr=plan, warmup_steps=args.warmup_steps)
    reached = float(smooth(values)[-1])
    return {"run": run.name, "at_step": now, "final_step": f.final_step, "forecast_final_loss": f.final_loss,
            "interval_low": f.final_interval[0], "interval_high": f.final_interval[1],
            "converged_loss": f.converged_loss, "trusted": f.trusted, "reason": f.reason,
            "reached": reached, "error": f.final_loss / reached - 1 if math.isfinite(f.final_loss) else None}


def cmd_forecast(args: argparse.Namespace) -> int:
    if not args.at > 0:
        raise ValueError("--at must be a step > 1 or a fraction of the run in (0, 1]")
    rows, skipped = _each_run(args.runs, lambda run: forecast_run(run, args))
    if args.json:
        print(json.dumps(rows, indent=2, default=float))
        return 1 if skipped else 0
    for r in rows:
        err = "--" if r["error"] is None else f"{r['error']:+.2%}"
        print(f"{_short(r['run'])}: at step {r['at_step']}, forecast {r['forecast_final_loss']:.4f} at step "
              f"{r['final_step']} [{r['interval_low']:.4f}, {r['interval_high']:.4f}], L0 {r['converged_loss']:.4f}; "
              f"reached {r['reached']:.4f} ({err}){'' if r['trusted'] else '; not trusted: ' + r['reason']}")
    return 1 if skipped else 0


# ------------------------------------------------------------------------------------------ sweep
def sweep_record(run: Run, args: argparse.Namespace):
    """A finished run as a sweep record: its monitored curve, summed LR, N, D and the live rule's outcome."""
    from .sweep import record_from_curve

    _, s = _monitored(run, args.monitor or "val_loss")
    keep = np.isfinite(s.values) & (s.steps > 0)
    steps, values = s.steps[keep], s.values[keep]
    if steps.size < 3:
        raise RunError(run.name, "fewer than 3 finite evaluations")
    n = run.n_params(args.params_key)
    if n is None:
        raise RunError(run.name, f"no parameter count ({args.params_key!r} in the hyperparameters or the run-info "
                                 "file): a sweep pools runs by N")
    sums = _at_steps(run.get(tag("lr_sum")), steps)
    outcome = (run.info.get("stopping") or {}).get("outcome") or {}
    return record_from_curve(_short(run.name), steps, values, n_params=float(n),
                             lr_sum=sums if all(v is not None for v in sums) else None, data=args.data,
                             dataset_size=run.dataset_size(), unit=run.unit, stop_reason=outcome.get("reason"),
                             stop_code=outcome.get("code"), converged_loss=outcome.get("converged_loss"))


def _flop_budget(text: str) -> float:
    """argparse type of ``--budget``: a finite number of FLOPs > 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} is not a compute budget: give a number of FLOPs > 0, e.g. 1e21")
    return value


def cmd_sweep(args: argparse.Namespace) -> int:
    from .sweep import Sweep, write_record

    skipped = 0
    if args.imports:
        records, skipped = _each_run(args.imports, lambda run: sweep_record(run, args))
        for record in records:
            write_record(args.dir, record)
        print(f"imported {len(records)} run(s) into {args.dir}")
    sweep = Sweep(args.dir, data=args.data)
    print(f"{'run':32} {'N':>10} {'D':>10} {'points':>6} {'last step':>9} {'last loss':>9}  stop")
    for r in sweep.records:
        d = "--" if r.dataset_size is None else f"{r.dataset_size:.3g}"
        print(f"{r.run_id[:32]:32} {r.n_params:10.3g} {d:>10} {len(r.steps):6d} {r.steps[-1]:9d} {r.loss[-1]:9.4f}  "
              f"{r.stop_code or '--'}")
    fit = sweep.fit()
    print(f"joint fit ({fit.form}, {fit.n_runs} runs): {fit.message}")
    if fit.success:
        for (n, d) in sorted(fit.groups, key=lambda k: (k[0], k[1] or 0)):
            value, (lo, hi) = fit.converged_loss(n, d, confidence=args.confidence)
            print(f"  N {n:.3g}, D {'--' if d is None else f'{d:.3g}'}: converged loss {value:.4f}, "
                  f"{args.confidence:.0%} interval [{lo:.4f}, {hi:.4f}]")
    accounting = planning.sweep_accounting(sweep.records)
    plan = None
    if args.budget is not None:
        plan = _sweep_plan(fit, accounting, args.budget, args.confidence)
        _print_plan(plan, fit, accounting, args.confidence)
    if args.plot:
        for path in _sweep_figures(sweep.records, fit, accounting, Path(args.plot), plan, args.confidence):
            print(f"wrote {path}")
    return 1 if skipped else 0


@dataclass(frozen=True)
class _SweepPlan:
    """``--budget``'s plan and the calibrated interval of its loss (fitted plans only)."""

    plan: planning.BudgetPlan
    law: planning.SweepLaw | None
    interval: tuple[float, float] | None


def _sweep_plan(fit, accounting: planning.SweepAccounting, budget: float, confidence: float) -> _SweepPlan:
    """The plan for ``budget`` from the fit's own law, else Kaplan's published one with the reason."""
    try:
        if not fit.success:
            raise ValueError(f"the joint fit did not succeed ({fit.message})")
        law = planning.sweep_law(fit.params, fit.axis, accounting)
    except ValueError as err:
        size = accounting.data_size if accounting.unit == "tokens" else None
        return _SweepPlan(planning.plan_budget(budget, None, size, passes=accounting.passes, note=str(err)), None, None)
    plan = planning.plan_budget(budget, law, accounting.data_size, passes=accounting.passes)
    _, (lo, hi) = fit.converged_loss(plan.allocation.n_params, accounting.data_size, confidence=confidence)
    return _SweepPlan(plan, law, (law.at_optimum(lo), law.at_optimum(hi)))


def _print_plan(sp: _SweepPlan, fit, accounting: planning.SweepAccounting, confidence: float) -> None:
    """N, D, the exponents behind them, the loss and its interval, and whether the data at hand suffices."""
    p, a = sp.plan, sp.plan.allocation
    unit = accounting.unit if p.fitted else "tokens"
    steps = f", {p.steps:.4g} steps of {accounting.items_per_step:.4g}" if p.fitted else ""
    print(f"budget {a.compute_flop:.4g} FLOP: train N {a.n_params:.4g} parameters on D {a.n_tokens:.4g} {unit} "
          f"({a.tokens_per_param:.3g} per parameter{steps})")
    if p.fitted:
        law = sp.law
        print(f"  from the sweep's fit: N ~ C^{p.n_exponent:.3f}, D ~ C^{p.d_exponent:.3f} (alpha_N {law.alpha_N:.3g}, "
              f"alpha_S {law.alpha_S:.3g}; [K] eq 1.6, B.4); C = {law.flop_per_item:.3g} N D from "
              f"{accounting.flop_source}")
        lo, hi = sp.interval
        print(f"  predicted loss {a.loss:.4f}, {confidence:.0%} interval [{lo:.4f}, {hi:.4f}]")
        largest = max(n for n, _ in fit.groups)
        if a.n_params > 2 * largest:
            print(f"  N is {a.n_params / largest:.3g}x the sweep's largest model: the law is extrapolated that far "
                  f"(the interval is the calibration's for a size not in the sweep)")
    else:
        print(f"  {p.note}: Kaplan et al. 2020's published allocation instead (Table 6, N ~ C^{p.n_exponent:.2f}, "
              f"D ~ C^{p.d_exponent:.2f} tokens; its loss {a.loss:.4f} is on WebText2, not this data)")
        c_star = p.crossover.compute_pf_days * planning.PF_DAY
        side = "past" if a.compute_flop > c_star else "below"
        print(f"  {side} Kaplan's L(C)/L(D) crossover ({c_star:.3g} FLOP, [K] section 6.3)")
    if p.data_size is None:
        print(f"  data: the records hold no dataset size in {unit}, so whether the data at hand suffices is unknown")
    else:
        verdict = "past it, so more data, not a bigger model" if p.past_data_limit else "below it"
        print(f"  data: the plan reads {a.n_tokens / p.data_size:.3g} passes over the {p.data_size:.4g} {unit} at "
              f"hand, the sweep's runs at most {p.passes:.3g} while their loss fell (budgets up to "
              f"{p.data_limit_flop:.3g} FLOP; [K] section 6.3): {verdict}")


def _time_axis(record, axis: str) -> np.ndarray:
    """A record's time on the fit's axis (summed LR or steps)."""
    return np.asarray(record.lr_sum if axis == "lr_sum" and record.lr_sum else record.steps, dtype=float)


def _sweep_figures(records, fit, accounting: planning.SweepAccounting, out: Path, sp: _SweepPlan | None,
                   confidence: float) -> list[str]:
    """``sweep_curves.png`` and ``sweep_frontier.png`` under ``out``; returns their paths."""
    from .sweep import TAIL_FROM

    plt = _pyplot()
    out.mkdir(parents=True, exist_ok=True)
    fitted = {run for g in fit.groups.values() for run in g["runs"]}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, r in enumerate(records):
        t, y = _time_axis(r, fit.axis), np.asarray(r.loss, dtype=float)
        ok = np.isfinite(t) & (t > 0) & np.isfinite(y)
        color = f"C{i % 10}"
        ax.plot(t[ok], y[ok], ".", ms=2, alpha=0.4, color=color, label=r.run_id[:24])
        if ok.any() and r.run_id in fitted:
            grid = np.geomspace(TAIL_FROM * t[ok].max(), t[ok].max(), 50)
            ax.plot(grid, fit.curve(r.run_id, grid), "-", lw=1.2, color="k", zorder=3)
    ax.set(xscale="log", yscale="log", xlabel="summed learning rate" if fit.axis == "lr_sum" else "step",
           ylabel="loss", title=f"runs and the joint fit ({fit.form}; black: the fit, over the tail it fits)")
    if 0 < len(records) <= 12:
        ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    paths = [_save(plt, fig, out / "sweep_curves.png")]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    _converged_panel(left, fit, sp, confidence)
    _compute_panel(right, records, accounting, sp)
    fig.tight_layout()
    return paths + [_save(plt, fig, out / "sweep_frontier.png")]


def _converged_panel(ax, fit, sp: _SweepPlan | None, confidence: float) -> None:
    """Converged loss against N per data size, with intervals, and the fitted law of N with its band."""
    ax.set(xscale="log", xlabel="parameters N", ylabel="converged loss", title="converged loss against N")
    if not fit.success:
        ax.text(0.5, 0.5, f"no joint fit: {fit.message}", ha="center", wrap=True, transform=ax.transAxes)
        return
    for d in sorted({d for _, d in fit.groups}, key=lambda v: v or 0):
        ns = sorted(n for n, dd in fit.groups if dd == d)
        pts = [fit.converged_loss(n, d, confidence=confidence) for n in ns]
        line = ax.plot(ns, [v for v, _ in pts], "o", label=f"D {'--' if d is None else f'{d:.3g}'} "
                                                           f"({confidence:.0%} intervals)")[0]
        ax.vlines(ns, [lo for _, (lo, _) in pts], [hi for _, (_, hi) in pts], color=line.get_color())
    if "alpha_N" in fit.params:
        sizes = [n for n, _ in fit.groups]
        top = max(max(sizes), sp.plan.allocation.n_params if sp and sp.plan.fitted else 0)
        grid = np.geomspace(min(sizes) / 2, top * 2, 60)
        band = [fit.converged_loss(n, confidence=confidence) for n in grid]
        ax.plot(grid, [b[0] for b in band], "-", c="k", lw=1,
                label=f"E + (N_c/N)^alpha_N, alpha_N {fit.params['alpha_N']:.3g}")
        ax.fill_between(grid, [b[1][0] for b in band], [b[1][1] for b in band], color="k", alpha=0.1,
                        label=f"{confidence:.0%} interval of a size not in the sweep")
    losses = [g["converged_loss"] for g in fit.groups.values()]
    ax.set_ylim(0.5 * min(losses), 2 * max(losses))
    ax.legend(fontsize=7)


def _compute_panel(ax, records, accounting: planning.SweepAccounting, sp: _SweepPlan | None) -> None:
    """Each run's loss against its compute C = k N B S, the frontier of the best losses, and the plan."""
    ax.set(xscale="log", yscale="log", xlabel="compute C (FLOP)", ylabel="loss", title="loss against compute")
    if accounting.items_per_step is None or not records:
        ax.text(0.5, 0.5, "not drawn: the records carry no tokens per step", ha="center", transform=ax.transAxes)
        return
    flop_per_step = accounting.flop_per_item * accounting.items_per_step
    cs, ys = [], []
    for i, r in enumerate(records):
        c, y = flop_per_step * r.n_params * np.asarray(r.steps, dtype=float), np.asarray(r.loss, dtype=float)
        ok = (c > 0) & np.isfinite(y)
        ax.plot(c[ok], y[ok], "-", lw=0.8, alpha=0.5, color=f"C{i % 10}")
        cs.append(c[ok])
        ys.append(y[ok])
    c, y = np.concatenate(cs), np.concatenate(ys)
    order = np.argsort(c)
    ax.step(c[order], np.minimum.accumulate(y[order]), where="post", c="k", lw=1.5,
            label="frontier: the runs' best loss so far")
    if sp is not None and sp.plan.fitted:
        a, (lo, hi) = sp.plan.allocation, sp.interval
        ax.plot([a.compute_flop], [a.loss], "s", c="r", label=f"plan: N {a.n_params:.3g}, D {a.n_tokens:.3g}")
        ax.vlines([a.compute_flop], [lo], [hi], color="r")
        y = np.append(y, a.loss)
    ax.set_ylim(0.8 * y.min(), 1.2 * y.max())
    ax.legend(fontsize=7)


# ------------------------------------------------------------------------------------------ report
def _short(name: str) -> str:
    """The last two parts of a run's path (e.g. ``demo/version_0``)."""
    return "/".join([p for p in Path(name).parts if p not in ("/", ".")][-2:])


def _slug(run: Run, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", _short(run.name)) or "run"
    slug, i = base, 1
    while slug in taken:
        i += 1
        slug = f"{base}_{i}"
    taken.add(slug)
    return slug


def report_run(run: Run, args: argparse.Namespace, out: Path, given_law: Law | None) -> dict[str, Any]:
    """Summary and figures of one run; figures whose data the run did not log are left out (and listed).

    ``given_law`` (``--law``) draws L(D) on the loss-against-data figure: an L(D) power law, or a law of N and D at the
    run's N (as DataLimitGap evaluates it; a Chinchilla law without N: its limit N -> infinity)."""
    from .dashboard import data_limit_figure, learning_curve_figure
    from .fitting import fit_learning_curve

    (row,) = replay_run(run, args, None if args.threshold is None else [args.threshold])
    st = _settings(run, args)
    _, s = _monitored(run, st.monitor)
    steps, values = s.steps, s.values
    out.mkdir(parents=True, exist_ok=True)
    figures, missing = [], []
    plt = _pyplot()

    # learning curve, the rule's fit on the points it had at the stop (or all), the converged and stop lines
    keep = (steps > (st.options.get("warmup_steps") or 0)) & np.isfinite(values) & (steps > 0)
    if row["stopped_step"] is not None:
        keep &= steps <= row["stopped_step"]
    # the curve is a power law L(S) ([K] eq 5.6) fitted to those points; the horizontal lines are the rule's
    # own (its predicted converged loss and the loss it stops at), whatever family it predicts with
    law = converged = None
    try:
        lc = fit_learning_curve(steps[keep], values[keep], irreducible=st.options.get("irreducible", 0.0))
        if lc.success:
            law, converged = lc.law, lc.converged_loss
    except FitError as err:
        missing.append(f"learning-curve fit: {err}")
    fig = learning_curve_figure(steps[steps > 0], values[steps > 0], law, row["predicted_converged"],
                                row["stop_loss"], title=f"{Path(run.name).name}: learning curve")
    if row["stopped_step"] is not None:
        fig.axes[0].axvline(row["stopped_step"], c="red", lw=1, label=f"stop at step {row['stopped_step']}")
        fig.axes[0].legend(fontsize=8)
    figures.append(_save(plt, fig, out / "learning_curve.png"))

    # loss against FLOPs
    n = run.n_params(args.params_key)
    flops = [flops_at(run, int(step), n)[0] for step in steps]
    if all(v is not None and v > 0 for v in flops):
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.loglog(flops, values, "o-", ms=3, label="monitored loss")
        if row["flops_at_stop"]:
            ax.axvline(row["flops_at_stop"], c="red", lw=1, label="stop")
        ax.set_xlabel("FLOP"), ax.set_ylabel("loss"), ax.set_title("loss against compute"), ax.legend(fontsize=8)
        fig.tight_layout()
        figures.append(_save(plt, fig, out / "loss_vs_flops.png"))
    else:
        missing.append("loss_vs_flops: no scaling/flops (FlopCounter) and no N with tokens seen")

    # loss against data seen, with L(D) at the distinct data seen, min(seen, D)
    seen = [tokens_seen(run, int(step)) for step in steps]
    ld_law = (given_law if given_law is None or isinstance(given_law, PowerLaw)
              else _at_n_params(given_law, run.n_params(args.params_key)))
    if given_law is None:
        missing.append("loss_vs_data: no --law (a fitted L(D) JSON or preset)")
    elif ld_law is None:
        missing.append(f"loss_vs_data: the law is one of N and D and the run's N is unknown ({_HOW['n_params']})")
    elif not all(v is not None and v > 0 for v in seen):
        missing.append("loss_vs_data: no scaling/examples_seen or tokens_seen (EffectiveEpochs)")
    elif ld_law.unit != run.unit:
        missing.append(f"loss_vs_data: the law counts {ld_law.unit}, the run {run.unit}")
    else:
        fig = data_limit_figure(np.array(seen), values, ld_law, unit=run.unit, dataset_size=run.dataset_size())
        figures.append(_save(plt, fig, out / "loss_vs_data.png"))
    return {**row, "points": int(steps.size), "fit_converged_loss": converged, "figures": figures,
            "not_drawn": missing}


def _at_n_params(law: ChinchillaLaw | OverfittingLaw, n_params: float | None):
    """L(D) of a law of N and D at ``n_params`` (a Chinchilla law without N: its limit N -> infinity), or None."""
    if n_params is not None:
        return law.data_law(n_params)
    return law.data_law() if isinstance(law, ChinchillaLaw) else None


def _save(plt, fig, path: Path) -> str:
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def cmd_report(args: argparse.Namespace) -> int:
    _check_rule_options(args, None if args.threshold is None else [args.threshold])
    ld_law = presets.resolve(args.law) if args.law else None
    taken: set[str] = set()
    reports, skipped = _each_run(args.runs, lambda run: report_run(run, args, Path(args.out) / _slug(run, taken),
                                                                   ld_law))
    if args.json:
        print(json.dumps(reports, indent=2))
        return 1 if skipped else 0
    for r in reports:
        def f(v, spec):
            return "-" if v is None else format(v, spec)
        print(f"{r['run']}\n  points {r['points']}, best loss {r['best_loss']:.4f}, stop at x{r['threshold']:.3g}: "
              f"step {f(r['stopped_step'], 'd')} (loss {f(r['loss_at_stop'], '.4f')}, "
              f"FLOP {f(r['flops_at_stop'], '.3e')}, "
              f"saved {f(r['compute_saved'], '.1%')}), predicted converged {f(r['predicted_converged'], '.4f')}; "
              f"options from {r['options_from']}")
        for path in r["figures"]:
            print(f"  wrote {path}")
        for note in r["not_drawn"]:
            print(f"  not drawn: {note}")
    return 1 if skipped else 0


# ------------------------------------------------------------------------------------------ parser
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


if __name__ == "__main__":
    sys.exit(main())
