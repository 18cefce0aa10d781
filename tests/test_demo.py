"""The demo's job in reduced form (a tiny model, 60 steps), its data and its model."""

import math

import pytest
import torch

from lightning_scaling.demo import job
from lightning_scaling.sweep import Sweep
from lightning_scaling.demo.data import char_data, split, stdlib_text
from lightning_scaling.demo.model import SCHEDULES, CharGPT, schedule
from lightning_scaling.schedules import planned_lrs, schedule_lr


def test_demo_quick_run_logs_the_dashboard_and_summarises(tmp_path, capsys):
    result = job.main(["--quick", "--out", str(tmp_path), "--no-progress", "--threads", "1"])
    text = capsys.readouterr().out
    assert result.steps == 60 and result.flops > 0 and result.pf_days == pytest.approx(result.flops / 8.64e19)
    assert result.tokens_seen == 60 * 32 * 64
    assert result.effective_epochs == pytest.approx(result.tokens_seen / result.dataset_size)
    assert result.distinct_seen == result.dataset_size  # several epochs over 32k tokens
    for needle in ("parameters", "60 steps", "FLOP", "PF-days", "E/D", "distinct tokens seen", "gap to L(D)",
                   "tensorboard --logdir " + str(tmp_path)):
        assert needle in text
    if job.LD_JSON.is_file():  # the shipped L(D): DataLimitGap ran and the gap is printed
        assert result.ld_loss is not None and f"{result.ld_loss:.4f}" in text
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(result.log_dir)
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"scaling/flops", "scaling/effective_epochs", "scaling/tokens_seen", "val_loss"} <= tags
    assert "custom_scalars__config__" in acc.Tags()["tensors"]
    # the run joined the demo's sweep store: the bundled corpus records, and its own record at the end; the quick
    # run validates on other data than the bundle, so nothing is pooled, and the summary says why
    store = Sweep(tmp_path / "sweep")
    assert {r.data for r in store.records} == {job.DEMO_DATA, "demo --quick"}
    assert [r.n_params for r in store.records if r.data == "demo --quick"] == [result.params]
    assert result.pooled is None and "no pooled prediction" in result.sweep_line and result.sweep_line in text


def test_the_bundled_sweep_pools_other_sizes_into_the_demo_models_prediction(tmp_path):
    # the demo's model (the corpus' m on 64k characters) replayed as if it had joined the bundled store: the pooled
    # prediction comes from the other sizes and its own points, and its interval holds the loss the run reached
    from lightning_scaling import replay
    from lightning_scaling.corpus.curves import converged_loss, load_curves

    store = job.join_sweep(tmp_path / "sweep", job.DEMO_DATA)
    m = next(c for c in load_curves() if c.name == "m_d64k_const")
    assert len(store.records) == 18 and m.n_params not in {r.n_params for r in store.records}
    r = replay(m.steps, m.val_loss, lr=m.lr, sweep=store, n_params=m.n_params, data=job.DEMO_DATA,
               dataset_size=m.config["train_tokens"], run_id="demo")
    pooled = [p for p in r.pooled if p is not None]
    assert pooled, "no pooled prediction"
    _, value, lo, hi = pooled[-1]
    assert lo <= converged_loss(m) <= hi and lo < value < hi
    again = job.join_sweep(store.path, job.DEMO_DATA)  # joining again writes nothing twice
    assert len(again.records) == 18


def test_summary_reports_a_stop_by_the_rule_and_the_cost_of_convergence():
    r = job.DemoResult(log_dir="runs/demo/version_0", seconds=90.0, steps=3000, params=84_288, stopped_by_rule=True,
                       reason="smoothed loss 2.2 <= 1.10 x converged 2.0", converged_loss=2.0, interval=(1.9, 2.1),
                       loss=2.2, stop_loss=2.2, flops=1e15, pf_days=1e15 / 8.64e19, tokens_seen=6e6,
                       effective_epochs=14.0, distinct_seen=4e5, dataset_size=4e5, ld_loss=1.5, threshold=1.1,
                       law_source="demo_ld.json")
    text = job.summary(r)
    assert "stopped at step 3000 by ExtraEarlyStopping" in text
    assert "predicted converged val_loss 2.0000" in text and "loss reached 2.2000" in text
    assert "+0.7000" in text  # gap to L(D)
    steps_factor = ((1 + 1 / 0.1) / (1 + 1 / 0.02)) ** (-1 / 0.76)  # [K] B.13 inverted: ~7.7x the steps
    assert f"{steps_factor:.1f}x the steps" in text
    assert text.strip().splitlines()[-1].startswith("Open the dashboard: tensorboard --logdir runs")


def test_text_ships_with_python_and_splits_by_contiguous_chunks():
    d = char_data("pydoc", 64, train_tokens=10_000, val_tokens=2048)
    assert len(d.train) == (10_000 - 1) // 64 and len(d.val) == (2048 - 1) // 64
    assert d.train_tokens == len(d.train) * 64
    x, y = d.train[0]
    assert x.shape == y.shape == (64,) and int(x.max()) < 256 and torch.equal(x[1:], y[:-1])
    data = torch.arange(100) % 256
    train, val = split(data, chunk=10, val_every=5)
    assert val.tolist() == list(range(40, 50)) + list(range(90, 100)) and len(train) == 80
    assert len(stdlib_text(50_000)) == 50_000
    with pytest.raises(ValueError, match="exceeds"):
        char_data("pydoc", 64, train_tokens=10**9)


def test_the_spread_layout_samples_one_pool_for_every_dataset_size():
    """layout="spread" (the curves_spread runs): the same chunks as "prefix", each split in a seeded random order,
    so a small training set is a sample of the whole pool nested in the larger ones, and the validation set is the
    same for every size."""
    data = torch.arange(1000) % 256
    train, val = split(data, chunk=10, val_every=5, layout="spread")
    prefix_train, prefix_val = split(data, chunk=10, val_every=5)
    assert (sorted(train.tolist()) == sorted(prefix_train.tolist())
            and sorted(val.tolist()) == sorted(prefix_val.tolist()))
    assert not torch.equal(train, prefix_train) and torch.equal(split(data, 10, 5, "spread")[0], train)  # seeded
    assert int(train[:100].max()) - int(train[:100].min()) > 150  # the first 100 bytes come from across the pool
    small, big = (char_data("stdlib", 64, train_tokens=n, val_tokens=4096, chunk=1024, layout="spread",
                            pool_chars=200_000) for n in (8192, 32768))
    assert torch.equal(small.train.data, big.train.data[: len(small.train.data)])
    assert torch.equal(small.val.data, big.val.data)
    with pytest.raises(ValueError, match="layout"):
        split(data, layout="shuffled")
    with pytest.raises(ValueError, match="pool_chars"):
        char_data("pydoc", 64, pool_chars=0)


def test_schedules():
    const, cos, wsd = (schedule(k, warmup=10, total_steps=100, decay_fraction=0.2, min_ratio=0.1)
                       for k in ("constant", "cosine", "wsd"))
    assert const(0) == pytest.approx(0.1) and const(9) == 1.0 and const(99) == 1.0
    assert cos(10) == 1.0 and cos(100) == pytest.approx(0.1) and cos(55) == pytest.approx(0.55)
    assert wsd(79) == 1.0 and wsd(100) == pytest.approx(0.1) and wsd(90) == pytest.approx(0.55)
    with pytest.raises(ValueError, match="schedule"):
        schedule("linear", 10, 100)


@pytest.mark.parametrize("kind", SCHEDULES)
def test_the_demos_lambdalr_steps_schedule_lr_to_the_last_bit(kind):
    """The demo's multiplier is schedules.schedule_lr's schedule over its peak at every step (one implementation,
    schedules.lr_multiplier), "constant" being the linear shape with its floor at the peak; past the end, the floor."""
    warmup, total, fraction, ratio, lr = 37, 500, 0.3, 0.1, 2e-3
    shape, floor = ("linear", 1.0) if kind == "constant" else (kind, ratio)
    expected = schedule_lr(shape, total, warmup_steps=warmup, peak_lr=1.0, final_lr_ratio=floor,
                           decay_fraction=fraction)
    factor = schedule(kind, warmup, total, fraction, ratio)
    assert [factor(i) for i in range(total)] == expected.tolist()
    assert factor(total + 10) == factor(total) == pytest.approx(floor)
    if kind == "constant":
        assert set(expected[warmup - 1:].tolist()) == {1.0}
    model = CharGPT(d_model=8, n_layer=1, n_head=2, ctx=8, lr=lr, warmup=warmup, schedule=kind, total_steps=total,
                    decay_fraction=fraction, min_ratio=ratio)
    scheduler = model.configure_optimizers()["lr_scheduler"]["scheduler"]
    assert planned_lrs(scheduler, max_steps=total).tolist() == (lr * expected).tolist()


def test_model_sizes_and_causality():
    small, big = CharGPT(d_model=24, n_layer=1, n_head=2, ctx=32), CharGPT(d_model=128, n_layer=4, ctx=64)
    assert 15_000 < small.n_params() < 25_000 and 800_000 < big.n_params() < 1_200_000
    tied = CharGPT(d_model=24, n_layer=1, n_head=2, ctx=32, tied=True)
    assert tied.n_params() == small.n_params() - 256 * 24
    x = torch.randint(0, 256, (2, 32))
    y1 = small(x)
    x2 = x.clone()
    x2[:, 20:] = 0
    assert torch.allclose(small(x2)[:, :20], y1[:, :20], atol=1e-6)  # no peeking at later characters
    assert math.isclose(float(torch.nn.functional.cross_entropy(y1.flatten(0, 1), x.flatten())), math.log(256),
                        rel_tol=0.05)  # near-uniform at init
