"""Running batches: in this process, or in forked single-threaded CPU replicas of the model.

On a CPU, one process whose OpenMP threads split every small op of a speech encoder wastes much
of its time synchronising (and far more when the machine is shared). ``jobs`` forked processes,
each running the model on one thread, keep every core busy on whole batches instead: each job
decodes its batch, runs it and sends back what the store keeps; this process reorders the
results and writes them. The model is inherited through ``fork`` (copy-on-write, nothing is
pickled), as PyTorch's DataLoader workers do, and each job sets ``torch.set_num_threads(1)``
before touching a tensor. Every job runs a batch the same way, so which job ran it does not
change a bit of the result.

With ``jobs = 0`` on a CPU the model runs in this process, also on one thread, so a store's
numbers never depend on ``--jobs`` (more threads split sums differently and move float16
values by a step), and a resume with another ``--jobs`` writes the same values. On an
accelerator the model runs in this process (``jobs = 0``) and audio is decoded ahead by
``--workers`` processes.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing as mp
import os
import queue
import signal
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from deepwide.extract.loading import BatchRequest, load_batch
from deepwide.system import usable_cpus

log = logging.getLogger(__name__)

#: what a job or the in-process loop yields per batch: (batch index, hidden or None, pooled)
BatchOutput = tuple[int, "np.ndarray | None", np.ndarray]


@dataclass(frozen=True)
class BatchTask:
    """One batch to run: its audio and what to keep of it."""

    request: BatchRequest
    expected_frames: np.ndarray  # (B,) int64
    positions: list[np.ndarray] | None  # stored frame positions per utterance


def default_jobs(device: str) -> int:
    """Forked compute jobs when ``--jobs`` is not given: one per usable core (at most 4) on a
    CPU, none on an accelerator."""
    if not device.startswith("cpu"):
        return 0
    return max(1, min(4, usable_cpus()))


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when its parent dies (no orphans after a kill -9)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _job_main(
    run_batch: Callable[[BatchTask], tuple[np.ndarray | None, np.ndarray]],
    tasks: Any,
    results: Any,
    parent: int,
) -> None:
    """Body of a forked job: take tasks until ``None``, send ``(index, hidden, pooled)`` or
    ``(index, exception, None)`` back."""
    _die_with_parent()
    import torch

    torch.set_num_threads(1)
    while True:
        try:
            task = tasks.get(timeout=1.0)
        except queue.Empty:
            if os.getppid() != parent:
                return
            continue
        if task is None:
            return
        try:
            hidden, pooled = run_batch(task)
            results.put((task.request.index, hidden, pooled))
        except BaseException as exc:  # handed to the parent, which raises it
            results.put((task.request.index, exc, None))


class ForkedJobs:
    """``jobs`` forked processes running batches; :meth:`run` yields outputs in task order.

    Args:
        run_batch: ``task -> (hidden or None, pooled)``; it closes over the model, which the
            jobs inherit by ``fork``.
        jobs: number of processes (>= 1).
    """

    def __init__(self, run_batch: Callable[[BatchTask], tuple[np.ndarray | None, np.ndarray]], jobs: int) -> None:
        ctx = mp.get_context("fork")
        self.tasks = ctx.Queue()
        self.results = ctx.Queue()
        self.procs = [
            ctx.Process(
                target=_job_main, args=(run_batch, self.tasks, self.results, os.getpid()),
                name=f"deepwide-job-{i}", daemon=True,
            )
            for i in range(jobs)
        ]
        for p in self.procs:
            p.start()
        log.debug("started %d compute jobs (pids %s)", jobs, [p.pid for p in self.procs])

    def run(self, tasks: Iterable[BatchTask]) -> Iterator[BatchOutput]:
        """Run ``tasks`` (keeping two per job in flight) and yield their outputs in order.

        Raises:
            The exception a job raised for the first failing batch (e.g. ``AudioError``), or
            ``RuntimeError`` when a job died.
        """
        it = iter(tasks)
        order: list[int] = []
        done: dict[int, tuple[np.ndarray | None, np.ndarray]] = {}
        window = 2 * len(self.procs)
        exhausted = False
        while True:
            while not exhausted and len(order) < window:
                task = next(it, None)
                if task is None:
                    exhausted = True
                    break
                order.append(task.request.index)
                self.tasks.put(task)
            if not order:
                return
            while order[0] not in done:
                index, hidden, pooled = self._get()
                if isinstance(hidden, BaseException):
                    raise hidden
                done[index] = (hidden, pooled)
            index = order.pop(0)
            hidden, pooled = done.pop(index)
            yield index, hidden, pooled

    def _get(self) -> tuple[int, Any, Any]:
        while True:
            try:
                return self.results.get(timeout=1.0)
            except queue.Empty:
                dead = [p for p in self.procs if not p.is_alive()]
                if dead:
                    raise RuntimeError(
                        f"compute job {dead[0].name} died (exit code {dead[0].exitcode}); "
                        f"out of memory? rerun with fewer --jobs or a smaller --batch-seconds"
                    ) from None

    def close(self) -> None:
        """Stop the jobs (killing any that do not stop within a few seconds)."""
        for _ in self.procs:
            with contextlib.suppress(Exception):
                self.tasks.put(None)
        for p in self.procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join()
        for q in (self.tasks, self.results):
            q.cancel_join_thread()
            q.close()

    def terminate(self) -> None:
        """Kill the jobs now (after an error)."""
        for p in self.procs:
            if p.is_alive():
                p.kill()
        for p in self.procs:
            p.join()
        for q in (self.tasks, self.results):
            q.cancel_join_thread()
            q.close()

    def __enter__(self) -> ForkedJobs:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.terminate()


def run_batch_task(
    task: BatchTask,
    compute: Callable[[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray] | None], tuple[np.ndarray | None, np.ndarray]],
) -> tuple[np.ndarray | None, np.ndarray]:
    """Decode ``task``'s audio and run it through ``compute(wavs, lengths, expected, positions)``."""
    _, wavs, lengths = load_batch(task.request)
    return compute(wavs, lengths, task.expected_frames, task.positions)
