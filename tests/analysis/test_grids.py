"""Store-level analysis on fake stores: shared frames, streamed grids, label-CCA, spectra, files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import deepwide.analysis.similarity as similarity
from deepwide.analysis import (
    LabelsConfig,
    SimilarityConfig,
    SpectrumConfig,
    effective_rank,
    label_cca_table,
    linear_cka,
    open_feature_store,
    participation_ratio,
    sample_shared_frames,
    similarity_grid,
    spectrum_table,
    write_result,
)
from deepwide.analysis.output import similarity_stem
from deepwide.errors import ConfigError, StoreError
from tests.fakes import fake_feature_dataset


def _write(ds: xr.Dataset, path: Path) -> xr.Dataset:
    ds.to_zarr(str(path), mode="w", consolidated=False, zarr_format=3)
    return open_feature_store(path)


def _reordered(ds: xr.Dataset, keep_every: int = 1) -> xr.Dataset:
    """The same store with utterances and frames in reverse order, optionally fewer frames."""
    n_utt = ds.sizes["utt"]
    new_pos = n_utt - 1 - np.arange(n_utt)
    out = ds.isel(utt=np.arange(n_utt)[::-1])  # reversed utterances: old u is now at n_utt − 1 − u
    frames = np.arange(ds.sizes["frame"])[::-1]
    frames = frames[ds["frame_index"].values[frames] % keep_every == 0]
    out = out.isel(frame=frames)
    out = out.assign_coords(
        utt_index=("frame", new_pos[ds["utt_index"].values[frames]].astype(np.int32))
    )
    return out


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, xr.Dataset]:
    root = tmp_path_factory.mktemp("stores")
    a = fake_feature_dataset(model_id="teacher", seed=0, num_layers=4, dim=16)
    b = fake_feature_dataset(model_id="student-2x24", seed=1, num_layers=2, dim=24)
    null = fake_feature_dataset(
        model_id="random:student-2x24", seed=2, num_layers=2, dim=24, structure=False
    )
    other = fake_feature_dataset(model_id="other", seed=3).assign_attrs(
        corpus_id="librispeech", manifest_hash="x"
    )
    renamed = fake_feature_dataset(model_id="renamed", seed=4)
    renamed = renamed.assign_coords(
        utt_id=("utt", np.array([f"z{u}" for u in renamed["utt_id"].values], dtype=object))
    )
    pooled_only = (
        fake_feature_dataset(model_id="pooled-only", seed=5)
        .drop_vars(["hidden", "utt_index", "frame_index", "phone"])
        .assign_attrs(frames_mode="none")
    )
    return {
        "a": _write(a, root / "a.zarr"),
        "b": _write(b, root / "b.zarr"),
        "b_reordered": _write(_reordered(b, keep_every=2), root / "b_rev.zarr"),
        "null": _write(null, root / "null.zarr"),
        "other": _write(other, root / "other.zarr"),
        "renamed": _write(renamed, root / "renamed.zarr"),
        "pooled_only": _write(pooled_only, root / "pooled.zarr"),
    }


def _keys(ds: xr.Dataset, rows: np.ndarray) -> list[tuple[str, int]]:
    utt = ds["utt_id"].values[ds["utt_index"].values[rows]]
    return list(zip(utt.tolist(), ds["frame_index"].values[rows].tolist(), strict=True))


def test_shared_frames_are_the_same_frames_in_every_store(stores: dict[str, xr.Dataset]) -> None:
    a, b, brev = stores["a"], stores["b"], stores["b_reordered"]
    sample = sample_shared_frames([a, brev], frames_per_utt=4, seed=0)
    ka, kb = _keys(a, sample.rows[0]), _keys(brev, sample.rows[1])
    assert ka == kb == list(zip(sample.utt_id.tolist(), sample.frame_index.tolist(), strict=True))
    assert all(f % 2 == 0 for _, f in ka)  # only frames present in both stores
    per_utt = np.unique(sample.utt_id, return_counts=True)[1]
    assert per_utt.max() == 4 and sample.n_utts == a.sizes["utt"]
    # the draw depends on the seed, not on the stores' row order
    again = sample_shared_frames([a, b, brev], frames_per_utt=4, seed=0)
    assert set(_keys(a, again.rows[0])) <= set(_keys(a, np.arange(a.sizes["frame"])))
    other_seed = sample_shared_frames([a, brev], frames_per_utt=4, seed=1)
    assert _keys(a, other_seed.rows[0]) != ka
    everything = sample_shared_frames([a, brev], frames_per_utt=0, seed=0)
    assert everything.rows[0].size == a.sizes["frame"] // 2


def test_refuses_other_corpora_disjoint_utterances_and_pooled_only(
    stores: dict[str, xr.Dataset],
) -> None:
    cfg = SimilarityConfig(measure="cka")
    with pytest.raises(StoreError, match="different corpora") as exc:
        similarity_grid(stores["a"], stores["other"], cfg)
    assert "\n" not in str(exc.value)
    with pytest.raises(StoreError, match="share no utterances"):
        similarity_grid(stores["a"], stores["renamed"], cfg)
    with pytest.raises(StoreError, match="holds no frames"):
        similarity_grid(stores["a"], stores["pooled_only"], cfg)
    with pytest.raises(ConfigError, match="layer\\(s\\) 7 do not exist"):
        similarity_grid(stores["a"], stores["b"], SimilarityConfig(layers_b=(0, 7)))


@pytest.mark.parametrize("debiased", [False, True])
def test_streamed_grid_equals_in_memory_cka_on_the_same_frames(
    stores: dict[str, xr.Dataset], debiased: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, brev = stores["a"], stores["b_reordered"]
    seen: list[int] = []
    real = similarity.read_rows

    def spy(ds: xr.Dataset, var: str, layer: int, rows: np.ndarray) -> np.ndarray:
        seen.append(len(rows))
        return real(ds, var, layer, rows)

    monkeypatch.setattr(similarity, "read_rows", spy)
    cfg = SimilarityConfig(
        measure="cka-debiased" if debiased else "cka", frames_per_utt=6, seed=3, block_rows=100
    )
    ds = similarity_grid(a, brev, cfg)
    assert max(seen) <= 100  # streamed: one block of one layer at a time
    monkeypatch.setattr(similarity, "read_rows", real)
    sample = sample_shared_frames([a, brev], 6, 3)
    assert ds.attrs["n_samples"] == sample.rows[0].size
    for la in ds["layer_a"].values:
        x = a["hidden"].sel(layer=la).values[sample.rows[0]]
        for lb in ds["layer_b"].values:
            y = brev["hidden"].sel(layer=lb).values[sample.rows[1]]
            assert float(ds["similarity"].sel(layer_a=la, layer_b=lb)) == pytest.approx(
                linear_cka(x, y, debiased=debiased), abs=1e-9
            )


def test_grid_ignores_store_row_order(stores: dict[str, xr.Dataset]) -> None:
    cfg = SimilarityConfig(measure="pwcca", frames_per_utt=0)
    # b_reordered holds the even frames of b: compare on exactly those frames
    g1 = similarity_grid(stores["a"], stores["b_reordered"], cfg)
    g2 = similarity_grid(
        stores["a"], stores["b"], SimilarityConfig(measure="pwcca", frames_per_utt=0)
    )
    assert g1.attrs["n_samples"] * 2 == g2.attrs["n_samples"]
    sample = sample_shared_frames([stores["a"], stores["b"], stores["b_reordered"]], 0, 0)
    x = stores["a"]["hidden"].sel(layer=1).values[sample.rows[0]]
    y = stores["b"]["hidden"].sel(layer=2).values[sample.rows[1]]
    from deepwide.analysis import pwcca

    assert float(g1["similarity"].sel(layer_a=1, layer_b=2)) == pytest.approx(pwcca(x, y), abs=1e-9)


@pytest.mark.parametrize("measure", ["cka", "cka-debiased", "cka-rbf", "svcca", "pwcca"])
def test_self_grid_has_unit_diagonal_and_null_is_low(
    stores: dict[str, xr.Dataset], measure: str
) -> None:
    a = stores["a"]
    ds = similarity_grid(
        a,
        a,
        SimilarityConfig(measure=measure, frames_per_utt=5, layers_a=(0, 2, 4), layers_b=(0, 2, 4)),
    )
    np.testing.assert_allclose(np.diag(ds["similarity"].values), 1.0, atol=1e-9)
    assert list(ds["layer_a"].values) == [0, 2, 4]
    grid = similarity_grid(
        stores["a"],
        stores["b"],
        SimilarityConfig(measure=measure, frames_per_utt=5),
        null=stores["null"],
    )
    assert grid["similarity"].dims == ("layer_a", "layer_b") and grid["similarity"].shape == (5, 3)
    assert grid.attrs["null_model"] == "random:student-2x24"
    # planted structure: the first layers share speaker signal; the null shares nothing
    assert (
        float(grid["similarity"].sel(layer_a=0, layer_b=0))
        > float(grid["null_similarity"].max()) + 0.1
    )


def test_label_cca_table_locates_speaker_and_phone(stores: dict[str, xr.Dataset]) -> None:
    ds = label_cca_table(
        [stores["a"], stores["b"], stores["null"]], LabelsConfig(labels=("phone", "speaker"))
    )
    assert ds["label_cca"].dims == ("model", "label", "layer")
    teacher = ds["label_cca"].sel(model="teacher")
    phone, speaker = teacher.sel(label="phone").values, teacher.sel(label="speaker").values
    assert np.all(np.diff(phone) > 0)  # phone information grows with depth
    assert speaker[0] > speaker[2] > speaker[4] + 0.3  # speaker information fades
    assert np.isnan(ds["label_cca"].sel(model="student-2x24", layer=3)).all()
    null = ds["label_cca"].sel(model="random:student-2x24", layer=[0, 1, 2]).values
    assert np.abs(null).max() < 0.15
    assert (
        bool(ds["is_null"].sel(model="random:student-2x24"))
        and ds["null_of"].sel(model="random:student-2x24").item() == "student-2x24"
    )
    frame_level = label_cca_table([stores["a"]], LabelsConfig(labels=("speaker",), level="frame"))
    spk = frame_level["label_cca"].sel(model="teacher", label="speaker").values
    assert spk[0] > spk[4] + 0.3


def test_spectrum_table_matches_in_memory(stores: dict[str, xr.Dataset]) -> None:
    ds = spectrum_table([stores["a"], stores["null"]], SpectrumConfig(block_rows=100))
    for layer in (0, 4):
        x = stores["a"]["hidden"].sel(layer=layer).values
        assert float(ds["effective_rank"].sel(model="teacher", layer=layer)) == pytest.approx(
            effective_rank(x), rel=1e-8
        )
        assert float(ds["participation_ratio"].sel(model="teacher", layer=layer)) == pytest.approx(
            participation_ratio(x), rel=1e-8
        )
    # pure noise uses its whole width; the planted low-rank signal does not
    assert float(ds["effective_rank"].sel(model="random:student-2x24", layer=0)) > 20
    assert float(ds["effective_rank"].sel(model="teacher", layer=0)) < 14
    pooled = spectrum_table([stores["a"]], SpectrumConfig(level="utt"))
    assert pooled["n_samples"].item() == stores["a"].sizes["utt"]


def test_write_result_round_trip(stores: dict[str, xr.Dataset], tmp_path: Path) -> None:
    cfg = SimilarityConfig(measure="cka", frames_per_utt=3)
    ds = similarity_grid(stores["a"], stores["b"], cfg, null=stores["null"])
    paths = write_result(ds, tmp_path, similarity_stem(ds), cfg)
    assert [p.name for p in paths] == [
        "similarity_cka_teacher__student-2x24.nc",
        "similarity_cka_teacher__student-2x24.csv",
        "similarity_cka_teacher__student-2x24.config.toml",
    ]
    back = xr.load_dataset(paths[0])
    xr.testing.assert_allclose(back["similarity"], ds["similarity"])
    for key in (
        "measure",
        "model_a",
        "model_b",
        "null_model",
        "n_samples",
        "frames_per_utt",
        "seed",
        "num_layers_a",
        "num_layers_b",
    ):
        assert key in back.attrs
    assert "null_similarity" in back
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in paths
    )  # no temp files
    labels = label_cca_table([stores["a"], stores["null"]], LabelsConfig(labels=("speaker",)))
    lpaths = write_result(labels, tmp_path, "labels", LabelsConfig(labels=("speaker",)))
    lback = xr.load_dataset(lpaths[0])
    assert lback["is_null"].dtype == bool and list(lback["model"].values) == [
        "teacher",
        "random:student-2x24",
    ]
    assert "label_cca" in lpaths[1].read_text().splitlines()[0]


def test_padded_frames_are_excluded(tmp_path: Path) -> None:
    ds = fake_feature_dataset(model_id="padded", seed=6)
    n_frames = ds["n_frames"].values.copy()
    n_frames[:10] = 20  # the first ten utterances' last 10 stored frames are padding
    padded = _write(ds.assign_coords(n_frames=("utt", n_frames)), tmp_path / "padded.zarr")
    sample = sample_shared_frames([padded], frames_per_utt=0, seed=0)
    assert sample.rows[0].size == ds.sizes["frame"] - 10 * 10
    first = sample.frame_index[sample.utt_id == ds["utt_id"].values[0]]
    assert first.max() == 19
    spec = spectrum_table([padded], SpectrumConfig())
    assert spec["n_samples"].item() == ds.sizes["frame"] - 100


def test_warns_when_stores_share_few_frames(
    stores: dict[str, xr.Dataset], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="deepwide.analysis.stores"):
        sample_shared_frames([stores["a"], stores["b_reordered"]], frames_per_utt=10, seed=0)
    assert not caplog.records
    with caplog.at_level("WARNING", logger="deepwide.analysis.stores"):
        sample = sample_shared_frames(
            [stores["a"], stores["b_reordered"]], frames_per_utt=40, seed=0
        )
    assert sample.rows[0].size == 15 * stores["a"].sizes["utt"]
    assert "only 15.0 frames per utterance" in caplog.text


# ---------------------------------------------------------------- damaged stores (issue 18)
@pytest.fixture()
def damaged(tmp_path: Path) -> dict[str, xr.Dataset]:
    """A good store and its copy with layer 3 of `hidden` and `pooled` lost (deleted chunks)."""
    from tests.probing.damaged import delete_chunk, write_chunked_store

    kw = dict(n_speakers=6, utts_per_speaker=4, num_layers=4, dim=8, frames_per_utt=10)
    good = write_chunked_store(tmp_path / "good.zarr", model_id="good", **kw)
    bad = write_chunked_store(tmp_path / "bad.zarr", model_id="bad", seed=1, **kw)
    delete_chunk(bad, "hidden", 3)
    delete_chunk(bad, "pooled", 3)
    return {"good": open_feature_store(good), "bad": open_feature_store(bad)}


@pytest.mark.parametrize(
    ("run", "array"),
    [
        (lambda s: similarity_grid(s["good"], s["bad"], SimilarityConfig(measure="cka")), "hidden"),
        (lambda s: similarity_grid(s["good"], s["bad"], SimilarityConfig(measure="svcca")), "hidden"),
        (lambda s: label_cca_table([s["bad"]], LabelsConfig(labels=("phone",))), "hidden"),
        (lambda s: label_cca_table([s["bad"]], LabelsConfig(labels=("speaker",))), "pooled"),
        (lambda s: spectrum_table([s["bad"]], SpectrumConfig()), "hidden"),
        (lambda s: spectrum_table([s["bad"]], SpectrumConfig(level="utt")), "pooled"),
    ],
)
def test_analyses_refuse_non_finite_layers(damaged: dict[str, xr.Dataset], run, array: str) -> None:
    with pytest.raises(StoreError) as exc:
        run(damaged)
    msg = str(exc.value)
    src = damaged["bad"].encoding["source"]
    assert "\n" not in msg and msg.startswith(f"store {src}: `{array}` layer 3 holds")
    assert f"deepwide store validate --data {src}" in msg
    spectrum_table([damaged["good"]], SpectrumConfig())  # the undamaged store is fine


def test_label_cca_refuses_phone_labels_outside_the_phone_set(stores: dict[str, xr.Dataset]) -> None:
    short = stores["a"].assign_attrs(phone_set='["p0", "p1", "p2"]')
    with pytest.raises(StoreError, match=r"phone labels run 0\.\.8 but phone_set has 3 phone\(s\)"):
        label_cca_table([short], LabelsConfig(labels=("phone",)))
