"""Step time with all four callbacks against none, side by side in one process.

A small MLP regression on CPU; runs alternate (none, all, none, all, ...) so machine drift hits both
arms; the per-step time of each run is the time from step 20 to the end over those steps (steady
state: Trainer start-up and FlopCounter's one measured step per batch shape are left out). The time is
the process's CPU time by default (``--clock cpu``: one thread, so other tenants of a shared machine
disturb it far less than wall time), or wall time (``--clock wall``).
Validation runs every ``--val-every`` steps in both arms (the callbacks fit only then).
Two more arms split the overhead: four empty ``Callback()``s (Lightning's own hook dispatch) and the
two counters alone (EffectiveEpochs + FlopCounter: per-step bookkeeping, no fits).

On a shared machine the arms' difference drowns in noise, so one more run attributes the time
within a single run: Lightning's ``SimpleProfiler`` times every callback hook, and the time inside
each callback's hooks is set against the whole run's wall time (both measured at the same moment,
so other tenants slow numerator and denominator alike).

    .venv/bin/python benchmarks/bench_overhead.py [--repeats 7] [--steps 400] [--clock cpu|wall]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.profilers import SimpleProfiler
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


CLOCKS = {"cpu": time.process_time, "wall": time.perf_counter}


class SteadyClock(pl.Callback):
    """Time per step from step ``skip`` to the end: excludes Trainer start-up and the one measured step."""

    def __init__(self, clock, skip: int = 20):
        self.clock, self.skip, self.start, self.per_step = clock, skip, None, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.start is None and trainer.global_step >= self.skip:
            self.start = self.clock()

    def on_train_end(self, trainer, pl_module):
        self.per_step = (self.clock() - self.start) / (trainer.global_step - self.skip)


def make_callbacks(arm: str) -> list:
    if arm == "none":
        return []
    if arm == "empty":  # what Lightning's hook dispatch alone costs for four callbacks
        return [pl.Callback() for _ in range(4)]
    counters = [EffectiveEpochs(), FlopCounter(peak_flops=1e12)]
    if arm == "counters":
        return counters
    return [*counters, DataLimitGap(PowerLaw(10.0, 0.5, 0.01, unit="examples")),
            ExtraEarlyStopping(threshold=1.0001, verbose=False)]  # never fires: same steps in every arm


ARMS = ("none", "empty", "counters", "all")


def one_run(arm: str, steps: int, width: int, val_every: int, clock: str = "cpu") -> float:
    torch.manual_seed(0)
    x = torch.randn(4096, 64)
    data = TensorDataset(x, x[:, :1] ** 2)
    callbacks = make_callbacks(arm)
    clock = SteadyClock(CLOCKS[clock])
    trainer = pl.Trainer(accelerator="cpu", max_steps=steps, callbacks=[*callbacks, clock], logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         val_check_interval=val_every, check_val_every_n_epoch=None, limit_val_batches=2,
                         num_sanity_val_steps=0, log_every_n_steps=50)
    trainer.fit(MLP(width), DataLoader(data, batch_size=64, shuffle=True), DataLoader(data, batch_size=256))
    assert trainer.global_step == steps
    return clock.per_step


class Control(pl.Callback):
    """An empty callback: what a callback costs that does nothing."""


def attribution(steps: int, width: int, val_every: int) -> None:
    """Time inside each callback's hooks against the step time, both from one run's ``SimpleProfiler``.

    Per-step hooks: the median call (robust to a preempted call on a shared machine) times calls per
    step, against the median ``run_training_batch``. Other hooks (validation: the fits; start, end):
    their total against the run's wall time. An empty control callback goes first: the first callback
    of a hook absorbs some of the framework's own deferred work, and every callback pays the profiler
    and Lightning's dispatch, so the control's line is the floor under each of the others.
    """
    torch.manual_seed(0)
    x = torch.randn(4096, 64)
    data = TensorDataset(x, x[:, :1] ** 2)
    callbacks = [Control(), *make_callbacks("all")]
    with tempfile.TemporaryDirectory() as tmp:
        profiler = SimpleProfiler(dirpath=tmp, filename="profile")  # the report goes to a file, not stdout
        trainer = pl.Trainer(accelerator="cpu", max_steps=steps, callbacks=callbacks, logger=False,
                             profiler=profiler, enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, val_check_interval=val_every, check_val_every_n_epoch=None,
                             limit_val_batches=2, num_sanity_val_steps=0, log_every_n_steps=50)
        start = time.perf_counter()
        trainer.fit(MLP(width), DataLoader(data, batch_size=64, shuffle=True), DataLoader(data, batch_size=256))
        wall = time.perf_counter() - start
    durations = profiler.recorded_durations
    step_time = statistics.median(durations["run_training_batch"])
    print(f"\nattribution (one run, {steps} steps, SimpleProfiler): median training batch {step_time * 1e3:.3f} ms, "
          f"wall {wall:.2f} s")
    per_step_total = other_total = 0.0
    for cb in callbacks:
        prefix = f"[Callback]{cb.state_key}."
        per_step = other = 0.0
        for key, values in durations.items():
            if not key.startswith(prefix):
                continue
            if len(values) >= steps:  # called every step (or micro-batch)
                per_step += statistics.median(values) * len(values) / steps
            else:
                other += sum(values)
        if not isinstance(cb, Control):
            per_step_total += per_step
            other_total += other
        print(f"  {type(cb).__name__:20s} per-step hooks {per_step * 1e6:6.1f} us/step "
              f"({100 * per_step / step_time:5.2f}% of a step); other hooks {other * 1e3:6.1f} ms "
              f"({100 * other / wall:5.2f}% of the run)")
    print(f"  all four: per-step {100 * per_step_total / step_time:.2f}% + other {100 * other_total / wall:.2f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--val-every", type=int, default=50)
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="cpu")
    parser.add_argument("--attribution-only", action="store_true", help="skip the A/B arms")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    one_run("all", 50, args.width, args.val_every)  # warm-up (imports, allocator)
    if args.attribution_only:
        attribution(args.steps, args.width, args.val_every)
        return
    times: dict[str, list[float]] = {arm: [] for arm in ARMS}
    for _ in range(args.repeats):  # alternate the arms so machine drift hits all of them
        for arm in ARMS:
            times[arm].append(one_run(arm, args.steps, args.width, args.val_every, args.clock))
    print(f"steps per run {args.steps}, MLP width {args.width}, validation every {args.val_every} steps, "
          f"{args.repeats} alternating rounds, {args.clock} time")
    labels = {"none": "no callbacks", "empty": "4 empty callbacks", "counters": "EffectiveEpochs+FlopCounter",
              "all": "all four"}
    for arm in ARMS:
        ratios = [a / b for a, b in zip(times[arm], times["none"])]
        print(f"{labels[arm]:28s} median {statistics.median(times[arm]) * 1e3:7.3f} ms/step   "
              f"ratio to none: median of pairs {statistics.median(ratios):.4f}, "
              f"of medians {statistics.median(times[arm]) / statistics.median(times['none']):.4f}")
    attribution(args.steps, args.width, args.val_every)


if __name__ == "__main__":
    main()
