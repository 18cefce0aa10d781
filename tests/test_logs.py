"""Reading finished runs (lightning_scaling.logs): real TensorBoard/CSV logs, the recorded corpus, bad runs."""

import shutil

import numpy as np
import pytest
import torch
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

from lightning_scaling import EffectiveEpochs, FlopCounter
from lightning_scaling.demo.curves import list_curves, load_curve
from lightning_scaling.logs import RunError, find_runs, read_run, read_runs, run_point
from models import Regressor, loader, make_trainer, regression_data


class SizedRegressor(Regressor):
    """A real regressor that records N as a hyperparameter (the key `fit` reads by default)."""

    def __init__(self):
        super().__init__()
        self.save_hyperparameters({"n_params": sum(p.numel() for p in self.parameters())})
        self.val_values = []

    def validation_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.val_values.append(float(loss))
        self.log("val_loss", loss)


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory):
    """One real short run with EffectiveEpochs and FlopCounter, logged to TensorBoard and CSV at once."""
    root = tmp_path_factory.mktemp("runs")
    tb, csv = TensorBoardLogger(root, name="tb"), CSVLogger(root, name="csv")
    epochs, counter = EffectiveEpochs(), FlopCounter(peak_flops=1e12)
    model = SizedRegressor()
    trainer = make_trainer(root, [epochs, counter], logger=[tb, csv], max_steps=40, val_check_interval=10,
                           check_val_every_n_epoch=None, limit_val_batches=1)
    trainer.fit(model, loader(regression_data(32)), loader(regression_data(16, seed=1)))
    return {"tb": tb.log_dir, "csv": csv.log_dir, "model": model, "counter": counter, "root": root}


def test_tensorboard_and_csv_readers_agree_on_a_real_run(logged_run):
    tb, csv = read_run(logged_run["tb"]), read_run(logged_run["csv"])
    assert tb.kind == "tensorboard" and csv.kind == "csv"
    for tag in ("val_loss", "scaling/examples_seen", "scaling/distinct_seen", "scaling/flops"):
        assert np.array_equal(tb.get(tag).steps, csv.get(tag).steps), tag
        np.testing.assert_allclose(tb.get(tag).values, csv.get(tag).values, rtol=1e-6)
    model = logged_run["model"]
    np.testing.assert_allclose(tb.get("val_loss").values, model.val_values, rtol=1e-6)
    n = sum(p.numel() for p in model.parameters())
    assert tb.hparams["n_params"] == csv.hparams["n_params"] == n
    assert tb.get("scaling/flops").values[-1] == pytest.approx(logged_run["counter"].total_flops, rel=1e-6)


def test_run_point_takes_n_data_and_flops_from_the_callbacks_tags(logged_run):
    run = read_run(logged_run["tb"])
    best = run_point(run)
    assert best.loss == pytest.approx(min(logged_run["model"].val_values), rel=1e-6)
    assert best.n_params == sum(p.numel() for p in logged_run["model"].parameters())
    assert best.unit == "examples" and best.data == 32  # 40 steps x 8 examples: every example seen
    flops = run.get("scaling/flops")
    assert best.flops_source == "scaling/flops"
    assert best.flops == pytest.approx(float(np.interp(best.step, flops.steps, flops.values)))
    final = run_point(run, reduce="final")
    assert final.loss == pytest.approx(logged_run["model"].val_values[-1], rel=1e-6) and final.step >= best.step


def test_recorded_corpus_reads_like_its_own_loader():
    path = list_curves()[0]
    run, curve = read_run(path), load_curve(path)
    s = run.evaluations("val_loss")
    assert np.array_equal(s.steps, curve.steps) and np.allclose(s.values, curve.val_loss)
    assert np.allclose(run.lr_per_step(), curve.lr)
    p = run_point(run)
    i = int(np.argmin(curve.val_loss))
    assert p.loss == pytest.approx(curve.val_loss[i]) and p.step == curve.steps[i]
    assert p.data == min(curve.tokens[i], curve.train_tokens)
    assert p.flops_source == "6N" and p.flops == pytest.approx(6 * curve.n_params * curve.tokens[i])


def test_bad_runs_are_reported_one_line_each_and_the_others_still_read(logged_run, tmp_path):
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "events.out.tfevents.1.host.1").write_bytes(bytes(range(256)) * 4)
    empty = tmp_path / "empty"
    empty.mkdir()
    not_metrics = tmp_path / "table" / "metrics.csv"
    not_metrics.parent.mkdir()
    not_metrics.write_text("a,b\n1,2\n")
    garbled = tmp_path / "garbled" / "metrics.csv"
    garbled.parent.mkdir()
    garbled.write_text("step,val_loss\n0,1.5\n1,abc\n")
    missing = tmp_path / "missing"
    runs, errors = read_runs([logged_run["tb"], corrupt, empty, not_metrics, garbled, missing, logged_run["csv"]])
    assert [r.kind for r in runs] == ["tensorboard", "csv"]
    reasons = {e.path: e.reason for e in errors}
    assert "corrupt" in reasons[str(corrupt)]
    assert "no TensorBoard event files and no metrics.csv" in reasons[str(empty)]
    assert "no 'step' column" in reasons[str(not_metrics)]
    assert "not a number" in reasons[str(garbled)]
    assert reasons[str(missing)] == "does not exist"
    assert all("\n" not in str(e) for e in errors)


def test_a_folder_of_runs_is_searched_and_a_run_without_the_metric_names_it(logged_run, tmp_path):
    assert set(find_runs(logged_run["root"])) >= {read_run(logged_run["tb"]).path, read_run(logged_run["csv"]).path}
    copy = tmp_path / "copy"
    shutil.copytree(logged_run["csv"], copy)
    with pytest.raises(RunError, match="no 'test_loss' series"):
        run_point(read_run(copy), monitor="test_loss")
