"""Published scaling-law constants as named laws, each with its source.

Sources (see docs/science.md):
[K] Kaplan et al. 2020, arXiv 2001.08361; [H] Henighan et al. 2020, arXiv 2010.14701;
[C] Hoffmann et al. 2022, arXiv 2203.15556; [B] Besiroglu et al. 2024, arXiv 2404.10102;
[M] Muennighoff et al. 2023, arXiv 2305.16264.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path

from .laws import ChinchillaLaw, Law, ModelDataLaw, OverfittingLaw, PowerLaw, load_law

#: One PF-day in FLOP: 1e15 FLOP/s x 86400 s (also ``planning.PF_DAY``).
PF_DAY = 8.64e19

# --- Kaplan et al. 2020 (WebText2, BPE 50257, n_ctx 1024), eq 1.1-1.3, 1.6, 5.4 ---
#: [K] eq 1.1: exponent of L(N), non-embedding parameters.
KAPLAN_ALPHA_N = 0.076
#: [K] eq 1.1: N_c.
KAPLAN_N_C = 8.8e13
#: [K] eq 1.2: exponent of L(D), tokens.
KAPLAN_ALPHA_D = 0.095
#: [K] eq 1.2: D_c.
KAPLAN_D_C = 5.4e13
#: [K] eq 1.3: exponent of L(C_min), PF-days.
KAPLAN_ALPHA_C = 0.050
#: [K] eq 1.3: C_c in PF-days.
KAPLAN_C_C = 3.1e8
#: [K] eq 1.6 / 5.6: exponent of the step term of L(N, S).
KAPLAN_ALPHA_S = 0.76
#: [K] eq 1.6: S_c in steps.
KAPLAN_S_C = 2.1e3
#: [K] eq 1.4: critical batch B_crit(L) = B* / L^(1/alpha_B), tokens.
KAPLAN_B_STAR = 2.1e8
KAPLAN_ALPHA_B = 0.21


@dataclass(frozen=True)
class Allocation:
    """A compute-efficient power law y = coefficient * C^exponent (C in PF-days), [K] Table 6."""

    coefficient: float
    exponent: float
    unit: str

    def __call__(self, compute_pf_days: float) -> float:
        return self.coefficient * float(compute_pf_days) ** self.exponent


#: [K] Table 6: compute-efficient allocations as functions of C_min in PF-days.
KAPLAN_TABLE6 = {
    "n_params": Allocation(1.3e9, 0.73, "params"),
    "batch_tokens": Allocation(2.0e6, 0.24, "tokens"),
    "steps": Allocation(5.4e3, 0.03, "steps"),
    "tokens": Allocation(2.0e10, 0.27, "tokens"),
}

#: [M] eq 5-6: decay constants of repeated data and excess parameters (fitted on C4).
MUENNIGHOFF_R_D_STAR = 15.39
MUENNIGHOFF_R_N_STAR = 5.31

_K = "Kaplan et al. 2020"
_H = "Henighan et al. 2020 Table 1"

_LAWS: dict[str, Law] = {
    "kaplan2020_ln": PowerLaw(KAPLAN_N_C, KAPLAN_ALPHA_N, unit="params", source=f"{_K} eq 1.1"),
    "kaplan2020_ld": PowerLaw(KAPLAN_D_C, KAPLAN_ALPHA_D, unit="tokens", source=f"{_K} eq 1.2"),
    "kaplan2020_lc": PowerLaw(KAPLAN_C_C, KAPLAN_ALPHA_C, unit="pf_days", source=f"{_K} eq 1.3"),
    "kaplan2020_ls": PowerLaw(KAPLAN_S_C, KAPLAN_ALPHA_S, unit="steps", source=f"{_K} eq 1.6 (step term)"),
    "henighan2020_image8x8": PowerLaw(8.0e1, 0.24, 3.12, unit="params", source=f"{_H}, image 8x8"),
    "henighan2020_image32x32": PowerLaw(6.3e1, 0.13, 2.20, unit="params", source=f"{_H}, image 32x32"),
    "henighan2020_math": PowerLaw(1.1e4, 0.16, 0.28, unit="params", source=f"{_H}, math"),
    "henighan2020_language": PowerLaw(1.47e14, 0.070, 0.0, unit="params", source=f"{_H}, language"),
    "hoffmann2022": ChinchillaLaw(1.69, 406.4, 410.7, 0.34, 0.28, source="Hoffmann et al. 2022 eq 10 (approach 3)"),
    "besiroglu2024": ChinchillaLaw(1.8172, 482.01, 2085.43, 0.3478, 0.3658,
                                   source="Besiroglu et al. 2024 eq 4 (refit of [C] Figure 4)"),
}


def names() -> list[str]:
    """Names of the preset laws."""
    return sorted(_LAWS)


def get(name: str) -> Law:
    """The preset law called ``name`` (see :func:`names`)."""
    try:
        return _LAWS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(names())}") from None


@dataclass(frozen=True)
class ComputeRange:
    """The training compute a law was fitted on (or published for), in FLOP: outside it a law extrapolates.

    Attributes:
        low, high: the smallest and the largest compute, in FLOP.
        what: where the range comes from (the runs of a paper's figure, or the points of a fit).
    """

    low: float
    high: float
    what: str

    def contains(self, compute_flop: float) -> bool:
        """Whether ``compute_flop`` lies within [low, high]."""
        return self.low <= compute_flop <= self.high


_FIG4 = ComputeRange(1.4e18, 1.3e22, "the training runs of Hoffmann et al. 2022 Figure 4 that approach 3 was fitted on "
                                     "(as digitised by Besiroglu et al. 2024)")
#: The compute each preset that plans a budget was fitted on: [C]/[B] the runs of [C] Figure 4 (approach 3's data,
#: tests/data/chinchilla_fig4_points.csv); [K] the compute axis of its Figure 1, about 1e-8 to 10 PF-days.
COMPUTE_RANGES: dict[str, ComputeRange] = {
    "hoffmann2022": _FIG4,
    "besiroglu2024": _FIG4,
    "kaplan2020_lc": ComputeRange(1e-8 * PF_DAY, 10 * PF_DAY, "the runs of Kaplan et al. 2020 Figure 1 "
                                                             "(about 1e-8 to 10 PF-days)"),
}

#: The key under which ``lightning-scaling fit --out`` records the compute of the points a law was fitted on:
#: ``{"compute_flop": [low, high], "points": n}``.
FITTED_ON = "fitted_on"


def compute_range(law: str | Path) -> ComputeRange | None:
    """The compute ``law`` was fitted on: a preset's (:data:`COMPUTE_RANGES`), or for a law JSON file the range that
    ``lightning-scaling fit --out`` recorded in it (:data:`FITTED_ON`); None when unknown.

    Example:
        >>> compute_range("hoffmann2022").contains(1.21e20)
        True
    """
    if isinstance(law, str) and law in _LAWS:
        return COMPUTE_RANGES.get(law)
    path = Path(law)
    try:
        fitted = json.loads(path.read_text()).get(FITTED_ON) if path.is_file() else None
        low, high = fitted["compute_flop"]
        return ComputeRange(float(low), float(high), f"the {fitted.get('points', 'fitted')} points of {path}")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError, KeyError, TypeError):
        return None


def resolve(law: Law | ModelDataLaw | str | Path | dict) -> Law | ModelDataLaw:
    """The law a user means: a law object as it is, a preset name (:func:`names`), a path to a law JSON file, or
    a law as a dict or JSON text (:func:`~lightning_scaling.laws.load_law`).

    Args:
        law: a :class:`~lightning_scaling.laws.PowerLaw`, :class:`~lightning_scaling.laws.ChinchillaLaw`,
            :class:`~lightning_scaling.laws.OverfittingLaw` or :class:`~lightning_scaling.laws.ModelDataLaw`; a
            preset name such as ``"kaplan2020_ld"``; a path; a dict or JSON text as written by ``to_json``.

    Raises:
        ValueError: a name that is neither a preset nor an existing file (the message lists the presets and the
            nearest names), or a file that is not a law JSON (the message names the file).
        TypeError: ``law`` is none of these.

    Example:
        >>> resolve("kaplan2020_ld").exponent
        0.095
        >>> resolve("kaplan2020")
        Traceback (most recent call last):
          ...
        ValueError: 'kaplan2020' is neither a preset law nor an existing law JSON file; did you mean ...
    """
    if isinstance(law, (PowerLaw, ChinchillaLaw, OverfittingLaw, ModelDataLaw)):
        return law
    if isinstance(law, dict):
        return load_law(law)
    if isinstance(law, str) and law in _LAWS:
        return _LAWS[law]
    if isinstance(law, str) and law.lstrip().startswith("{"):
        return load_law(law)
    if not isinstance(law, (str, Path)):
        raise TypeError(f"a law is a law object, a preset name or a path to a law JSON file, got {type(law).__name__}")
    if not Path(law).is_file():
        near = difflib.get_close_matches(str(law), names(), n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(near)}? " if near else ""
        where = "a directory" if Path(law).is_dir() else "an existing law JSON file"
        raise ValueError(f"{str(law)!r} is neither a preset law nor {where}; {hint}the presets are "
                         f"{', '.join(names())}")
    return load_law(Path(law))
