"""DataLimitGap in real Trainer runs: the floor L(D_seen) (or L(N, D_seen)), its tags and figures, the
data-limited and below-the-law messages, and the checks on the law's units and counts."""

import pytest
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
    fit_curve(tmp_path, [EffectiveEpochs(), gap, ExtraEarlyStopping(calibration=False, verbose=False)], logger=logger, max_steps=200)
    assert gap.data_limited_at is not None
    assert "data-limited" in capsys.readouterr().out
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(logger.log_dir)
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    images = set(acc.Tags()["images"])
    assert "scaling/learning_curve" in images and "scaling/loss_vs_data" in images
    assert len(acc.Images("scaling/learning_curve")) == 1  # at most one a minute (figure_interval=60)
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
