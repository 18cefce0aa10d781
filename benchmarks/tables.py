"""Printing the benchmarks' tables: markdown, or plain text in aligned columns."""

from __future__ import annotations

from typing import Any, Sequence


def render(header: Sequence[str], rows: Sequence[Sequence[Any]], markdown: bool) -> str:
    """A table: markdown, or plain text in aligned columns.

    Example:
        >>> print(render(["a", "b"], [[1, 22]], markdown=True))
        | a | b |
        |---|---|
        | 1 | 22 |
    """
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(r) + " |" for r in cells]
        return "\n".join(lines[:1] + ["|" + "---|" * len(header)] + lines[1:])
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells)
