"""fairseq checkpoints: fabricated with fairseq's key names and config, read weights-only."""

from __future__ import annotations

import argparse
import os

import numpy as np
import pytest
import torch

from deepwide.errors import ModelError
from deepwide.models.encoder import build_encoder
from deepwide.models.fairseq import parse_conv_layers
from deepwide.models.loading import load_model, resolve_config
from tests.models.fairseq_layout import TINY_CONV, fairseq_parts
from tests.models.tiny import FRONTENDS, TINY_CNN, tiny_config, waveforms

torch.set_num_threads(1)

def _check_same(model, loaded):
    wavs = waveforms(2, 5000)
    with torch.no_grad():
        a, _ = model.eval().hidden_states(wavs)
        b, _ = loaded.hidden_states(wavs)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, atol=1e-6, rtol=0)


def test_fairseq_hubert_cfg_dict(tmp_path):
    model = build_encoder(tiny_config(), seed=4)
    state, model_cfg = fairseq_parts(model)
    ckpt = {
        "cfg": {"model": model_cfg, "task": {"_name": "hubert_pretraining", "normalize": False}},
        "model": state,
        "optimizer_history": [{"criterion_name": "HubertCriterion", "num_updates": 400000}],
        "extra_state": {"epoch": 3, "val_loss": np.float64(2.5), "best": np.float32(1.0)},
        "last_optimizer_state": None,
    }
    path = tmp_path / "hubert_tiny.pt"
    torch.save(ckpt, path)
    loaded = load_model(str(path))
    assert loaded.model_id == "hubert_tiny"
    assert loaded.config == model.config
    assert loaded.weights_hash() == model.weights_hash()
    _check_same(model, loaded)
    twin = load_model(f"random:{path}", seed=0)
    assert twin.config == model.config and twin.weights_hash() != model.weights_hash()


def test_fairseq_wav2vec2_args_namespace_layer_norm_and_normalize(tmp_path):
    model = build_encoder(
        tiny_config(frontend=FRONTENDS["cnn-layernorm"], layer_norm_first=True, arch="wav2vec2"), seed=5
    )
    state, model_cfg = fairseq_parts(model, name="wav2vec2", layer_norm=True)
    state["quantizer.vars"] = torch.zeros(1, 8, 4)
    state["project_q.weight"] = torch.zeros(4, 4)
    args = argparse.Namespace(arch="wav2vec2", normalize=True, **{k: v for k, v in model_cfg.items() if k != "_name"})
    path = tmp_path / "w2v.pt"
    torch.save({"args": args, "model": state}, path)
    loaded = load_model(str(path))
    assert loaded.config == model.config  # normalize=True <-> normalize_waveform
    assert loaded.config.frontend.normalize_waveform and loaded.config.arch == "wav2vec2"
    _check_same(model, loaded)


def test_fairseq_finetuned_checkpoint_loads_its_encoder(tmp_path):
    model = build_encoder(tiny_config(), seed=6)
    state, model_cfg = fairseq_parts(model, prefix="w2v_encoder.w2v_model.")
    state["w2v_encoder.proj.weight"] = torch.zeros(32, 64)
    state["w2v_encoder.proj.bias"] = torch.zeros(32)
    ckpt = {
        "cfg": {
            "model": {"_name": "hubert_ctc", "w2v_args": {"model": model_cfg, "task": {"normalize": False}}},
            "task": {"_name": "audio_finetuning"},
        },
        "model": state,
    }
    torch.save(ckpt, tmp_path / "ft.pt")
    _check_same(model, load_model(str(tmp_path / "ft.pt")))


def test_key_map_agrees_with_torchaudio_importer():
    import_fairseq = pytest.importorskip("torchaudio.models.wav2vec2.utils.import_fairseq")
    from deepwide.models.fairseq import map_fairseq_state

    model = build_encoder(tiny_config(frontend=FRONTENDS["cnn-layernorm"]), seed=0)
    state, _ = fairseq_parts(model, layer_norm=True)
    mapped, unknown = map_fairseq_state(state)
    assert unknown == []
    ours = {k.replace("frontend.", "feature_extractor.", 1) for k in mapped}
    theirs = {import_fairseq._map_key(k) for k in state} - {None, "label_embs_concat"}
    renamed = {
        k.replace("weight_g", "parametrizations.weight.original0").replace("weight_v", "parametrizations.weight.original1")
        for k in theirs
    }
    assert ours == renamed


def test_code_in_the_pickle_is_not_run(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.makedirs, (str(marker),))

    model = build_encoder(tiny_config(), seed=0)
    state, model_cfg = fairseq_parts(model)
    torch.save({"cfg": {"model": model_cfg}, "model": state, "extra_state": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ModelError, match="allow-list") as info:
        load_model(str(tmp_path / "evil.pt"))
    assert not marker.exists()
    assert "\n" not in str(info.value)


def test_mismatched_fairseq_keys_are_named(tmp_path):
    model = build_encoder(tiny_config(), seed=0)
    state, model_cfg = fairseq_parts(model)
    state["encoder.layers.0.mystery.weight"] = torch.zeros(2)
    model_cfg["encoder_ffn_embed_dim"] = 96
    torch.save({"cfg": {"model": model_cfg}, "model": state}, tmp_path / "bad.pt")
    with pytest.raises(ModelError) as info:
        load_model(str(tmp_path / "bad.pt"))
    message = str(info.value)
    assert "unexpected keys: encoder.layers.0.mystery.weight" in message
    assert "encoder.transformer.layers.0.feed_forward.intermediate_dense.weight (128, 64) != (96, 64)" in message


def test_a_checkpoint_of_another_sample_rate_is_refused(tmp_path):
    model = build_encoder(tiny_config(), seed=0)
    state, model_cfg = fairseq_parts(model)
    torch.save({"cfg": {"model": model_cfg, "task": {"sample_rate": 8000}}, "model": state}, tmp_path / "8k.pt")
    with pytest.raises(ModelError, match="trained on 8000 Hz audio, but deepwide runs every model on 16000 Hz") as info:
        load_model(str(tmp_path / "8k.pt"))
    assert "\n" not in str(info.value)


def test_wavlm_and_non_checkpoints_are_refused(tmp_path):
    torch.save({"cfg": {"model": {"_name": "wavlm"}}, "model": {"encoder.layers.0.self_attn.relative_attention_bias.weight": torch.zeros(2)}}, tmp_path / "wavlm.pt")
    with pytest.raises(ModelError, match="WavLM"):
        resolve_config(str(tmp_path / "wavlm.pt"))
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ModelError, match="not a fairseq checkpoint"):
        load_model(str(tmp_path / "other.pt"))


def test_conv_feature_layers_parser():
    assert parse_conv_layers(TINY_CONV) == TINY_CNN
    assert parse_conv_layers("[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] + [(512,2,2)]")[-1] == (512, 2, 2)
    for bad in ["__import__('os').system('true')", "[(1, 2)]", "[]", "[(a, 2, 3)]"]:
        with pytest.raises(ModelError):
            parse_conv_layers(bad)
