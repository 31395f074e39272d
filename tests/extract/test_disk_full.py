"""A full disk while extracting: one line naming the disk and the space needed, and a rerun
that resumes to the uninterrupted store (issue #18, item 10)."""

from __future__ import annotations

import errno
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import deepwide.extract.run as run_mod
import deepwide.extract.writer as writer_mod
import deepwide.store_writer as store_mod
from deepwide.config import atomic_target
from deepwide.corpora.manifest import Manifest
from deepwide.errors import DiskFullError
from deepwide.extract import ExtractConfig, extract_features
from deepwide.store import bookkeeping_dir, open_store, read_completion, validate_store
from tests.extract.conftest import CHUNKS, CONFIG, assert_same_store, one_error_line
from tests.extract.helpers import FakeEncoder


def _enospc() -> OSError:
    return OSError(errno.ENOSPC, "No space left on device")


def _fail_on_call(fn: Callable[..., Any], n: int, raise_: Callable[..., Any]) -> Callable[..., Any]:
    """``fn``, except that its ``n``-th call runs ``raise_(*args)`` instead."""
    calls = [0]

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == n:
            return raise_(*args, **kwargs)
        return fn(*args, **kwargs)

    return wrapped


def _chunk_write_full(*args: Any, **kwargs: Any) -> None:
    raise _enospc()


def _progress_record_full(path: Any, data: Any) -> None:
    # what atomic_write_json does on a full disk: the temp file write fails, atomic_target
    # turns it into its own DiskFullError
    with atomic_target(path) as tmp:
        Path(tmp).write_text("{")
        raise _enospc()


def _attrs_full(*args: Any, **kwargs: Any) -> bool:
    raise OSError(errno.EDQUOT, "Disk quota exceeded")


def _extract(corpus: Manifest, out: Path, **kw: Any):  # type: ignore[no-untyped-def]
    return extract_features(
        FakeEncoder(), corpus, out, ExtractConfig(**CONFIG), workers=0, progress=False, **CHUNKS, **kw  # type: ignore[arg-type]
    )


# (module, function name, call that fails, replacement)
POINTS = {
    "chunk write": (writer_mod, "write_region", 4, _chunk_write_full),  # after batch 0 is recorded
    "progress record": (store_mod, "atomic_write_json", 3, _progress_record_full),  # plan.json, batch 0, here
    "completion attrs": (run_mod, "finalize_store", 1, _attrs_full),
}


@pytest.mark.parametrize("point", list(POINTS))
@pytest.mark.parametrize("jobs", [0, 2])
def test_full_disk_is_one_line_and_a_rerun_resumes_to_the_same_store(
    tmp_path: Path, corpus: Manifest, reference_store: Path, monkeypatch: pytest.MonkeyPatch, point: str, jobs: int
) -> None:
    out = tmp_path / "s"
    module, name, n, replacement = POINTS[point]
    original = getattr(module, name)
    monkeypatch.setattr(module, name, _fail_on_call(original, n, replacement))
    with pytest.raises(DiskFullError) as err:
        _extract(corpus, out, jobs=jobs)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"the disk holding {out} is full (") and "MB free" in msg
    assert re.search(r"[kM]B needed", msg) and "resumes the store where it stopped" in msg
    assert not read_completion(out).complete
    assert not list(bookkeeping_dir(out).glob("locks/*.json"))  # the writer lock was released
    monkeypatch.setattr(module, name, original)
    report = _extract(corpus, out, jobs=jobs)
    assert report.complete and not report.created
    total = len(json.loads((bookkeeping_dir(out) / "plan.json").read_text())["batch_starts"]) - 1
    if point in ("chunk write", "progress record"):
        assert 0 < report.batches < total  # resumed from the last recorded batch, not restarted
    if point == "completion attrs":
        assert report.batches == 0  # every batch was on disk; only the record was missing
    assert validate_store(out) == []
    assert_same_store(out, reference_store)


def test_needed_space_is_what_is_left(
    tmp_path: Path, corpus: Manifest, reference_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The space named is the estimate of the rows not yet on disk: less for a later failure."""
    needed: list[int] = []
    real_message = run_mod.disk_full_message

    def message(folder: object, needed_bytes: int | None = None) -> str:
        needed.append(int(needed_bytes or 0))
        return real_message(folder, needed_bytes)

    monkeypatch.setattr(run_mod, "disk_full_message", message)
    for n in (1, 4):
        monkeypatch.setattr(writer_mod, "write_region", _fail_on_call(store_mod.write_region, n, _chunk_write_full))
        with pytest.raises(DiskFullError):
            _extract(corpus, tmp_path / f"s{n}", jobs=0)
    # nothing durable at the first write: every row (4 layers x 8 features, float16 frames and
    # float32 means) x 0.9, plus a new copy of zarr.json for the completion record
    ref = open_store(reference_store)
    frames, utts = int(ref.sizes["frame"]), int(ref.sizes["utt"])
    zarr_json = (tmp_path / "s1" / "zarr.json").stat().st_size
    assert needed[0] == int(4 * 8 * (frames * 2 + utts * 4) * run_mod.COMPRESSED_FRACTION) + zarr_json
    assert zarr_json < needed[1] < needed[0]  # batch 0 was recorded before the 4th write


def test_create_on_a_full_disk_leaves_no_store(tmp_path: Path, corpus: Manifest, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "s"
    monkeypatch.setattr(store_mod, "_write_skeleton", lambda tmp, sk: (_ for _ in ()).throw(_enospc()))
    with pytest.raises(DiskFullError, match=r"is full .*[kM]B needed.*resumes"):
        _extract(corpus, out, jobs=0)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_too_little_free_space_is_refused_before_starting(
    tmp_path: Path, corpus: Manifest, reference_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "s"
    monkeypatch.setattr(run_mod, "free_bytes", lambda path: 1000)
    with pytest.raises(DiskFullError) as err:
        _extract(corpus, out, jobs=0)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"the disk holding {out} has 0.0 MB free but the store needs about")
    assert "--no-space-check" in msg
    assert not out.exists()
    _extract(corpus, out, jobs=0, check_space=False)  # the override starts anyway
    assert_same_store(out, reference_store)


def test_estimate_is_the_raw_size_of_the_arrays_times_the_compression() -> None:
    import numpy as np

    from deepwide.extract.plan import ExtractPlan

    n_stored = np.array([3, 5, 7, 9])
    plan = ExtractPlan(
        utts=[], paths=[], n_samples=np.zeros(4, np.int64), n_frames=n_stored, n_stored=n_stored,
        frame_offset=np.concatenate([[0], np.cumsum(n_stored)[:-1]]),
        batch_starts=np.array([0, 2, 4]), shard_starts=np.array([0, 1, 2]),
    )
    geom = dict(n_layers=2, dim=4, itemsize=2, store_frames=True)
    full = run_mod.store_bytes_left(plan, [0, 1], {}, **geom)
    assert full == int(2 * 4 * (24 * 2 + 4 * 4) * run_mod.COMPRESSED_FRACTION)
    # shard 0 done, shard 1 not started: only the rows of utterances 2 and 3
    half = run_mod.store_bytes_left(plan, [0, 1], {0: {"done": True}}, **geom)
    assert half == int(2 * 4 * (16 * 2 + 2 * 4) * run_mod.COMPRESSED_FRACTION)
    assert run_mod.store_bytes_left(plan, [1], {1: {"next_batch": 2}}, **geom) == 0
    with_coords = run_mod.store_bytes_left(plan, [0, 1], {}, skeleton=True, **geom)
    assert with_coords == int((2 * 4 * (24 * 2 + 4 * 4) + 10 * 24) * run_mod.COMPRESSED_FRACTION)


def test_extract_cli_full_disk_one_line_nonzero_then_rerun(
    tmp_path: Path, corpus: Manifest, reference_store: Path, monkeypatch: pytest.MonkeyPatch, extract_cli
) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "s"
    args = ("--corpus", str(corpus.root), "--out", str(out), "--batch-seconds", str(CONFIG["batch_seconds"]))
    original = writer_mod.write_region
    monkeypatch.setattr(writer_mod, "write_region", _fail_on_call(original, 1, _chunk_write_full))
    res = extract_cli(*args)
    assert res.exit_code == 2
    line = one_error_line(res.output)
    assert line.startswith(f"Error: the disk holding {out} is full") and re.search(r"[kM]B needed", line) and "resumes" in line
    monkeypatch.setattr(writer_mod, "write_region", original)
    res = extract_cli(*args)
    assert res.exit_code == 0, res.output
    assert "store complete" in res.output
    assert_same_store(out, reference_store)  # default chunks here, same values
    monkeypatch.setattr(run_mod, "free_bytes", lambda path: 0)
    res = extract_cli(*args[:3], str(tmp_path / "t"), *args[4:])
    assert res.exit_code == 2 and "--no-space-check" in one_error_line(res.output)
    res = extract_cli(*args[:3], str(tmp_path / "t"), *args[4:], "--no-space-check")
    assert res.exit_code == 0, res.output
