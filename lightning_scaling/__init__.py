"""lightning-scaling: scaling-law science inside an ordinary PyTorch Lightning run.

Public names are loaded on first use (PEP 562), so ``import lightning_scaling`` stays cheap and
the pure core (laws, fitting, planning, stopping) can be used without importing Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    # laws
    "PowerLaw": "laws", "ChinchillaLaw": "laws", "OverfittingLaw": "laws", "load_law": "laws",
    "FitError": "errors", "ScalingWarning": "errors",
    # fitting
    "fit_power_law": "fitting", "fit_chinchilla": "fitting", "fit_learning_curve": "fitting",
    "fit_overfitting_law": "fitting",
    "PowerLawFit": "fitting", "ChinchillaFit": "fitting", "LearningCurveFit": "fitting", "OverfittingFit": "fitting",
    # stopping
    "StoppingRule": "stopping", "StopConfig": "stopping", "StopDecision": "stopping", "StopReason": "stopping",
    "replay": "stopping", "ReplayResult": "stopping",
    # schedules and sweeps
    "forecast": "forecasting", "Forecast": "forecasting", "planned_lrs": "schedules", "ScheduleError": "schedules",
    "Sweep": "sweep", "SweepRecord": "sweep", "SweepFit": "sweep", "fit_sweep": "sweep",
    # callbacks (pytorch_lightning); lightning.pytorch users import from lightning_scaling.unified
    "EffectiveEpochs": "callbacks", "FlopCounter": "callbacks",
    "DataLimitGap": "callbacks", "ExtraEarlyStopping": "callbacks",
    # modules
    "presets": None, "planning": None, "flops": None, "tags": None,
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lightning_scaling' has no attribute {name!r}")
    module_name = _EXPORTS[name]
    if module_name is None:
        return importlib.import_module(f".{name}", __name__)
    return getattr(importlib.import_module(f".{module_name}", __name__), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
