"""Published scaling-law constants as named laws, each with its source.

Sources (see SCIENCE.md):
[K] Kaplan et al. 2020, arXiv 2001.08361; [H] Henighan et al. 2020, arXiv 2010.14701;
[C] Hoffmann et al. 2022, arXiv 2203.15556; [B] Besiroglu et al. 2024, arXiv 2404.10102;
[M] Muennighoff et al. 2023, arXiv 2305.16264.
"""

from __future__ import annotations

from dataclasses import dataclass

from .laws import ChinchillaLaw, Law, PowerLaw

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
