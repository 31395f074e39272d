"""Writing a shard: a background thread that appends batch outputs to the store in order.

Batches of a shard are contiguous in the store, so the writer only ever appends. It buffers
rows until whole chunks are complete and writes those unlocked (nobody else owns any row of
them); only the first chunk of a (resumed) run and the last chunk of a shard can be shared
with a neighbouring shard, and those partial writes run under the store's chunk lock. After
each write it records in the shard's progress file the batches whose every row is on disk;
a run killed at any moment resumes from there and recomputes the same batches. A store on an
fsspec URL has no bookkeeping: its one writer writes without locks or progress files.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from deepwide.extract.faults import fault_point
from deepwide.extract.plan import ExtractPlan
from deepwide.store import bookkeeping_dir
from deepwide.store_writer import write_region, write_shard_state

log = logging.getLogger(__name__)


class SequentialWriter:
    """Appends blocks along axis 1 of a ``(layer, n, D)`` zarr array, whole chunks at a time.

    Args:
        array: the zarr array.
        start: row where the first appended block goes.
        lock: chunk-lock file used for partial-chunk writes (None: no other writer).
    """

    def __init__(self, array: zarr.Array, start: int, lock: Path | None) -> None:
        self.array = array
        self.chunk = int(array.chunks[1])
        self.written = int(start)  # rows before this are on disk
        self.lock = lock
        self._buf: list[np.ndarray] = []
        self._rows = 0

    @property
    def end(self) -> int:
        """Row after the last appended one."""
        return self.written + self._rows

    def append(self, block: np.ndarray) -> bool:
        """Buffer ``block`` (layers, n, D); write every chunk it completes. Returns whether it wrote."""
        if block.shape[1] == 0:
            return False
        self._buf.append(block)
        self._rows += block.shape[1]
        upto = (self.end // self.chunk) * self.chunk
        if upto > self.written:
            self._write(upto)
            return True
        return False

    def close(self) -> bool:
        """Write what is buffered (a partial last chunk). Returns whether it wrote."""
        if self._rows:
            self._write(self.end)
            return True
        return False

    def _write(self, upto: int) -> None:
        data = self._buf[0] if len(self._buf) == 1 else np.concatenate(self._buf, axis=1)
        n = upto - self.written
        write_region(self.array, self.written, data[:, :n], lock=self.lock)
        rest = data[:, n:]
        self._buf = [rest] if rest.shape[1] else []
        self._rows = rest.shape[1]
        self.written = upto


_STOP = object()


class ShardWriter:
    """Writes the batches ``[start, stop)`` of shard ``shard`` from a background thread.

    Args:
        store: the store.
        plan: its plan.
        shard: shard index.
        start: first batch to write (the shard's first, or the resume point).
        stop: one past the shard's last batch.
        hidden: the ``hidden`` array (None without frames).
        pooled: the ``pooled`` array.
        depth: batches queued before :meth:`submit` blocks.
        bookkeeping: take the store's chunk lock and record progress in its shard file;
            ``False`` for the only writer of a store without bookkeeping (an fsspec URL).
    """

    def __init__(
        self,
        store: str | Path,
        plan: ExtractPlan,
        shard: int,
        start: int,
        stop: int,
        hidden: zarr.Array | None,
        pooled: zarr.Array,
        depth: int = 2,
        *,
        bookkeeping: bool = True,
    ) -> None:
        self.store = store
        self.plan = plan
        self.shard = shard
        self.next_batch = start
        self.durable = start
        self.stop = stop
        self.bookkeeping = bookkeeping
        lock = bookkeeping_dir(store) / "chunks.lock" if bookkeeping else None
        first_utt = int(plan.batch_starts[start])
        self.frames = (
            SequentialWriter(hidden, int(plan.frame_offset[first_utt]) if first_utt < len(plan.utts) else 0, lock)
            if hidden is not None
            else None
        )
        self.utts = SequentialWriter(pooled, first_utt, lock)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"deepwide-writer-{shard}", daemon=True)
        self.busy_s = 0.0
        self._thread.start()

    # -- main thread ------------------------------------------------------------------------
    def submit(self, batch: int, hidden: np.ndarray | None, pooled: np.ndarray) -> None:
        """Queue the outputs of ``batch`` (must be the next one): hidden (layers, rows, D), pooled (layers, B, D)."""
        if batch != self.next_batch:
            raise RuntimeError(f"batch {batch} submitted out of order (expected {self.next_batch})")
        self.next_batch += 1
        self._put((batch, hidden, pooled))

    def close(self) -> None:
        """Write the last partial chunks, mark the shard done and stop the thread."""
        self._put(_STOP)
        self._thread.join()
        self._raise()

    def abort(self) -> None:
        """Stop the thread without marking anything (after an error in the main thread)."""
        if self._thread.is_alive():
            try:
                self._queue.put(None, timeout=60)
            except queue.Full:
                pass
            self._thread.join(timeout=60)

    def _put(self, item: Any) -> None:
        while True:
            self._raise()
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                if not self._thread.is_alive():
                    self._raise()
                    raise RuntimeError("the writer thread stopped unexpectedly") from None

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    # -- writer thread ----------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                t0 = time.perf_counter()
                if item is _STOP:
                    if self.frames is not None:
                        self.frames.close()
                    self.utts.close()
                    self._record(done=True)
                    self.busy_s += time.perf_counter() - t0
                    return
                _, hidden, pooled = item
                wrote = False
                if self.frames is not None and hidden is not None:
                    wrote |= self.frames.append(hidden)
                wrote |= self.utts.append(pooled)
                if wrote:
                    fault_point("flush")
                    self._record(done=False)
                    fault_point("journal")
                self.busy_s += time.perf_counter() - t0
        except BaseException as exc:  # handed to the main thread by submit/close
            self._error = exc
            # drain so that a blocked submit() wakes up and sees the error
            while True:
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break

    def _record(self, *, done: bool) -> None:
        """Advance the durable batch mark as far as the written rows allow and save it."""
        plan = self.plan
        b = self.durable
        while b < self.stop:
            u_end = int(plan.batch_starts[b + 1])
            f_end = int(plan.frame_offset[u_end - 1] + plan.n_stored[u_end - 1])
            if u_end > self.utts.written or (self.frames is not None and f_end > self.frames.written):
                break
            b += 1
        if done and b != self.stop:
            raise RuntimeError(f"shard {self.shard} closed at batch {b}, expected {self.stop}")
        if b == self.durable and not done:
            return
        self.durable = b
        if self.bookkeeping:
            write_shard_state(self.store, self.shard, {"next_batch": b, "done": done, "shard": self.shard})
