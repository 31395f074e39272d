"""Kill-and-resume, shards and writer locks: every finished store equals an uninterrupted one."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from deepwide.corpora.manifest import Manifest
from deepwide.errors import StoreError
from deepwide.extract import ExtractConfig, extract_features
from deepwide.store import (
    bookkeeping_dir,
    open_store,
    read_completion,
    read_shard_state,
    store_info,
    validate_store,
)
from tests.extract.conftest import CHUNKS, CONFIG, assert_same_store, run_sub
from tests.extract.helpers import FakeEncoder


def _args(corpus: Manifest, out: Path, **extra: object) -> dict:
    args = {"corpus": str(corpus.root), "out": str(out), "config": CONFIG, **CHUNKS}
    args.update(extra)
    return args


def _killed(corpus: Manifest, out: Path, point: str, **extra: object) -> None:
    proc = run_sub(_args(corpus, out, **extra), kill=point)
    assert proc.returncode == -9, f"expected SIGKILL at {point}, got {proc.returncode}: {proc.stderr.read()[-2000:]}"
    # its forked compute jobs die with it (they share its command line, which names `out`)
    deadline = time.monotonic() + 10
    while _processes_naming(out) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _processes_naming(out), "compute jobs outlived the killed extraction"


def _processes_naming(out: Path) -> list[int]:
    pids = []
    for d in Path("/proc").glob("[0-9]*"):
        try:
            cmd = (d / "cmdline").read_bytes()
            state = (d / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(out).encode() in cmd and state != "Z":
            pids.append(int(d.name))
    return pids


def _finish(corpus: Manifest, out: Path, **extra: object) -> None:
    proc = run_sub(_args(corpus, out, **extra))
    assert proc.returncode == 0, proc.stderr.read()[-3000:]


def test_sigkill_then_rerun_gives_the_uninterrupted_store(
    tmp_path: Path, corpus: Manifest, reference_store: Path
) -> None:
    out = tmp_path / "s"
    # killed right after recording progress: the store says how far it got
    _killed(corpus, out, "journal:2")
    state = read_shard_state(out, 0)
    assert state["next_batch"] > 0 and not state["done"]
    comp = read_completion(out)
    assert not comp.complete and 0 < comp.progress[0] < 1
    with pytest.raises(StoreError, match="incomplete"):
        open_store(out)
    assert validate_store(out, data=False) != []
    # resumed, then killed between writing chunks and recording them
    _killed(corpus, out, "flush:2")
    after = read_shard_state(out, 0)["next_batch"]
    assert after >= state["next_batch"]
    proc = run_sub(_args(corpus, out))
    assert proc.returncode == 0, proc.stderr.read()[-3000:]
    total = len(json.loads((bookkeeping_dir(out) / "plan.json").read_text())["batch_starts"]) - 1
    assert json.loads(proc.stdout.read())["batches"] == total - after  # resumed, not restarted
    assert validate_store(out) == []
    assert_same_store(out, reference_store)
    assert not list(bookkeeping_dir(out).glob("locks/*.json"))


@pytest.mark.slow
@pytest.mark.parametrize("point", ["batch:3", "create:1", "flush:1", "journal:1"])
def test_sigkill_at_each_point(tmp_path: Path, corpus: Manifest, reference_store: Path, point: str) -> None:
    out = tmp_path / "s"
    _killed(corpus, out, point)
    if point == "create:1":
        assert not out.exists()  # the half-made store never appears under its name
    _finish(corpus, out)
    assert_same_store(out, reference_store)


def test_leftover_temporary_store_of_a_dead_creator_is_removed(
    tmp_path: Path, corpus: Manifest, reference_store: Path
) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    leftover = tmp_path / f".s.tmp-{socket.gethostname()}-{dead.pid}"
    (leftover / "hidden").mkdir(parents=True)
    out = tmp_path / "s"
    extract_features(FakeEncoder(), corpus, out, ExtractConfig(**CONFIG), workers=0, progress=False, **CHUNKS)  # type: ignore[arg-type]
    assert not leftover.exists()
    assert_same_store(out, reference_store)


@pytest.mark.slow
def test_sigkill_at_random_moments(tmp_path: Path, corpus: Manifest, reference_store: Path) -> None:
    rng = random.Random(0)
    for trial in range(3):
        out = tmp_path / f"s{trial}"
        for _ in range(3):
            proc = run_sub(_args(corpus, out), wait=False)
            time.sleep(rng.uniform(1.0, 4.0))
            proc.kill()
            proc.wait()
        _finish(corpus, out)
        assert_same_store(out, reference_store)


def test_two_shards_merge_to_the_single_run(tmp_path: Path, corpus: Manifest, reference_store: Path) -> None:
    out = tmp_path / "s"
    cfg = ExtractConfig(**CONFIG)  # type: ignore[arg-type]
    r1 = extract_features(FakeEncoder(), corpus, out, cfg, shard=(1, 2), workers=0, progress=False, **CHUNKS)
    assert not r1.complete and r1.shards_written == (1,)
    with pytest.raises(StoreError, match="missing shard 0"):
        open_store(out)
    info = store_info(out)
    assert info.completion.missing == (0,)
    assert "missing shard 0 (not started)" in "\n".join(info.lines())
    r0 = extract_features(FakeEncoder(), corpus, out, cfg, shard=(0, 2), workers=0, progress=False)
    assert r0.complete
    assert validate_store(out) == []
    assert_same_store(out, reference_store)


@pytest.mark.slow
def test_concurrent_shard_processes(tmp_path: Path, corpus: Manifest, reference_store: Path) -> None:
    out = tmp_path / "s"
    procs = [run_sub(_args(corpus, out, shard=[k, 3]), wait=False) for k in range(3)]
    for p in procs:
        p.wait(timeout=120)
        assert p.returncode == 0, p.stderr.read()[-3000:]
    assert read_completion(out).complete
    assert_same_store(out, reference_store)


def test_concurrent_shard_writers_in_threads(tmp_path: Path, corpus: Manifest, reference_store: Path) -> None:
    out = tmp_path / "s"
    cfg = ExtractConfig(**CONFIG)  # type: ignore[arg-type]
    # create the store first so both threads share one plan, then write both shards at once
    extract_features(FakeEncoder(), corpus, out, cfg, shard=(0, 3), workers=0, progress=False, **CHUNKS)
    errors: list[BaseException] = []

    def write(k: int) -> None:
        try:
            extract_features(FakeEncoder(), corpus, out, cfg, shard=(k, 3), workers=0, progress=False)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(k,)) for k in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert read_completion(out).complete
    assert_same_store(out, reference_store)


def test_no_shard_run_finishes_every_missing_shard(tmp_path: Path, corpus: Manifest, reference_store: Path) -> None:
    out = tmp_path / "s"
    cfg = ExtractConfig(**CONFIG)  # type: ignore[arg-type]
    extract_features(FakeEncoder(), corpus, out, cfg, shard=(2, 3), workers=0, progress=False, **CHUNKS)
    report = extract_features(FakeEncoder(), corpus, out, cfg, workers=0, progress=False)
    assert report.complete and report.shards_written == (0, 1)
    assert_same_store(out, reference_store)


def test_shard_count_must_match_the_store(tmp_path: Path, corpus: Manifest) -> None:
    out = tmp_path / "s"
    cfg = ExtractConfig(**CONFIG)  # type: ignore[arg-type]
    extract_features(FakeEncoder(), corpus, out, cfg, shard=(0, 2), workers=0, progress=False, **CHUNKS)
    with pytest.raises(StoreError, match="2 shard"):
        extract_features(FakeEncoder(), corpus, out, cfg, shard=(0, 3), workers=0, progress=False)


def _lock_file(out: Path, name: str, pid: int, host: str | None = None) -> Path:
    f = bookkeeping_dir(out) / "locks" / name
    f.write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(), "start": None}))
    return f


def _incomplete_store(corpus: Manifest, out: Path) -> None:
    cfg = ExtractConfig(**CONFIG)  # type: ignore[arg-type]
    extract_features(FakeEncoder(), corpus, out, cfg, shard=(0, 2), workers=0, progress=False, **CHUNKS)


def test_second_writer_without_shard_is_refused(tmp_path: Path, corpus: Manifest) -> None:
    out = tmp_path / "s"
    _incomplete_store(corpus, out)
    _lock_file(out, "all.json", os.getpid())  # a live writer (this very process)
    with pytest.raises(StoreError, match=f"pid {os.getpid()}.*--shard"):
        extract_features(FakeEncoder(), corpus, out, ExtractConfig(**CONFIG), workers=0, progress=False)  # type: ignore[arg-type]
    # a shard writer is refused while a whole-store writer runs …
    with pytest.raises(StoreError, match="being written"):
        extract_features(FakeEncoder(), corpus, out, ExtractConfig(**CONFIG), shard=(1, 2), workers=0, progress=False)  # type: ignore[arg-type]
    # … and a whole-store writer while a shard writer runs, or a second writer of that shard
    (bookkeeping_dir(out) / "locks" / "all.json").unlink()
    _lock_file(out, "shard-1.json", os.getpid())
    with pytest.raises(StoreError, match="being written"):
        extract_features(FakeEncoder(), corpus, out, ExtractConfig(**CONFIG), workers=0, progress=False)  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="shard 1 of"):
        extract_features(FakeEncoder(), corpus, out, ExtractConfig(**CONFIG), shard=(1, 2), workers=0, progress=False)  # type: ignore[arg-type]


def test_lock_from_another_host_is_respected(tmp_path: Path, corpus: Manifest) -> None:
    out = tmp_path / "s"
    _incomplete_store(corpus, out)
    f = _lock_file(out, "all.json", 1, host="some-other-host")
    with pytest.raises(StoreError, match="some-other-host") as err:
        extract_features(FakeEncoder(), corpus, out, ExtractConfig(**CONFIG), workers=0, progress=False)  # type: ignore[arg-type]
    assert str(f) in str(err.value)


def test_stale_lock_of_a_dead_writer_is_taken_over(tmp_path: Path, corpus: Manifest, reference_store: Path) -> None:
    out = tmp_path / "s"
    _incomplete_store(corpus, out)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _lock_file(out, "all.json", dead.pid)
    report = extract_features(FakeEncoder(), corpus, out, ExtractConfig(**CONFIG), workers=0, progress=False)  # type: ignore[arg-type]
    assert report.complete
    assert_same_store(out, reference_store)


def test_store_cli_info_and_validate(tmp_path: Path, corpus: Manifest, reference_store: Path) -> None:
    from deepwide.cli import cli

    runner = CliRunner()
    res = runner.invoke(cli, ["store", "info", str(reference_store)])
    assert res.exit_code == 0, res.output
    assert "fake-encoder" in res.output and "tiny-test" in res.output and "complete" in res.output
    res = runner.invoke(cli, ["store", "validate", str(reference_store)])
    assert res.exit_code == 0 and "valid" in res.output
    out = tmp_path / "s"
    extract_features(FakeEncoder(), corpus, out, ExtractConfig(**CONFIG), shard=(0, 2), workers=0, progress=False, **CHUNKS)  # type: ignore[arg-type]
    res = runner.invoke(cli, ["store", "info", str(out)])
    assert res.exit_code == 0 and "missing shard 1" in res.output
    res = runner.invoke(cli, ["store", "validate", str(out)])
    assert res.exit_code == 1 and "incomplete" in res.output


def test_partial_chunk_writes_keep_neighbours(tmp_path: Path, corpus: Manifest, reference_store: Path) -> None:
    """Shards ending mid-chunk: every row of the shared chunk survives both writers."""
    out = tmp_path / "s"
    cfg = ExtractConfig(**CONFIG)  # type: ignore[arg-type]
    for k in (0, 2, 1):
        extract_features(FakeEncoder(), corpus, out, cfg, shard=(k, 3), workers=0, progress=False, **CHUNKS)
    plan = json.loads((bookkeeping_dir(out) / "plan.json").read_text())
    ds = open_store(out)
    starts = [int(ds.frame_offset.values[plan["batch_starts"][b]]) for b in plan["shard_starts"][1:-1]]
    assert any(s % 64 for s in starts), "test corpus should put a shard boundary inside a chunk"
    assert np.isfinite(ds.hidden.values.astype(np.float32)).all()
    assert_same_store(out, reference_store)


def _store_files(store: Path) -> dict[str, bytes]:
    """Every file of a store but its writer bookkeeping (progress, plan, locks), by path."""
    return {
        str(f.relative_to(store)): f.read_bytes()
        for f in sorted(store.rglob("*"))
        if f.is_file() and bookkeeping_dir(store) not in f.parents
    }


class _Killed(BaseException):
    """Stands in for SIGKILL inside this process (nothing after the fault point runs)."""


def test_kill_in_the_middle_of_large_shards_resumes_to_a_byte_identical_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shards spanning several pooled and many hidden chunks, killed mid-shard (SIGKILL after
    a recorded batch; a stop between writing chunks and recording them), resume byte for byte."""
    import deepwide.extract.writer as writer_mod
    from tests.extract.helpers import make_corpus

    corpus = make_corpus(tmp_path / "c", n_utts=24, seed=5, min_s=0.3, max_s=0.8)
    config = ExtractConfig(batch_seconds=1.0)
    chunks = {"frame_chunk": 16, "utt_chunk": 2}
    ref = tmp_path / "ref"
    for k in (0, 1):
        extract_features(FakeEncoder(), corpus, ref, config, shard=(k, 2), workers=0, jobs=0, progress=False, **chunks)
    plan = json.loads((bookkeeping_dir(ref) / "plan.json").read_text())
    bs, ss = plan["batch_starts"], plan["shard_starts"]
    ds = open_store(ref)
    for k in (0, 1):
        u0, u1 = bs[ss[k]], bs[ss[k + 1]]
        f0 = int(ds.frame_offset.values[u0])
        f1 = int(ds.frame_offset.values[u1 - 1] + ds.n_stored.values[u1 - 1])
        assert (u1 - u0) // 2 >= 4 and (f1 - f0) // 16 >= 8, "each shard should span many chunks"
        assert ss[k + 1] - ss[k] >= 5, "each shard should hold several batches"

    out = tmp_path / "s"
    args = {"corpus": str(corpus.root), "out": str(out), "config": {"batch_seconds": 1.0}, **chunks, "shard": [0, 2]}
    killed = run_sub(args, kill="journal:3")
    assert killed.returncode == -9, killed.stderr.read()[-2000:]
    state = read_shard_state(out, 0)
    assert ss[0] < state["next_batch"] < ss[1] and not state["done"]  # in the middle of shard 0
    assert len(list((out / "pooled" / "c").rglob("*"))) > 1  # pooled chunks were on disk
    r0 = extract_features(FakeEncoder(), corpus, out, config, shard=(0, 2), workers=0, jobs=0, progress=False)
    assert r0.batches == ss[1] - state["next_batch"]  # resumed, not restarted

    calls = [0]

    def stop_at_third_flush(name: str) -> None:
        if name == "flush":
            calls[0] += 1
            if calls[0] == 3:
                raise _Killed

    monkeypatch.setattr(writer_mod, "fault_point", stop_at_third_flush)
    with pytest.raises(_Killed):
        extract_features(FakeEncoder(), corpus, out, config, shard=(1, 2), workers=0, jobs=0, progress=False)
    monkeypatch.undo()
    state1 = read_shard_state(out, 1)
    assert ss[1] < state1["next_batch"] < ss[2]  # chunks beyond the recorded batch are on disk
    report = extract_features(FakeEncoder(), corpus, out, config, workers=0, jobs=2, progress=False)
    assert report.complete and report.shards_written == (1,)
    assert report.batches == ss[2] - state1["next_batch"]
    assert validate_store(out) == []
    assert_same_store(out, ref)
    got, want = _store_files(out), _store_files(ref)
    assert sorted(got) == sorted(want)
    for name in want:
        assert got[name] == want[name], f"{name} differs"
