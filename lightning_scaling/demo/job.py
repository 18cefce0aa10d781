"""`make demo`: a small character-level GPT on Python's own documentation, with all four callbacks.

The text is ``pydoc_data.topics`` (about 465k characters that ship with Python: no download), of which the
run trains on the first ``DEMO_TOKENS`` characters (64k: the run repeats them ~15 times in a minute, becomes
data-limited, and the rule can stop it within the demo's time on 2 CPU cores; the recorded corpus has the
same model on the whole text, ``m_dfull_const``, which needs ~10x longer). The run logs to ``./runs`` with a
TensorBoardLogger, stops by ExtraEarlyStopping, prints a summary and the command that opens the dashboard. The
L(D) that DataLimitGap compares with is the project's own fit on
the recorded corpus (``lightning_scaling/data/demo_ld.json``, ``python scripts/fit_demo_ld.py``).

The run joins a sweep store, ``<out>/sweep``: before it trains, the demo writes there the recorded corpus runs of the
other model sizes on the same text and validation set (``lightning_scaling/data/demo_sweep.json``,
``python scripts/make_demo_sweep.py``), and ExtraEarlyStopping(sweep=...) shows the pooled prediction of the joint fit
beside the run's own; the run adds its record at the end, so the next demo run pools it too.

    python -m lightning_scaling.demo [--out runs] [--max-minutes 2.5] [--quick]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from torch.utils.data import DataLoader

from .. import DataLimitGap, EffectiveEpochs, ExtraEarlyStopping, FlopCounter, PowerLaw, planning
from ..flops import pf_days
from ..sweep import Sweep, SweepRecord, record_filename, write_record
from .data import char_data
from .model import CharGPT

LD_JSON = Path(__file__).resolve().parent.parent / "data" / "demo_ld.json"
#: Distinct training characters (tokens) of the demo run: the corpus run m_d64k_const.
DEMO_TOKENS = 65_536
#: The sweep records the demo's run joins (``scripts/make_demo_sweep.py``).
DEMO_SWEEP = Path(__file__).resolve().parent.parent / "data" / "demo_sweep.json"
#: The data identity of the demo's sweep: the text and the validation set (runs of any training-data size on it pool).
DEMO_DATA = "pydoc_data.topics, char-level, val 16384"


@dataclass
class DemoResult:
    """The numbers of the demo's summary."""

    log_dir: str
    seconds: float
    steps: int
    params: int
    stopped_by_rule: bool
    reason: str
    converged_loss: float | None
    interval: tuple[float, float] | None
    loss: float | None
    stop_loss: float | None
    flops: float
    pf_days: float
    tokens_seen: float
    effective_epochs: float | None
    distinct_seen: float | None
    dataset_size: float | None
    ld_loss: float | None
    threshold: float
    law_source: str | None
    pooled: tuple[float, tuple[float, float]] | None = None
    sweep_line: str = ""


def run(out: str = "runs", max_minutes: float = 2.5, max_steps: int = 20_000, quick: bool = False,
        progress: bool = True, ld_json: str | Path | None = LD_JSON) -> DemoResult:
    """Train the demo model with all four callbacks; return the numbers of the summary.

    ``quick`` is a run of a few seconds (a tiny model, 60 steps) for the tests.
    """
    pl.seed_everything(0, verbose=False)
    ctx, batch = 64, 32
    data = char_data("pydoc", ctx, train_tokens=32_768 if quick else DEMO_TOKENS,
                     val_tokens=4096 if quick else 16_384)
    model = CharGPT(d_model=32 if quick else 48, n_layer=1 if quick else 2, n_head=4, ctx=ctx, lr=3e-3,
                    warmup=10 if quick else 50)
    law = PowerLaw.from_json(ld_json) if ld_json is not None and Path(ld_json).is_file() else None
    # the README's defaults (the warm-up is found), in a sweep store: the quick run validates on other data, so it
    # pools with nothing and says so
    sweep = join_sweep(Path(out) / "sweep", DEMO_DATA if not quick else "demo --quick")
    stop = ExtraEarlyStopping(monitor="val_loss", verbose=False, sweep=sweep)
    callbacks = [EffectiveEpochs(tokens_per_example=ctx), FlopCounter(), stop]
    if law is not None:
        callbacks.append(DataLimitGap(law))
    logger = TensorBoardLogger(out, name="demo")
    val_every = 20 if quick else 25
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=60 if quick else max_steps,
                         max_time={"seconds": int(max_minutes * 60)}, callbacks=callbacks, logger=logger,
                         val_check_interval=val_every, check_val_every_n_epoch=None, num_sanity_val_steps=0,
                         log_every_n_steps=val_every, enable_checkpointing=False, enable_progress_bar=progress,
                         enable_model_summary=False)
    start = time.perf_counter()
    trainer.fit(model, DataLoader(data.train, batch_size=batch, shuffle=True, drop_last=True),
                DataLoader(data.val, batch_size=64))
    seconds = time.perf_counter() - start
    counts = callbacks[0].counts(trainer)
    total = callbacks[1].sync(trainer)
    d = stop.decision
    return DemoResult(
        log_dir=logger.log_dir, seconds=seconds, steps=int(trainer.global_step), params=model.n_params(),
        stopped_by_rule=stop.stopped_step is not None, reason=d.reason if d else "no evaluation",
        converged_loss=d.converged_loss if d else None, interval=d.interval if d else None,
        loss=d.smoothed_loss if d is not None and d.smoothed_loss is not None else _last_val_loss(trainer),
        stop_loss=d.stop_loss if d else None,
        flops=total, pf_days=pf_days(total), tokens_seen=float(counts.seen),
        effective_epochs=counts.effective_epochs, distinct_seen=counts.distinct_seen,
        dataset_size=counts.dataset_size,
        ld_loss=float(law(counts.distinct_seen)) if law is not None and counts.distinct_seen else None,
        threshold=stop.rule.threshold, law_source=str(ld_json) if law is not None else None,
        pooled=stop.pooled, sweep_line=stop.sweep_summary())


def join_sweep(folder: Path, data: str, bundle: Path = DEMO_SWEEP) -> Sweep:
    """The demo's sweep store ``folder`` on ``data``, with the bundled corpus records written into it first (those
    not there yet; without the bundle, e.g. a bare install, the store holds only earlier demo runs)."""
    if bundle.is_file():
        for body in json.loads(bundle.read_text())["records"]:
            if not (folder / record_filename(body["run_id"])).is_file():
                write_record(folder, SweepRecord.from_dict(body))
    return Sweep(folder, data=data)


def _last_val_loss(trainer: pl.Trainer) -> float | None:
    """The last validation loss (the rule's smoothed loss is None while it is still in the warm-up)."""
    value = trainer.callback_metrics.get("val_loss")
    return None if value is None else float(value)


def summary(r: DemoResult) -> str:
    """A short, plain-language account of the run."""
    lines = ["", "lightning-scaling demo: a character-level GPT on Python's documentation (pydoc_data.topics)",
             f"  model: {r.params:,} parameters; trained {r.steps} steps in {r.seconds:.0f} s"]
    if r.stopped_by_rule:
        lines.append(f"  stopped at step {r.steps} by ExtraEarlyStopping: {r.reason}")
    else:
        lines.append(f"  not stopped by the rule (time or step limit) at step {r.steps}; last decision: {r.reason}")
    if r.converged_loss is not None:
        lo, hi = r.interval or (float("nan"), float("nan"))
        lines.append(f"  predicted converged val_loss {r.converged_loss:.4f} (interval [{lo:.4f}, {hi:.4f}]); "
                     f"loss reached {r.loss:.4f}; stop at {r.threshold:.2f} x converged = {r.stop_loss:.4f}")
    elif r.loss is not None:
        lines.append(f"  loss reached {r.loss:.4f} (no trusted prediction of the converged loss yet)")
    if r.sweep_line:
        lines.append(f"  {r.sweep_line}")
    lines.append(f"  compute: {r.flops:.3e} FLOP = {r.pf_days:.3e} PF-days (measured with FlopCounterMode)")
    if r.effective_epochs is not None:
        lines.append(f"  data: {r.tokens_seen:,.0f} tokens processed, E/D = {r.effective_epochs:.2f} epochs; "
                     f"distinct tokens seen {r.distinct_seen:,.0f} of D = {r.dataset_size:,.0f}")
    if r.ld_loss is not None and r.loss is not None:
        lines.append(f"  gap to L(D): loss {r.loss:.4f} - L(D_seen) {r.ld_loss:.4f} = {r.loss - r.ld_loss:+.4f} "
                     f"(L(D) fitted on the project's own runs: {Path(r.law_source).name})")
    elif r.ld_loss is None:
        lines.append("  gap to L(D): no fitted L(D) (run `python scripts/fit_demo_ld.py`)")
    if r.converged_loss is not None:
        t = planning.tradeoff(r.threshold - 1.0, 0.02)
        lines.append(f"  a run to within 2% of convergence would need about {1 / t.steps_ratio:.1f}x the steps: "
                     f"~{r.flops / t.steps_ratio:.3e} FLOP = {pf_days(r.flops / t.steps_ratio):.3e} PF-days "
                     "(Kaplan 2020 eq B.13)")
    lines.append(f"\nOpen the dashboard: tensorboard --logdir {Path(r.log_dir).parent.parent}   "
                 "(then the CUSTOM SCALARS tab)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> DemoResult:
    parser = argparse.ArgumentParser(prog="python -m lightning_scaling.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs", help="TensorBoard log folder (default ./runs)")
    parser.add_argument("--max-minutes", type=float, default=2.5, help="time limit of the training")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--quick", action="store_true", help="a tiny run of a few seconds (used by the tests)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    result = run(args.out, args.max_minutes, quick=args.quick, progress=not args.no_progress)
    print(summary(result))
    return result


__all__ = ["DemoResult", "run", "summary", "main"]
