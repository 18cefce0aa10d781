"""report: per-run summary and figures (learning curve with fit and stop, loss against FLOPs and against data)."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from .. import presets
from ..errors import FitError
from ..laws import ChinchillaLaw, Law, OverfittingLaw, PowerLaw
from ..logs import Run, flops_at, tokens_seen
from ._common import _check_rule_options, _each_run, _monitored, _pyplot, _save, _short
from .fit import _HOW
from .replay import _settings, replay_run

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
    from ..dashboard import data_limit_figure, learning_curve_figure
    from ..fitting import fit_learning_curve

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
