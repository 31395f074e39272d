"""Progress of the per-layer loops: tqdm bars, and warnings gathered into the log."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def warnings_to_log(context: str, logger: logging.Logger) -> Iterator[None]:
    """Collect warnings raised per layer and log each distinct message once.

    Args:
        context: what was computed (prefix of each logged line).
        logger: the computing module's logger.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for message in dict.fromkeys(str(w.message) for w in caught):
        logger.warning("%s: %s", context, message)


def progress(iterable: Any, **kwargs: Any) -> Any:
    """``iterable`` with a transient tqdm bar on terminals (``kwargs`` go to tqdm, e.g. desc)."""
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=None, leave=False, **kwargs)
