"""The dashboard as a user sees it: a real `tensorboard` server on loopback serves the layout and every tag.

A short real training run (all four callbacks, a TensorBoardLogger) writes a log directory; a
``tensorboard`` process started on 127.0.0.1 with a port the OS picks reads it, and the test asks its
HTTP API (the routes of tensorboard's own plugins: ``/data/plugin/custom_scalars/layout``,
``/data/plugin/scalars/tags``, ``/data/plugin/images/tags``) for the custom-scalars layout and the tags.
The expected layout and tags come from ``lightning_scaling.dashboard.LAYOUT``, the one list in the code,
so the test breaks when the callbacks' tags and the dashboard drift apart.
"""

from __future__ import annotations

import json
import queue
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest
from pytorch_lightning.loggers import TensorBoardLogger

from lightning_scaling import DataLimitGap, EffectiveEpochs, ExtraEarlyStopping, FlopCounter, PowerLaw
from lightning_scaling import dashboard
from lightning_scaling.dashboard import LAYOUT
from models import CurveRegressor, loader, make_trainer, regression_data

pytestmark = pytest.mark.slow  # a training run (~5 s) and a tensorboard start (~5-10 s)

TOKENS_PER_EXAMPLE = 8
SERVER_START_S = 60.0  # bounded wait for the server to answer and to have loaded the run


#: Layout tags a run writes only in a mode the fixture's run is not in: a cool-down's forecast (cooldown_steps), the
#: pooled prediction (a sweep store with earlier runs; tests/test_sweep_callbacks.py), the next run's horizon (a
#: recognised fixed-horizon schedule whose target the forecast reaches; tests/test_horizon.py).
MODE_TAGS = {"scaling/forecast_cooldown_loss", "scaling/pooled_converged_loss", "scaling/pooled_converged_loss_low",
             "scaling/pooled_converged_loss_high", "scaling/recommended_horizon_steps"}


def layout_tags() -> set[str]:
    """Every tag the dashboard's layout shows: the documented ``scaling/*`` scalars."""
    return {tag for charts in LAYOUT.values() for _, tags in charts.values() for tag in tags}


class _StableDecay(CurveRegressor):
    """A constant learning rate, then a cosine decay over the last 12 steps (a step-interval LambdaLR): the rule fits
    in steps (and predicts its stop step) while the LR is constant, and the run writes the schedule forecast."""

    def configure_optimizers(self):
        import math

        import torch

        optimizer = torch.optim.SGD(self.parameters(), lr=0.05)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: 1.0 if s < 36 else 0.5 * (1 + math.cos(math.pi * (s - 36) / 12)))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory):
    """A real run that writes every tag but :data:`MODE_TAGS`: tokens counted (padding-aware), an L(D) in tokens, a
    known peak (for MFU), a learning curve (CurveRegressor: L(S) = 1 + (40/S)^0.7) that the stopping rule can fit, and
    a decaying schedule to forecast."""
    root = tmp_path_factory.mktemp("tb_server")
    logger = TensorBoardLogger(str(root), name="run")
    # tokens counted per batch (every feature a "token": 64 examples x 8), so the useful FLOPs are logged too
    callbacks = [EffectiveEpochs(count_tokens=lambda batch: batch[0].numel(), dataset_size=64 * 8),
                 FlopCounter(peak_flops=1e12),
                 DataLimitGap(PowerLaw(scale=50.0, exponent=0.3, irreducible=0.5, unit="tokens")),
                 ExtraEarlyStopping(calibration=False, monitor="val_loss", verbose=False)]
    trainer = make_trainer(root, callbacks, max_steps=48, logger=logger, val_check_interval=4,
                           check_val_every_n_epoch=None, log_every_n_steps=2)
    with pytest.MonkeyPatch.context() as patch:  # a figure at every new point
        patch.setattr(dashboard, "FIGURE_INTERVAL_S", 0.0)
        trainer.fit(_StableDecay(), loader(regression_data(64), shuffle=True), loader(regression_data(16, seed=1)))
    logger.experiment.flush()
    return root


def _get(port: int, route: str):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{route}", timeout=5) as response:
        return json.loads(response.read().decode())


@pytest.fixture(scope="module")
def server(log_dir):
    """A tensorboard process on 127.0.0.1 (port chosen by the OS, read from its startup line); always killed."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(log_dir), "--host", "127.0.0.1", "--port", "0",
         "--load_fast", "false", "--reload_interval", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue = queue.Queue()  # stderr read by a thread: the wait below stays bounded
    threading.Thread(target=lambda: [lines.put(line) for line in process.stderr], daemon=True).start()
    try:
        port, seen = None, []
        deadline = time.monotonic() + SERVER_START_S
        while port is None and time.monotonic() < deadline:
            try:  # tensorboard prints "TensorBoard 2.x at http://127.0.0.1:PORT/ (Press CTRL+C to quit)"
                line = lines.get(timeout=0.5)
            except queue.Empty:
                if process.poll() is not None:
                    pytest.fail(f"tensorboard exited with {process.returncode}: {''.join(seen)[-2000:]}")
                continue
            seen.append(line)
            match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
            if match:
                port = int(match.group(1))
        assert port is not None, f"tensorboard printed no URL within {SERVER_START_S} s: {''.join(seen)[-2000:]}"
        while time.monotonic() < deadline:  # answers, and has loaded the run's scalars
            try:
                if any(_get(port, "/data/plugin/scalars/tags").values()):
                    break
            except (urllib.error.URLError, ConnectionError, json.JSONDecodeError):
                pass
            time.sleep(0.5)
        else:
            pytest.fail(f"tensorboard on port {port} did not serve the run within {SERVER_START_S} s")
        yield port
    finally:
        process.kill()
        process.wait(timeout=10)


def test_custom_scalars_layout_is_served(server):
    layout = _get(server, "/data/plugin/custom_scalars/layout")
    categories = {c["title"]: c for c in layout["category"]}
    assert list(categories) == list(LAYOUT)
    assert {"Data", "Compute", "Data limit", "Stopping"} <= set(categories)
    for title, charts in LAYOUT.items():
        served = {chart["title"]: chart for chart in categories[title]["chart"]}
        assert list(served) == list(charts)
        for name, (kind, tags) in charts.items():
            chart = served[name]
            if kind == "Margin":  # the converged-loss interval: value, lower, upper in one series
                (series,) = chart["margin"]["series"]
                assert [series["value"], series["lower"], series["upper"]] == tags
            else:
                assert chart["multiline"]["tag"] == tags
    margins = [c for cat in layout["category"] for c in cat["chart"] if "margin" in c]
    assert [m["title"] for m in margins] == [title for charts in LAYOUT.values() for title, (kind, _) in charts.items()
                                             if kind == "Margin"]
    assert "predicted converged loss" in [m["title"] for m in margins]


def test_every_documented_tag_is_served(server):
    runs = _get(server, "/data/plugin/scalars/tags")
    assert len(runs) == 1
    (served,) = (set(tags) for tags in runs.values())
    assert MODE_TAGS <= layout_tags()
    missing = layout_tags() - MODE_TAGS - served
    assert not missing, f"tags in the dashboard layout that the run did not write: {sorted(missing)}"
    assert "val_loss" in served
    # the figures (matplotlib) under the images plugin
    images = _get(server, "/data/plugin/images/tags")
    (image_tags,) = (set(tags) for tags in images.values())
    assert {"scaling/learning_curve", "scaling/loss_vs_data"} <= image_tags
    # and the values are real numbers at the run's steps
    (run,) = runs
    points = _get(server, f"/data/plugin/scalars/scalars?run={run}&tag=scaling/tokens_seen")
    steps_values = [(p[1], p[2]) for p in points]
    assert steps_values and all(value == pytest.approx(8 * step * TOKENS_PER_EXAMPLE) for step, value in steps_values)


def test_every_served_scaling_scalar_has_a_chart(server):
    (served,) = (set(tags) for tags in _get(server, "/data/plugin/scalars/tags").values())
    assert {t for t in served if t.startswith("scaling/")} <= layout_tags()
