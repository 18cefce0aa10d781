"""DataLimitGap in real Trainer runs: the floor L(D_seen) (or L(N, D_seen)), its tags and figures, the
data-limited and below-the-law messages, the checks on the law's units and counts, and the floor from a sweep
store's joint fit (``sweep=``)."""

import dataclasses

import pytest
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.loggers import TensorBoardLogger

from lightning_scaling import DataLimitGap, EffectiveEpochs, ExtraEarlyStopping, PowerLaw
from lightning_scaling.dashboard import LAYOUT
from models import Regressor, loader, make_trainer, regression_data


def test_data_limit_gap_says_when_the_loss_goes_below_its_law(tmp_path, capsys, fit_curve):
    """A loss below L(D) means the law is wrong for this data: one warning, and no claim that the run is
    data-limited."""
    law = PowerLaw(scale=2.0, exponent=0.5, irreducible=1.5, unit="examples")  # above the curve's 1 + (40/S)^0.7
    gap = DataLimitGap(law)
    with pytest.warns(UserWarning, match="below the law") as caught:
        fit_curve(tmp_path, [EffectiveEpochs(), gap], max_steps=400)
    assert sum("below the law" in str(w.message) for w in caught) == 1
    assert gap.data_limited_at is None and "data-limited" not in capsys.readouterr().out


def test_data_limit_gap_logs_and_says_when_data_limited(tmp_path, capsys, fit_curve):
    law = PowerLaw(scale=2.0, exponent=0.5, irreducible=0.9, unit="examples")  # L(D) for this toy
    logger = TensorBoardLogger(tmp_path, name="tb")
    gap = DataLimitGap(law, tolerance=0.5)
    fit_curve(tmp_path, [EffectiveEpochs(), gap, ExtraEarlyStopping(calibration=False, verbose=False)], logger=logger,
              max_steps=200)
    assert gap.data_limited_at is not None
    assert "data-limited" in capsys.readouterr().out
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(logger.log_dir)
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    images = set(acc.Tags()["images"])
    assert "scaling/learning_curve" in images and "scaling/loss_vs_data" in images
    assert len(acc.Images("scaling/learning_curve")) == 1  # at most one a minute (FIGURE_INTERVAL_S = 60)
    from tensorboard.plugins.custom_scalar import layout_pb2

    proto = acc.Tensors("custom_scalars__config__")[0].tensor_proto
    layout = layout_pb2.Layout.FromString(proto.string_val[0])
    titles = {c.title for c in layout.category}
    assert titles == set(LAYOUT)
    margin = [ch for c in layout.category for ch in c.chart if ch.HasField("margin")]
    assert margin and margin[0].margin.series[0].value == "scaling/converged_loss"
    for tag in ("scaling/ld_loss", "scaling/ld_gap", "scaling/ld_ratio", "scaling/loss_vs_examples",
                "scaling/examples_seen", "scaling/converged_loss"):
        assert tag in tags
    ld = acc.Scalars("scaling/ld_loss")[-1].value
    assert ld == pytest.approx(law(64), rel=1e-5)  # distinct data seen = the whole 64-example dataset


def test_data_limit_gap_needs_matching_units_and_counts(tmp_path, tmp_path_factory):
    path = tmp_path / "ld.json"
    PowerLaw(5.4e13, 0.095, unit="tokens").to_json(path)
    for law in (path, "kaplan2020_ld"):
        with pytest.raises(ValueError, match="tokens_per_example"):
            make_trainer(tmp_path, [EffectiveEpochs(), DataLimitGap(law)]).fit(Regressor(), loader(regression_data()))
    with pytest.raises(ValueError, match="needs the EffectiveEpochs"):
        make_trainer(tmp_path, [DataLimitGap(path)]).fit(Regressor(), loader(regression_data()))
    with pytest.raises(ValueError):
        DataLimitGap("kaplan2020_lc")  # not a data law
    with pytest.raises(ValueError, match="tolerance"):
        DataLimitGap(path, tolerance=-1)


def test_data_limit_gap_with_a_law_of_n_and_d_floors_at_this_models_limit(tmp_path, capsys):
    """An OverfittingLaw ([K] eq 1.5) or ChinchillaLaw: the floor is L(N, D_seen) at this model's N."""
    from lightning_scaling import ChinchillaLaw, OverfittingLaw
    from models import TinyLM, TokenData

    law = OverfittingLaw(N_c=1e4, D_c=50.0, alpha_N=0.3, alpha_D=0.3)
    model = TinyLM()
    n = sum(p.numel() for p in model.parameters())
    gap = DataLimitGap(law)
    trainer = make_trainer(tmp_path, [EffectiveEpochs(tokens_per_example=16), gap], max_steps=8,
                           val_check_interval=4)
    trainer.fit(model, loader(TokenData(32)), loader(TokenData(16, seed=1)))
    seen = 32 * 16  # two epochs of 32 examples of 16 tokens: all of D seen
    assert gap.data_floor(trainer) == pytest.approx(law(n, seen))  # at the module's own parameter count
    assert f"L(N, D_seen) at N = {n:,}" in capsys.readouterr().out
    # an explicit N, a ChinchillaLaw, a JSON path, and the errors
    assert DataLimitGap(law, n_params=1000).law(seen) == pytest.approx(law(1000, seen))
    chin = DataLimitGap(ChinchillaLaw(E=1.0, A=400.0, B=400.0, alpha=0.34, beta=0.28), n_params=1000)
    assert chin.law(seen) == pytest.approx(1.0 + 400 / 1000 ** 0.34 + 400 / seen ** 0.28)
    path = tmp_path / "lnd.json"
    law.to_json(path)
    assert DataLimitGap(str(path), n_params=1000).law(seen) == pytest.approx(law(1000, seen))
    with pytest.raises(ValueError, match="n_params"):
        DataLimitGap(PowerLaw(2.0, 0.5, 0.9, unit="tokens"), n_params=1000)
    with pytest.raises(ValueError, match="n_params"):
        DataLimitGap(law, n_params=-5)


def test_data_limit_gap_floors_at_the_sweeps_joint_fit(tmp_path, capsys):
    """Three runs in a row on the same data write a store (ExtraEarlyStopping(sweep=...)); DataLimitGap(sweep=...)
    of the first two, with no usable earlier runs, is exactly the law's and says so once; a third of the same size
    gets no sweep floor (their converged loss is no floor for it) and says why; the next one's floor is the
    joint fit of the first two (one larger model size: the lowest converged loss of a size, near the curve's limit
    1); a
    record written meanwhile is refitted at the next validation; and a run on other data is not pooled."""
    from lightning_scaling import tags
    from lightning_scaling.sweep import Sweep, record_filename, write_record
    from test_sweep_callbacks import fit, logged

    law = PowerLaw(scale=2.0, exponent=0.5, irreducible=0.9, unit="examples")
    store = tmp_path / "store"

    def run(name, data="curve", extra=()):
        gap = DataLimitGap(law, sweep=Sweep(store, data=data))
        stop = ExtraEarlyStopping(calibration=False, verbose=False, sweep=Sweep(store, data=data))
        trainer = fit(tmp_path / name, stop, extra=[gap, *extra])
        return gap, trainer, capsys.readouterr().out

    ld = tags.tag("ld_loss")
    alone = [law(min(8 * s, 256)) for s in range(10, 201, 10)]  # 8 examples a step, D = 256
    for i, why in enumerate(("no earlier run on this data", "a joint fit needs at least 2 runs, the sweep has 1")):
        gap, trainer, out = run(f"run{i}")
        assert gap.floor is None and gap.floor_source == "law" and logged(trainer, ld) == pytest.approx(alone)
        assert out.count("no usable earlier runs") == 1 and why in out and "as without a sweep" in out

    gap, trainer, out = run("same")  # two earlier runs of this same size: their converged loss is no floor for it
    assert gap.floor is None and logged(trainer, ld) == pytest.approx(alone) and "is larger than this run's N" in out
    own = next(c for c in trainer.callbacks if isinstance(c, ExtraEarlyStopping)).run_id
    (store / record_filename(own)).unlink()  # the later runs see the two earlier ones only

    for r in Sweep(store, data="curve").records:  # as if a larger model had run first: its converged loss bounds
        write_record(store, dataclasses.replace(r, n_params=10.0 * r.n_params))  # this one's, a same-size one's not

    class Write(Callback):  # another run of the sweep writes its record during this one
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_step == 100:
                first = Sweep(store, data="curve").records[0]
                write_record(store, dataclasses.replace(first, run_id="another"))

    gap, trainer, out = run("run2", extra=[Write()])
    assert gap.floor_source == "best_size" and gap.floor.n_params == Sweep(store).records[0].n_params
    assert gap.floor.n_runs == 3 and "the floor is the joint fit of 2 runs" in out  # 2 at the start, 3 after
    floors = logged(trainer, ld)
    assert len(set(floors[:10])) == 1 and floors[-1] == gap.floor.value != floors[0]  # a constant, refitted once
    assert floors[0] == pytest.approx(1.0, abs=0.03) and floors[0] != pytest.approx(alone[0])
    low, high = gap.floor.interval
    assert 0 < low < gap.floor.value < high
    assert gap.data_floor(trainer) == gap.floor.value  # what ExtraEarlyStopping's floor is
    resumed = DataLimitGap(law, sweep=Sweep(store, data="curve"))
    resumed.load_state_dict(gap.state_dict())
    assert resumed.floor == gap.floor and resumed.floor_source == "best_size"

    gap, trainer, out = run("other", data="other")  # a run on other data: not pooled
    assert gap.floor is None and logged(trainer, ld) == pytest.approx(alone) and "no earlier run on this data" in out


def test_data_limit_gap_sweep_failures_are_one_warning_and_a_model_law_is_refused(tmp_path, monkeypatch):
    from lightning_scaling import OverfittingLaw, sweep
    from lightning_scaling.errors import ScalingWarning
    from lightning_scaling.sweep import Sweep, record_from_curve

    law = PowerLaw(scale=2.0, exponent=0.5, irreducible=0.9, unit="examples")
    store = Sweep(tmp_path / "store", data="curve")
    for i in range(2):
        store.add(record_from_curve(f"r{i}", [10, 20, 30, 40], [2.0, 1.6, 1.5, 1.45], n_params=1e3, data="curve"))

    def broken(*args, **kwargs):
        raise RuntimeError("disk gone")

    monkeypatch.setattr(sweep, "fit_sweep", broken)
    gap = DataLimitGap(law, sweep=store)
    with pytest.warns(ScalingWarning, match="could not be read or fitted .*disk gone.*the floor stays the law's") as w:
        fit_gap = make_trainer(tmp_path, [EffectiveEpochs(), gap], max_steps=20, val_check_interval=10,
                               check_val_every_n_epoch=None)
        fit_gap.fit(Regressor(), loader(regression_data()), loader(regression_data(16, seed=1)))
    assert sum("could not be read" in str(x.message) for x in w) == 1 and gap.floor is None
    assert gap.history  # the run went on, on the law's floor
    with pytest.raises(ValueError, match="not this model's own"):
        DataLimitGap(OverfittingLaw(N_c=1e4, D_c=50.0, alpha_N=0.3, alpha_D=0.3), sweep=store)
    with pytest.raises(ValueError, match="sweep must be"):
        DataLimitGap(law, sweep=3)
