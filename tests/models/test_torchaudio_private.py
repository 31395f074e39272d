"""Pins every private torchaudio name deepwide uses (all through deepwide.models.torchaudio_private).

Each test asserts that the name exists in the installed torchaudio, takes the arguments deepwide
passes, and computes what deepwide relies on — checked against torchaudio's public API where
there is one. A torchaudio upgrade that moves or changes one of them fails here.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch
import torchaudio
from torch import nn
from torchaudio.models.wav2vec2 import components

from deepwide.models import torchaudio_private as tp
from deepwide.models.budget import count_params
from deepwide.models.bundles import bundle_config, torchaudio_bundles
from tests.models.tiny import TINY_CNN, tiny_config

ROOT = Path(__file__).resolve().parents[2]

#: The keyword arguments deepwide.models.encoder passes to the transformer builders.
ENCODER_KWARGS = {
    "in_features", "embed_dim", "dropout_input", "pos_conv_kernel", "pos_conv_groups", "num_layers",
    "num_heads", "attention_dropout", "ff_interm_features", "ff_interm_dropout", "dropout",
    "layer_norm_first", "layer_drop",
}
#: The bundle ``_params`` keys deepwide.models.bundles.bundle_config reads.
BUNDLE_KEYS = {
    "extractor_conv_layer_config", "extractor_mode", "extractor_conv_bias", "encoder_num_layers",
    "encoder_embed_dim", "encoder_ff_interm_features", "encoder_num_heads", "encoder_layer_norm_first",
    "encoder_pos_conv_kernel", "encoder_pos_conv_groups",
}

torch.set_num_threads(1)


def _kwargs(**over) -> dict:
    base = dict(in_features=32, embed_dim=64, dropout_input=0.0, pos_conv_kernel=16, pos_conv_groups=4,
                num_layers=2, num_heads=4, attention_dropout=0.0, ff_interm_features=128,
                ff_interm_dropout=0.0, dropout=0.0, layer_norm_first=False, layer_drop=0.0)
    base.update(over)
    return base


def test_the_private_names_exist() -> None:
    for name in ("_get_feature_extractor", "_get_encoder", "_get_wavlm_encoder", "_init_transformer_params"):
        assert callable(getattr(components, name, None)), name
    assert callable(getattr(components.Transformer, "_preprocess", None))
    assert callable(getattr(components.Encoder, "_preprocess", None))
    fields = set(torchaudio.pipelines.Wav2Vec2Bundle.__dataclass_fields__)
    assert {"_path", "_params", "_model_type", "_normalize_waveform"} <= fields


def test_builders_take_the_arguments_deepwide_passes() -> None:
    assert set(inspect.signature(components._get_encoder).parameters) == ENCODER_KWARGS
    assert set(inspect.signature(components._get_wavlm_encoder).parameters) == ENCODER_KWARGS | {
        "num_buckets", "max_distance"}
    assert list(inspect.signature(components._get_feature_extractor).parameters) == ["norm_mode", "shapes", "bias"]


@pytest.mark.parametrize("norm", ["group_norm", "layer_norm"])
def test_feature_extractor_is_torchaudios_waveform_cnn(norm: str) -> None:
    fe = tp.build_feature_extractor(norm, TINY_CNN, conv_bias=norm == "layer_norm")
    assert isinstance(fe, components.FeatureExtractor) and len(fe.conv_layers) == len(TINY_CNN)
    norms = [type(block.layer_norm).__name__ if block.layer_norm is not None else None for block in fe.conv_layers]
    assert norms == (["GroupNorm"] + [None] * 6 if norm == "group_norm" else ["LayerNorm"] * 7)
    assert (fe.conv_layers[0].conv.bias is not None) == (norm == "layer_norm")
    feats, lengths = fe(torch.randn(2, 4000), torch.tensor([4000, 3000]))
    assert feats.shape == (2, (4000 - 400) // 320 + 1, 32) and lengths.tolist() == [12, 9]


@pytest.mark.parametrize("wavlm", [False, True])
def test_transformer_builders_make_the_documented_modules(wavlm: bool) -> None:
    enc = (tp.build_wavlm_encoder(num_buckets=8, max_distance=20, **_kwargs()) if wavlm
           else tp.build_transformer_encoder(**_kwargs()))
    assert isinstance(enc, components.Encoder) and isinstance(enc.transformer, components.Transformer)
    assert len(enc.transformer.layers) == 2
    attention = type(enc.transformer.layers[0].attention).__name__
    assert attention == ("WavLMSelfAttention" if wavlm else "SelfAttention")
    # the builder inverts layer_norm_first for the Transformer: LN at its input when post-LN
    assert enc.transformer.layer_norm_first is True


def test_init_transformer_params_is_berts_normal_init() -> None:
    torch.manual_seed(0)
    linear, embedding, norm = nn.Linear(256, 256), nn.Embedding(64, 256), nn.LayerNorm(256)
    nn.init.constant_(linear.bias, 1.0)
    nn.init.constant_(norm.weight, 3.0)
    for module in (linear, embedding, norm):
        tp.init_transformer_params(module)
    assert torch.equal(linear.bias, torch.zeros(256))
    for w in (linear.weight.detach(), embedding.weight.detach()):
        assert abs(float(w.mean())) < 2e-3 and abs(float(w.std()) - 0.02) < 1e-3
    assert torch.equal(norm.weight, torch.full((256,), 3.0))  # other modules are left alone


@pytest.mark.parametrize("layer_norm_first", [False, True])
def test_transformer_input_is_positional_conv_then_input_norm_of_post_ln(layer_norm_first: bool) -> None:
    torch.manual_seed(0)
    enc = tp.build_transformer_encoder(**_kwargs(layer_norm_first=layer_norm_first)).eval()
    x = torch.randn(2, 30, 64)
    t = enc.transformer
    with torch.no_grad():
        want = x + t.pos_conv_embed(x)
        if not layer_norm_first:  # post-LN (HuBERT Base): the input layer norm comes first
            want = t.layer_norm(want)
        torch.testing.assert_close(tp.transformer_input(t, x), want, rtol=0, atol=0)


def test_transformer_input_then_layers_is_torchaudios_public_extract_features() -> None:
    """What Encoder.hidden_states builds on: transformer_input + layers == public layer outputs."""
    from deepwide.models.encoder import build_encoder

    model = build_encoder(tiny_config(), seed=1).eval()
    wavs = torch.randn(1, 5000, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ours, _ = model.hidden_states(wavs)
        theirs, _ = model.as_torchaudio().extract_features(wavs)
    for a, b in zip(ours[1:], theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_encoder_input_projects_zeroes_padding_and_masks_keys() -> None:
    torch.manual_seed(0)
    enc = tp.build_transformer_encoder(**_kwargs()).eval()
    feats = torch.randn(2, 10, 32)
    with torch.no_grad():
        x, mask = tp.encoder_input(enc, feats, torch.tensor([10, 6]))
        torch.testing.assert_close(x[0], enc.feature_projection(feats[:1])[0])
        torch.testing.assert_close(x[1, :6], enc.feature_projection(feats[1:, :6])[0])
    assert torch.equal(x[1, 6:], torch.zeros(4, 64))
    assert mask is not None and mask.shape == (2, 1, 10, 10)
    assert bool((mask[1, :, :, 6:] < -1e3).all()) and bool((mask[1, :, :, :6] == 0).all()) and bool((mask[0] == 0).all())
    assert tp.encoder_input(enc, feats, None)[1] is None


def test_bundle_params_are_the_public_builders_arguments() -> None:
    from torchaudio.models import wav2vec2_model, wavlm_model

    bundles = torchaudio_bundles()
    assert {"HUBERT_BASE", "HUBERT_LARGE", "WAV2VEC2_BASE", "WAVLM_BASE"} <= set(bundles)
    for name, bundle in bundles.items():
        info = tp.bundle_info(bundle)
        assert info.model_type in {"Wav2Vec2", "WavLM"}, name
        builder = wavlm_model if info.model_type == "WavLM" else wav2vec2_model
        assert set(info.params) <= set(inspect.signature(builder).parameters), name
        wanted = BUNDLE_KEYS | ({"encoder_num_buckets", "encoder_max_distance"} if info.model_type == "WavLM" else set())
        assert wanted <= set(info.params), name
        assert isinstance(info.normalize_waveform, bool) and info.url.startswith("https://"), name
    assert tp.bundle_info(bundles["HUBERT_LARGE"]).normalize_waveform
    assert not tp.bundle_info(bundles["HUBERT_BASE"]).normalize_waveform


@pytest.mark.parametrize("name", ["HUBERT_BASE", "HUBERT_LARGE", "WAVLM_BASE"])
def test_bundle_config_counts_the_parameters_torchaudio_builds(name: str) -> None:
    from torchaudio.models import wav2vec2_model, wavlm_model

    info = tp.bundle_info(torchaudio_bundles()[name])
    builder = wavlm_model if info.model_type == "WavLM" else wav2vec2_model
    with torch.device("meta"):  # shapes only: nothing is allocated
        reference = builder(**info.params)
    heads = sum(p.numel() for n, p in reference.named_parameters() if n.startswith("aux."))
    assert count_params(bundle_config(name)) == sum(p.numel() for p in reference.parameters()) - heads


def test_bundle_url_is_where_torchaudio_downloads_from(monkeypatch: pytest.MonkeyPatch) -> None:
    from torchaudio.pipelines._wav2vec2 import utils

    class Stop(Exception):
        pass

    seen: list[str] = []

    def record(url: str, **kwargs: object) -> None:
        seen.append(url)
        raise Stop

    monkeypatch.setattr(utils, "load_state_dict_from_url", record)
    bundle = torchaudio_bundles()["HUBERT_BASE"]
    with pytest.raises(Stop):
        bundle.get_model()  # public: downloads the weights from the bundle's URL
    assert seen == [tp.bundle_info(bundle).url]


#: Modules still to move onto torchaudio_private (owned elsewhere; see the #17 report): the
#: pre-training model calls ``Encoder._preprocess`` / ``Transformer._preprocess`` itself, where
#: ``encoder_input`` / ``transformer_input`` do the same.
PENDING = {"deepwide/models/pretraining/model.py"}


def test_no_other_module_touches_torchaudio_private_names() -> None:
    """The underscore names pinned above appear in torchaudio_private.py and nowhere else."""
    names = ("_get_feature_extractor", "_get_encoder", "_get_wavlm_encoder", "_init_transformer_params",
             "._preprocess(", "bundle._params", "._model_type", "._normalize_waveform", "._path")
    offenders = []
    for folder in ("deepwide", "extract", "probing", "distill", "analysis", "figures", "study"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path.name == "torchaudio_private.py":
                continue
            text = path.read_text(encoding="utf-8")
            rel = path.relative_to(ROOT).as_posix()
            offenders += [f"{rel}: {n}" for n in names if n in text and rel not in PENDING]
    assert offenders == []
