"""One figure style for deepwide: colour-blind-safe, readable at paper size.

- Colours: the Okabe-Ito palette (safe for the common colour-vision deficiencies). The teacher is
  always black; students take the palette in a fixed order (deepest first, then narrowest, then
  id), so a model keeps its colour in every figure of one results folder.
- A random twin (``random:<model>``) is drawn in its model's colour, dashed and lighter.
- Every model also has its own marker, so lines stay distinguishable in greyscale.
- Sequential maps (heatmaps, grids) use viridis/cividis.
- Sizes: 7.0 in is a two-column figure, 3.4 in one column; text is 7–8 pt.

Figures are built as :class:`matplotlib.figure.Figure` objects with an Agg canvas, never through
``pyplot``, so nothing global changes and nothing needs closing.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar

import matplotlib as mpl
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

#: Okabe & Ito (2008), "Color Universal Design".
OKABE_ITO: dict[str, str] = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
}
#: Student colours in assignment order (yellow last: weakest contrast on white).
STUDENT_COLORS: tuple[str, ...] = tuple(
    OKABE_ITO[k]
    for k in (
        "blue",
        "vermillion",
        "bluish_green",
        "orange",
        "reddish_purple",
        "sky_blue",
        "yellow",
    )
)
TEACHER_COLOR = OKABE_ITO["black"]
UNKNOWN_COLOR = "#7f7f7f"
PUBLISHED_COLOR = "#7f7f7f"
MARKERS: tuple[str, ...] = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")
SEQUENTIAL_CMAP = "viridis"
SIMILARITY_CMAP = "cividis"

TWO_COLUMN_IN = 7.0
ONE_COLUMN_IN = 3.4
PANEL_IN = 1.55
PNG_DPI = 200

#: rcParams for every deepwide figure.
PAPER_RC: dict[str, Any] = {
    "font.size": 7.5,
    "axes.titlesize": 8,
    "axes.labelsize": 7.5,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "figure.titlesize": 8.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.5,
    "lines.linewidth": 1.4,
    "lines.markersize": 3.5,
    "legend.frameon": False,
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "savefig.dpi": PNG_DPI,
    "image.cmap": SEQUENTIAL_CMAP,
}

F = TypeVar("F", bound=Callable[..., Any])


@contextmanager
def paper_style() -> Iterator[None]:
    """Context in which figures are built *and* saved (ticks are created lazily at draw)."""
    with mpl.rc_context(PAPER_RC):
        yield


def styled(func: F) -> F:
    """Decorator: run a plotting function under :func:`paper_style`."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with paper_style():
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


@dataclass(frozen=True)
class ModelStyle:
    """How one model is drawn."""

    color: str
    marker: str
    linestyle: str = "-"
    alpha: float = 1.0
    label: str = ""

    def line_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``Axes.plot``."""
        return {
            "color": self.color,
            "marker": self.marker,
            "linestyle": self.linestyle,
            "alpha": self.alpha,
            "label": self.label,
            "markerfacecolor": "white" if self.linestyle != "-" else self.color,
        }


class ModelStyles:
    """A fixed model → style mapping for one results folder."""

    def __init__(self, styles: Mapping[str, ModelStyle]) -> None:
        self._styles = dict(styles)

    def __getitem__(self, model: str) -> ModelStyle:
        if model in self._styles:
            return self._styles[model]
        return ModelStyle(UNKNOWN_COLOR, "o", "-", 1.0, model)

    def __contains__(self, model: object) -> bool:
        return model in self._styles

    def order(self, models: Sequence[str]) -> list[str]:
        """``models`` in legend order: each trained model followed by its random twin."""
        rank = {m: i for i, m in enumerate(self._styles)}
        return sorted(models, key=lambda m: (rank.get(m, len(rank)), m))


def model_styles(
    models: Sequence[str],
    *,
    num_layers: Mapping[str, int],
    dim: Mapping[str, int],
    null_of: Mapping[str, str],
    teacher: str | None,
) -> ModelStyles:
    """Assign colours and markers: teacher black, students by (−depth, width, id), twins dashed.

    Args:
        models: every model id of the results folder.
        num_layers / dim: depth and width per model (used only for the order).
        null_of: for a random twin, the id of the model it is the twin of ("" otherwise).
        teacher: the teacher's id, or ``None``.
    """
    trained = [m for m in models if not null_of.get(m)]
    others = sorted(
        (m for m in trained if m != teacher),
        key=lambda m: (-int(num_layers.get(m, 0)), int(dim.get(m, 0)), m),
    )
    order = ([teacher] if teacher in trained else []) + others
    styles: dict[str, ModelStyle] = {}
    for i, m in enumerate(order):
        color = (
            TEACHER_COLOR
            if m == teacher
            else STUDENT_COLORS[(i - (teacher in trained)) % len(STUDENT_COLORS)]
        )
        label = f"{m} (teacher)" if m == teacher else m
        styles[m] = ModelStyle(color, MARKERS[i % len(MARKERS)], "-", 1.0, label)
        for twin in sorted(t for t in models if null_of.get(t) == m):
            styles[twin] = ModelStyle(color, MARKERS[i % len(MARKERS)], "--", 0.75, twin)
    for i, m in enumerate(sorted(m for m in models if m not in styles)):
        styles[m] = ModelStyle(UNKNOWN_COLOR, MARKERS[i % len(MARKERS)], "--", 0.75, m)
    return ModelStyles(styles)


def new_figure(width: float, height: float) -> Figure:
    """A constrained-layout figure with an Agg canvas (no pyplot state)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_width(n_panels: int, panel_in: float = PANEL_IN) -> float:
    """Width for ``n_panels`` side by side: at least one column, about ``panel_in`` each."""
    return max(ONE_COLUMN_IN, panel_in * n_panels + 0.4)


def finish_axes(ax: Axes) -> None:
    """Freeze the paper tick sizes on ``ax`` (ticks may be created after the rc context)."""
    ax.tick_params(labelsize=PAPER_RC["xtick.labelsize"], length=2.5, width=0.6, pad=1.5)


def panel_axes(fig: Figure) -> list[Axes]:
    """The data panels of ``fig`` (every Axes except colorbars)."""
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def figure_bytes(fig: Figure, fmt: str = "png", dpi: int = PNG_DPI) -> bytes:
    """Render ``fig`` to bytes in ``fmt`` ("png" or "pdf")."""
    buf = io.BytesIO()
    fonttools = logging.getLogger("fontTools")  # PDF font subsetting logs every table at INFO
    level = fonttools.level
    fonttools.setLevel(max(level, logging.WARNING))
    try:
        with paper_style():
            fig.savefig(buf, format=fmt, dpi=dpi, metadata=_metadata(fmt))
    finally:
        fonttools.setLevel(level)
    return buf.getvalue()


def _metadata(fmt: str) -> dict[str, Any]:
    # fixed metadata so reruns give identical bytes (no creation date in the PDF)
    if fmt == "pdf":
        return {"Creator": "deepwide", "CreationDate": None}
    if fmt == "png":
        return {"Software": "deepwide"}
    return {}
