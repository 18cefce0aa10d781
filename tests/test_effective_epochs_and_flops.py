import math

import numpy as np
import pytest
import torch
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

from lightning_scaling import EffectiveEpochs, FlopCounter, run_info
from lightning_scaling.flops import frozen_estimate, six_n
from models import Regressor, StreamOfTokens, TinyLM, TokenData, loader, make_trainer, regression_data


def run(tmp_path, model, data, callbacks, batch_size=8, **kw):
    trainer = make_trainer(tmp_path, callbacks, **kw)
    trainer.fit(model, loader(data, batch_size))
    return trainer


def test_counts_examples_with_short_last_batch_and_epochs(tmp_path):
    ee = EffectiveEpochs()
    run(tmp_path, Regressor(), regression_data(60), [ee], max_steps=-1, max_epochs=3, limit_val_batches=0)
    c = ee._cache
    assert c.examples_seen == 180 and c.dataset_size == 60  # 8 batches per epoch, the last one of 4
    assert c.effective_epochs == pytest.approx(3.0) and c.distinct_seen == 60
    assert c.effective_data == pytest.approx(60 + 60 * 15.39 * (1 - math.exp(-2 / 15.39)))


def test_gradient_accumulation_and_limit_train_batches(tmp_path):
    ee = EffectiveEpochs()
    trainer = run(tmp_path, Regressor(), regression_data(64), [ee], max_steps=3, accumulate_grad_batches=2,
                  limit_train_batches=6, limit_val_batches=0)
    assert trainer.global_step == 3
    assert ee._cache.examples_seen == 3 * 2 * 8  # every micro-batch processed
    assert ee._cache.distinct_seen == 48


def test_tokens_and_iterable_dataset(tmp_path):
    ee = EffectiveEpochs(tokens_per_example=16)
    run(tmp_path, TinyLM(), TokenData(32), [ee], max_steps=4, limit_val_batches=0)
    assert ee._cache.tokens_seen == 4 * 8 * 16 and ee._cache.dataset_size == 32 * 16
    ee = EffectiveEpochs(tokens_per_example=16)
    with pytest.warns(UserWarning, match="no length"):
        run(tmp_path, TinyLM(), StreamOfTokens(32), [ee], max_steps=3, limit_val_batches=0)
    assert ee._cache.tokens_seen == 3 * 8 * 16 and ee._cache.effective_epochs is None
    with pytest.raises(ValueError, match="no length"):
        run(tmp_path, TinyLM(), StreamOfTokens(32), [EffectiveEpochs(strict=True)], max_steps=2, limit_val_batches=0)


def test_count_tokens_needs_d_in_tokens(tmp_path):
    # the dataset's length counts examples: without dataset_size (in tokens) D is left out, with a warning
    ee = EffectiveEpochs(count_tokens=lambda batch: (batch[0] >= 0).sum())
    with pytest.warns(UserWarning, match="D must be given in tokens"):
        run(tmp_path, TinyLM(), TokenData(32), [ee], max_steps=2, limit_val_batches=0)
    assert ee._cache.tokens_seen == 2 * 8 * 16 and ee._cache.dataset_size is None
    assert ee._cache.effective_epochs is None and ee._cache.distinct_seen is None
    ee = EffectiveEpochs(count_tokens=lambda batch: (batch[0] >= 0).sum(), dataset_size=32 * 16)
    run(tmp_path, TinyLM(), TokenData(32), [ee], max_steps=2, limit_val_batches=0)
    assert ee._cache.effective_epochs == pytest.approx(2 * 8 / 32) and ee._cache.distinct_seen == 2 * 8 * 16
    with pytest.raises(ValueError, match="D must be given in tokens"):
        run(tmp_path, TinyLM(), TokenData(32), [EffectiveEpochs(count_tokens=len, strict=True)], max_steps=1,
            limit_val_batches=0)


@pytest.mark.parametrize("kwargs", [dict(dataset_size=0), dict(tokens_per_example=-1),
                                    dict(tokens_per_example=4, count_tokens=len), dict(count_tokens=3)])
def test_effective_epochs_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        EffectiveEpochs(**kwargs)


@pytest.mark.parametrize("size", [512, np.int64(512), np.int32(512), np.uint16(512), 512.0, np.float64(512)])
def test_dataset_size_is_any_whole_number(size, tmp_path):
    ee = EffectiveEpochs(dataset_size=size, count_tokens=lambda batch: (batch[0] >= 0).sum())
    assert ee.dataset_size == 512 and type(ee.dataset_size) is int
    run(tmp_path, TinyLM(), TokenData(32), [ee], max_steps=2, limit_val_batches=0)
    assert ee._cache.dataset_size == 512 and ee._cache.effective_epochs == pytest.approx(2 * 8 * 16 / 512)


@pytest.mark.parametrize("size", [True, np.bool_(True), -8, np.int64(-8), 0, 2.5, float("nan"), "512", [512]])
def test_dataset_size_that_is_not_a_positive_whole_number_is_refused(size):
    with pytest.raises(ValueError, match=r"dataset_size must be a positive whole number .* e\.g\. dataset_size=65536"):
        EffectiveEpochs(dataset_size=size)


@pytest.mark.parametrize("tokens", [False, True])
def test_run_info_holds_n_d_and_the_flops(tokens, tmp_path):
    logger = TensorBoardLogger(tmp_path, name="tb")
    model, fc = TinyLM(freeze_body=True), FlopCounter(peak_flops=1e12)
    ee = EffectiveEpochs(count_tokens=lambda batch: (batch[0] >= 0).sum(), dataset_size=32 * 16) if tokens \
        else EffectiveEpochs()
    run(tmp_path, model, TokenData(32), [ee, fc], max_steps=2, limit_val_batches=0, logger=logger)
    info = run_info.read(logger.log_dir)
    n = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for m in (model.norm, model.head) for p in m.parameters())
    assert info["model"] == {"n_params": n, "trainable_params": trainable} and trainable < n
    assert info["data"] == ({"dataset_size": 512, "unit": "tokens"} if tokens else {"dataset_size": 32, "unit": "examples"})
    assert info["flops"]["total_flops"] == fc.total_flops > 0
    assert info["flops"]["attention_booking"] == {"causal (scaled_dot_product_attention, is_causal=True)": 1}
    # no padding here: every position is a token, so the useful FLOPs are all of them
    assert info["flops"]["useful_flops"] == (pytest.approx(fc.total_flops) if tokens else None)


@pytest.mark.parametrize("kwargs", [dict(peak_flops=-1), dict(dtype="int4")])
def test_flop_counter_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        FlopCounter(**kwargs)


def test_measured_flops_of_a_full_and_a_frozen_model(tmp_path):
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


def test_callbacks_log_scaling_tags(tmp_path):
    logger = CSVLogger(tmp_path, name="run")
    trainer = run(tmp_path, TinyLM(), TokenData(32), [EffectiveEpochs(tokens_per_example=16), FlopCounter(peak_flops=1e12)],
                  max_steps=4, limit_val_batches=0, logger=logger)
    text = (tmp_path / "run" / "version_0" / "metrics.csv").read_text()
    for tag in ("scaling/tokens_seen", "scaling/effective_epochs", "scaling/flops", "scaling/pf_days",
                "scaling/flops_per_sec", "scaling/mfu"):
        assert tag in text
    assert trainer.global_step == 4


def test_resume_matches_uninterrupted_run(tmp_path):
    def callbacks():
        return [EffectiveEpochs(), FlopCounter(peak_flops=1e12)]

    ref = callbacks()
    run(tmp_path / "a", Regressor(), regression_data(64), ref, max_steps=10, limit_val_batches=0)

    first = callbacks()
    trainer = run(tmp_path / "b", Regressor(), regression_data(64), first, max_steps=4, limit_val_batches=0)
    ckpt = tmp_path / "b" / "mid.ckpt"
    trainer.save_checkpoint(ckpt)
    state = torch.load(ckpt, weights_only=True)  # plain types only
    assert any(k.startswith("EffectiveEpochs") for k in state["callbacks"])
    resumed = callbacks()
    trainer = make_trainer(tmp_path / "b", resumed, max_steps=10, limit_val_batches=0)
    trainer.fit(Regressor(), loader(regression_data(64)), ckpt_path=ckpt)
    assert resumed[0]._cache.examples_seen == ref[0]._cache.examples_seen == 80
    assert resumed[1].total_flops == pytest.approx(ref[1].total_flops)


def test_unified_lightning_package(tmp_path):
    import lightning.pytorch as L

    from lightning_scaling.unified import EffectiveEpochs as UEE, FlopCounter as UFC

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(8, 1)

        def training_step(self, batch, batch_idx):
            x, y = batch
            return torch.nn.functional.mse_loss(self.net(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    ee, fc = UEE(), UFC(peak_flops=1e12)
    trainer = L.Trainer(accelerator="cpu", max_steps=3, callbacks=[ee, fc], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp_path))
    trainer.fit(Module(), loader(regression_data(64)))
    assert ee._cache.examples_seen == 24
    # forward 2 + weight gradient 2 FLOPs per weight and example; the input needs no gradient (SCIENCE.md 8)
    assert fc.total_flops == pytest.approx(3 * 4 * 8 * 8, rel=0.01)
