"""FLOPs of a training step: measured with ``torch.utils.flop_counter.FlopCounterMode`` and analytic.

SCIENCE.md 8: per token C ~ 2N + 2N_act + 2N_trainable (6N fully trainable, [K] 2.1; forward
2N + 2 n_layer n_ctx d_attn, [K] Table 1). The counter counts the matmuls that actually run, so frozen
weights are handled, with two blind spots corrected here: causal scaled_dot_product_attention is
counted as if unmasked (2x), and on CPU the fused SDPA kernel is not counted at all. Work the counter
never counts (element-wise ops, norms, softmax; the optimizer is outside the measured window) is
estimated and reported beside the measurement, not added: 6N leaves it out too ([K] 2.1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from .planning import PF_DAY  # one PF-day in FLOP ([K]): 1e15 FLOP/s x 86400 s

#: Dense peak FLOP/s per device by (name fragment, dtype), from the vendors' data sheets (no sparsity:
#: the sheets' "with sparsity" figures halved). "tf32" is fp32 matmuls on tensor cores. The first
#: fragment contained in the device name wins, so variants come before their family.
PEAK_FLOPS: dict[tuple[str, str], float] = {
    ("B200", "bf16"): 2250e12, ("B200", "fp16"): 2250e12, ("B200", "tf32"): 1100e12,
    ("H100 PCIe", "bf16"): 756e12, ("H100 PCIe", "fp16"): 756e12, ("H100 PCIe", "tf32"): 378e12,
    ("H100 PCIe", "fp32"): 51e12,
    ("H100 NVL", "bf16"): 835e12, ("H100 NVL", "fp16"): 835e12, ("H100 NVL", "tf32"): 417e12,
    ("H100 NVL", "fp32"): 60e12,
    ("H200", "bf16"): 989e12, ("H200", "fp16"): 989e12, ("H200", "tf32"): 494e12, ("H200", "fp32"): 67e12,
    ("H100", "bf16"): 989e12, ("H100", "fp16"): 989e12, ("H100", "tf32"): 494e12, ("H100", "fp32"): 67e12,  # SXM
    ("A100", "bf16"): 312e12, ("A100", "fp16"): 312e12, ("A100", "tf32"): 156e12, ("A100", "fp32"): 19.5e12,
    ("L40S", "bf16"): 362e12, ("L40S", "fp16"): 362e12, ("L40S", "tf32"): 183e12, ("L40S", "fp32"): 91.6e12,
    ("L4", "bf16"): 121e12, ("L4", "fp16"): 121e12, ("L4", "tf32"): 60e12, ("L4", "fp32"): 30.3e12,
    ("A10", "bf16"): 125e12, ("A10", "fp16"): 125e12, ("A10", "tf32"): 62.5e12, ("A10", "fp32"): 31.2e12,
    ("V100", "fp16"): 125e12, ("V100", "fp32"): 15.7e12,
    ("T4", "fp16"): 65e12, ("T4", "fp32"): 8.1e12,
}

#: The dtypes of :data:`PEAK_FLOPS`.
PEAK_DTYPES = ("bf16", "fp16", "tf32", "fp32")


def pf_days(flop: float) -> float:
    return float(flop) / PF_DAY


def six_n(n_params: float) -> float:
    """Training FLOPs per token of a fully trainable model, 6N ([K] 2.1)."""
    return 6.0 * n_params


def non_embedding_params(module: torch.nn.Module) -> int:
    """N as [K] counts it: all parameters except those of embedding layers (token and position)."""
    embedding = {id(p) for m in module.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()}
    return sum(p.numel() for p in module.parameters() if id(p) not in embedding)


def kaplan_flops_per_token(n_params: float, n_layer: int, n_ctx: int, d_attn: int) -> float:
    """Training FLOPs per token with the attention term: 3 (2N + 2 n_layer n_ctx d_attn) ([K] Table 1)."""
    return 3.0 * (2.0 * n_params + 2.0 * n_layer * n_ctx * d_attn)


def frozen_estimate(n_params: float, n_act: float, n_trainable: float) -> float:
    """FLOPs per token with frozen weights: 2N + 2N_act + 2N_trainable (SCIENCE.md 8, after [L]).

    n_act: parameters of the layers that need activation gradients (above the earliest trainable one).
    """
    return 2.0 * n_params + 2.0 * n_act + 2.0 * n_trainable


def peak_flops(device_name: str, dtype: str = "bf16") -> float | None:
    """Peak dense FLOP/s of a device named like ``torch.cuda.get_device_name()``, or None if unknown."""
    for (fragment, kind), value in PEAK_FLOPS.items():
        if fragment.lower() in device_name.lower() and kind == dtype:
            return value
    return None


def precision_dtype(precision: Any) -> str:
    """The peak-table dtype of a Lightning ``precision`` ("bf16-mixed" -> "bf16", "16-mixed" -> "fp16", "32-true"
    -> "fp32", or "tf32" when float32 matmuls may use tensor cores: ``torch.set_float32_matmul_precision``)."""
    text = str(precision)
    if text.startswith("bf16"):
        return "bf16"
    if text.startswith("16"):
        return "fp16"
    return "fp32" if torch.get_float32_matmul_precision() == "highest" else "tf32"


def mfu(achieved_flops_per_sec: float, peak: float) -> float:
    """Model FLOPs utilisation: achieved FLOP/s over the device's peak."""
    return float(achieved_flops_per_sec) / float(peak)


def _sdpa_flops(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool) -> float:
    """Forward FLOPs of attention scores and weighted values: 2 B H Lq Lk (d + d_v), halved if causal."""
    *batch, lq, d = q.shape
    lk, dv = k.shape[-2], v.shape[-1]
    flops = 2.0 * math.prod(batch) * lq * lk * (d + dv)
    return flops / 2 if causal else flops


class _AttentionWatch(TorchFunctionMode):
    """Sees every F.scaled_dot_product_attention call and how much the FLOP counter booked for it."""

    def __init__(self, counter: FlopCounterMode) -> None:
        super().__init__()
        self.counter = counter
        self.correction = 0.0  # FLOPs to add to the counter's total
        self.calls = 0
        self.uncounted_calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is not F.scaled_dot_product_attention:
            return func(*args, **kwargs)
        before = self.counter.get_total_flops()
        out = func(*args, **kwargs)
        counted = self.counter.get_total_flops() - before
        q, k, v = args[:3]
        causal = bool(kwargs.get("is_causal", args[5] if len(args) > 5 else False))
        true_fwd = _sdpa_flops(q, k, v, causal)
        grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
        factor = 3.0 if grad else 1.0  # backward of attention ~ 2x its forward
        self.calls += 1
        if counted == 0:
            self.uncounted_calls += 1
            self.correction += factor * true_fwd
        else:
            self.correction += factor * (true_fwd - counted)  # e.g. causal counted as unmasked
        return out


#: Pointwise-tagged aten ops that move or create data without arithmetic.
_NOT_ARITHMETIC = frozenset({"clone", "copy", "copy_", "_to_copy", "fill", "fill_", "zero_", "detach", "alias",
                             "lift_fresh", "zeros_like", "ones_like", "empty_like", "full_like"})

#: Rough FLOPs per element of the ops FlopCounterMode never counts: norms and softmax (mean, variance,
#: normalise, scale, shift), and their backward passes.
_NORM_FLOPS_PER_ELEMENT = 5.0


def _numel(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel()
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], torch.Tensor):
        return value[0].numel()
    return 0


class _UncountedWatch(TorchDispatchMode):
    """Estimates the arithmetic of the aten ops FlopCounterMode has no formula for.

    Pointwise ops (aten tag ``pointwise``) cost one FLOP per output element, reductions one per input
    element, norms and softmax :data:`_NORM_FLOPS_PER_ELEMENT` per input element; views, copies,
    indexing and attention (corrected separately) cost nothing here. An estimate for a report.
    """

    def __init__(self, registry: dict) -> None:
        super().__init__()
        self.registry = registry
        self.flops = 0.0
        self.ops: dict[str, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        packet = func._overloadpacket
        if packet in self.registry:
            return out
        name = packet.__name__
        if "attention" in name or name in _NOT_ARITHMETIC:
            return out
        if torch.Tag.pointwise in func.tags:
            cost = float(_numel(out))
        elif "norm" in name or "softmax" in name:
            cost = _NORM_FLOPS_PER_ELEMENT * _numel(args[0] if args else None)
        elif torch.Tag.reduction in func.tags:
            cost = float(_numel(args[0] if args else None))
        else:
            return out
        if cost:
            self.flops += cost
            self.ops[name] = self.ops.get(name, 0) + 1
        return out


@dataclass
class StepFlops:
    """FLOPs of one measured training step (forward and backward)."""

    flops: float  # corrected total: matmuls, convolutions and attention
    counted: float  # what FlopCounterMode reported
    attention_correction: float
    attention_calls: int
    uncounted_attention_calls: int
    uncounted: float = 0.0  # estimated element-wise / norm / softmax work, not in ``flops``
    uncounted_ops: dict[str, int] | None = None  # aten op name -> calls behind ``uncounted``

    @property
    def uncounted_fraction(self) -> float:
        """The estimated uncounted work relative to ``flops``."""
        return self.uncounted / self.flops if self.flops else 0.0


class StepMeasurement:
    """Enter :class:`FlopCounterMode` (plus the attention watch) now and read the step's FLOPs at ``stop``.

    The two halves can sit in different hooks of a training loop (start of the batch, before the
    optimizer step), so the optimizer's own work is left out, as in [K]'s 6N.
    """

    def __init__(self) -> None:
        self.counter = FlopCounterMode(display=False)
        self.watch = _AttentionWatch(self.counter)
        self.uncounted = _UncountedWatch(self.counter.flop_registry)
        self.uncounted.__enter__()  # below the counter: sees the ops it runs after its decompositions
        self.counter.__enter__()
        self.watch.__enter__()

    def stop(self) -> StepFlops:
        self.watch.__exit__(None, None, None)
        self.counter.__exit__(None, None, None)
        self.uncounted.__exit__(None, None, None)
        counted = float(self.counter.get_total_flops())
        return StepFlops(counted + self.watch.correction, counted, self.watch.correction, self.watch.calls,
                         self.watch.uncounted_calls, self.uncounted.flops, dict(self.uncounted.ops))


def measure_step(step: Callable[[], Any]) -> StepFlops:
    """FLOPs of running ``step()`` (e.g. a forward and a backward), corrected for attention."""
    m = StepMeasurement()
    try:
        step()
    finally:
        result = m.stop()
    return result
