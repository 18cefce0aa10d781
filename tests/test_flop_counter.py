"""FlopCounter in real Trainer runs: one measurement per batch shape, accumulation, MFU, the report."""

import csv
import warnings

import pytest
import torch
import torch.nn.functional as F
from pytorch_lightning.loggers import CSVLogger

from lightning_scaling import EffectiveEpochs, FlopCounter
from lightning_scaling.callbacks.flop_counter import _signature
from lightning_scaling.flops import frozen_estimate, measure_step, six_n
from models import Regressor, TinyLM, TokenData, loader, make_trainer, regression_data


def step_flops(model, batch) -> float:
    x, y = batch
    return measure_step(lambda: F.mse_loss(model.net(x), y).backward()).flops


def test_each_batch_shape_is_measured_once_and_summed_per_step(tmp_path):
    fc = FlopCounter(peak_flops=1e12)
    model, data = Regressor(), regression_data(60)  # 7 batches of 8, then one of 4
    make_trainer(tmp_path, [fc], max_steps=-1, max_epochs=2, limit_val_batches=0).fit(model, loader(data, 8))
    assert len(fc.per_shape) == 2
    full, short = step_flops(model, data[:8]), step_flops(model, data[:4])
    assert sorted(fc.per_shape.values()) == [short, full] and short == full / 2
    assert fc.total_flops == 2 * (7 * full + short)


def test_gradient_accumulation_counts_every_micro_batch(tmp_path):
    fc = FlopCounter(peak_flops=1e12)
    model, data = Regressor(), regression_data(64)
    trainer = make_trainer(tmp_path, [fc], max_steps=3, accumulate_grad_batches=2, limit_val_batches=0)
    trainer.fit(model, loader(data, 8))
    micro = step_flops(model, data[:8])
    assert fc.total_flops == 3 * 2 * micro
    assert fc.step_flops == 2 * micro


def test_unknown_peak_warns_once_and_logs_no_mfu(tmp_path):
    fc = FlopCounter()  # CPU: no peak in the table
    logger = CSVLogger(tmp_path, name="run")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make_trainer(tmp_path, [fc], max_steps=4, limit_val_batches=0, logger=logger).fit(
            Regressor(), loader(regression_data(64)))
        make_trainer(tmp_path, [fc], max_steps=8, limit_val_batches=0).fit(Regressor(), loader(regression_data(64)))
    assert sum("peak FLOP/s is unknown" in str(w.message) for w in caught) == 1
    header = (tmp_path / "run" / "version_0" / "metrics.csv").read_text().splitlines()[0]
    assert "scaling/flops_per_sec" in header and "scaling/mfu" not in header


def test_report_names_the_corrections_and_the_uncounted_work(tmp_path, capsys):
    fc = FlopCounter(peak_flops=1e12)
    make_trainer(tmp_path, [fc], max_steps=2, limit_val_batches=0).fit(TinyLM(), loader(TokenData(32)))
    out = capsys.readouterr().out
    assert out.count("FlopCounter: one micro-batch measures") == 1  # once, not per step
    assert "1 call(s) invisible to the counter" in out and "6N =" in out
    assert "causal (scaled_dot_product_attention, is_causal=True): 1 call(s)" in out
    m = fc.last_measurement
    assert m.uncounted > 0 and "native_layer_norm" in m.uncounted_ops
    assert m.flops == pytest.approx(fc.total_flops / 2)


def test_a_step_the_counter_cannot_see_warns_once(tmp_path):
    class Matmulless(Regressor):  # no matmul at all: an honest 0, but worth a word
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(1))

        def training_step(self, batch, batch_idx):
            x, y = batch
            return F.mse_loss(x[:, :1] * self.scale, y)

    fc = FlopCounter(peak_flops=1e12)
    with pytest.warns(UserWarning, match="measured 0 FLOP") as caught:
        make_trainer(tmp_path, [fc], max_steps=-1, max_epochs=1, limit_val_batches=0).fit(
            Matmulless(), loader(regression_data(60)))  # two batch shapes, two measurements
    assert sum("measured 0 FLOP" in str(w.message) for w in caught) == 1
    assert len(fc.per_shape) == 2 and fc.total_flops == 0


def test_throughput_clock_restarts_after_a_resume_and_mfu_is_rate_over_peak(tmp_path):
    import csv

    first = FlopCounter(peak_flops=1e12)
    trainer = make_trainer(tmp_path, [first], max_steps=4, limit_val_batches=0)
    trainer.fit(Regressor(), loader(regression_data(64)))
    trainer.save_checkpoint(tmp_path / "mid.ckpt")
    resumed = FlopCounter(peak_flops=1e12)
    logger = CSVLogger(tmp_path, name="resumed")
    make_trainer(tmp_path, [resumed], max_steps=8, limit_val_batches=0, logger=logger).fit(
        Regressor(), loader(regression_data(64)), ckpt_path=tmp_path / "mid.ckpt")
    with open(tmp_path / "resumed" / "version_0" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("scaling/flops")]
    assert [int(r["step"]) for r in rows][:2] == [5, 6]
    assert rows[0]["scaling/flops_per_sec"] == ""  # no rate across the restart
    rates = [r for r in rows[1:] if r["scaling/flops_per_sec"]]
    assert len(rates) == len(rows) - 1
    for r in rates:
        assert float(r["scaling/mfu"]) == pytest.approx(float(r["scaling/flops_per_sec"]) / 1e12)
    assert float(rows[-1]["scaling/flops"]) == pytest.approx(2 * first.total_flops)


@pytest.mark.parametrize("on_device", [True, False])
def test_useful_flops_weigh_each_micro_batch_by_its_real_tokens(tmp_path, on_device):
    def real(batch):  # "padding": the token ids below 4
        n = (batch[0] >= 4).sum()
        return n if on_device else int(n)

    ee, fc = EffectiveEpochs(count_tokens=real, dataset_size=60 * 16), FlopCounter(peak_flops=1e12)
    data = TokenData(60)  # 7 batches of 8 and one of 4: two shapes
    logger = CSVLogger(tmp_path, name="run")
    make_trainer(tmp_path, [ee, fc], max_steps=-1, max_epochs=1, limit_val_batches=0, logger=logger,
                 log_every_n_steps=3).fit(TinyLM(), loader(data))
    batches = list(loader(data))
    expected = sum(fc.per_shape[_signature(b)] * float(real(b)) / b[0].numel() for b in batches)
    assert len(fc.per_shape) == 2 and 0.7 < expected / fc.total_flops < 0.95
    assert fc.useful_flops == pytest.approx(expected, rel=1e-12)
    assert ee._cache.tokens_seen == sum(float(real(b)) for b in batches)
    with open(tmp_path / "run" / "version_0" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("scaling/useful_flops")]
    assert [int(r["step"]) for r in rows] == [3, 6, 8]  # with the other counts, on log steps and at the end
    assert float(rows[-1]["scaling/useful_flops"]) == pytest.approx(expected)


def test_a_batch_without_token_positions_warns_once_and_is_left_out_of_the_useful_flops(tmp_path):
    class Lookup(Regressor):  # batches of 1-D tensors: token ids and targets, no (batch, sequence) tensor
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(64, 8)

        def training_step(self, batch, batch_idx):
            ids, y = batch
            return F.mse_loss(self.net(self.emb(ids)).squeeze(-1), y)

    data = torch.utils.data.TensorDataset(torch.arange(64), torch.randn(64))
    fc = FlopCounter(peak_flops=1e12)
    with pytest.warns(UserWarning, match="no \\(batch, sequence\\) tensor") as caught:
        make_trainer(tmp_path, [EffectiveEpochs(count_tokens=lambda b: b[0].numel(), dataset_size=64), fc],
                     max_steps=4, limit_val_batches=0).fit(Lookup(), loader(data))
    assert sum("no (batch, sequence) tensor" in str(w.message) for w in caught) == 1
    assert fc.total_flops > 0 and fc.useful_flops == 0


@pytest.mark.parametrize("kwargs", [dict(peak_flops=-1), dict(dtype="int4")])
def test_flop_counter_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        FlopCounter(**kwargs)


def test_measured_flops_of_a_full_and_a_frozen_model(tmp_path, run):
    tokens = 8 * 16
    full, frozen = FlopCounter(peak_flops=1e12), FlopCounter(peak_flops=1e12)
    model = TinyLM()
    run(tmp_path, model, TokenData(32), [full], max_steps=3, limit_val_batches=0)
    n = sum(p.numel() for name, p in model.named_parameters() if not name.startswith("emb"))  # matmul weights
    per_token = full.last_measurement.flops / tokens
    assert full.last_measurement.uncounted_attention_calls == 1  # the CPU SDPA kernel: corrected, not lost
    assert per_token == pytest.approx(six_n(n), rel=0.25)
    assert full.total_flops == pytest.approx(3 * full.last_measurement.flops)

    fmodel = TinyLM(freeze_body=True)
    run(tmp_path, fmodel, TokenData(32), [frozen], max_steps=3, limit_val_batches=0)
    trainable = sum(p.numel() for p in fmodel.parameters() if p.requires_grad)
    n_act = sum(p.numel() for m in (fmodel.norm, fmodel.head) for p in m.parameters())
    frozen_per_token = frozen.last_measurement.flops / tokens
    assert trainable / sum(p.numel() for p in fmodel.parameters()) < 0.25
    assert frozen_per_token < 0.7 * per_token  # well below 6N ...
    assert frozen_per_token == pytest.approx(frozen_estimate(n, n_act, trainable), rel=0.35)  # ... near 2N+2N_act+2N_tr
