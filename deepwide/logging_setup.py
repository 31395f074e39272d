"""Logging configuration shared by the CLI (``-v``/``-q``)."""

from __future__ import annotations

import logging


def configure_logging(verbosity: int) -> None:
    """``verbosity``: -1 quiet (warnings), 0 info, ≥1 debug."""
    level = logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", force=True)
    for noisy in ("matplotlib", "numba", "fsspec", "urllib3", "PIL"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
