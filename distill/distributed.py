"""Where a training process sits when ``torchrun`` launches several (DDP), and the collectives.

One process (no ``torchrun``, or ``WORLD_SIZE=1``) needs no process group: every collective
here is then the identity, so the trainer reads the same either way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from deepwide.devices import resolve_device


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits: rank, world size, device, and whether we set up the group."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str = "auto") -> DistEnv:
    """Read ``torchrun``'s env vars (RANK, WORLD_SIZE, LOCAL_RANK) and join the process group.

    NCCL on CUDA, gloo on CPU. Without those variables (or with WORLD_SIZE=1) this is one
    process and no group is created. ``device`` is read by :func:`deepwide.devices.resolve_device`;
    a plain ``"cuda"`` (or ``"auto"`` with CUDA) becomes ``cuda:LOCAL_RANK``.

    Raises:
        ConfigError: ``device`` is not a torch device, or CUDA is asked for and not available.
    """
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    if dev.type == "cuda":
        if dev.index is None:  # plain "cuda" (or "auto"): this process's GPU
            dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    owns = False
    if world > 1 and not (dist.is_available() and dist.is_initialized()):
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
        owns = True
    if world > 1:
        rank, world = dist.get_rank(), dist.get_world_size()
    return DistEnv(rank=rank, world_size=world, local_rank=local_rank, device=dev, owns_group=owns)


def teardown_distributed(env: DistEnv) -> None:
    """Leave the process group if :func:`setup_distributed` created it."""
    if env.owns_group:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def all_reduce_mean(x: Tensor, env: DistEnv) -> Tensor:
    """Mean of ``x`` over all processes (``x`` itself on one)."""
    if env.world_size == 1:
        return x
    import torch.distributed as dist

    y = x.detach().clone()
    dist.all_reduce(y, op=dist.ReduceOp.SUM)
    return y / env.world_size


def all_reduce_sum(x: Tensor, env: DistEnv) -> Tensor:
    """Sum of ``x`` over all processes (``x`` itself on one)."""
    if env.world_size == 1:
        return x
    import torch.distributed as dist

    y = x.detach().clone()
    dist.all_reduce(y, op=dist.ReduceOp.SUM)
    return y


def gather_objects(obj: Any, env: DistEnv) -> list[Any]:
    """``obj`` of every process, in rank order (``[obj]`` on one)."""
    if env.world_size == 1:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * env.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(env: DistEnv) -> None:
    """Wait for every process (nothing on one)."""
    if env.world_size > 1:
        import torch.distributed as dist

        dist.barrier()
