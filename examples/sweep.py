"""A sweep: growing subsets of the data x several model sizes -> L(D), L(N), L(C) and the JSON DataLimitGap reads.

Trains the demo's character GPT (lightning_scaling.demo.model.CharGPT) on growing subsets of
``pydoc_data.topics`` at several model sizes, each until its validation loss stops improving (or turns
up: the data-limited runs), with EffectiveEpochs and FlopCounter counting tokens and measured FLOPs.
Then, with the package's fitting:

* L(D): the best loss of the largest model at each dataset size ([K] eq 1.2, irreducible term of [H]);
* L(N): the best loss of each model size on the largest dataset ([K] eq 1.1, N without embeddings);
* L(C): the lower envelope of loss against measured compute over all runs ([K] eq 1.3);
* L(N, D): [K] eq 1.5 over every run's best loss (``fit_overfitting_law``): the floor of a model of N
  parameters, which DataLimitGap takes with ``n_params`` (non-embedding here, as the sweep counts N);

writes ``ld.json`` (``DataLimitGap(law="<out>/ld.json")``), ``ln.json``, ``lc.json``, ``lnd.json`` and ``sweep.png``:
the learning curves against tokens seen, which over the first epoch (tokens seen <= D, no repeats) approach
L(D) from above for the larger models ([H] section 6).

    python examples/sweep.py [--out sweep] [--quick]
"""

from __future__ import annotations

import argparse
import json
import logging
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, EarlyStopping
from torch.utils.data import DataLoader

from lightning_scaling import EffectiveEpochs, FitError, FlopCounter, fit_overfitting_law, fit_power_law
from lightning_scaling.demo.data import char_data
from lightning_scaling.demo.model import CharGPT

FULL = {"models": [(32, 1), (48, 2), (64, 3)], "tokens": [8_192, 32_768, 131_072, 262_144], "max_steps": 1200,
        "val_every": 25, "patience": 6, "lr": 3e-3, "batch": 16}
QUICK = {"models": [(8, 1), (16, 1), (24, 1)], "tokens": [2_048, 4_096, 8_192, 16_384], "max_steps": 100,
         "val_every": 10, "patience": 3, "lr": 6e-3, "batch": 8}


@dataclass
class SweepRun:
    """One run of the sweep and its points at each validation."""

    d_model: int
    n_layer: int
    train_tokens: int
    n_params: int  # non-embedding, as [K] counts N
    tokens: list[float] = field(default_factory=list)
    flops: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    converged: bool = False  # stopped by EarlyStopping; False: it hit max_steps and its best is an upper bound

    @property
    def best(self) -> float:
        return min(self.val_loss)


class Recorder(Callback):
    """Keep (tokens seen, cumulative FLOPs, val_loss) at each validation."""

    def __init__(self, run: SweepRun, counter: EffectiveEpochs, flops: FlopCounter):
        self.run, self.counter, self.flop_counter = run, counter, flops

    def on_validation_end(self, trainer, pl_module):
        self.run.tokens.append(float(self.counter.counts(trainer).seen))
        self.run.flops.append(self.flop_counter.sync(trainer))
        self.run.val_loss.append(float(trainer.callback_metrics["val_loss"]))


def train(d_model: int, n_layer: int, train_tokens: int, grid: dict) -> SweepRun:
    pl.seed_everything(0, verbose=False)
    data = char_data("pydoc", 64, train_tokens=train_tokens, val_tokens=8192)
    model = CharGPT(d_model=d_model, n_layer=n_layer, n_head=4 if d_model >= 32 else 2, ctx=64, warmup=10,
                    lr=grid["lr"])
    run = SweepRun(d_model, n_layer, data.train_tokens, model.n_params(non_embedding=True))
    counter, flops = EffectiveEpochs(tokens_per_example=64), FlopCounter()
    trainer = pl.Trainer(accelerator="cpu", max_steps=grid["max_steps"], logger=False, enable_checkpointing=False,
                         callbacks=[counter, flops, Recorder(run, counter, flops),
                                    EarlyStopping("val_loss", patience=grid["patience"], min_delta=0.002)],
                         val_check_interval=grid["val_every"], check_val_every_n_epoch=None,
                         num_sanity_val_steps=0, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, DataLoader(data.train, batch_size=grid["batch"], shuffle=True, drop_last=True),
                DataLoader(data.val, batch_size=64))
    run.converged = int(trainer.global_step) < grid["max_steps"]
    return run


def compute_frontier(runs: list[SweepRun], bins: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Lowest loss reached by any run with at most C FLOPs, at log-spaced C ([K] section 6.1's envelope)."""
    flops = np.concatenate([r.flops for r in runs])
    loss = np.concatenate([r.val_loss for r in runs])
    grid = np.geomspace(flops.min(), flops.max(), bins)
    best = np.array([loss[flops <= c].min() for c in grid])
    keep = np.concatenate([[True], np.diff(best) < 0])  # the strictly improving points of the envelope
    return grid[keep], best[keep]


def fit(x, y, unit: str, what: str):
    """fit_power_law with the irreducible term when there are points enough; None (said) when untrustworthy."""
    try:
        result = fit_power_law(x, y, unit=unit, fit_irreducible=len(x) >= 4)
    except FitError as err:
        print(f"  {what}: no fit ({err})")
        return None
    if not result.success:
        print(f"  {what}: the fit cannot be trusted ({result.message})")
        return None
    law = result.law
    print(f"  {what} = {law.irreducible:.3f} + ({law.scale:.3g} / x)^{law.exponent:.3f}   [{unit}]")
    return law


def figure(runs: list[SweepRun], ld, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    largest_d = max(r.train_tokens for r in runs)
    for r in runs:
        if r.train_tokens == largest_d:
            t = np.asarray(r.tokens)
            first = t <= r.train_tokens
            ax.plot(t[first], np.asarray(r.val_loss)[first], "o-", ms=3, label=f"N = {r.n_params:,} (first epoch)")
            ax.plot(t[~first], np.asarray(r.val_loss)[~first], ":", color=ax.lines[-1].get_color())
    if ld is not None:
        x = np.geomspace(min(min(r.tokens) for r in runs), largest_d, 100)
        ax.plot(x, ld(x), "k--", label="L(D) at D = tokens seen (fit)")
    ax.set(xscale="log", yscale="log", xlabel="tokens seen", ylabel="validation loss",
           title="Learning curves approach L(D) over the first epoch ([H] 6)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("sweep"))
    parser.add_argument("--quick", action="store_true", help="two tiny models, a few steps (tests)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    logging.getLogger("lightning_scaling").setLevel(logging.WARNING)
    torch.set_num_threads(1)
    grid = QUICK if args.quick else FULL
    args.out.mkdir(parents=True, exist_ok=True)
    runs = []
    for i, (d_model, n_layer) in enumerate(grid["models"]):
        for j, tokens in enumerate(grid["tokens"]):
            runs.append(train(d_model, n_layer, tokens, grid))
            r = runs[-1]
            print(f"[{len(runs)}/{len(grid['models']) * len(grid['tokens'])}] N = {r.n_params:,}, D = "
                  f"{r.train_tokens:,}: best val_loss {r.best:.4f} after {len(r.val_loss)} evaluations"
                  f"{'' if r.converged else ' (max_steps: not converged)'}", flush=True)
    largest_n = max(r.n_params for r in runs)
    largest_d = max(r.train_tokens for r in runs)
    by_d = sorted((r.train_tokens, r.best) for r in runs if r.n_params == largest_n)
    by_n = sorted((r.n_params, r.best) for r in runs if r.train_tokens == largest_d)
    c, lc_loss = compute_frontier(runs)
    for what, points, used in (("L(D)", "D", [r for r in runs if r.n_params == largest_n]),
                               ("L(N)", "N", [r for r in runs if r.train_tokens == largest_d])):
        short = [r.train_tokens if points == "D" else r.n_params for r in used if not r.converged]
        if short:  # a fit that cannot be fully trusted says so
            print(f"warning: {what} uses runs that hit max_steps at {points} = {', '.join(f'{x:,}' for x in short)}: "
                  f"their best loss is above the converged loss, so {what} is biased upward there; raise "
                  "max_steps for a trustworthy fit")
    print("fits:")
    laws = {"ld": fit(*zip(*by_d), "tokens", "L(D)"), "ln": fit(*zip(*by_n), "params", "L(N)"),
            "lc": fit(c, lc_loss, "flop", "L(C)")}
    try:
        lnd = fit_overfitting_law([r.n_params for r in runs], [r.train_tokens for r in runs], [r.best for r in runs])
    except FitError as err:
        lnd = None
        print(f"  L(N, D): no fit ({err})")
    if lnd is not None and lnd.success:
        laws["lnd"] = lnd.law
        print(f"  L(N, D) = [({lnd.law.N_c:.3g}/N)^({lnd.law.alpha_N:.3f}/{lnd.law.alpha_D:.3f}) + "
              f"{lnd.law.D_c:.3g}/D]^{lnd.law.alpha_D:.3f}   (rms log error {lnd.rmse:.3f})")
    for name, law in laws.items():
        if law is not None:
            law.to_json(args.out / f"{name}.json")
    (args.out / "runs.json").write_text(json.dumps([asdict(r) for r in runs]))
    figure(runs, laws["ld"], args.out / "sweep.png")
    if laws["ld"] is not None:
        print(f"\nDataLimitGap reads it: DataLimitGap(law='{args.out / 'ld.json'}')  (with EffectiveEpochs"
              "(tokens_per_example=64))")
    if laws.get("lnd") is not None:
        print(f"for a model of N non-embedding parameters too small for its data: DataLimitGap(law='"
              f"{args.out / 'lnd.json'}', n_params=N) (ExtraEarlyStopping then fits the power law to it)")
    print(f"figure: {args.out / 'sweep.png'}")
    return {"runs": runs, "laws": laws, "out": args.out}


if __name__ == "__main__":
    main()
