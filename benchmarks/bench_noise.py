"""The README's defaults on noisy learning curves: the data-limited stop against the noise, side by side with the bare
1% turn-up it replaced.

Synthetic curves, each evaluated every 50 steps with a 500-step linear warm-up observed as the callback observes it
(``replay(..., lr=...)``), the loss multiplied by ``exp(N(0, noise))`` at each evaluation, 20 seeds per noise level:

* ``falling``: ``L = 2 + 3 (t / 100)^-0.5`` over 20k steps, still 10% above its converged loss 2.0 at the end (a run
  that is not data-limited: any "data-limited" stop is the noise's);
* ``turns up``: the same over 10k steps plus ``0.05`` nats per 1000 steps after step 4500 (overfitting from there);
* ``plateau``: no warm-up and a constant LR; the loss stays at 2.3 until step ``onset`` (100-800, per seed), then
  falls along a sigmoid into ``L_inf + (2.3 - L_inf) ((t - onset + tau) / tau)^-alpha`` over 6k steps, evaluated
  every 20 steps (a classifier's plateau before it learns: any data-limited stop is the noise's).

The arms, in one process: ``noise-aware`` (the package as it is: a turn-up must beat ``max(turn_up,
TURN_UP_Z x the smoothed loss's noise)``, the median of the last 5 evaluations once 6 are past the warm-up, from a
minimum ``TURN_UP_FELL`` times that rise below the first losses); ``noise-aware, no fall test`` (``TURN_UP_FELL =
0``) and ``bare 1%`` (``TURN_UP_Z = 0``, ``TURN_UP_EARLY = 1``, the median of the last 3 throughout and no fall
test: the test before both).
Printed per curve and noise, one column per arm: the runs stopped as data-limited and by the threshold; then for
``falling`` and ``plateau`` the unsafe stops (above 1.15x the loss the run reaches at its end, the rule for runs
that have not converged) and the largest stop ratio (loss at the stop over 2.0; ``plateau``: over its loss at the
end); for ``turns up`` the median step of the stop (the minimum of the clean curve is near step 4500).

    .venv/bin/python benchmarks/bench_noise.py [--markdown] [--seeds 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from tables import render  # noqa: E402
from lightning_scaling import StopReason, replay  # noqa: E402
from lightning_scaling import stopping  # noqa: E402

NOISES = (0.0, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05)
#: The arms: the module constants each sets.
ARMS = {"noise-aware": {"TURN_UP_Z": stopping.TURN_UP_Z, "TURN_UP_EARLY": stopping.TURN_UP_EARLY,
                        "TURN_UP_WINDOW_LATER": stopping.TURN_UP_WINDOW_LATER,
                        "TURN_UP_FELL": stopping.TURN_UP_FELL},
        "noise-aware, no fall test": {"TURN_UP_Z": stopping.TURN_UP_Z, "TURN_UP_EARLY": stopping.TURN_UP_EARLY,
                                      "TURN_UP_WINDOW_LATER": stopping.TURN_UP_WINDOW_LATER, "TURN_UP_FELL": 0.0},
        "bare 1%": {"TURN_UP_Z": 0.0, "TURN_UP_EARLY": 1.0, "TURN_UP_WINDOW_LATER": stopping.TURN_UP_WINDOW,
                    "TURN_UP_FELL": 0.0}}


def curve(kind: str, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(steps, noisy losses, clean losses, the learning rate of every step)."""
    rng = np.random.default_rng(seed)
    if kind == "plateau":
        steps = np.arange(20, 6001, 20)
        onset, width, low, alpha, tau = (rng.uniform(100, 800), rng.uniform(20, 150), rng.uniform(0.2, 1.5),
                                         rng.uniform(0.3, 1.0), rng.uniform(50, 400))
        tail = low + (2.3 - low) * ((np.maximum(steps - onset, 0) + tau) / tau) ** -alpha
        clean = 2.3 - (2.3 - tail) / (1 + np.exp(-(steps - onset) / width))
        return steps, clean * np.exp(rng.normal(0.0, noise, steps.size)), clean, np.full(6000, 1e-3)
    last = 20000 if kind == "falling" else 10000
    steps = np.arange(50, last + 1, 50)
    lr = np.full(last, 1e-3)
    lr[:500] = np.linspace(2e-6, 1e-3, 500)
    clean = 2.0 + 3.0 * (steps / 100.0) ** -0.5
    if kind == "turns up":
        clean = clean + 0.05 * np.maximum(steps - 4500, 0) / 1000
    noisy = clean * np.exp(rng.normal(0.0, noise, steps.size))
    return steps, noisy, clean, lr


def arm_cell(kind: str, noise: float, constants: dict, seeds: int) -> str:
    """One arm on one curve and noise: "data-limited stops, threshold stops; unsafe stops, largest stop ratio" for
    ``falling``, "...; median stop step" for ``turns up``. The module constants are put back afterwards."""
    saved = {k: getattr(stopping, k) for k in constants}
    for k, v in constants.items():
        setattr(stopping, k, v)
    try:
        results = []
        for seed in range(seeds):
            steps, noisy, clean, lr = curve(kind, noise, seed)
            r = replay(steps, noisy, lr=lr)
            at = None if r.stopped_step is None else int(np.searchsorted(steps, r.stopped_step))
            results.append((r.code if at is not None else None, at, clean, steps))
    finally:
        for k, v in saved.items():
            setattr(stopping, k, v)
    limited = sum(code is StopReason.DATA_LIMITED for code, *_ in results)
    threshold = sum(code is StopReason.THRESHOLD for code, *_ in results)
    stops = [(at, c, st) for _, at, c, st in results if at is not None]
    if kind != "turns up":
        unsafe = sum(c[at] > 1.15 * c[-1] for at, c, _ in stops)
        worst = max((c[at] / c[-1] if kind == "plateau" else c[at] / 2.0 for at, c, _ in stops), default=None)
        tail = f"{unsafe}, {'-' if worst is None else f'{worst:.3f}'}"
    else:
        median = statistics.median(int(st[at]) for at, _, st in stops) if stops else None
        tail = "-" if median is None else f"{median:.0f}"
    return f"{limited}/{seeds}, {threshold}/{seeds}; {tail}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--seeds", type=int, default=20)
    args = parser.parse_args(argv)
    rows = [[kind, f"{noise:.2%}"] + [arm_cell(kind, noise, constants, args.seeds) for constants in ARMS.values()]
            for kind in ("falling", "turns up", "plateau") for noise in NOISES]
    header = ["curve", "noise per evaluation"] + list(ARMS)
    print(render(header, rows, args.markdown))


if __name__ == "__main__":
    main()
