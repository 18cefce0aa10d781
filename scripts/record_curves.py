"""Record the corpus of real learning curves: `python scripts/record_curves.py` (about 65 min on 2 cores).

Trains small character-level GPTs (lightning_scaling.demo.model.CharGPT) on CPU on text that ships with
Python (``pydoc_data.topics`` and the standard library's source) with a real Trainer and Lightning's
``CSVLogger``, and writes one folder per run into ``lightning_scaling/data/curves/<name>/``:

* ``metrics.csv``: as the CSVLogger writes it: ``train_loss`` and ``lr`` every optimizer step,
  ``val_loss`` and ``optimizer_steps`` at each validation (every ``val_every`` steps);
* ``config.json``: the run's configuration (model, data, schedule, parameter counts, versions, wall time,
  why it ended).

The grid: four model sizes (31k-503k parameters) x dataset sizes from data-limited (the validation loss turns
up) to the whole text, constant learning rate after warm-up; cosine and warmup-stable-decay for a subset. Each
run ends at ``max_steps`` or when the validation loss has not improved for ``patience`` validations
(Lightning's EarlyStopping), i.e. at convergence or once it has turned up. Runs already recorded are
skipped unless ``--force``.

    python scripts/record_curves.py [--jobs 2] [--only NAME ...] [--force] [--list] [--holdout | --spread | --seeds]

``--holdout`` records the out-of-sample grid (``HOLDOUT_RUNS``: the standard library's source, three model sizes
x four dataset sizes, about 15 min on 2 cores) into ``lightning_scaling/data/curves_holdout/``; ``--spread`` the
same models x five dataset sizes with training and validation text drawn from the same 1M characters
(``SPREAD_RUNS``) into ``lightning_scaling/data/curves_spread/``; ``--seeds`` four of those with two more seeds
(``SEED_RUNS``) into ``lightning_scaling/data/curves_seeds/``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "lightning_scaling" / "data" / "curves"

MODELS = {  # name: (d_model, n_layer, n_head)
    "s": (32, 1, 4),
    "m": (48, 2, 4),
    "l": (64, 3, 4),
    "xl": (96, 4, 4),  # big enough to stay data-limited on the whole text: L(D) needs the best model per D
}
PYDOC_FULL = None  # all of the pydoc training text (about 420k bytes)


def _run(name: str, model: str, train_tokens: int | None, schedule: str = "constant", max_steps: int = 2500,
         source: str = "pydoc", patience: int = 10) -> dict:
    return {"name": name, "model": model, "train_tokens": train_tokens, "schedule": schedule,
            "max_steps": max_steps, "source": source, "patience": patience}


RUNS = [
    # data-limited to many unique tokens, largest model (these give the demo's L(D))
    _run("l_d8k_const", "l", 8_192),
    _run("l_d16k_const", "l", 16_384),
    _run("l_d32k_const", "l", 32_768),
    _run("l_d64k_const", "l", 65_536),
    _run("l_d128k_const", "l", 131_072, max_steps=4000),
    _run("l_d256k_const", "l", 262_144, max_steps=5000),
    _run("l_dfull_const", "l", PYDOC_FULL, max_steps=6000),
    # smaller models over the same dataset sizes
    _run("m_d16k_const", "m", 16_384),
    _run("m_d64k_const", "m", 65_536),
    _run("m_dfull_const", "m", PYDOC_FULL, max_steps=6000),
    _run("s_d16k_const", "s", 16_384),
    _run("s_d64k_const", "s", 65_536),
    _run("s_dfull_const", "s", PYDOC_FULL, max_steps=6000),
    # other schedules (run to their horizon: the decay is part of the curve)
    _run("l_dfull_cosine", "l", PYDOC_FULL, "cosine", 2000, patience=0),
    _run("l_dfull_wsd", "l", PYDOC_FULL, "wsd", 2000, patience=0),
    _run("m_dfull_cosine", "m", PYDOC_FULL, "cosine", 2000, patience=0),
    _run("m_dfull_wsd", "m", PYDOC_FULL, "wsd", 2000, patience=0),
    _run("m_d64k_cosine", "m", 65_536, "cosine", 1500, patience=0),
    # a larger model where the l model stops being data-limited (its converged loss is then L(N), not L(D))
    _run("xl_dfull_const", "xl", PYDOC_FULL, max_steps=6000),
    _run("xl_d256k_const", "xl", 262_144, max_steps=5000),
    _run("xl_d128k_const", "xl", 131_072, max_steps=4000),
    _run("xl_d64k_const", "xl", 65_536),
    _run("xl_d32k_const", "xl", 32_768),
    # the rest of the grid for L(N, D) ([K] eq 1.5): every size at 32k-256k tokens
    _run("m_d32k_const", "m", 32_768),
    _run("m_d128k_const", "m", 131_072, max_steps=4000),
    _run("m_d256k_const", "m", 262_144, max_steps=5000),
    _run("s_d32k_const", "s", 32_768),
    _run("s_d128k_const", "s", 131_072, max_steps=4000),
    _run("s_d256k_const", "s", 262_144, max_steps=5000),
    # many unique tokens: the standard library's source (1M bytes, never repeated within the run)
    _run("l_stdlib1m_const", "l", 1_048_576, "constant", 2500, source="stdlib"),
]

#: Out-of-sample runs (``--holdout``, into ``lightning_scaling/data/curves_holdout/``): recorded after the rule's
#: options were chosen on RUNS, on the other text (the standard library's source), to check those choices on runs
#: they were not chosen on. Three model sizes x four dataset sizes, constant LR (the effective-data family's case).
HOLDOUT_OUT = OUT.parent / "curves_holdout"
HOLDOUT_RUNS = [_run(f"{m}_stdlib{k}k_const", m, k * 1024, max_steps=5000, source="stdlib")
                for m in ("m", "l", "xl") for k in (32, 64, 128, 256)]

#: Out-of-sample runs with the ``"spread"`` layout (``--spread``, into ``lightning_scaling/data/curves_spread/``):
#: HOLDOUT_RUNS's validation text lies in the first ~160k characters, which the 128k+ training prefixes cover, so
#: the L(D) fitted there is no power law and the floor it gives the rule is wrong. Here every training set and the
#: validation set are drawn from the same 1M characters of the standard library's source in 1k-character chunks
#: (:func:`lightning_scaling.demo.data.split`), five dataset sizes so that a held-out L(D) still has four points.
SPREAD_OUT = OUT.parent / "curves_spread"
SPREAD = {"layout": "spread", "chunk": 1024, "pool_chars": 1_000_000}
SPREAD_RUNS = [{**_run(f"{m}_spread{k}k_const", m, k * 1024, max_steps=6000, source="stdlib"), **SPREAD}
               for m in ("xl", "l", "m") for k in (512, 256, 128, 64, 32)]  # the longest first: both workers stay busy
#: The same data and configuration as four SPREAD_RUNS with two other seeds (``--seeds``, into
#: ``lightning_scaling/data/curves_seeds/``): the initialisation and the batch order change, the data do not. How far
#: apart the converged losses of one configuration land bounds how well any law fitted on other runs can predict
#: one run's converged loss.
SEEDS_OUT = OUT.parent / "curves_seeds"
SEED_RUNS = [{**_run(f"{m}_spread{k}k_const_seed{seed}", m, k * 1024, max_steps=6000, source="stdlib"), **SPREAD,
              "seed": seed}
             for m, k in (("xl", 256), ("l", 512), ("l", 128), ("m", 64)) for seed in (1, 2)]
#: The grids besides RUNS: command-line flag -> (runs, folder).
GRIDS = {"holdout": (HOLDOUT_RUNS, HOLDOUT_OUT), "spread": (SPREAD_RUNS, SPREAD_OUT), "seeds": (SEED_RUNS, SEEDS_OUT)}

COMMON = {"ctx": 64, "batch_size": 32, "lr": 3e-3, "weight_decay": 0.01, "warmup": 50, "val_every": 25,
          "val_tokens": 16_384, "decay_fraction": 0.2, "min_ratio": 0.1, "seed": 0, "min_delta": 0.002}


def record(spec: dict, out: Path = OUT, threads: int = 1, progress: bool = False) -> dict:
    """Train one run of the grid and write its ``metrics.csv`` and ``config.json``; return the config."""
    import pytorch_lightning as pl
    import torch
    from pytorch_lightning.callbacks import EarlyStopping
    from pytorch_lightning.loggers import CSVLogger
    from torch.utils.data import DataLoader

    from lightning_scaling.demo.data import char_data
    from lightning_scaling.demo.model import CharGPT

    warnings.filterwarnings("ignore")
    torch.set_num_threads(threads)
    cfg = {**COMMON, **spec}
    pl.seed_everything(cfg["seed"], verbose=False)
    data = char_data(cfg["source"], cfg["ctx"], train_tokens=cfg["train_tokens"], val_tokens=cfg["val_tokens"],
                     chunk=cfg.get("chunk", 4096), layout=cfg.get("layout", "prefix"), pool_chars=cfg.get("pool_chars"))
    d_model, n_layer, n_head = MODELS[cfg["model"]]
    model = CharGPT(d_model=d_model, n_layer=n_layer, n_head=n_head, ctx=cfg["ctx"], lr=cfg["lr"],
                    weight_decay=cfg["weight_decay"], warmup=cfg["warmup"], schedule=cfg["schedule"],
                    total_steps=cfg["max_steps"], decay_fraction=cfg["decay_fraction"], min_ratio=cfg["min_ratio"])
    callbacks = []
    if cfg["patience"]:
        callbacks.append(EarlyStopping("val_loss", patience=cfg["patience"], min_delta=cfg["min_delta"]))
    if (out / cfg["name"]).exists():
        shutil.rmtree(out / cfg["name"])  # a fresh metrics.csv, never appended to an old one
    logger = CSVLogger(str(out), name=cfg["name"], version="")
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=cfg["max_steps"], callbacks=callbacks,
                         logger=logger, val_check_interval=cfg["val_every"], check_val_every_n_epoch=None,
                         num_sanity_val_steps=0, log_every_n_steps=1, enable_checkpointing=False,
                         enable_progress_bar=progress, enable_model_summary=False)
    start = time.perf_counter()
    trainer.fit(model, DataLoader(data.train, batch_size=cfg["batch_size"], shuffle=True, drop_last=True),
                DataLoader(data.val, batch_size=64))
    cfg.update({
        "train_tokens": data.train_tokens,
        "train_examples": len(data.train), "steps_per_epoch": len(data.train) // cfg["batch_size"],
        "tokens_per_step": cfg["batch_size"] * cfg["ctx"],
        "n_params": model.n_params(), "n_params_non_embedding": model.n_params(non_embedding=True),
        "d_model": d_model, "n_layer": n_layer, "n_head": n_head, "tied": False,
        "steps": int(trainer.global_step),
        "ended_by": "patience" if trainer.global_step < cfg["max_steps"] else "max_steps",
        "seconds": round(time.perf_counter() - start, 1), "threads": threads,
        "python": platform.python_version(), "torch": torch.__version__, "pytorch_lightning": pl.__version__,
        "command": "python scripts/record_curves.py "
                   + "".join(f"--{flag} " for flag, (_, folder) in GRIDS.items() if out.name == folder.name)
                   + "--only " + cfg["name"],
    })
    (out / cfg["name"] / "config.json").write_text(json.dumps(cfg, indent=1) + "\n")
    hparams = out / cfg["name"] / "hparams.yaml"
    if hparams.exists():
        hparams.unlink()  # the same numbers are in config.json
    return cfg


README_HEAD = """# Recorded learning curves

Real training runs of the demo's character-level GPT (`lightning_scaling/demo/model.py`) on CPU, on text
that ships with Python (`pydoc_data.topics`; `stdlib`: the standard library's `.py` source), recorded by
`python scripts/record_curves.py` (the one command that regenerates them; `--only NAME` for one run). The
folder `curves_holdout/` holds the out-of-sample runs (`--holdout`: the standard library's source, recorded after
the stopping rule's options were chosen on `curves/`, to check them on runs they were not chosen on), and
`curves_spread/` a second such set (`--spread`: the same text, every training set and the validation set drawn
from the same 1M characters in 1k-character chunks, `config.json`'s `layout`, `chunk` and `pool_chars`);
`curves_seeds/` holds four of those again with seeds 1 and 2 (`--seeds`: the same data, another initialisation and
batch order).

Each folder holds `metrics.csv` as Lightning's `CSVLogger` writes it (`train_loss` and `lr` at every
optimizer step, row `step` = the 0-based index of that step; `val_loss` with `optimizer_steps` = the
optimizer steps completed, every `val_every` steps) and `config.json` (model, data, schedule, `n_params`,
`train_tokens` = D, `tokens_per_step`, versions, wall time, `ended_by`: `patience` when the validation loss
stopped improving or turned up, `max_steps` when cut before that).

Load them with `lightning_scaling.corpus.curves.load_curve(path)` / `load_curves()`; the converged loss of a
run is `converged_loss(curve)`: the lowest 3-point centred moving average of its validation loss.
The numbers depend a little on the Python version (the text) and the torch version.

| run | params | source | D (tokens) | schedule | steps | ended by | converged val_loss | seconds |
| --- | ---: | --- | ---: | --- | ---: | --- | ---: | ---: |
"""


def write_readme(out: Path = OUT) -> None:
    """The README of the curves folder, with one line per recorded run."""
    from lightning_scaling.corpus.curves import converged_loss, load_curves

    lines = [README_HEAD]
    for c in load_curves(out):
        cfg = c.config
        lines.append(f"| {c.name} | {c.n_params:,} | {cfg['source']} | {c.train_tokens:,} | {cfg['schedule']} | "
                     f"{cfg['steps']} | {cfg['ended_by']} | {converged_loss(c):.4f} | {cfg['seconds']:.0f} |\n")
    (out / "README.md").write_text("".join(lines))


def grid_parser(doc: str, out: Path) -> argparse.ArgumentParser:
    """The command line every recording script shares: --out, --only, --jobs, --force, --list."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=out)
    parser.add_argument("--only", nargs="*", help="names of runs to (re)record")
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel, one thread each")
    parser.add_argument("--force", action="store_true", help="re-record runs that already have a config.json")
    parser.add_argument("--list", action="store_true", help="print the grid and exit")
    return parser


def chosen_runs(parser: argparse.ArgumentParser, args: argparse.Namespace, grid: list[dict]) -> list[dict] | None:
    """The runs of ``grid`` that ``--only`` names (all without it; an unknown name is a parser error), or None
    after printing them for ``--list``."""
    runs = [r for r in grid if not args.only or r["name"] in args.only]
    if args.only and len(runs) != len(args.only):
        parser.error(f"unknown run names; known: {[r['name'] for r in grid]}")
    if args.list:
        for r in runs:
            print(json.dumps(r))
        return None
    return runs


def record_runs(runs: list[dict], args: argparse.Namespace, record_fn, describe) -> None:
    """Record the runs of ``runs`` not yet in ``args.out`` (all with ``--force``), ``args.jobs`` at a time, printing
    ``describe(config)`` for each as it ends."""
    todo = [r for r in runs if args.force or not (args.out / r["name"] / "config.json").exists()]
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"recording {len(todo)} of {len(runs)} runs into {args.out} ({args.jobs} at a time)", flush=True)
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {pool.submit(record_fn, r, args.out): r["name"] for r in todo}
        for i, fut in enumerate(as_completed(futures), 1):
            cfg = fut.result()
            print(f"[{i}/{len(todo)}] {cfg['name']}: {describe(cfg)} in {cfg['seconds']:.0f} s "
                  f"[{time.perf_counter() - start:.0f} s]", flush=True)


def main() -> None:
    parser = grid_parser(__doc__, OUT)
    parser.add_argument("--readme", action="store_true", help="only rewrite the folder's README.md")
    parser.add_argument("--holdout", action="store_true",
                        help=f"the out-of-sample grid (HOLDOUT_RUNS) into {HOLDOUT_OUT.relative_to(OUT.parents[2])}")
    parser.add_argument("--spread", action="store_true",
                        help=f"the out-of-sample grid with the spread layout (SPREAD_RUNS) into "
                             f"{SPREAD_OUT.relative_to(OUT.parents[2])}")
    parser.add_argument("--seeds", action="store_true",
                        help=f"four SPREAD_RUNS configurations with seeds 1 and 2 (SEED_RUNS) into "
                             f"{SEEDS_OUT.relative_to(OUT.parents[2])}")
    args = parser.parse_args()
    flags = [flag for flag in GRIDS if getattr(args, flag)]
    if len(flags) > 1:
        parser.error("give at most one of " + ", ".join(f"--{flag}" for flag in GRIDS))
    grid = GRIDS[flags[0]][0] if flags else RUNS
    if flags and args.out == OUT:
        args.out = GRIDS[flags[0]][1]
    runs = chosen_runs(parser, args, grid)
    if runs is None:
        return
    if args.readme:
        write_readme(args.out)
        return
    record_runs(runs, args, record, lambda cfg: f"{cfg['n_params']:,} params, D={cfg['train_tokens']:,}, "
                                             f"{cfg['steps']} steps ({cfg['ended_by']})")
    write_readme(args.out)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
