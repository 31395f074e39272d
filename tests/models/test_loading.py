"""deepwide checkpoints, random: twins, presets, the zoo, torchaudio bundles, bad input."""

from __future__ import annotations

import json
import time
import urllib.error
from pathlib import Path

import pytest
import torch
import torchaudio
from safetensors.torch import load_file, save_file

from deepwide.errors import ModelError, UnknownNameError
from deepwide.models import loading
from deepwide.models.encoder import build_encoder
from deepwide.models.loading import (
    load_model,
    read_checkpoint_info,
    resolve_config,
    save_checkpoint,
)
from deepwide.models.presets import PRESETS
from tests.models.tiny import FRONTENDS, TINY_CNN, tiny_config, waveforms

torch.set_num_threads(1)


def _states(model, wavs):
    with torch.no_grad():
        return model.eval().hidden_states(wavs)[0]


@pytest.fixture()
def trained_dir(tmp_path) -> Path:
    """A saved tiny 'trained' model (seed 11, then nudged so it differs from any init)."""
    model = build_encoder(tiny_config(frontend=FRONTENDS["spectral"]), seed=11, model_id="tiny-student")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    return save_checkpoint(model, tmp_path / "student", extra={"teacher": "x", "steps": 3})


def test_save_load_round_trip(tmp_path):
    model = build_encoder(tiny_config(), seed=3, model_id="m").eval()
    out = save_checkpoint(model, tmp_path / "ckpt", extra={"note": "hello"})
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    info = read_checkpoint_info(out)
    assert info["config"] == model.config and info["model_id"] == "m"
    assert info["extra"] == {"note": "hello"} and info["num_params"] == model.num_params()
    loaded = load_model(str(out))
    assert loaded.model_id == "m" and not loaded.training
    assert loaded.weights_hash() == model.weights_hash() == info["weights_hash"]
    wavs = waveforms(2, 5000)
    for a, b in zip(_states(model, wavs), _states(loaded, wavs), strict=True):
        assert torch.equal(a, b)
    # overwriting in place works and leaves no temporary files
    save_checkpoint(loaded, out)
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]


def test_random_twin_of_checkpoint_dir(trained_dir):
    trained = load_model(str(trained_dir))
    twin_a = load_model(f"random:{trained_dir}", seed=0)
    twin_b = load_model(f"random:{trained_dir}", seed=0)
    twin_c = load_model(f"random:{trained_dir}", seed=1)
    assert twin_a.config == trained.config
    # named after the checkpoint's model id, so that results pair the twin with its model
    assert twin_a.model_id == f"random:{trained.model_id}" == "random:tiny-student"
    assert twin_a.weights_hash() == twin_b.weights_hash()
    assert len({twin_a.weights_hash(), twin_c.weights_hash(), trained.weights_hash()}) == 3
    wavs = waveforms(1, 4000)
    assert not torch.allclose(_states(twin_a, wavs)[-1], _states(trained, wavs)[-1])


def test_random_twin_of_checkpoint_without_a_recorded_id_is_named_after_the_folder(trained_dir):
    info = json.loads((trained_dir / "config.json").read_text())
    del info["model_id"]
    (trained_dir / "config.json").write_text(json.dumps(info))
    assert load_model(str(trained_dir)).model_id == "student"
    assert load_model(f"random: {trained_dir}", seed=0).model_id == "random:student"


@pytest.mark.parametrize("name", ["distilhubert", "fithubert"])
def test_random_twins_of_presets(name):
    a = load_model(f"random:{name}", seed=5)
    b = load_model(name, seed=5)  # a bare preset is a random init too, and says so
    c = load_model(f"random:{name}", seed=6)
    assert a.config == PRESETS.get(name)
    assert a.model_id == b.model_id == f"random:{name}"
    assert a.weights_hash() == b.weights_hash() != c.weights_hash()


def test_random_twin_of_zoo_name(monkeypatch, trained_dir):
    monkeypatch.setitem(loading.ZOO._items, "tiny-teacher", lambda: trained_dir)
    trained = load_model("tiny-teacher")
    assert trained.model_id == "tiny-teacher"
    twin = load_model("random:tiny-teacher", seed=0)
    assert twin.config == trained.config and twin.model_id == "random:tiny-teacher"
    assert twin.weights_hash() != trained.weights_hash()


@pytest.mark.parametrize(
    ("name", "how"),
    [
        ("tiny-teacher", "`deepwide teacher pretrain`"),
        ("tiny-teacher-content", "`deepwide teacher pretrain --config configs/tiny-teacher-content.toml`"),
    ],
)
def test_missing_tiny_teacher_says_how_to_make_it(monkeypatch, tmp_path, name, how):
    monkeypatch.setattr("deepwide.models.zoo.assets_dir", lambda: tmp_path / "assets")
    with pytest.raises(ModelError, match=f"the {name} checkpoint is not bundled") as info:
        load_model(name)
    assert how in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ModelError, match="not bundled"):
        load_model(f"random:{name}")


def test_unknown_name_lists_valid_names():
    with pytest.raises(UnknownNameError) as info:
        load_model("hubert-bse")
    message = str(info.value)
    for name in ("hubert-base", "distilhubert", "3l-one", "12l-half", "tiny-teacher", "random:SPEC", "torchaudio:"):
        assert name in message
    assert "tiny-teacher-content" in message
    with pytest.raises(UnknownNameError, match="torchaudio:HUBERT_BASE"):
        load_model("torchaudio:HUBERT_BSE")
    with pytest.raises(ModelError, match="does not exist"):
        load_model("/no/such/folder")


def test_mismatched_keys_and_shapes_are_named(tmp_path, trained_dir):
    weights = load_file(str(trained_dir / "model.safetensors"))
    weights["encoder.extra_head.weight"] = torch.zeros(3)
    del weights["encoder.transformer.layers.1.final_layer_norm.bias"]
    weights["frontend.conv.weight"] = torch.zeros(1, 2, 3)
    save_file(weights, str(trained_dir / "model.safetensors"))
    with pytest.raises(ModelError) as info:
        load_model(str(trained_dir))
    message = str(info.value)
    assert "missing keys: encoder.transformer.layers.1.final_layer_norm.bias" in message
    assert "unexpected keys: encoder.extra_head.weight" in message
    assert "shape mismatches: frontend.conv.weight (1, 2, 3) !=" in message
    assert "\n" not in message


def test_modified_weights_fail_the_hash_check(trained_dir):
    weights = load_file(str(trained_dir / "model.safetensors"))
    weights["frontend.conv.bias"] = weights["frontend.conv.bias"] + 1
    save_file(weights, str(trained_dir / "model.safetensors"))
    with pytest.raises(ModelError, match="weights hash"):
        load_model(str(trained_dir))


def test_folder_that_is_not_a_model(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(ModelError, match="neither a deepwide checkpoint"):
        load_model(str(tmp_path))


@pytest.mark.parametrize("version", ["x", None, 1.5, True, -1, [1]])
def test_format_version_that_is_not_a_number_is_one_line(trained_dir, version):
    info = json.loads((trained_dir / "config.json").read_text())
    info["format_version"] = version
    (trained_dir / "config.json").write_text(json.dumps(info))
    with pytest.raises(ModelError, match=r"format_version .* is not a version number") as exc:
        load_model(str(trained_dir))
    assert "\n" not in str(exc.value)


def test_broken_config_json_is_named_as_broken_json(tmp_path, trained_dir):
    from click.testing import CliRunner

    from deepwide.cli import cli

    text = (trained_dir / "config.json").read_text()
    (trained_dir / "config.json").write_text(text[: len(text) // 2])  # cut short
    for call in (load_model, resolve_config):
        with pytest.raises(ModelError, match=r"config.json is broken JSON at line \d+ column \d+") as info:
            call(str(trained_dir))
        assert "neither" not in str(info.value) and "\n" not in str(info.value)
    res = CliRunner().invoke(cli, ["models", "params", str(trained_dir)])
    assert res.exit_code == ModelError.exit_code
    assert res.output.startswith("Error: ") and "broken JSON at line" in res.output
    assert res.output.strip().count("\n") == 0
    # a Hugging Face folder's broken config.json too (its weights make it one)
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text('{"model_type": "hubert", ')
    (hf / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelError, match="broken JSON at line 1"):
        load_model(str(hf))


# ---------------------------------------------------------------------------- torchaudio bundles
TINY_BUNDLE_PARAMS = {
    "extractor_mode": "layer_norm",
    "extractor_conv_layer_config": list(TINY_CNN),
    "extractor_conv_bias": True,
    "encoder_embed_dim": 64,
    "encoder_projection_dropout": 0.1,
    "encoder_pos_conv_kernel": 16,
    "encoder_pos_conv_groups": 4,
    "encoder_num_layers": 2,
    "encoder_num_heads": 4,
    "encoder_attention_dropout": 0.1,
    "encoder_ff_interm_features": 128,
    "encoder_ff_interm_dropout": 0.0,
    "encoder_dropout": 0.1,
    "encoder_layer_norm_first": True,
    "encoder_layer_drop": 0.05,
    "aux_num_out": None,
}


@pytest.fixture()
def hub_dir(monkeypatch, tmp_path) -> Path:
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "_hub_dir", str(hub))
    return hub


@pytest.fixture()
def no_download(monkeypatch):
    calls = []

    def refuse(url, dst, *args, **kwargs):
        calls.append(url)
        raise urllib.error.URLError("network is unreachable (test)")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    return calls


def test_bundle_offline_fails_fast_naming_the_cache_path(monkeypatch, hub_dir, no_download):
    monkeypatch.setenv("DEEPWIDE_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(ModelError) as info:
        load_model("torchaudio:HUBERT_BASE")
    assert time.monotonic() - start < 30  # generous: it must not wait on a network
    message = str(info.value)
    expected = hub_dir / "checkpoints" / "hubert_fairseq_base_ls960.pth"
    assert str(expected) in message and "TORCH_HOME" in message and "\n" not in message
    assert no_download == [], "no download may be attempted offline"


def test_bundle_download_failure_names_the_cache_path(monkeypatch, hub_dir, no_download):
    monkeypatch.delenv("DEEPWIDE_OFFLINE", raising=False)
    with pytest.raises(ModelError, match="could not be downloaded") as info:
        load_model("torchaudio:WAV2VEC2_BASE")
    assert str(hub_dir / "checkpoints" / "wav2vec2_fairseq_base_ls960.pth") in str(info.value)
    assert no_download == ["https://download.pytorch.org/torchaudio/models/wav2vec2_fairseq_base_ls960.pth"]


def test_random_twin_of_bundle_needs_no_download(monkeypatch, hub_dir, no_download):
    monkeypatch.setenv("DEEPWIDE_OFFLINE", "1")
    config = resolve_config("torchaudio:HUBERT_BASE")
    assert config == PRESETS.get("hubert-base")
    assert resolve_config("torchaudio:HUBERT_LARGE").frontend.normalize_waveform
    assert no_download == []


def _legacy_weight_norm(state):
    out = {}
    for k, v in state.items():
        k = k.replace("parametrizations.weight.original0", "weight_g")
        out[k.replace("parametrizations.weight.original1", "weight_v")] = v
    return out


def _cache_legacy(hub_dir: Path, file: str, reference: torch.nn.Module) -> None:
    """``reference``'s weights where torch.hub caches ``file``, under old torch's key names."""
    cache = hub_dir / "checkpoints" / file
    cache.parent.mkdir(parents=True)
    torch.save(_legacy_weight_norm(reference.state_dict()), cache)


def _assert_matches_torchaudio(model, reference, wavs: torch.Tensor, *, atol: float) -> None:
    """Every transformer layer of ``model`` equals torchaudio's ``reference`` on ``wavs`` (B, S)."""
    with torch.no_grad():
        ours, _ = model.hidden_states(wavs)
        theirs, _ = reference.extract_features(wavs)
    for a, b in zip(ours[1:], theirs, strict=True):
        torch.testing.assert_close(a, b, atol=atol, rtol=0)


def test_cached_bundle_loads_and_matches_torchaudio(monkeypatch, hub_dir, no_download):
    from torchaudio.pipelines import Wav2Vec2Bundle

    bundle = Wav2Vec2Bundle(
        _path="tiny_test_bundle.pth", _params=TINY_BUNDLE_PARAMS, _sample_rate=16000,
        _normalize_waveform=False, _model_type="Wav2Vec2",
    )
    monkeypatch.setattr(torchaudio.pipelines, "TINY_TEST_BUNDLE", bundle, raising=False)
    torch.manual_seed(0)
    reference = torchaudio.models.wav2vec2_model(**TINY_BUNDLE_PARAMS).eval()
    _cache_legacy(hub_dir, "tiny_test_bundle.pth", reference)
    model = load_model("torchaudio:TINY_TEST_BUNDLE")
    assert model.model_id == "torchaudio:TINY_TEST_BUNDLE" and no_download == []
    assert model.config.frontend.norm == "layer_norm" and model.config.layer_norm_first
    _assert_matches_torchaudio(model, reference, waveforms(2, 6000), atol=1e-5)


@pytest.mark.slow
def test_cached_hubert_base_bundle_loads(monkeypatch, hub_dir, no_download):
    """The real HUBERT_BASE key layout (weights fabricated: nothing downloads)."""
    torch.manual_seed(0)
    reference = torchaudio.models.hubert_base().eval()
    _cache_legacy(hub_dir, "hubert_fairseq_base_ls960.pth", reference)
    model = load_model("torchaudio:HUBERT_BASE")
    _assert_matches_torchaudio(model, reference, waveforms(1, 8000), atol=1e-4)
