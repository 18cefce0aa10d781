"""Luo et al. 2025's GPU loss curves in the repository (lightning_scaling/data/curves_luo) and their loader."""

import filecmp
import math
from pathlib import Path

import numpy as np
import pytest

from lightning_scaling.corpus.curves import (CURVES_DIR, LUO_DIR, LUO_L0, load_curves, load_luo_curve,
                                           load_luo_curves)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "multipower_curves"
PEAK, END, WARMUP = 3e-4, 3e-5, 2160


@pytest.fixture(scope="module")
def curves():
    return load_luo_curves()


def schedule_lr(stem: str, n: int) -> np.ndarray:
    """The learning rate of optimizer steps 1..n as the folder's README describes each schedule (index i = step i+1).

    After the warm-up the schedule is read at the CSV's step (a row at step s holds the authors' ``lrs[s]``).
    """
    k = np.arange(n, dtype=float) + 1
    kind, *rest = stem.split("_")
    if kind == "constant":
        after = np.full(n, PEAK)
    elif kind == "cosine":
        total = int(rest[0])
        after = END + 0.5 * (PEAK - END) * (1 + np.cos(np.pi * (k - WARMUP) / (total - WARMUP)))
    elif kind in ("wsd", "wsdld"):
        decay, total = (int(v) for v in rest)
        x = np.clip((k - decay) / (total - decay), 0.0, 1.0)
        after = PEAK ** (1 - x) * END ** x if kind == "wsd" else PEAK * (1 - x) + END * x
    elif kind == "wsdcon":
        after = np.where(k < 8000, PEAK, int(rest[0]) * 1e-5)
    else:
        raise AssertionError(stem)
    return np.where(k <= WARMUP, PEAK * (k - 1) / (WARMUP - 1), after)


def test_eighteen_curves_load_with_their_config(curves):
    assert len(curves) == 18 and len({c.name for c in curves}) == 18
    for model in ("25M", "100M"):
        runs = [c for c in curves if c.config["model"] == model]
        assert len(runs) == 9
        assert all(c.config["reference_loss"] == LUO_L0[model] for c in runs)
    for c in curves:
        cfg = c.config
        assert cfg["source"] == "luo2025" and cfg["converged"] is False and cfg["warmup_steps"] == WARMUP
        assert cfg["steps"] == int(c.steps[-1]) == c.lr.size
        assert cfg["n_params"] == {"25M": 25_000_000, "100M": 100_000_000}[cfg["model"]] == c.n_params
        assert c.name == f"{cfg['model']}_{cfg['schedule']}" and cfg["lr_schedule"] == cfg["schedule"].split("_")[0]
    assert LUO_L0 == {"25M": 3.040, "100M": 2.651}


def test_steps_ascending_losses_finite(curves):
    for c in curves:
        assert c.steps[0] >= WARMUP and np.all(np.diff(c.steps) > 0)
        assert c.val_loss.shape == c.steps.shape and np.all(np.isfinite(c.val_loss))
        assert np.all((c.val_loss > 2.0) & (c.val_loss < 5.0))
        np.testing.assert_array_equal(c.train_loss[c.steps - 1], c.val_loss)
        assert np.isnan(c.train_loss).sum() == c.train_loss.size - c.steps.size


def test_lr_is_the_warmup_then_the_csv_column(curves):
    for c in curves:
        table = np.loadtxt(c.path, delimiter=",", skiprows=1, ndmin=2)
        np.testing.assert_array_equal(c.lr[c.steps - 1], table[:, 1])
        np.testing.assert_allclose(c.lr[:WARMUP], np.linspace(0, PEAK, WARMUP), rtol=0, atol=0)
        assert np.all(c.lr[WARMUP:] > 0) and np.all(c.lr <= PEAK * (1 + 1e-12))


def test_constant_lr_sum_is_exact(curves):
    constant = [c for c in curves if c.config["lr_schedule"] == "constant"]
    assert len(constant) == 4
    for c in constant:
        np.testing.assert_allclose(c.lr_sum, PEAK * (c.steps - 1080), rtol=1e-9)


@pytest.mark.parametrize("kind, rtol", [("cosine", 3e-5), ("wsd", 1e-3), ("wsdld", 1e-3), ("wsdcon", 1e-2)])
def test_lr_sum_follows_the_schedule(curves, kind, rtol):
    """Interpolating between rows 128 steps apart follows a smooth schedule closely; where the schedule bends or
    steps inside a gap between rows (the decay's start at 20000 in a 224-step gap of the 25M WSD runs, the two-stage
    runs' step at 8000) the interpolation spreads it over the gap, within the stated tolerance of the summed LR."""
    runs = [c for c in curves if c.config["lr_schedule"] == kind]
    assert runs
    for c in runs:
        expected = np.cumsum(schedule_lr(c.config["schedule"], c.lr.size))[c.steps - 1]
        np.testing.assert_allclose(c.lr_sum, expected, rtol=rtol)


def test_load_curves_does_not_read_the_folder():
    assert LUO_DIR.parent == CURVES_DIR.parent and LUO_DIR != CURVES_DIR
    assert not any(c.config.get("source") == "luo2025" for c in load_curves())
    assert not list(LUO_DIR.glob("*/config.json"))


def test_load_luo_curves_filters_and_rejects_other_folders(tmp_path):
    assert [c.config["schedule"] for c in load_luo_curves(model="25M", lr_schedule="wsdcon")] == [
        "wsdcon_18", "wsdcon_3", "wsdcon_9"]
    other = tmp_path / "csv_400" / "constant_24000.csv"
    other.parent.mkdir()
    other.write_text("step,lr,loss\n2176,0.0003,3.0\n")
    with pytest.raises(ValueError, match="csv_25"):
        load_luo_curve(other)


def test_readme_and_licence_beside_the_csvs():
    readme = (LUO_DIR / "README.md").read_text()
    assert "8da9f1902602f3391b971a811e3cc51604541769" in readme and "MIT" in readme
    assert "3.040" in readme and "2.651" in readme
    assert (LUO_DIR / "LICENSE").read_text().startswith("MIT License")
    assert math.isclose(sum(1 for _ in LUO_DIR.glob("csv_*/*.csv")), 18)


@pytest.mark.skipif(not SHARED.is_dir(), reason="the shared copy of the data is not on this machine")
def test_repository_copy_is_byte_identical_to_the_shared_one():
    files = sorted(p.relative_to(SHARED) for p in SHARED.rglob("*") if p.is_file() and p.name != "README.md")
    assert len(files) == 19  # 18 CSVs and the licence
    for rel in files:
        assert filecmp.cmp(SHARED / rel, LUO_DIR / rel, shallow=False), rel
    mine = sorted(p.relative_to(LUO_DIR) for p in LUO_DIR.rglob("*") if p.is_file() and p.name != "README.md")
    assert mine == files
