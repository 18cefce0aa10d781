"""Every TensorBoard/CSV tag lightning-scaling writes: its name, its writer, what it holds, and its encoding.

The callbacks write their numbers under ``scaling/`` (docs/design.md, "Metric names"); the dashboard lays them out,
and the log reader and the command line read them back to replay a run. All of them take the names from here:
:func:`tag` refuses a name that is not in :data:`TAGS`, so a writer and a reader cannot drift apart. Pure: no
Lightning import.

Example:
    >>> tag("monitored_loss")
    'scaling/monitored_loss'
    >>> named({"ld_loss": 2.0, "ld_gap": 0.1})
    {'scaling/ld_loss': 2.0, 'scaling/ld_gap': 0.1}
    >>> encode_floor_kind("model"), decode_floor_kind([None, 1.0])
    (1.0, 'model')
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

#: The prefix of every tag the package writes.
PREFIX = "scaling/"


@dataclass(frozen=True)
class Tag:
    """One tag: its short name (the full name is ``PREFIX + short``), the callback that writes it, and what it holds."""

    short: str
    writer: str
    meaning: str

    @property
    def name(self) -> str:
        return PREFIX + self.short


#: The tags, by short name.
TAGS: dict[str, Tag] = {t.short: t for t in (
    Tag("examples_seen", "EffectiveEpochs", "examples processed E, summed over ranks"),
    Tag("tokens_seen", "EffectiveEpochs", "tokens processed (with tokens_per_example or count_tokens)"),
    Tag("dataset_size", "EffectiveEpochs", "the dataset size D, in the counting unit"),
    Tag("effective_epochs", "EffectiveEpochs", "E / D"),
    Tag("distinct_seen", "EffectiveEpochs", "distinct data seen, min(E, D)"),
    Tag("effective_data", "EffectiveEpochs", "the effective data D' of repeated data ([M] eq 5)"),
    Tag("flops", "FlopCounter", "cumulative measured training FLOPs, all ranks"),
    Tag("useful_flops", "FlopCounter", "cumulative FLOPs on non-padding tokens"),
    Tag("pf_days", "FlopCounter", "cumulative FLOPs in PF-days"),
    Tag("flops_per_step", "FlopCounter", "FLOPs of one optimizer step, its micro-batches summed"),
    Tag("flops_per_sec", "FlopCounter", "throughput between two logs"),
    Tag("mfu", "FlopCounter", "model FLOPs utilisation, per device"),
    Tag("ld_loss", "DataLimitGap", "L(D) at the distinct data seen: the floor handed to ExtraEarlyStopping"),
    Tag("ld_gap", "DataLimitGap", "monitored loss - L(D)"),
    Tag("ld_ratio", "DataLimitGap", "monitored loss / L(D)"),
    Tag("loss_vs_examples", "DataLimitGap", "the monitored loss, logged at step = examples seen"),
    Tag("loss_vs_data", "DataLimitGap", "figure: the loss against the data seen, with L(D)"),
    Tag("monitored_loss", "ExtraEarlyStopping (DataLimitGap without it)", "the loss the rule saw, at each validation"),
    Tag("lr_sum", "ExtraEarlyStopping", "the summed learning rate of every optimizer step so far ([T])"),
    Tag("epoch_steps", "ExtraEarlyStopping", "optimizer steps of one epoch of unique data (family effective_data)"),
    Tag("floor_kind", "ExtraEarlyStopping", "1 when the floor is a model's own limit L(N, D) (encode_floor_kind)"),
    Tag("smoothed_loss", "ExtraEarlyStopping", "the rule's exponential moving average of the loss"),
    Tag("converged_loss", "ExtraEarlyStopping", "the predicted converged loss (trusted predictions only)"),
    Tag("converged_loss_low", "ExtraEarlyStopping", "the lower end of its interval at the rule's confidence"),
    Tag("converged_loss_high", "ExtraEarlyStopping", "the upper end of its interval"),
    Tag("stop_loss", "ExtraEarlyStopping", "the loss at which the rule stops"),
    Tag("predicted_stop_step", "ExtraEarlyStopping", "the step at which the fit reaches the stop loss (steps axis)"),
    Tag("progress", "ExtraEarlyStopping", "0..1 of the way from the first fitted loss to the stop loss"),
    Tag("learning_curve", "ExtraEarlyStopping", "figure: the fit and the stop line"),
    Tag("forecast_final_loss", "ExtraEarlyStopping", "the loss forecast at the planned end of the LR schedule"),
    Tag("forecast_final_low", "ExtraEarlyStopping", "the lower end of its interval at the rule's confidence"),
    Tag("forecast_final_high", "ExtraEarlyStopping", "the upper end of its interval"),
    Tag("forecast_converged_loss", "ExtraEarlyStopping", "the schedule law's L0, the loss at infinite LR area"),
    Tag("forecast_cooldown_loss", "ExtraEarlyStopping", "the loss forecast if a cool-down of cooldown_steps began now"),
    Tag("final_over_converged", "ExtraEarlyStopping", "the forecast final loss over the schedule law's L0"),
    Tag("recommended_horizon_steps", "ExtraEarlyStopping",
        "fixed-horizon schedules: the fewest steps of the same schedule whose forecast final loss is threshold x L0"),
    Tag("pooled_converged_loss", "ExtraEarlyStopping (sweep=)",
        "the sweep's joint fit's converged loss at this N and D (shown beside converged_loss, never used to stop)"),
    Tag("pooled_converged_loss_low", "ExtraEarlyStopping (sweep=)", "the lower end of its interval (the confidence)"),
    Tag("pooled_converged_loss_high", "ExtraEarlyStopping (sweep=)", "the upper end of its interval"),
)}


def tag(short: str) -> str:
    """The full name of the tag ``short``.

    Raises:
        KeyError: ``short`` is not a tag the package writes (a typo in a writer or a reader).
    """
    if short not in TAGS:
        raise KeyError(f"{short!r} is not a tag lightning-scaling writes; the tags are {sorted(TAGS)}")
    return PREFIX + short


def named(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` keyed by short names, keyed by full tag names (each checked by :func:`tag`)."""
    return {tag(short): value for short, value in values.items()}


def encode_floor_kind(kind: str) -> float | None:
    """The logged value of ``floor_kind``: 1.0 for a model's own limit ("model"), nothing (None) for "data"."""
    return 1.0 if kind == "model" else None


def decode_floor_kind(values: Iterable[float | None]) -> str:
    """The floor kind of a run from its logged ``floor_kind`` values: "model" if any is 1, else "data"."""
    return "model" if any(v is not None and not math.isnan(v) and v == 1.0 for v in values) else "data"
