"""A report document as one self-contained HTML page (inline CSS, figures as data URIs)."""

from __future__ import annotations

import base64
import html

from deepwide.figures.document import Doc, Table

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;max-width:1100px;
margin:2em auto;padding:0 1em;color:#111;line-height:1.45}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.8em 0;font-size:.88em}
th,td{border:1px solid #ccc;padding:.25em .55em;text-align:left;vertical-align:top}
th{background:#f3f3f3}caption{caption-side:bottom;text-align:left;color:#555;padding-top:.3em}
figure{margin:1.2em 0}figure img{max-width:100%;height:auto}
figcaption{color:#444;font-size:.9em}code{background:#f3f3f3;padding:0 .2em}
.note{color:#555}
"""


def render_html(doc: Doc, title: str) -> str:
    """The document as one self-contained HTML page (inline CSS, figures as data URIs)."""
    e = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>",
    ]
    for kind, payload in doc.blocks:
        if kind in ("h1", "h2", "h3"):
            out.append(f"<{kind}>{e(str(payload))}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{e(str(payload))}</p>")
        elif kind == "ul":
            out.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in payload) + "</ul>")  # type: ignore[union-attr]
        elif kind == "table":
            t: Table = payload  # type: ignore[assignment]
            rows = "".join(
                "<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in t.rows
            )
            cap = f"<caption>{e(t.caption)}</caption>" if t.caption else ""
            head = "".join(f"<th>{e(h)}</th>" for h in t.header)
            out.append(f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif kind == "figure":
            bf, png = payload  # type: ignore[misc]
            b64 = base64.b64encode(png).decode("ascii")
            out.append(
                f'<figure id="{e(bf.stem)}"><img alt="{e(bf.title)}" '
                f'src="data:image/png;base64,{b64}"><figcaption><b>{e(bf.title)}.</b> '
                f"{e(bf.caption)}</figcaption></figure>"
            )
    out.append("</body></html>")
    return "\n".join(out) + "\n"
