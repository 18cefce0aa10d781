"""The pure FLOP helpers of lightning_scaling.flops, checked against hand-derived counts (SCIENCE.md 8)."""

import contextlib

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from lightning_scaling.flops import (CAUSAL_EAGER, CAUSAL_FLAG, CAUSAL_MASK, FULL_EAGER, FULL_SDPA, PF_DAY,
                                     frozen_estimate, kaplan_flops_per_token, measure_step, mfu, non_embedding_params,
                                     peak_flops, pf_days, precision_dtype, six_n)
from models import TinyLM


def attention_step(causal: bool, b=2, h=3, lq=16, d=8):
    q, k, v = (torch.randn(b, h, lq, d, requires_grad=True) for _ in range(3))
    return lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal).sum().backward()


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("backend", [None, SDPBackend.MATH])
def test_attention_is_counted_once_and_halved_when_causal_on_every_cpu_kernel(causal, backend):
    b, h, lq, d = 2, 3, 16, 8
    scores_and_values = 2 * b * h * lq * lq * (d + d)  # QK^T and AV, forward ([K] Table 1's attention term)
    expected = 3 * scores_and_values / (2 if causal else 1)  # forward + backward (2x), half the pairs if causal
    step = attention_step(causal, b, h, lq, d)
    if backend is None:  # the fused CPU kernel: FlopCounterMode sees nothing, the watch adds it
        result = measure_step(step)
        assert result.uncounted_attention_calls == 1 and result.counted == 0
    else:  # the math backend: counted as bmm's, unmasked; the watch halves it for causal
        with sdpa_kernel(backend):
            result = measure_step(step)
        assert result.uncounted_attention_calls == 0 and result.counted == 3 * scores_and_values
    assert result.attention_calls == 1
    assert result.flops == expected


def attention_masks(b=2, lq=16, padded=5):
    """Boolean masks (true: attend) of shape (b, 1, lq, lq): causal, causal with the last keys of the second
    sequence padded (as Hugging Face passes a padded batch), and that padding alone (bidirectional)."""
    causal = torch.ones(lq, lq, dtype=torch.bool).tril().expand(b, 1, lq, lq)
    keys = torch.ones(b, 1, 1, lq, dtype=torch.bool)
    keys[1, ..., lq - padded:] = False
    return {"causal": causal, "causal+padding": causal & keys, "padding": keys.expand(b, 1, lq, lq)}


def additive(mask: torch.Tensor) -> torch.Tensor:
    """A boolean mask as the float mask eager attention adds to the scores (the dtype's minimum where masked)."""
    return torch.zeros(mask.shape).masked_fill(~mask, torch.finfo(torch.float32).min)


@pytest.mark.parametrize("name", ["causal", "causal+padding", "padding"])
@pytest.mark.parametrize("dtype", [torch.bool, torch.float32])
@pytest.mark.parametrize("backend", [None, SDPBackend.MATH])
def test_a_causal_attn_mask_is_booked_like_is_causal_padded_or_not(name, dtype, backend):
    b, h, lq, d = 2, 3, 16, 8
    q, k, v = (torch.randn(b, h, lq, d, requires_grad=True) for _ in range(3))
    mask = attention_masks(b, lq)[name]
    mask = mask if dtype is torch.bool else additive(mask)
    with sdpa_kernel(backend) if backend else contextlib.nullcontext():
        result = measure_step(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask).sum().backward())
        flag = measure_step(attention_step(True, b, h, lq, d))
    full = 3 * 2 * b * h * lq * lq * (d + d)
    if name == "padding":  # bidirectional: every key of the row is computed and booked
        assert result.attention_booking == {FULL_SDPA: 1} and result.flops == full
    else:  # padding or not, the same as is_causal=True: half the score matrix
        assert result.attention_booking == {CAUSAL_MASK: 1} and flag.attention_booking == {CAUSAL_FLAG: 1}
        assert result.flops == flag.flops == full / 2


def eager_attention(q, k, v, mask):
    scores = torch.matmul(q, k.transpose(-1, -2)) / q.shape[-1] ** 0.5 + additive(mask)
    return torch.matmul(F.softmax(scores, dim=-1), v)


@pytest.mark.parametrize("name", ["causal", "causal+padding", "padding"])
def test_eager_attention_is_booked_like_sdpa(name):
    b, h, lq, d = 2, 3, 16, 8
    q, k, v = (torch.randn(b, h, lq, d, requires_grad=True) for _ in range(3))
    mask = attention_masks(b, lq)[name]
    eager = measure_step(lambda: eager_attention(q, k, v, mask).sum().backward())
    sdpa = measure_step(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask).sum().backward())
    assert eager.flops == sdpa.flops  # the same model, whichever implementation
    assert eager.attention_booking == {(FULL_EAGER if name == "padding" else CAUSAL_EAGER): 1}
    assert eager.attention_calls == 1 and eager.attention_flops == sdpa.attention_flops
    # the counter saw Q K^T and A V in full (forward, and both operands' gradients); a causal booking halves them
    assert eager.counted == 3 * 2 * b * h * lq * lq * (d + d)
    assert eager.flops == eager.counted / (1 if name == "padding" else 2)


def test_a_whole_model_measures_the_same_on_the_fused_and_the_math_kernel():
    model, x = TinyLM(), torch.randint(0, 32, (4, 16))

    def step():
        F.cross_entropy(model(x).flatten(0, 1), x.flatten()).backward()

    fused = measure_step(step)
    with sdpa_kernel(SDPBackend.MATH):
        math = measure_step(step)
    assert fused.flops == math.flops
    assert fused.counted < math.flops < math.counted  # the fused kernel hid attention, the math one doubled it


def chain(d: int = 16, layers: int = 4, frozen: int = 2) -> nn.Sequential:
    mods = []
    for i in range(layers):
        mods += [nn.Linear(d, d, bias=False), nn.ReLU()]
        mods[-2].requires_grad_(i >= frozen)
    return nn.Sequential(*mods)


@pytest.mark.parametrize("frozen", [0, 2, 3])
def test_frozen_layers_cost_2n_plus_2n_act_plus_2n_trainable_exactly(frozen):
    d, layers, batch = 16, 4, 8
    net, x = chain(d, layers, frozen), torch.randn(batch, d)
    result = measure_step(lambda: net(x).sum().backward())
    n = layers * d * d
    trainable = (layers - frozen) * d * d
    n_act = (layers - frozen - 1) * d * d  # activation gradients above the earliest trainable layer
    assert result.flops == batch * frozen_estimate(n, n_act, trainable)
    if frozen == 0:  # 6N, less the first layer's input gradient that nothing needs
        assert result.flops == batch * (six_n(n) - 2 * d * d)


def test_uncounted_work_is_estimated_and_reported_not_added():
    model, x = TinyLM(), torch.randint(0, 32, (4, 16))
    result = measure_step(lambda: F.cross_entropy(model(x).flatten(0, 1), x.flatten()).backward())
    assert {"native_layer_norm", "gelu", "add"} <= set(result.uncounted_ops)
    assert "clone" not in result.uncounted_ops
    assert 0 < result.uncounted_fraction < 0.2  # element-wise work is small beside the matmuls here
    assert result.flops == result.counted + result.attention_correction  # the estimate is not in the total


def test_analytic_estimates():
    # [K] Table 1: the attention term's share is n_ctx / (12 d_model + n_ctx) when N = 12 n_layer d_model^2
    n_layer, d_model, n_ctx = 4, 64, 768
    n = 12 * n_layer * d_model ** 2
    c = kaplan_flops_per_token(n, n_layer, n_ctx, d_model)
    assert c - six_n(n) == pytest.approx(c * n_ctx / (12 * d_model + n_ctx))
    assert kaplan_flops_per_token(n, n_layer, 12 * d_model, d_model) == pytest.approx(2 * six_n(n))
    # [L]-style frozen body (0.1% trainable at the input and the top): about 4N; a linear probe: about 2N
    assert frozen_estimate(1e9, 1e9, 1e6) / 1e9 == pytest.approx(4.0, rel=1e-3)
    assert frozen_estimate(1e9, 0, 1e6) / 1e9 == pytest.approx(2.0, rel=1e-3)
    assert non_embedding_params(TinyLM(vocab=32, d=32)) == sum(p.numel() for p in TinyLM().parameters()) - 32 * 32


def test_pf_days_peaks_and_mfu():
    assert PF_DAY == 1e15 * 86400
    assert pf_days(8.64e19) == pytest.approx(1.0)
    assert pf_days(3.14e23) == pytest.approx(3634, rel=1e-3)  # GPT-3 175B's 3.14e23 FLOP
    assert peak_flops("NVIDIA H100 80GB HBM3", "bf16") == 989e12
    assert peak_flops("NVIDIA A100-SXM4-40GB", "fp32") == 19.5e12
    assert peak_flops("NVIDIA H200", "bf16") == 989e12
    assert peak_flops("NVIDIA H100 PCIe", "bf16") == 756e12  # the variant, not the SXM part
    assert peak_flops("NVIDIA A100 80GB PCIe") == 312e12 and peak_flops("NVIDIA A10", "tf32") == 62.5e12
    assert peak_flops("Some Future Accelerator") is None
    assert mfu(494.5e12, 989e12) == pytest.approx(0.5)


def test_peak_dtype_follows_the_trainer_precision():
    assert precision_dtype("bf16-mixed") == precision_dtype("bf16-true") == "bf16"
    assert precision_dtype("16-mixed") == "fp16"
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("highest")
        assert precision_dtype("32-true") == "fp32"
        torch.set_float32_matmul_precision("high")  # float32 matmuls on tensor cores
        assert precision_dtype("32-true") == "tf32"
    finally:
        torch.set_float32_matmul_precision(before)
