"""The one shape of a result: every fit and prediction answers ``success``, ``message`` and ``bool()``.

Like scipy's ``OptimizeResult``: ``success`` says whether the fit produced numbers and ``message`` says what happened.
A prediction (a learning-curve fit, the converged-loss prediction, a schedule forecast) also carries ``trusted`` and
``reason``: whether its numbers may drive a decision, and why not. A stopping decision carries a ``code``
(:class:`~lightning_scaling.stopping.StopReason`) and a ``reason``.
"""

from __future__ import annotations

import math


class PredictionResult:
    """The result shape of a prediction whose number is the field ``VALUE``: ``success`` when it is finite,
    ``message`` its ``reason``, and ``bool(result)`` its success (``trusted`` stays the stronger test)."""

    VALUE = "converged_loss"

    @property
    def success(self) -> bool:
        value = getattr(self, self.VALUE)
        return value is not None and math.isfinite(value)

    @property
    def message(self) -> str:
        return self.reason  # type: ignore[attr-defined]

    def __bool__(self) -> bool:
        return self.success
