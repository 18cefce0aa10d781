"""FLOPs of a training step: measured with ``torch.utils.flop_counter.FlopCounterMode`` and analytic.

docs/science.md 8: per token C ~ 2N + 2N_act + 2N_trainable (6N fully trainable, [K] 2.1; forward
2N + 2 n_layer n_ctx d_attn, [K] Table 1). The counter counts the matmuls that actually run, so frozen
weights are handled, with the blind spots of attention corrected here: causal attention is counted as if
unmasked (2x: scaled_dot_product_attention with is_causal=True or a causal mask, or eager matmuls), and on
CPU the fused SDPA kernel is not counted at all. Attention is booked by one convention whatever computes it
(:class:`_AttentionWatch`), so a shape's count is a property of the shape and the model. Work the counter
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
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes
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


def n_params(module: torch.nn.Module, trainable_only: bool = False) -> int:
    """N as the run-info file records it: every parameter of ``module`` (or only those that require grad).

    Example:
        >>> n_params(torch.nn.Linear(3, 2))
        8
    """
    return sum(int(p.numel()) for p in module.parameters() if p.requires_grad or not trainable_only)


def non_embedding_params(module: torch.nn.Module) -> int:
    """N as [K] counts it: all parameters except those of embedding layers (token and position)."""
    embedding = {id(p) for m in module.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()}
    return sum(p.numel() for p in module.parameters() if id(p) not in embedding)


def kaplan_flops_per_token(n_params: float, n_layer: int, n_ctx: int, d_attn: int) -> float:
    """Training FLOPs per token with the attention term: 3 (2N + 2 n_layer n_ctx d_attn) ([K] Table 1)."""
    return 3.0 * (2.0 * n_params + 2.0 * n_layer * n_ctx * d_attn)


def frozen_estimate(n_params: float, n_act: float, n_trainable: float) -> float:
    """FLOPs per token with frozen weights: 2N + 2N_act + 2N_trainable (docs/science.md 8, after [L]).

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


#: How :class:`_AttentionWatch` books an attention call (the keys of ``StepFlops.attention_booking``).
CAUSAL_FLAG = "causal (scaled_dot_product_attention, is_causal=True)"
CAUSAL_MASK = "causal (scaled_dot_product_attention, a causal attn_mask)"
CAUSAL_EAGER = "causal (eager: matmul, causal softmax, matmul)"
FULL_SDPA = "full (scaled_dot_product_attention)"
FULL_EAGER = "full (eager: matmul, softmax, matmul)"

_MATMULS = frozenset({torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.bmm, torch.Tensor.bmm})
_SOFTMAXES = frozenset({F.softmax, torch.softmax, torch.Tensor.softmax})


def _hides_upper_triangle(allowed: torch.Tensor) -> bool:
    """True when no query attends to a later key (SDPA's ``is_causal``): ``allowed`` (..., Lq, Lk) is true or
    nonzero where a query may attend, and nothing above the diagonal is. Reads the tensor: a host sync, paid
    once per measured micro-batch, outside the counters."""
    if allowed.dim() < 2 or allowed.shape[-2] < 2:
        return False
    with _disable_current_modes(), torch.no_grad():
        return not bool(torch.triu(allowed.detach(), 1).any())


def _mask_is_causal(mask: torch.Tensor) -> bool:
    """Whether an SDPA ``attn_mask`` (boolean: true = attend; float: added to the scores, masked where it is
    -inf or near the dtype's minimum, as Hugging Face builds it) hides every later key: causal with padding."""
    if mask.dtype == torch.bool:
        return _hides_upper_triangle(mask)
    if not mask.is_floating_point():
        return False
    with _disable_current_modes(), torch.no_grad():
        allowed = mask.detach() > torch.finfo(mask.dtype).min / 2
    return _hides_upper_triangle(allowed)


def _activations(args: tuple) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The two operands of a batched matmul when both are activations (neither a parameter, both 3-D or
    more), as in attention's Q K^T and P V; None otherwise (a layer's weight, a plain matrix product)."""
    if len(args) < 2:
        return None
    a, b = args[0], args[1]
    if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)) or a.dim() < 3 or b.dim() < 3:
        return None
    if isinstance(a, torch.nn.Parameter) or isinstance(b, torch.nn.Parameter):
        return None
    return a, b


def _backward_factor(*tensors: torch.Tensor) -> float:
    """Forward plus backward over forward of a product of ``tensors``: 1, plus 1 per operand needing a gradient."""
    if not torch.is_grad_enabled():
        return 1.0
    return 1.0 + sum(bool(t.requires_grad) for t in tensors)


class _AttentionWatch(TorchFunctionMode):
    """Books attention as the same FLOPs whatever kernel or mask computes it, and corrects what the counter saw.

    The convention: attention costs its score and weighted-value products, 2 B H Lq Lk (d + d_v) forward
    ([K] Table 1's attention term), halved when causal (each query sees the keys up to itself, as a causal
    kernel computes it), and twice that again backward. Causal is read from the model, not from the
    kernel it happened to pick: ``scaled_dot_product_attention`` with ``is_causal=True`` or with an
    ``attn_mask`` that hides every later key (causal plus padding, as Hugging Face models pass it for a padded
    batch); eager attention, a batched matmul of two activations whose result goes through a softmax that is
    zero above the diagonal, and the matmul of that softmax with the values. So a padded and an unpadded
    batch of one shape, or the eager and the SDPA implementation of one model, measure the same. What the
    counter booked for each call (unmasked, or nothing for the fused CPU kernel) is replaced by this.
    One exception: in eager attention a query row with every key masked (left padding) softmaxes to uniform
    weights, not zeros, so such a batch is booked full.
    """

    def __init__(self, counter: FlopCounterMode) -> None:
        super().__init__()
        self.counter = counter
        self.correction = 0.0  # FLOPs to add to the counter's total
        self.flops = 0.0  # attention FLOPs as booked, forward and backward
        self.calls = 0
        self.uncounted_calls = 0
        self.booking: dict[str, int] = {}
        self._scores: dict[tuple, list[tuple[float, float]]] = {}  # scores' shape -> (counted, factor), unpaired
        self._probs: dict[tuple, list[bool]] = {}  # softmaxed scores' shape -> causal?, awaiting their values

    def _book(self, kind: str | None, counted: float, booked: float) -> None:
        """Replace what the counter counted for a product by what the convention books; ``kind``: a new call."""
        if kind is not None:
            self.calls += 1
            self.booking[kind] = self.booking.get(kind, 0) + 1
        self.correction += booked - counted
        self.flops += booked

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            return self._sdpa(func, args, kwargs)
        if func in _MATMULS:
            operands = _activations(args)
            if operands is not None:
                return self._matmul(func, args, kwargs, operands)
        elif func in _SOFTMAXES:
            return self._softmax(func, args, kwargs)
        return func(*args, **kwargs)

    def _sdpa(self, func, args, kwargs):
        before = self.counter.get_total_flops()
        out = func(*args, **kwargs)
        counted = self.counter.get_total_flops() - before
        q, k, v = args[:3]
        mask = kwargs.get("attn_mask", args[3] if len(args) > 3 else None)
        if kwargs.get("is_causal", args[5] if len(args) > 5 else False):
            kind = CAUSAL_FLAG
        elif isinstance(mask, torch.Tensor) and _mask_is_causal(mask):
            kind = CAUSAL_MASK
        else:
            kind = FULL_SDPA
        factor = 3.0 if torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v)) else 1.0
        if counted == 0:
            self.uncounted_calls += 1
        self._book(kind, factor * counted, factor * _sdpa_flops(q, k, v, kind != FULL_SDPA))
        return out

    def _matmul(self, func, args, kwargs, operands):
        before = self.counter.get_total_flops()
        out = func(*args, **kwargs)
        counted = float(self.counter.get_total_flops() - before)
        factor = _backward_factor(*operands)
        pending = self._probs.get(tuple(operands[0].shape))
        if pending:  # softmaxed scores times the values: the second half of an eager attention
            causal = pending.pop(0)
            self._book(None, factor * counted, factor * counted / (2 if causal else 1))
        elif isinstance(out, torch.Tensor):  # maybe Q K^T: booked when a softmax takes it
            self._scores.setdefault(tuple(out.shape), []).append((counted, factor))
        return out

    def _softmax(self, func, args, kwargs):
        out = func(*args, **kwargs)
        x = args[0] if args else kwargs.get("input")
        dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
        if not isinstance(x, torch.Tensor) or dim is None or dim not in (-1, x.dim() - 1):
            return out
        scores = self._scores.get(tuple(x.shape))
        if scores:
            counted, factor = scores.pop()
            causal = _hides_upper_triangle(out)
            self._book(CAUSAL_EAGER if causal else FULL_EAGER, factor * counted,
                       factor * counted / (2 if causal else 1))
            self._probs.setdefault(tuple(out.shape), []).append(causal)
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
    attention_flops: float = 0.0  # attention as booked (in ``flops``), forward and backward
    attention_booking: dict[str, int] | None = None  # how each attention call was booked -> calls

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
                         self.watch.uncounted_calls, self.uncounted.flops, dict(self.uncounted.ops),
                         self.watch.flops, dict(self.watch.booking))


def measure_step(step: Callable[[], Any]) -> StepFlops:
    """FLOPs of running ``step()`` (e.g. a forward and a backward), corrected for attention."""
    m = StepMeasurement()
    try:
        step()
    finally:
        result = m.stop()
    return result
