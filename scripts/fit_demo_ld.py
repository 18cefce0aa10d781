"""Fit the demo's L(D) from the project's own recorded runs: `python scripts/fit_demo_ld.py`.

The points and the fit are lightning_scaling.corpus.ld (ld_points, fit_ld): for each dataset size D of the
constant-LR pydoc runs, the lowest converged loss over the model sizes, fitted with fit_power_law. The
law is written to lightning_scaling/data/demo_ld.json (with its points), which the demo's DataLimitGap reads.

    python scripts/fit_demo_ld.py [--curves DIR] [--out PATH] [--model l]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lightning_scaling import FitError, PowerLaw  # noqa: E402
from lightning_scaling.corpus.curves import CURVES_DIR, load_curves  # noqa: E402
from lightning_scaling.corpus.ld import LDPoints, fit_ld, ld_points  # noqa: E402

OUT = ROOT / "lightning_scaling" / "data" / "demo_ld.json"


def fit(points: LDPoints) -> PowerLaw:
    try:
        return fit_ld(points, source=(
            f"lightning-scaling demo corpus: L(D) fitted (fit_power_law, fit_irreducible=True) to the best converged "
            f"val_loss over char GPTs of {min(points.n_params):,}-{max(points.n_params):,} parameters on "
            "pydoc_data.topics at D = "
            f"{', '.join(f'{d:,}' for d in points.tokens)} tokens; regenerate: python scripts/fit_demo_ld.py"))
    except FitError as err:
        raise SystemExit(f"no L(D) fit: {err} (record more dataset sizes with scripts/record_curves.py)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--curves", type=Path, default=CURVES_DIR)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--model", default=None, help="model name of the corpus (s, m, l); default the largest")
    args = parser.parse_args()
    points = ld_points(load_curves(args.curves), args.model)
    if not points.tokens:
        raise SystemExit(f"no converged constant-LR pydoc runs under {args.curves}: run scripts/record_curves.py")
    if points.cut:
        print(f"left out (cut at max_steps before converging): {', '.join(points.cut)}", flush=True)
    law = fit(points)
    law.to_json(args.out)
    # the points beside the law (ignored by PowerLaw.from_json), so the file says what it was fitted on
    data = json.loads(args.out.read_text())
    data["points"] = {"tokens": points.tokens, "converged_loss": points.losses, "runs": points.runs,
                      "n_params": points.n_params}
    args.out.write_text(json.dumps(data, indent=2) + "\n")
    for d, loss, name in zip(points.tokens, points.losses, points.runs):
        print(f"  D = {d:>9,} tokens: converged val_loss {loss:.4f}  fit {float(law(d)):.4f}  ({name})")
    print(f"L(D) = {law.irreducible:.4f} + ({law.scale:.4g} / D)^{law.exponent:.4f}  -> {args.out}")


if __name__ == "__main__":
    main()
