"""`make demo`: a small character-level GPT on Python's own documentation, with all four callbacks.

The text is ``pydoc_data.topics`` (about 465k characters that ship with Python: no download). The run
logs to ``./runs`` with a TensorBoardLogger, stops by ExtraEarlyStopping, prints a summary and the
command that opens the dashboard.

    python -m lightning_scaling.demo [--max-minutes 3] [--quick]
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.loggers import TensorBoardLogger
from torch import nn
from torch.utils.data import DataLoader, Dataset

from . import DataLimitGap, EffectiveEpochs, ExtraEarlyStopping, FlopCounter, PowerLaw, planning
from .flops import pf_days

LD_JSON = Path(__file__).parent / "data" / "demo_ld.json"


def pydoc_text() -> str:
    """The documentation text that ships with Python, in a fixed order."""
    from pydoc_data.topics import topics

    return "\n".join(topics[k] for k in sorted(topics))


class CharWindows(Dataset):
    """Non-overlapping windows of ``ctx + 1`` byte values (inputs and next-character targets)."""

    def __init__(self, data: torch.Tensor, ctx: int):
        self.data, self.ctx = data, ctx

    def __len__(self) -> int:
        return (len(self.data) - 1) // self.ctx

    def __getitem__(self, i: int):
        chunk = self.data[i * self.ctx: i * self.ctx + self.ctx + 1]
        return chunk[:-1], chunk[1:]


def char_data(ctx: int = 64, train_chars: int | None = None, val_chars: int = 16384):
    """Train/validation windows: the last ``val_chars`` bytes validate, the first ``train_chars`` train."""
    raw = torch.tensor(list(pydoc_text().encode("utf-8")), dtype=torch.long)
    val, train = raw[-val_chars:], raw[:-val_chars]
    if train_chars is not None:
        train = train[:train_chars]
    return CharWindows(train, ctx), CharWindows(val, ctx)


class Block(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
        self.heads = heads

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(a.transpose(1, 2).reshape(b, t, d))
        return x + self.mlp(self.ln2(x))


class CharGPT(pl.LightningModule):
    """A decoder-only transformer over bytes (vocabulary 256)."""

    def __init__(self, d: int = 64, n_layer: int = 2, heads: int = 4, ctx: int = 64, lr: float = 3e-3,
                 warmup: int = 50):
        super().__init__()
        self.save_hyperparameters()
        self.tok = nn.Embedding(256, d)
        self.pos = nn.Parameter(torch.zeros(ctx, d))
        self.blocks = nn.Sequential(*[Block(d, heads) for _ in range(n_layer)])
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, 256, bias=False)

    def forward(self, x):
        return self.head(self.ln(self.blocks(self.tok(x) + self.pos[: x.shape[1]])))

    def _loss(self, batch):
        x, y = batch
        return F.cross_entropy(self(x).flatten(0, 1), y.flatten())

    def training_step(self, batch, batch_idx):
        loss = self._loss(batch)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", self._loss(batch), prog_bar=True)

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=0.01)
        warm = max(self.hparams.warmup, 1)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def run(out: str = "runs", max_minutes: float = 3.0, max_steps: int = 20000, quick: bool = False,
        progress: bool = True) -> dict:
    """Train the demo model with all four callbacks; return the numbers of the summary."""
    pl.seed_everything(0, verbose=False)
    ctx = 64
    train, val = char_data(ctx, train_chars=20000 if quick else None, val_chars=4096 if quick else 16384)
    model = CharGPT(d=32 if quick else 64, n_layer=1 if quick else 2, ctx=ctx, lr=6e-3, warmup=10 if quick else 50)
    tokens_per_example = ctx
    ee = EffectiveEpochs(tokens_per_example=tokens_per_example)
    fc = FlopCounter()
    stop = ExtraEarlyStopping(monitor="val_loss", warmup_steps=100 if not quick else 0, verbose=False)
    callbacks = [ee, fc, stop]
    law = PowerLaw.from_json(LD_JSON) if LD_JSON.is_file() else None
    if law is not None:
        callbacks.append(DataLimitGap(law))
    logger = TensorBoardLogger(out, name="demo")
    val_every = 20 if quick else 50
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=60 if quick else max_steps,
                         max_time={"minutes": max_minutes}, callbacks=callbacks, logger=logger,
                         val_check_interval=val_every, check_val_every_n_epoch=None,
                         limit_val_batches=4 if quick else 16, num_sanity_val_steps=0, log_every_n_steps=val_every,
                         enable_checkpointing=False, enable_progress_bar=progress, enable_model_summary=False)
    start = time.perf_counter()
    trainer.fit(model, DataLoader(train, batch_size=32, shuffle=True, drop_last=True),
                DataLoader(val, batch_size=64))
    seconds = time.perf_counter() - start
    counts = ee.counts(trainer)
    total = fc.sync(trainer)
    d = stop.decision
    result = {
        "log_dir": logger.log_dir, "seconds": seconds, "steps": int(trainer.global_step),
        "stopped_by_rule": stop.stopped_step is not None, "reason": d.reason if d else "no evaluation",
        "converged_loss": d.converged_loss if d else None, "interval": d.interval if d else None,
        "loss": d.smoothed_loss if d else None, "stop_loss": d.stop_loss if d else None,
        "flops": total, "pf_days": pf_days(total), "params": n_params(model),
        "effective_epochs": counts.effective_epochs, "distinct_seen": counts.distinct_seen,
        "dataset_size": counts.dataset_size, "ld_loss": law(counts.distinct_seen) if law and counts.distinct_seen else None,
    }
    return result


def summary(r: dict) -> str:
    lines = ["", "lightning-scaling demo: a character-level GPT on Python's documentation (pydoc_data.topics)",
             f"  model: {r['params']:,} parameters; trained {r['steps']} steps in {r['seconds']:.0f} s"]
    if r["stopped_by_rule"]:
        lines.append(f"  stopped by ExtraEarlyStopping: {r['reason']}")
    else:
        lines.append(f"  not stopped by the rule (time or step limit); last decision: {r['reason']}")
    if r["converged_loss"] is not None:
        lo, hi = r["interval"]
        lines.append(f"  predicted converged val_loss {r['converged_loss']:.4f} (90% [{lo:.4f}, {hi:.4f}]); "
                     f"loss reached {r['loss']:.4f}; stop loss {r['stop_loss']:.4f}")
    lines.append(f"  compute: {r['flops']:.3e} FLOP = {r['pf_days']:.3e} PF-days (measured, FlopCounterMode)")
    if r["effective_epochs"] is not None:
        lines.append(f"  data: E/D = {r['effective_epochs']:.2f} epochs; distinct tokens seen {r['distinct_seen']:,.0f}"
                     f" of {r['dataset_size']:,.0f}")
    if r["ld_loss"] is not None and r["loss"] is not None:
        lines.append(f"  gap to L(D) at the data seen: {r['loss'] - r['ld_loss']:.4f} (L(D) = {r['ld_loss']:.4f})")
    if r["stopped_by_rule"]:
        t = planning.tradeoff(0.10, 0.02)
        lines.append(f"  a run to within 2% of convergence would need about {1 / t.steps_ratio:.1f}x the steps: "
                     f"~{r['flops'] / t.steps_ratio:.3e} FLOP (Kaplan 2020 B.13)")
    lines.append(f"\nDashboard: tensorboard --logdir {Path(r['log_dir']).parent.parent}   "
                 "(then open the CUSTOM SCALARS tab)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs")
    parser.add_argument("--max-minutes", type=float, default=2.5)
    parser.add_argument("--quick", action="store_true", help="a tiny run of a few seconds (used by the tests)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    print(summary(run(args.out, args.max_minutes, quick=args.quick)))


if __name__ == "__main__":
    main()
