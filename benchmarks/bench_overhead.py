"""Step time with all four callbacks against none, side by side in one process.

A small MLP regression on CPU; runs alternate (none, all, none, all, ...) so machine drift hits both
arms; the per-step time of each run is the wall time from step 20 to the end over those steps
(steady state: Trainer start-up and FlopCounter's one measured step per batch shape are left out).
Validation runs every ``--val-every`` steps in both arms (the callbacks fit only then).

    .venv/bin/python benchmarks/bench_overhead.py [--repeats 7] [--steps 400]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lightning_scaling import DataLimitGap, EffectiveEpochs, ExtraEarlyStopping, FlopCounter, PowerLaw  # noqa: E402


class MLP(pl.LightningModule):
    def __init__(self, width: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, width), nn.GELU(), nn.Linear(width, width), nn.GELU(), nn.Linear(width, 1))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-3)


class SteadyClock(pl.Callback):
    """Wall time per step from step ``skip`` to the end: excludes Trainer start-up and the one measured step."""

    def __init__(self, skip: int = 20):
        self.skip, self.start, self.per_step = skip, None, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.start is None and trainer.global_step >= self.skip:
            self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module):
        self.per_step = (time.perf_counter() - self.start) / (trainer.global_step - self.skip)


def one_run(with_callbacks: bool | str, steps: int, width: int, val_every: int) -> float:
    torch.manual_seed(0)
    x = torch.randn(4096, 64)
    data = TensorDataset(x, x[:, :1] ** 2)
    callbacks = []
    if with_callbacks:
        callbacks = [EffectiveEpochs(), FlopCounter(peak_flops=1e12),
                     DataLimitGap(PowerLaw(10.0, 0.5, 0.01, unit="examples")),
                     ExtraEarlyStopping(threshold=1.0001, verbose=False)]  # never fires: same steps in both arms
    if with_callbacks == "empty":  # what Lightning's hook dispatch alone costs for four callbacks
        callbacks = [pl.Callback() for _ in range(4)]
    clock = SteadyClock()
    trainer = pl.Trainer(accelerator="cpu", max_steps=steps, callbacks=[*callbacks, clock], logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         val_check_interval=val_every, check_val_every_n_epoch=None, limit_val_batches=2,
                         num_sanity_val_steps=0, log_every_n_steps=50)
    trainer.fit(MLP(width), DataLoader(data, batch_size=64, shuffle=True), DataLoader(data, batch_size=256))
    assert trainer.global_step == steps
    return clock.per_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--val-every", type=int, default=50)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    one_run(True, 50, args.width, args.val_every)  # warm-up (imports, allocator)
    none, empty, all4 = [], [], []
    for _ in range(args.repeats):
        none.append(one_run(False, args.steps, args.width, args.val_every))
        empty.append(one_run("empty", args.steps, args.width, args.val_every))
        all4.append(one_run(True, args.steps, args.width, args.val_every))
    ratios = [a / b for a, b in zip(all4, none)]
    ratios_empty = [a / b for a, b in zip(all4, empty)]
    print(f"steps per run {args.steps}, MLP width {args.width}, validation every {args.val_every} steps, "
          f"{args.repeats} alternating pairs")
    print(f"no callbacks     median {statistics.median(none) * 1e3:7.3f} ms/step")
    print(f"4 empty callbacks median {statistics.median(empty) * 1e3:7.3f} ms/step")
    print(f"all four         median {statistics.median(all4) * 1e3:7.3f} ms/step")
    print(f"ratio all/empty  median {statistics.median(ratios_empty):.4f}")
    print(f"ratio all/none   median {statistics.median(ratios):.4f}  (pairs: {', '.join(f'{r:.3f}' for r in ratios)})")


if __name__ == "__main__":
    main()
