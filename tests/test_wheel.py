"""The installed package: a wheel of the repository, installed without an editable link, runs the demo and a replay.

The wheel is built from a copy of the sources (``pyproject.toml``, ``README.md``, ``lightning_scaling/``) with the
environment's own setuptools (no build isolation, no index: it works offline), installed with ``pip install
--target`` into a folder of its own, and run from a working directory outside the repository with only that folder
and the environment's site-packages (the dependencies) on the path.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("setuptools", reason="building the wheel offline needs setuptools in the environment")

ROOT = Path(__file__).resolve().parent.parent
#: What the installed package reads at run time (pyproject's package-data).
PACKAGE_DATA = {"lightning_scaling/data/calibration.json", "lightning_scaling/data/demo_ld.json"}
#: A wheel of the package with its data, without the recorded corpora (about 150 kB).
MAX_WHEEL_BYTES = 500_000


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{args} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(wheel, site, env, work): the built wheel, the folder it is installed in, the environment, a working folder."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "lightning_scaling", src / "lightning_scaling",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    run(pip + ["wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(tmp / "dist"), str(src)],
        cwd=tmp)
    (wheel,) = (tmp / "dist").glob("lightning_scaling-*.whl")
    site = tmp / "site"
    run(pip + ["install", "--no-deps", "--no-index", "-q", "--target", str(site), str(wheel)], cwd=tmp)
    shutil.rmtree(src)  # nothing may read the sources from here on
    work = tmp / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PYTEST"))}
    env["PYTHONPATH"] = str(site)
    return wheel, site, env, work


def test_the_wheel_holds_the_package_data_and_no_corpus(installed):
    wheel = installed[0]
    names = set(zipfile.ZipFile(wheel).namelist())
    assert PACKAGE_DATA <= names
    assert not [n for n in names if n.startswith("lightning_scaling/data/curves")]
    assert "lightning_scaling/demo/job.py" in names
    # the command line is a package (lightning_scaling/cli/): every module of it, not only its __init__.py
    cli = {f"lightning_scaling/cli/{p.name}" for p in (ROOT / "lightning_scaling" / "cli").glob("*.py")}
    assert "lightning_scaling/cli/__init__.py" in cli and cli <= names
    assert wheel.stat().st_size < MAX_WHEEL_BYTES


def test_the_installed_package_loads_its_data_and_says_where_the_corpora_are(installed):
    _, site, env, work = installed
    script = """
import json, lightning_scaling
from lightning_scaling import calibration
from lightning_scaling.corpus import curves
from lightning_scaling.demo import job
out = {"file": lightning_scaling.__file__, "calibration": str(calibration.DEFAULT_PATH),
       "bins": len(calibration.default().edges), "ld": str(job.LD_JSON)}
for name in ("load_curves", "load_luo_curves"):
    try:
        getattr(curves, name)()
    except FileNotFoundError as err:
        out[name] = str(err)
print(json.dumps(out))
"""
    out = json.loads(run([sys.executable, "-c", script], cwd=work, env=env).stdout)
    for key in ("file", "calibration", "ld"):
        assert Path(out[key]).resolve().is_relative_to(site.resolve()), (key, out[key])
    assert Path(out["ld"]).is_file() and out["bins"] >= 2
    assert "data/curves" in out["load_curves"] and "curves_luo" in out["load_luo_curves"]
    for name in ("load_curves", "load_luo_curves"):
        assert "does not exist" in out[name] and "not in the installed package" in out[name]


def test_the_installed_package_runs_the_demo_and_replays_it(installed):
    _, site, env, work = installed
    demo = run([sys.executable, "-m", "lightning_scaling.demo", "--quick", "--out", "runs", "--no-progress"],
               cwd=work, env=env).stdout
    assert "lightning-scaling demo" in demo and "trained 60 steps" in demo
    assert "L(D) fitted on the project's own runs: demo_ld.json" in demo  # the shipped L(D)
    log_dir = work / "runs" / "demo" / "version_0"
    assert list(log_dir.glob("events.out.tfevents.*")) and (log_dir / "lightning_scaling.json").is_file()

    # the console script the wheel installs, replaying the demo's TensorBoard log with the options it recorded
    script = site / "bin" / "lightning-scaling"
    (replayed,) = json.loads(run([str(script), "replay", "runs", "--json"], cwd=work, env=env).stdout)
    assert replayed["options_from"] == "lightning_scaling.json"
    assert replayed["last_step"] == 60 and replayed["flops_at_end"] > 0
    reached = float(demo.split("loss reached ")[1].split()[0])
    assert 0 < replayed["best_loss"] <= reached + 1e-4
