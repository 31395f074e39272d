"""EncoderConfig / FrontendConfig validation and dict round trips."""

from __future__ import annotations

import json

import pytest

from deepwide.errors import ConfigError
from deepwide.models.config import EncoderConfig, FrontendConfig
from deepwide.models.presets import PRESETS
from tests.models.tiny import FRONTENDS, tiny_config


@pytest.mark.parametrize("name", PRESETS.names())
def test_presets_round_trip_through_json(name):
    config = PRESETS.get(name)
    again = EncoderConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config and again.hash() == config.hash()


@pytest.mark.parametrize("frontend", sorted(FRONTENDS))
def test_frontends_round_trip(frontend):
    config = tiny_config(frontend=FRONTENDS[frontend])
    assert EncoderConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


@pytest.mark.parametrize(
    "overrides",
    [
        {"width": 65},  # not divisible by heads
        {"pos_conv_groups": 3},  # 64 % 3
        {"depth": 0},
        {"arch": "conformer"},
        {"dropout": 1.0},
        {"layer_drop": -0.1},
    ],
)
def test_invalid_encoder_configs(overrides):
    with pytest.raises(ValueError):
        tiny_config(**overrides)


@pytest.mark.parametrize(
    "overrides",
    [{"kind": "mfcc"}, {"norm": "batch_norm"}, {"kernel": 4}, {"conv_layers": ()}, {"conv_layers": ((32, 0, 5),)}],
)
def test_invalid_frontend_configs(overrides):
    with pytest.raises(ValueError):
        FrontendConfig(**overrides)


def test_unknown_keys_are_config_errors():
    data = tiny_config().to_dict()
    data["widht"] = 3
    with pytest.raises(ConfigError, match="widht"):
        EncoderConfig.from_dict(data)
    data = tiny_config().to_dict()
    data["frontend"]["knd"] = "cnn"
    with pytest.raises(ConfigError, match="frontend"):
        EncoderConfig.from_dict(data)


def test_describe_and_derived_properties():
    config = PRESETS.get("hubert-large")
    assert config.describe() == "hubert 24x1024 ffn4096 h16 pre-LN cnn/layer_norm"
    assert config.head_dim == 64 and config.frame_rate_hz == 50.0
    assert FrontendConfig(kind="spectral", channels=48).out_channels == 48
