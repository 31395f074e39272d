"""The solver and the whole probe on CUDA agree with the CPU (skipped without a GPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deepwide.probing.run import ProbeConfig, probe_stores
from deepwide.probing.solver import fit_softmax_path, standardise

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_solver_cuda_matches_cpu() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 2000)
    x = (rng.normal(size=(3, 2000, 32)) + rng.normal(size=(5, 32))[y] * np.array([0.2, 0.5, 1.0])[:, None, None])
    xt = torch.from_numpy(x.astype(np.float32))
    standardise(xt)
    grid = [1e-1, 1e-2, 1e-3]
    cpu = fit_softmax_path(xt, torch.from_numpy(y), 5, grid, tol=1e-5)
    gpu = fit_softmax_path(xt.cuda(), torch.from_numpy(y).cuda(), 5, grid, tol=1e-5)
    p_cpu = torch.softmax(cpu.logits(xt), 2).numpy()
    p_gpu = torch.softmax(gpu.logits(xt.cuda()), 2).cpu().numpy()
    np.testing.assert_allclose(p_gpu, p_cpu, atol=2e-3)


def test_probe_on_cuda(fake_ds) -> None:
    cfg = dict(n_boot=50, ws_steps=100)
    cpu = probe_stores([fake_ds], ["phone", "sid"], ProbeConfig(device="cpu", **cfg))
    gpu = probe_stores([fake_ds], ["phone", "sid"], ProbeConfig(device="cuda", **cfg))
    np.testing.assert_allclose(gpu["score"].values, cpu["score"].values, atol=0.02)
