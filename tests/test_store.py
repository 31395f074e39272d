"""The store schema: fake stores conform, open_store refuses bad stores with one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr

from deepwide.errors import StoreError
from deepwide.store import (
    open_store,
    read_attrs,
    read_completion,
    store_info,
    validate_store,
)
from deepwide.store_writer import check_identity
from tests.fakes import write_fake_store


@pytest.fixture()
def fake(tmp_path: Path) -> Path:
    return write_fake_store(tmp_path / "fake", n_speakers=4, utts_per_speaker=3, num_layers=2, dim=4, frames_per_utt=6)


def _set_attr(path: Path, key: str, value: object) -> None:
    zarr.open_group(str(path), mode="r+", zarr_format=3).attrs[key] = value


def test_fake_store_follows_the_schema(fake: Path) -> None:
    assert validate_store(fake) == []
    ds = open_store(fake)
    assert ds.hidden.dims == ("layer", "frame", "feat")
    assert ds.pooled.dims == ("layer", "utt", "feat")
    assert ds.utt_id.dtype == object and ds.speaker.dtype == object
    assert read_completion(fake).complete


def test_open_store_is_lazy(fake: Path) -> None:
    ds = open_store(fake)
    from xarray.core import indexing

    assert not isinstance(ds["hidden"].variable._data, np.ndarray)
    assert isinstance(ds["hidden"].variable._data, indexing.ExplicitlyIndexed)
    one = ds.hidden.sel(layer=1).values
    assert one.shape == (ds.sizes["frame"], ds.sizes["feat"])


def test_open_store_refuses_an_incomplete_store(fake: Path) -> None:
    _set_attr(fake, "completion", json.dumps({"complete": False, "shards": 3, "done": [1]}))
    with pytest.raises(StoreError, match=r"incomplete: 1/3 shards done; missing shards 0 \(not started\), 2") as err:
        open_store(fake)
    assert "\n" not in str(err.value)
    assert open_store(fake, require_complete=False).sizes["utt"] == 12
    problems = validate_store(fake)
    assert len(problems) == 1 and "incomplete" in problems[0]
    assert "missing shards 0" in "\n".join(store_info(fake).lines())


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [("schema_version", 99, "schema version 99"), ("phone_set", "[not json", "phone_set is not valid JSON")],
)
def test_open_store_refuses_another_schema(fake: Path, key: str, value: object, match: str) -> None:
    _set_attr(fake, key, value)
    with pytest.raises(StoreError, match=match) as err:
        open_store(fake)
    assert "\n" not in str(err.value)


def test_open_store_refuses_missing_and_foreign_paths(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no feature store"):
        open_store(tmp_path / "nowhere")
    (tmp_path / "plain").mkdir()
    with pytest.raises(StoreError):
        open_store(tmp_path / "plain")


def test_validate_finds_inconsistent_coords(fake: Path) -> None:
    group = zarr.open_group(str(fake), mode="r+", zarr_format=3)
    off = group["frame_offset"][:]
    off[3] += 1
    group["frame_offset"][:] = off
    assert any("frame_offset" in p for p in validate_store(fake))


def test_validate_finds_unwritten_chunks(tmp_path: Path) -> None:
    path = write_fake_store(tmp_path / "f", n_speakers=3, utts_per_speaker=2, num_layers=1, dim=4, frames_per_utt=5)
    chunk = next((path / "pooled" / "c").rglob("*"))
    while chunk.is_dir():
        chunk = next(chunk.iterdir())
    chunk.unlink()
    problems = validate_store(path)
    assert any("unwritten" in p for p in problems)
    assert validate_store(path, data=False) == []


def test_check_identity_names_the_mismatch(fake: Path) -> None:
    attrs = read_attrs(fake)
    expected = {
        "schema_version": 1,
        "model_id": attrs["model_id"],
        "model_weights_hash": attrs["model_weights_hash"],
        "model_config": json.loads(attrs["model_config"]),
        "corpus_id": attrs["corpus_id"],
        "manifest_hash": attrs["manifest_hash"],
        "extract_config": json.loads(attrs["extract_config"]),
    }
    check_identity(fake, expected)
    with pytest.raises(StoreError, match="model weights"):
        check_identity(fake, dict(expected, model_weights_hash="other"))
    with pytest.raises(StoreError, match="corpus 'fake'"):
        check_identity(fake, dict(expected, corpus_id="synth"))
    with pytest.raises(StoreError, match="frames='all'"):
        check_identity(fake, dict(expected, extract_config=dict(expected["extract_config"], frames="none")))


def test_store_info_lines(fake: Path) -> None:
    info = store_info(fake)
    text = "\n".join(info.lines())
    assert info.n_utt == 12 and info.n_stored_total == 72 and info.layers == [0, 1, 2]
    assert "fake-model" in text and "complete (1 shard)" in text and "hidden" in text


# ---------------------------------------------------------------- reader-side checks (issue 18)
def test_check_finite_names_store_array_layer_and_fix(fake: Path) -> None:
    from deepwide.store import check_finite

    ds = open_store(fake)
    check_finite(ds["pooled"].isel(layer=1).values, ds, "pooled", 1)
    bad = ds["pooled"].isel(layer=1).values.copy()
    bad[0, 0], bad[3, 1] = np.nan, np.inf
    with pytest.raises(StoreError) as err:
        check_finite(bad, ds, "pooled", 1)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"store {fake}: `pooled` layer 1 holds 2 non-finite value(s)")
    assert f"`deepwide store validate --data {fake}`" in msg and "re-extract" in msg


def test_phone_set_must_cover_the_labels(fake: Path) -> None:
    from deepwide.store import phone_set_of

    assert phone_set_of(open_store(fake))[-1] == "sil"
    _set_attr(fake, "phone_set", json.dumps(["p0", "p1"]))
    with pytest.raises(StoreError, match=r"labels run 0\.\.8 but phone_set has 2 phone\(s\) \(valid labels -1\.\.1\)"):
        phone_set_of(open_store(fake))
    assert any("phone labels outside" in p for p in validate_store(fake))  # the same store fails validation


def test_check_same_corpus_with_and_without_utterances() -> None:
    from deepwide.store import check_same_corpus
    from tests.fakes import fake_feature_dataset

    a = fake_feature_dataset(n_speakers=3, utts_per_speaker=2, num_layers=1, dim=4, frames_per_utt=5)
    b = fake_feature_dataset(n_speakers=3, utts_per_speaker=2, num_layers=1, dim=4, frames_per_utt=5, seed=1)
    check_same_corpus([a, b], same_utterances=True)
    with pytest.raises(StoreError, match="different corpora \\(manifest_hash 'fake' vs 'x'\\)"):
        check_same_corpus([a, b.assign_attrs(manifest_hash="x")])
    subset = b.isel(utt=slice(0, 4))
    check_same_corpus([a, subset])  # shared utterances are enough for similarity …
    with pytest.raises(StoreError, match="hold different utterances \\(2 only in the first, 0 only in the second\\)"):
        check_same_corpus([a, subset], same_utterances=True)  # … not for a null twin
