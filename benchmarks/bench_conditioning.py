"""Which curve family, and which observable feature beside g, give the narrowest calibrated interval of the converged
loss at its nominal coverage, held out by source?

Every run of the four sources (:mod:`lightning_scaling.corpus.sources`) is replayed with the README's defaults (the
learning rate observed, no floor, no stop) for each family of the rule (``auto``, which averages the power law and the
saturating exponential without a floor; ``power``; ``exponential``). Each trusted prediction L_hat gives a score
``e = log(L_ref / L_hat)`` and the features: ``g = s / L_hat - 1`` (what the shipped calibration conditions on), the
log-span of the fitted time ``log(t_last / t_first)`` (how much of the curve the fit has seen), the points fitted,
the spread of the families' converged losses over L_hat (how much they disagree), and the fit's own interval width.

Each source in turn is held out: :func:`lightning_scaling.calibration.calibrate` is made on the other three, binned by
g (the package's bins) or by g crossed with the tertiles of one more feature (on the calibration sources), and the
80% central interval is scored on every trusted decision of the held-out source: its coverage and median relative
width, and the runs with a prediction at all. A feature or a family is worth keeping only if it narrows the interval
at the same coverage on every held-out source.

    .venv/bin/python benchmarks/bench_conditioning.py [--markdown] [--families auto power exponential]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from tables import render  # noqa: E402
from lightning_scaling.calibration import G_EDGES, calibrate  # noqa: E402
from lightning_scaling.corpus.sources import SOURCES, load_source, reference  # noqa: E402
from lightning_scaling.stopping import StopConfig, StoppingRule  # noqa: E402

LEVEL = 0.8
FEATURES = (None, "log_span", "points", "family_spread", "fit_width")


def decisions(family: str) -> list[dict]:
    """Every trusted prediction of every run of every source, with its score and features."""
    out = []
    for source in SOURCES:
        for curve in load_source(source):
            ref = reference(curve)[0]
            rule = StoppingRule(calibration=False, stop_when_data_limited=False,
                                config=StopConfig(stable_fits=10 ** 9, family=family))
            lr_sum = np.cumsum(np.asarray(curve.lr, dtype=float))
            for step, loss in zip(curve.steps, curve.val_loss):
                d = rule.update(int(step), float(loss), float(lr_sum[int(step) - 1]))
                if not (d.trusted and d.converged_loss and d.converged_loss > 0 and d.smoothed_loss):
                    continue
                conv, times = d.converged_loss, rule.times
                fams = [f.converged_loss for f in rule.last_fit.fits if math.isfinite(f.converged_loss)]
                lo, hi = d.interval
                out.append({"source": source, "run": f"{source}/{curve.name}", "e": math.log(ref / conv),
                            "g": d.smoothed_loss / conv - 1.0,
                            "log_span": math.log(times[-1] / times[0]) if times[0] > 0 else 0.0,
                            "points": float(len(times)),
                            "family_spread": (max(fams) - min(fams)) / conv if len(fams) > 1 else 0.0,
                            "fit_width": (hi - lo) / conv if math.isfinite(hi - lo) else 1e9})
    return out


def score(rows: list[dict], feature: str | None) -> dict[str, tuple[float, float, int]]:
    """Per held-out source: (coverage, median relative width, runs with a prediction) of the 80% interval."""
    n_g = len(G_EDGES) - 1
    out = {}
    for held in SOURCES:
        train = [r for r in rows if r["source"] != held]
        cuts = np.quantile([r[feature] for r in train], [1 / 3, 2 / 3]) if feature else np.array([])

        def key(r):
            gb = int(np.clip(np.searchsorted(G_EDGES, max(r["g"], 0.0), side="right") - 1, 0, n_g - 1))
            return float(gb * (cuts.size + 1) + (np.searchsorted(cuts, r[feature], side="right") if feature else 0))

        edges = tuple(float(i) for i in range(n_g * (cuts.size + 1))) + (math.inf,)
        cal = calibrate([(r["run"], key(r), r["e"]) for r in train], edges=edges)
        test = [r for r in rows if r["source"] == held]
        inside, widths = [], []
        for r in test:
            lo, hi = cal.log_bounds(key(r), LEVEL)
            inside.append(lo <= r["e"] <= hi)
            widths.append(math.exp(hi) - math.exp(lo))
        out[held] = (float(np.mean(inside)) if inside else math.nan,
                     statistics.median(widths) if widths else math.nan, len({r["run"] for r in test}))
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--families", nargs="+", default=["auto", "power", "exponential"])
    args = parser.parse_args(argv)
    rows = []
    for family in args.families:
        found = decisions(family)
        for feature in FEATURES if family == "auto" else (None,):
            result = score(found, feature)
            rows.append([family, "g" if feature is None else f"g x {feature}"] + [
                f"{c:.2f}, {w:.3f} ({n})" for c, w, n in (result[s] for s in SOURCES)])
    header = ["family", "binned by"] + [f"{s}: coverage, width (runs)" for s in SOURCES]
    print(f"80% central interval, calibrated leave one source out, over every trusted prediction")
    print(render(header, rows, args.markdown))


if __name__ == "__main__":
    main()
