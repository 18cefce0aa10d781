"""Fine-tuning with the body frozen: ~0.1% of the weights trainable, yet each step costs ~4N FLOPs per token.

A "pretrained-style" character GPT (lightning_scaling.demo.model.CharGPT, 3.3M parameters; ``--pretrain``
steps of training first if you like) is trained for a few steps three ways, with FlopCounter measuring
what actually executes (FlopCounterMode):

* full training: every weight trainable, ~6N FLOPs per token ([K] 2.1);
* frozen body, LayerNorms trainable (~0.1% of the weights, the frozen pretrained transformer of
  Lu et al. 2021): the forward pass is all of the network and the backward pass still carries
  activation gradients down to the first LayerNorm, so ~2N + 2N_act + 2N_trainable ~ 4N per token;
* a linear probe (only the output head trains): ~2N.

So a tiny trainable fraction does not make training cheap (docs/science.md section 8): the measured cost is
near 4N, not 0.1% of 6N.

    python examples/finetune_frozen.py [--quick] [--pretrain 0]
"""

from __future__ import annotations

import argparse
import time
import warnings

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from lightning_scaling import FlopCounter
from lightning_scaling.demo.data import char_data
from lightning_scaling.demo.model import CharGPT
from lightning_scaling.flops import frozen_estimate, non_embedding_params, six_n


def freeze(model: CharGPT, mode: str) -> None:
    """``full``: all trainable; ``layernorm``: only the LayerNorms; ``probe``: only the output head."""
    for name, p in model.named_parameters():
        if mode == "full":
            p.requires_grad_(True)
        elif mode == "layernorm":
            p.requires_grad_(".ln" in f".{name}")
        else:
            p.requires_grad_(name.startswith("head."))


def activation_params(model: CharGPT, mode: str) -> int:
    """N_act: parameters of the layers above the earliest trainable one (they pass activation gradients)."""
    if mode == "probe":
        return 0
    return non_embedding_params(model)


def measure(model: CharGPT, mode: str, data, steps: int, batch: int) -> dict:
    """Train ``steps`` steps with FlopCounter and return FLOPs per token against the estimates."""
    freeze(model, mode)
    counter = FlopCounter()
    trainer = pl.Trainer(accelerator="cpu", max_steps=steps, callbacks=[counter], logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         limit_val_batches=0)
    start = time.perf_counter()
    trainer.fit(model, DataLoader(data.train, batch_size=batch, shuffle=True, drop_last=True))
    seconds = time.perf_counter() - start
    tokens = batch * model.hparams.ctx
    n = non_embedding_params(model)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    measured = counter.last_measurement.flops / tokens
    return {"mode": mode, "N": n, "trainable": trainable, "trainable_fraction": trainable / model.n_params(),
            "flops_per_token": measured, "per_N": measured / n, "six_n": six_n(n),
            "estimate": frozen_estimate(n, activation_params(model, mode), trainable),
            "naive": six_n(n) * trainable / model.n_params(), "ms_per_step": 1000 * seconds / steps}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smaller model and fewer steps (tests)")
    parser.add_argument("--pretrain", type=int, default=0, help="steps of full training before fine-tuning")
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    d_model, n_layer, steps, batch = (128, 2, 3, 4) if args.quick else (256, 4, args.steps, 8)
    data = char_data("pydoc", 64, train_tokens=65_536)
    model = CharGPT(d_model=d_model, n_layer=n_layer, n_head=4, ctx=64)
    if args.pretrain:
        measure(model, "full", data, args.pretrain, batch)
    rows = [measure(model, mode, data, steps, batch) for mode in ("full", "layernorm", "probe")]
    print(f"\nCharGPT, N = {rows[0]['N']:,} non-embedding parameters; FLOPs per token of a training step:")
    print(f"{'trainable':>22} {'fraction':>9} {'measured':>11} {'= x N':>7} {'2N+2Nact+2Ntr':>14} "
          f"{'fraction x 6N':>14} {'ms/step':>8}")
    for r in rows:
        label = {"full": "all weights", "layernorm": "LayerNorms only", "probe": "output head only"}[r["mode"]]
        print(f"{label:>22} {r['trainable_fraction']:>9.2%} {r['flops_per_token']:>11.3e} {r['per_N']:>7.2f} "
              f"{r['estimate']:>14.3e} {r['naive']:>14.3e} {r['ms_per_step']:>8.1f}")
    ln = rows[1]
    print(f"\nWith {ln['trainable_fraction']:.2%} of the weights trainable a step still costs {ln['per_N']:.1f}N "
          f"FLOPs per token ({ln['flops_per_token'] / rows[0]['flops_per_token']:.0%} of full training), "
          f"not {ln['trainable_fraction']:.2%} of 6N: the whole network runs forward and, below the top, backward.")
    return rows


if __name__ == "__main__":
    main()
