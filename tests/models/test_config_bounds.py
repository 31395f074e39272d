"""Absurd sizes in a checkpoint's config are refused on one line before anything is allocated."""

from __future__ import annotations

import json
import time
import tracemalloc

import pytest
import torch
from click.testing import CliRunner

from deepwide.cli import cli
from deepwide.errors import ModelError
from deepwide.models.config import LIMITS, MAX_PARAMS, EncoderConfig, FrontendConfig
from deepwide.models.encoder import build_encoder
from deepwide.models.fairseq import parse_conv_layers
from deepwide.models.loading import resolve_config, save_checkpoint
from tests.models.tiny import tiny_config

torch.set_num_threads(1)


def _bounded(fn, *args):
    """Run ``fn(*args)``; return (exception, seconds, peak traced bytes)."""
    tracemalloc.start()
    start = time.monotonic()
    try:
        fn(*args)
    except Exception as exc:  # noqa: BLE001 - the caller checks what was raised
        caught = exc
    else:
        caught = None
    seconds = time.monotonic() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return caught, seconds, peak


@pytest.mark.parametrize("text", [
    "[(512,10,5)]*1000000000",              # the 60-byte bomb of the issue
    "1000000000*[(512,10,5)]",
    "[(512,10,5)]*100000*100000",
    "[[(512,10,5)]*200]*200",
    "[(512,10,5)]*65",                      # one layer more than accepted
    "[(512,10,5)]*2**40",                   # ** is not arithmetic this parser knows
    "[" + "(1,1,1)," * 300 + "]",           # a long literal list
    "+".join(["[(1,1,1)]"] * 400),          # a long chain of additions
])
def test_conv_layer_expressions_are_sized_before_they_are_built(text):
    exc, seconds, peak = _bounded(parse_conv_layers, text)
    assert isinstance(exc, ModelError), exc
    assert "\n" not in str(exc)
    assert seconds < 1.0 and peak < 5_000_000  # nothing like 4 GB in 13 s


def test_real_conv_layer_expressions_still_parse():
    default = "[(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2"
    assert parse_conv_layers(default) == ((512, 10, 5),) + ((512, 3, 2),) * 4 + ((512, 2, 2),) * 2
    assert len(parse_conv_layers(f"[(64, 3, 1)] * {LIMITS['conv_layers']}")) == LIMITS["conv_layers"]


@pytest.mark.parametrize(("field", "value"), [
    ("depth", 10**9), ("width", 2**20), ("ffn", 10**12), ("heads", 4096), ("pos_conv_kernel", 10**7),
])
def test_encoder_sizes_have_an_upper_bound(field, value):
    base = dict(depth=2, width=64, ffn=128, heads=4, pos_conv_groups=4, pos_conv_kernel=16)
    base[field] = value
    with pytest.raises(ValueError, match=f"{field} .* beyond the largest accepted"):
        EncoderConfig(**base)


def test_total_parameters_have_an_upper_bound():
    # every size within its own bound, but together ~800 B parameters
    with pytest.raises(ValueError, match="B parameters, more than"):
        EncoderConfig(depth=LIMITS["depth"], width=LIMITS["width"], ffn=4 * LIMITS["width"], heads=16)
    big = EncoderConfig(depth=48, width=1920, ffn=7680, heads=16)  # the largest published (XLS-R 2B)
    from deepwide.models.budget import count_params

    assert 1.9e9 < count_params(big) < MAX_PARAMS


@pytest.mark.parametrize("layers", [[(512, 10, 5)] * 1000, [(10**9, 10, 5)], [(512, 10, float("inf"))], [(512, 10)]])
def test_frontend_layers_are_bounded(layers):
    with pytest.raises(ValueError):
        FrontendConfig(conv_layers=layers)


def _one_line_error(*args: str) -> str:
    res = CliRunner().invoke(cli, ["-q", *args])
    assert res.exit_code == ModelError.exit_code and isinstance(res.exception, SystemExit), res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.output
    return lines[0]


def test_fairseq_bomb_through_the_cli(tmp_path):
    cfg = {"_name": "hubert", "encoder_layers": 2, "encoder_embed_dim": 64, "encoder_ffn_embed_dim": 128,
           "encoder_attention_heads": 4, "conv_pos": 16, "conv_pos_groups": 4,
           "conv_feature_layers": "[(512,10,5)]*1000000000"}
    torch.save({"cfg": {"model": cfg}, "model": {}}, tmp_path / "bomb.pt")
    start = time.monotonic()
    assert "repeated 1000000000 times" in _one_line_error("models", "params", str(tmp_path / "bomb.pt"))
    assert time.monotonic() - start < 10
    cfg.update(conv_feature_layers="[(32, 10, 5)]", encoder_layers=10**9)
    torch.save({"cfg": {"model": cfg}, "model": {}}, tmp_path / "deep.pt")
    assert "depth 1,000,000,000 is beyond" in _one_line_error("models", "params", str(tmp_path / "deep.pt"))
    cfg.update(encoder_layers=[2])
    torch.save({"cfg": {"model": cfg}, "model": {}}, tmp_path / "list.pt")
    assert "encoder_layers must be a positive integer" in _one_line_error("models", "params", str(tmp_path / "list.pt"))


HF = {
    "model_type": "hubert", "conv_dim": [32] * 7, "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
    "conv_stride": [5, 2, 2, 2, 2, 2, 2], "num_hidden_layers": 2, "hidden_size": 64,
    "intermediate_size": 128, "num_attention_heads": 4, "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 4,
}


@pytest.mark.parametrize(("change", "message"), [
    ({"hidden_size": 2**40}, "width .* beyond the largest accepted"),
    ({"num_hidden_layers": 10**6}, "depth .* beyond the largest accepted"),
    ({"intermediate_size": float("inf")}, "intermediate_size must be a positive integer"),
    ({"num_attention_heads": "many"}, "num_attention_heads must be a positive integer"),
    ({"conv_dim": [32] * 1000, "conv_kernel": [2] * 1000, "conv_stride": [1] * 1000}, "1000 conv layers"),
    ({"conv_dim": [2**40] * 7}, "conv_channels must be an integer in"),
    ({"conv_dim": "32"}, "must be lists"),
    ({"model_type": ["hubert"]}, "model_type"),
])
def test_hf_config_sizes_are_bounded(tmp_path, change, message):
    (tmp_path / "config.json").write_text(json.dumps({**HF, **change}))
    torch.save({}, tmp_path / "pytorch_model.bin")
    with pytest.raises(ModelError, match=message) as info:
        resolve_config(str(tmp_path))
    assert "\n" not in str(info.value)


def test_deepwide_config_sizes_are_bounded(tmp_path):
    folder = save_checkpoint(build_encoder(tiny_config(), seed=0, model_id="m"), tmp_path / "m")
    info = json.loads((folder / "config.json").read_text())
    info["config"]["depth"] = 10**9
    (folder / "config.json").write_text(json.dumps(info))
    assert "depth 1,000,000,000 is beyond" in _one_line_error("models", "params", str(folder))
    info["config"]["depth"] = 2
    info["config"]["frontend"]["conv_layers"] = [[512, 10, 5]] * 100_000
    (folder / "config.json").write_text(json.dumps(info))
    assert "at most 64 layers" in _one_line_error("models", "params", str(folder))
