"""Planning with scaling laws: when to stop, how to split compute, when data runs out.

Pure arithmetic over :mod:`lightning_scaling.laws` and :mod:`lightning_scaling.presets`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq

from . import presets
from .laws import ChinchillaLaw, PowerLaw

#: One PF-day in FLOP: 1e15 FLOP/s x 86400 s.
PF_DAY = presets.PF_DAY


def stopping_factor(alpha_N: float = presets.KAPLAN_ALPHA_N, alpha_S: float = presets.KAPLAN_ALPHA_S) -> float:
    """``1 + alpha_N / alpha_S``: stop at this multiple of the converged loss ([K] eq B.5).

    >>> round(stopping_factor(), 2)
    1.1
    """
    if not (alpha_N > 0 and alpha_S > 0 and math.isfinite(alpha_N) and math.isfinite(alpha_S)):
        raise ValueError(f"alpha_N and alpha_S must be finite and > 0, got {alpha_N!r}, {alpha_S!r}")
    return 1.0 + alpha_N / alpha_S


@dataclass(frozen=True)
class Tradeoff:
    """[K] eq B.12-B.14: training to within f of convergence instead of f', at equal loss."""

    f: float
    f_prime: float
    params_ratio: float  # N_f / N_f'   ([K] B.12)
    steps_ratio: float  # S_f / S_f'    ([K] B.13)
    compute_ratio: float  # C_f / C_f' ([K] B.14) = params_ratio * steps_ratio


def tradeoff(f: float = 0.10, f_prime: float = 0.02, alpha_N: float = presets.KAPLAN_ALPHA_N,
             alpha_S: float = presets.KAPLAN_ALPHA_S) -> Tradeoff:
    """Parameters, steps and compute of stopping at (1+f) L_conv against (1+f') L_conv ([K] B.12-B.14).

    With f = 10%, f' = 2%: about 2.7x the parameters, 0.13x the steps, 0.35x the compute.
    """
    if not (f > 0 and f_prime > 0):
        raise ValueError("convergence factors f and f_prime must be > 0 (e.g. 0.10 and 0.02)")
    n_ratio = ((1 + f) / (1 + f_prime)) ** (1 / alpha_N)
    s_ratio = ((1 + 1 / f) / (1 + 1 / f_prime)) ** (1 / alpha_S)
    return Tradeoff(f, f_prime, n_ratio, s_ratio, n_ratio * s_ratio)


@dataclass(frozen=True)
class ComputeAllocation:
    """A compute-optimal split of a budget into parameters and tokens."""

    compute_flop: float
    n_params: float
    n_tokens: float
    tokens_per_param: float
    loss: float | None
    source: str


def chinchilla_optimal(law: ChinchillaLaw, compute_flop: float) -> ComputeAllocation:
    """Compute-optimal N and D for ``compute_flop`` under ``law`` with C = 6ND ([C] eq 4, appendix D.2).

    N_opt = G (C/6)^a, D_opt = G^-1 (C/6)^b, G = (alpha A / (beta B))^(1/(alpha+beta)),
    a = beta/(alpha+beta), b = alpha/(alpha+beta).
    """
    c = _positive("compute_flop", compute_flop)
    s = law.alpha + law.beta
    g = (law.alpha * law.A / (law.beta * law.B)) ** (1 / s)
    n = g * (c / 6) ** (law.beta / s)
    d = (c / 6) ** (law.alpha / s) / g
    return ComputeAllocation(c, n, d, d / n, float(law(n, d)), law.source or "ChinchillaLaw")


def tokens_per_param_optimal(compute_flop: float, tokens_per_param: float = 20.0) -> ComputeAllocation:
    """The rule of thumb of [C] (about 20 tokens per parameter, Table 3) with C = 6ND."""
    c = _positive("compute_flop", compute_flop)
    k = _positive("tokens_per_param", tokens_per_param)
    n = math.sqrt(c / (6 * k))
    return ComputeAllocation(c, n, k * n, k, None, f"{k:g} tokens per parameter (Hoffmann et al. 2022 Table 3)")


def kaplan_optimal(compute_pf_days: float) -> ComputeAllocation:
    """Kaplan's compute-efficient allocation, [K] Table 6 (N = 1.3e9 C^0.73, D = 2e10 C^0.27, C in PF-days).

    The loss is L(C_min) of [K] eq 1.3.
    """
    c = _positive("compute_pf_days", compute_pf_days)
    n = presets.KAPLAN_TABLE6["n_params"](c)
    d = presets.KAPLAN_TABLE6["tokens"](c)
    return ComputeAllocation(c * PF_DAY, n, d, d / n, float(presets.get("kaplan2020_lc")(c)), "Kaplan et al. 2020 Table 6")


@dataclass(frozen=True)
class Crossover:
    """Where L(C) meets the data bound L(D(C)) along the compute-efficient path ([K] 6.3)."""

    compute_pf_days: float  # C*
    n_params: float  # N*
    n_tokens: float  # D*
    loss: float  # L*


def crossover(lc: PowerLaw | None = None, ld: PowerLaw | None = None, *,
              data_coefficient: float = presets.KAPLAN_TABLE6["tokens"].coefficient,
              data_exponent: float = presets.KAPLAN_TABLE6["tokens"].exponent,
              params_coefficient: float = presets.KAPLAN_TABLE6["n_params"].coefficient,
              params_exponent: float = presets.KAPLAN_TABLE6["n_params"].exponent,
              bracket: tuple[float, float] = (1e-8, 1e30)) -> Crossover:
    """Solve L_C(C) = L_D(D(C)) with D(C) = data_coefficient * C^data_exponent (C in PF-days).

    Defaults are [K]'s L(C_min), L(D) and Table 6; [K] eq 6.8 quotes C* ~ 1e4 PF-days, L* ~ 1.7,
    and recomputing with Table 6 gives C* ~ 1.1e4, L* ~ 1.67 (docs/science.md 5).
    """
    lc = lc or presets.get("kaplan2020_lc")
    ld = ld or presets.get("kaplan2020_ld")
    if lc.unit != "pf_days" or ld.unit != "tokens":
        raise ValueError(f"need L(C) in pf_days and L(D) in tokens, got {lc.unit!r} and {ld.unit!r}")

    def gap(log_c: float) -> float:
        c = math.exp(log_c)
        return math.log(lc(c)) - math.log(ld(data_coefficient * c**data_exponent))

    lo, hi = math.log(bracket[0]), math.log(bracket[1])
    if gap(lo) * gap(hi) > 0:
        raise ValueError("L(C) and L(D(C)) do not cross inside the bracket; check the laws and exponents")
    c_star = math.exp(brentq(gap, lo, hi, xtol=1e-12))
    return Crossover(c_star, params_coefficient * c_star**params_exponent,
                     data_coefficient * c_star**data_exponent, float(lc(c_star)))


def effective_data(unique: float | np.ndarray, examples_seen: float | np.ndarray,
                   r_star: float = presets.MUENNIGHOFF_R_D_STAR) -> float | np.ndarray:
    """Effective data D' under repetition ([M] eq 5): D' = U + U R* (1 - exp(-R/R*)), R = E/U - 1.

    Before the first full pass (E < U) every example is new and D' = E. D' never exceeds (1 + R*) U.
    """
    u = np.asarray(unique, dtype=float)
    e = np.asarray(examples_seen, dtype=float)
    if np.any(~(u > 0)) or np.any(~(e >= 0)) or not (r_star > 0):
        raise ValueError("unique must be > 0, examples_seen >= 0 and r_star > 0")
    r = np.maximum(e / u - 1.0, 0.0)
    out = np.where(e < u, e, u + u * r_star * (1.0 - np.exp(-r / r_star)))
    return float(out) if out.ndim == 0 else out


def _positive(name: str, value: float) -> float:
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return value
