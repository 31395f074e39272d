"""Putting weights into an encoder: the state-dict helpers every checkpoint reader shares.

:func:`load_state_into` loads strictly and names mismatched keys and shapes in one line;
:func:`rename_weight_norm` maps the weight-norm names of older torch versions (and of fairseq
and Hugging Face files) to today's; :func:`place` moves a loaded model to its device, in eval
mode. The deepwide, torchaudio-bundle, Hugging Face and fairseq readers all use these, and this
module imports none of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from deepwide.errors import ModelError

if TYPE_CHECKING:
    from torch import nn

    from deepwide.models.encoder import Encoder

M = TypeVar("M", bound="nn.Module")

_MAX_LISTED = 6


def load_state_into(model: Encoder, state: Mapping[str, Any], *, source: str) -> None:
    """Load ``state`` into ``model`` strictly; a mismatch raises one line naming the keys.

    Args:
        model: the encoder to fill.
        state: tensors by :class:`~deepwide.models.encoder.Encoder` state-dict name.
        source: the file or folder the tensors came from (named in the error).

    Raises:
        ModelError: missing or unexpected keys, or tensors of the wrong shape.
    """
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [
        f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
        for k in sorted(set(expected) & set(state))
        if tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
            if items:
                more = f" (+{len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else ""
                parts.append(f"{label}: {', '.join(items[:_MAX_LISTED])}{more}")
        raise ModelError(
            f"{source} does not fit the {model.config.describe()} architecture — {'; '.join(parts)}; "
            f"check that the checkpoint and its config belong together"
        )
    model.load_state_dict(dict(state), strict=True)


def rename_weight_norm(state: Mapping[str, Any]) -> dict[str, Any]:
    """Map legacy ``weight_g`` / ``weight_v`` keys to ``parametrizations.weight.original0/1``."""
    out = {}
    for key, value in state.items():
        if key.endswith(".weight_g"):
            key = key[: -len("weight_g")] + "parametrizations.weight.original0"
        elif key.endswith(".weight_v"):
            key = key[: -len("weight_v")] + "parametrizations.weight.original1"
        out[key] = value
    return out


def place(model: M, device: str) -> M:
    """``model`` on ``device`` (read by :func:`deepwide.devices.resolve_device`), in eval mode.

    Raises:
        ConfigError: ``device`` is not a torch device, or not one this machine has.
    """
    from deepwide.devices import resolve_device

    return model.to(resolve_device(device)).eval()
