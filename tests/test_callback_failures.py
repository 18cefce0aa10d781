"""A callback never ends a user's training, and never fails silently: figures, fits and odd points, in real Trainers."""

import csv
import math
import warnings

import numpy as np
import pytest
import torch
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

from lightning_scaling import (DataLimitGap, EffectiveEpochs, ExtraEarlyStopping, FlopCounter, PowerLaw,
                               ScalingWarning, StopConfig)
from lightning_scaling import dashboard
from lightning_scaling.callbacks import _common
from lightning_scaling.dashboard import add_figure, data_limit_figure, learning_curve_figure
from models import CurveRegressor, TinyLM, TokenData, loader, make_trainer, regression_data

pytest.importorskip("matplotlib")


def _fit(tmp_path, callbacks, module=None, train=None, val=None, **kw):
    defaults = dict(max_steps=120, val_check_interval=8, check_val_every_n_epoch=None, limit_val_batches=1)
    defaults.update(kw)
    trainer = make_trainer(tmp_path, callbacks, **defaults)
    trainer.fit(module or CurveRegressor(), train or loader(regression_data(64)),
                val or loader(regression_data(16, seed=1)))
    return trainer


def _rows(path):
    return list(csv.DictReader(path.open()))


def _messages(record):
    return [str(w.message) for w in record]


def test_readme_preset_path_with_tensorboard_figures_trains_to_the_end(tmp_path, monkeypatch):
    """The README's snippet with the preset L(D) and a TensorBoardLogger: the fits fail or are untrusted early, the
    figures are drawn whenever asked (FIGURE_INTERVAL_S = 0), and nothing is raised inside trainer.fit."""
    torch.manual_seed(0)
    monkeypatch.setattr(dashboard, "FIGURE_INTERVAL_S", 0.0)
    stop = ExtraEarlyStopping(verbose=False)
    trainer = _fit(tmp_path, [EffectiveEpochs(tokens_per_example=16), FlopCounter(),
                              DataLimitGap("kaplan2020_ld"), stop],
                   module=TinyLM(), train=loader(TokenData(64)), val=loader(TokenData(16, seed=1)),
                   logger=TensorBoardLogger(tmp_path, name="tb"), max_steps=96, val_check_interval=4)
    assert trainer.global_step == 96 or stop.stopped_step is not None
    assert len(stop.rule.losses) >= 10


@pytest.mark.parametrize("law", [None, lambda t: 3.0, lambda t: np.full(np.shape(t), np.nan),
                                 lambda t: np.asarray(t, dtype=float) * 0 + np.inf, PowerLaw(10.0, 0.5, 1.0)])
def test_learning_curve_figure_is_drawn_for_every_fit_outcome(law):
    fig = learning_curve_figure([1, 2, 3, 4], [4.0, 3.0, 2.5, 2.2], law, converged=2.0, stop_loss=2.2)
    assert fig is not None
    import matplotlib.pyplot as plt

    plt.close(fig)


class _Writer:
    def __init__(self):
        self.figures = []

    def add_figure(self, tag, fig, global_step, close):
        self.figures.append((tag, global_step))


class _Logger:
    def __init__(self):
        self.experiment = _Writer()


class _Trainer:
    is_global_zero = True

    def __init__(self):
        self.loggers = [_Logger()]


def test_a_figure_that_fails_is_skipped_with_one_warning():
    trainer, owner = _Trainer(), type("ExtraEarlyStoppingBase", (), {})()

    def broken():
        raise ValueError("x and y must have same first dimension")

    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        assert add_figure(trainer, owner, "scaling/learning_curve", broken, 1, 0.0) is False
        assert add_figure(trainer, owner, "scaling/learning_curve", broken, 2, 0.0) is False
    assert sum("could not be drawn" in m for m in _messages(record)) == 1
    assert add_figure(trainer, owner, "scaling/learning_curve",
                      lambda: learning_curve_figure([1, 2], [2.0, 1.0]), 3, 0.0) is True
    assert trainer.loggers[0].experiment.figures == [("scaling/learning_curve", 3)]


def test_data_limit_figure_draws_l_of_d_at_the_distinct_data_seen():
    law = PowerLaw(1e3, 0.3, 1.0, unit="tokens")
    fig = data_limit_figure([50.0, 100.0, 200.0, 400.0], [3.2, 3.0, 2.8, 2.7], law, unit="tokens", dataset_size=100.0)
    x, y = fig.axes[0].lines[1].get_data()
    assert np.allclose(y[x >= 100.0], law(100.0))  # beyond one epoch no new data: L(D) stays at L(D = 100)
    assert y[x < 100.0].min() > law(100.0)
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_monitored_loss_is_written_once_per_validation(tmp_path):
    logger = CSVLogger(tmp_path, name="run")
    stop = ExtraEarlyStopping(verbose=False)
    _fit(tmp_path, [EffectiveEpochs(), DataLimitGap(PowerLaw(1e-3, 0.1, 0.5, unit="examples")), stop], logger=logger)
    rows = _rows(tmp_path / "run" / "version_0" / "metrics.csv")
    values = [r for r in rows if r.get("scaling/monitored_loss")]
    assert len(values) == 120 // 8  # one per validation
    assert len({r["step"] for r in values}) == len(values)


def test_untrusted_predictions_are_not_logged(tmp_path):
    logger = CSVLogger(tmp_path, name="run")
    stop = ExtraEarlyStopping(verbose=False)
    trusted = {}
    update = stop.rule.update

    def spy(*args, **kw):
        d = update(*args, **kw)
        trusted[d.step] = d.trusted
        return d

    stop.rule.update = spy
    _fit(tmp_path, [stop], logger=logger, max_steps=400)
    assert not all(trusted.values()) and any(trusted.values())  # both kinds of point occur
    rows = _rows(tmp_path / "run" / "version_0" / "metrics.csv")
    for tag in ("scaling/converged_loss", "scaling/stop_loss", "scaling/progress", "scaling/converged_loss_low"):
        logged = {int(r["step"]) for r in rows if r.get(tag)}
        assert logged == {s for s, ok in trusted.items() if ok}, tag
    assert all(float(r["scaling/converged_loss"]) > 0 for r in rows if r.get("scaling/converged_loss"))


def test_a_typo_in_data_limit_gaps_monitor_warns_once(tmp_path):
    with pytest.warns(UserWarning) as record:
        _fit(tmp_path, [EffectiveEpochs(), DataLimitGap(PowerLaw(1e-3, 0.1, 0.5, unit="examples"), monitor="val_los")])
    hits = [m for m in _messages(record) if "'val_los' was not logged" in m]
    assert len(hits) == 1 and "val_loss" in hits[0]  # names what is available


def test_data_limit_gap_without_a_dataset_size_says_so_once(tmp_path):
    with pytest.warns(UserWarning) as record:
        # padding-aware token counts without dataset_size: D in tokens is unknown
        _fit(tmp_path, [EffectiveEpochs(count_tokens=lambda b: (b[0] >= 0).sum()), DataLimitGap("kaplan2020_ld")],
             module=TinyLM(), train=loader(TokenData(64)), val=loader(TokenData(16, seed=1)), max_steps=40)
    assert sum("dataset size D is unknown" in m for m in _messages(record)) == 1


def test_nan_points_are_skipped_with_one_warning_each_callback(tmp_path):
    module = CurveRegressor(nan_at=(16, 32, 48))
    with pytest.warns(UserWarning) as record:
        _fit(tmp_path, [EffectiveEpochs(), DataLimitGap(PowerLaw(1e-3, 0.1, 0.5, unit="examples")),
                        ExtraEarlyStopping(verbose=False)], module=module)
    messages = _messages(record)
    assert sum("ExtraEarlyStopping: val_loss = nan" in m for m in messages) == 1
    assert sum("DataLimitGap: val_loss = nan" in m for m in messages) == 1


def test_missing_monitor_warning_with_strict_false_does_not_advise_strict_false(tmp_path):
    with pytest.warns(UserWarning) as record:
        _fit(tmp_path, [ExtraEarlyStopping(monitor="val_acc", strict=False)], max_steps=24)
    (message,) = [m for m in _messages(record) if "val_acc" in m]
    assert "strict=False" not in message and "skipped" in message


def test_warnings_name_the_package_not_lightning(tmp_path):
    with pytest.warns(UserWarning) as record:
        _fit(tmp_path, [ExtraEarlyStopping(monitor="val_acc", strict=False)], max_steps=24)
    (w,) = [w for w in record if "val_acc" in str(w.message)]
    assert "lightning_scaling" in w.filename and "trainer/call.py" not in w.filename
    assert w.category is ScalingWarning


def test_a_run_that_never_stops_says_why_at_the_end(tmp_path, capsys):
    stop = ExtraEarlyStopping()
    _fit(tmp_path, [stop], max_steps=64)
    assert stop.stopped_step is None
    out = capsys.readouterr().out
    assert "ExtraEarlyStopping: training ended at step 64; the rule did not stop the run:" in out
    assert stop.decision.reason in out


def test_a_failed_fit_is_no_prediction_with_one_warning_and_training_goes_on(tmp_path, monkeypatch):
    import lightning_scaling.stopping as stopping

    def broken(*args, **kw):
        raise OverflowError("math range error")

    monkeypatch.setattr(stopping, "predict_converged", broken)
    stop = ExtraEarlyStopping(verbose=False, config=StopConfig(min_points=4))
    with pytest.warns(UserWarning) as record:
        trainer = _fit(tmp_path, [stop], max_steps=80)
    assert trainer.global_step == 80 and stop.stopped_step is None
    assert stop.decision.error == "OverflowError: math range error"
    assert stop.decision.converged_loss is None and "no prediction" in stop.decision.reason
    assert sum("learning-curve fit failed" in m for m in _messages(record)) == 1


def test_scaling_metrics_can_be_monitored_by_model_checkpoint_and_early_stopping(tmp_path):
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="scaling/ld_gap", mode="min")
    early = EarlyStopping(monitor="scaling/ld_gap", patience=1000, check_finite=False)
    stop = ExtraEarlyStopping(verbose=False)
    trainer = _fit(tmp_path, [EffectiveEpochs(), DataLimitGap(PowerLaw(1e-3, 0.1, 0.5, unit="examples")), stop,
                              early, checkpoint], enable_checkpointing=True, max_steps=400)
    assert checkpoint.best_model_score is not None and math.isfinite(float(checkpoint.best_model_score))
    assert math.isfinite(float(early.best_score))
    metrics = trainer.callback_metrics
    assert "scaling/ld_gap" in metrics
    if stop.decision is not None and stop.decision.trusted:
        assert float(metrics["scaling/converged_loss"]) == pytest.approx(stop.decision.converged_loss)
        assert "scaling/progress" in metrics
    else:
        assert "scaling/converged_loss" not in metrics


def test_data_limit_gap_names_the_presets_and_the_bad_file(tmp_path):
    with pytest.raises(ValueError, match="kaplan2020_ld"):
        DataLimitGap("kaplan2020")
    bad = tmp_path / "ld.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="ld.json"):
        DataLimitGap(bad)


def test_a_message_is_shown_once_logged_where_logging_shows_it_else_printed(capsys, caplog):
    import logging

    class Rank0:
        is_global_zero = True

    _common.rank_zero_info(Rank0(), "summary one")
    assert capsys.readouterr().out == "summary one\n" and not caplog.records
    caplog.set_level(logging.INFO, logger="lightning_scaling")
    _common.rank_zero_info(Rank0(), "summary two")
    assert capsys.readouterr().out == "" and [r.getMessage() for r in caplog.records] == ["summary two"]
