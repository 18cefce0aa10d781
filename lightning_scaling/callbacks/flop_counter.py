"""FlopCounter: measured FLOPs per step, cumulative FLOPs over all devices (and on non-padding tokens),
PF-days, FLOP/s and MFU."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from .. import flops as F
from .. import tags
from . import _common


def _signature(batch: Any) -> tuple:
    """Shapes of a batch's tensors: a step is re-measured only when this changes (FlopCounterMode's counts
    depend on shapes, not dtypes).

    Runs every step: a list or tuple of tensors takes the short path (host metadata only).
    """
    if type(batch) in (list, tuple):
        try:
            return tuple([t.shape for t in batch])
        except AttributeError:
            pass
    if hasattr(batch, "shape"):
        return (tuple(batch.shape),)
    if isinstance(batch, Mapping):  # a dict, or a UserDict such as Hugging Face's BatchEncoding
        return tuple((k, _signature(v)) for k, v in sorted(batch.items(), key=lambda kv: str(kv[0])))
    if isinstance(batch, (list, tuple)):
        return tuple(_signature(v) for v in batch)
    return (type(batch).__name__,)


def token_positions(batch: Any) -> int | None:
    """The (batch x sequence) positions of a batch: the product of the first two dimensions of its first tensor
    of two or more dimensions (a list or tuple in order, a mapping in insertion order); None if it has none.

    Example:
        >>> import torch
        >>> token_positions({"input_ids": torch.zeros(4, 128), "attention_mask": torch.ones(4, 128)})
        512
    """
    shape = getattr(batch, "shape", None)
    if shape is not None:
        return int(shape[0]) * int(shape[1]) if len(shape) >= 2 else None
    items = batch.values() if isinstance(batch, Mapping) else batch if isinstance(batch, (list, tuple)) else ()
    for item in items:
        n = token_positions(item)
        if n is not None:
            return n
    return None


class FlopCounterBase:
    """Measure the FLOPs of real training steps and add them up over steps, devices and resumes.

    The first micro-batch of each new batch shape runs under ``torch.utils.flop_counter.FlopCounterMode``
    from ``on_train_batch_start`` until its backward is done (``on_before_optimizer_step``, or the end of
    the micro-batch under gradient accumulation), so frozen parameters cost what they really cost
    (docs/science.md 8) and the optimizer is left out. Every other micro-batch adds the measured number for its
    shape in ``on_train_batch_start``: host arithmetic only, done where the batch is still warm in the CPU's
    caches. Attention is booked by one convention whatever kernel runs it ([K] Table 1's score and value
    products, halved when causal, whether the model says so with ``is_causal``, a causal mask or an eager
    softmax; see :mod:`lightning_scaling.flops`), so a shape's count is a property of the shape and the model,
    the same whichever of its batches came first, padded or not; :meth:`report` says how each attention call
    was booked, and the run-info file's ``flops`` section records it.

    Logs ``flops`` (cumulative, all devices), ``pf_days``, ``flops_per_step`` (the micro-batches trained since
    the previous optimizer step: every micro-batch of gradient accumulation, whatever its shape, summed over
    devices), ``flops_per_sec``, ``mfu`` and, counting tokens, ``useful_flops``.

    Useful FLOPs: with :class:`EffectiveEpochs` counting tokens (``count_tokens=...``, e.g. the sum of the
    attention mask), each micro-batch's FLOPs times the fraction of its token positions that are real tokens
    (``count_tokens(batch)`` over :func:`token_positions`, batch x sequence): the compute not spent on
    padding, at the batch's FLOPs per position (a short sequence's attention is booked at its batch's average
    per position). Cumulative, all devices; the token counts stay on the device until a log step.

    Args:
        peak_flops: the device's peak FLOP/s for MFU; default looked up from the GPU's name
            (:data:`lightning_scaling.flops.PEAK_FLOPS`); unknown means no MFU (one warning).
        dtype: the dtype of the peak to look up ("bf16", "fp16", "tf32", "fp32"); default from the
            Trainer's precision (:func:`lightning_scaling.flops.precision_dtype`).

    Raises:
        ValueError: ``peak_flops`` not a positive number, or an unknown ``dtype``.

    Example:
        >>> from lightning_scaling import EffectiveEpochs, FlopCounter
        >>> callbacks = [EffectiveEpochs(count_tokens=lambda b: b["attention_mask"].sum(), dataset_size=10**6),
        ...              FlopCounter(peak_flops=989e12)]
    """

    def __init__(self, peak_flops: float | None = None, dtype: str | None = None) -> None:
        if peak_flops is not None and not (isinstance(peak_flops, (int, float)) and peak_flops > 0):
            raise ValueError(f"peak_flops must be a positive number of FLOP/s, got {peak_flops!r}")
        if dtype is not None and dtype not in F.PEAK_DTYPES:
            raise ValueError(f"dtype must be one of {F.PEAK_DTYPES} (or None: from the Trainer's precision), "
                             f"got {dtype!r}")
        self.peak_flops = peak_flops
        self.dtype = dtype
        self.per_shape: dict[tuple, float] = {}
        self.last_measurement: F.StepFlops | None = None
        self.attention_booking: dict[str, int] = {}  # over every measured micro-batch: how attention was booked
        self.total_flops = 0.0  # all devices, as of the last sync
        self.useful_flops: float | None = None  # on non-padding tokens, all devices; None: tokens not counted
        self.step_flops = 0.0  # the last optimizer step's micro-batches, all devices, as of the last sync
        self._local = 0.0  # this rank since the last sync
        self._step = 0.0  # this rank: the micro-batches since the last optimizer step ...
        self._last_step = 0.0  # ... and those of the last optimizer step
        self._tokens_from: Any = None  # EffectiveEpochs counting tokens: its count of the current micro-batch
        self._tokens: dict[tuple, list] = {}  # shape -> [tokens since the last sync (host or device), positions]
        self._sig_tokens: list | None = None  # the entry of the current micro-batch's shape
        self._warned_positions = False
        self._measuring: F.StepMeasurement | None = None
        self._measuring_sig: tuple | None = None
        self._sig: tuple = ()  # the shapes of the last micro-batch ...
        self._sig_flops: float | None = None  # ... and their measured FLOPs (None: not measured yet)
        self._last_global_step: int | None = None
        self._step_tracker: Any = None  # _common.step_tracker, set at the train start
        self._clock: tuple[float, float] | None = None  # (time, total) at the last log
        self._peak: float | None = None
        self._warned = False
        self._reported = False
        self._warned_zero = False
        _common.skip_unused_hooks(self)  # per-batch hooks it leaves empty: not dispatched at all

    @property
    def state_key(self) -> str:
        return "FlopCounter"

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        from ..dashboard import ensure_layout

        ensure_layout(trainer)

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self._clock = None  # the throughput clock restarts cleanly, also after a resume
        self._last_global_step = trainer.global_step  # the first log boundary is the next optimizer step
        self._step_tracker = _common.step_tracker(trainer, pl_module)  # global_step in one read
        counter = _common.find_callback(trainer, "EffectiveEpochsBase")
        self._tokens_from = counter if getattr(counter, "count_tokens", None) is not None else None
        self._sig = ()  # the first micro-batch looks its shape up again (and its token entry)
        if self._tokens_from is not None and self.useful_flops is None:
            self.useful_flops = 0.0
        self._peak = self.peak_flops
        if self._peak is None:
            import torch

            device = getattr(pl_module, "device", None)
            if device is not None and device.type == "cuda":
                dtype = self.dtype or F.precision_dtype(getattr(trainer, "precision", "32-true"))
                self._peak = F.peak_flops(torch.cuda.get_device_name(device), dtype)
            if self._peak is None and not self._warned:
                self._warned = True
                _common.rank_zero_warn(trainer, "FlopCounter: the device's peak FLOP/s is unknown, so MFU is not "
                                                "logged; pass peak_flops=... to log it")

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        """The per-step work: log as of the optimizer step that just ended (on logging steps; the last one
        is logged by ``on_train_end``), then add this micro-batch's FLOPs, or start measuring a new shape
        (its FLOPs are added when the measurement ends)."""
        if _common.log_boundary(trainer, self):
            self.log_flops(trainer)
        sig = _signature(batch)
        if sig != self._sig:  # a new shape: look it up (the common case compares a few ints, no hashing)
            self._sig, self._sig_flops = sig, self.per_shape.get(sig)
            if self._tokens_from is not None:
                self._sig_tokens = self._token_entry(trainer, sig, batch)
        flops = self._sig_flops
        if flops is not None:
            self._local += flops  # host arithmetic: the FLOPs measured for this batch's shape
            self._step += flops
        elif self._measuring is None:
            self._measuring, self._measuring_sig = F.StepMeasurement(), sig

    def _token_entry(self, trainer: Any, sig: tuple, batch: Any) -> list | None:
        entry = self._tokens.get(sig)
        if entry is None:
            positions = token_positions(batch)
            if not positions:
                if not self._warned_positions:
                    self._warned_positions = True
                    _common.rank_zero_warn(trainer, "FlopCounter: a batch has no (batch, sequence) tensor to count "
                                                    "token positions in, so useful_flops leaves its batches out")
                return None
            entry = self._tokens[sig] = [0, positions]
        return entry

    def _finish_measurement(self, trainer: Any, pl_module: Any) -> None:
        if self._measuring is not None:
            self.last_measurement = self._measuring.stop()
            self.per_shape[self._measuring_sig] = self.last_measurement.flops
            self._local += self.last_measurement.flops  # the measured micro-batch itself
            self._step += self.last_measurement.flops
            for kind, calls in (self.last_measurement.attention_booking or {}).items():
                self.attention_booking[kind] = self.attention_booking.get(kind, 0) + calls
            if self._measuring_sig == self._sig:
                self._sig_flops = self.last_measurement.flops
            self._measuring = None
            if not self._reported:
                self._reported = True
                _common.rank_zero_info(trainer, self.report(pl_module))
            if self.last_measurement.flops == 0 and not self._warned_zero:
                self._warned_zero = True
                _common.rank_zero_warn(trainer, "FlopCounter: a training step measured 0 FLOP: its work ran where "
                                                "FlopCounterMode cannot see it (e.g. a compiled model's fused "
                                                "kernels, or no matmuls at all), so FLOPs, PF-days and MFU are 0; "
                                                "compare with flops.six_n(N) x tokens")

    def report(self, pl_module: Any = None) -> str:
        """What the last measurement counted, what it corrected and what it leaves out, beside 6N."""
        m = self.last_measurement
        if m is None:
            return "FlopCounter: no step measured yet"
        booked = "; ".join(f"{kind}: {calls} call(s)" for kind, calls in sorted((m.attention_booking or {}).items()))
        attention = (f"; attention {m.attention_flops:.4g} FLOP, booked at half the score matrix when causal, "
                     f"whatever kernel ran ({booked}), a correction of {m.attention_correction:+.4g}, "
                     f"{m.uncounted_attention_calls} call(s) invisible to the counter" if m.attention_calls else "")
        text = (f"FlopCounter: one micro-batch measures {m.flops:.4g} FLOP forward and backward "
                f"(FlopCounterMode {m.counted:.4g}{attention}). Not counted, as in 6N: "
                f"element-wise ops, norms and softmax (estimated {m.uncounted:.3g} FLOP, "
                f"{100 * m.uncounted_fraction:.1f}%) and the optimizer.")
        if pl_module is not None and hasattr(pl_module, "named_modules"):
            n = F.non_embedding_params(pl_module)
            text += f" For comparison 6N = {F.six_n(n):.4g} FLOP per token (N = {n} non-embedding parameters)."
        return text

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        if self._measuring is not None:
            self._finish_measurement(trainer, pl_module)
        if self._step:  # a second optimizer of the same batch (manual optimization) keeps the batch's FLOPs
            self._last_step, self._step = self._step, 0.0

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self._measuring is not None:  # under gradient accumulation: no optimizer step after this micro-batch
            self._finish_measurement(trainer, pl_module)
        entry = self._sig_tokens
        if entry is not None and self._tokens_from is not None:  # EffectiveEpochs counted it at the batch start
            entry[0] = entry[0] + self._tokens_from._batch_tokens  # a device tensor stays on the device

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self.log_flops(trainer)
        useful = self.useful_flops
        _common.write_run_info(trainer, "flops", {"total_flops": self.total_flops, "useful_flops": useful,
                                                  "attention_booking": dict(self.attention_booking)})
        if useful is not None and self.total_flops:
            _common.rank_zero_info(trainer, f"FlopCounter: {self.total_flops:.4g} FLOP in all, {useful:.4g} of them "
                                            f"on non-padding tokens ({100 * useful / self.total_flops:.1f}%; "
                                            f"padding {100 * (1 - useful / self.total_flops):.1f}%)")

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        if self._measuring is not None:  # never leave the counter's dispatch mode entered
            self._measuring.stop()
            self._measuring = None

    def _local_useful(self) -> float:
        """This rank's useful FLOPs since the last sync, from the token counts of each measured shape (reads the
        device counts in one transfer); the counts taken are reset."""
        entries = [(self.per_shape[sig], entry) for sig, entry in self._tokens.items()
                   if sig in self.per_shape and not (type(entry[0]) is int and entry[0] == 0)]
        if not entries:
            return 0.0
        import torch

        counts = [entry[0] for _, entry in entries]
        on_device = [c.reshape(()) for c in counts if isinstance(c, torch.Tensor)]
        read = iter(torch.stack(on_device).tolist() if on_device else [])
        useful = 0.0
        for (flops, entry), count in zip(entries, counts):
            tokens = float(next(read)) if isinstance(count, torch.Tensor) else float(count)
            useful += flops * tokens / entry[1]
            entry[0] = 0
        return useful

    def sync(self, trainer: Any) -> float:
        """Add every rank's FLOPs (and useful FLOPs) since the last sync to ``total_flops`` (and ``useful_flops``),
        and set ``step_flops`` (collective: one all-reduce)."""
        useful = self._local_useful() if self.useful_flops is not None else 0.0
        local, useful, step = _common.reduce_sum(trainer, [self._local, useful, self._last_step])
        self.total_flops += local
        if self.useful_flops is not None:
            self.useful_flops += useful
        self.step_flops = step
        self._local = 0.0
        return self.total_flops

    def log_flops(self, trainer: Any) -> None:
        total = self.sync(trainer)
        now = time.perf_counter()
        metrics = {"flops": total, "pf_days": F.pf_days(total), "flops_per_step": self.step_flops,
                   "useful_flops": self.useful_flops}
        if self._clock is not None and now > self._clock[0]:
            rate = (total - self._clock[1]) / (now - self._clock[0])
            metrics["flops_per_sec"] = rate
            if self._peak:
                metrics["mfu"] = F.mfu(rate / _common.world_size(trainer), self._peak)
        self._clock = (now, total)
        _common.log_scalars(trainer, tags.named(metrics), int(trainer.global_step))

    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        """Sum every rank's FLOPs into the saved state (collective, like ``Trainer.save_checkpoint``'s barrier)."""
        self.sync(trainer)
        checkpoint.setdefault("callbacks", {})[self.state_key] = self.state_dict()

    def state_dict(self) -> dict[str, Any]:
        # after on_save_checkpoint's sync the pending part is zero
        return {"total_flops": self.total_flops, "pending_flops": self._local, "useful_flops": self.useful_flops}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.total_flops = float(state["total_flops"])
        self._local = float(state.get("pending_flops", 0.0))
        useful = state.get("useful_flops")
        self.useful_flops = None if useful is None else float(useful)
