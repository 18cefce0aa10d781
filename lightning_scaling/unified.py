"""The four callbacks for users of the unified ``lightning`` package (``lightning.pytorch``).

    from lightning_scaling.unified import EffectiveEpochs, FlopCounter, DataLimitGap, ExtraEarlyStopping

Same logic as :mod:`lightning_scaling.callbacks`, on ``lightning.pytorch.Callback``.
"""

import lightning.pytorch as L

from .callbacks.data_limit_gap import DataLimitGapBase
from .callbacks.effective_epochs import EffectiveEpochsBase
from .callbacks.extra_early_stopping import ExtraEarlyStoppingBase
from .callbacks.flop_counter import FlopCounterBase


class EffectiveEpochs(EffectiveEpochsBase, L.Callback):
    __doc__ = EffectiveEpochsBase.__doc__


class FlopCounter(FlopCounterBase, L.Callback):
    __doc__ = FlopCounterBase.__doc__


class DataLimitGap(DataLimitGapBase, L.Callback):
    __doc__ = DataLimitGapBase.__doc__


class ExtraEarlyStopping(ExtraEarlyStoppingBase, L.Callback):
    __doc__ = ExtraEarlyStoppingBase.__doc__


__all__ = ["EffectiveEpochs", "FlopCounter", "DataLimitGap", "ExtraEarlyStopping"]
