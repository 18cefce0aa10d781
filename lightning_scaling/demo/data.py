"""Text that ships with Python (no download), as byte-level windows for next-character prediction.

Two sources:

* ``"pydoc"``: ``pydoc_data.topics.topics``, the documentation shown by ``help()`` (about 465k
  characters), topics in sorted order.
* ``"stdlib"``: the standard library's own ``.py`` source (``sysconfig.get_paths()["stdlib"]``, about
  12 MB), files in sorted path order, test suites and site-packages left out.

Both change a little between Python versions; a recorded run keeps the version in its config.
The vocabulary is the 256 byte values of the UTF-8 text, so no table has to be stored.

The split is by contiguous chunks: the text is cut into ``chunk`` characters, every ``val_every``-th
chunk validates and the rest train. ``train_tokens`` keeps only the first so many training bytes, which
makes the data-limited runs of the corpus (D = ``train_tokens``). Two layouts (:data:`LAYOUTS`):

* ``"prefix"`` (the corpus's): the chunks in text order, so a training set of D bytes is the text's first
  ~D/0.9 characters and ``val_tokens`` takes the first validation chunks. The validation text then lies near
  the start, which larger training prefixes cover more of: D changes what the training text is, not only
  how much of it there is (on the standard library's source the 128k-byte prefix reaches past every chunk of
  the 16k validation bytes, and the converged loss drops by 26% from 64k to 128k).
* ``"spread"``: the first ``pool_chars`` characters, cut into chunks; the training chunks and the validation
  chunks are each put in one seeded random order. A training set of D bytes is then a sample of the whole
  pool (the smaller sets nested in the larger), and every D is validated on the same sample of it.
"""

from __future__ import annotations

import functools
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

SOURCES = ("pydoc", "stdlib")
#: How :func:`split` lays out the chunks (see the module docstring).
LAYOUTS = ("prefix", "spread")
VOCAB = 256


def pydoc_text() -> str:
    """The documentation text of ``pydoc_data.topics`` (about 465k characters), topics in sorted order."""
    from pydoc_data.topics import topics

    return "\n".join(topics[k] for k in sorted(topics))


def stdlib_text(max_chars: int = 4_000_000) -> str:
    """The first ``max_chars`` characters of the standard library's ``.py`` files, in sorted path order."""
    root = Path(sysconfig.get_paths()["stdlib"])
    parts, total = [], 0
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).parts
        if rel[0] in ("site-packages", "dist-packages", "test", "idlelib") or "tests" in rel:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        parts.append(text)
        total += len(text)
        if total >= max_chars:
            break
    return "\n".join(parts)[:max_chars]


@functools.lru_cache(maxsize=4)
def text_bytes(source: str = "pydoc") -> torch.Tensor:
    """The source text as a 1-D ``uint8`` tensor of UTF-8 bytes."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    text = pydoc_text() if source == "pydoc" else stdlib_text()
    return torch.frombuffer(bytearray(text.encode("utf-8")), dtype=torch.uint8).clone()


def split(data: torch.Tensor, chunk: int = 4096, val_every: int = 10, layout: str = "prefix",
          seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Train/validation split by contiguous chunks: every ``val_every``-th chunk validates.

    ``layout="prefix"`` keeps the chunks in text order; ``"spread"`` puts the training chunks and the
    validation chunks each in a random order drawn from ``seed`` (see the module docstring).
    """
    if chunk < 2 or val_every < 2:
        raise ValueError("chunk must be >= 2 characters and val_every >= 2 (one chunk in val_every validates)")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    chunks = list(torch.split(data, chunk))
    val = [c for i, c in enumerate(chunks) if i % val_every == val_every - 1]
    train = [c for i, c in enumerate(chunks) if i % val_every != val_every - 1]
    if layout == "spread":
        rng = torch.Generator().manual_seed(seed)
        train = [train[i] for i in torch.randperm(len(train), generator=rng).tolist()]
        val = [val[i] for i in torch.randperm(len(val), generator=rng).tolist()]
    return torch.cat(train), torch.cat(val)


class CharWindows(Dataset):
    """Non-overlapping windows of ``ctx + 1`` bytes: inputs ``x`` and next-character targets ``y``."""

    def __init__(self, data: torch.Tensor, ctx: int):
        if ctx < 1 or len(data) < ctx + 1:
            raise ValueError(f"need at least ctx + 1 = {ctx + 1} characters, got {len(data)}")
        self.data, self.ctx = data, ctx

    def __len__(self) -> int:
        return (len(self.data) - 1) // self.ctx

    def __getitem__(self, i: int):
        chunk = self.data[i * self.ctx: i * self.ctx + self.ctx + 1].long()
        return chunk[:-1], chunk[1:]


@dataclass(frozen=True)
class CharData:
    """Train and validation windows, with the number of distinct training tokens D."""

    train: CharWindows
    val: CharWindows
    train_tokens: int
    source: str


def char_data(source: str = "pydoc", ctx: int = 64, train_tokens: int | None = None,
              val_tokens: int | None = None, chunk: int = 4096, val_every: int = 10, layout: str = "prefix",
              pool_chars: int | None = None) -> CharData:
    """Windows over ``source`` split by contiguous chunks.

    Args:
        train_tokens: keep only the first so many training bytes (the dataset-size knob); all by default.
        val_tokens: keep only the first so many validation bytes (cheaper evaluation); all by default.
        layout: ``"prefix"`` (chunks in text order) or ``"spread"`` (each split in a seeded random order, so that
            every training size and the validation set sample the same text; see the module docstring).
        pool_chars: split only the first so many bytes of the text (all by default).
    """
    data = text_bytes(source)
    if pool_chars is not None:
        if not (0 < pool_chars <= len(data)):
            raise ValueError(f"pool_chars must be in 1..{len(data)} (the bytes of {source!r}), got {pool_chars!r}")
        data = data[:pool_chars]
    train, val = split(data, chunk, val_every, layout)
    if train_tokens is not None:
        if train_tokens > len(train):
            raise ValueError(f"train_tokens={train_tokens} exceeds the {len(train)} training bytes of {source!r}")
        train = train[:train_tokens]
    if val_tokens is not None:
        val = val[:val_tokens]
    usable = len(CharWindows(train, ctx)) * ctx
    return CharData(CharWindows(train, ctx), CharWindows(val, ctx), usable, source)
