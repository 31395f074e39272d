"""The registry of model sources: one dispatch for resolve_config and load_model, typed results."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from deepwide.errors import ModelError, UnknownNameError
from deepwide.models.base import SpeechEncoder
from deepwide.models.checkpoint import save_checkpoint
from deepwide.models.encoder import build_encoder
from deepwide.models.features import FEATURE_MODELS
from deepwide.models.loading import load_model, resolve_config
from deepwide.models.presets import PRESETS
from deepwide.models.sources import SOURCES, find_source, sources
from deepwide.models.zoo import ZOO
from tests.models.fairseq_layout import fairseq_parts
from tests.models.tiny import FRONTENDS, tiny_config

ROOT = Path(__file__).resolve().parents[2]

torch.set_num_threads(1)


@pytest.fixture()
def specs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """One spec of every kind, built in code: kind -> spec."""
    student = build_encoder(tiny_config(frontend=FRONTENDS["spectral"]), seed=3, model_id="student-2x64")
    ckpt = save_checkpoint(student, tmp_path / "run" / "student")
    monkeypatch.setitem(ZOO._items, "tiny-teacher", lambda: ckpt)
    state, model_cfg = fairseq_parts(build_encoder(tiny_config(), seed=4))
    fairseq = tmp_path / "hubert_tiny.pt"
    torch.save({"cfg": {"model": model_cfg, "task": {"normalize": False}}, "model": state}, fairseq)
    return {
        "preset": "distilhubert", "bundled": "tiny-teacher", "features": "mfcc",
        "random": f"random:{ckpt}", "deepwide": str(ckpt), "fairseq": str(fairseq),
    }


def test_every_kind_is_a_registered_source_tried_names_first() -> None:
    kinds = [s.name for s in sources()]
    assert set(kinds) == set(SOURCES.names()) == {
        "preset", "bundled", "features", "torchaudio", "random", "deepwide", "huggingface", "fairseq"}
    paths = [s.is_path for s in sources()]
    assert paths == sorted(paths), "every name and prefix is tried before any path"


def test_names_and_prefixes_do_not_overlap() -> None:
    """So the order names are tried in cannot change what a name means."""
    names = [*PRESETS.names(), *ZOO.names(), *FEATURE_MODELS, "random:x", "torchaudio:HUBERT_BASE"]
    for name in names:
        kinds = [s.name for s in sources() if not s.is_path and s.recognises(name)]
        assert len(kinds) == 1, (name, kinds)


def test_resolve_config_and_load_model_agree_on_every_kind(specs: dict[str, str]) -> None:
    for kind, spec in specs.items():
        assert find_source(spec).name == kind, spec
        model = load_model(spec, seed=0)
        assert isinstance(model, SpeechEncoder), kind
        if kind == "features":
            continue
        assert model.config == resolve_config(spec), kind


def test_hf_folder_is_its_own_kind(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    cfg = transformers.HubertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
                                    intermediate_size=64, conv_dim=(16,) * 7, num_conv_pos_embeddings=16,
                                    num_conv_pos_embedding_groups=4)
    transformers.HubertModel(cfg).save_pretrained(tmp_path / "hf")
    spec = str(tmp_path / "hf")
    assert find_source(spec).name == "huggingface"
    model = load_model(spec)
    assert isinstance(model, SpeechEncoder) and model.config == resolve_config(spec)
    assert load_model(f"random:{spec}").model_id == f"random:{spec}"  # only deepwide twins are renamed


def test_feature_baselines_are_known_to_both_chains() -> None:
    """resolve_config used to call mfcc an unknown model although load_model loads it."""
    for name in FEATURE_MODELS:
        with pytest.raises(ModelError, match="feature baseline") as info:
            resolve_config(name)
        assert not isinstance(info.value, UnknownNameError) and "\n" not in str(info.value)
        with pytest.raises(ModelError, match="feature baseline"):
            load_model(f"random:{name}")


def test_unknown_spec_lists_every_kind() -> None:
    with pytest.raises(UnknownNameError) as info:
        resolve_config("hubert-bse")
    message = str(info.value)
    for part in ("a preset (12l-half, 3l-one", "a bundled checkpoint (tiny-teacher, tiny-teacher-content)",
                 "a feature baseline (mfcc, mfcc-context)", "torchaudio:NAME", "random:SPEC",
                 "deepwide checkpoint", "Hugging Face model folder", "fairseq .pt"):
        assert part in message
    with pytest.raises(UnknownNameError) as again:
        load_model("hubert-bse")
    assert str(again.value) == message


@pytest.mark.parametrize("spec", ["tiny-teacher", "deepwide", "mfcc", "mfcc-context", "fairseq"])
def test_num_frames_is_the_frame_count_of_hidden_states(spec: str, specs: dict[str, str]) -> None:
    model = load_model(specs.get(spec, spec))
    lengths = [400, 719, 720, 1601, 4000, 5123]
    wavs = torch.randn(len(lengths), max(lengths), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        states, frames = model.hidden_states(wavs, torch.tensor(lengths))
    assert frames.tolist() == [model.num_frames(n) for n in lengths]
    assert states[0].shape[1] == max(frames.tolist())
    assert model.num_frames(399) == 0
    assert model.num_params() == sum(p.numel() for p in model.parameters())


def test_checkpoint_readers_do_not_import_the_spec_dispatch() -> None:
    """No import cycle: the readers sit below loading.py, which dispatches to them."""
    for name in ("hf", "fairseq", "checkpoint", "bundles", "weights", "sources", "torchaudio_private", "features"):
        tree = ast.parse((ROOT / "deepwide" / "models" / f"{name}.py").read_text(encoding="utf-8"))
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert "deepwide.models.loading" not in imported, name


def test_naming_a_preset_or_a_feature_baseline_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from deepwide.models.loading import resolve_config\n"
        "from deepwide.models.sources import find_source\n"
        "assert resolve_config('3l-one').depth == 3\n"
        "assert find_source('mfcc-context').name == 'features'\n"
        "assert 'torch' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
