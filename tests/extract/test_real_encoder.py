"""Extraction with a small real deepwide encoder (spectral front-end, 2 layers × 32), and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from deepwide.corpora.manifest import Manifest
from deepwide.errors import StoreError
from deepwide.extract import ExtractConfig, extract_features
from deepwide.store import open_store, validate_store

models = pytest.importorskip("deepwide.models")


def _tiny_encoder(seed: int = 0):  # type: ignore[no-untyped-def]
    from deepwide.models import EncoderConfig, FrontendConfig, build_encoder

    cfg = EncoderConfig(
        depth=2, width=32, ffn=64, heads=2, pos_conv_kernel=16, pos_conv_groups=4,
        frontend=FrontendConfig(kind="spectral", n_mels=40, channels=32),
    )
    return build_encoder(cfg, seed=seed, model_id="tiny-test-encoder")


def test_real_encoder_store_matches_unbatched_forward(tmp_path: Path, corpus: Manifest) -> None:
    from deepwide.audio import load_audio

    enc = _tiny_encoder()
    out = tmp_path / "s"
    extract_features(enc, corpus, out, ExtractConfig(batch_seconds=4.0, dtype="float32"), workers=0, progress=False)
    ds = open_store(out)
    assert validate_store(out) == []
    assert ds.attrs["model_weights_hash"] == enc.weights_hash()
    assert json.loads(ds.attrs["model_config"]) == enc.config_dict()
    assert ds.attrs["model_params"] == enc.num_params()
    by_id = corpus.by_id()
    with torch.inference_mode():
        for i, uid in enumerate(ds.utt_id.values):
            wav = torch.from_numpy(load_audio(corpus.audio_path(by_id[uid])))[None]
            states, flens = enc.hidden_states(wav, torch.tensor([wav.shape[1]]))
            n = int(flens[0])
            assert n == int(ds.n_frames[i])
            o = int(ds.frame_offset[i])
            want = torch.stack(states)[:, 0, :n].numpy()
            np.testing.assert_allclose(ds.hidden.values[:, o : o + n], want, rtol=1e-4, atol=1e-4)
            np.testing.assert_allclose(ds.pooled.values[:, i], want.mean(axis=1), rtol=1e-4, atol=1e-4)


def test_cli_extract_then_info_and_validate(tmp_path: Path, corpus: Manifest) -> None:
    from deepwide.cli import cli
    from deepwide.models import save_checkpoint

    ckpt = save_checkpoint(_tiny_encoder(), tmp_path / "ckpt")
    out = tmp_path / "s"
    runner = CliRunner()
    args = [
        "--seed", "3", "extract", "--model", str(ckpt), "--corpus", str(corpus.root), "--out", str(out),
        "--layers", "0,2", "--frames", "sample:4", "--splits", "train,dev", "--batch-seconds", "3",
        "--workers", "0", "--no-progress",
    ]
    res = runner.invoke(cli, args)
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert "store complete" in res.output
    ds = open_store(out)
    assert ds.layer.values.tolist() == [0, 2]
    assert json.loads(ds.attrs["extract_config"])["seed"] == 3
    assert (ds.n_stored.values <= 4).all()
    res = runner.invoke(cli, ["store", "info", str(out)])
    assert res.exit_code == 0 and "0,2 (2 stored)" in res.output and "splits dev,train" in res.output
    res = runner.invoke(cli, ["store", "validate", str(out)])
    assert res.exit_code == 0, res.output
    # rerunning with another seed changes the sample: refused, with the reason
    res = runner.invoke(cli, [*args[:1], "4", *args[2:]])
    assert res.exit_code == StoreError.exit_code and "seed=3" in res.output and "Traceback" not in res.output


def test_cli_random_twin_of_a_checkpoint_pairs_with_its_model(tmp_path: Path, corpus: Manifest) -> None:
    """`extract --model random:FOLDER` stores the twin as random:<the checkpoint's model id>: the
    rule by which probe --null and the similarity grids pair a twin with its model."""
    from deepwide.cli import cli
    from deepwide.models import load_model, save_checkpoint

    ckpt = save_checkpoint(_tiny_encoder(), tmp_path / "runs" / "ckpt")
    runner = CliRunner()
    ids = {}
    for name, spec in (("main", str(ckpt)), ("twin", f"random:{ckpt}")):
        out = tmp_path / f"{name}.zarr"
        res = runner.invoke(cli, ["--seed", "2", "extract", "--model", spec, "--corpus", str(corpus.root),
                                  "--out", str(out), "--frames", "none", "--workers", "0", "--jobs", "0",
                                  "--no-progress"])
        assert res.exit_code == 0, res.output + repr(res.exception)
        ids[name] = open_store(out).attrs
    assert ids["main"]["model_id"] == "tiny-test-encoder"
    assert ids["twin"]["model_id"] == "random:tiny-test-encoder" == "random:" + ids["main"]["model_id"]
    assert ids["twin"]["model_weights_hash"] == load_model(f"random:{ckpt}", seed=2).weights_hash()
    assert ids["twin"]["model_weights_hash"] != ids["main"]["model_weights_hash"]
    assert ids["twin"]["model_config"] == ids["main"]["model_config"]


def test_frame_plan_is_the_encoders_num_frames(tmp_path: Path, corpus: Manifest) -> None:
    """The store is planned with SpeechEncoder.num_frames (here the spectral front-end's rule)."""
    from deepwide.audio import load_audio

    enc = _tiny_encoder()
    out = tmp_path / "s"
    extract_features(enc, corpus, out, ExtractConfig(frames="none"), workers=0, progress=False)
    ds = open_store(out)
    by_id = corpus.by_id()
    for uid, n in zip(ds.utt_id.values, ds.n_frames.values, strict=True):
        assert int(n) == enc.num_frames(len(load_audio(corpus.audio_path(by_id[uid])))) > 0


def test_cli_rejects_bad_options(tmp_path: Path, corpus: Manifest) -> None:
    from deepwide.cli import cli

    runner = CliRunner()
    base = ["extract", "--model", "x", "--corpus", str(corpus.root), "--out", str(tmp_path / "s")]
    for extra, words in ((["--frames", "some"], "--frames"), (["--shard", "3/2"], "--shard"), (["--layers", "a"], "--layers")):
        res = runner.invoke(cli, base + extra)
        assert res.exit_code == 2 and words in res.output, (extra, res.output)


@pytest.mark.gpu
def test_cuda_extraction_matches_cpu(tmp_path: Path, corpus: Manifest) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    cfg = ExtractConfig(batch_seconds=4.0, dtype="float32", frames="sample:6")
    extract_features(_tiny_encoder(), corpus, tmp_path / "cpu", cfg, workers=0, progress=False)
    extract_features(_tiny_encoder(), corpus, tmp_path / "gpu", cfg, device="cuda", workers=2, progress=False)
    a, b = open_store(tmp_path / "cpu"), open_store(tmp_path / "gpu")
    np.testing.assert_array_equal(a.frame_index.values, b.frame_index.values)
    np.testing.assert_allclose(a.hidden.values, b.hidden.values, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(a.pooled.values, b.pooled.values, rtol=1e-3, atol=1e-3)
