"""Tiny models and data for driving real Trainers on CPU in tests."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset


def regression_data(n: int = 64, dim: int = 8, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g)
    w = torch.randn(dim, 1, generator=g)
    return TensorDataset(x, x @ w + 0.1 * torch.randn(n, 1, generator=g))


class Regressor(pl.LightningModule):
    """A linear model that logs train_loss and val_loss (optionally NaN, or under another name)."""

    def __init__(self, dim: int = 8, lr: float = 0.05, val_name: str = "val_loss", nan_at: tuple[int, ...] = ()):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, 16), nn.Tanh(), nn.Linear(16, 1))
        self.lr, self.val_name, self.nan_at = lr, val_name, set(nan_at)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        loss = F.mse_loss(self.net(x), y)
        if self.global_step in self.nan_at:
            loss = loss * float("nan")
        self.log(self.val_name, loss)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


class TokenData(Dataset):
    def __init__(self, n: int = 32, ctx: int = 16, vocab: int = 32, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randint(0, vocab, (n, ctx + 1), generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i, :-1], self.x[i, 1:]


class StreamOfTokens(IterableDataset):
    """The same data with no __len__."""

    def __init__(self, n: int = 32, **kw):
        self.data = TokenData(n, **kw)

    def __iter__(self):
        return (self.data[i] for i in range(len(self.data)))


class TinyLM(pl.LightningModule):
    """Embedding, one causal attention block (F.scaled_dot_product_attention), MLP, head."""

    def __init__(self, vocab: int = 32, d: int = 32, heads: int = 2, freeze_body: bool = False):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab)
        self.heads = heads
        if freeze_body:
            for module in (self.emb, self.qkv, self.proj, self.mlp):
                module.requires_grad_(False)

    def forward(self, x):
        h = self.emb(x)
        b, t, d = h.shape
        q, k, v = self.qkv(h).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, d)
        h = h + self.proj(a)
        h = h + self.mlp(h)
        return self.head(self.norm(h))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x).flatten(0, 1), y.flatten())
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", F.cross_entropy(self(x).flatten(0, 1), y.flatten()))

    def configure_optimizers(self):
        return torch.optim.AdamW([p for p in self.parameters() if p.requires_grad], lr=3e-3)


def make_trainer(tmp_path, callbacks=(), **kw) -> pl.Trainer:
    defaults = dict(accelerator="cpu", devices=1, max_steps=8, enable_progress_bar=False,
                    enable_model_summary=False, logger=False, enable_checkpointing=False,
                    default_root_dir=str(tmp_path), log_every_n_steps=1, num_sanity_val_steps=0)
    defaults.update(kw)
    return pl.Trainer(callbacks=list(callbacks), **defaults)


def loader(dataset, batch_size: int = 8, **kw) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, **kw)


class CurveRegressor(Regressor):
    """Trains for real, but reports a known learning curve as val_loss: L(S) = 1 + (40/S)^0.7.

    The rule's accuracy is tested on curves; this module tests the callback's plumbing (hooks, ranks,
    resume, replay agreement) with a loss whose stop point is known (about step 1070).
    """

    def validation_step(self, batch, batch_idx):
        step = max(int(self.global_step), 1)
        value = 1.0 + (40.0 / step) ** 0.7
        if step in self.nan_at:
            value = float("nan")
        self.log(self.val_name, torch.tensor(value, dtype=torch.float32))
