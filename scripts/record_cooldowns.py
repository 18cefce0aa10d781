"""Record real WSD cool-downs begun at several points: `python scripts/record_cooldowns.py` (about 10 min on 1 core).

For the WSD cool-down decision (:mod:`lightning_scaling.cooldown`): two model sizes (``s`` and ``m`` of
``scripts/record_curves.py``'s MODELS) on the whole pydoc text (model-limited over the horizon: the validation loss
of the constant-LR runs of the corpus still falls at 3000 steps), each

* one **stable** run: warm-up then the constant learning rate for the whole horizon (``HORIZON`` steps), and
* one run per cool-down start ``c`` in ``STARTS`` (every 12.5% of the horizon from 12.5% to 75%): the same run to
  step ``c``, then the learning rate falls linearly to 0 over ``COOLDOWN`` steps (20% of the horizon) and the run ends
  at ``c + COOLDOWN``.

Every run is trained by ``record_curves.record`` (imported, not copied) with the same seed and data order, so a
cool-down run is the stable run up to its start (the recorded validation losses agree there). The cool-down is the
demo's ``wsd`` schedule with ``total_steps = c + COOLDOWN``, ``decay_fraction = COOLDOWN / (c + COOLDOWN)`` and
``min_ratio = 0`` (:func:`lightning_scaling.demo.model.schedule`: the multiplier is 1 until step ``c``, then
``1 - (step - c) / COOLDOWN``): no new schedule is needed.

Writes ``lightning_scaling/data/curves_cooldown/<name>/`` (``metrics.csv`` and ``config.json`` as the other corpora,
with ``cooldown_start``, ``cooldown_steps``, ``horizon``) and the folder's README.md.

    python scripts/record_cooldowns.py [--jobs 1] [--only NAME ...] [--force] [--list]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import record_curves  # noqa: E402  (the corpus' training function, reused)

OUT = record_curves.OUT.parent / "curves_cooldown"
HORIZON = 2400
COOLDOWN = 480  # 20% of the horizon
STARTS = (300, 600, 900, 1200, 1500, 1800)  # 12.5% to 75% of the horizon (25%, 50%, 75% among them)
SIZES = ("s", "m")


def stable(model: str) -> dict:
    """The run without cool-down: constant learning rate after the warm-up to the horizon."""
    return {**record_curves._run(f"{model}_stable", model, record_curves.PYDOC_FULL, "constant", HORIZON, patience=0),
            "horizon": HORIZON, "cooldown_start": None, "cooldown_steps": 0}


def cooled(model: str, start: int) -> dict:
    """The stable run to ``start``, then a linear decay of the learning rate to 0 over COOLDOWN steps."""
    total = start + COOLDOWN
    return {**record_curves._run(f"{model}_cool{start}", model, record_curves.PYDOC_FULL, "wsd", total, patience=0),
            "decay_fraction": COOLDOWN / total, "min_ratio": 0.0,
            "horizon": HORIZON, "cooldown_start": start, "cooldown_steps": COOLDOWN}


RUNS = [run for m in SIZES for run in [stable(m)] + [cooled(m, c) for c in sorted(STARTS, reverse=True)]]


def record(spec: dict, out: Path = OUT) -> dict:
    """record_curves.record, then the command that regenerates the run written into its config.json."""
    cfg = record_curves.record(spec, out)
    cfg["command"] = f"python scripts/record_cooldowns.py --only {cfg['name']}"
    (out / cfg["name"] / "config.json").write_text(json.dumps(cfg, indent=1) + "\n")
    return cfg


README_HEAD = f"""# Recorded WSD cool-downs

Real training runs of the demo's character-level GPT on CPU (the same model, text and settings as `curves/`), for
the WSD cool-down decision (`lightning_scaling/cooldown.py`, docs/science.md "The WSD cool-down decision"),
recorded by `python scripts/record_cooldowns.py` (the one command that regenerates them; `--only NAME` for one run).

Two model sizes (`s`, `m`) on the whole pydoc text. Per size: `<size>_stable`, warm-up then a constant learning
rate (3e-3) for the whole horizon ({HORIZON} steps), and `<size>_cool<c>`, the same run (same seed and data order:
its validation losses equal the stable run's up to `c`) whose learning rate falls linearly from the constant one to
0 over the {COOLDOWN} steps after step `c` (20% of the horizon), ending at `c + {COOLDOWN}`: starts at
{", ".join(str(c) for c in STARTS)} (every 12.5% of the horizon to 75%). `config.json` holds `cooldown_start` (null for
the stable run), `cooldown_steps` and `horizon`; `metrics.csv` is as in `curves/` (`lr` at every optimizer step,
`val_loss` every 25 steps).

| run | params | schedule | cool-down start | steps | final val_loss | lowest val_loss | seconds |
| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |
"""


def write_readme(out: Path = OUT) -> None:
    from lightning_scaling.corpus.curves import load_curves

    lines = [README_HEAD]
    for c in load_curves(out):
        cfg = c.config
        start = cfg.get("cooldown_start")
        lines.append(f"| {c.name} | {c.n_params:,} | {'constant' if start is None else 'stable + linear to 0'} | "
                     f"{'-' if start is None else start} | {cfg['steps']} | {float(c.val_loss[-1]):.4f} | "
                     f"{float(min(c.val_loss)):.4f} | {cfg['seconds']:.0f} |\n")
    (out / "README.md").write_text("".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--only", nargs="*", default=[], help="names of runs to (re)record")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel, one thread each")
    parser.add_argument("--force", action="store_true", help="re-record runs that already have a config.json")
    parser.add_argument("--list", action="store_true", help="print the grid and exit")
    args = parser.parse_args()
    unknown = set(args.only) - {r["name"] for r in RUNS}
    if unknown:
        parser.error(f"unknown run names {sorted(unknown)}; known: {[r['name'] for r in RUNS]}")
    chosen = [r for r in RUNS if r["name"] in args.only or not args.only]
    if args.list:
        print("\n".join(json.dumps(r) for r in chosen))
        return
    todo = [r for r in chosen if args.force or not (args.out / r["name"] / "config.json").is_file()]
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    print(f"{len(todo)} of {len(chosen)} runs to record into {args.out}, {args.jobs} at a time", flush=True)
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        done = as_completed([pool.submit(record, r, args.out) for r in todo])
        for i, cfg in enumerate((fut.result() for fut in done), 1):
            print(f"[{i}/{len(todo)}] {cfg['name']} ({cfg['n_params']:,} params): {cfg['steps']} steps, "
                  f"{cfg['seconds']:.0f} s; {time.perf_counter() - t0:.0f} s so far", flush=True)
    write_readme(args.out)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
