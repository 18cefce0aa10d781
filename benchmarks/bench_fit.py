"""Time fit_chinchilla (full [C] grid) against the plain approach, side by side in one run.

The plain approach is what [C] appendix D.2 describes done naively: one scipy.optimize.minimize
(method="L-BFGS-B", numerical gradient) per grid point. Over the full 4500-point grid that takes many
minutes, so by default it runs on a random subset and the full-grid time is extrapolated from the
median per-start time (pass --plain-starts 4500 for the whole loop).

    .venv/bin/python benchmarks/bench_fit.py [--repeats 5] [--plain-starts 300] [--bootstrap 1000]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from lightning_scaling import fit_chinchilla
from lightning_scaling.fitting import chinchilla_grid

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "chinchilla_fig4_points.csv"


def plain_objective(p, logn, logd, logl, delta=1e-3):
    pred = np.logaddexp(np.logaddexp(p[0] - p[3] * logn, p[1] - p[4] * logd), p[2])
    r = np.abs(pred - logl)
    return np.sum(np.where(r <= delta, 0.5 * r**2, delta * (r - 0.5 * delta)))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--plain-starts", type=int, default=300)
    parser.add_argument("--bootstrap", type=int, default=1000)
    args = parser.parse_args(argv)

    n, flop, loss = np.loadtxt(DATA, delimiter=",", skiprows=1).T
    tokens = flop / (6 * n)
    logn, logd, logl = np.log(n), np.log(tokens), np.log(loss)
    grid = chinchilla_grid()

    package_times, plain_per_start, package_opt = [], [], None
    subset = grid[np.random.default_rng(0).choice(len(grid), min(args.plain_starts, len(grid)), replace=False)]
    plain_best = np.inf
    chunks = np.array_split(subset, args.repeats)
    for chunk in chunks:  # alternate package fit and a chunk of the plain loop, so drift hits both
        t0 = time.perf_counter()
        fit = fit_chinchilla(n, tokens, loss)
        package_times.append(time.perf_counter() - t0)
        package_opt = fit.objective
        t0 = time.perf_counter()
        for x0 in chunk:
            plain_best = min(plain_best, minimize(plain_objective, x0, args=(logn, logd, logl), method="L-BFGS-B").fun)
        plain_per_start.append((time.perf_counter() - t0) / len(chunk))

    t0 = time.perf_counter()
    boot = fit_chinchilla(n, tokens, loss, bootstrap=args.bootstrap, seed=0)
    boot_time = time.perf_counter() - t0

    pkg = statistics.median(package_times)
    plain_full = statistics.median(plain_per_start) * len(grid)
    print(f"points: {len(loss)}  grid starts: {len(grid)}")
    print(f"fit_chinchilla (full grid)          median {pkg:8.2f} s over {args.repeats} runs; "
          f"optimum {package_opt:.12g}")
    print(f"plain L-BFGS-B loop ({len(subset)} starts)   "
          f"median {statistics.median(plain_per_start) * 1e3:8.1f} ms/start;"
          f" best optimum {plain_best:.12g}")
    print(f"plain loop, full grid (extrapolated) {plain_full:8.1f} s")
    print(f"ratio plain/package                 {plain_full / pkg:8.0f}x")
    print(f"optimum: package - plain = {package_opt - plain_best:.3g} (<= 0 means the package is at least as good)")
    print(f"bootstrap {args.bootstrap} resamples         {boot_time:8.2f} s; law {boot.law}")
    print("intervals:", {k: tuple(round(v, 4) for v in iv) for k, iv in boot.intervals.items()})


if __name__ == "__main__":
    main()
