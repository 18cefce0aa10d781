"""Off the hot path: the callbacks' per-step hooks make no host-device sync and no collective, except on
the steps where they log (``log_every_n_steps``).

Every per-step hook of every callback is wrapped; while one runs, the calls that copy a tensor's value to
the host (``Tensor.item``, ``float()``/``int()``/``bool()`` of a tensor, ``tolist``, ``numpy``) and the
cross-rank entry points (``_common.reduce_sum``, which every callback uses for its all-reduce even on one
process, the strategy's ``reduce``/``barrier``/``broadcast`` and ``torch.distributed.all_reduce``) are
recorded with the optimizer step. A callback that syncs every step shows up (the control).
"""

import pickle
from collections import Counter

import pytest
import pytorch_lightning as pl
import torch
import torch.distributed
from pytorch_lightning.profilers import PassThroughProfiler

from lightning_scaling import DataLimitGap, EffectiveEpochs, ExtraEarlyStopping, FlopCounter, PowerLaw
from lightning_scaling.callbacks import _common
from models import TinyLM, TokenData, loader, make_trainer

PER_STEP_HOOKS = _common.TRAIN_STEP_HOOKS
SYNCS = ("item", "__float__", "__int__", "__bool__", "tolist", "numpy")
LOG_EVERY = 5


def count_tokens(batch):
    """A token count that stays on the device (a tensor per micro-batch)."""
    return (batch[0] >= 0).sum()


class SyncPerStep(pl.Callback):
    """The control: a callback that reads the loss to the host every step (what the others must not do)."""

    state_key = "SyncPerStep"

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.last = outputs["loss"].item()


def record_syncs(monkeypatch, callbacks):
    """Wrap the callbacks' per-step hooks; return the (callback, hook, global_step, call) events recorded
    while one runs, and the wrapper that records a call (for the strategy's collectives, once it exists)."""
    events, current = [], []

    def counting(name, original):
        def wrapper(*args, **kwargs):
            if current:
                events.append((*current[-1], name))
            return original(*args, **kwargs)
        return wrapper

    for name in SYNCS:
        monkeypatch.setattr(torch.Tensor, name, counting(name, getattr(torch.Tensor, name)))
    monkeypatch.setattr(torch.distributed, "all_reduce", counting("all_reduce", torch.distributed.all_reduce))
    monkeypatch.setattr(_common, "reduce_sum", counting("reduce_sum", _common.reduce_sum))

    for cb in callbacks:
        for hook in PER_STEP_HOOKS:
            original = getattr(cb, hook, None)
            if original is None:
                continue

            def wrapped(trainer, *args, _original=original, _hook=hook, _cb=cb, **kwargs):
                current.append((type(_cb).__name__, _hook, int(trainer.global_step)))
                try:
                    return _original(trainer, *args, **kwargs)
                finally:
                    current.pop()
            setattr(cb, hook, wrapped)  # an instance attribute: Lightning calls getattr(callback, hook)
    return events, counting


def train(tmp_path, monkeypatch, callbacks):
    events, counting = record_syncs(monkeypatch, callbacks)
    trainer = make_trainer(tmp_path, callbacks, max_steps=20, log_every_n_steps=LOG_EVERY, val_check_interval=14,
                           check_val_every_n_epoch=None, limit_val_batches=1, accumulate_grad_batches=2)
    for name in ("reduce", "barrier", "broadcast", "reduce_boolean_decision"):
        monkeypatch.setattr(trainer.strategy, name, counting(name, getattr(trainer.strategy, name)))
    trainer.fit(TinyLM(), loader(TokenData(64)), loader(TokenData(16, seed=1)))
    assert trainer.global_step == 20
    return events


def test_per_step_hooks_neither_sync_nor_reduce_between_log_steps(tmp_path, monkeypatch):
    callbacks = [EffectiveEpochs(count_tokens=count_tokens, dataset_size=64 * 16),
                 FlopCounter(peak_flops=1e12), DataLimitGap(PowerLaw(2.0, 0.5, 0.1, unit="tokens")),
                 ExtraEarlyStopping(verbose=False, threshold=1.0001)]
    events = train(tmp_path, monkeypatch, callbacks)
    off_log_steps = [e for e in events if e[2] % LOG_EVERY != 0]
    assert off_log_steps == []
    # the counters do reduce (and sync the token tensor) when they log: the instrument sees them
    assert {(e[0], e[3]) for e in events} >= {("EffectiveEpochs", "reduce_sum"), ("EffectiveEpochs", "__float__"),
                                             ("FlopCounter", "reduce_sum")}
    logged_steps = {e[2] for e in events}
    # the counters log at the start of the micro-batch after a logging step (the last step: in on_train_end)
    assert logged_steps == {s for s in range(1, 20) if s % LOG_EVERY == 0}
    assert callbacks[0]._cache.tokens_seen == 20 * 2 * 8 * 16


def test_the_instrument_catches_a_sync_per_step(tmp_path, monkeypatch):
    events = train(tmp_path, monkeypatch, [SyncPerStep()])
    steps = {e[2] for e in events if e[0] == "SyncPerStep" and e[3] == "item"}
    assert len(steps) >= 19 and any(s % LOG_EVERY for s in steps)


class _StepProbe(pl.Callback):
    """Reads the counters' step tracker beside trainer.global_step at every micro-batch."""

    state_key = "StepProbe"

    def __init__(self):
        self.pairs = []

    def on_train_start(self, trainer, pl_module):
        self.tracker = _common.step_tracker(trainer, pl_module)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.pairs.append((self.tracker.completed, trainer.global_step))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.pairs.append((self.tracker.completed, trainer.global_step))


def test_the_step_tracker_is_global_step_in_one_read(tmp_path):
    """The counters read the optimizer step from Lightning's progress tracker (cheaper than the property
    chain of trainer.global_step): it must be found on this Lightning and equal global_step throughout,
    under gradient accumulation and after a resume; a trainer without it falls back (None)."""
    probe = _StepProbe()
    trainer = make_trainer(tmp_path, [probe], max_steps=6, accumulate_grad_batches=2)
    trainer.fit(TinyLM(), loader(TokenData(64)))
    assert probe.tracker is not None and len(probe.pairs) == 24
    assert all(a == b for a, b in probe.pairs) and probe.pairs[-1] == (6, 6)
    trainer.save_checkpoint(tmp_path / "mid.ckpt")
    resumed = _StepProbe()
    make_trainer(tmp_path, [resumed], max_steps=9).fit(TinyLM(), loader(TokenData(64)), ckpt_path=tmp_path / "mid.ckpt")
    assert resumed.pairs[0] == (6, 6) and all(a == b for a, b in resumed.pairs) and resumed.pairs[-1] == (9, 9)
    assert _common.step_tracker(object(), TinyLM()) is None


class _DispatchRecorder(PassThroughProfiler):
    """Lightning enters ``profiler.profile("[Callback]{state_key}.{hook}")`` for each callback hook it calls."""

    def __init__(self):
        super().__init__()
        self.calls = Counter()

    def start(self, action_name):
        if action_name.startswith("[Callback]"):
            self.calls[action_name] += 1


class _CountingSubclass(EffectiveEpochs):
    """A user's subclass that uses a per-step hook the package leaves empty: it must still be called."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.ends = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.ends += 1


def test_lightning_dispatches_only_the_hooks_the_callbacks_use(tmp_path):
    """Per-batch hooks a callback leaves empty are None on the instance, so Lightning's dispatcher (it calls
    only callable hooks) skips them: 5 dispatches per optimizer step for the four callbacks instead of 24."""
    profiler = _DispatchRecorder()
    callbacks = [EffectiveEpochs(), FlopCounter(peak_flops=1e12),
                 DataLimitGap(PowerLaw(2.0, 0.5, 0.1, unit="examples")),
                 ExtraEarlyStopping(verbose=False, threshold=1.0001)]
    trainer = make_trainer(tmp_path, callbacks, max_steps=10, profiler=profiler, val_check_interval=5,
                           check_val_every_n_epoch=None, limit_val_batches=2)
    trainer.fit(TinyLM(), loader(TokenData(64)), loader(TokenData(16, seed=1)))
    per_batch = {name for name in profiler.calls
                 if name.split(".")[-1] in _common.TRAIN_STEP_HOOKS + _common.EVAL_BATCH_HOOKS}
    keys = {type(cb).__name__: cb.state_key for cb in callbacks}
    assert per_batch == {f"[Callback]{keys['EffectiveEpochs']}.on_train_batch_start",
                         f"[Callback]{keys['FlopCounter']}.on_train_batch_start",
                         f"[Callback]{keys['FlopCounter']}.on_before_optimizer_step",
                         f"[Callback]{keys['FlopCounter']}.on_train_batch_end",
                         f"[Callback]{keys['ExtraEarlyStopping']}.on_before_optimizer_step"}
    assert all(profiler.calls[name] == 10 for name in per_batch)
    # the skipped hooks are still reachable hooks elsewhere: validation fits happened, counts were logged
    assert callbacks[3].rule.times and callbacks[0]._cache.examples_seen == 80
    sub = _CountingSubclass()
    assert sub.on_before_backward is None and callable(sub.on_train_batch_end)
    make_trainer(tmp_path, [sub], max_steps=4).fit(TinyLM(), loader(TokenData(64)))
    assert sub.ends == 4


def test_both_lightning_packages_skip_the_same_hooks():
    unified = pytest.importorskip("lightning_scaling.unified")
    for cls in ("EffectiveEpochs", "FlopCounter", "ExtraEarlyStopping"):
        ours, theirs = globals()[cls](), getattr(unified, cls)()
        for hook in _common.TRAIN_STEP_HOOKS + _common.EVAL_BATCH_HOOKS:
            assert (getattr(ours, hook) is None) == (getattr(theirs, hook) is None), (cls, hook)
    assert unified.EffectiveEpochs().on_before_backward is None
    copied = pickle.loads(pickle.dumps(ExtraEarlyStopping(cooldown_steps=5)))  # e.g. sent to a tuner's worker
    assert copied.on_before_backward is None and copied.on_train_batch_start is None
    assert callable(copied.on_before_optimizer_step) and copied.cooldown_steps == 5
