"""The bundled checkpoints ship as package data, and setuptools does not take them for a package."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ROOT / "deepwide" / "models" / "assets"


def _setuptools() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]


def test_every_asset_file_is_package_data_of_deepwide_models() -> None:
    patterns = _setuptools()["package-data"]["deepwide.models"]
    files = [p.relative_to(ASSETS.parent).as_posix() for p in ASSETS.rglob("*") if p.is_file()]
    assert "assets/tiny-teacher/model.safetensors" in files
    missed = [f for f in files if not any(fnmatch.fnmatchcase(f, pat) for pat in patterns)]
    assert missed == []


def test_data_folders_are_not_read_as_unlisted_packages() -> None:
    """With include-package-data on, setuptools 69+ prints a 40-line warning per data folder
    whose name is an identifier (``deepwide.models.assets``) that ``packages`` does not list."""
    cfg = _setuptools()
    assert cfg.get("include-package-data") is False
    assert "deepwide.models.assets" not in cfg["packages"]


def test_published_superb_table_is_package_data_of_deepwide_figures_and_loads() -> None:
    """figures/data/superb_published.toml (the report's published SUPERB rows) ships in the
    wheel: every file of figures/data matches a package-data pattern of deepwide.figures."""
    from deepwide.figures.superb import load_published_superb, published_superb_path

    data = ROOT / "figures" / "data"
    patterns = _setuptools()["package-data"]["deepwide.figures"]
    files = [p.relative_to(data.parent).as_posix() for p in data.rglob("*") if p.is_file()]
    assert "data/superb_published.toml" in files
    assert [f for f in files if not any(fnmatch.fnmatchcase(f, pat) for pat in patterns)] == []
    assert published_superb_path().resolve() == (data / "superb_published.toml").resolve()
    pub = load_published_superb()
    assert len(pub.rows) == 7 and "12-L Half-L2L" in set(pub.rows["model"])
