"""The espeak-ng helper process talks JSON plus raw audio bytes, never pickle."""

from __future__ import annotations

import io
import os
import pickle
import struct
from pathlib import Path

import pytest

from deepwide.corpora.espeak import _encode, _read_msg


@pytest.mark.parametrize("message", [
    16000,
    ("hello there", "en-us+m3", 160, 50, 40, 7),
    "espeak-ng has no voice 'xx'",
    (b"\x01\x00\xff\x7f", (("h", 0, 2), ("@", 2, 4)), (("hello", 0, 4),)),
])
def test_messages_round_trip_with_their_types(message: object) -> None:
    assert _read_msg(io.BytesIO(_encode(message))) == message


def test_a_pickled_body_is_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):  # noqa: ANN204
            return (os.system, (f"touch {marker}",))

    body = pickle.dumps(Evil())
    with pytest.raises(ValueError):  # not JSON (JSONDecodeError or UnicodeDecodeError)
        _read_msg(io.BytesIO(struct.pack(">QQ", len(body), 0) + body))
    assert not marker.exists()
