"""The TensorBoard "scaling" dashboard: a custom-scalars layout written once per log directory."""

from __future__ import annotations

from typing import Any

from .tags import tag

#: Seconds between two figures of one callback in a TensorBoardLogger (ExtraEarlyStopping's ``learning_curve``,
#: DataLimitGap's ``loss_vs_data``): a figure is drawn when a new point arrives at most once per this many seconds,
#: and ExtraEarlyStopping's at its stop whatever the time. The callbacks read it at each figure: set this module
#: attribute to change the rate of every callback (0: at every new point).
FIGURE_INTERVAL_S = 60.0

#: Custom-scalars layout (torch.utils.tensorboard SummaryWriter.add_custom_scalars format).
LAYOUT: dict[str, dict[str, list]] = {
    "Data": {
        "examples and tokens seen": ["Multiline", [tag("examples_seen"), tag("tokens_seen")]],
        "dataset size, distinct and effective data": ["Multiline", [tag("dataset_size"), tag("distinct_seen"),
                                                                     tag("effective_data")]],
        "effective epochs E/D": ["Multiline", [tag("effective_epochs")]],
    },
    "Compute": {
        "cumulative FLOPs (all, on non-padding tokens)": ["Multiline", [tag("flops"), tag("useful_flops")]],
        "PF-days": ["Multiline", [tag("pf_days")]],
        "FLOPs per step": ["Multiline", [tag("flops_per_step")]],
        "throughput and MFU": ["Multiline", [tag("flops_per_sec"), tag("mfu")]],
    },
    "Data limit": {
        "loss against L(D)": ["Multiline", [tag("ld_loss"), tag("monitored_loss")]],
        "gap and ratio": ["Multiline", [tag("ld_gap"), tag("ld_ratio")]],
        "loss vs examples (step = examples)": ["Multiline", [tag("loss_vs_examples")]],
    },
    "Stopping": {
        "predicted converged loss": ["Margin", [tag("converged_loss"), tag("converged_loss_low"),
                                                tag("converged_loss_high")]],
        "pooled prediction (sweep)": ["Margin", [tag("pooled_converged_loss"), tag("pooled_converged_loss_low"),
                                                 tag("pooled_converged_loss_high")]],
        "single-run and pooled prediction, with the loss (sweep)": ["Multiline", [tag("converged_loss"),
                                                                                  tag("pooled_converged_loss"),
                                                                                  tag("smoothed_loss")]],
        "loss and stop loss": ["Multiline", [tag("stop_loss"), tag("smoothed_loss")]],
        "predicted stop step": ["Multiline", [tag("predicted_stop_step")]],
        "progress to the stop": ["Multiline", [tag("progress")]],
        "summed learning rate (the time axis of decaying schedules, [T])": ["Multiline", [tag("lr_sum")]],
    },
    "Schedule": {
        "forecast final loss under the planned schedule": ["Margin", [tag("forecast_final_loss"),
                                                                     tag("forecast_final_low"),
                                                                     tag("forecast_final_high")]],
        "forecast L0 and the loss after a cool-down from now": ["Multiline", [tag("forecast_converged_loss"),
                                                                              tag("forecast_cooldown_loss")]],
        "forecast final loss over L0": ["Multiline", [tag("final_over_converged")]],
        "recommended horizon for the next run (steps)": ["Multiline", [tag("recommended_horizon_steps")]],
    },
}

_written: set[str] = set()


def ensure_layout(trainer: Any) -> None:
    """Write :data:`LAYOUT` once per TensorBoard log directory, from global rank zero. Idempotent.

    Args:
        trainer: the ``Trainer`` whose TensorBoard loggers get the layout; other loggers are left alone.
    """
    if not getattr(trainer, "is_global_zero", True):
        return
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


def _pyplot():
    """matplotlib's pyplot on the Agg backend, or None when matplotlib is not installed (extra "plots")."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def learning_curve_figure(times, losses, law=None, converged=None, stop_loss=None, *, xlabel="step",
                          title="learning curve"):
    """The monitored loss, the fitted L(t) = L_conv + (t_c/t)^alpha, the converged loss and the stop line."""
    plt = _pyplot()
    if plt is None:
        return None
    import numpy as np

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(times, losses, "o", ms=3, label="monitored loss")
    if law is not None and len(times):
        grid = np.geomspace(min(times), max(times) * 4, 200)
        curve = np.broadcast_to(np.asarray(law(grid), dtype=float), grid.shape)  # a constant fit is a scalar
        if np.isfinite(curve).any():
            ax.plot(grid, curve, "-", label="fit")
    if converged is not None:
        ax.axhline(converged, ls="--", c="gray", label=f"predicted converged {converged:.4g}")
    if stop_loss is not None:
        ax.axhline(stop_loss, ls=":", c="red", label=f"stop at {stop_loss:.4g}")
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def data_limit_figure(seen, losses, law, *, unit="examples", dataset_size=None):
    """Loss against data seen (log-log) with the fitted L(D): the gap is what more model could still win.

    Args:
        seen, losses: the data seen (E, in ``unit``) and the monitored loss at each evaluation.
        law: L(D), a callable of the distinct data.
        unit: the unit of ``seen``, for the axis label.
        dataset_size: D; the law is drawn at the distinct data seen, min(E, D), so beyond one epoch it stays at
            L(D) (what ``scaling/ld_loss`` logs). None: every example seen is distinct.

    Returns a matplotlib figure, or None without matplotlib.
    """
    plt = _pyplot()
    if plt is None:
        return None
    import numpy as np

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.loglog(seen, losses, "o-", ms=3, label="monitored loss")
    grid = np.geomspace(max(min(seen), 1.0), max(seen) * 4, 200)
    distinct = grid if dataset_size is None else np.minimum(grid, float(dataset_size))
    ax.loglog(grid, np.broadcast_to(np.asarray(law(distinct), dtype=float), grid.shape), "--",
              label="L(D), D = distinct data seen")
    if dataset_size is not None and dataset_size < grid[-1]:
        ax.axvline(float(dataset_size), ls=":", c="gray", label=f"one epoch ({float(dataset_size):.3g} {unit})")
    ax.set_xlabel(f"{unit} seen")
    ax.set_ylabel("loss")
    ax.set_title("loss against data seen, with L(D)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def add_figure(trainer: Any, owner: Any, tag: str, make_figure, step: int, min_interval: float,
               force: bool = False) -> bool:
    """Add ``make_figure()`` to every TensorBoard logger, at most once per ``min_interval`` seconds per owner.

    Rank zero only; figures are built only when they will be written. A figure that fails to draw is skipped with
    one warning per owner, never raised.
    """
    import time

    if not getattr(trainer, "is_global_zero", True):
        return False
    writers = [lg.experiment for lg in getattr(trainer, "loggers", []) or []
               if hasattr(getattr(lg, "experiment", None), "add_figure")]
    if not writers:
        return False
    now = time.monotonic()
    last = getattr(owner, "_last_figure_time", None)
    if not force and last is not None and now - last < min_interval:
        return False
    fig = None
    try:
        fig = make_figure()
        if fig is None:
            return False
        owner._last_figure_time = now
        for writer in writers:
            writer.add_figure(tag, fig, global_step=int(step), close=False)
    except Exception as err:  # a figure is never worth a user's training: say so once, go on without it
        if not getattr(owner, "_figure_failed", False):
            owner._figure_failed = True
            from .callbacks._common import rank_zero_warn

            rank_zero_warn(trainer, f"{type(owner).__name__.replace('Base', '')}: the figure {tag!r} could not be "
                                    f"drawn ({type(err).__name__}: {err}); training goes on without it")
        return False
    finally:
        if fig is not None:
            import matplotlib.pyplot as plt

            plt.close(fig)
    return True
