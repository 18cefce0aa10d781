"""EffectiveEpochs: examples (or tokens) processed E, dataset size D, E/D, distinct data seen, and the
effective data D' of repeated data (Muennighoff et al. 2023 eq 5; docs/science.md 1 and 7)."""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable

from ..planning import effective_data
from .. import tags
from . import _common


def _positive_count(name: str, value: Any, what: str) -> int | None:
    """``value`` as an int when it is a positive whole number (an int, a numpy integer, or a whole float such
    as ``1e9``), None when it is None.

    Raises:
        ValueError: a bool, a number that is not a positive whole number, or not a number; the message says
            what to pass.
    """
    if value is None:
        return None
    whole = (isinstance(value, numbers.Integral)
             or (isinstance(value, numbers.Real) and float(value).is_integer()))
    if isinstance(value, bool) or not whole or value <= 0:
        raise ValueError(f"{name} must be a positive whole number ({what}), e.g. {name}=65536; got {value!r}")
    return int(value)


@dataclass
class DataCounts:
    """Counts over all ranks at one optimizer step."""

    step: int
    examples_seen: float
    tokens_seen: float | None
    dataset_size: float | None
    unit: str  # "examples" or "tokens": the unit of dataset_size, distinct_seen and effective_data
    distinct_seen: float | None
    effective_epochs: float | None
    effective_data: float | None

    @property
    def seen(self) -> float:
        """E in the unit of the counts."""
        return self.tokens_seen if self.unit == "tokens" else self.examples_seen


def batch_size_of(batch: Any) -> int:
    """The number of examples in a batch: the leading dimension of its first tensor (host metadata)."""
    first = batch[0] if type(batch) in (list, tuple) and batch else batch
    shape = getattr(first, "shape", None)
    if shape is not None and len(shape) > 0:  # the common case, every step: one attribute read
        return int(shape[0])
    if hasattr(batch, "shape") and len(batch.shape) > 0:
        return int(batch.shape[0])
    if isinstance(batch, Mapping):  # a dict, or a UserDict such as Hugging Face's BatchEncoding
        batch = list(batch.values())
    if isinstance(batch, (list, tuple)):
        for item in batch:
            n = batch_size_of(item)
            if n:
                return n
    return 0


class EffectiveEpochsBase:
    """Count the data a run has processed: E, D, E/D, distinct data seen D_seen = min(E, D) and D'.

    Counts come from the real batches (all micro-batches of gradient accumulation, a short last batch,
    ``limit_train_batches``) on every rank, stay on the host (batch sizes are shape metadata) or on the
    device (a token-counting callable), and are summed over ranks only when logged. A micro-batch is
    counted when it starts (``on_train_batch_start``, the cheapest place on the per-step path), so one for
    which the LightningModule's own ``on_train_batch_start`` returns -1 (skip the rest of the epoch) is
    counted although it is not trained on.

    Args:
        dataset_size: D, a positive whole number (an int, a numpy integer, or a whole float such as 1e9);
            default ``len(train_dataloader.dataset)`` (the global dataset). In examples (times
            ``tokens_per_example`` when given), or with ``count_tokens`` in tokens (the only way to know D in
            tokens then).
        tokens_per_example: count tokens as this many per example (D is then in tokens too).
        count_tokens: a callable ``batch -> int | tensor`` counting a batch's tokens (e.g. a mask sum).
            Without ``dataset_size`` D is unknown (the dataset's length counts examples, not tokens): E is
            logged, E/D and the data seen are left out with one warning.
        strict: raise instead of warning when D cannot be known (an iterable dataset without a length, or
            ``count_tokens`` without ``dataset_size``).

    At the start of training (rank zero) the run's N and D go into the run-info file beside the logs
    (:mod:`lightning_scaling.run_info`): ``model`` = every parameter of the LightningModule and the trainable
    ones (a rank's shard under a sharding strategy), ``data`` = D and its unit.

    Raises:
        ValueError: ``dataset_size`` or ``tokens_per_example`` not a positive whole number (numpy integers
            are fine), both ``tokens_per_example`` and ``count_tokens``, or ``count_tokens`` not callable.

    Example:
        >>> from lightning_scaling import EffectiveEpochs
        >>> ee = EffectiveEpochs(count_tokens=lambda b: b["attention_mask"].sum(), dataset_size=2**20)
        >>> ee.unit
        'tokens'
    """

    def __init__(self, dataset_size: int | None = None, tokens_per_example: int | None = None,
                 count_tokens: Callable[[Any], Any] | None = None, strict: bool = False) -> None:
        dataset_size = _positive_count("dataset_size", dataset_size, "D in examples; in tokens with count_tokens")
        tokens_per_example = _positive_count("tokens_per_example", tokens_per_example, "tokens in every example")
        if tokens_per_example is not None and count_tokens is not None:
            raise ValueError("give tokens_per_example or count_tokens, not both")
        if count_tokens is not None and not callable(count_tokens):
            raise ValueError("count_tokens must be a callable batch -> number of tokens")
        self.dataset_size = dataset_size
        self.tokens_per_example = tokens_per_example
        self.count_tokens = count_tokens
        self.strict = strict
        self._local_examples = 0  # this rank, since the last sync
        self._local_tokens: Any = 0  # int, or a device tensor from count_tokens
        self._batch_tokens: Any = 0  # count_tokens of the current micro-batch (FlopCounter's useful FLOPs read it)
        self._examples = 0.0  # all ranks, as of the last sync (restored on resume)
        self._tokens = 0.0
        self._size: float | None = None
        self._cache: DataCounts | None = None
        self._warned = False
        self._last_global_step: int | None = None
        self._step_tracker: Any = None  # _common.step_tracker, set at the train start
        # Lightning reads state_key at every hook call of every callback: a string built once
        self._state_key = f"EffectiveEpochs{{tokens_per_example={tokens_per_example}}}"
        _common.skip_unused_hooks(self)  # per-batch hooks it leaves empty: not dispatched at all

    @property
    def state_key(self) -> str:
        return self._state_key

    @property
    def unit(self) -> str:
        return "tokens" if (self.tokens_per_example or self.count_tokens) else "examples"

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        from ..dashboard import ensure_layout

        ensure_layout(trainer)

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self._last_global_step = trainer.global_step  # the first log boundary is the next optimizer step
        self._step_tracker = _common.step_tracker(trainer, pl_module)  # global_step in one read
        self._size = None
        if self.dataset_size is not None:
            self._size = float(self.dataset_size)
        elif self.count_tokens is not None:
            message = ("EffectiveEpochs: with count_tokens, D must be given in tokens (dataset_size=...): the "
                       "dataset's length counts examples; E is logged, E/D and the data seen are left out")
            if self.strict:
                raise ValueError(message)
            if not self._warned:
                _common.rank_zero_warn(trainer, message)
                self._warned = True
        else:
            loader = getattr(trainer, "train_dataloader", None)
            dataset = getattr(loader, "dataset", None)
            try:
                self._size = float(len(dataset))  # the global dataset, not a rank's shard
            except TypeError:
                message = ("EffectiveEpochs: the training dataset has no length, so D and E/D are left out "
                           "(E is still logged); pass dataset_size=... to log them")
                if self.strict:
                    raise ValueError(message) from None
                if not self._warned:
                    _common.rank_zero_warn(trainer, message)
                    self._warned = True
        if self._size is not None and self.tokens_per_example:
            self._size *= self.tokens_per_example
        if _common.is_global_zero(trainer):
            from ..flops import n_params

            _common.write_run_info(trainer, "model", {"n_params": n_params(pl_module),
                                                      "trainable_params": n_params(pl_module, trainable_only=True)})
            _common.write_run_info(trainer, "data", {
                "dataset_size": None if self._size is None else int(self._size), "unit": self.unit})

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        """All the per-step work, in the one hook where the batch and the Trainer are still warm in the CPU's
        caches (after the optimizer step every attribute read costs several times more).

        First, if an optimizer step on a logging step has ended since the last micro-batch, log the counts
        as of that step (every micro-batch counted so far belongs to it); then count this micro-batch. The
        last step's counts are logged by ``on_train_end``.
        """
        if _common.log_boundary(trainer, self):
            self.log_counts(trainer)
        n = None
        if type(batch) is list or type(batch) is tuple:  # the common batch, inline (half the cost of a call)
            try:
                n = int(batch[0].shape[0])
            except (AttributeError, IndexError, TypeError):
                pass
        if n is None:
            n = batch_size_of(batch)
        self._local_examples += n
        if self.count_tokens is not None:
            self._batch_tokens = self.count_tokens(batch)
            self._local_tokens = self._local_tokens + self._batch_tokens  # stays on the device
        elif self.tokens_per_example:
            self._local_tokens += n * self.tokens_per_example

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self.log_counts(trainer)

    def counts(self, trainer: Any) -> DataCounts:
        """Counts over all ranks (collective: call on every rank at the same point); cached per step."""
        step = int(trainer.global_step)
        if self._cache is not None and self._cache.step == step and not self._local_examples:
            return self._cache
        examples, tokens = _common.reduce_sum(trainer, [self._local_examples, self._local_tokens])
        self._examples += examples
        self._tokens += tokens
        self._local_examples, self._local_tokens = 0, 0
        tokens_seen = self._tokens if self.unit == "tokens" else None
        seen = tokens_seen if self.unit == "tokens" else self._examples
        size = self._size
        distinct = min(seen, size) if size else None
        self._cache = DataCounts(step, self._examples, tokens_seen, size, self.unit, distinct,
                                 seen / size if size else None,
                                 float(effective_data(size, seen)) if size else None)
        return self._cache

    def log_counts(self, trainer: Any) -> DataCounts:
        c = self.counts(trainer)
        _common.log_scalars(trainer, tags.named({
            "examples_seen": c.examples_seen, "tokens_seen": c.tokens_seen, "dataset_size": c.dataset_size,
            "effective_epochs": c.effective_epochs, "distinct_seen": c.distinct_seen,
            "effective_data": c.effective_data}), c.step)
        return c

    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        """Sum every rank's unsynced counts into the saved state, so a resume is exact on every rank.

        Collective, like the barrier of ``Trainer.save_checkpoint`` itself (called on every rank);
        Lightning takes ``state_dict`` before this hook, so the synced state replaces it.
        """
        self.counts(trainer)
        checkpoint.setdefault("callbacks", {})[self.state_key] = self.state_dict()

    def state_dict(self) -> dict[str, Any]:
        # After on_save_checkpoint's sync the pending parts are zero; they are kept for a state_dict
        # taken outside a checkpoint (one process: exact; several: this rank's part only).
        return {"examples": self._examples, "tokens": self._tokens,
                "pending_examples": self._local_examples,
                "pending_tokens": float(self._local_tokens) if not hasattr(self._local_tokens, "item")
                else float(self._local_tokens.item())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._examples = float(state["examples"])
        self._tokens = float(state["tokens"])
        self._local_examples = int(state.get("pending_examples", 0))
        self._local_tokens = state.get("pending_tokens", 0.0)
        self._cache = None
