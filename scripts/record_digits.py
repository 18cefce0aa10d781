"""Record a held-out source of learning curves from other training code: `python scripts/record_digits.py`.

Every recorded corpus so far is a character-level GPT trained by the demo's own module. This grid is none of that:
small MLPs and a small CNN classifying handwritten digits (the UCI optical digits, 1,797 8x8 images, as
scikit-learn bundles them: ``sklearn.datasets.load_digits``; ``pip install -e ".[record]"`` to record, nothing
else needs it), written here with ``lightning.pytorch`` (the other Lightning package), torch's own schedulers
(``LinearLR``, ``CosineAnnealingLR``, ``MultiStepLR`` chained by ``SequentialLR``: warm-ups of 0, 100 and 300 steps,
a step decay the rule was never shown), Adam or SGD with momentum, no weight decay, and with or without 20% label
noise (a loss floor well above zero). Its curves were never used to choose or calibrate anything: the benchmarks
score the shipped defaults on them (``curves_digits``, BENCHMARKS.md "A source from other training code").

Each run folder holds ``metrics.csv`` (``train_loss`` and ``lr`` every optimizer step, ``val_loss`` and
``optimizer_steps`` every ``val_every`` steps, as ``scripts/record_curves.py`` writes them) and ``config.json``;
``lightning_scaling.corpus.curves.load_curves(DIGITS_DIR)`` loads them. The constant-LR runs end by Lightning's
EarlyStopping (patience 15 validations: at convergence or once the validation loss has turned up), the decaying
schedules at ``max_steps``. About 5 minutes on 2 cores.

    python scripts/record_digits.py [--jobs 2] [--only NAME ...] [--force] [--list]
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
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "lightning_scaling" / "data" / "curves_digits"

#: model name: (kind, width, optimizer, peak learning rate, warm-up steps)
MODELS = {
    "mlp32": ("mlp", 32, "adam", 3e-4, 0),
    "mlp256": ("mlp", 256, "adam", 1e-4, 100),
    "cnn16": ("cnn", 16, "sgd", 0.01, 300),
}
#: The validation set: the last VAL_SIZE images of a fixed permutation; training sets are prefixes of the rest.
VAL_SIZE = 397
COMMON = {"batch_size": 32, "val_every": 20, "seed": 0, "patience": 15, "max_steps": 4000}


def _run(model: str, train: int, noise: float, schedule: str = "constant", max_steps: int = 4000) -> dict:
    name = f"{model}_n{train}_{'noisy' if noise else 'clean'}_{schedule}"
    return {"name": name, "model": model, "train_examples": train, "label_noise": noise, "schedule": schedule,
            "max_steps": max_steps, "patience": COMMON["patience"] if schedule == "constant" else 0}


RUNS = ([_run(m, n, noise) for noise in (0.0, 0.2) for m in MODELS for n in (150, 400, 1400)]
        + [_run(m, 1400, noise, s, 3000) for noise in (0.0, 0.2) for m in MODELS for s in ("cosine", "step")])


def _data(train: int, noise: float, seed: int):
    import numpy as np
    import torch
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.data / 16.0, dtype=torch.float32)
    y = torch.tensor(d.target, dtype=torch.long)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(1234))
    x, y = x[perm], y[perm]
    if noise:  # the same corruption process on training and validation labels: an irreducible loss floor
        rng = np.random.default_rng(99)
        flip = torch.from_numpy(rng.random(len(y)) < noise)
        y = torch.where(flip, torch.from_numpy(rng.integers(0, 10, len(y))), y)
    val = (x[-VAL_SIZE:], y[-VAL_SIZE:])
    if train > len(y) - VAL_SIZE:
        raise ValueError(f"at most {len(y) - VAL_SIZE} training images")
    return (x[:train], y[:train]), val


def record(spec: dict, out: Path = OUT, threads: int = 1) -> dict:
    """Train one run and write its ``metrics.csv`` and ``config.json``; return the config."""
    import lightning.pytorch as L
    import torch
    from lightning.pytorch.callbacks import EarlyStopping
    from lightning.pytorch.loggers import CSVLogger
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    warnings.filterwarnings("ignore")
    torch.set_num_threads(threads)
    cfg = {**COMMON, **spec}
    kind, width, optimizer, peak, warmup = MODELS[cfg["model"]]
    L.seed_everything(cfg["seed"], verbose=False)
    (xt, yt), (xv, yv) = _data(cfg["train_examples"], cfg["label_noise"], cfg["seed"])

    class Classifier(L.LightningModule):
        def __init__(self):
            super().__init__()
            if kind == "mlp":
                self.net = nn.Sequential(nn.Linear(64, width), nn.GELU(), nn.Linear(width, width), nn.GELU(),
                                         nn.Linear(width, 10))
            else:
                self.net = nn.Sequential(nn.Unflatten(1, (1, 8, 8)), nn.Conv2d(1, width, 3, padding=1), nn.ReLU(),
                                         nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                         nn.Flatten(), nn.Linear(2 * width * 16, 64), nn.ReLU(), nn.Linear(64, 10))

        def training_step(self, batch, _):
            x, y = batch
            loss = nn.functional.cross_entropy(self.net(x), y)
            self.log("train_loss", loss)
            self.log("lr", self.lr_schedulers().get_last_lr()[0])
            return loss

        def validation_step(self, batch, _):
            x, y = batch
            self.log("val_loss", nn.functional.cross_entropy(self.net(x), y))

        def on_validation_epoch_end(self):
            self.log("optimizer_steps", float(self.global_step))

        def configure_optimizers(self):
            from torch.optim import lr_scheduler as S
            opt = (torch.optim.Adam(self.parameters(), lr=peak) if optimizer == "adam"
                   else torch.optim.SGD(self.parameters(), lr=peak, momentum=0.9, nesterov=True))
            total, parts, milestones = cfg["max_steps"], [], []
            if warmup:
                parts.append(S.LinearLR(opt, start_factor=1.0 / warmup, total_iters=warmup))
                milestones.append(warmup)
            rest = total - warmup
            if cfg["schedule"] == "constant":
                parts.append(S.ConstantLR(opt, factor=1.0, total_iters=0))
            elif cfg["schedule"] == "cosine":
                parts.append(S.CosineAnnealingLR(opt, T_max=rest, eta_min=0.0))
            else:  # step: x0.1 at half and at three quarters of the steps after the warm-up
                parts.append(S.MultiStepLR(opt, milestones=[rest // 2, 3 * rest // 4], gamma=0.1))
            sched = parts[0] if len(parts) == 1 else S.SequentialLR(opt, parts, milestones=milestones)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    model = Classifier()
    callbacks = [EarlyStopping("val_loss", patience=cfg["patience"])] if cfg["patience"] else []
    if (out / cfg["name"]).exists():
        shutil.rmtree(out / cfg["name"])
    logger = CSVLogger(str(out), name=cfg["name"], version="")
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=cfg["max_steps"], callbacks=callbacks, logger=logger,
                        val_check_interval=cfg["val_every"], check_val_every_n_epoch=None, num_sanity_val_steps=0,
                        log_every_n_steps=1, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    start = time.perf_counter()
    trainer.fit(model, DataLoader(TensorDataset(xt, yt), batch_size=cfg["batch_size"], shuffle=True),
                DataLoader(TensorDataset(xv, yv), batch_size=VAL_SIZE))
    n_params = sum(p.numel() for p in model.parameters())
    cfg.update({
        "source": "digits", "kind": kind, "width": width, "optimizer": optimizer, "lr": peak, "warmup": warmup,
        "train_tokens": cfg["train_examples"], "tokens_per_step": cfg["batch_size"],
        "steps_per_epoch": -(-cfg["train_examples"] // cfg["batch_size"]), "val_examples": VAL_SIZE,
        "n_params": n_params, "n_params_non_embedding": n_params, "steps": int(trainer.global_step),
        "ended_by": "patience" if trainer.global_step < cfg["max_steps"] else "max_steps",
        "seconds": round(time.perf_counter() - start, 1), "threads": threads,
        "python": platform.python_version(), "torch": torch.__version__, "lightning": L.__version__,
        "data": "sklearn.datasets.load_digits (UCI optical recognition of handwritten digits, CC BY 4.0)",
        "command": f"python scripts/record_digits.py --only {cfg['name']}",
    })
    (out / cfg["name"] / "config.json").write_text(json.dumps(cfg, indent=1) + "\n")
    hparams = out / cfg["name"] / "hparams.yaml"
    if hparams.exists():
        hparams.unlink()
    return cfg


README = """# Learning curves from other training code (held out)

Small MLPs and a small CNN classifying the UCI optical handwritten digits (1,797 8x8 images; scikit-learn's
`load_digits`, CC BY 4.0), trained on CPU by `scripts/record_digits.py` with `lightning.pytorch`, torch's own
schedulers (warm-ups of 0, 100 and 300 steps; constant, cosine and a x0.1 step decay), Adam or SGD with momentum,
with or without 20% label noise. Never used to choose or calibrate anything: the benchmarks score the shipped
defaults on them. The same files as `curves/` (`metrics.csv`, `config.json`; `train_tokens` is the number of training
images, `tokens_per_step` the batch size).

| run | params | train images | label noise | schedule | steps | ended by | converged val_loss | seconds |
| --- | ---: | ---: | ---: | --- | ---: | --- | ---: | ---: |
"""


def write_readme(out: Path = OUT) -> None:
    from lightning_scaling.corpus.curves import converged_loss, load_curves

    lines = [README]
    for c in load_curves(out):
        cfg = c.config
        lines.append(f"| {c.name} | {c.n_params:,} | {cfg['train_examples']} | {cfg['label_noise']} | "
                     f"{cfg['schedule']} | {cfg['steps']} | {cfg['ended_by']} | {converged_loss(c):.4f} | "
                     f"{cfg['seconds']:.0f} |\n")
    (out / "README.md").write_text("".join(lines))


def main() -> None:
    from record_curves import chosen_runs, grid_parser, record_runs

    parser = grid_parser(__doc__, OUT)
    args = parser.parse_args()
    runs = chosen_runs(parser, args, RUNS)
    if runs is None:
        return
    record_runs(runs, args, record, lambda cfg: f"{cfg['n_params']:,} params, {cfg['steps']} steps "
                                                f"({cfg['ended_by']})")
    write_readme(args.out)


if __name__ == "__main__":
    sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent)]
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
