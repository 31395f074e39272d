"""The report's document model: an ordered list of blocks that each renderer turns into a page.

Blocks are ``(kind, payload)`` with kind in h1/h2/h3/p/ul/table/figure;
:func:`~deepwide.figures.html_renderer.render_html` and
:func:`~deepwide.figures.markdown_renderer.render_markdown` render the same document.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from deepwide.figures.recipes import BuiltFigure


@dataclass
class Table:
    """A table block."""

    header: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class Doc:
    """An ordered list of blocks: (kind, payload) with kind in h1/h2/h3/p/ul/table/figure."""

    blocks: list[tuple[str, object]] = field(default_factory=list)

    def h(self, level: int, text: str) -> None:
        """A heading of ``level`` 1–3."""
        self.blocks.append((f"h{level}", text))

    def p(self, text: str) -> None:
        """A paragraph."""
        self.blocks.append(("p", text))

    def ul(self, items: Sequence[str]) -> None:
        """A bullet list (nothing when ``items`` is empty)."""
        if items:
            self.blocks.append(("ul", list(items)))

    def table(self, t: Table) -> None:
        """A table."""
        self.blocks.append(("table", t))

    def figure(self, bf: BuiltFigure, png: bytes) -> None:
        """A drawn figure and its PNG bytes."""
        self.blocks.append(("figure", (bf, png)))
