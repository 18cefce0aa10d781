"""The demo's L(D), fitted from the project's own recorded runs ([K] eq 1.2 with [H] eq 1.1's constant).

For each dataset size D (distinct training tokens, from :data:`MIN_TOKENS` up) of the constant-LR pydoc runs,
the lowest converged loss over the model sizes (:func:`~lightning_scaling.corpus.curves.converged_loss`; L(D) is
the best loss any model reaches on D distinct tokens, so the largest model decides it), among the runs that
converged (ended by patience: a run cut at max_steps only bounds L(D) from above), fitted with
:func:`lightning_scaling.fit_power_law`. ``scripts/fit_demo_ld.py`` writes it to
``lightning_scaling/data/demo_ld.json``; the stopping benchmark refits it without the dataset size of the run it
scores (held out), so that the floor never knows the answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from ..errors import FitError
from ..fitting import fit_overfitting_law, fit_power_law
from ..laws import ModelDataLaw, OverfittingLaw, PowerLaw
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


def _scaling_runs(curves: Iterable[RecordedCurve], min_tokens: int, source: str = "pydoc") -> list[RecordedCurve]:
    """The runs the laws are fitted on: constant LR, one text (``source``), D >= ``min_tokens``."""
    return [c for c in curves if c.config.get("schedule") == "constant" and c.config.get("source") == source
            and c.train_tokens >= min_tokens]


def ld_points(curves: Iterable[RecordedCurve], model: str | None = None,
              exclude_tokens: Iterable[int] = (), min_tokens: int = MIN_TOKENS, source: str = "pydoc") -> LDPoints:
    """Best converged loss per dataset size (>= ``min_tokens``) over the (named) model sizes of constant-LR
    runs on one text (``source``: "pydoc", or "stdlib" for the out-of-sample runs)."""
    skip = set(exclude_tokens)
    chosen = [c for c in _scaling_runs(curves, min_tokens, source)
              if (model is None or c.config["model"] == model) and c.train_tokens not in skip]
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
    result = fit_power_law(points.tokens, points.losses, unit="tokens", fit_irreducible=True)
    if not result.success or result.law is None:
        raise FitError(f"the L(D) fit cannot be trusted: {result.message}")
    law = result.law
    return PowerLaw(scale=law.scale, exponent=law.exponent, irreducible=law.irreducible, unit="tokens",
                    source=source or law.source)


# ---------------------------------------------------------------------------------------------
# L(N, D): the floor for a model too small for its data
# ---------------------------------------------------------------------------------------------
def overfitting_law(curves: Iterable[RecordedCurve], exclude: Iterable[str] = (),
                    min_tokens: int = MIN_TOKENS, source: str = "pydoc") -> OverfittingLaw:
    """[K] eq 1.5 (:func:`lightning_scaling.fit_overfitting_law`) fitted to the converged losses of the
    constant-LR runs on one text (``source``) that converged (ended by patience), with D >= ``min_tokens`` and N =
    all parameters, leaving out the runs named in ``exclude``. ``law.data_law(N)`` is the floor of a model of N
    parameters: unlike L(D), which every model is above, it is that model's own limit. FitError when it cannot be
    fitted.
    """
    skip = set(exclude)
    use = [c for c in _scaling_runs(curves, min_tokens, source)
           if c.config.get("ended_by") == "patience" and c.name not in skip]
    fit = fit_overfitting_law([c.n_params for c in use], [c.train_tokens for c in use],
                              [converged_loss(c) for c in use])
    if not fit.success or fit.law is None:
        raise FitError(f"the L(N, D) fit cannot be trusted: {fit.message}")
    return fit.law


def held_out_overfitting_floor(curves: Iterable[RecordedCurve], curve: RecordedCurve) -> ModelDataLaw:
    """The L(N, D) floor of ``curve`` (a callable of D at its N), fitted on the runs on its text without every run
    at its (N, D)."""
    curves = list(curves)
    same = [c.name for c in curves if (c.n_params, c.train_tokens) == (curve.n_params, curve.train_tokens)]
    return overfitting_law(curves, exclude=same, source=curve.config.get("source", "pydoc")).data_law(curve.n_params)
