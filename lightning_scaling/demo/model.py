"""A small character-level decoder-only transformer (GPT) as a LightningModule.

Embedding of the 256 byte values plus learned positions, ``n_layer`` pre-LayerNorm blocks of causal
self-attention (``F.scaled_dot_product_attention(is_causal=True)``) and a 4x MLP, a final LayerNorm and
a tied or untied head. AdamW with a :func:`schedule` through ``LambdaLR``. It logs ``train_loss`` and
``lr`` every step and ``val_loss`` at each validation; ``optimizer_steps`` is logged with the
validation loss so a recorded curve knows exactly how many optimizer steps came before it.
"""

from __future__ import annotations

from typing import Callable

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from ..schedules import lr_multiplier
from .data import VOCAB

SCHEDULES = ("constant", "cosine", "wsd")


def schedule(kind: str, warmup: int, total_steps: int, decay_fraction: float = 0.2,
             min_ratio: float = 0.1) -> Callable[[int], float]:
    """The learning-rate multiplier after ``step`` optimizer steps (a ``LambdaLR`` lambda):
    :func:`lightning_scaling.schedules.lr_multiplier`.

    * ``constant``: linear warm-up over ``warmup`` steps, then 1 (the ``linear`` shape with its floor at 1).
    * ``cosine``: warm-up, then cosine decay to ``min_ratio`` at ``total_steps``.
    * ``wsd`` (warmup-stable-decay): warm-up, 1 until the last ``decay_fraction`` of ``total_steps``,
      then linear decay to ``min_ratio``.

    Raises ValueError for an unknown ``kind`` or a value out of range, saying which.
    """
    if kind not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {kind!r}")
    shape, floor = ("linear", 1.0) if kind == "constant" else (kind, min_ratio)
    return lr_multiplier(shape, total_steps, warmup_steps=warmup, final_lr_ratio=floor, decay_fraction=decay_fraction)


class Block(nn.Module):
    """Pre-LayerNorm transformer block: causal self-attention and a 4x GELU MLP."""

    def __init__(self, d_model: int, n_head: int):
        super().__init__()
        if d_model % n_head:
            raise ValueError(f"d_model ({d_model}) must be a multiple of n_head ({n_head})")
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.qkv, self.proj = nn.Linear(d_model, 3 * d_model), nn.Linear(d_model, d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))
        self.n_head = n_head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.n_head, d // self.n_head).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(a.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.ln2(x))


class CharGPT(pl.LightningModule):
    """A decoder-only transformer over bytes (vocabulary 256).

    Args:
        d_model, n_layer, n_head, ctx: width, depth, heads and context length.
        tied: share the embedding matrix with the output head.
        lr, weight_decay, warmup: AdamW settings and linear warm-up steps.
        schedule, total_steps, decay_fraction, min_ratio: the learning-rate schedule (see :func:`schedule`).
    """

    def __init__(self, d_model: int = 64, n_layer: int = 2, n_head: int = 4, ctx: int = 64, tied: bool = False,
                 lr: float = 3e-3, weight_decay: float = 0.01, warmup: int = 50, schedule: str = "constant",
                 total_steps: int = 10_000, decay_fraction: float = 0.2, min_ratio: float = 0.1):
        super().__init__()
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
        self.save_hyperparameters()
        self.tok = nn.Embedding(VOCAB, d_model)
        self.pos = nn.Parameter(torch.zeros(ctx, d_model))
        self.blocks = nn.Sequential(*[Block(d_model, n_head) for _ in range(n_layer)])
        self.ln = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, VOCAB, bias=False)
        if tied:
            self.head.weight = self.tok.weight
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.ln(self.blocks(self.tok(x) + self.pos[: x.shape[1]])))

    def n_params(self, non_embedding: bool = False) -> int:
        """Parameter count; ``non_embedding`` leaves out token and position embeddings ([K] N)."""
        params = {id(p): p for p in self.parameters()}
        if non_embedding:
            params.pop(id(self.tok.weight), None)
            params.pop(id(self.pos), None)
        return sum(p.numel() for p in params.values())

    def _loss(self, batch) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self(x).flatten(0, 1), y.flatten())

    def training_step(self, batch, batch_idx):
        loss = self._loss(batch)
        self.log("train_loss", loss, prog_bar=True)
        self.log("lr", self.lr_schedulers().get_last_lr()[0])  # a host float: no device sync
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self._loss(batch), prog_bar=True)

    def on_validation_epoch_end(self) -> None:
        self.log("optimizer_steps", float(self.global_step))

    def configure_optimizers(self):
        h = self.hparams
        decay = [p for n, p in self.named_parameters() if p.dim() >= 2]
        no_decay = [p for n, p in self.named_parameters() if p.dim() < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": h.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}], lr=h.lr, betas=(0.9, 0.95))
        factor = schedule(h.schedule, h.warmup, h.total_steps, h.decay_fraction, h.min_ratio)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
