"""Step time with all four callbacks against none, side by side in one process.

A small MLP regression on CPU (``--model mlp --width W``), or the demo's character-level GPT at the
demo's size (``--model chargpt``: lightning_scaling.demo.model.CharGPT, d_model 48, 2 layers, context 64,
batch 32, on the demo's pydoc text, counting tokens); runs alternate (none, all, none, all, ...) so machine drift hits
both arms; the per-step time of each run is the time from step 20 to the end over those steps (steady
state: Trainer start-up and FlopCounter's one measured step per batch shape are left out). The time is
the process's CPU time by default (``--clock cpu``: one thread, so other tenants of a shared machine
disturb it far less than wall time), or wall time (``--clock wall``).
Validation runs every ``--val-every`` steps in both arms (the callbacks fit only then).
Two more arms split the overhead: four empty ``Callback()``s (Lightning's own hook dispatch) and the
two counters alone (EffectiveEpochs + FlopCounter: per-step bookkeeping, no fits).

On a shared machine the arms' difference drowns in noise, so one more run attributes the time
within a single run: Lightning's ``SimpleProfiler`` times every callback hook, and the time inside
each callback's hooks is set against the whole run's wall time (both measured at the same moment,
so other tenants slow numerator and denominator alike). An empty callback last ("floor") is what any
callback pays for Lightning's dispatch of its six per-step hooks (and the profiler's timing); the four
callbacks are dispatched only for the hooks they use (the others are None: 5 hooks per step for the four,
not 24), and each one's own per-step work is its time beyond the floor's cost per hook times its hooks.
ExtraEarlyStopping's learning-curve fit is timed per validation.

    .venv/bin/python benchmarks/bench_overhead.py [--model mlp|chargpt] [--width 256] [--repeats 7]
        [--steps 400] [--clock cpu|wall] [--attribution-only] [--amplify K] [--dispatch]
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
        self.net = nn.Sequential(nn.Linear(64, width), nn.GELU(), nn.Linear(width, width), nn.GELU(),
                                 nn.Linear(width, 1))

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


CTX = 64  # the demo's context and batch (lightning_scaling/demo/job.py)


def make_callbacks(arm: str, model: str = "mlp") -> list:
    if arm == "none":
        return []
    if arm == "empty":  # what Lightning's hook dispatch alone costs for four callbacks
        return [pl.Callback() for _ in range(4)]
    tokens = model == "chargpt"  # the demo counts tokens
    counters = [EffectiveEpochs(tokens_per_example=CTX if tokens else None), FlopCounter(peak_flops=1e12)]
    if arm == "counters":
        return counters
    # L(D) = 0.01 + (10 / D)^0.5: the MLP reaches it (DataLimitGap says so once); the demo's loss stays far above
    law = PowerLaw(10.0, 0.5, 0.01, unit="tokens" if tokens else "examples")
    return [*counters, DataLimitGap(law),
            ExtraEarlyStopping(threshold=1.0001, verbose=False)]  # never fires: same steps in every arm


ARMS = ("none", "empty", "counters", "all")


class _Copy:
    """A distinct ``state_key`` per copy, so that Lightning accepts K stateful copies of one callback."""

    def __init__(self, copy: int, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.copy = copy

    @property
    def state_key(self) -> str:
        return f"{type(self).__name__}#{self.copy}"


class EffectiveEpochsCopy(_Copy, EffectiveEpochs):
    pass


class FlopCounterCopy(_Copy, FlopCounter):
    pass


class DataLimitGapCopy(_Copy, DataLimitGap):
    pass


class ExtraEarlyStoppingCopy(_Copy, ExtraEarlyStopping):
    pass


def amplified_callbacks(arm: str, k: int, model: str = "mlp") -> list:
    """``k`` copies of the four callbacks (arm "all") or ``k`` empty callbacks (arm "empty"): a 2% effect per copy
    becomes 2k%, which the noise of separate runs no longer hides (and no profiler inflates it)."""
    if arm == "none":
        return []
    if arm == "empty":
        return [pl.Callback() for _ in range(k)]
    tokens = model == "chargpt"
    law = PowerLaw(10.0, 0.5, 0.01, unit="tokens" if tokens else "examples")
    out = []
    for i in range(k):
        out += [EffectiveEpochsCopy(i, tokens_per_example=CTX if tokens else None),
                FlopCounterCopy(i, peak_flops=1e12), DataLimitGapCopy(i, law),
                ExtraEarlyStoppingCopy(i, threshold=1.0001, verbose=False)]
    return out


def make_job(model: str, width: int) -> tuple[pl.LightningModule, DataLoader, DataLoader]:
    """The module and its train / validation loaders."""
    torch.manual_seed(0)
    if model == "chargpt":
        from lightning_scaling.demo.data import char_data
        from lightning_scaling.demo.model import CharGPT

        data = char_data("pydoc", CTX, train_tokens=65_536, val_tokens=16_384)
        module = CharGPT(d_model=48, n_layer=2, n_head=4, ctx=CTX, lr=3e-3, warmup=50)  # the demo's model
        return (module, DataLoader(data.train, batch_size=32, shuffle=True, drop_last=True),
                DataLoader(data.val, batch_size=64))
    x = torch.randn(4096, 64)
    data = TensorDataset(x, x[:, :1] ** 2)
    return MLP(width), DataLoader(data, batch_size=64, shuffle=True), DataLoader(data, batch_size=256)


def one_run(arm: str, steps: int, width: int, val_every: int, clock: str = "cpu", model: str = "mlp",
            amplify: int = 0) -> float:
    module, train, val = make_job(model, width)
    callbacks = amplified_callbacks(arm, amplify, model) if amplify else make_callbacks(arm, model)
    clock = SteadyClock(CLOCKS[clock])
    trainer = pl.Trainer(accelerator="cpu", max_steps=steps, callbacks=[*callbacks, clock], logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         val_check_interval=val_every, check_val_every_n_epoch=None, limit_val_batches=2,
                         num_sanity_val_steps=0, log_every_n_steps=50)
    trainer.fit(module, train, val)
    assert trainer.global_step == steps
    return clock.per_step


class Control(pl.Callback):
    """An empty callback: what a callback costs that does nothing."""


class Floor(pl.Callback):
    """The same, last in the list: the dispatch floor under each of the four (the first callback of a hook
    absorbs some of the framework's own deferred work; the last one does not)."""


def attribution(steps: int, width: int, val_every: int, model: str = "mlp") -> None:
    """Time inside each callback's hooks against the step time, both from one run's ``SimpleProfiler``.

    Per-step hooks: the median call (robust to a preempted call on a shared machine) times calls per
    step, against the median ``run_training_batch``. Other hooks (validation: the fits; start, end):
    their total against the run's wall time. An empty control callback goes first: the first callback
    of a hook absorbs some of the framework's own deferred work, and every callback pays the profiler
    and Lightning's dispatch, so the control's line is the floor under each of the others; an empty
    callback last (``Floor``) gives the floor of a callback that does not go first: its time over its six
    per-step hooks is the dispatch cost of one hook. The four callbacks leave the per-step hooks they do not
    use as None, which Lightning does not dispatch (``_common.skip_unused_hooks``), so each callback's own
    work is its per-step time beyond that cost times the hooks it has dispatched.
    """
    module, train, val = make_job(model, width)
    callbacks = [Control(), *make_callbacks("all", model), Floor()]
    with tempfile.TemporaryDirectory() as tmp:
        profiler = SimpleProfiler(dirpath=tmp, filename="profile")  # the report goes to a file, not stdout
        trainer = pl.Trainer(accelerator="cpu", max_steps=steps, callbacks=callbacks, logger=False,
                             profiler=profiler, enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, val_check_interval=val_every, check_val_every_n_epoch=None,
                             limit_val_batches=2, num_sanity_val_steps=0, log_every_n_steps=50)
        start = time.perf_counter()
        trainer.fit(module, train, val)
        wall = time.perf_counter() - start
    durations = profiler.recorded_durations
    step_time = statistics.median(durations["run_training_batch"])
    print(f"\nattribution ({model}{'' if model == 'chargpt' else f' width {width}'}, one run, {steps} steps, "
          f"SimpleProfiler): median training batch {step_time * 1e3:.3f} ms, wall {wall:.2f} s")

    def split(cb) -> tuple[float, float, int]:
        """(per-step hooks: seconds per step, other hooks: total seconds, per-step hooks dispatched) of one
        callback; hooks a callback leaves None are not dispatched by Lightning at all."""
        prefix = f"[Callback]{cb.state_key}."
        per_step = other = 0.0
        hooks = 0
        for key, values in durations.items():
            if not key.startswith(prefix):
                continue
            if len(values) >= steps:  # called every step (or micro-batch)
                per_step += statistics.median(values) * len(values) / steps
                hooks += 1
            else:
                other += sum(values)
        return per_step, other, hooks

    floor, _, floor_hooks = split(callbacks[-1])
    per_hook = floor / max(floor_hooks, 1)  # the dispatch (and profiler) cost of one per-step hook
    per_step_total = other_total = own_total = 0.0
    for cb in callbacks:
        per_step, other, hooks = split(cb)
        own = per_step - per_hook * hooks
        if not isinstance(cb, (Control, Floor)):
            per_step_total += per_step
            other_total += other
            own_total += max(own, 0.0)
        print(f"  {type(cb).__name__:20s} per-step hooks {per_step * 1e6:6.1f} us/step over {hooks} hook(s) "
              f"({100 * per_step / step_time:5.2f}% of a step; own work {own * 1e6:5.1f} us); "
              f"other hooks {other * 1e3:6.1f} ms ({100 * other / wall:5.2f}% of the run)")
    fits = durations.get(f"[Callback]{callbacks[-2].state_key}.on_validation_end", [])
    print(f"  all four: per-step {100 * per_step_total / step_time:.2f}% (own work {100 * own_total / step_time:.2f}%, "
          f"dispatch floor {100 * (per_step_total - own_total) / step_time:.2f}%) "
          f"+ other {100 * other_total / wall:.2f}%")
    if fits:
        print(f"  ExtraEarlyStopping at validation (the fits): mean {sum(fits) / len(fits) * 1e3:.2f} ms, "
              f"max {max(fits) * 1e3:.2f} ms over {len(fits)} validations, {100 * sum(fits) / wall:.2f}% of the run")


class _DispatchProbe(pl.Callback):
    """Mid-fit (at step ``at``), times Lightning's own callback dispatch (``dispatch``: ``_call_callback_hooks``)
    of a per-step hook with the Trainer's callbacks and with ``k`` empty ones added, ``calls`` calls a round."""

    def __init__(self, dispatch, at: int, k: int = 4, rounds: int = 31, calls: int = 1000):
        self.dispatch, self.at, self.k, self.rounds, self.calls = dispatch, at, k, rounds, calls
        self.ns_per_call: dict[int, float] = {}
        self.cpu_seconds = 0.0  # the probe's own CPU time, taken out of the run's time per step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step != self.at:
            return
        begin = time.process_time()
        optimizer, base = trainer.optimizers[0], list(trainer.callbacks)
        for extra in (0, self.k):
            trainer.callbacks = base + [pl.Callback() for _ in range(extra)]
            rounds = []
            for _ in range(self.rounds):
                start = time.perf_counter_ns()
                for _ in range(self.calls):
                    self.dispatch(trainer, "on_before_zero_grad", optimizer)
                rounds.append((time.perf_counter_ns() - start) / self.calls)
            self.ns_per_call[extra] = statistics.median(rounds)
        trainer.callbacks = base
        self.cpu_seconds = time.process_time() - begin


def dispatch_floor(steps: int, width: int, val_every: int, model: str = "mlp") -> None:
    """What Lightning's dispatch alone costs four callbacks that do nothing, measured directly in one run.

    Lightning calls every hook of every callback (overridden or not) through ``getattr``, the callback's
    ``state_key``, a profiler context and the call itself. The run counts the callback hooks called per
    optimizer step, times the dispatch of one per-step hook with four empty callbacks more and without them (a
    warm loop at mid-run: a lower bound, a real step's colder caches cost more), and sets hooks per step x the
    extra time per callback x 4 against the same run's steady CPU time per step.
    """
    from pytorch_lightning.trainer import call

    module, train, val = make_job(model, width)
    original = call._call_callback_hooks
    probe, clock = _DispatchProbe(original, at=steps // 2), SteadyClock(time.process_time)
    counts: dict[str, int] = {}

    def counting(trainer, hook_name, *args, **kwargs):
        counts[hook_name] = counts.get(hook_name, 0) + 1
        return original(trainer, hook_name, *args, **kwargs)

    call._call_callback_hooks = counting
    try:
        trainer = pl.Trainer(accelerator="cpu", max_steps=steps, callbacks=[clock, probe], logger=False,
                             enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                             val_check_interval=val_every, check_val_every_n_epoch=None, limit_val_batches=2,
                             num_sanity_val_steps=0, log_every_n_steps=50)
        trainer.fit(module, train, val)
    finally:
        call._call_callback_hooks = original
    per_step_hooks = {name: n / steps for name, n in counts.items() if n >= steps}
    hooks = sum(per_step_hooks.values())
    extra_ns = (probe.ns_per_call[probe.k] - probe.ns_per_call[0]) / probe.k  # one more callback, one hook
    floor_s = hooks * extra_ns * 1e-9 * 4
    step_s = clock.per_step - probe.cpu_seconds / (steps - clock.skip)
    name = "CharGPT (the demo's)" if model == "chargpt" else f"MLP width {width}"
    print(f"dispatch floor ({name}, {steps} steps): {hooks:.0f} callback hooks per step "
          f"({', '.join(sorted(per_step_hooks))}); dispatch of one hook {probe.ns_per_call[0]:.0f} ns with the "
          f"run's own callbacks, +{extra_ns:.0f} ns per empty callback; four empty callbacks: "
          f"{floor_s * 1e6:.1f} us per step = {100 * floor_s / step_s:.2f}% of the run's "
          f"{step_s * 1e3:.3f} ms/step (CPU time, validations included)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--model", choices=("mlp", "chargpt"), default="mlp")
    parser.add_argument("--width", type=int, default=256, help="MLP width (--model mlp)")
    parser.add_argument("--val-every", type=int, default=50)
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="cpu")
    parser.add_argument("--attribution-only", action="store_true", help="skip the A/B arms")
    parser.add_argument("--dispatch", action="store_true",
                        help="only Lightning's dispatch floor for four empty callbacks, timed directly in one run")
    parser.add_argument("--amplify", type=int, default=0,
                        help="K > 0: A/B of none / K empty callbacks / K copies of all four; overhead per copy")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    one_run("all", 50, args.width, args.val_every, model=args.model)  # warm-up (imports, allocator)
    if args.dispatch:
        dispatch_floor(args.steps, args.width, args.val_every, args.model)
        return
    if args.amplify:
        amplified(args)
        return
    if args.attribution_only:
        attribution(args.steps, args.width, args.val_every, args.model)
        return
    times: dict[str, list[float]] = {arm: [] for arm in ARMS}
    for _ in range(args.repeats):  # alternate the arms so machine drift hits all of them
        for arm in ARMS:
            times[arm].append(one_run(arm, args.steps, args.width, args.val_every, args.clock, args.model))
    model = "CharGPT (the demo's)" if args.model == "chargpt" else f"MLP width {args.width}"
    print(f"steps per run {args.steps}, {model}, validation every {args.val_every} steps, "
          f"{args.repeats} alternating rounds, {args.clock} time")
    labels = {"none": "no callbacks", "empty": "4 empty callbacks", "counters": "EffectiveEpochs+FlopCounter",
              "all": "all four"}
    for arm in ARMS:
        ratios = [a / b for a, b in zip(times[arm], times["none"])]
        print(f"{labels[arm]:28s} median {statistics.median(times[arm]) * 1e3:7.3f} ms/step   "
              f"ratio to none: median of pairs {statistics.median(ratios):.4f}, "
              f"of medians {statistics.median(times[arm]) / statistics.median(times['none']):.4f}")
    attribution(args.steps, args.width, args.val_every, args.model)


def amplified(args) -> None:
    """none / K empty callbacks / K copies of the four, alternating: the overhead of one copy is the ratio's
    excess over 1, divided by K. The steady-state time per step includes the validations and the fits."""
    arms = ("none", "empty", "all")
    times: dict[str, list[float]] = {arm: [] for arm in arms}
    for _ in range(args.repeats):
        for arm in arms:
            times[arm].append(one_run(arm, args.steps, args.width, args.val_every, args.clock, args.model,
                                      amplify=args.amplify))
    model = "CharGPT (the demo's)" if args.model == "chargpt" else f"MLP width {args.width}"
    print(f"amplified x{args.amplify}: steps per run {args.steps}, {model}, validation every {args.val_every} steps, "
          f"{args.repeats} alternating rounds, {args.clock} time")
    for arm, label in (("empty", f"{args.amplify} empty callbacks"), ("all", f"{args.amplify} x all four")):
        ratios = [a / b for a, b in zip(times[arm], times["none"])]
        pairs, medians = statistics.median(ratios), statistics.median(times[arm]) / statistics.median(times["none"])
        print(f"{label:22s} median {statistics.median(times[arm]) * 1e3:7.3f} ms/step (none "
              f"{statistics.median(times['none']) * 1e3:.3f}); ratio: median of pairs {pairs:.4f}, of medians "
              f"{medians:.4f}; per copy {100 * (pairs - 1) / args.amplify:.2f}% / "
              f"{100 * (medians - 1) / args.amplify:.2f}%")


if __name__ == "__main__":
    main()
