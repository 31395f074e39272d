"""``deepwide export --format hf``: the folder transformers loads gives deepwide's hidden states."""

from __future__ import annotations

import errno
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from deepwide.cli import cli
from deepwide.errors import DiskFullError, ModelError
from deepwide.models.checkpoint import save_checkpoint
from deepwide.models.encoder import build_encoder
from deepwide.models.frontend import normalize_waveform
from deepwide.models.hf_export import export_hf
from deepwide.models.loading import load_model
from tests.models.tiny import FRONTENDS, pad_batch, tiny_config, waveforms

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

torch.set_num_threads(1)

ATOL = 1e-4
WAVLM = dict(num_buckets=8, max_distance=20)
#: name -> (arch, front-end, pre-LN)
VARIANTS = {
    "hubert-group": ("hubert", "cnn-groupnorm", False),
    "hubert-layer-preln": ("hubert", "cnn-layernorm", True),
    "hubert-group-preln": ("hubert", "cnn-groupnorm", True),
    "wav2vec2-group": ("wav2vec2", "cnn-groupnorm", False),
    "wav2vec2-layer-preln": ("wav2vec2", "cnn-layernorm", True),
    "wavlm-group": ("wavlm", "cnn-groupnorm", False),
    "wavlm-layer-preln": ("wavlm", "cnn-layernorm", True),
}
HF_CLASSES = {"hubert": "HubertModel", "wav2vec2": "Wav2Vec2Model", "wavlm": "WavLMModel"}


def _student(variant: str, seed: int = 0, **overrides):
    arch, frontend, pre_ln = VARIANTS[variant]
    extra = WAVLM if arch == "wavlm" else {}
    config = tiny_config(arch=arch, frontend=FRONTENDS[frontend], layer_norm_first=pre_ln, **extra, **overrides)
    model = build_encoder(config, seed=seed, model_id=f"student-{variant}").eval()
    with torch.no_grad():  # move every weight off its init value (LN gains, biases …)
        g = torch.Generator().manual_seed(seed + 1)
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model


def _hf(folder, arch: str):
    model, info = getattr(transformers, HF_CLASSES[arch]).from_pretrained(str(folder), output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    return model.eval()


def _max_diff(ours: list[torch.Tensor], theirs: tuple[torch.Tensor, ...], frames=None) -> float:
    assert len(ours) == len(theirs)
    diffs = []
    for a, b in zip(ours, theirs, strict=True):
        assert a.shape == b.shape
        if frames is not None:  # valid frames only
            a = torch.cat([a[i, :n] for i, n in enumerate(frames.tolist())])
            b = torch.cat([b[i, :n] for i, n in enumerate(frames.tolist())])
        diffs.append((a - b).abs().max().item())
    return max(diffs)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_export_matches_transformers_hidden_states(tmp_path, variant):
    ours = _student(variant)
    out = export_hf(ours, tmp_path / "hf")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors", "preprocessor_config.json"]
    hf = _hf(out, ours.config.arch)
    assert hf.config.do_stable_layer_norm == ours.config.layer_norm_first
    wavs = waveforms(3, 5200, seed=2)
    with torch.no_grad():
        states, _ = ours.hidden_states(wavs)
        # a Hugging Face model gets the feature extractor's normalisation from outside
        inputs = normalize_waveform(wavs, None) if ours.config.frontend.normalize_waveform else wavs
        reference = hf(inputs, output_hidden_states=True).hidden_states
    assert _max_diff(states, reference) <= ATOL


@pytest.mark.parametrize("variant", ["hubert-layer-preln", "wav2vec2-layer-preln", "wavlm-layer-preln"])
def test_export_with_feature_extractor_and_unequal_lengths(tmp_path, variant):
    """Layer-norm CNNs see only valid samples, so HF's attention mask gives the same valid frames."""
    ours = _student(variant)
    out = export_hf(ours, tmp_path / "hf")
    hf = _hf(out, ours.config.arch)
    extractor = transformers.Wav2Vec2FeatureExtractor.from_pretrained(str(out))
    assert extractor.do_normalize is True and extractor.sampling_rate == 16000
    assert extractor.return_attention_mask is True
    rows = [w for w in waveforms(3, 6000, seed=3)]
    rows = [rows[0][:6000], rows[1][:4700], rows[2][:3300]]
    wavs, lengths = pad_batch(rows)
    with torch.no_grad():
        states, frames = ours.hidden_states(wavs, lengths)
        mask = (torch.arange(wavs.shape[1])[None, :] < lengths[:, None]).long()
        masked = hf(normalize_waveform(wavs, lengths), attention_mask=mask, output_hidden_states=True).hidden_states
        batch = extractor([r.numpy() for r in rows], sampling_rate=16000, padding=True, return_tensors="pt")
        piped = hf(batch["input_values"], attention_mask=batch["attention_mask"], output_hidden_states=True).hidden_states
    assert _max_diff(states, masked, frames) <= ATOL
    # the extractor normalises with eps 1e-7, deepwide with 1e-5: close, not equal
    assert _max_diff(states, piped, frames) <= 1e-3


def test_group_norm_export_is_fed_without_attention_mask(tmp_path):
    out = export_hf(_student("hubert-group"), tmp_path / "hf")
    pre = json.loads((out / "preprocessor_config.json").read_text())
    assert pre["do_normalize"] is False and pre["return_attention_mask"] is False
    assert pre["sampling_rate"] == 16000


@pytest.mark.parametrize("variant", ["hubert-group", "hubert-layer-preln", "wavlm-layer-preln"])
def test_export_reads_back_to_the_same_model(tmp_path, variant):
    ours = _student(variant, dropout=0.1, attention_dropout=0.05, layer_drop=0.02)
    out = export_hf(ours, tmp_path / "hf")
    back = load_model(str(out))
    assert back.weights_hash() == ours.weights_hash()
    # the reader leaves dropouts at 0 (inference); everything else round-trips
    assert back.config == type(ours.config)(**{**vars(ours.config), "dropout": 0.0, "attention_dropout": 0.0, "layer_drop": 0.0})
    config = json.loads((out / "config.json").read_text())
    assert (config["hidden_dropout"], config["attention_dropout"], config["layerdrop"]) == (0.1, 0.05, 0.02)
    export_hf(back, tmp_path / "again")  # export ∘ read is the identity on the weights file

    a, b = load_file(str(out / "model.safetensors")), load_file(str(tmp_path / "again" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_spectral_front_end_is_refused_and_nothing_written(tmp_path):
    spectral = build_encoder(tiny_config(frontend=FRONTENDS["spectral"]), model_id="spectral-student")
    with pytest.raises(ModelError, match=r"^spectral-student has a spectral \(log-mel\) front-end .* only the waveform CNN"):
        export_hf(spectral, tmp_path / "hf")
    assert list(tmp_path.iterdir()) == []


def test_existing_folder_is_refused_and_empty_one_filled(tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    with pytest.raises(ModelError, match="already exists and is not empty; remove it or choose another --out"):
        export_hf(_student("hubert-group"), full)
    assert [p.name for p in full.iterdir()] == ["keep.txt"]
    (tmp_path / "empty").mkdir()
    export_hf(_student("hubert-group"), tmp_path / "empty")
    assert (tmp_path / "empty" / "model.safetensors").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "full"]


@pytest.mark.parametrize("failure", ["disk-full", "crash"])
def test_failed_write_leaves_nothing(tmp_path, monkeypatch, failure):
    import safetensors.torch

    def broken_save(tensors, path, metadata=None):
        with open(path, "wb") as fh:
            fh.write(b"\0" * 100)  # half a file
        if failure == "disk-full":
            raise OSError(errno.ENOSPC, "No space left on device")
        raise RuntimeError("killed mid-write")

    monkeypatch.setattr(safetensors.torch, "save_file", broken_save)
    expected = DiskFullError if failure == "disk-full" else RuntimeError
    with pytest.raises(expected):
        export_hf(_student("hubert-group"), tmp_path / "hf")
    assert list(tmp_path.iterdir()) == []


def test_cli_exports_a_student_folder(tmp_path):
    student = _student("hubert-layer-preln")
    save_checkpoint(student, tmp_path / "student")
    result = CliRunner().invoke(cli, ["export", str(tmp_path / "student"), "--format", "hf", "--out", str(tmp_path / "hf")])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"hf model: {tmp_path / 'hf'} (HubertModel, ")
    hf = _hf(tmp_path / "hf", "hubert")
    wavs = waveforms(2, 4000, seed=4)
    with torch.no_grad():
        states, _ = student.hidden_states(wavs)
        reference = hf(normalize_waveform(wavs, None), output_hidden_states=True).hidden_states
    assert _max_diff(states, reference) <= ATOL


def test_cli_refusals_are_one_line(tmp_path):
    spectral = build_encoder(tiny_config(frontend=FRONTENDS["spectral"]), model_id="spectral-student")
    save_checkpoint(spectral, tmp_path / "spectral")
    result = CliRunner().invoke(cli, ["export", str(tmp_path / "spectral"), "--out", str(tmp_path / "hf")])
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0
    assert "Error: spectral-student has a spectral (log-mel) front-end" in result.output
    assert not (tmp_path / "hf").exists()
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("x")
    save_checkpoint(_student("hubert-group"), tmp_path / "student")
    result = CliRunner().invoke(cli, ["-q", "export", str(tmp_path / "student"), "--out", str(tmp_path / "taken")])
    assert result.exit_code == 2
    assert result.output.strip() == f"Error: {tmp_path / 'taken'} already exists and is not empty; remove it or choose another --out"
    result = CliRunner().invoke(cli, ["export", "mfcc", "--out", str(tmp_path / "m")])
    assert result.exit_code == 2
    assert result.output.strip() == "Error: mfcc is not a HuBERT-family encoder, so it has no Hugging Face form to export"
    result = CliRunner().invoke(cli, ["export", "mfcc", "--format", "onnx", "--out", str(tmp_path / "m")])
    assert result.exit_code == 2 and "'onnx' is not 'hf'" in result.output


def test_extractor_output_is_normalised_like_deepwide():
    """Sanity check of the eps difference tolerated above (1e-7 in transformers, 1e-5 here)."""
    wav = waveforms(1, 4000, seed=5)[0]
    extractor = transformers.Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True)
    theirs = torch.from_numpy(np.asarray(extractor(wav.numpy(), sampling_rate=16000)["input_values"][0]))
    assert (theirs - normalize_waveform(wav[None], None)[0]).abs().max().item() < 1e-3
