"""Feature stores on fsspec URLs (``memory://``, ``file://``): extract, read, probe, analyze,
and the one-line refusals of what needs a local folder (shards, resume, bookkeeping)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

from deepwide.corpora.manifest import Manifest
from deepwide.errors import ConfigError, StoreError
from deepwide.extract import ExtractConfig, extract_features
from deepwide.store import (
    BOOKKEEPING,
    open_store,
    read_attrs,
    read_completion,
    store_info,
    validate_store,
)
from tests.extract.helpers import FakeEncoder, make_corpus
from tests.threads import one_thread, single_torch_thread  # noqa: F401 (one_thread: autouse fixture)

CONFIG = ExtractConfig(batch_seconds=2.0)
KW = dict(workers=0, jobs=0, progress=False, frame_chunk=64, utt_chunk=4)
PROBE_FAST = dict(max_train_frames=300, n_boot=20, weighted_sum=False, device="cpu")


@pytest.fixture()
def memory_url() -> Iterator[str]:
    """A fresh ``memory://`` store URL; the global in-memory filesystem is emptied afterwards."""
    yield f"memory://deepwide-test-{uuid.uuid4().hex[:8]}/store.zarr"
    fs = fsspec.filesystem("memory")
    fs.store.clear()
    fs.pseudo_dirs[:] = [""]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    return make_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def local_store(corpus: Manifest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same extraction written to a local folder (the reference)."""
    out = tmp_path_factory.mktemp("local") / "store.zarr"
    with single_torch_thread():
        extract_features(FakeEncoder(), corpus, out, CONFIG, **KW)
    return out


def assert_same_content(a: xr.Dataset, b: xr.Dataset) -> None:
    """Every variable and coordinate of two opened stores is identical, bit for bit."""
    assert set(a.variables) == set(b.variables)
    for name in a.variables:
        assert a[name].dims == b[name].dims, name
        assert a[name].dtype == b[name].dtype, name
        assert np.array_equal(a[name].values, b[name].values), f"{name} differs"


def test_memory_store_equals_local_store(corpus: Manifest, local_store: Path, memory_url: str) -> None:
    report = extract_features(FakeEncoder(), corpus, memory_url, CONFIG, **KW)
    assert report.complete and report.created and report.store == memory_url
    assert report.summary().startswith(f"{memory_url}: extracted 12 utterances")
    assert_same_content(open_store(local_store), open_store(memory_url))
    ignore = {"completion", "deepwide_version"}
    la, ua = read_attrs(local_store), read_attrs(memory_url)
    assert {k: v for k, v in la.items() if k not in ignore} == {k: v for k, v in ua.items() if k not in ignore}
    assert read_completion(memory_url).complete
    assert validate_store(memory_url) == []
    info = store_info(memory_url)
    assert info.path == memory_url and info.disk_bytes is None and info.completion.complete
    fs, root = fsspec.core.url_to_fs(memory_url)
    assert not fs.exists(f"{root}/{BOOKKEEPING}")  # no bookkeeping on a URL
    # a rerun of a complete URL store has nothing to do
    again = extract_features(FakeEncoder(), corpus, memory_url, CONFIG, **KW)
    assert again.complete and not again.created and again.batches == 0


def test_memory_store_with_forked_jobs_equals_local(corpus: Manifest, local_store: Path, memory_url: str) -> None:
    extract_features(FakeEncoder(), corpus, memory_url, CONFIG, **{**KW, "jobs": 2})
    assert_same_content(open_store(local_store), open_store(memory_url))


def test_file_url_is_a_local_folder(corpus: Manifest, local_store: Path, tmp_path: Path) -> None:
    url = f"file://{tmp_path}/store.zarr"
    report = extract_features(FakeEncoder(), corpus, url, CONFIG, **KW)
    assert report.complete and report.store == tmp_path / "store.zarr"
    assert (tmp_path / "store.zarr" / BOOKKEEPING / "plan.json").is_file()  # full bookkeeping
    assert_same_content(open_store(local_store), open_store(url))
    assert validate_store(url) == []


def test_probe_and_analyze_read_url_stores(
    corpus: Manifest, local_store: Path, memory_url: str, tmp_path: Path
) -> None:
    from deepwide.analysis.configs import SpectrumConfig
    from deepwide.analysis.run import run_spectrum
    from deepwide.probing.run import ProbeConfig, probe_stores

    extract_features(FakeEncoder(), corpus, memory_url, CONFIG, **KW)
    file_url = f"file://{tmp_path}/store.zarr"
    extract_features(FakeEncoder(), corpus, file_url, CONFIG, **KW)
    config = ProbeConfig(**PROBE_FAST)  # type: ignore[arg-type]
    ref = probe_stores([local_store], ["sid", "phone"], config, seed=1)
    assert np.isfinite(ref["score"].values).all()
    for url in (memory_url, file_url):
        got = probe_stores([url], ["sid", "phone"], config, seed=1)
        for var in ("score", "ci_low", "ci_high", "n_train", "n_test"):
            assert np.array_equal(ref[var].values, got[var].values, equal_nan=True), (url, var)
        assert url in got.attrs["stores"]
    spec = SpectrumConfig(frames_per_utt=0)
    a = run_spectrum([local_store], tmp_path / "a", spec)
    b = run_spectrum([memory_url], tmp_path / "b", spec)
    for var in a.result.data_vars:
        va, vb = a.result[var].values, b.result[var].values
        assert np.array_equal(va, vb, equal_nan=va.dtype.kind == "f"), var


def test_cli_extract_then_probe_on_memory(
    corpus: Manifest, memory_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import deepwide.models
    from deepwide.cli import cli

    monkeypatch.setattr(deepwide.models, "load_model", lambda spec, seed=0, device="cpu": FakeEncoder())
    runner = CliRunner()
    result = runner.invoke(
        cli,
        ["extract", "--model", "fake", "--corpus", str(corpus.root), "--out", memory_url,
         "--batch-seconds", "2", "--jobs", "0", "--workers", "0", "--no-progress"],
    )
    assert result.exit_code == 0, result.output
    assert f"{memory_url}: extracted 12 utterances" in result.output
    result = runner.invoke(cli, ["store", "info", memory_url])
    assert result.exit_code == 0 and f"store      {memory_url}" in result.output
    result = runner.invoke(cli, ["store", "validate", memory_url])
    assert result.exit_code == 0 and "valid and complete" in result.output, result.output
    result = runner.invoke(
        cli, ["probe", "--task", "sid", "--store", memory_url, "--boot", "20", "--device", "cpu",
              "--no-weighted-sum", "--max-train-frames", "300"],
    )
    assert result.exit_code == 0, result.output
    assert "fake-encoder · sid" in result.output
    result = runner.invoke(cli, ["analyze", "spectrum", "--store", memory_url, "--out", str(corpus.root / "spec")])
    assert result.exit_code == 0, result.output


def _error_line(output: str) -> str:
    lines = [ln for ln in output.splitlines() if ln.strip() and not ln.startswith(("DEBUG ", "INFO ", "WARNING "))]
    assert len(lines) == 1 and "Traceback" not in output, output
    return lines[0]


def test_shard_on_a_url_is_refused(corpus: Manifest, memory_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError) as exc:
        extract_features(FakeEncoder(), corpus, memory_url, CONFIG, shard=(0, 2), **KW)
    assert str(exc.value) == (
        f"{memory_url}: --shard 0/2 is not supported on fsspec URLs; write to a local folder and copy it"
    )
    fs, root = fsspec.core.url_to_fs(memory_url)
    assert not fs.exists(root)  # refused before anything is written

    import deepwide.models
    from deepwide.cli import cli

    monkeypatch.setattr(deepwide.models, "load_model", lambda spec, seed=0, device="cpu": FakeEncoder())
    result = CliRunner().invoke(
        cli, ["extract", "--model", "fake", "--corpus", str(corpus.root), "--out", memory_url,
              "--shard", "1/2", "--jobs", "0", "--workers", "0", "--no-progress"],
    )
    assert result.exit_code == ConfigError.exit_code
    assert "--shard 1/2 is not supported on fsspec URLs; write to a local folder and copy it" in _error_line(result.output)


def test_interrupted_url_store_is_refused(
    corpus: Manifest, local_store: Path, memory_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import deepwide.extract.run as run

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # the run dies after its last batch, before the store is marked

    monkeypatch.setattr(run, "mark_complete", interrupted)
    with pytest.raises(KeyboardInterrupt):
        extract_features(FakeEncoder(), corpus, memory_url, CONFIG, **KW)
    monkeypatch.undo()
    assert not read_completion(memory_url).complete
    resume = (
        f"store {memory_url} is incomplete (an interrupted extraction, or one still running) and "
        f"resuming is not supported on fsspec URLs; write to a local folder and copy it "
        f"(or delete it and rerun)"
    )
    with pytest.raises(StoreError) as exc:  # a rerun refuses it: nothing records how far it got
        extract_features(FakeEncoder(), corpus, memory_url, CONFIG, **KW)
    assert str(exc.value) == resume
    with pytest.raises(StoreError) as exc:  # readers refuse it too
        open_store(memory_url)
    assert str(exc.value) == (
        f"store {memory_url} is incomplete: its extraction did not finish, and resuming is not "
        f"supported on fsspec URLs; write to a local folder and copy it (or delete it and extract again)"
    )
    problems = validate_store(memory_url)
    assert problems == ["incomplete: 0/1 shards done; missing shard 0 (not started)"]
    assert open_store(memory_url, require_complete=False).sizes == open_store(local_store).sizes


def test_bookkeeping_on_a_url_is_refused(memory_url: str) -> None:
    from deepwide.extract.locks import WriterLock
    from deepwide.store_writer import finalize_store, write_shard_state

    why = (
        f"{memory_url}: the writer's bookkeeping (plan, progress and lock files) is not supported "
        f"on fsspec URLs; write to a local folder and copy it"
    )
    for call in (
        lambda: WriterLock(memory_url, None),
        lambda: write_shard_state(memory_url, 0, {"done": True}),
        lambda: finalize_store(memory_url),
    ):
        with pytest.raises(StoreError) as exc:
            call()
        assert str(exc.value) == why


def test_non_store_at_a_url_is_refused(corpus: Manifest, memory_url: str) -> None:
    fs, root = fsspec.core.url_to_fs(memory_url)
    fs.pipe(f"{root}/notes.txt", b"not a store")
    with pytest.raises(StoreError, match="exists and is not a deepwide feature store; choose another --out"):
        extract_features(FakeEncoder(), corpus, memory_url, CONFIG, **KW)
    with pytest.raises(StoreError, match="is not a readable Zarr v3 feature store"):
        open_store(memory_url)
