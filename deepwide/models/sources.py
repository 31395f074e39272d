"""Where a model comes from: one registry entry per form of ``--model`` spec.

Each :class:`ModelSource` knows how to recognise its specs, the architecture a spec names
(:attr:`ModelSource.config`, no weights loaded) and how to load it (:attr:`ModelSource.load`).
:func:`deepwide.models.loading.resolve_config` and :func:`deepwide.models.loading.load_model`
both dispatch through :func:`find_source`, so the two cannot disagree on what a spec is.

The forms, in the order a spec is tried:

* ``preset`` — a name from :data:`deepwide.models.presets.PRESETS`, randomly initialised with
  the seed (model id ``random:<name>``);
* ``bundled`` — a checkpoint shipped with deepwide (:data:`deepwide.models.zoo.ZOO`);
* ``features`` — ``mfcc`` / ``mfcc-context``, hand-crafted baselines with one "layer" and no
  architecture (:mod:`deepwide.models.features`);
* ``torchaudio`` — ``torchaudio:NAME``, a torchaudio bundle (:mod:`deepwide.models.bundles`);
* ``random`` — ``random:SPEC``, the architecture of any other spec randomly initialised with
  the seed; the twin of a deepwide checkpoint is named ``random:<its model id>`` so that it
  pairs with the model it is the twin of, other twins ``random:<SPEC>``;
* ``deepwide`` — a deepwide checkpoint folder (:mod:`deepwide.models.checkpoint`);
* ``huggingface`` — a Hugging Face model folder (:mod:`deepwide.models.hf`);
* ``fairseq`` — a fairseq ``.pt`` file (:mod:`deepwide.models.fairseq`).

Names and prefixes are tried before paths, so a folder named like a preset is not taken for
it; no two names or prefixes overlap (``tests/models/test_sources.py``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from deepwide.errors import ModelError, UnknownNameError
from deepwide.models.bundles import TORCHAUDIO_PREFIX
from deepwide.models.checkpoint import (
    CHECKPOINT_FORMAT,
    CONFIG_FILE,
    WEIGHTS_FILE,
    is_deepwide_checkpoint,
    read_checkpoint_info,
    read_config_json,
    stored_model_id,
)
from deepwide.models.features import FEATURE_MODELS
from deepwide.models.presets import PRESETS
from deepwide.models.zoo import ZOO
from deepwide.registry import Registry

if TYPE_CHECKING:
    from deepwide.models.base import SpeechEncoder
    from deepwide.models.config import EncoderConfig

log = logging.getLogger(__name__)

RANDOM_PREFIX = "random:"

#: Suffixes that make a spec a path even when nothing exists there (it is then "not found").
PATH_SUFFIXES = frozenset({".pt", ".pth", ".json", ".safetensors", ".bin"})


@dataclass(frozen=True)
class ModelSource:
    """One form of model spec.

    Attributes:
        name: the registry name (``preset``, ``torchaudio``, ``deepwide`` …).
        form: how the unknown-spec message names it (``a preset (3l-one, …)``); a callable
            because the names it lists can change (tests register checkpoints).
        recognises: ``spec -> bool``: the spec is of this form (cheap; reads at most a
            ``config.json``; never imports torch for a name).
        config: ``spec -> EncoderConfig`` without loading weights.
        load: ``(spec, seed) -> SpeechEncoder`` on the CPU (the seed only matters for random
            initialisations).
        twin_id: ``spec -> model id`` of the ``random:`` twin of ``spec``; ``None``: the twin is
            called ``random:<spec>``.
        is_path: a path form (tried after every name and prefix).
    """

    name: str
    form: Callable[[], str]
    recognises: Callable[[str], bool]
    config: Callable[[str], EncoderConfig]
    load: Callable[[str, int], SpeechEncoder]
    twin_id: Callable[[str], str] | None = None
    is_path: bool = False


SOURCES: Registry[ModelSource] = Registry("model source")
_ORDER: list[str] = []


def _register(source: ModelSource) -> None:
    SOURCES.add(source.name, source)
    _ORDER.append(source.name)


def sources() -> list[ModelSource]:
    """Every source, in the order a spec is tried (names and prefixes first, then paths)."""
    return [SOURCES.get(name) for name in _ORDER]


def find_source(spec: str) -> ModelSource:
    """The source of ``spec`` (stripped).

    Raises:
        UnknownNameError: no source recognises it and it is not a path (the message lists the
            valid forms).
        ModelError: a path that does not exist, or that is not a model (broken ``config.json``
            named as such).
    """
    for source in sources():
        if source.recognises(spec):
            return source
    raise _not_a_model(spec)


def _not_a_model(spec: str) -> Exception:
    path = Path(spec).expanduser()
    if not path.exists():
        if os.sep in spec or "/" in spec or path.suffix in PATH_SUFFIXES:
            return ModelError(f"model path {spec} does not exist; check the path")
        return unknown_spec(spec)
    config = path / CONFIG_FILE
    if config.is_file():
        read_config_json(config)  # broken JSON is named as such, not as "neither … nor …"
    return ModelError(
        f"folder {path} is neither a deepwide checkpoint ({CONFIG_FILE} with format "
        f"{CHECKPOINT_FORMAT!r} + {WEIGHTS_FILE}) nor a Hugging Face HubertModel/Wav2Vec2Model/"
        f"WavLMModel folder ({CONFIG_FILE} with model_type + weights)"
    )


def unknown_spec(spec: str) -> UnknownNameError:
    """The one-line error for a spec no source recognises, listing every valid form."""
    names = [s.form() for s in sources() if not s.is_path]
    paths = [s.form() for s in sources() if s.is_path]
    return UnknownNameError(
        f"unknown model {spec!r}; valid: {', '.join(names)}, "
        f"or the path of a {', '.join(paths[:-1])} or {paths[-1]}"
    )


# ---------------------------------------------------------------------------- names
def _build_random(config: EncoderConfig, seed: int, model_id: str) -> SpeechEncoder:
    from deepwide.models.encoder import build_encoder

    return build_encoder(config, seed=seed, model_id=model_id)


def _load_preset(spec: str, seed: int) -> SpeechEncoder:
    model_id = RANDOM_PREFIX + spec
    log.info("preset %s has no weights: random initialisation (seed %d), model id %s", spec, seed, model_id)
    return _build_random(PRESETS.get(spec), seed, model_id)


def _load_bundled(spec: str, seed: int) -> SpeechEncoder:
    from deepwide.models.checkpoint import load_checkpoint

    return load_checkpoint(ZOO.get(spec)(), model_id=spec)


def _feature_config(spec: str) -> EncoderConfig:
    raise ModelError(
        f"{spec} is a hand-crafted feature baseline (MFCC + Δ + ΔΔ), not an encoder: it has no "
        f"architecture, parameter count or random twin; give a preset, checkpoint or torchaudio:NAME"
    )


def _load_features(spec: str, seed: int) -> SpeechEncoder:
    from deepwide.models.features import load_feature_model

    return load_feature_model(spec)


def _bundle_config(spec: str) -> EncoderConfig:
    from deepwide.models.bundles import bundle_config

    return bundle_config(spec[len(TORCHAUDIO_PREFIX):])


def _load_bundle(spec: str, seed: int) -> SpeechEncoder:
    from deepwide.models.bundles import load_torchaudio_bundle

    return load_torchaudio_bundle(spec[len(TORCHAUDIO_PREFIX):])


def _twin_of(spec: str) -> tuple[str, ModelSource]:
    inner = spec[len(RANDOM_PREFIX):].strip()
    return inner, find_source(inner)


def _random_config(spec: str) -> EncoderConfig:
    inner, source = _twin_of(spec)
    return source.config(inner)


def _load_random(spec: str, seed: int) -> SpeechEncoder:
    inner, source = _twin_of(spec)
    config = source.config(inner)
    model_id = source.twin_id(inner) if source.twin_id is not None else spec
    log.info("%s: random initialisation (seed %d) of %s, model id %s", spec, seed, config.describe(), model_id)
    return _build_random(config, seed, model_id)


_register(ModelSource(
    name="preset", form=lambda: f"a preset ({', '.join(PRESETS.names())})",
    recognises=lambda spec: spec in PRESETS, config=PRESETS.get, load=_load_preset,
))
_register(ModelSource(
    name="bundled", form=lambda: f"a bundled checkpoint ({', '.join(ZOO.names())})",
    recognises=lambda spec: spec in ZOO,
    config=lambda spec: read_checkpoint_info(ZOO.get(spec)())["config"], load=_load_bundled,
))
_register(ModelSource(
    name="features", form=lambda: f"a feature baseline ({', '.join(sorted(FEATURE_MODELS))})",
    recognises=lambda spec: spec in FEATURE_MODELS, config=_feature_config, load=_load_features,
))
_register(ModelSource(
    name="torchaudio", form=lambda: f"{TORCHAUDIO_PREFIX}NAME (`deepwide models list`)",
    recognises=lambda spec: spec.startswith(TORCHAUDIO_PREFIX), config=_bundle_config, load=_load_bundle,
))
_register(ModelSource(
    name="random", form=lambda: f"{RANDOM_PREFIX}SPEC",
    recognises=lambda spec: spec.startswith(RANDOM_PREFIX), config=_random_config, load=_load_random,
))


# ---------------------------------------------------------------------------- paths
def _path(spec: str) -> Path:
    return Path(spec).expanduser()


def _checkpoint_twin_id(spec: str) -> str:
    folder = _path(spec)
    return RANDOM_PREFIX + stored_model_id(folder, read_checkpoint_info(folder))


def _load_deepwide(spec: str, seed: int) -> SpeechEncoder:
    from deepwide.models.checkpoint import load_checkpoint

    return load_checkpoint(_path(spec))


def _is_hf(spec: str) -> bool:
    from deepwide.models.hf import is_hf_dir

    return _path(spec).is_dir() and is_hf_dir(_path(spec))


def _hf_config(spec: str) -> EncoderConfig:
    from deepwide.models.hf import hf_config

    return hf_config(_path(spec))


def _load_hf(spec: str, seed: int) -> SpeechEncoder:
    from deepwide.models.hf import load_hf

    return load_hf(_path(spec))


def _fairseq_config(spec: str) -> EncoderConfig:
    from deepwide.models.fairseq import read_fairseq

    return read_fairseq(_path(spec))[0]


def _load_fairseq(spec: str, seed: int) -> SpeechEncoder:
    from deepwide.models.fairseq import load_fairseq

    return load_fairseq(_path(spec))


_register(ModelSource(
    name="deepwide", form=lambda: "deepwide checkpoint", is_path=True,
    recognises=lambda spec: _path(spec).is_dir() and is_deepwide_checkpoint(_path(spec)),
    config=lambda spec: read_checkpoint_info(_path(spec))["config"], load=_load_deepwide,
    twin_id=_checkpoint_twin_id,
))
_register(ModelSource(
    name="huggingface", form=lambda: "Hugging Face model folder", is_path=True,
    recognises=_is_hf, config=_hf_config, load=_load_hf,
))
_register(ModelSource(
    name="fairseq", form=lambda: "fairseq .pt", is_path=True,
    recognises=lambda spec: _path(spec).is_file(), config=_fairseq_config, load=_load_fairseq,
))
