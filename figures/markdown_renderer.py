"""A report document as Markdown, its figures linked as PNG files in a folder beside it."""

from __future__ import annotations

from deepwide.figures.document import Doc, Table

#: Folder (beside report.md) holding the PNGs the Markdown twin links to.
FIGURE_DIR = "report_figures"


def render_markdown(doc: Doc, figure_dir: str = FIGURE_DIR) -> str:
    """The document as Markdown; figures link to ``<figure_dir>/<stem>.png``."""
    out: list[str] = []
    for kind, payload in doc.blocks:
        if kind in ("h1", "h2", "h3"):
            out.append("#" * int(kind[1]) + " " + str(payload))
        elif kind == "p":
            out.append(str(payload))
        elif kind == "ul":
            out.append("\n".join(f"- {i}" for i in payload))  # type: ignore[union-attr]
        elif kind == "table":
            t: Table = payload  # type: ignore[assignment]
            cell = lambda c: str(c).replace("|", "\\|")  # noqa: E731
            lines = [
                "| " + " | ".join(cell(h) for h in t.header) + " |",
                "|" + "|".join("---" for _ in t.header) + "|",
            ]
            lines += ["| " + " | ".join(cell(c) for c in r) + " |" for r in t.rows]
            if t.caption:
                lines.append("\n*" + t.caption + "*")
            out.append("\n".join(lines))
        elif kind == "figure":
            bf, _ = payload  # type: ignore[misc]
            out.append(f"![{bf.title}]({figure_dir}/{bf.stem}.png)\n\n*{bf.title}.* {bf.caption}")
    return "\n\n".join(out) + "\n"
