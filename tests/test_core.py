"""Tests of the shared core: registry, configs, audio reading, CLI error handling, layout."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from deepwide.audio import check_sample_rate, load_audio, read_audio
from deepwide.cli import cli
from deepwide.config import (
    atomic_write_netcdf,
    atomic_write_text,
    config_from_dict,
    config_hash,
    config_to_dict,
    dump_toml,
    load_toml,
)
from deepwide.errors import AudioError, ConfigError, UnknownNameError
from deepwide.registry import Registry


def test_registry_lists_valid_names_on_miss() -> None:
    reg: Registry[int] = Registry("task")
    reg.add("sid", 1)
    reg.add("phone", 2)
    assert reg.get("sid") == 1
    assert reg.names() == ["phone", "sid"]
    with pytest.raises(UnknownNameError, match="unknown task 'kws'; valid tasks: phone, sid"):
        reg.get("kws")
    with pytest.raises(ValueError):
        reg.add("sid", 3)


@dataclasses.dataclass(frozen=True)
class _Inner:
    a: int = 1


@dataclasses.dataclass(frozen=True)
class _Cfg:
    depth: int
    widths: tuple[int, ...] = (1, 2)
    inner: _Inner = _Inner()
    name: str | None = None

    def __post_init__(self) -> None:
        if self.depth < 1:
            raise ValueError("depth must be ≥ 1")


def test_config_round_trip_and_hash(tmp_path: Path) -> None:
    cfg = _Cfg(depth=3, widths=(4, 5), inner=_Inner(7))
    d = config_to_dict(cfg)
    assert d == {"depth": 3, "widths": [4, 5], "inner": {"a": 7}, "name": None}
    assert config_from_dict(_Cfg, d) == cfg
    dump_toml(cfg, tmp_path / "c.toml")
    assert config_from_dict(_Cfg, load_toml(tmp_path / "c.toml")) == cfg
    assert config_hash(cfg) == config_hash(_Cfg(depth=3, widths=(4, 5), inner=_Inner(7)))
    assert config_hash(cfg) != config_hash(_Cfg(depth=4, widths=(4, 5), inner=_Inner(7)))


def test_config_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown key.*depht.*valid keys"):
        config_from_dict(_Cfg, {"depht": 3})
    with pytest.raises(ConfigError, match="depth must be"):
        config_from_dict(_Cfg, {"depth": 0})
    bad = tmp_path / "bad.toml"
    bad.write_text("depth = = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_toml(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_toml(tmp_path / "missing.toml")


def test_atomic_write_leaves_no_temp_files(tmp_path: Path) -> None:
    atomic_write_text(tmp_path / "x.txt", "hello")
    assert (tmp_path / "x.txt").read_text() == "hello"
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]


def test_atomic_writers_give_normal_permissions_and_keep_the_old_file_on_failure(tmp_path: Path) -> None:
    """Results written through a temporary file are readable like any file (not mkstemp's
    0600), and a writer that fails leaves the previous result and no temporary file."""
    import stat

    import xarray as xr

    from deepwide.corpora.common import atomic_write_wav
    from deepwide.distill.trainer import atomic_torch_save

    umask = os.umask(0o022)
    try:
        ds = xr.Dataset({"score": ("layer", np.arange(3.0))})
        atomic_write_netcdf(tmp_path / "r.nc", ds)
        atomic_write_text(tmp_path / "r.csv", "a,b\n")
        atomic_write_wav(tmp_path / "s.wav", np.zeros(1600, np.float32), 16000)
        atomic_torch_save({"step": 1}, tmp_path / "c.pt")
    finally:
        os.umask(umask)
    for name in ("r.nc", "r.csv", "s.wav", "c.pt"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name
    with xr.open_dataset(tmp_path / "r.nc") as back:
        np.testing.assert_array_equal(back["score"].values, np.arange(3.0))

    class Unwritable(xr.Dataset):
        __slots__ = ()

        def to_netcdf(self, *args: object, **kwargs: object) -> None:
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write_netcdf(tmp_path / "r.nc", Unwritable({"score": ("layer", np.zeros(3))}))
    with xr.open_dataset(tmp_path / "r.nc") as back:
        np.testing.assert_array_equal(back["score"].values, np.arange(3.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt", "r.csv", "r.nc", "s.wav"]


def test_audio_reading_mono_resample_and_validation(tmp_path: Path) -> None:
    t = np.arange(8000) / 8000
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.zeros_like(t)], axis=1).astype(np.float32)
    sf.write(tmp_path / "a.wav", stereo, 8000)
    wav, sr = read_audio(tmp_path / "a.wav")
    assert sr == 8000 and wav.ndim == 1 and np.allclose(wav, stereo.mean(axis=1), atol=1e-4)
    wav16 = load_audio(tmp_path / "a.wav")
    assert wav16.shape == (16000,) and wav16.dtype == np.float32
    # the 440 Hz tone keeps its frequency after resampling
    spec = np.abs(np.fft.rfft(wav16))
    assert abs(np.argmax(spec) * 16000 / len(wav16) - 440) < 2

    with pytest.raises(AudioError, match="does not exist"):
        read_audio(tmp_path / "missing.wav")
    (tmp_path / "corrupt.flac").write_bytes(b"not audio at all")
    with pytest.raises(AudioError, match="corrupt.flac"):
        read_audio(tmp_path / "corrupt.flac")
    sf.write(tmp_path / "nan.wav", np.array([0.0, np.nan, 0.1], np.float32), 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN"):
        read_audio(tmp_path / "nan.wav")
    with pytest.raises(AudioError, match="8000 Hz"):
        check_sample_rate(8000)


def test_cli_help_version_and_one_line_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(cli, ["--help"])
    assert res.exit_code == 0 and "--seed" in res.output
    res = runner.invoke(cli, ["--version"])
    assert res.exit_code == 0 and "deepwide" in res.output
    # a user error through the real entry point: one line on stderr, exit 2, no traceback
    bad = tmp_path / "bad.toml"
    bad.write_text("x = = 1")
    proc = subprocess.run(
        [sys.executable, "-m", "deepwide", "nosuchcommand"], capture_output=True, text=True
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr


def test_stage_folders_are_not_importable_bare(tmp_path: Path) -> None:
    code = "import importlib.util as u; print(u.find_spec('probing') is None, u.find_spec('deepwide.probing') is not None)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert proc.stdout.split() == ["True", "True"]


def test_user_errors_become_one_line_and_v_shows_traceback(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = str(tmp_path / "no-results")
    res = runner.invoke(cli, ["report", "--results", missing])
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:") and "no-results" in lines[0]
    proc = subprocess.run([sys.executable, "-m", "deepwide", "report", "--results", missing],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "deepwide", "-v", "report", "--results", missing],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" in proc.stderr


def test_a_full_disk_is_one_line_that_names_the_folder_and_keeps_the_old_file(tmp_path: Path) -> None:
    """ENOSPC (or a writer's PermissionError while the disk is full) becomes DiskFullError."""
    import errno

    import xarray as xr

    from deepwide.config import atomic_target
    from deepwide.errors import DiskFullError

    atomic_write_text(tmp_path / "r.csv", "old\n")

    class Full(xr.Dataset):
        __slots__ = ()

        def to_netcdf(self, *args: object, **kwargs: object) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(DiskFullError) as info:
        atomic_write_netcdf(tmp_path / "r.nc", Full({"score": ("layer", np.zeros(3))}))
    message = str(info.value)
    assert "\n" not in message and str(tmp_path) in message and "MB free" in message
    with pytest.raises(DiskFullError), atomic_target(tmp_path / "r.csv") as tmp:
        Path(tmp).write_text("partial")
        raise OSError(errno.EDQUOT, "Disk quota exceeded")
    assert (tmp_path / "r.csv").read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.csv"]


def test_decoded_duration_is_checked_against_the_expected_one(tmp_path: Path) -> None:
    """A 16-bit WAV cut to half its bytes decodes to half its duration: with the manifest's
    duration given, that is an AudioError naming the file and both durations (tolerance
    max(0.05 s, 1 %))."""
    from deepwide.audio import duration_tolerance_s

    sr = 16000
    n = int(3.14 * sr)
    path = tmp_path / "a.wav"
    sf.write(path, (0.1 * np.sin(np.arange(n) / 7)).astype(np.float32), sr, subtype="PCM_16")
    assert read_audio(path, expected_s=3.14)[0].shape == (n,)
    assert read_audio(path, expected_s=3.14 + 0.049)[0].shape == (n,)  # within 0.05 s
    with pytest.raises(AudioError, match="manifest says 3.200 s"):
        read_audio(path, expected_s=3.2)
    assert duration_tolerance_s(1.0) == 0.05 and duration_tolerance_s(20.0) == pytest.approx(0.2)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert read_audio(path)[0].shape[0] < n // 2 + 1  # unchecked, it is silently shorter
    with pytest.raises(AudioError) as err:
        load_audio(path, expected_s=3.14)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg
    assert "1.569 s long but the manifest says 3.140 s" in msg
