"""EffectiveEpochs in real Trainer runs: examples, tokens, gradient accumulation, iterable data, D's unit and
the checks on its arguments.

(Its checkpoint under DDP, its resume and its run-info record, with the FlopCounter, are in
test_callbacks_together.py.)
"""

import math

import numpy as np
import pytest

from lightning_scaling import EffectiveEpochs
from models import Regressor, StreamOfTokens, TinyLM, TokenData, regression_data


def test_counts_examples_with_short_last_batch_and_epochs(tmp_path, run):
    ee = EffectiveEpochs()
    run(tmp_path, Regressor(), regression_data(60), [ee], max_steps=-1, max_epochs=3, limit_val_batches=0)
    c = ee._cache
    assert c.examples_seen == 180 and c.dataset_size == 60  # 8 batches per epoch, the last one of 4
    assert c.effective_epochs == pytest.approx(3.0) and c.distinct_seen == 60
    assert c.effective_data == pytest.approx(60 + 60 * 15.39 * (1 - math.exp(-2 / 15.39)))


def test_gradient_accumulation_and_limit_train_batches(tmp_path, run):
    ee = EffectiveEpochs()
    trainer = run(tmp_path, Regressor(), regression_data(64), [ee], max_steps=3, accumulate_grad_batches=2,
                  limit_train_batches=6, limit_val_batches=0)
    assert trainer.global_step == 3
    assert ee._cache.examples_seen == 3 * 2 * 8  # every micro-batch processed
    assert ee._cache.distinct_seen == 48


def test_tokens_and_iterable_dataset(tmp_path, run):
    ee = EffectiveEpochs(tokens_per_example=16)
    run(tmp_path, TinyLM(), TokenData(32), [ee], max_steps=4, limit_val_batches=0)
    assert ee._cache.tokens_seen == 4 * 8 * 16 and ee._cache.dataset_size == 32 * 16
    ee = EffectiveEpochs(tokens_per_example=16)
    with pytest.warns(UserWarning, match="no length"):
        run(tmp_path, TinyLM(), StreamOfTokens(32), [ee], max_steps=3, limit_val_batches=0)
    assert ee._cache.tokens_seen == 3 * 8 * 16 and ee._cache.effective_epochs is None
    with pytest.raises(ValueError, match="no length"):
        run(tmp_path, TinyLM(), StreamOfTokens(32), [EffectiveEpochs(strict=True)], max_steps=2, limit_val_batches=0)


def test_count_tokens_needs_d_in_tokens(tmp_path, run):
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
def test_dataset_size_is_any_whole_number(size, tmp_path, run):
    ee = EffectiveEpochs(dataset_size=size, count_tokens=lambda batch: (batch[0] >= 0).sum())
    assert ee.dataset_size == 512 and type(ee.dataset_size) is int
    run(tmp_path, TinyLM(), TokenData(32), [ee], max_steps=2, limit_val_batches=0)
    assert ee._cache.dataset_size == 512 and ee._cache.effective_epochs == pytest.approx(2 * 8 * 16 / 512)


@pytest.mark.parametrize("size", [True, np.bool_(True), -8, np.int64(-8), 0, 2.5, float("nan"), "512", [512]])
def test_dataset_size_that_is_not_a_positive_whole_number_is_refused(size):
    with pytest.raises(ValueError, match=r"dataset_size must be a positive whole number .* e\.g\. dataset_size=65536"):
        EffectiveEpochs(dataset_size=size)
