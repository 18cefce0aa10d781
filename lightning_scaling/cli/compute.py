"""allocate and crossover: compute-optimal N and D for a budget, and where L(C) meets L(D(C))."""

from __future__ import annotations

import argparse
import sys

from .. import planning, presets
from ..laws import ChinchillaLaw, PowerLaw
from ._common import _emit, _warn

# ------------------------------------------------------------------------------------------ allocate
def cmd_allocate(args: argparse.Namespace) -> int:
    law = presets.resolve(args.law)
    flop = args.compute * planning.PF_DAY if args.pf_days else args.compute
    if isinstance(law, ChinchillaLaw):
        a = planning.chinchilla_optimal(law, flop)
    elif args.law == "kaplan2020_lc":
        a = planning.kaplan_optimal(flop / planning.PF_DAY)
    else:
        raise ValueError("allocate needs a Chinchilla law (e.g. hoffmann2022, besiroglu2024, a fitted L(N, D) JSON) "
                         "or kaplan2020_lc (Kaplan 2020 Table 6)")
    _warn_if_extrapolated(args.law, flop)
    _emit({"compute_flop": a.compute_flop, "pf_days": a.compute_flop / planning.PF_DAY, "n_params": a.n_params,
           "n_tokens": a.n_tokens, "tokens_per_param": a.tokens_per_param, "loss": a.loss, "source": a.source},
          args.json)
    return 0


def _warn_if_extrapolated(law: str, flop: float) -> None:
    """One line on stderr when ``flop`` is outside the compute ``law`` was fitted on (or that is unknown)."""
    fitted = presets.compute_range(law)
    if fitted is None:
        _warn(f"{law} records no compute range, so whether {flop:.3g} FLOP is inside what it was fitted on is "
              "unknown (`lightning-scaling fit --law nd --out` records it)")
    elif not fitted.contains(flop):
        factor, side = (fitted.low / flop, "below") if flop < fitted.low else (flop / fitted.high, "above")
        _warn(f"{flop:.3g} FLOP is {factor:.3g}x {side} the compute {law} was fitted on ({fitted.low:.2g} to "
              f"{fitted.high:.2g} FLOP, {fitted.what}): the allocation extrapolates the law")



# ------------------------------------------------------------------------------------------ crossover
_TABLE6 = presets.KAPLAN_TABLE6
#: crossover's inputs: option -> what it is, Kaplan 2020's value (the default).
_CROSSOVER = {"lc": ("L(C)", "kaplan2020_lc"), "ld": ("L(D)", "kaplan2020_ld"),
              "data_coefficient": ("D(C)'s coefficient", _TABLE6["tokens"].coefficient),
              "data_exponent": ("D(C)'s exponent", _TABLE6["tokens"].exponent),
              "params_coefficient": ("N(C)'s coefficient", _TABLE6["n_params"].coefficient),
              "params_exponent": ("N(C)'s exponent", _TABLE6["n_params"].exponent)}


def cmd_crossover(args: argparse.Namespace) -> int:
    given = [key for key in _CROSSOVER if getattr(args, key) is not None]
    value = {key: getattr(args, key) if key in given else default for key, (_, default) in _CROSSOVER.items()}
    laws = {}
    for key, unit in (("lc", "pf_days"), ("ld", "tokens")):
        law = presets.resolve(value[key])
        if not (isinstance(law, PowerLaw) and law.unit == unit):
            raise ValueError(f"--{key} {value[key]}: crossover needs {_CROSSOVER[key][0]} as a power law in {unit} "
                             f"(e.g. {_CROSSOVER[key][1]})")
        laws[key] = law
    if given and len(given) < len(_CROSSOVER):
        def show(keys):
            return ", ".join(f"{_CROSSOVER[k][0]} = {value[k]:g}" if isinstance(value[k], float)
                             else f"{_CROSSOVER[k][0]} = {value[k]}" for k in keys)
        print(f"note: crossover combines your {show(given)} with Kaplan et al. 2020's "
              f"{show(k for k in _CROSSOVER if k not in given)} (eq 1.2-1.3, Table 6); give those too to replace them",
              file=sys.stderr)
    c = planning.crossover(laws["lc"], laws["ld"], data_coefficient=value["data_coefficient"],
                           data_exponent=value["data_exponent"], params_coefficient=value["params_coefficient"],
                           params_exponent=value["params_exponent"])
    _emit({"compute_pf_days": c.compute_pf_days, "compute_flop": c.compute_pf_days * planning.PF_DAY,
           "n_params": c.n_params, "n_tokens": c.n_tokens, "loss": c.loss}, args.json)
    return 0
