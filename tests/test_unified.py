"""The four callbacks under the unified ``lightning`` package (``lightning.pytorch``), never mixed with
``pytorch_lightning``: counts, tags, the stop step (equal to the ``pytorch_lightning`` run's) and a resume."""

import csv

import lightning.pytorch as L
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import CSVLogger as UCSVLogger
from torch import nn

import lightning_scaling
from lightning_scaling import PowerLaw, unified
from models import CurveRegressor, loader, regression_data

#: L(D) for the toy; its floor (L(64) ~ 0.28) lies well under the curve's converged loss 1.0, so the
#: stop is the rule's own, not the data limit's
LAW = PowerLaw(scale=2.0, exponent=0.5, irreducible=0.1, unit="examples")
FIT = dict(val_check_interval=16, check_val_every_n_epoch=None, limit_val_batches=1, log_every_n_steps=16)


class UnifiedCurveRegressor(L.LightningModule):
    """tests/models.py's CurveRegressor on ``lightning.pytorch``: trains for real, reports the known
    learning curve L(S) = 1 + (40/S)^0.7 as val_loss (the same method, so both packages see the same curve)."""

    validation_step = CurveRegressor.validation_step
    configure_optimizers = CurveRegressor.configure_optimizers

    def __init__(self, dim: int = 8, lr: float = 0.05):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, 16), nn.Tanh(), nn.Linear(16, 1))
        self.lr, self.val_name, self.nan_at = lr, "val_loss", set()

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.mse_loss(self.net(x), y)


def four(package):
    """The four callbacks from ``lightning_scaling`` (pytorch_lightning) or ``lightning_scaling.unified``."""
    return [package.EffectiveEpochs(), package.FlopCounter(peak_flops=1e12), package.DataLimitGap(LAW),
            package.ExtraEarlyStopping(calibration=False, verbose=False)]


def fit(trainer_cls, module, callbacks, root, ckpt_path=None, **kw):
    options = dict(accelerator="cpu", devices=1, max_steps=3000, enable_progress_bar=False,
                   enable_model_summary=False, logger=False, enable_checkpointing=False, num_sanity_val_steps=0,
                   default_root_dir=str(root), **FIT)
    options.update(kw)
    trainer = trainer_cls(callbacks=callbacks, **options)
    trainer.fit(module, loader(regression_data(64)), loader(regression_data(16, seed=1)), ckpt_path=ckpt_path)
    return trainer


@pytest.fixture(scope="module")
def unified_run(tmp_path_factory):
    """One uninterrupted ``lightning.pytorch`` run with all four callbacks and a lightning.pytorch CSVLogger."""
    root = tmp_path_factory.mktemp("unified")
    callbacks = four(unified)
    trainer = fit(L.Trainer, UnifiedCurveRegressor(), callbacks, root, logger=UCSVLogger(root, name="run"))
    rows = list(csv.DictReader((root / "run" / "version_0" / "metrics.csv").open()))
    return trainer, callbacks, rows


def test_unified_shells_are_lightning_pytorch_callbacks():
    for name in ("EffectiveEpochs", "FlopCounter", "DataLimitGap", "ExtraEarlyStopping"):
        cls = getattr(unified, name)
        assert issubclass(cls, L.Callback) and not issubclass(cls, pl.Callback)
        assert not issubclass(getattr(lightning_scaling, name), L.Callback)  # the default package stays pl


def test_unified_counts_tags_and_stop(unified_run):
    trainer, (ee, fc, gap, stop), rows = unified_run
    assert stop.stopped_step is not None and trainer.global_step == stop.stopped_step
    steps = trainer.global_step
    counts = ee.counts(trainer)
    assert counts.examples_seen == 8 * steps and counts.dataset_size == 64  # batch 8 every step
    assert counts.distinct_seen == 64 and counts.effective_epochs == pytest.approx(steps * 8 / 64)
    # per example: forward 2 + weight gradient 2 FLOPs per weight of Linear(8, 16) (its input needs no
    # gradient), and 2 + 2 + 2 (input gradient too) per weight of Linear(16, 1) (SCIENCE.md 8); batch 8
    per_step = fc.per_shape[next(iter(fc.per_shape))]
    assert fc.total_flops == pytest.approx(steps * per_step)
    assert per_step == pytest.approx(8 * (4 * 8 * 16 + 6 * 16 * 1), rel=0.05)
    assert gap.data_limited_at is None or gap.data_limited_at <= steps
    tags = {k for r in rows for k, v in r.items() if v}
    for tag in ("scaling/examples_seen", "scaling/effective_epochs", "scaling/flops", "scaling/pf_days",
                "scaling/mfu", "scaling/ld_loss", "scaling/ld_gap", "scaling/ld_ratio",
                "scaling/converged_loss", "scaling/stop_loss", "scaling/progress"):
        assert tag in tags
    ld = [float(r["scaling/ld_loss"]) for r in rows if r.get("scaling/ld_loss")]
    assert ld[-1] == pytest.approx(LAW(64), rel=1e-6)  # L(D) at D = distinct data seen, the whole dataset


def test_unified_stops_at_the_pytorch_lightning_step(unified_run, tmp_path):
    trainer, callbacks, _ = unified_run
    reference = four(lightning_scaling)
    fit(pl.Trainer, CurveRegressor(), reference, tmp_path)
    assert reference[3].stopped_step == callbacks[3].stopped_step == trainer.global_step
    assert reference[3].decision.converged_loss == pytest.approx(callbacks[3].decision.converged_loss, rel=1e-9)
    assert reference[0].counts(trainer).examples_seen == callbacks[0].counts(trainer).examples_seen
    assert reference[1].total_flops == pytest.approx(callbacks[1].total_flops)


@pytest.mark.slow
def test_unified_resume_matches_uninterrupted_run(unified_run, tmp_path):
    trainer, callbacks, _ = unified_run
    first = four(unified)
    killed = fit(L.Trainer, UnifiedCurveRegressor(), first, tmp_path, max_steps=400)
    assert first[3].stopped_step is None and killed.global_step == 400
    ckpt = tmp_path / "mid.ckpt"
    killed.save_checkpoint(ckpt)
    state = torch.load(ckpt, weights_only=True)  # plain types only
    assert {k.split("{")[0] for k in state["callbacks"]} >= {"EffectiveEpochs", "FlopCounter", "ExtraEarlyStopping"}
    resumed = four(unified)
    again = fit(L.Trainer, UnifiedCurveRegressor(), resumed, tmp_path, ckpt_path=ckpt)
    assert resumed[3].stopped_step == callbacks[3].stopped_step == again.global_step
    assert resumed[0].counts(again).examples_seen == callbacks[0].counts(trainer).examples_seen
    assert resumed[1].total_flops == pytest.approx(callbacks[1].total_flops)
