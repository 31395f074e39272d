"""Hugging Face model folders, checked against transformers' own hidden states."""

from __future__ import annotations

import json

import pytest
import torch

from deepwide.errors import ModelError
from deepwide.models.loading import load_model, resolve_config

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

torch.set_num_threads(1)

TINY = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    conv_dim=(16,) * 7,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=4,
)
STABLE = dict(do_stable_layer_norm=True, feat_extract_norm="layer", conv_bias=True)
WAVLM = dict(num_buckets=8, max_bucket_distance=20)

VARIANTS = {
    "hubert": ("HubertConfig", "HubertModel", {}),
    "hubert-stable": ("HubertConfig", "HubertModel", STABLE),
    "wav2vec2": ("Wav2Vec2Config", "Wav2Vec2Model", {}),
    "wav2vec2-stable": ("Wav2Vec2Config", "Wav2Vec2Model", STABLE),
    "wavlm": ("WavLMConfig", "WavLMModel", WAVLM),
    "wavlm-stable": ("WavLMConfig", "WavLMModel", {**WAVLM, **STABLE}),
}


def _hf_model(variant: str, seed: int = 0):
    config_cls, model_cls, extra = VARIANTS[variant]
    torch.manual_seed(seed)
    model = getattr(transformers, model_cls)(getattr(transformers, config_cls)(**TINY, **extra)).eval()
    with torch.no_grad():  # move every weight off its init value (LN gains, biases …)
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def _compare(hf_model, ours, wavs):
    with torch.no_grad():
        out = hf_model(wavs, output_hidden_states=True)
        states, frames = ours.hidden_states(wavs)
    reference = list(out.hidden_states)
    assert len(states) == len(reference) == hf_model.config.num_hidden_layers + 1
    tied = torch.equal(reference[-1], out.last_hidden_state)
    if hf_model.config.do_stable_layer_norm and tied:  # transformers < 5: last state after final LN
        states[-1] = ours.encoder.transformer.layer_norm(states[-1])
    for i, (a, b) in enumerate(zip(states, reference, strict=True)):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0, msg=f"hidden state {i}")
    assert frames.tolist() == [out.last_hidden_state.shape[1]] * wavs.shape[0]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_hf_folder_matches_transformers(tmp_path, variant):
    hf_model = _hf_model(variant)
    hf_model.save_pretrained(tmp_path / variant)
    ours = load_model(str(tmp_path / variant))
    assert ours.model_id == variant
    assert ours.config.arch == variant.split("-")[0]
    assert ours.config.layer_norm_first == variant.endswith("stable")
    _compare(hf_model, ours, torch.randn(2, 5200, generator=torch.Generator().manual_seed(1)))


def test_hf_pytorch_model_bin_and_task_prefix(tmp_path):
    """A CTC checkpoint (``hubert.`` prefix, lm_head) saved as pytorch_model.bin."""
    hf_model = _hf_model("hubert")
    folder = tmp_path / "ctc"
    folder.mkdir()
    config = hf_model.config.to_dict()
    config["architectures"] = ["HubertForCTC"]
    (folder / "config.json").write_text(json.dumps(config))
    state = {f"hubert.{k}": v for k, v in hf_model.state_dict().items()}
    state["lm_head.weight"] = torch.zeros(32, 32)
    torch.save(state, folder / "pytorch_model.bin")
    _compare(hf_model, load_model(str(folder)), torch.randn(1, 4000))


def test_random_twin_of_hf_folder(tmp_path):
    hf_model = _hf_model("wav2vec2")
    hf_model.save_pretrained(tmp_path / "w2v")
    trained = load_model(str(tmp_path / "w2v"))
    twin = load_model(f"random:{tmp_path / 'w2v'}", seed=0)
    assert twin.config == trained.config == resolve_config(str(tmp_path / "w2v"))
    assert twin.weights_hash() != trained.weights_hash()
    assert twin.weights_hash() == load_model(f"random:{tmp_path / 'w2v'}", seed=0).weights_hash()


def test_preprocessor_do_normalize_sets_waveform_normalisation(tmp_path):
    hf_model = _hf_model("hubert-stable")
    hf_model.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "preprocessor_config.json").write_text(json.dumps({"do_normalize": True}))
    assert resolve_config(str(tmp_path / "m")).frontend.normalize_waveform


def test_a_model_of_another_sample_rate_is_refused(tmp_path):
    hf_model = _hf_model("hubert")
    hf_model.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "preprocessor_config.json").write_text(json.dumps({"sampling_rate": 8000}))
    with pytest.raises(ModelError, match="takes 8000 Hz audio, but deepwide runs every model on 16000 Hz") as info:
        load_model(str(tmp_path / "m"))
    assert "\n" not in str(info.value)
    (tmp_path / "m" / "preprocessor_config.json").write_text(json.dumps({"sampling_rate": 16000}))
    assert resolve_config(str(tmp_path / "m")).frame_rate_hz == 50.0


def test_unsupported_hf_options_are_named(tmp_path):
    hf_model = _hf_model("hubert")
    hf_model.save_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config["feat_proj_layer_norm"] = False
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="feat_proj_layer_norm=False is not supported"):
        load_model(str(tmp_path / "m"))
    config["feat_proj_layer_norm"] = True
    config["model_type"] = "whisper"
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="model_type 'whisper' is not supported; valid: hubert"):
        load_model(str(tmp_path / "m"))


def test_hf_weights_that_do_not_fit_the_config_name_the_keys(tmp_path):
    hf_model = _hf_model("hubert")
    hf_model.save_pretrained(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config["num_hidden_layers"] = 3
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match=r"missing keys: encoder\.transformer\.layers\.2\."):
        load_model(str(tmp_path / "m"))
