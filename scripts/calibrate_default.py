"""Make the calibration the package ships (lightning_scaling/data/calibration.json) from the recorded curves.

Every run of the four recorded sources (the pydoc corpus, the stdlib holdout, the spread set and Luo et al. 2025's
GPU runs) is replayed with the README's defaults, observing the learning rate as the live callback does, and its
trusted predictions are scored against its reference converged loss (the lowest smoothed validation loss for the
CPU runs, the authors' fitted asymptote L0 for Luo et al.'s). benchmarks/bench_calibrated_stop.py measures the
result leave one source out.

    .venv/bin/python scripts/calibrate_default.py [--out lightning_scaling/data/calibration.json]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lightning_scaling.calibration import DEFAULT_PATH, calibrate  # noqa: E402
from lightning_scaling.corpus.sources import SOURCES, source_samples  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(DEFAULT_PATH))
    args = parser.parse_args(argv)
    samples = [s for name in SOURCES for s in source_samples(name)]
    calibrate(samples, sources=SOURCES).to_json(args.out)
    print(f"{len(samples)} predictions of {len({s[0] for s in samples})} runs -> {args.out}")


if __name__ == "__main__":
    main()
