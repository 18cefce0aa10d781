"""Make the sweep store the demo's run joins (lightning_scaling/data/demo_sweep.json) from the recorded corpus.

The demo trains the corpus' ``m`` model on 64k characters of ``pydoc_data.topics`` and validates on the same 16k
characters as every run of the recorded pydoc corpus (``lightning_scaling/data/curves``). The bundle holds one sweep
record (:func:`lightning_scaling.sweep.record_from_curve`) per recorded constant-LR run of every *other* size (s, l,
xl) at every recorded data size: the demo's own model size is left out, so that its pooled prediction comes from the
joint fit across sizes and from its own points, not from a recording of the same run. The demo writes these
records into ``<out>/sweep`` before it trains, and its run adds its own record there at the end.

    .venv/bin/python scripts/make_demo_sweep.py [--out lightning_scaling/data/demo_sweep.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lightning_scaling.corpus.curves import load_curves  # noqa: E402
from lightning_scaling.demo.job import DEMO_DATA, DEMO_SWEEP  # noqa: E402
from lightning_scaling.sweep import record_from_curve  # noqa: E402

#: The demo's model size, left out of the bundle.
DEMO_MODEL = "m"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(DEMO_SWEEP))
    args = parser.parse_args(argv)
    records = []
    for c in load_curves():
        if c.config.get("schedule") != "constant" or c.config.get("model") == DEMO_MODEL:
            continue
        if c.config.get("val_tokens") != 16_384 or c.config.get("source") != "pydoc":
            continue
        rec = record_from_curve(f"corpus-{c.name}", c.steps, [round(float(v), 6) for v in c.val_loss],
                                n_params=c.n_params, lr=c.lr, data=DEMO_DATA,
                                n_params_non_embedding=c.config.get("n_params_non_embedding"),
                                dataset_size=c.config["train_tokens"], tokens_per_step=c.config["tokens_per_step"],
                                stop_reason=c.config.get("ended_by"),
                                config={"schedule": "constant", "warmup_steps": c.config.get("warmup"),
                                        "recorded_by": c.config.get("command")})
        rec.lr_sum = [round(v, 9) for v in rec.lr_sum]
        records.append(rec.to_dict())
    bundle = {"format": "lightning-scaling/demo-sweep", "version": 1, "data": DEMO_DATA,
              "source": "lightning_scaling/data/curves (python scripts/record_curves.py)", "records": records}
    Path(args.out).write_text(json.dumps(bundle, separators=(",", ":")))
    print(f"{len(records)} records on {DEMO_DATA!r} -> {args.out}")


if __name__ == "__main__":
    main()
