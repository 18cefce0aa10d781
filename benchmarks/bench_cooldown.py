"""The WSD cool-down decision (:mod:`lightning_scaling.cooldown`) against real cool-downs begun at several points.

On the runs of ``lightning_scaling/data/curves_cooldown`` (``scripts/record_cooldowns.py``: per model size a stable
run at constant LR to the horizon, and the same run cooled down linearly to 0 over K steps from several starts), for
each size:

* **the rule's choice**: replay the stable run: at each validation up to horizon - K, the forecast
  (:func:`lightning_scaling.forecast`) from the points so far, with the stable run's LR as the history and the planned
  stable-then-decay schedule (the stable LR, then the K-step decay ending at the horizon) as the plan, and the
  decision (:func:`lightning_scaling.cooldown.cooldown_decision`, threshold 1.1, K as recorded); the rule's choice is
  the first validation that begins. Three sources of the stable run's converged loss L0: the forecast's own
  (``mpl``, the module's default), the StoppingRule's point prediction at the same validation (``rule``,
  ``converged_loss=``), and its calibrated 80% one-sided lower bound, which ExtraEarlyStopping(cooldown_steps=K)
  uses.
* **against the recorded starts**: the loss each start really reached at its end (its last validation), the steps
  it used (start + K), the loss the rule's start would reach (linear interpolation between the recorded starts
  around it) and, as a reference measured on the real cool-downs alone, [K]'s criterion applied to them: a power law
  L(c) = L_inf + a (c + K)^(-b) through the loss each start reached, and the start where it is threshold x L_inf.
* **the forecast of the cool-down loss**: at each recorded start, the forecast from the stable prefix of the loss at
  the cool-down's last validation under the cool-down's recorded LR, against the loss it really reached.

    .venv/bin/python benchmarks/bench_cooldown.py [--markdown] [--threshold 1.1]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from lightning_scaling import StoppingRule, forecast
from lightning_scaling.cooldown import cooldown_decision, first_begin, replay_cooldown
from lightning_scaling.corpus.curves import load_curves

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tables import render  # noqa: E402

DATA = Path(__file__).resolve().parent.parent / "lightning_scaling" / "data" / "curves_cooldown"


def load(folder: Path = DATA) -> dict[str, dict]:
    """Per model size: the stable run, the cool-down runs by start, K and the horizon."""
    out: dict[str, dict] = {}
    for c in load_curves(folder):
        size = c.config["model"]
        entry = out.setdefault(size, {"cool": {}})
        if c.config.get("cooldown_start") is None:
            entry["stable"] = c
            entry["horizon"] = int(c.config["horizon"])
        else:
            entry["cool"][int(c.config["cooldown_start"])] = c
            entry["K"] = int(c.config["cooldown_steps"])
    return {k: v for k, v in out.items() if "stable" in v and v["cool"]}


def plan(stable, horizon: int, K: int) -> np.ndarray:
    """The stable run's LR to horizon - K, then the planned linear decay to 0 over K steps (ending at the horizon)."""
    lr = np.asarray(stable.lr, dtype=float)
    base = lr[horizon - K - 1]
    return np.concatenate([lr[:horizon - K], base * (1.0 - np.arange(1, K + 1) / K)])


def rule_converged(stable, until: int, bound: bool = False) -> list[float | None]:
    """The StoppingRule's point prediction of the converged loss at each validation up to ``until`` (None where it
    is not trusted), fed the summed LR as the callback does; ``bound``: its calibrated one-sided lower bound at the
    default confidence instead (the stop loss over the threshold), what ExtraEarlyStopping(cooldown_steps=K) uses."""
    rule = StoppingRule()
    lr_sum = np.cumsum(np.asarray(stable.lr, dtype=float))
    out = []
    for s, y in zip(stable.steps, stable.val_loss):
        if s > until:
            break
        d = rule.update(int(s), float(y), float(lr_sum[int(s) - 1]))
        ok = d.trusted and d.converged_loss and d.stop_loss
        out.append(None if not ok else d.stop_loss / rule.threshold if bound else d.converged_loss)
    return out


def reached(run) -> tuple[int, float]:
    """The last validation of a cool-down run and its loss (the loss the cool-down reached)."""
    return int(run.steps[-1]), float(run.val_loss[-1])


def interp_loss(starts: list[int], losses: list[float], at: int) -> float:
    """The loss a cool-down begun at ``at`` reaches, linear between the recorded starts (NaN outside them)."""
    if not starts[0] <= at <= starts[-1]:
        return math.nan
    return float(np.interp(at, starts, losses))


def recorded_criterion(starts: list[int], ends: list[tuple[int, float]], K: int, threshold: float) -> str:
    """[K]'s criterion on the recorded cool-downs themselves: L(c) = L_inf + a (c + K)^(-b) fitted through the loss
    each start reached (the starts from 600 on: the earliest is no power law yet), and the start c where
    L(c) = threshold x L_inf."""
    from scipy.optimize import curve_fit

    x = np.array([c + K for c in starts if c >= 600], dtype=float)
    y = np.array([loss for c, (_, loss) in zip(starts, ends) if c >= 600])
    try:
        (l_inf, a, b), _ = curve_fit(lambda s, l0, a, b: l0 + a * s ** -b, x, y, p0=[0.8 * y.min(), 10.0, 0.5],
                                     bounds=([0, 0, 0.01], [y.min(), 1e6, 5]), maxfev=20000)
    except RuntimeError:
        return "fit failed"
    c = (a / ((threshold - 1) * l_inf)) ** (1 / b) - K
    return f"L_inf {l_inf:.4f}: begin at {c:.0f}, ending at {threshold * l_inf:.4f}"


def analyse(threshold: float) -> tuple[list[list], list[list]]:
    sets = load()
    choice_rows, error_rows = [], []
    for size, e in sorted(sets.items(), key=lambda kv: kv[1]["stable"].n_params):
        stable, K, H = e["stable"], e["K"], e["horizon"]
        sched = plan(stable, H, K)
        steps, losses = np.asarray(stable.steps), np.asarray(stable.val_loss)
        keep = steps <= H - K
        starts = sorted(e["cool"])
        ends = [reached(e["cool"][c]) for c in starts]
        sources = {"mpl": None, "rule": rule_converged(stable, H - K),
                   "rule's 80% lower bound (the callback)": rule_converged(stable, H - K, bound=True)}
        oracle = recorded_criterion(starts, ends, K, threshold)
        for source, conv in sources.items():
            ds = replay_cooldown(steps[keep], losses[keep], schedule=sched, cooldown_steps=K, threshold=threshold,
                                 converged_losses=conv)
            d = first_begin(ds)
            recorded = ", ".join(f"{c}: {loss:.4f}" for c, (_, loss) in zip(starts, ends))
            if d is None:
                bound = sum("lower bound" in x.reason for x in ds)
                untrusted = sum("not trusted" in x.reason for x in ds)
                last = next((x for x in reversed(ds) if math.isfinite(x.converged_loss)), None)
                tail = "" if last is None else f"; at step {last.step} L_K(inf) = {last.converged_loss:.3f}"
                choice_rows.append([size, source, f"none by step {H - K} ({len(ds)} evaluations: {untrusted} "
                                    f"untrusted, {bound} with L0 at its bound{tail})", "-", "-", "-", recorded,
                                    oracle])
                continue
            at = interp_loss(starts, [loss for _, loss in ends], d.step)
            choice_rows.append([size, source, d.step, d.step + K, f"{d.converged_loss:.4f}",
                                f"{at:.4f}" if math.isfinite(at) else "outside the starts", recorded, oracle])
        for c in starts:
            run = e["cool"][c]
            seen = steps <= c
            f = forecast(steps[seen], losses[seen], lr=sched[:c], planned_lr=sched[c:], calibration=False)
            last, truth = reached(run)
            pred = float(f.loss_at(last, np.asarray(run.lr, dtype=float))) if f.trusted else math.nan
            dec = cooldown_decision(f, K, threshold)
            stable_here = float(np.interp(last, steps, losses)) if last <= steps[-1] else math.nan
            error_rows.append([size, c, last, f"{truth:.4f}",
                               f"{stable_here:.4f}" if math.isfinite(stable_here) else "-",
                               f"{pred:.4f}", f"{100 * (pred / truth - 1):+.2f}%",
                               f"{f.params.get('L0', math.nan):.3f}", "yes" if dec.begin else "no"])
    return choice_rows, error_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--threshold", type=float, default=1.1)
    args = parser.parse_args()
    choices, errors = analyse(args.threshold)
    print(render(["size", "L0 from", "rule begins at", "ends at", "L_K(inf)", "loss its start reaches (interp.)",
                  "recorded starts: loss reached",
                  "[K]'s criterion on the recorded ends"], choices, args.markdown))
    print()
    print(render(["size", "start", "last val step", "loss reached", "stable run there", "forecast",
                  "error", "forecast L0", "rule begins here"], errors, args.markdown))


if __name__ == "__main__":
    main()
