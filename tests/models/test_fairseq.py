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
from tests.models.tiny import FRONTENDS, TINY_CNN, tiny_config, waveforms

torch.set_num_threads(1)

TINY_CONV = "[(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32, 2, 2)] * 2"


def _fairseq_key(key: str, layer_norm: bool) -> str:
    """deepwide/torchaudio name -> fairseq name (written out from fairseq's module names).

    fairseq's conv block is Sequential(conv, dropout, norm, GELU); the norm is a GroupNorm
    (``.2.``, first layer only) or Sequential(TransposeLast, LayerNorm, TransposeLast) (``.2.1.``).
    """
    rules = [] if layer_norm else [
        ("frontend.conv_layers.0.layer_norm.", "feature_extractor.conv_layers.0.2."),
    ]
    rules += [
        ("encoder.feature_projection.layer_norm.", "layer_norm."),
        ("encoder.feature_projection.projection.", "post_extract_proj."),
        ("encoder.transformer.pos_conv_embed.conv.parametrizations.weight.original0", "encoder.pos_conv.0.weight_g"),
        ("encoder.transformer.pos_conv_embed.conv.parametrizations.weight.original1", "encoder.pos_conv.0.weight_v"),
        ("encoder.transformer.pos_conv_embed.conv.", "encoder.pos_conv.0."),
        ("encoder.transformer.layer_norm.", "encoder.layer_norm."),
    ]
    for ours, theirs in rules:
        if key.startswith(ours):
            return theirs + key[len(ours):]
    if key.startswith("frontend.conv_layers."):
        idx, rest = key[len("frontend.conv_layers."):].split(".", 1)
        rest = rest.replace("conv.", "0.", 1).replace("layer_norm.", "2.1.", 1)
        return f"feature_extractor.conv_layers.{idx}.{rest}"
    if key.startswith("encoder.transformer.layers."):
        idx, rest = key[len("encoder.transformer.layers."):].split(".", 1)
        for ours, theirs in [
            ("attention.", "self_attn."),
            ("layer_norm.", "self_attn_layer_norm."),
            ("feed_forward.intermediate_dense.", "fc1."),
            ("feed_forward.output_dense.", "fc2."),
            ("final_layer_norm.", "final_layer_norm."),
        ]:
            if rest.startswith(ours):
                return f"encoder.layers.{idx}.{theirs}{rest[len(ours):]}"
    raise AssertionError(f"no fairseq name for {key}")


def _fabricate(model, *, name="hubert", layer_norm=False, prefix=""):
    state = {prefix + _fairseq_key(k, layer_norm): v.clone() for k, v in model.state_dict().items()}
    # pre-training extras a real HuBERT / wav2vec 2.0 checkpoint carries
    state[prefix + "mask_emb"] = torch.zeros(64)
    state[prefix + "label_embs_concat"] = torch.zeros(504, 16)
    state[prefix + "final_proj.weight"] = torch.zeros(16, 64)
    state[prefix + "final_proj.bias"] = torch.zeros(16)
    model_cfg = {
        "_name": name,
        "extractor_mode": "layer_norm" if layer_norm else "default",
        "encoder_layers": model.config.depth,
        "encoder_embed_dim": model.config.width,
        "encoder_ffn_embed_dim": model.config.ffn,
        "encoder_attention_heads": model.config.heads,
        "activation_fn": "gelu",
        "layer_norm_first": model.config.layer_norm_first,
        "conv_feature_layers": TINY_CONV,
        "conv_bias": model.config.frontend.conv_bias,
        "conv_pos": model.config.pos_conv_kernel,
        "conv_pos_groups": model.config.pos_conv_groups,
        "dropout": 0.1,
        "encoder_layerdrop": 0.05,
        "label_rate": 50.0,
    }
    return state, model_cfg


def _check_same(model, loaded):
    wavs = waveforms(2, 5000)
    with torch.no_grad():
        a, _ = model.eval().hidden_states(wavs)
        b, _ = loaded.hidden_states(wavs)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, atol=1e-6, rtol=0)


def test_fairseq_hubert_cfg_dict(tmp_path):
    model = build_encoder(tiny_config(), seed=4)
    state, model_cfg = _fabricate(model)
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
    state, model_cfg = _fabricate(model, name="wav2vec2", layer_norm=True)
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
    state, model_cfg = _fabricate(model, prefix="w2v_encoder.w2v_model.")
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
    state, _ = _fabricate(model, layer_norm=True)
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
    state, model_cfg = _fabricate(model)
    torch.save({"cfg": {"model": model_cfg}, "model": state, "extra_state": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(ModelError, match="allow-list") as info:
        load_model(str(tmp_path / "evil.pt"))
    assert not marker.exists()
    assert "\n" not in str(info.value)


def test_mismatched_fairseq_keys_are_named(tmp_path):
    model = build_encoder(tiny_config(), seed=0)
    state, model_cfg = _fabricate(model)
    state["encoder.layers.0.mystery.weight"] = torch.zeros(2)
    model_cfg["encoder_ffn_embed_dim"] = 96
    torch.save({"cfg": {"model": model_cfg}, "model": state}, tmp_path / "bad.pt")
    with pytest.raises(ModelError) as info:
        load_model(str(tmp_path / "bad.pt"))
    message = str(info.value)
    assert "unexpected keys: encoder.layers.0.mystery.weight" in message
    assert "encoder.transformer.layers.0.feed_forward.intermediate_dense.weight (128, 64) != (96, 64)" in message


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
