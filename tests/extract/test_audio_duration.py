"""Audio whose decoded length is not the manifest's duration is bad audio (issue #18, item 14)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from deepwide.errors import AudioError
from deepwide.extract import ExtractConfig, extract_features
from deepwide.extract.loading import BatchRequest, load_batch
from deepwide.store import open_store
from tests.extract.conftest import CHUNKS, CONFIG, one_error_line
from tests.extract.helpers import FakeEncoder, make_corpus


def _truncate(path: Path) -> None:
    """Cut a 16-bit WAV to half its bytes (the header is kept, the RIFF sizes are not fixed)."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_truncated_wav_stops_extraction_naming_file_and_durations(tmp_path: Path) -> None:
    man = make_corpus(tmp_path / "c", n_utts=6)
    victim = man.by_id()["u003"]
    _truncate(man.audio_path(victim))
    with pytest.raises(AudioError) as err:
        extract_features(FakeEncoder(), man, tmp_path / "s", ExtractConfig(**CONFIG), workers=0, progress=False)  # type: ignore[arg-type]
    msg = str(err.value)
    assert "\n" not in msg
    assert "u003" in msg and str(man.audio_path(victim)) in msg
    assert f"the manifest says {victim.duration_s:.3f} s" in msg
    assert "--on-bad-audio skip" in msg
    assert not (tmp_path / "s").exists()  # refused while planning, before any store is made


def test_truncated_wav_is_skipped_and_recorded_under_skip(tmp_path: Path) -> None:
    man = make_corpus(tmp_path / "c", n_utts=6)
    _truncate(man.audio_path(man.by_id()["u004"]))
    out = tmp_path / "s"
    extract_features(
        FakeEncoder(), man, out, ExtractConfig(**{**CONFIG, "on_bad_audio": "skip"}),  # type: ignore[arg-type]
        workers=0, progress=False, **CHUNKS,
    )
    ds = open_store(out)
    skipped = dict(json.loads(ds.attrs["skipped"]))
    assert list(skipped) == ["u004"] and "the manifest says" in skipped["u004"]
    assert "u004" not in ds.utt_id.values.tolist() and ds.sizes["utt"] == 5


def test_file_replaced_after_planning_is_caught_when_decoded(tmp_path: Path) -> None:
    """The decoding path (shared with distillation through deepwide.audio) checks too."""
    man = make_corpus(tmp_path / "c", n_utts=4)
    utt = man.by_id()["u000"]
    path = str(man.audio_path(utt))
    n = int(round(utt.duration_s * 16000))
    req = BatchRequest(0, (path,), (n,), ("u000",), (utt.duration_s,))
    assert load_batch(req)[2].tolist() == [n]
    _truncate(man.audio_path(utt))
    with pytest.raises(AudioError, match=rf"decoded audio of {path} is .* but the manifest says {utt.duration_s:.3f} s"):
        load_batch(req)
    # the old request form (no durations) still decodes, and still sees the changed length
    with pytest.raises(AudioError, match="the file changed since"):
        load_batch(BatchRequest(0, (path,), (n,), ("u000",)))


def test_extract_cli_one_line_and_exit_code(tmp_path: Path, extract_cli) -> None:  # type: ignore[no-untyped-def]
    man = make_corpus(tmp_path / "c", n_utts=4)
    _truncate(man.audio_path(man.by_id()["u002"]))
    res = extract_cli("--corpus", str(man.root), "--out", str(tmp_path / "s"))
    assert res.exit_code == 2
    line = one_error_line(res.output)
    assert line.startswith("Error: audio of utterance u002") and "the manifest says" in line


def test_resampled_and_stereo_files_pass_the_check(tmp_path: Path) -> None:
    """make_corpus has an 8 kHz file and a stereo one; their durations are checked at their own rate."""
    man = make_corpus(tmp_path / "c", n_utts=4)
    out = tmp_path / "s"
    extract_features(FakeEncoder(), man, out, ExtractConfig(**CONFIG), workers=0, progress=False, **CHUNKS)  # type: ignore[arg-type]
    assert np.isfinite(open_store(out).pooled.values).all()
