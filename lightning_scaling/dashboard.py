"""The TensorBoard "scaling" dashboard: a custom-scalars layout written once per log directory."""

from __future__ import annotations

from typing import Any

P = "scaling/"

#: Custom-scalars layout (torch.utils.tensorboard SummaryWriter.add_custom_scalars format).
LAYOUT: dict[str, dict[str, list]] = {
    "Data": {
        "examples and tokens seen": ["Multiline", [f"{P}examples_seen", f"{P}tokens_seen"]],
        "dataset size, distinct and effective data": ["Multiline", [f"{P}dataset_size", f"{P}distinct_seen",
                                                                     f"{P}effective_data"]],
        "effective epochs E/D": ["Multiline", [f"{P}effective_epochs"]],
    },
    "Compute": {
        "cumulative FLOPs": ["Multiline", [f"{P}flops"]],
        "PF-days": ["Multiline", [f"{P}pf_days"]],
        "FLOPs per step": ["Multiline", [f"{P}flops_per_step"]],
        "throughput and MFU": ["Multiline", [f"{P}flops_per_sec", f"{P}mfu"]],
    },
    "Data limit": {
        "loss against L(D)": ["Multiline", [f"{P}ld_loss", f"{P}monitored_loss"]],
        "gap and ratio": ["Multiline", [f"{P}ld_gap", f"{P}ld_ratio"]],
        "loss vs examples (step = examples)": ["Multiline", [f"{P}loss_vs_examples"]],
    },
    "Stopping": {
        "predicted converged loss": ["Margin", [f"{P}converged_loss", f"{P}converged_loss_low",
                                                f"{P}converged_loss_high"]],
        "loss and stop loss": ["Multiline", [f"{P}stop_loss", f"{P}smoothed_loss"]],
        "predicted stop step": ["Multiline", [f"{P}predicted_stop_step"]],
        "progress to the stop": ["Multiline", [f"{P}progress"]],
    },
}

_written: set[str] = set()


def ensure_layout(trainer: Any) -> bool:
    """Write :data:`LAYOUT` once per TensorBoard log directory, from global rank zero. Idempotent."""
    if not getattr(trainer, "is_global_zero", True):
        return False
    wrote = False
    for logger in getattr(trainer, "loggers", []) or []:
        experiment = getattr(logger, "experiment", None)
        if not hasattr(experiment, "add_custom_scalars"):
            continue
        key = str(getattr(experiment, "log_dir", id(experiment)))
        if key in _written:
            continue
        experiment.add_custom_scalars(LAYOUT)
        experiment.flush()
        _written.add(key)
        wrote = True
    return wrote
