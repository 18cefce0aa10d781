"""sweep: a sweep store of runs, the joint fit of their learning curves, the plan for a budget and the figures."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import planning
from ..logs import Run, RunError
from ..tags import tag
from ._common import _at_steps, _each_run, _monitored, _pyplot, _save, _short

def sweep_record(run: Run, args: argparse.Namespace):
    """A finished run as a sweep record: its monitored curve, summed LR, N, D and the live rule's outcome."""
    from ..sweep import record_from_curve

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
    from ..sweep import Sweep, write_record

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
    from ..sweep import TAIL_FROM

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
