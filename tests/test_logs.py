"""Reading finished runs (lightning_scaling.logs): real TensorBoard/CSV logs, the recorded corpus, bad runs."""

import shutil

import numpy as np
import pytest
import torch
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

from lightning_scaling import EffectiveEpochs, FlopCounter
from lightning_scaling.corpus.curves import list_curves, load_curve
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
    assert [r.kind for r in runs] == ["tensorboard"]  # the CSVLogger's copy of the same run is read once
    assert runs[0].also_logged_at == [str(logged_run["csv"])]
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


def test_a_resumed_tensorboard_run_keeps_per_step_the_value_written_last(tmp_path):
    """Killed after step 50, resumed from the checkpoint at step 20 and stopped at 40: the resumed session's values
    replace the first's at 30-40, and what the first wrote at 50 (after the resumed run's end) is dropped."""
    from torch.utils.tensorboard import SummaryWriter

    for session, (steps, offset) in enumerate([(range(0, 60, 10), 0.0), (range(30, 50, 10), 0.5)]):
        writer = SummaryWriter(str(tmp_path))
        for i, step in enumerate(steps):
            writer.add_scalar("val_loss", step + offset, step, walltime=100.0 * session + i)
        writer.add_scalar("hp_metric", -1, 0, walltime=100.0 * session + 99)  # written again by each session
        writer.close()
    run = read_run(tmp_path)
    s = run.get("val_loss")
    assert s.steps.tolist() == [0, 10, 20, 30, 40] and s.values.tolist() == [0.0, 10.0, 20.0, 30.5, 40.5]
    assert run.restarts == {"val_loss": [30]} and run.get("hp_metric").steps.tolist() == [0]


def test_a_metrics_csv_with_a_step_written_again_keeps_the_last_value(tmp_path):
    (tmp_path / "metrics.csv").write_text("epoch,step,val_loss\n0,10,1.0\n0,20,0.9\n0,30,0.8\n0,20,0.95\n0,30,0.85\n")
    run = read_run(tmp_path)
    assert run.get("val_loss").values.tolist() == [1.0, 0.95, 0.85] and run.restarts["val_loss"] == [20]
    assert run.get("epoch").steps.tolist() == [10, 20, 30]


def test_n_and_d_come_from_the_run_info_file_when_the_hyperparameters_lack_them(tmp_path):
    from lightning_scaling import run_info

    (tmp_path / "metrics.csv").write_text("step,val_loss,scaling/examples_seen\n9,1.5,80\n19,1.2,160\n")
    run_info.write(tmp_path, "model", {"n_params": 5000, "trainable_params": 4000})
    run_info.write(tmp_path, "data", {"dataset_size": 100, "unit": "examples"})
    run = read_run(tmp_path)
    assert run.info["model"]["trainable_params"] == 4000
    assert run.n_params() == 5000 and run.dataset_size() == 100
    point = run_point(run)
    assert (point.n_params, point.data, point.unit) == (5000, 100, "examples")  # min(160 seen, D = 100)
    (tmp_path / "hparams.yaml").write_text("n_params: 7000\ndataset_size: 120\n")
    run = read_run(tmp_path)
    assert run.n_params() == 7000 and run.dataset_size() == 120  # the user's hyperparameters win
    run_info.write(tmp_path, "data", {"dataset_size": 100, "unit": "tokens"})
    (tmp_path / "hparams.yaml").unlink()
    assert read_run(tmp_path).dataset_size() is None  # a size in tokens does not count this run's examples


def test_a_corrupt_run_info_file_is_an_error_naming_it(tmp_path):
    (tmp_path / "metrics.csv").write_text("step,val_loss\n9,1.5\n")
    (tmp_path / "lightning_scaling.json").write_text("{truncated")
    with pytest.raises(RunError, match="lightning_scaling.json.*fix or delete the file"):
        read_run(tmp_path)


def test_an_unexpected_error_reading_one_run_is_one_error_and_the_others_are_read(tmp_path, monkeypatch):
    from lightning_scaling import logs

    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.csv").write_text("step,val_loss\n9,1.5\n")
    real = logs._read_csv
    monkeypatch.setattr(logs, "_read_csv", lambda path: real(path) if path.parent.name == "a" else 1 / 0)
    runs, errors = read_runs([tmp_path, tmp_path / "a"])  # a folder found twice is read once
    assert [r.path.name for r in runs] == ["a"]
    assert len(errors) == 1 and errors[0].path.endswith("b") and "ZeroDivisionError" in errors[0].reason
