"""Shared test set-up.

Each module has its test file: ``tests/test_<module>.py`` tests ``lightning_scaling/<module>.py`` and
``lightning_scaling/callbacks/<module>.py`` (``test_effective_epochs.py``, ``test_flop_counter.py``,
``test_data_limit_gap.py``, ``test_extra_early_stopping.py``); runs of several callbacks on one Trainer are in
``test_callbacks_together.py``.

``pytest -m "not slow"`` is the quick loop: it deselects the tests marked ``slow`` (DDP, full fits, real training,
benchmarks). ``make test`` runs them all.
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests import the shared tiny models as `models`

from models import CurveRegressor, loader, make_trainer, regression_data  # noqa: E402


@pytest.fixture
def run():
    """``run(tmp_path, model, data, callbacks, batch_size=8, **trainer_kw)``: fits ``model`` on ``data`` (no
    validation data) under ``make_trainer`` and returns the Trainer."""

    def run(tmp_path, model, data, callbacks, batch_size=8, **kw):
        trainer = make_trainer(tmp_path, callbacks, **kw)
        trainer.fit(model, loader(data, batch_size))
        return trainer

    return run


@pytest.fixture
def fit_curve():
    """``fit_curve(tmp_path, callbacks, module=None, **trainer_kw)``: fits a ``CurveRegressor`` (whose validation
    loss follows a known curve, L = 1 + (40/S)^0.7) for up to 3000 steps, validating on one batch every 16 steps,
    and returns the Trainer."""

    def fit_curve(tmp_path, callbacks, module=None, **kw):
        defaults = dict(max_steps=3000, val_check_interval=16, check_val_every_n_epoch=None, limit_val_batches=1)
        defaults.update(kw)
        trainer = make_trainer(tmp_path, callbacks, **defaults)
        trainer.fit(module or CurveRegressor(), loader(regression_data(64)), loader(regression_data(16, seed=1)))
        return trainer

    return fit_curve
