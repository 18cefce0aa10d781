"""Planning with scaling laws: when to stop, how to split compute, when data runs out.

Pure arithmetic over :mod:`lightning_scaling.laws` and :mod:`lightning_scaling.presets`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

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
    return ComputeAllocation(c * PF_DAY, n, d, d / n, float(presets.get("kaplan2020_lc")(c)),
                             "Kaplan et al. 2020 Table 6")


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


# ---------------------------------------------------------------------------------------------
# a sweep's own law: what to train next for a budget
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SweepLaw:
    """[K] eq 1.6 with an irreducible term, in optimizer steps, and the FLOP accounting of the runs it was fitted on.

    ``L(N, S) = E + [(N_c / N)^(alpha_N / alpha_S) + S_c / S]^alpha_S``, trained with ``items_per_step`` tokens (or
    examples) per step at ``flop_per_item`` FLOPs per parameter and item, so ``C = flop_per_item * N * B * S``
    ([K] section 2.1: 6 per token, C = 6 N B S).

    Attributes:
        E, N_c, alpha_N, S_c, alpha_S: the law (``S_c`` in steps).
        items_per_step: B, tokens or examples per optimizer step (``unit``).
        flop_per_item: FLOPs per parameter and item (6 for tokens).
        unit: what an item is, "tokens" or "examples".

    Raises:
        ValueError: a constant that is not a finite positive number (``E`` may be 0).

    Example:
        >>> law = SweepLaw(0.0, 8.8e13, 0.076, 2.1e3, 0.76, items_per_step=2**19)
        >>> round(law.converged(1e9), 3)  # [K] eq 1.1's L(N) at S = infinity
        2.376
    """

    E: float
    N_c: float
    alpha_N: float
    S_c: float
    alpha_S: float
    items_per_step: float
    flop_per_item: float = 6.0
    unit: str = "tokens"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.E) and self.E >= 0):
            raise ValueError(f"E must be a finite number >= 0, got {self.E!r}")
        for name in ("N_c", "alpha_N", "S_c", "alpha_S", "items_per_step", "flop_per_item"):
            _positive(name, getattr(self, name))

    @property
    def ratio(self) -> float:
        """``alpha_N / alpha_S``: the exponent of eq 1.6's model term inside its bracket."""
        return self.alpha_N / self.alpha_S

    def __call__(self, n_params: float, steps: float) -> float:
        """The loss of a model of ``n_params`` after ``steps`` optimizer steps."""
        bracket = (self.N_c / n_params) ** self.ratio + self.S_c / steps
        return self.E + bracket**self.alpha_S

    def converged(self, n_params: float) -> float:
        """``E + (N_c / N)^alpha_N``: the loss of a model of ``n_params`` trained to convergence."""
        return self.E + (self.N_c / n_params) ** self.alpha_N

    def at_optimum(self, converged_loss: float) -> float:
        """The loss the compute-efficient run reaches, from the converged loss of its model.

        The reducible part grows by ``(1 + alpha_N / alpha_S)^alpha_S``: eq 1.6's bracket form of [K] B.5 (whose
        additive form reads ``1 + alpha_N / alpha_S``). A converged loss below ``E`` maps to ``E``.
        """
        factor = stopping_factor(self.alpha_N, self.alpha_S) ** self.alpha_S  # [K] B.5 inside the bracket
        return self.E + factor * max(float(converged_loss) - self.E, 0.0)


def allocation_exponents(alpha_N: float, alpha_S: float) -> tuple[float, float]:
    """``(a, b)`` of the compute-efficient ``N ~ C^a``, ``D ~ C^b`` at a fixed batch ([K] section 6.1).

    [K] eq 1.7-1.8's ``N ~ C^(alpha_C / alpha_N)`` with ``alpha_C = 1 / (1/alpha_S + 1/alpha_B + 1/alpha_N)``,
    without the critical batch's ``1/alpha_B`` term: ``a = alpha_S / (alpha_N + alpha_S)``, ``b = 1 - a``.

    Raises:
        ValueError: an exponent that is not finite and > 0.

    Example:
        >>> [round(x, 3) for x in allocation_exponents(0.076, 0.76)]
        [0.909, 0.091]
    """
    a_n, a_s = _positive("alpha_N", alpha_N), _positive("alpha_S", alpha_S)
    return a_s / (a_n + a_s), a_n / (a_n + a_s)


def sweep_optimal(law: SweepLaw, compute_flop: float) -> ComputeAllocation:
    """The compute-efficient N and D of ``compute_flop`` under a sweep's law ([K] eq 1.6, appendix B.2).

    At fixed ``C = k N B S``, ``dL/dN = 0`` gives ``S_c / S = (alpha_N / alpha_S) (N_c / N)^(alpha_N / alpha_S)``
    ([K] B.4 in eq 1.6's bracket form), so with ``r = alpha_N / alpha_S``:

        N = (r N_c^r C / (k B S_c))^(1 / (1 + r)),   D = C / (k N)  (items processed, in ``law.unit``).

    The allocation's ``n_tokens`` is D in ``law.unit``; its ``loss`` is the law at (N, D / B).

    Args:
        law: the sweep's law and FLOP accounting.
        compute_flop: the budget C in FLOPs.

    Raises:
        ValueError: a budget that is not a finite number > 0.

    Example:
        >>> law = SweepLaw(0.0, 8.8e13, 0.076, 2.1e3, 0.76, items_per_step=2**19)
        >>> a = sweep_optimal(law, 8.64e19)  # one PF-day
        >>> f"{a.n_params:.3g} {a.n_tokens:.3g}"
        '3.59e+09 4.01e+09'
    """
    c = _positive("compute_flop", compute_flop)
    r = law.ratio
    n = (r * law.N_c**r * c / (law.flop_per_item * law.items_per_step * law.S_c)) ** (1.0 / (1.0 + r))
    d = c / (law.flop_per_item * n)
    return ComputeAllocation(c, n, d, d / n, float(law(n, d / law.items_per_step)),
                             "the sweep's joint fit ([K] eq 1.6, appendix B.2)")


def sweep_data_limit(law: SweepLaw, data_size: float) -> float:
    """The budget (FLOPs) whose compute-efficient allocation (:func:`sweep_optimal`) processes ``data_size`` items.

    ``D(C) = C^(r/(1+r)) / (k G)`` with ``N = G C^(1/(1+r))`` inverts in closed form.

    Raises:
        ValueError: a data size that is not a finite number > 0.

    Example:
        >>> law = SweepLaw(0.0, 8.8e13, 0.076, 2.1e3, 0.76, items_per_step=2**19)
        >>> f"{sweep_data_limit(law, sweep_optimal(law, 1e20).n_tokens):.3g}"
        '1e+20'
    """
    d = _positive("data_size", data_size)
    r = law.ratio
    g = (r * law.N_c**r / (law.flop_per_item * law.items_per_step * law.S_c)) ** (1.0 / (1.0 + r))
    return (d * law.flop_per_item * g) ** ((1.0 + r) / r)


@dataclass(frozen=True)
class BudgetPlan:
    """What to train next for a budget: :func:`plan_budget`.

    Attributes:
        allocation: N, D (``n_tokens``, in the store's unit), the loss; ``source`` names the law used.
        fitted: True when the sweep's own exponents drove it, False for Kaplan's published allocation.
        steps: optimizer steps at the store's batch (fitted plans only).
        n_exponent, d_exponent: ``N ~ C^a``, ``D ~ C^b``.
        data_size: the distinct items at hand, or None; ``passes``: how many passes over them the data supports.
        data_limit_flop: the budget whose allocation processes ``passes x data_size`` items, or None.
        past_data_limit: the budget is past it ("more data, not a bigger model"), or None without a data size.
        crossover: [K]'s L(C)/L(D) crossover (Kaplan's published plan only), for comparison.
        note: why the published allocation stands in, or "".
    """

    allocation: ComputeAllocation
    fitted: bool
    steps: float | None
    n_exponent: float
    d_exponent: float
    data_size: float | None
    data_limit_flop: float | None
    past_data_limit: bool | None
    passes: float = 1.0
    crossover: Crossover | None = None
    note: str = ""


def plan_budget(compute_flop: float, law: SweepLaw | None, data_size: float | None = None, *,
                passes: float = 1.0, note: str = "") -> BudgetPlan:
    """The compute-efficient N and D for ``compute_flop`` from a sweep's law, or Kaplan's when there is none.

    With ``law``: :func:`sweep_optimal`, :func:`allocation_exponents` and :func:`sweep_data_limit`. Without:
    [K] Table 6 (:func:`kaplan_optimal`, tokens), its data limit from Table 6's ``D = 2e10 C^0.27`` and [K] section
    6.3's crossover (:func:`crossover`). The data limit is [K] section 6.3's argument for the data at hand: the
    compute-efficient path reads more data as C grows; once it needs more than ``passes`` passes over the data at
    hand, the loss is bounded by the data (L(D)), and more data, not a bigger model, lowers it.

    Args:
        compute_flop: the budget C in FLOPs.
        law: the sweep's law (None: Kaplan's published allocation).
        data_size: the distinct tokens (or examples, the law's unit) at hand, or None.
        passes: the passes over them the data supports (1: fresh data, as [K]'s runs; a sweep's runs that
            repeated their data show more, :attr:`SweepAccounting.passes`).
        note: why there is no law (kept on the plan, for the reader).

    Raises:
        ValueError: a budget or data size that is not a finite number > 0.

    Example:
        >>> plan = plan_budget(8.64e19, None, data_size=2e10)
        >>> plan.fitted, f"{plan.allocation.n_params:.2g}", plan.past_data_limit
        (False, '1.3e+09', False)
    """
    c = _positive("compute_flop", compute_flop)
    size = None if data_size is None else _positive("data_size", data_size)
    usable = None if size is None else size * _positive("passes", passes)
    if law is not None:
        a = sweep_optimal(law, c)
        n_exp, d_exp = allocation_exponents(law.alpha_N, law.alpha_S)
        limit = None if usable is None else sweep_data_limit(law, usable)
        return BudgetPlan(a, True, a.n_tokens / law.items_per_step, n_exp, d_exp, size, limit,
                          None if limit is None else c > limit, passes, note=note)
    a = kaplan_optimal(c / PF_DAY)
    tokens = presets.KAPLAN_TABLE6["tokens"]
    limit = None if usable is None else PF_DAY * (usable / tokens.coefficient) ** (1.0 / tokens.exponent)
    return BudgetPlan(a, False, None, presets.KAPLAN_TABLE6["n_params"].exponent, tokens.exponent, size, limit,
                      None if limit is None else c > limit, passes, crossover(), note)


@dataclass(frozen=True)
class SweepAccounting:
    """How a sweep's runs spend compute, read from their records (:func:`sweep_accounting`).

    Attributes:
        items_per_step: B, the median tokens (or examples) per optimizer step, or None when no record says.
        flop_per_item: FLOPs per parameter and item: the records' FLOPs over ``N x items seen`` (median), else 6.
        flop_source: where ``flop_per_item`` comes from, in words.
        lr_per_step: the median summed learning rate per step at the runs' ends, or None without summed LRs.
        data_size: the largest D (distinct items) a record holds, or None.
        unit: what an item is (the records' most common unit).
        passes: the most passes over its data a run made up to its lowest loss (1 when no record says): how often
            the data at hand was repeated while the loss still fell.
    """

    items_per_step: float | None
    flop_per_item: float
    flop_source: str
    lr_per_step: float | None
    data_size: float | None
    unit: str
    passes: float = 1.0


def sweep_accounting(records: Sequence[Any]) -> SweepAccounting:
    """The FLOP accounting of a sweep's records (:class:`lightning_scaling.sweep.SweepRecord` objects).

    Items seen at the end are ``examples_seen``, else ``tokens_per_step`` times the last step (``config
    ["last_step"]`` or the last recorded step). Without recorded FLOPs, C = 6 N D ([K] section 2.1). A run's passes
    are ``tokens_per_step`` times the step of its lowest loss over its ``dataset_size``.

    Example:
        >>> from types import SimpleNamespace as R
        >>> r = R(n_params=1e6, steps=[50, 100], loss=[3.0, 2.5], lr_sum=[0.15, 0.3], tokens_per_step=512.0,
        ...       flops=6e6 * 512 * 100, examples_seen=None, dataset_size=1e4, unit="tokens", config={})
        >>> a = sweep_accounting([r])
        >>> a.items_per_step, a.flop_per_item, round(a.lr_per_step, 6), round(a.passes, 2)
        (512.0, 6.0, 0.003, 5.12)
    """
    batch = [r.tokens_per_step for r in records if r.tokens_per_step]
    per_item, lr, passes = [], [], [1.0]
    for r in records:
        last = (r.config or {}).get("last_step") or (r.steps[-1] if r.steps else None)
        seen = r.examples_seen or (r.tokens_per_step * last if r.tokens_per_step and last else None)
        if r.flops and seen:
            per_item.append(r.flops / (r.n_params * seen))
        if r.lr_sum and r.steps and r.steps[-1] > 0 and math.isfinite(r.lr_sum[-1]) and r.lr_sum[-1] > 0:
            lr.append(r.lr_sum[-1] / r.steps[-1])
        if r.tokens_per_step and r.dataset_size and r.loss:
            passes.append(r.tokens_per_step * r.steps[int(np.argmin(r.loss))] / r.dataset_size)
    units = [r.unit for r in records]
    sizes = [r.dataset_size for r in records if r.dataset_size]
    return SweepAccounting(
        float(np.median(batch)) if batch else None,
        float(np.median(per_item)) if per_item else 6.0,
        "the records' FLOPs" if per_item else "6 N per item (the records carry no FLOPs)",
        float(np.median(lr)) if lr else None, max(sizes) if sizes else None,
        max(set(units), key=units.count) if units else "tokens", max(passes))


def sweep_law(params: Mapping[str, float], axis: str, accounting: SweepAccounting) -> SweepLaw:
    """A :class:`SweepLaw` from a sweep fit's ``params`` (``E``, ``alpha_S``, ``S_c``, ``alpha_N``, ``N_c``).

    On the summed-LR axis ``S_c`` becomes steps at the runs' median summed LR per step.

    Raises:
        ValueError: in words, what is missing: the law across model sizes, tokens per step, summed LRs.
    """
    if "alpha_N" not in params or "N_c" not in params:
        raise ValueError("the fit has no law across model sizes (it needs 2 or more sizes on one data size whose "
                         "converged losses fall with N)")
    if accounting.items_per_step is None:
        raise ValueError("the records carry no tokens per step")
    s_c = params["S_c"]
    if axis == "lr_sum":
        if accounting.lr_per_step is None:
            raise ValueError("the fit is on the summed LR and the records carry none")
        s_c = s_c / accounting.lr_per_step
    return SweepLaw(params["E"], params["N_c"], params["alpha_N"], s_c, params["alpha_S"],
                    accounting.items_per_step, accounting.flop_per_item, accounting.unit)
