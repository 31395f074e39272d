"""Fixtures for extraction tests: a tiny corpus, a fake encoder, a reference store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from deepwide.corpora.manifest import Manifest
from deepwide.extract import ExtractConfig, extract_features
from deepwide.store import open_store, read_attrs
from tests.extract.helpers import FakeEncoder, make_corpus
from tests.threads import one_thread, single_torch_thread  # noqa: F401 (one_thread: autouse fixture)

REPO = Path(__file__).resolve().parents[2]

#: small batches and chunks so that a dozen utterances cross many chunk boundaries
CONFIG = {"batch_seconds": 2.0}
CHUNKS = {"frame_chunk": 64, "utt_chunk": 4}


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    return make_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture()
def encoder() -> FakeEncoder:
    return FakeEncoder()


@pytest.fixture(scope="session")
def reference_store(corpus: Manifest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted, single-shard store of the default test config, model run in-process."""
    out = tmp_path_factory.mktemp("ref") / "store"
    with single_torch_thread():
        extract_features(
            FakeEncoder(), corpus, out, ExtractConfig(**CONFIG), workers=0, jobs=0, progress=False, **CHUNKS
        )
    return out


def run_sub(args: dict[str, Any], kill: str | None = None, *, wait: bool = True) -> subprocess.Popen[str]:
    """Run one extraction in a fresh Python (``tests.extract.helpers``), optionally killed."""
    env = dict(os.environ)
    env.pop("DEEPWIDE_TEST_KILL", None)
    if kill:
        env["DEEPWIDE_TEST_KILL"] = kill
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.extract.helpers", json.dumps(args)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    if wait:
        proc.wait(timeout=120)
    return proc


def assert_same_store(a: Path, b: Path) -> None:
    """Every array, coordinate and content attribute of two stores is identical."""
    da, db = open_store(a), open_store(b)
    assert set(da.variables) == set(db.variables)
    for name in da.variables:
        va, vb = da[name].values, db[name].values
        assert da[name].dims == db[name].dims, name
        assert va.dtype == vb.dtype, name
        if va.dtype.kind == "f":
            assert np.array_equal(va, vb, equal_nan=False), f"{name} differs"
        else:
            assert np.array_equal(va, vb), f"{name} differs"
    ignore = {"completion", "deepwide_version"}
    aa, ab = read_attrs(a), read_attrs(b)
    assert {k: v for k, v in aa.items() if k not in ignore} == {k: v for k, v in ab.items() if k not in ignore}


@pytest.fixture()
def extract_cli(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """``extract_cli(*args) -> click Result``: ``deepwide extract`` in this process with the
    model spec resolving to :class:`FakeEncoder` (``--jobs 0 --workers 0 --no-progress`` added)."""
    from click.testing import CliRunner

    import deepwide.models
    from deepwide.cli import cli

    monkeypatch.setattr(deepwide.models, "load_model", lambda spec, seed=0, device="cpu": FakeEncoder())

    def invoke(*args: str):  # type: ignore[no-untyped-def]
        argv = ["extract", "--model", "fake", *args, "--jobs", "0", "--workers", "0", "--no-progress"]
        return CliRunner().invoke(cli, argv)

    return invoke


def one_error_line(output: str) -> str:
    """The single non-empty line of a CLI error output, log lines (``INFO …``) aside; asserts
    there is exactly one and no traceback."""
    levels = ("DEBUG ", "INFO ", "WARNING ")
    lines = [ln for ln in output.splitlines() if ln.strip() and not ln.startswith(levels)]
    assert len(lines) == 1, output
    assert "Traceback" not in output
    return lines[0]
