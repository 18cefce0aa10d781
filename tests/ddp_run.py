"""Run by tests under strategy="ddp" (gloo, 2 CPU processes); each rank writes what it saw."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import pytorch_lightning as pl  # noqa: E402

from lightning_scaling import DataLimitGap, EffectiveEpochs, ExtraEarlyStopping, FlopCounter, PowerLaw  # noqa: E402
from lightning_scaling import forecasting  # noqa: E402
from lightning_scaling.sweep import Sweep  # noqa: E402
from models import CurveRegressor, loader, regression_data  # noqa: E402


def main(out: str, devices: int, batch_size: int, cooldown_steps: int = 0, sweep: str | None = None) -> None:
    pl.seed_everything(0)
    fits = []  # the schedule forecasts this rank fits (ExtraEarlyStopping looks forecasting.forecast up at each one)
    fit = forecasting.forecast
    forecasting.forecast = lambda *args, **kwargs: fits.append(1) or fit(*args, **kwargs)
    # with a cool-down the stop (and its summary, which sums the FLOPs over ranks) comes inside the optimizer-step hook
    callbacks = [EffectiveEpochs(), FlopCounter(peak_flops=1e12),
                 ExtraEarlyStopping(calibration=False, verbose=cooldown_steps > 0, cooldown_steps=cooldown_steps)]
    if sweep is not None:  # DataLimitGap's floor from a sweep store (rank zero fits it, every rank gets it)
        callbacks.append(DataLimitGap(PowerLaw(scale=2.0, exponent=0.5, irreducible=0.9, unit="examples"),
                                      sweep=Sweep(sweep, data="curve")))
    trainer = pl.Trainer(callbacks=callbacks, accelerator="cpu", devices=devices,
                         strategy="ddp" if devices > 1 else "auto",
                         max_steps=3000, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, val_check_interval=16, check_val_every_n_epoch=None,
                         limit_val_batches=1, num_sanity_val_steps=0, log_every_n_steps=50)
    trainer.fit(CurveRegressor(), loader(regression_data(256), batch_size, shuffle=False),
                loader(regression_data(32, seed=1), 8))
    counts = callbacks[0].counts(trainer)
    Path(out, f"rank{trainer.global_rank}.json").write_text(json.dumps({
        "stop": callbacks[2].stopped_step, "step": trainer.global_step, "cooldown_start": callbacks[2].cooldown_start,
        "examples": counts.examples_seen,
        "flops": callbacks[1].sync(trainer),
        "floor": None if sweep is None or callbacks[3].floor is None else callbacks[3].floor.value,
        "floor_source": None if sweep is None else callbacks[3].floor_source, "forecasts": len(fits),
        "forecast_tags": {k: float(v) for k, v in trainer.callback_metrics.items() if "forecast" in k},
        "cooldown_reason": callbacks[2]._cooldown_reason}))
    # Tear gloo down before the interpreter does: left to exit, a rank can die of "terminate called without an
    # active exception" (SIGABRT) after writing its results, about one run in five here.
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), *(int(a) for a in sys.argv[4:5]), *sys.argv[5:6])
