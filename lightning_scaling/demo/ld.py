"""The demo's L(D), fitted from the project's own recorded runs ([K] eq 1.2 with [H] eq 1.1's constant).

For each dataset size D (distinct training tokens, from :data:`MIN_TOKENS` up) of the constant-LR pydoc runs,
the lowest converged loss over the model sizes (:func:`~lightning_scaling.demo.curves.converged_loss`; L(D) is
the best loss any model reaches on D distinct tokens, so the largest model decides it), among the runs that
converged (ended by patience: a run cut at max_steps only bounds L(D) from above), fitted with
:func:`lightning_scaling.fit_power_law`. ``scripts/fit_demo_ld.py`` writes it to
``lightning_scaling/data/demo_ld.json``; the stopping benchmark refits it without the dataset size of the run it
scores (held out), so that the floor never knows the answer.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import partial
from typing import Iterable

import numpy as np
from scipy.optimize import least_squares

from ..errors import FitError
from ..fitting import fit_power_law
from ..laws import PowerLaw
from .curves import RecordedCurve, converged_loss


@dataclass(frozen=True)
class LDPoints:
    """The (D, converged loss) points, with the runs they come from and the runs left out."""

    tokens: list[int]
    losses: list[float]
    runs: list[str]
    n_params: list[int]
    cut: list[str]  # runs left out: cut at max_steps before converging


#: The smallest dataset size the L(D) power law is fitted on. Below it (8k, 16k tokens) every model reaches
#: its best loss within 75-200 steps, in or just after the warm-up, and those points lie 6-13% off any power
#: law through the larger sizes, which it describes within 2%: L(D) is a law of the large-D regime ([K] fit
#: it on D >= 2e7 tokens). Such runs still appear in the corpus; they only do not define L(D).
MIN_TOKENS = 30_000


def ld_points(curves: Iterable[RecordedCurve], model: str | None = None,
              exclude_tokens: Iterable[int] = (), min_tokens: int = MIN_TOKENS) -> LDPoints:
    """Best converged loss per dataset size (>= ``min_tokens``) over the (named) model sizes of constant-LR
    pydoc runs."""
    skip = set(exclude_tokens)
    chosen = [c for c in curves if c.config.get("schedule") == "constant" and c.config.get("source") == "pydoc"
              and (model is None or c.config["model"] == model) and c.train_tokens not in skip
              and c.train_tokens >= min_tokens]
    cut = [c.name for c in chosen if c.config.get("ended_by") != "patience"]
    best: dict[int, tuple[float, str, int]] = {}
    for c in chosen:
        if c.name in cut:
            continue
        loss = converged_loss(c)
        if c.train_tokens not in best or loss < best[c.train_tokens][0]:
            best[c.train_tokens] = (loss, c.name, c.n_params)
    tokens = sorted(best)
    return LDPoints(tokens, [best[d][0] for d in tokens], [best[d][1] for d in tokens],
                    [best[d][2] for d in tokens], cut)


def fit_ld(points: LDPoints, source: str = "") -> PowerLaw:
    """Fit ``L(D) = L_inf + (D_c/D)^alpha_D`` to the points; FitError when it cannot be trusted."""
    result = fit_power_law(points.tokens, points.losses, unit="tokens", irreducible=True)
    if not result.success or result.law is None:
        raise FitError(f"the L(D) fit cannot be trusted: {result.message}")
    law = result.law
    return PowerLaw(scale=law.scale, exponent=law.exponent, irreducible=law.irreducible, unit="tokens",
                    source=source or law.source)


# ---------------------------------------------------------------------------------------------
# L(N, D): the floor for a model too small for its data
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OverfittingLaw:
    """``L(N, D) = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D``: [K] eq 1.5 (4.1), the converged loss of a model
    of N parameters trained on D tokens. At fixed N, ``law.at(N)`` is a floor in D for the stopping rule:
    unlike L(D), which every model is above, it is the limit of this model."""

    n_c: float
    d_c: float
    alpha_n: float
    alpha_d: float

    def __call__(self, n_params, n_tokens):
        n, d = np.asarray(n_params, dtype=float), np.asarray(n_tokens, dtype=float)
        out = np.exp(self.alpha_d * np.logaddexp((self.alpha_n / self.alpha_d) * (math.log(self.n_c) - np.log(n)),
                                                 math.log(self.d_c) - np.log(d)))
        return float(out) if out.ndim == 0 else out

    def at(self, n_params: int):
        """L(D) of a model of ``n_params`` parameters: a callable of the tokens."""
        return partial(self, n_params)


def fit_overfitting_law(curves: Iterable[RecordedCurve], exclude: Iterable[str] = (),
                        min_tokens: int = MIN_TOKENS) -> OverfittingLaw:
    """Fit [K] eq 1.5 by least squares on log loss to the converged losses of the constant-LR pydoc runs that
    converged (ended by patience), with D >= ``min_tokens``, leaving out the runs named in ``exclude``.

    Several starts (a small grid over the four parameters); FitError with fewer than 5 runs.
    """
    skip = set(exclude)
    use = [c for c in curves if c.config.get("schedule") == "constant" and c.config.get("source") == "pydoc"
           and c.config.get("ended_by") == "patience" and c.train_tokens >= min_tokens and c.name not in skip]
    if len(use) < 5:
        raise FitError(f"L(N, D) needs >= 5 converged runs, got {len(use)}")
    logn = np.log([c.n_params for c in use])
    logd = np.log([c.train_tokens for c in use])
    logy = np.log([converged_loss(c) for c in use])

    def residuals(theta):
        lnc, ldc, a_n, a_d = theta
        return a_d * np.logaddexp((a_n / a_d) * (lnc - logn), ldc - logd) - logy

    best = None
    for start in itertools.product((5.0, 10.0, 15.0), (5.0, 10.0, 15.0), (0.1, 0.3), (0.1, 0.3)):
        res = least_squares(residuals, start, bounds=([-50, -50, 1e-3, 1e-3], [100, 100, 3, 3]))
        if best is None or res.cost < best.cost:
            best = res
    lnc, ldc, a_n, a_d = best.x
    return OverfittingLaw(math.exp(lnc), math.exp(ldc), float(a_n), float(a_d))
