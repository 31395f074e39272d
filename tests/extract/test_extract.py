"""End-to-end extraction with a fake encoder: values, layout, modes, policies, identity."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from deepwide.corpora.manifest import Manifest
from deepwide.errors import AudioError, ConfigError, ModelError, StoreError
from deepwide.extract import ExtractConfig, extract_features
from deepwide.extract.plan import sample_positions
from deepwide.framing import frame_centres_s
from deepwide.store import open_store, read_attrs, validate_store
from tests.extract.conftest import CHUNKS, CONFIG, assert_same_store
from tests.extract.helpers import FakeEncoder, make_corpus, reference_features


def _extract(encoder: FakeEncoder, corpus: Manifest, out: Path, **cfg: object) -> None:
    kw = dict(CONFIG)
    kw.update(cfg)
    extract_features(encoder, corpus, out, ExtractConfig(**kw), workers=0, progress=False, **CHUNKS)  # type: ignore[arg-type]


def test_store_matches_per_utterance_forward(reference_store: Path, corpus: Manifest, encoder: FakeEncoder) -> None:
    ds = open_store(reference_store)
    assert validate_store(reference_store) == []
    ref = reference_features(encoder, corpus, list(range(encoder.num_layers + 1)))
    assert sorted(ds.utt_id.values.tolist()) == sorted(ref)
    hidden = ds.hidden.values.astype(np.float32)
    for i, uid in enumerate(ds.utt_id.values):
        h_ref, p_ref = ref[uid]
        o, n = int(ds.frame_offset[i]), int(ds.n_stored[i])
        assert int(ds.n_frames[i]) == h_ref.shape[1] == n
        np.testing.assert_allclose(hidden[:, o : o + n], h_ref, rtol=2e-3, atol=2e-3)  # float16 storage
        np.testing.assert_allclose(ds.pooled.values[:, i], p_ref, rtol=1e-5, atol=1e-5)
        assert (ds.utt_index.values[o : o + n] == i).all()
        assert (ds.frame_index.values[o : o + n] == np.arange(n)).all()
    # utterances are laid out by increasing length
    assert (np.diff(ds.n_frames.values) >= 0).all()
    assert ds.hidden.dtype == np.float16 and ds.pooled.dtype == np.float32
    assert ds.hidden.encoding["chunks"] == (1, 64, encoder.dim)


def test_coords_and_attrs(reference_store: Path, corpus: Manifest) -> None:
    ds = open_store(reference_store)
    by_id = corpus.by_id()
    for i, uid in enumerate(ds.utt_id.values):
        utt = by_id[uid]
        assert ds.speaker.values[i] == utt.speaker
        assert ds.split.values[i] == utt.split
        assert ds.sid_split.values[i] == (utt.sid_split or "")
        assert ds.keyword.values[i] == (utt.keyword or "")
        assert ds.text.values[i] == (utt.text or "")
        assert ds.intent.values[i] == ""
        assert ds.utt_id.dtype == object
        # phone of frame t = segment covering t*0.02 + 0.0125 s
        o, n = int(ds.frame_offset[i]), int(ds.n_stored[i])
        centres = frame_centres_s(n)
        phone_set = json.loads(ds.attrs["phone_set"])
        for t in (0, n // 2, n - 1):
            want = -1
            for ph, a, b in utt.phones:
                if a <= centres[t] < b and ph:
                    want = phone_set.index(ph)
            assert ds.phone.values[o + t] == want
    attrs = ds.attrs
    assert attrs["model_id"] == "fake-encoder"
    assert attrs["num_layers"] == 3 and attrs["dim"] == 8
    assert attrs["corpus_id"] == "tiny-test" and attrs["manifest_hash"] == corpus.content_hash()
    assert json.loads(attrs["trials"]) == [[t.utt_a, t.utt_b, int(t.target)] for t in corpus.trials]
    assert json.loads(attrs["completion"]) == {"complete": True, "shards": 1, "done": [0]}
    assert json.loads(attrs["extract_config"])["layers"] == [0, 1, 2, 3]
    assert attrs["frames_mode"] == "all" and attrs["frame_rate_hz"] == 50.0


def test_phone_sequences_are_stored_per_utterance(reference_store: Path, corpus: Manifest) -> None:
    ds = open_store(reference_store)
    want = {u.utt_id: " ".join(p for p, _, _ in u.phones if p) for u in corpus}
    got = dict(zip(ds.utt_id.values.tolist(), ds.phones.values.tolist(), strict=True))
    assert got == {k: want[k] for k in got} and all(got.values())


def test_layer_subset_sampled_frames_float32(tmp_path: Path, corpus: Manifest, encoder: FakeEncoder, reference_store: Path) -> None:
    out = tmp_path / "s"
    _extract(encoder, corpus, out, layers=(3, 1), frames="sample:5", dtype="float32", seed=7)
    ds = open_store(out)
    ref = open_store(reference_store)
    assert ds.layer.values.tolist() == [1, 3]
    assert ds.hidden.dtype == np.float32
    np.testing.assert_array_equal(ds.n_stored.values, np.minimum(ds.n_frames.values, 5))
    assert validate_store(out) == []
    # the sampled rows are exactly those frames of the full store (same pooled means too)
    ref_idx = {u: i for i, u in enumerate(ref.utt_id.values)}
    full = ref.hidden.sel(layer=[1, 3]).values.astype(np.float32)
    for i, uid in enumerate(ds.utt_id.values):
        o, n = int(ds.frame_offset[i]), int(ds.n_stored[i])
        pos = ds.frame_index.values[o : o + n]
        assert (np.diff(pos) > 0).all()
        np.testing.assert_array_equal(pos, sample_positions(int(ds.n_frames[i]), 5, 7, uid))
        j = ref_idx[uid]
        ro = int(ref.frame_offset[j])
        np.testing.assert_allclose(ds.hidden.values[:, o : o + n], full[:, ro + pos], atol=2e-3)
        np.testing.assert_array_equal(ds.phone.values[o : o + n], ref.phone.values[ro + pos])
        np.testing.assert_allclose(ds.pooled.values[:, i], ref.pooled.sel(layer=[1, 3]).values[:, j], atol=1e-6)
    assert json.loads(ds.attrs["extract_config"])["seed"] == 7


def test_frames_none_keeps_pooled_only(tmp_path: Path, corpus: Manifest, encoder: FakeEncoder, reference_store: Path) -> None:
    out = tmp_path / "s"
    _extract(encoder, corpus, out, frames="none")
    ds = open_store(out)
    assert "hidden" not in ds and "frame" not in ds.dims and "phone" not in ds.coords
    assert (ds.n_stored.values == 0).all()
    np.testing.assert_array_equal(ds.pooled.values, open_store(reference_store).pooled.values)
    assert validate_store(out) == []


def test_splits_select_utterances(tmp_path: Path, corpus: Manifest, encoder: FakeEncoder) -> None:
    out = tmp_path / "s"
    _extract(encoder, corpus, out, splits=("test",))
    ds = open_store(out)
    want = {u.utt_id for u in corpus.utterances if "test" in (u.split, u.sid_split)}
    assert set(ds.utt_id.values.tolist()) == want
    kept = set(want)
    assert all(a in kept and b in kept for a, b, _ in json.loads(ds.attrs["trials"]))


@pytest.mark.parametrize("jobs", [1, 3])  # jobs=0 is how reference_store is built
def test_forked_jobs_and_in_process_runs_give_the_same_store(
    tmp_path: Path, corpus: Manifest, encoder: FakeEncoder, reference_store: Path, jobs: int
) -> None:
    out = tmp_path / "s"
    extract_features(encoder, corpus, out, ExtractConfig(**CONFIG), workers=0, jobs=jobs, progress=False, **CHUNKS)  # type: ignore[arg-type]
    assert_same_store(out, reference_store)


def test_worker_processes_give_the_same_store(tmp_path: Path, corpus: Manifest, encoder: FakeEncoder, reference_store: Path) -> None:
    out = tmp_path / "s"
    extract_features(encoder, corpus, out, ExtractConfig(**CONFIG), workers=1, jobs=0, progress=False, **CHUNKS)  # type: ignore[arg-type]
    assert_same_store(out, reference_store)


def test_rerun_of_complete_store_is_a_no_op(tmp_path: Path, corpus: Manifest, encoder: FakeEncoder) -> None:
    out = tmp_path / "s"
    _extract(encoder, corpus, out)
    report = extract_features(encoder, corpus, out, ExtractConfig(**CONFIG), workers=0, progress=False)  # type: ignore[arg-type]
    assert report.complete and report.batches == 0 and not report.created


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"encoder": {"seed": 1}}, "model weights"),
        ({"encoder": {"model_id": "other"}}, "model"),
        ({"config": {"frames": "sample:3"}}, "frames"),
        ({"config": {"dtype": "float32"}}, "dtype"),
        ({"config": {"batch_seconds": 5.0}}, "batch_seconds"),
        ({"config": {"layers": (0, 1)}}, "layers"),
    ],
)
def test_never_appends_to_another_models_or_configs_store(
    tmp_path: Path, corpus: Manifest, reference_store: Path, change: dict, words: str
) -> None:
    out = tmp_path / "s"
    shutil.copytree(reference_store, out)
    enc = FakeEncoder(**change.get("encoder", {}))
    cfg = dict(CONFIG)
    cfg.update(change.get("config", {}))
    before = read_attrs(out)
    with pytest.raises(StoreError, match=words) as err:
        extract_features(enc, corpus, out, ExtractConfig(**cfg), workers=0, progress=False)  # type: ignore[arg-type]
    assert "\n" not in str(err.value)
    assert read_attrs(out) == before


def test_never_appends_to_another_corpus_store(tmp_path: Path, reference_store: Path, encoder: FakeEncoder) -> None:
    other = make_corpus(tmp_path / "other", n_utts=5, seed=3)
    with pytest.raises(StoreError, match="manifest"):
        extract_features(encoder, other, reference_store, ExtractConfig(**CONFIG), workers=0, progress=False)  # type: ignore[arg-type]


def test_out_path_that_is_not_a_store(tmp_path: Path, corpus: Manifest, encoder: FakeEncoder) -> None:
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="not a deepwide feature store"):
        _extract(encoder, corpus, out)


def test_bad_audio_error_policy_names_the_file(tmp_path: Path, encoder: FakeEncoder) -> None:
    man = make_corpus(tmp_path / "c", n_utts=6, bad={"u003": "corrupt"})
    with pytest.raises(AudioError, match="u003"):
        _extract(encoder, man, tmp_path / "s")
    assert not (tmp_path / "s").exists()


def test_non_finite_audio_is_caught_at_load_under_error_policy(tmp_path: Path, encoder: FakeEncoder) -> None:
    man = make_corpus(tmp_path / "c", n_utts=6, bad={"u004": "nan"})
    with pytest.raises(AudioError, match="NaN"):
        _extract(encoder, man, tmp_path / "s")
    # the store stays incomplete and says so
    with pytest.raises(StoreError, match="incomplete"):
        open_store(tmp_path / "s")


def test_bad_audio_skip_policy_records_skips(tmp_path: Path, encoder: FakeEncoder) -> None:
    bad = {"u001": "corrupt", "u003": "nan", "u004": "short", "u005": "missing"}
    man = make_corpus(tmp_path / "c", n_utts=9, bad=bad)
    out = tmp_path / "s"
    _extract(encoder, man, out, on_bad_audio="skip")
    ds = open_store(out)
    skipped = dict(json.loads(ds.attrs["skipped"]))
    assert set(skipped) == set(bad)
    assert "non-finite" in skipped["u003"] and "shorter than one frame" in skipped["u004"]
    assert "does not exist" in skipped["u005"]
    assert set(ds.utt_id.values.tolist()) == {f"u{i:03d}" for i in range(9)} - set(bad)
    assert all(a not in bad and b not in bad for a, b, _ in json.loads(ds.attrs["trials"]))
    assert validate_store(out) == []


def test_frame_count_disagreement_is_a_model_error(tmp_path: Path, corpus: Manifest) -> None:
    class OffByOne(FakeEncoder):
        def hidden_states(self, wavs, lengths=None):  # type: ignore[no-untyped-def]
            states, flens = super().hidden_states(wavs, lengths)
            return states, flens - 1

    with pytest.raises(ModelError, match="frames"):
        _extract(OffByOne(), corpus, tmp_path / "s")


def test_an_encoder_without_the_protocol_is_refused_in_one_line(tmp_path: Path, corpus: Manifest) -> None:
    class NoFrames(FakeEncoder):
        """An encoder written before the protocol had num_frames."""

        def __getattribute__(self, name: str):  # type: ignore[no-untyped-def]
            if name == "num_frames":
                raise AttributeError(name)
            return super().__getattribute__(name)

    with pytest.raises(ModelError, match="NoFrames is not a SpeechEncoder: it lacks num_frames;"):
        _extract(NoFrames(), corpus, tmp_path / "s")
    assert not (tmp_path / "s").exists()


def test_num_frames_method_of_the_model_is_used(tmp_path: Path, corpus: Manifest) -> None:
    class Padded(FakeEncoder):
        """Frames from a centred window: one more frame than the plain grid."""

        def num_frames(self, num_samples: int) -> int:
            return num_samples // 320 + 1

        def hidden_states(self, wavs, lengths=None):  # type: ignore[no-untyped-def]
            padded = torch.nn.functional.pad(wavs, (200, 200 + 320))
            states, _ = super().hidden_states(padded, None)
            flens = lengths // 320 + 1
            return [s[:, : int(flens.max())] for s in states], flens

    out = tmp_path / "s"
    _extract(Padded(), corpus, out)
    ds = open_store(out)
    assert validate_store(out) == []
    assert int(ds.n_frames.values.sum()) > int(ds.sizes["utt"]) * 2


def test_bad_layers_and_device(tmp_path: Path, corpus: Manifest, encoder: FakeEncoder) -> None:
    with pytest.raises(ConfigError, match="0..3"):
        _extract(encoder, corpus, tmp_path / "s", layers=(0, 9))
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA"):
            extract_features(encoder, corpus, tmp_path / "s", ExtractConfig(), device="cuda", progress=False)


@pytest.mark.parametrize("sample", [None, 3])
def test_batched_and_per_utterance_gathering_agree(sample: int | None) -> None:
    from deepwide.extract.run import gather_outputs

    rng = np.random.default_rng(0)
    n_valid = np.array([7, 3, 5])
    states = [torch.from_numpy(rng.normal(size=(3, 7, 4)).astype(np.float32)) for _ in range(4)]
    for s in states:
        s[1, 3:] = 1e6  # padding garbage must not leak into means or rows
        s[2, 5:] = float("nan")
    positions = [sample_positions(int(n), sample, 0, f"u{i}") for i, n in enumerate(n_valid)]
    outs = [
        gather_outputs(states, (0, 2, 3), n_valid, positions, torch.float16, batched=b) for b in (False, True)
    ]
    (p0, h0), (p1, h1) = outs
    torch.testing.assert_close(p0, p1)
    assert h0 is not None and h1 is not None
    assert torch.equal(h0, h1) and h0.dtype == torch.float16
    assert h0.shape == (3, sum(len(p) for p in positions), 4)
    want = states[2][1, :3].mean(0)
    torch.testing.assert_close(p0[1, 1], want)
    o = len(positions[0])
    np.testing.assert_array_equal(h0[1, o : o + len(positions[1])].float().numpy(),
                                  states[2][1, positions[1]].half().float().numpy())


class ThreadCountEncoder(FakeEncoder):
    """A FakeEncoder whose output depends on torch's intra-op thread count, as real models'
    float sums do (in a last bit); picklable-free, inherited by forked jobs."""

    def hidden_states(self, wavs, lengths=None):  # type: ignore[no-untyped-def]
        states, flens = super().hidden_states(wavs, lengths)
        return [s + 0.25 * torch.get_num_threads() for s in states], flens


def test_result_does_not_depend_on_jobs_whatever_the_thread_count(tmp_path: Path, corpus: Manifest) -> None:
    """--jobs 0 runs the model here on one thread, as each forked job does, so a store (and a
    resume with another --jobs) holds the same numbers whatever --jobs and torch's threads."""
    torch.set_num_threads(2)  # the fixture's 1 thread would hide the difference
    stores = {}
    for jobs in (0, 2):
        out = tmp_path / f"j{jobs}"
        extract_features(ThreadCountEncoder(), corpus, out, ExtractConfig(**CONFIG), workers=0, jobs=jobs, progress=False, **CHUNKS)  # type: ignore[arg-type]
        stores[jobs] = out
    assert torch.get_num_threads() == 2  # restored after the run
    assert_same_store(stores[0], stores[2])
    # mixing: half the shards with --jobs 0, the rest with --jobs 2
    mixed = tmp_path / "mixed"
    cfg = ExtractConfig(**CONFIG)  # type: ignore[arg-type]
    extract_features(ThreadCountEncoder(), corpus, mixed, cfg, shard=(0, 2), workers=0, jobs=0, progress=False, **CHUNKS)
    extract_features(ThreadCountEncoder(), corpus, mixed, cfg, shard=(1, 2), workers=0, jobs=2, progress=False)
    assert_same_store(mixed, stores[0])
