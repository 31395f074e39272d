"""Files a user can be handed never run code: a malicious pickle in every place deepwide reads one.

Each case plants a pickle whose ``__reduce__`` writes a marker file, invokes the real CLI
entry that reads it, and asserts that the marker never appears and that the user gets one
``Error:`` line (a :class:`DeepwideError`, exit 2) — no traceback and no advice to load it with
``weights_only=False``. Each planted file is then loaded *unsafely* once, to prove that it
really would have run code.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from deepwide.cli import cli
from deepwide.config import config_to_dict
from deepwide.errors import ModelError
from deepwide.models import build_encoder, save_checkpoint
from deepwide.models.pretrain import STATE_FORMAT, STATE_VERSION, quick_config
from deepwide.models.torchfile import CorruptFileError, UnsafeFileError, load_torch_file
from tests.distill.conftest import tiny_encoder_config, write_corpus

torch.set_num_threads(1)


class Payload:
    """Unpickling this runs a shell command that writes ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"echo pwned > {shlex.quote(str(self.marker))}",))


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    write_corpus(root, n=4)
    return root


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("teacher")
    return save_checkpoint(build_encoder(tiny_encoder_config(), seed=0, model_id="t"), out)


def _distill(teacher: str, corpus: Path, out: Path, *extra: str) -> list[str]:
    return ["distill", "--teacher", teacher, "--corpus", str(corpus), "--steps", "8", "--depth", "2",
            "--width", "32", "--heads", "2", "--ffn", "64", "--batch-seconds", "3", "--max-crop-seconds", "1",
            "--device", "cpu", "--no-progress", "--out", str(out), *extra]


# Each case: plant(tmp, evil, corpus, teacher) -> (planted file, CLI args after `deepwide -q`).
def _pretrain_state(tmp: Path, evil: Payload) -> Path:
    run = tmp / "run"
    run.mkdir()
    torch.save({"format": STATE_FORMAT, "format_version": STATE_VERSION, "key": "k", "iteration": 0,
                "step": 0, "encoder": {}, "note": evil}, run / "state.pt")
    return run


def plant_pretrain_resume(tmp, evil, corpus, teacher):
    run = _pretrain_state(tmp, evil)
    return run / "state.pt", ["teacher", "pretrain", "--corpus", str(corpus), "--out", str(run), "--quick", "--resume"]


def plant_export(tmp, evil, corpus, teacher):
    run = _pretrain_state(tmp, evil)
    (run / "pretrain_config.json").write_text(json.dumps({"config": config_to_dict(quick_config()), "seed": 0}))
    return run / "state.pt", ["teacher", "export", "--run", str(run), "--out", str(tmp / "exp")]


def plant_distill_resume(tmp, evil, corpus, teacher):
    folder = tmp / "run" / "checkpoints"
    folder.mkdir(parents=True)
    ckpt = folder / "step-00000004.pt"
    torch.save({"step": 4, "model": {}, "optimizer": {}, "scheduler": {}, "scaler": {}, "rng": [{}],
                "data": {"next_batch": 4}, "window": {}, "note": evil}, ckpt)
    (folder / "latest.json").write_text(json.dumps({"file": ckpt.name, "step": 4}))
    return ckpt, _distill(str(teacher), corpus, tmp / "run", "--resume")


def plant_model_dir(tmp, evil, corpus, teacher):
    folder = save_checkpoint(build_encoder(tiny_encoder_config(), seed=1, model_id="m"), tmp / "model")
    torch.save({"frontend.conv.weight": torch.zeros(1), "note": evil}, folder / "model.safetensors")
    return folder / "model.safetensors", _distill(str(folder), corpus, tmp / "out")


def plant_hf_bin(tmp, evil, corpus, teacher):
    folder = tmp / "hf"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "model_type": "hubert", "conv_dim": [32] * 7, "conv_kernel": [10, 3, 3, 3, 3, 2, 2],
        "conv_stride": [5, 2, 2, 2, 2, 2, 2], "num_hidden_layers": 2, "hidden_size": 64,
        "intermediate_size": 128, "num_attention_heads": 4, "num_conv_pos_embeddings": 16,
        "num_conv_pos_embedding_groups": 4,
    }))
    torch.save({"hubert.encoder.layer_norm.weight": torch.ones(64), "note": evil}, folder / "pytorch_model.bin")
    return folder / "pytorch_model.bin", _distill(str(folder), corpus, tmp / "out")


def plant_fairseq(tmp, evil, corpus, teacher):
    cfg = {"_name": "hubert", "encoder_layers": 2, "encoder_embed_dim": 64, "encoder_ffn_embed_dim": 128,
           "encoder_attention_heads": 4, "conv_pos": 16, "conv_pos_groups": 4}
    torch.save({"cfg": {"model": cfg}, "model": {}, "extra_state": evil}, tmp / "hubert.pt")
    return tmp / "hubert.pt", _distill(str(tmp / "hubert.pt"), corpus, tmp / "out")


def plant_torchaudio_cache(tmp, evil, corpus, teacher):
    from deepwide.models.loading import bundle_cache_path

    path = bundle_cache_path("HUBERT_BASE")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"feature_extractor.conv_layers.0.conv.weight": torch.zeros(1), "note": evil}, path)
    return path, _distill("torchaudio:HUBERT_BASE", corpus, tmp / "out")


PLACES = {
    "teacher-pretrain-resume": plant_pretrain_resume,
    "teacher-export": plant_export,
    "distill-resume": plant_distill_resume,
    "model-dir-weights": plant_model_dir,
    "hf-pytorch_model.bin": plant_hf_bin,
    "fairseq-pt": plant_fairseq,
    "torchaudio-cache": plant_torchaudio_cache,
}


@pytest.mark.parametrize("place", sorted(PLACES))
def test_planted_pickle_never_runs_and_is_one_line(place, tmp_path, monkeypatch, corpus_dir, teacher_dir) -> None:
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    monkeypatch.setenv("DEEPWIDE_OFFLINE", "1")
    marker = tmp_path / "pwned"
    planted, args = PLACES[place](tmp_path, Payload(marker), corpus_dir, teacher_dir)

    res = CliRunner().invoke(cli, ["-q", *args])
    assert not marker.exists(), f"{place}: the planted pickle ran"
    assert res.exit_code == ModelError.exit_code and isinstance(res.exception, SystemExit), res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.output
    assert str(planted) in lines[0] and "Traceback" not in res.output
    assert "weights_only" not in res.output and "trust the source" not in res.output  # torch's unsafe advice

    # the planted file is live: read unsafely, it does run its code
    torch.load(planted, weights_only=False)
    assert marker.exists()


def test_refusal_names_the_global_and_drops_torchs_unsafe_advice(tmp_path) -> None:
    marker = tmp_path / "pwned"
    torch.save({"x": Payload(marker)}, tmp_path / "evil.pt")
    with pytest.raises(UnsafeFileError) as info:
        load_torch_file(tmp_path / "evil.pt", hint="do this instead")
    message = str(info.value)
    assert "posix.system" in message and message.endswith("do this instead")
    assert "\n" not in message and "weights_only" not in message and "trust the source" not in message
    assert not marker.exists()
    with pytest.raises(CorruptFileError, match="truncated or not a torch file") as info:
        (tmp_path / "cut.pt").write_bytes((tmp_path / "evil.pt").read_bytes()[:50])
        load_torch_file(tmp_path / "cut.pt", hint="h")
    assert "\n" not in str(info.value)
