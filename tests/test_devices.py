"""``--device`` has one reading: :func:`deepwide.devices.resolve_device`."""

from __future__ import annotations

import pytest
import torch

from deepwide.devices import resolve_device
from deepwide.errors import ConfigError


def test_cpu_and_auto_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cpu")


def test_auto_and_cuda_with_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("auto").index is None  # torchrun callers pick LOCAL_RANK
    assert resolve_device("cuda") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ConfigError, match="has 2 CUDA device"):
        resolve_device("cuda:2")


@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_without_cuda_is_a_one_line_config_error(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="no CUDA device is available; use --device cpu") as err:
        resolve_device(name)
    assert f"--device {name} " in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "", "Auto"])
def test_a_name_torch_cannot_parse_is_a_one_line_config_error(name: str) -> None:
    with pytest.raises(ConfigError, match="is not a torch device; use auto, cpu, cuda or cuda:N") as err:
        resolve_device(name)
    assert repr(name) in str(err.value) and "\n" not in str(err.value)
