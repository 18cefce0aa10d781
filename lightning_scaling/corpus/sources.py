"""The four recorded sources of learning curves, their reference converged losses, and calibration samples from them.

* ``pydoc``: the corpus (``data/curves``), char-level GPTs on Python's documentation;
* ``stdlib``: the holdout (``data/curves_holdout``), the same models on the standard library's source;
* ``spread``: the second holdout (``data/curves_spread``), training and validation sets drawn from one pool;
* ``luo``: Luo et al. 2025's GPU language models (``data/curves_luo``), single-epoch, nine schedules;
* ``digits`` (:data:`EXTERNAL`): MLPs and a CNN classifying handwritten digits, trained by other code
  (``data/curves_digits``, ``scripts/record_digits.py``). It calibrates nothing and chose nothing: the benchmarks
  score the shipped defaults on it, as on a user's curves.

The reference converged loss is the lowest smoothed validation loss for the CPU runs (they converge or turn up;
:func:`~lightning_scaling.corpus.curves.converged_loss`) and the authors' fitted asymptote L0 for Luo et al.'s (they
never converge).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..calibration import Calibration, calibrate, run_samples
from .curves import (DIGITS_DIR, HOLDOUT_DIR, SPREAD_DIR, RecordedCurve, converged_loss, converged_step, load_curves,
                     load_luo_curves, smooth)

#: The sources, in the order the benchmarks print them.
SOURCES = ("pydoc", "stdlib", "spread", "luo")
#: The source no calibration or choice has seen (scored with the shipped calibration, made from all of SOURCES).
EXTERNAL = ("digits",)


def load_source(name: str) -> list[RecordedCurve]:
    """The curves of one source (:data:`SOURCES` or :data:`EXTERNAL`). Raises ValueError for another name."""
    loaders: dict[str, Callable[[], list[RecordedCurve]]] = {
        "pydoc": load_curves, "stdlib": lambda: load_curves(HOLDOUT_DIR), "spread": lambda: load_curves(SPREAD_DIR),
        "luo": load_luo_curves, "digits": lambda: load_curves(DIGITS_DIR)}
    if name not in loaders:
        raise ValueError(f"source must be one of {SOURCES + EXTERNAL}, got {name!r}")
    return loaders[name]()


def is_luo(curve: RecordedCurve) -> bool:
    """Whether the curve is one of Luo et al.'s (which never converge)."""
    return curve.config.get("source") == "luo2025"


def reference(curve: RecordedCurve) -> tuple[float, int]:
    """(L_ref, the run's reference length in steps): the converged loss and its step, or Luo's L0 and the last step."""
    if is_luo(curve):
        return float(curve.config["reference_loss"]), int(curve.steps[-1])
    return converged_loss(curve), converged_step(curve)


def unsafe_stop(curve: RecordedCurve, step: int, loss: float) -> bool:
    """Whether a stop at ``step`` with the known loss ``loss`` there is unsafe: above 1.2x the reference converged
    loss (the CPU runs), or, for Luo et al.'s runs, which never converge, above 1.15x a (smoothed) loss the run
    reaches after it."""
    if not is_luo(curve):
        return loss > 1.2 * reference(curve)[0]
    later = smooth(curve.val_loss)[int(np.searchsorted(curve.steps, step, side="right")):]
    return bool(later.size) and loss > 1.15 * float(later.min())


def source_samples(name: str) -> list[tuple[str, float, float]]:
    """The calibration samples (:func:`~lightning_scaling.calibration.run_samples`) of every run of a source, replayed
    with the README's defaults and the learning rate observed (as the live callback does)."""
    out = []
    for curve in load_source(name):
        out += run_samples(f"{name}/{curve.name}", curve.steps, curve.val_loss, reference(curve)[0], lr=curve.lr)
    return out


def held_out_calibrations(held_out=SOURCES) -> dict[str, Calibration]:
    """For each source in ``held_out``, the calibration made from the other sources' samples
    (:func:`source_samples`): what a run of that source is scored with, leave one source out."""
    samples = {name: source_samples(name) for name in SOURCES}
    others = {held: [name for name in SOURCES if name != held] for held in held_out}
    return {held: calibrate([s for name in others[held] for s in samples[name]], sources=others[held])
            for held in held_out}
