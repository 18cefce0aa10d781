"""ExtraEarlyStopping(sweep=...): real Trainers write a sweep store and read it (lightning_scaling/sweep.py).

Three tiny runs in a row on the same data write three records, and the third logs the pooled prediction of the joint
fit of all three; a run on other data neither pools with them nor overwrites them; a run killed after a checkpoint
leaves that checkpoint's record, which its resume rewrites; DDP writes one record; the stopping decision is the
same with and without the sweep (the pool is shown, never used to stop); and ``replay(..., sweep=...)`` of a run's
logged curve gives the pooled prediction the live run logged.
"""

from __future__ import annotations

import csv
import math
import shutil
import warnings

import pytest
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger

from lightning_scaling import EffectiveEpochs, ExtraEarlyStopping, FlopCounter, replay
from lightning_scaling import tags
from lightning_scaling.callbacks import _sweep_member
from lightning_scaling.errors import ScalingWarning
from lightning_scaling.sweep import Sweep, record_filename

from models import CurveRegressor, loader, make_trainer, regression_data

POOLED = tags.tag("pooled_converged_loss")
SHORT = dict(max_steps=200, val_check_interval=10, check_val_every_n_epoch=None, limit_val_batches=1)


def fit(root, stop, *, logger=True, extra=(), ckpt_path=None, **kw):
    """One CurveRegressor run (val_loss = 1 + (40/S)^0.7) with EffectiveEpochs, FlopCounter and ``stop``."""
    options = {**SHORT, **kw}
    if logger:
        options["logger"] = CSVLogger(root)
    trainer = make_trainer(root, [EffectiveEpochs(), FlopCounter(peak_flops=1e12), stop, *extra], **options)
    trainer.fit(CurveRegressor(), loader(regression_data(256)), loader(regression_data(32, seed=1)),
                ckpt_path=ckpt_path)
    return trainer


def logged(trainer, name):
    """The values of ``name`` in the run's metrics.csv."""
    return [float(row[name]) for row in rows(trainer) if row.get(name)]


def rows(trainer):
    """The rows of the run's metrics.csv."""
    with open(f"{trainer.logger.log_dir}/metrics.csv") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Three runs in a row on the data "curve", each given the same store: (folder, their callbacks and trainers)."""
    root = tmp_path_factory.mktemp("sweep")
    runs = []
    for i in range(3):
        stop = ExtraEarlyStopping(calibration=False, verbose=False, sweep=Sweep(root / "store", data="curve"))
        runs.append((stop, fit(root / f"run{i}", stop)))
    return root / "store", runs


def test_three_runs_write_a_store_and_the_third_logs_the_pooled_prediction(store):
    folder, runs = store
    records = Sweep(folder, data="curve").records
    assert len(records) == 3 and {r.run_id for r in records} == {stop.run_id for stop, _ in runs}
    n = sum(p.numel() for p in CurveRegressor().parameters())
    for r in records:
        assert r.data == "curve" and r.n_params == n and r.dataset_size == 256 and r.unit == "examples"
        assert r.steps == list(range(10, 201, 10)) and len(r.lr_sum) == 20 and r.examples_seen == 200 * 8
        assert r.flops > 0 and r.config["threshold"] == pytest.approx(1.1, abs=0.01) and r.config["finished"]
        assert r.stop_code is not None and r.stop_reason
    first, third = runs[0], runs[2]
    assert first[0].sweep_fit is None and first[0].pooled is None  # alone in the store: as without a sweep
    assert POOLED not in open(f"{first[1].logger.log_dir}/metrics.csv").readline()
    stop, trainer = third
    fit_ = stop.sweep_fit
    assert fit_.success and fit_.n_runs == 3
    (group,) = fit_.groups.values()
    assert set(group["runs"]) == {s.run_id for s, _ in runs}  # the earlier records and its own points
    values = logged(trainer, POOLED)
    assert values and all(v == pytest.approx(1.0, abs=0.02) for v in values)  # the curve's limit is 1
    low, high = logged(trainer, tags.tag("pooled_converged_loss_low")), logged(trainer, tags.tag(
        "pooled_converged_loss_high"))
    # (the calibrated interval need not hold the point: early, in the widest bin, the truth lies above it)
    assert len(low) == len(high) == len(values) and all(0 < lo < hi for lo, hi in zip(low, high))
    assert stop.pooled[0] == pytest.approx(values[-1])
    assert "pooled prediction (sweep of 3 runs on data 'curve')" in stop.summary(trainer, "done", stopped=False)


def test_a_run_on_other_data_is_not_pooled_and_overwrites_nothing(store, tmp_path):
    folder = tmp_path / "store"
    shutil.copytree(store[0], folder)
    before = {r.run_id: r for r in Sweep(folder, data="curve").records}
    stop = ExtraEarlyStopping(calibration=False, verbose=False, sweep=Sweep(folder, data="other"))
    trainer = fit(tmp_path / "other", stop)
    assert stop.sweep_fit is None and stop.pooled is None
    assert POOLED not in open(f"{trainer.logger.log_dir}/metrics.csv").readline()
    assert {r.run_id: r for r in Sweep(folder, data="curve").records} == before
    (mine,) = Sweep(folder, data="other").records
    assert mine.run_id == stop.run_id and mine.data == "other" and len(list(folder.glob("*.json"))) == 4


def test_a_killed_run_leaves_a_valid_record_and_its_resume_rewrites_it(tmp_path):
    class Kill(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_step == 120:
                raise RuntimeError("killed")

    folder, ckpts = tmp_path / "store", tmp_path / "ckpt"
    stop = ExtraEarlyStopping(calibration=False, verbose=False, sweep=str(folder))  # a path: Sweep(path)
    checkpoint = ModelCheckpoint(dirpath=ckpts, every_n_train_steps=50, save_top_k=-1, save_last=True)
    with pytest.raises(RuntimeError, match="killed"):
        fit(tmp_path / "run", stop, logger=False, extra=[checkpoint, Kill()], enable_checkpointing=True)
    assert sorted(p.name for p in folder.iterdir()) == [record_filename(stop.run_id)]  # no partial file
    with warnings.catch_warnings():
        warnings.simplefilter("error", ScalingWarning)  # nothing in the store is skipped as unreadable
        (killed,) = Sweep(folder).records
    assert killed.run_id == stop.run_id and 50 <= killed.steps[-1] <= 100 and not killed.config["finished"]

    resumed = ExtraEarlyStopping(calibration=False, verbose=False, sweep=Sweep(folder))
    fit(tmp_path / "run", resumed, logger=False, extra=[ModelCheckpoint(dirpath=ckpts, save_last=True)],
        enable_checkpointing=True, ckpt_path=str(ckpts / "last.ckpt"))
    assert resumed.run_id == stop.run_id  # kept in the checkpoint
    (record,) = Sweep(folder).records
    assert record.run_id == stop.run_id and record.config["finished"]
    # the killed run's points and the resumed run's after them (Lightning does not rerun the validation of the
    # checkpoint's step on a mid-epoch resume)
    assert record.steps[:len(killed.steps)] == killed.steps and record.steps[-1] == 200 and len(record.steps) >= 19


@pytest.mark.slow
def test_ddp_writes_exactly_one_record(store, tmp_path):
    folder = tmp_path / "store"
    shutil.copytree(store[0], folder)
    for attempt in (1, 2):
        for leftover in set(folder.glob("*.json")) - {folder / p.name for p in store[0].glob("*.json")}:
            leftover.unlink()
        stop = ExtraEarlyStopping(calibration=False, verbose=False, sweep=Sweep(folder, data="curve"))
        try:
            fit(tmp_path / "ddp", stop, logger=False, devices=2, strategy="ddp_spawn", max_steps=60)
            break
        except torch.multiprocessing.ProcessExitedException as err:
            # a spawned gloo worker sometimes aborts at teardown (tests/test_callbacks_together.py): one retry
            if attempt == 2 or "SIGABRT" not in str(err):
                raise
    records = Sweep(folder, data="curve").records
    assert len(records) == 4 and len(list(folder.iterdir())) == 4  # one new record, from rank zero only
    (new,) = [r for r in records if r.run_id not in {s.run_id for s, _ in store[1]}]
    assert new.steps == list(range(10, 61, 10)) and new.examples_seen == 60 * 2 * 8  # counted over both ranks


def test_the_stopping_decision_is_the_same_with_and_without_the_sweep(store, tmp_path):
    folder = tmp_path / "store"
    shutil.copytree(store[0], folder)
    runs = {}
    for name, sweep in (("with", Sweep(folder, data="curve")), ("without", None)):
        stop = ExtraEarlyStopping(calibration=False, verbose=False, sweep=sweep)
        fit(tmp_path / name, stop, logger=False, max_steps=3000, val_check_interval=16)
        runs[name] = stop
    with_, without = runs["with"], runs["without"]
    assert with_.stopped_step is not None and with_.stopped_step == without.stopped_step
    assert with_.decision.reason == without.decision.reason
    assert with_.rule.steps == without.rule.steps and with_.rule.losses == without.rule.losses
    assert with_.pooled is not None and with_.sweep_fit.n_runs == 4  # the pool was there, and shown only
    (mine,) = [r for r in Sweep(folder).records if r.run_id == with_.run_id]
    assert mine.stop_code == with_.decision.code.value and mine.config["stopped_step"] == with_.stopped_step


def test_sweep_is_validated_at_construction_and_a_write_failure_is_one_warning(tmp_path):
    with pytest.raises(ValueError, match="sweep must be"):
        ExtraEarlyStopping(sweep=3)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        ExtraEarlyStopping(sweep=tmp_path / "file")
    assert isinstance(ExtraEarlyStopping(sweep=tmp_path / "s").sweep, Sweep)
    assert ExtraEarlyStopping().sweep is None
    stop = ExtraEarlyStopping(calibration=False, verbose=False, sweep=Sweep(tmp_path / "file" / "store"))
    with pytest.warns(ScalingWarning, match="could not write this run's record") as caught:
        fit(tmp_path / "run", stop, logger=False, max_steps=40)
    assert sum("could not write" in str(w.message) for w in caught) == 1
    assert stop.decision is not None  # the run went on to its end


def test_replay_with_the_store_gives_the_pooled_prediction_the_live_run_logged(store, tmp_path, monkeypatch):
    """A run of the sweep, refitting at every validation (as a replay does), logs its pooled prediction; replay of its
    logged curve (scaling/monitored_loss, scaling/lr_sum) against the store, its own record left out, gives the same
    numbers at every validation, and the same decisions as a replay without the sweep."""
    monkeypatch.setattr(_sweep_member, "SWEEP_REFIT_EVERY", 1)
    monkeypatch.setattr(_sweep_member, "SWEEP_MS_PER_VALIDATION", math.inf)
    folder = tmp_path / "store"
    shutil.copytree(store[0], folder)
    stop = ExtraEarlyStopping(calibration=False, verbose=False, sweep=Sweep(folder, data="curve"))
    trainer = fit(tmp_path / "live", stop)
    points = [row for row in rows(trainer) if row.get(tags.tag("monitored_loss"))]
    steps = [int(row["step"]) for row in points]
    losses = [float(row[tags.tag("monitored_loss")]) for row in points]
    lr_sum = [float(row[tags.tag("lr_sum")]) for row in points]
    names = [POOLED, tags.tag("pooled_converged_loss_low"), tags.tag("pooled_converged_loss_high")]
    live = [(s, *(float(row[k]) for k in names)) if row.get(POOLED) else None for s, row in zip(steps, points)]
    assert steps == list(range(10, 201, 10)) and sum(p is not None for p in live) >= 15

    (mine,) = [r for r in Sweep(folder).records if r.run_id == stop.run_id]
    own = dict(n_params=mine.n_params, dataset_size=mine.dataset_size, run_id=stop.run_id)
    replayed = replay(steps, losses, lr_sum=lr_sum, calibration=False, sweep=Sweep(folder, data="curve"), **own)
    assert replayed.pooled == live  # exactly: the same records, points and functions
    records = Sweep(folder).records  # a list of records, or a path, with the data identity given
    assert replay(steps, losses, lr_sum=lr_sum, calibration=False, sweep=records, data="curve", **own).pooled == live
    plain = replay(steps, losses, lr_sum=lr_sum, calibration=False)
    assert plain.pooled == [] and plain.decisions == replayed.decisions  # the pool never changes a decision
    assert (plain.stopped_step, plain.code) == (replayed.stopped_step, replayed.code) == (None, stop.decision.code)
    # its own record left out or not: pooling the finished run's whole curve changes the prediction
    assert replay(steps, losses, lr_sum=lr_sum, calibration=False, sweep=folder, data="curve",
                  **{**own, "run_id": None}).pooled != live
    with pytest.warns(ScalingWarning, match="none of the sweep's 4 runs is on data=None"):
        assert set(replay(steps, losses, sweep=folder, n_params=mine.n_params).pooled) == {None}
    with pytest.raises(ValueError, match="pass n_params"):
        replay(steps, losses, sweep=folder)
    with pytest.raises(ValueError, match="pass sweep"):
        replay(steps, losses, n_params=mine.n_params)
    with pytest.raises(ValueError, match="sweep must be"):
        replay(steps, losses, sweep=3, n_params=1)
