"""DDP on the CPU: two gloo processes keep identical parameters while reading different batches."""

from __future__ import annotations

import math
import os
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from tests.distill.conftest import base_options


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, opts: dict, out: str, spy_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from deepwide.distill import data as data_mod
    from deepwide.distill import trainer as trainer_mod
    from deepwide.distill.config import make_config

    seen: list[int] = []
    real_getitem = data_mod.CropBatches.__getitem__

    def spy_getitem(self, g):
        if torch.is_grad_enabled():  # training batches, not the held-out ones (rank 0, no grad)
            seen.append(int(g))
        return real_getitem(self, g)

    real_save = trainer_mod.save_training_state

    def spy_save(out_dir, env, config, step, next_batch, model, *args, **kwargs):
        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        torch.save({"state": state, "seen": list(seen)}, Path(spy_dir) / f"rank{env.rank}-step{step}.pt")
        return real_save(out_dir, env, config, step, next_batch, model, *args, **kwargs)

    data_mod.CropBatches.__getitem__ = spy_getitem
    trainer_mod.save_training_state = spy_save
    trainer_mod.train_student(make_config(**opts), out, progress=False)


def test_two_gloo_processes_stay_identical(tmp_path, teacher_dir, corpus_dir) -> None:
    from deepwide.distill.metrics import read_heldout
    from deepwide.distill.trainer import read_metrics, read_result

    opts = base_options(teacher_dir, corpus_dir, steps=4, checkpoint_every=2, dropout=0.1, lr=3e-3)
    spy = tmp_path / "spy"
    spy.mkdir()
    mp.spawn(_worker, args=(2, _free_port(), opts, str(tmp_path / "run"), str(spy)), nprocs=2, join=True)

    result = read_result(tmp_path / "run")
    assert result is not None and result.steps == 4
    assert len(read_metrics(tmp_path / "run")) == 4  # rank 0 alone writes the log
    assert [m["step"] for m in read_heldout(tmp_path / "run")] == [1, 2, 3, 4]  # rank 0 alone evaluates
    assert math.isfinite(result.heldout_loss)
    for step in (2, 4):
        r0 = torch.load(spy / f"rank0-step{step}.pt", weights_only=True)
        r1 = torch.load(spy / f"rank1-step{step}.pt", weights_only=True)
        assert r0["state"].keys() == r1["state"].keys()
        for k in r0["state"]:
            assert torch.equal(r0["state"][k], r1["state"][k]), k
        # interleaved, disjoint batches: rank r reads 2·s + r
        assert r0["seen"] == list(range(0, 2 * step, 2)) and r1["seen"] == list(range(1, 2 * step, 2))
    first = torch.load(spy / "rank0-step2.pt", weights_only=True)["state"]
    last = torch.load(spy / "rank0-step4.pt", weights_only=True)["state"]
    assert any(not torch.equal(first[k], last[k]) for k in first)  # it trained
    # every checkpoint records both ranks' RNG states
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "step-00000004.pt", weights_only=True)
    assert len(ckpt["rng"]) == 2 and not torch.equal(ckpt["rng"][0]["torch"], ckpt["rng"][1]["torch"])
    assert ckpt["data"] == {"next_batch": 8, "world_size": 2}
    # the saved student is what every rank held at the end
    saved = load_file(str(tmp_path / "run" / "model.safetensors"))
    final = torch.load(spy / "rank1-step4.pt", weights_only=True)["state"]
    for k, v in saved.items():
        assert torch.equal(v, final[f"student.{k}"]), k
