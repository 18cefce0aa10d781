"""The four callbacks on a Hugging Face GPT2LMHeadModel (random init from a small config, no download) trained
on variable-length, right-padded batches with an attention mask, gradient accumulation and a warm-up + cosine
schedule: E, tokens, FLOPs, useful FLOPs and FLOPs per step against counts derived here from the config and the
batch shapes alone.

The analytic count of one micro-batch of B sequences padded to T positions (forward, and backward = 2x forward):

    matmuls    3 x 2 x B T x (n_layer x 12 d^2 + d V)   c_attn 3d^2, attention c_proj d^2, MLP 8d^2 per block;
                                                        the tied LM head d V; biases and the embedding lookups
                                                        are not matmuls
    attention  3 x n_layer x B x 2 T^2 d                Q K^T and A V, 2 T^2 d each, halved: causal

Useful FLOPs (FlopCounter's definition): each micro-batch's FLOPs times its real tokens (the attention mask's
sum) over its B x T positions; the rest is spent on padding.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

transformers = pytest.importorskip("transformers")

from lightning_scaling import DataLimitGap, EffectiveEpochs, ExtraEarlyStopping, FlopCounter  # noqa: E402
from lightning_scaling.flops import CAUSAL_FLAG, CAUSAL_MASK, measure_step  # noqa: E402
from models import make_trainer  # noqa: E402

transformers.logging.set_verbosity_error()

BATCH, ACCUMULATE, STEPS, WARMUP = 4, 2, 12, 3
# per batch of 4: an unpadded T=16 batch before a padded one of the same shape, and a padded T=24 batch
# before an unpadded one; then random lengths (most batches padded, to different lengths)
FIXED = [[16, 16, 16, 16], [24, 10, 7, 20], [16, 9, 12, 5], [24, 24, 24, 24]]
LENGTHS = [n for b in FIXED for n in b] + np.random.default_rng(0).integers(5, 33, 32).tolist()


def config(attn: str = "sdpa") -> transformers.GPT2Config:
    return transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=2048, n_positions=64,
                                   bos_token_id=1, eos_token_id=1, attn_implementation=attn)


def analytic_flops(cfg: transformers.GPT2Config, b: int, t: int) -> float:
    d, n_layer, vocab = cfg.n_embd, cfg.n_layer, cfg.vocab_size
    inner = cfg.n_inner or 4 * d
    matmul_weights = n_layer * (3 * d * d + d * d + 2 * d * inner) + d * vocab
    attention = n_layer * 2 * t * t * d  # per sequence, forward, causal (half of 4 T^2 d)
    return 3.0 * (2.0 * matmul_weights * b * t + attention * b)


class Sequences(torch.utils.data.Dataset):
    def __init__(self, lengths, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.items = [torch.randint(2, 2048, (n,), generator=g) for n in lengths]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def pad(items, container=dict):
    """Right padding to the longest sequence of the batch, in a dict (or a BatchEncoding, as
    DataCollatorWithPadding returns)."""
    t = max(len(x) for x in items)
    ids = torch.zeros(len(items), t, dtype=torch.long)
    mask = torch.zeros(len(items), t, dtype=torch.long)
    for i, x in enumerate(items):
        ids[i, :len(x)], mask[i, :len(x)] = x, 1
    return container({"input_ids": ids, "attention_mask": mask, "labels": ids.masked_fill(mask == 0, -100)})


def loader(lengths, seed=0, container=dict):
    return torch.utils.data.DataLoader(Sequences(lengths, seed), batch_size=BATCH,
                                       collate_fn=lambda items: pad(items, container))


def count_tokens(batch):
    return batch["attention_mask"].sum()


class GPT2Module(pl.LightningModule):
    def __init__(self, attn: str = "sdpa"):
        super().__init__()
        torch.manual_seed(0)
        self.model = transformers.GPT2LMHeadModel(config(attn))
        self.model.transformer.wpe.requires_grad_(False)  # frozen position embeddings: no matmul, same FLOPs

    def training_step(self, batch, batch_idx):
        loss = self.model(**batch).loss
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self.model(**batch).loss)

    def configure_optimizers(self):
        opt = torch.optim.AdamW([p for p in self.parameters() if p.requires_grad], lr=1e-3)

        def warmup_cosine(step):
            if step < WARMUP:
                return (step + 1) / WARMUP
            return 0.5 * (1 + math.cos(math.pi * (step - WARMUP) / (STEPS - WARMUP)))

        schedule = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def micro_batches():
    """The (B, T, real tokens) of every micro-batch of the run, in order: the loader's batches, two epochs."""
    batches = [LENGTHS[i:i + BATCH] for i in range(0, len(LENGTHS), BATCH)]
    order = [batches[m % len(batches)] for m in range(STEPS * ACCUMULATE)]
    return [(len(b), max(b), sum(b)) for b in order]


@pytest.fixture(scope="module")
def gpt2_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpt2")
    callbacks = [EffectiveEpochs(count_tokens=count_tokens, dataset_size=np.int64(sum(LENGTHS))),
                 FlopCounter(peak_flops=1e12), DataLimitGap("kaplan2020_ld"),
                 ExtraEarlyStopping(monitor="val_loss", strict=False, verbose=False)]
    loggers = [CSVLogger(root, name="csv"), TensorBoardLogger(root, name="tb")]
    trainer = make_trainer(root, callbacks, max_steps=STEPS, accumulate_grad_batches=ACCUMULATE, logger=loggers,
                           limit_val_batches=2)
    module = GPT2Module()
    trainer.fit(module, loader(LENGTHS), loader([20] * 8, seed=1))
    with open(root / "csv" / "version_0" / "metrics.csv") as f:
        rows = {int(r["step"]): r for r in csv.DictReader(f) if r.get("scaling/flops")}
    return trainer, module, callbacks, rows, loggers


def test_examples_and_tokens_seen(gpt2_run):
    trainer, _, (ee, *_), _, _ = gpt2_run
    assert trainer.global_step == STEPS
    c = ee.counts(trainer)
    assert c.examples_seen == STEPS * ACCUMULATE * BATCH  # every micro-batch of the accumulation
    assert c.tokens_seen == sum(n for _, _, n in micro_batches())  # the attention mask's sum, no padding
    assert c.dataset_size == sum(LENGTHS) and c.effective_epochs == pytest.approx(c.tokens_seen / sum(LENGTHS))


def test_each_shape_costs_the_analytic_count_whether_its_first_batch_was_padded(gpt2_run):
    _, module, (_, fc, *_), _, _ = gpt2_run
    cfg = module.model.config
    # T=16 was first seen unpadded (SDPA is_causal=True), T=24 padded (a causal mask): both booked causal
    shapes = {sig: flops for sig, flops in fc.per_shape.items()}
    by_length = {dict(sig)["input_ids"][0][1]: flops for sig, flops in shapes.items()}
    assert len(by_length) == len(shapes) >= 6
    for t, flops in by_length.items():
        assert flops == pytest.approx(analytic_flops(cfg, BATCH, t), rel=1e-12), t
    assert set(fc.attention_booking) == {CAUSAL_FLAG, CAUSAL_MASK}
    assert fc.total_flops == pytest.approx(sum(analytic_flops(cfg, b, t) for b, t, _ in micro_batches()), rel=1e-12)


def test_useful_flops_leave_the_padding_out(gpt2_run):
    _, module, (_, fc, *_), rows, _ = gpt2_run
    cfg = module.model.config
    useful = sum(analytic_flops(cfg, b, t) * n / (b * t) for b, t, n in micro_batches())
    assert fc.useful_flops == pytest.approx(useful, rel=1e-12)
    assert 0.6 < fc.useful_flops / fc.total_flops < 0.8  # about a third of the compute went on padding
    assert float(rows[STEPS]["scaling/useful_flops"]) == pytest.approx(useful, rel=1e-6)


def test_flops_per_step_is_the_sum_of_the_steps_micro_batches(gpt2_run):
    _, module, (_, fc, *_), rows, _ = gpt2_run
    cfg = module.model.config
    micro = [analytic_flops(cfg, b, t) for b, t, _ in micro_batches()]
    per_step = [micro[2 * k] + micro[2 * k + 1] for k in range(STEPS)]
    assert micro[0] != micro[1]  # the first step's micro-batches differ in shape (T=16, T=24)
    assert sorted(rows) == list(range(1, STEPS + 1))
    for k in range(1, STEPS + 1):
        assert float(rows[k]["scaling/flops_per_step"]) == pytest.approx(per_step[k - 1], rel=1e-6), k
        assert float(rows[k]["scaling/flops"]) == pytest.approx(sum(per_step[:k]), rel=1e-6), k
    assert fc.step_flops == pytest.approx(per_step[-1], rel=1e-12)


def test_run_info_holds_n_d_and_the_attention_booking(gpt2_run):
    _, module, (_, fc, *_), _, loggers = gpt2_run
    n = sum(p.numel() for p in module.parameters())
    wpe = module.model.transformer.wpe.weight.numel()
    for logger in loggers:  # TensorBoard's log_dir and CSV's
        info = json.loads((Path(logger.log_dir) / "lightning_scaling.json").read_text())
        assert info["model"] == {"n_params": n, "trainable_params": n - wpe}
        assert info["data"] == {"dataset_size": sum(LENGTHS), "unit": "tokens"}
        assert info["flops"]["total_flops"] == pytest.approx(fc.total_flops)
        assert info["flops"]["useful_flops"] == pytest.approx(fc.useful_flops)
        assert info["flops"]["attention_booking"] == fc.attention_booking


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_padded_and_unpadded_batches_measure_the_same_on_either_attention(attn):
    module = GPT2Module(attn)
    batch = pad(Sequences([20, 20, 20]).items)
    padded = pad(Sequences([20, 11, 6]).items)
    results = [measure_step(lambda b=b: module.model(**b).loss.backward()) for b in (batch, padded)]
    expected = analytic_flops(module.model.config, 3, 20)
    assert [r.flops for r in results] == pytest.approx([expected, expected], rel=1e-12)
    assert all(r.attention_calls == 2 for r in results)


def test_batch_encoding_batches_are_counted_and_told_apart_by_shape(tmp_path):
    """Hugging Face's BatchEncoding is a mapping but not a dict: its examples count, and each shape is measured."""
    ee, fc = EffectiveEpochs(count_tokens=count_tokens, dataset_size=100), FlopCounter(peak_flops=1e12)
    lengths = FIXED[0] + FIXED[1]  # T=16 unpadded, then T=24 padded
    model = GPT2Module()
    trainer = make_trainer(tmp_path, [ee, fc], max_steps=2, limit_val_batches=0)
    trainer.fit(model, loader(lengths, container=transformers.BatchEncoding))
    assert ee.counts(trainer).examples_seen == 8 and ee.counts(trainer).tokens_seen == 64 + 61
    cfg = model.model.config
    assert sorted(fc.per_shape.values()) == pytest.approx([analytic_flops(cfg, 4, 16), analytic_flops(cfg, 4, 24)],
                                                          rel=1e-12)
    assert fc.useful_flops == pytest.approx(analytic_flops(cfg, 4, 16) + analytic_flops(cfg, 4, 24) * 61 / 96,
                                            rel=1e-12)
