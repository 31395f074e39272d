"""Checkpoints bundled with deepwide, by name (``load_model("tiny-teacher")``).

``tiny-teacher`` is the speaker-aware teacher of the embedded study; ``tiny-teacher-content``
the first bundled one (masked prediction only: stronger on content, weaker on speakers), kept
as a contrast (docs/teacher.md).

Each entry is a function returning the checkpoint folder (``config.json`` +
``model.safetensors``); it raises :class:`deepwide.errors.ModelError` when the files are not
installed.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from pathlib import Path

from deepwide.errors import ModelError
from deepwide.registry import Registry

ZOO: Registry[Callable[[], Path]] = Registry("bundled checkpoint")

CHECKPOINT_FILES = ("config.json", "model.safetensors")


def assets_dir() -> Path:
    """The package-data folder holding bundled checkpoints (``deepwide/models/assets``)."""
    return Path(str(resources.files("deepwide.models"))) / "assets"


def _bundled(name: str, how_to_make: str) -> Callable[[], Path]:
    def locate() -> Path:
        folder = assets_dir() / name
        missing = [f for f in CHECKPOINT_FILES if not (folder / f).is_file()]
        if missing:
            raise ModelError(
                f"the {name} checkpoint is not bundled with this install ({folder} lacks "
                f"{', '.join(missing)}); make it with `{how_to_make}` or pass a checkpoint folder"
            )
        return folder

    locate.__doc__ = f"Folder of the bundled {name} checkpoint."
    return locate


ZOO.add(
    "tiny-teacher",
    _bundled("tiny-teacher", "deepwide teacher pretrain"),
)
ZOO.add(
    "tiny-teacher-content",
    _bundled("tiny-teacher-content", "deepwide teacher pretrain --config configs/tiny-teacher-content.toml"),
)
