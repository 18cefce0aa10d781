"""Fit the demo's L(D) from the project's own recorded runs: `python scripts/fit_demo_ld.py`.

For each dataset size D (distinct training tokens) of the pydoc corpus runs with a constant learning
rate, take the lowest converged loss (lightning_scaling.demo.curves.converged_loss: the lowest smoothed
validation loss) over the model sizes -- L(D) is the best loss any model reaches on D distinct tokens --
among the runs that converged (ended by patience: the validation
loss flattened or turned up; a run cut at max_steps only bounds L(D) from above), and fit L(D) = L_inf + (D_c / D)^alpha_D
([K] eq 1.2 with [H] eq 1.1's irreducible term) with lightning_scaling.fit_power_law. The law is
written to lightning_scaling/data/demo_ld.json, which the demo's DataLimitGap reads.

    python scripts/fit_demo_ld.py [--curves DIR] [--out PATH] [--model l]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lightning_scaling import FitError, PowerLaw, fit_power_law  # noqa: E402
from lightning_scaling.demo.curves import CURVES_DIR, converged_loss, load_curves  # noqa: E402

OUT = ROOT / "lightning_scaling" / "data" / "demo_ld.json"


@dataclass(frozen=True)
class LDPoints:
    """The (D, converged loss) points, with the runs they come from."""

    tokens: list[int]
    losses: list[float]
    runs: list[str]
    n_params: list[int]


def ld_points(curves_dir: Path = CURVES_DIR, model: str | None = None) -> LDPoints:
    """Best converged loss per dataset size over all (or the named) model sizes, constant-LR pydoc runs."""
    curves = load_curves(curves_dir, schedule="constant", source="pydoc")
    if not curves:
        raise SystemExit(f"no recorded constant-LR pydoc runs under {curves_dir}: run scripts/record_curves.py")
    chosen = [c for c in curves if model is None or c.config["model"] == model]
    cut = [c.name for c in chosen if c.config.get("ended_by") != "patience"]
    if cut:
        print(f"left out (cut at max_steps before converging): {', '.join(cut)}", flush=True)
    chosen = [c for c in chosen if c.name not in cut]
    best: dict[int, tuple[float, str, int]] = {}
    for c in chosen:
        loss = converged_loss(c)
        if c.train_tokens not in best or loss < best[c.train_tokens][0]:
            best[c.train_tokens] = (loss, c.name, c.n_params)
    tokens = sorted(best)
    return LDPoints(tokens, [best[d][0] for d in tokens], [best[d][1] for d in tokens], [best[d][2] for d in tokens])


def fit(points: LDPoints) -> PowerLaw:
    try:
        result = fit_power_law(points.tokens, points.losses, unit="tokens", irreducible=True)
    except FitError as err:
        raise SystemExit(f"no L(D) fit: {err} (record more dataset sizes with scripts/record_curves.py)")
    if not result.success or result.law is None:
        raise SystemExit(f"the L(D) fit cannot be trusted: {result.message}")
    law = result.law
    source = (f"lightning-scaling demo corpus: L(D) fitted (fit_power_law, irreducible=True) to the best converged "
              f"val_loss over char GPTs of {min(points.n_params):,}-{max(points.n_params):,} parameters on "
              "pydoc_data.topics at D = "
              f"{', '.join(f'{d:,}' for d in points.tokens)} tokens; regenerate: python scripts/fit_demo_ld.py")
    return PowerLaw(scale=law.scale, exponent=law.exponent, irreducible=law.irreducible, unit="tokens",
                    source=source)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--curves", type=Path, default=CURVES_DIR)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--model", default=None, help="model name of the corpus (s, m, l); default the largest")
    args = parser.parse_args()
    points = ld_points(args.curves, args.model)
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
