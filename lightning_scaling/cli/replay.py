"""replay and calibrate: the stopping rule replayed over finished runs with the live run's settings (its run-info
file, then the command line), and the converged-loss interval calibrated on them."""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import planning, presets
from ..logs import Run, RunError, Series, flops_at
from ..run_info import FILENAME as RUN_INFO
from ..tags import decode_floor_kind, tag
from ._common import (_CALLBACK_DEFAULTS, _at_steps, _check_rule_options, _each_run, _given_options, _monitored,
                      _one_line, _short)

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
    from ..stopping import flat_options

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
    from ..stopping import StoppingRule, replay, rule_arguments

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
    from ..calibration import run_samples
    from ..corpus.curves import smooth
    from ..stopping import rule_arguments

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
    from ..calibration import calibrate

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
