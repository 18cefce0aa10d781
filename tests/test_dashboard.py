"""The TensorBoard dashboard: one custom-scalars layout per log dir covering every tag, rate-limited figures."""

import numpy as np
from pytorch_lightning.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2

from lightning_scaling import EffectiveEpochs, FlopCounter, PowerLaw
from lightning_scaling.dashboard import LAYOUT, add_figure, data_limit_figure, ensure_layout, learning_curve_figure
from models import TinyLM, TokenData, loader, make_trainer


def events(log_dir) -> EventAccumulator:
    acc = EventAccumulator(str(log_dir), size_guidance={"tensors": 0, "images": 0, "scalars": 0})
    acc.Reload()
    return acc


def test_layout_is_written_once_and_covers_every_logged_tag(tmp_path):
    logger = TensorBoardLogger(tmp_path, name="tb")
    trainer = make_trainer(tmp_path, [EffectiveEpochs(tokens_per_example=16), FlopCounter(peak_flops=1e12)],
                           max_steps=3, limit_val_batches=0, logger=logger)
    trainer.fit(TinyLM(), loader(TokenData(32)))
    ensure_layout(trainer)  # both callbacks asked in setup, and this asks again: written once
    acc = events(logger.log_dir)
    configs = acc.Tensors("custom_scalars__config__")
    assert len(configs) == 1
    layout = layout_pb2.Layout.FromString(configs[0].tensor_proto.string_val[0])
    assert [c.title for c in layout.category] == ["Data", "Compute", "Data limit", "Stopping", "Schedule"]
    in_layout = {tag for c in layout.category for chart in c.chart
                 for tag in list(chart.multiline.tag)
                 + [t for s in chart.margin.series for t in (s.value, s.lower, s.upper)]}
    logged = {t for t in acc.Tags()["scalars"] if t.startswith("scaling/")}
    assert {"scaling/tokens_seen", "scaling/effective_epochs", "scaling/flops", "scaling/mfu"} <= logged
    assert logged <= in_layout
    assert in_layout == {tag for group in LAYOUT.values() for _, tags in group.values() for tag in tags}


def test_figures_are_rate_limited(tmp_path):
    logger = TensorBoardLogger(tmp_path, name="tb")
    trainer = make_trainer(tmp_path, [], max_steps=1, limit_val_batches=0, logger=logger)
    trainer.fit(TinyLM(), loader(TokenData(16)))
    steps = np.arange(10, 200, 10.0)
    law = PowerLaw(40.0, 0.5, 1.0, unit="examples")

    class Owner:
        pass

    owner = Owner()

    def curve():
        return learning_curve_figure(steps, 1 + (40 / steps) ** 0.7, lambda t: 1 + (40 / t) ** 0.7, 1.0, 1.1)

    assert add_figure(trainer, owner, "scaling/learning_curve", curve, 10, min_interval=60)
    assert not add_figure(trainer, owner, "scaling/learning_curve", curve, 20, min_interval=60)
    assert add_figure(trainer, owner, "scaling/learning_curve", curve, 30, min_interval=60, force=True)
    assert add_figure(trainer, owner, "scaling/data_limit", lambda: data_limit_figure(steps, law(steps), law), 30,
                      min_interval=0)
    logger.experiment.flush()
    acc = events(logger.log_dir)
    assert [e.step for e in acc.Images("scaling/learning_curve")] == [10, 30]
    assert len(acc.Images("scaling/data_limit")) == 1
