"""The one file lock (:func:`deepwide.locks.file_lock`) and :func:`deepwide.locks.pid_alive`."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from deepwide.locks import file_lock, pid_alive


def test_a_free_lock_is_taken_at_once_and_logs_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    lock = tmp_path / "sub" / "x.lock"
    with caplog.at_level(logging.INFO), file_lock(lock, waiting_message="waiting for x"):
        assert lock.is_file()  # the folder and the file are created
    assert "waiting for x" not in caplog.text
    with file_lock(lock):  # released: taken again
        pass


def test_a_held_lock_logs_the_message_then_waits_for_the_holder(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    lock = tmp_path / "x.lock"
    order: list[str] = []
    with caplog.at_level(logging.INFO, logger="deepwide.locks"):
        with file_lock(lock):
            def second() -> None:
                with file_lock(lock, waiting_message="waiting for another process that holds x"):
                    order.append("second")

            t = threading.Thread(target=second)
            t.start()
            deadline = time.monotonic() + 10
            while "waiting for another process" not in caplog.text and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.05)
            order.append("first")
        t.join(timeout=10)
    assert order == ["first", "second"]
    assert caplog.text.count("waiting for another process that holds x") == 1


def test_pid_alive() -> None:
    assert pid_alive(os.getpid())
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    assert not pid_alive(int(done.stdout))  # exited and reaped
