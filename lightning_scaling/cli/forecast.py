"""forecast: the loss at the end of a run's LR schedule, forecast from a prefix of it."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

import numpy as np

from ..logs import Run, RunError
from ..tags import tag
from ._common import _at_steps, _each_run, _monitored, _short

def forecast_run(run: Run, args: argparse.Namespace) -> dict[str, Any]:
    """The schedule forecast the live callback would have made at ``--at`` (a step, or a fraction of the run): the
    monitored points and ``scaling/lr_sum`` up to it, and as the plan the rest of the run's own schedule (the mean LR
    between its validations), or with ``--constant`` the LR then, held; scored against the loss the run reached."""
    from ..corpus.curves import smooth
    from ..forecasting import forecast, lr_from_sums

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
