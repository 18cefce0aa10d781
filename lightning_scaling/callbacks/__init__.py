"""The four callbacks, built on ``pytorch_lightning.Callback``.

Each callback's logic lives in a ``*Base`` class that never imports Lightning; this module and
:mod:`lightning_scaling.unified` (for ``lightning.pytorch``) add the framework's ``Callback`` base, so
the two Lightning packages are never mixed.
"""

import pytorch_lightning as pl

from .data_limit_gap import DataLimitGapBase
from .effective_epochs import EffectiveEpochsBase
from .extra_early_stopping import ExtraEarlyStoppingBase
from .flop_counter import FlopCounterBase


class EffectiveEpochs(EffectiveEpochsBase, pl.Callback):
    __doc__ = EffectiveEpochsBase.__doc__


class FlopCounter(FlopCounterBase, pl.Callback):
    __doc__ = FlopCounterBase.__doc__


class DataLimitGap(DataLimitGapBase, pl.Callback):
    __doc__ = DataLimitGapBase.__doc__


class ExtraEarlyStopping(ExtraEarlyStoppingBase, pl.Callback):
    __doc__ = ExtraEarlyStoppingBase.__doc__


__all__ = ["EffectiveEpochs", "FlopCounter", "DataLimitGap", "ExtraEarlyStopping"]
