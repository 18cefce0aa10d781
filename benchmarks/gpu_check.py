"""The GPU-only checks of the four callbacks, as one short script for a machine with CUDA.

What only a GPU shows:

1. **No host-device sync per step.** Every per-step hook of every callback runs under
   ``torch.cuda.set_sync_debug_mode("warn")``; each warning (a copy of a device value to the host, a
   ``synchronize``) is recorded with the optimizer step. Syncs are allowed only on the logging steps
   (``log_every_n_steps``), where the counters are read once; any other is a violation.
2. **MFU against the device's peak.** FlopCounter finds the peak from ``torch.cuda.get_device_name()``
   (:func:`lightning_scaling.flops.peak_flops`) and logs ``scaling/mfu``; the script prints it beside the
   analytic 6N-per-token estimate over the same measured time, so a wrong peak or a missed attention
   kernel shows as a mismatch.
3. **Overhead on the device.** Step time with all four callbacks against none, alternating arms in one
   process (median of the per-run medians, CUDA-synchronised only at the timing points, outside the hooks).

The model is the demo's CharGPT (``lightning_scaling.demo.model``) at a GPU-sized width on random bytes,
bf16 mixed precision. On a machine without CUDA, ``--device cpu`` runs the same code as a smoke test
(checks 1 and 2 are skipped there: ``tests/test_hot_path.py`` covers the host side).

    .venv/bin/python benchmarks/gpu_check.py [--steps 300] [--repeats 3] [--out gpu_check.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lightning_scaling import DataLimitGap, EffectiveEpochs, ExtraEarlyStopping, FlopCounter, PowerLaw  # noqa: E402
from lightning_scaling.demo.model import CharGPT  # noqa: E402
from lightning_scaling.flops import six_n  # noqa: E402

from lightning_scaling.callbacks._common import TRAIN_STEP_HOOKS as PER_STEP_HOOKS  # noqa: E402
LOG_EVERY = 25


def make_data(ctx: int, batch: int, n_batches: int) -> tuple[DataLoader, DataLoader]:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n_batches * batch, ctx + 1), generator=g)
    train = TensorDataset(x[:, :-1], x[:, 1:])
    val = TensorDataset(x[: 4 * batch, :-1], x[: 4 * batch, 1:])
    return DataLoader(train, batch_size=batch, shuffle=True, drop_last=True), DataLoader(val, batch_size=batch)


def make_callbacks(ctx: int) -> list:
    law = PowerLaw(scale=1e5, exponent=0.1, irreducible=1.0, unit="tokens")
    return [EffectiveEpochs(tokens_per_example=ctx), FlopCounter(), DataLimitGap(law),
            ExtraEarlyStopping(threshold=1.0001, verbose=False)]  # fits at every validation, never stops


def watch_syncs(callbacks: list, events: list) -> None:
    """Run each per-step hook under CUDA's sync debug mode "warn"; record (callback, hook, step, message)."""
    for cb in callbacks:
        for hook in PER_STEP_HOOKS:
            inner = getattr(cb, hook, None)
            if inner is None:
                continue

            def wrapped(trainer, *args, _inner=inner, _cb=cb, _hook=hook, **kwargs):
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    torch.cuda.set_sync_debug_mode("warn")
                    try:
                        return _inner(trainer, *args, **kwargs)
                    finally:
                        torch.cuda.set_sync_debug_mode("default")
                        for w in caught:
                            if "synchroniz" in str(w.message).lower():
                                events.append((type(_cb).__name__, _hook, int(trainer.global_step),
                                               str(w.message)[:120]))

            setattr(cb, hook, wrapped)


class StepClock(pl.Callback):
    """Median time per optimizer step after ``skip`` steps (synchronised at its own timing points only)."""

    def __init__(self, cuda: bool, skip: int = 20):
        self.cuda, self.skip, self.times, self.last = cuda, skip, [], None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step < self.skip:
            return
        if self.cuda:
            torch.cuda.synchronize()
        now = time.perf_counter()
        if self.last is not None:
            self.times.append(now - self.last)
        self.last = now


def last_logged(path: Path) -> dict[str, float]:
    """The last value of every ``scaling/`` column of a CSVLogger file (the callbacks log straight to the logger)."""
    last: dict[str, float] = {}
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            last.update({k: float(v) for k, v in row.items() if k.startswith("scaling/") and v not in ("", None)})
    return last


def one_run(arm: str, args, out_dir: str, watch: bool) -> dict:
    cuda = args.device == "cuda"
    model = CharGPT(d_model=args.d_model, n_layer=args.n_layer, n_head=args.n_head, ctx=args.ctx, warmup=10)
    train, val = make_data(args.ctx, args.batch, args.steps + 10)
    callbacks = make_callbacks(args.ctx) if arm == "all four" else []
    events: list = []
    if watch and callbacks:
        watch_syncs(callbacks, events)
    clock = StepClock(cuda)
    trainer = pl.Trainer(accelerator="gpu" if cuda else "cpu", devices=1, max_steps=args.steps,
                         precision="bf16-mixed" if cuda else "32-true", val_check_interval=50,
                         check_val_every_n_epoch=None, log_every_n_steps=LOG_EVERY, callbacks=callbacks + [clock],
                         logger=CSVLogger(out_dir, name=arm.replace(" ", "_")), enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(model, train, val)
    result = {"arm": arm, "median_step_s": statistics.median(clock.times) if clock.times else float("nan")}
    if callbacks:
        counter = callbacks[1]
        metrics = last_logged(Path(trainer.logger.log_dir) / "metrics.csv")
        tokens = args.steps * args.batch * args.ctx
        result.update(
            sync_events=events,
            syncs_off_logging_steps=[e for e in events if e[2] % LOG_EVERY != 0],
            mfu_logged=metrics.get("scaling/mfu"),
            flops_per_s_logged=metrics.get("scaling/flops_per_sec"),
            peak=counter._peak,
            measured_flops=metrics.get("scaling/flops"),
            six_n_flops=six_n(model.n_params(non_embedding=True)) * tokens)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3, help="alternating none / all-four pairs (0: checks only)")
    parser.add_argument("--d-model", type=int, default=512)
    parser.add_argument("--n-layer", type=int, default=6)
    parser.add_argument("--n-head", type=int, default=8)
    parser.add_argument("--ctx", type=int, default=512)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args()
    torch.set_float32_matmul_precision("high")
    print(f"device: {torch.cuda.get_device_name() if args.device == 'cuda' else 'cpu'}; torch {torch.__version__}, "
          f"pytorch_lightning {pl.__version__}")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        first = one_run("all four", args, tmp, watch=args.device == "cuda")  # the checked run
        for _ in range(args.repeats):
            runs += [one_run("none", args, tmp, watch=False), one_run("all four", args, tmp, watch=False)]
    none = statistics.median([r["median_step_s"] for r in runs if r["arm"] == "none"] or [math.nan])
    four = statistics.median([r["median_step_s"] for r in runs if r["arm"] == "all four"] or [math.nan])
    summary = {"device": args.device, "args": vars(args), "checked_run": first, "step_s_none": none,
               "step_s_all_four": four, "overhead_ratio": four / none}
    print(f"1. syncs inside per-step hooks: {len(first.get('sync_events', []))} in all, "
          f"{len(first.get('syncs_off_logging_steps', []))} off the logging steps (must be 0)")
    for e in first.get("syncs_off_logging_steps", [])[:10]:
        print("   ", e)
    if first.get("six_n_flops"):
        print(f"2. measured FLOPs {first['measured_flops']:.4g} vs 6N x tokens {first['six_n_flops']:.4g}; "
              f"peak {first['peak']}; MFU logged {first['mfu_logged']}; FLOP/s logged {first['flops_per_s_logged']}")
    print(f"3. median step: none {none * 1e3:.2f} ms, all four {four * 1e3:.2f} ms, ratio {four / none:.4f} "
          f"({args.repeats} alternating pairs)")
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=1, default=str))


if __name__ == "__main__":
    main()
