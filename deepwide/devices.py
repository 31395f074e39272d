"""Which torch device a command runs on: the one reading of ``--device``."""

from __future__ import annotations

import torch

from deepwide.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """The torch device ``--device name`` asks for.

    ``"auto"`` is CUDA when a CUDA device is available, else the CPU; any other name is
    parsed by torch (``"cpu"``, ``"cuda"``, ``"cuda:N"`` …). A plain ``"cuda"`` keeps no
    index (torch's current device; under ``torchrun`` the caller picks ``LOCAL_RANK``).

    Args:
        name: the ``--device`` value.

    Returns:
        The device (``torch.device("cuda")`` for ``"auto"`` with CUDA present).

    Raises:
        ConfigError: ``name`` is not a torch device, or it is a CUDA device and CUDA is not
            available here or has no device of that index (one line saying what to use instead).
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"--device {name!r} is not a torch device; use auto, cpu, cuda or cuda:N") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name} was asked for but no CUDA device is available; use --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(
            f"--device {name} was asked for but this machine has {torch.cuda.device_count()} CUDA device(s); "
            f"use cuda:0 … cuda:{torch.cuda.device_count() - 1}"
        )
    return device
