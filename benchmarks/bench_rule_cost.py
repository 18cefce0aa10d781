"""The cost of one ``StoppingRule.update`` (one validation of a live run) on every curve shape, bounded against
unbounded.

The live callback runs the rule once per validation. Its cost is the curve fits' (scipy's ``least_squares``), and a fit
that cannot converge (a noisy plateau, the normal end of a run; spikes) runs until its evaluation budget is spent.
This benchmark replays synthetic curves of each shape and recorded corpus runs through the rule and prints, per
shape, the median and the worst time of one update, side by side for

* ``bounded``: the shipped budgets (``fitting.CURVE_MAX_NFEV`` per learning-curve fit,
  ``curve_families.EFFECTIVE_DATA_MAX_NFEV`` for the opt-in family);
* ``unbounded``: the same rule with a budget of 2000 evaluations per fit (what the power-law fit had before).

The arms alternate per curve (machine drift hits both) and the time is the process's CPU time (one thread). With
``--points N`` each curve has N validations (the cost grows with the points fitted).

    .venv/bin/python benchmarks/bench_rule_cost.py [--repeats 3] [--points 40] [--markdown]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from tables import render  # noqa: E402
from lightning_scaling import StopConfig, StoppingRule  # noqa: E402
from lightning_scaling import curve_families, fitting  # noqa: E402
from lightning_scaling.corpus.curves import load_curves  # noqa: E402

UNBOUNDED = 2000


def synthetic(n: int, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray, float | None, str]]:
    """Curves of every shape: (steps, losses, floor, family)."""
    rng = np.random.default_rng(seed)
    t = np.arange(1, n + 1) * 25.0
    decay = 2 + 3 * (t / 25.0) ** -0.5
    return {
        "noisy plateau, L(D) floor": (t, 5 * (1 + 0.003 * rng.standard_normal(n)), 4.83, "auto"),
        "noisy plateau, no floor": (t, 5 * (1 + 0.003 * rng.standard_normal(n)), None, "auto"),
        "exact plateau": (t, np.full(n, 3.0), None, "auto"),
        "power-law decay": (t, decay * (1 + 0.003 * rng.standard_normal(n)), None, "auto"),
        "power-law decay, floor": (t, decay * (1 + 0.003 * rng.standard_normal(n)), 1.9, "auto"),
        "saturating exponential": (t, 2 + 3 * np.exp(-t / t[n // 3]) * (1 + 0.003 * rng.standard_normal(n)), None,
                                   "auto"),
        "spikes": (t, 3 + np.where(rng.random(n) < 0.2, 2.0, 0.0) + 0.01 * rng.standard_normal(n), None, "auto"),
        "turns up": (t, decay + 2e-4 * t, None, "auto"),
        "tiny losses (1e-4)": (t, 1e-4 * (1 + (t / 25.0) ** -0.3) * (1 + 0.01 * rng.standard_normal(n)), None, "auto"),
        "huge losses (1e4)": (t, 1e4 * (1 + (t / 25.0) ** -0.3) * (1 + 0.01 * rng.standard_normal(n)), None, "auto"),
        "noisy plateau, effective_data": (t, 5 * (1 + 0.003 * rng.standard_normal(n)), None, "effective_data"),
    }


def recorded(n: int) -> dict[str, tuple[np.ndarray, np.ndarray, float | None, str]]:
    """Corpus runs, the first ``n`` validations after warm-up of each of three shapes."""
    out = {}
    for schedule in ("constant", "cosine", "wsd"):
        runs = load_curves(schedule=schedule)
        if runs:
            c = max(runs, key=lambda r: r.steps.size)
            keep = c.steps > c.config.get("warmup_steps", 0)
            out[f"recorded {schedule} ({c.name})"] = (c.steps[keep][:n], c.val_loss[keep][:n], None, "auto")
    return out


def set_budgets(curve: int, effective_data: int) -> None:
    """The evaluation budget of each learning-curve fit and of an effective-data fit (module constants)."""
    fitting.CURVE_MAX_NFEV = curve_families.CURVE_MAX_NFEV = curve
    curve_families.EFFECTIVE_DATA_MAX_NFEV = effective_data


def time_updates(steps, losses, floor, family, budgets: tuple[int, int]) -> list[float]:
    """CPU seconds of each update of a fresh rule over the curve, with these evaluation budgets per fit."""
    set_budgets(*budgets)
    rule = StoppingRule(config=StopConfig(family=family,
                                          epoch_steps=float(steps[-1]) / 4 if family == "effective_data" else None))
    out = []
    for s, v in zip(steps, losses):
        start = time.process_time()
        rule.update(int(s), float(v), floor=floor)
        out.append(time.process_time() - start)
    return out[rule.min_points - 1:]  # the updates that fit


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="curves of each synthetic shape (different noise)")
    parser.add_argument("--points", type=int, default=40, help="validations per curve")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    shipped = (fitting.CURVE_MAX_NFEV, curve_families.EFFECTIVE_DATA_MAX_NFEV)
    times: dict[str, dict[str, list[float]]] = {}
    for seed in range(args.repeats):
        shapes = {**synthetic(args.points, seed), **(recorded(args.points) if seed == 0 else {})}
        for name, curve in shapes.items():
            arms = times.setdefault(name, {"bounded": [], "unbounded": []})
            arms["bounded"] += time_updates(*curve, budgets=shipped)
            arms["unbounded"] += time_updates(*curve, budgets=(UNBOUNDED, UNBOUNDED))
    set_budgets(*shipped)
    head = ("curve shape", "bounded median ms", "bounded worst ms", "unbounded median ms", "unbounded worst ms",
            "median ratio")
    rows = []
    for name, arms in times.items():
        b, u = arms["bounded"], arms["unbounded"]
        rows.append((name, f"{1e3 * statistics.median(b):.2f}", f"{1e3 * max(b):.2f}",
                     f"{1e3 * statistics.median(u):.2f}", f"{1e3 * max(u):.2f}",
                     f"{statistics.median(u) / max(statistics.median(b), 1e-9):.1f}x"))
    allb = [v for arms in times.values() for v in arms["bounded"]]
    print(f"StoppingRule.update, {args.points} validations per curve, {args.repeats} curves per synthetic shape; "
          f"budgets: {shipped[0]} evaluations per curve fit ({shipped[1]} effective-data), unbounded: {UNBOUNDED}")
    print(render(head, rows, args.markdown))
    print(f"bounded, every shape: median {1e3 * statistics.median(allb):.2f} ms, worst {1e3 * max(allb):.2f} ms "
          f"per update ({len(allb)} updates)")


if __name__ == "__main__":
    main()
