"""A ctypes driver of libespeak-ng (shipped by ``espeakng_loader``) with sample-exact events.

espeak-ng keeps global state, so there is one engine per process (:func:`get_engine`);
parallel synthesis uses processes, never threads. The engine runs in synchronous mode with
phoneme events switched on: every phoneme and word event carries the exact sample index at
which it starts, which gives alignments without a forced aligner.

Facts used here (espeak-ng 1.52's ``speak_lib.h``):
``espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS=2, buflength, data_path, options)`` returns the
sample rate (22050 Hz); ``espeak_EVENT`` is ``(type, unique_identifier, text_position, length,
audio_position, sample, user_data, id)``; type 7 is a phoneme (label in ``id.string``), 1 a
word (``text_position`` is 1-based, ``length`` in characters), 0 ends the list;
``espeak_TextToPhonemes(&textptr, textmode, phonememode)`` returns one clause's phoneme names
and moves ``textptr`` on (NULL after the last), ``phonememode`` bits 8–23 being the separator.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import hashlib
import json
import logging
import multiprocessing.util
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deepwide.errors import CorpusError

log = logging.getLogger(__name__)

# espeak_AUDIO_OUTPUT / options / parameters / event types (speak_lib.h)
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM_RATE = 1
_PARAM_VOLUME = 2
_PARAM_PITCH = 3
_PARAM_RANGE = 4
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_EVENT_PHONEME = 7
#: phonememode of espeak_TextToPhonemes: ASCII phoneme names (bit 1 clear), separated by spaces
_PHONEME_NAMES_SPACED = ord(" ") << 8

#: espeak's accepted range of the rate parameter (words per minute).
RATE_RANGE = (80, 450)


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_Callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass(frozen=True)
class SynthOutput:
    """One synthesised utterance at espeak's own sample rate.

    Attributes:
        wav: int16 samples, shape (S,).
        sample_rate: espeak's rate (22050 Hz).
        phones: ``(espeak_label, start_sample, end_sample)`` in time order, covering
            ``[first phone, S)`` without gaps; pauses keep espeak's labels (``_``, ``_:`` …).
        words: ``(word, start_sample, end_sample)``; a word ends where its last phone ends.
    """

    wav: np.ndarray
    sample_rate: int
    phones: tuple[tuple[str, int, int], ...]
    words: tuple[tuple[str, int, int], ...]


_Segments = tuple[tuple[str, int, int], ...]
#: what one synthesis returns across the process boundary: (int16 bytes, phones, words) or an error
_Result = tuple[bytes, _Segments, _Segments] | str


class _Library:
    """libespeak-ng loaded and initialised in *this* process (global state: one per process)."""

    def __init__(self, voice_dir: Path) -> None:
        try:
            import espeakng_loader

            lib_path = espeakng_loader.get_library_path()
            data_path = espeakng_loader.get_data_path()
            lib = ctypes.CDLL(lib_path)
        except (ImportError, OSError, RuntimeError) as exc:
            raise CorpusError(
                f"cannot load libespeak-ng ({exc}); reinstall it with `pip install espeakng-loader`"
            ) from exc
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByFile.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p,
        ]
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, ctypes.c_int]
        options = _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_DONT_EXIT
        sr = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), options)
        if sr <= 0:
            raise CorpusError(f"espeak-ng failed to initialise with data {data_path}; reinstall espeakng-loader")
        self.lib = lib
        self.sample_rate = int(sr)
        self.voice_dir = voice_dir
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, int, int, int, str]] = []
        self._callback = _Callback(self._on_synth)  # keep a reference: ctypes does not
        lib.espeak_SetSynthCallback(self._callback)

    def _on_synth(self, wav, n, events) -> int:  # type: ignore[no-untyped-def]
        if n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            ev = events[i]
            if ev.type == _EVENT_PHONEME:
                label = bytes(ev.id.string).split(b"\0", 1)[0].decode("ascii", "replace")
                self._events.append((_EVENT_PHONEME, ev.sample, 0, 0, label))
            elif ev.type == _EVENT_WORD:
                self._events.append((_EVENT_WORD, ev.sample, ev.text_position, ev.length, ""))
            i += 1
        return 0

    def _set_voice(self, voice: str) -> bool:
        if voice.startswith("file:"):
            cwd = os.getcwd()
            try:
                os.chdir(self.voice_dir)
                return self.lib.espeak_SetVoiceByFile(voice[5:].encode()) == 0
            finally:
                os.chdir(cwd)
        return self.lib.espeak_SetVoiceByName(voice.encode()) == 0

    def speak(self, text: str, voice: str, rate: int, pitch: int, pitch_range: int, seed: int) -> _Result:
        """Synthesise here; returns ``(wav bytes, phones, words)`` or an error message."""
        if not self._set_voice(voice):
            if voice.startswith("file:"):
                return "espeak-ng rejected a voice definition; check its language and variant lines"
            return f"espeak-ng has no voice {voice!r}; use e.g. 'en-us' or 'en-us+m3'"
        for param, value in (
            (_PARAM_RATE, min(max(rate, RATE_RANGE[0]), RATE_RANGE[1])),
            (_PARAM_PITCH, min(max(pitch, 0), 100)),
            (_PARAM_RANGE, min(max(pitch_range, 0), 100)),
            (_PARAM_VOLUME, 100),
        ):
            self.lib.espeak_SetParameter(param, value, 0)
        self.lib.espeak_ng_SetRandSeed(seed & 0x7FFFFFFF)
        self._chunks, self._events = [], []
        data = text.encode("utf-8")
        buf = ctypes.create_string_buffer(data)
        status = self.lib.espeak_Synth(buf, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if status != 0:
            return f"espeak-ng failed (status {status}) on text {text[:40]!r}; check the text"
        wav = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        events, self._chunks, self._events = self._events, [], []
        phones, words = _segments(events, text, len(wav))
        return wav.astype(np.int16, copy=False).tobytes(), phones, words

    def phonemes(self, voice: str, texts: list[str]) -> list[str] | str:
        """espeak's phoneme names of each text (see :meth:`EspeakEngine.phonemes`), or an error message."""
        if not self._set_voice(voice):
            return f"espeak-ng has no voice {voice!r}; use e.g. 'en-us'"
        out = []
        for text in texts:
            buf = ctypes.create_string_buffer(text.encode("utf-8"))
            ptr = ctypes.c_char_p(ctypes.addressof(buf))
            parts: list[str] = []
            for _ in range(len(buf)):  # one clause a call; never more calls than bytes
                if not ptr.value:
                    break
                got = self.lib.espeak_TextToPhonemes(ctypes.byref(ptr), _CHARS_UTF8, _PHONEME_NAMES_SPACED)
                parts.append((got or b"").decode("ascii", "replace"))
            out.append(" ".join(" ".join(parts).split()))
        return out


# -- the zygote: a small process holding an engine that never speaks ---------------------------
def _encode(obj: Any) -> bytes:
    """A message between the zygote and its client as a JSON header plus raw audio bytes.

    Messages are the sample rate (int), a request (the arguments of :meth:`_Library.speak`),
    an error (str) or a result ``(wav bytes, phones, words)``; nothing is unpickled.
    """
    if isinstance(obj, tuple) and len(obj) == 3 and isinstance(obj[0], bytes):
        head, blob = {"result": [obj[1], obj[2]]}, obj[0]
    elif isinstance(obj, tuple):
        head, blob = {"request": list(obj)}, b""
    else:
        head, blob = {"value": obj}, b""
    text = json.dumps(head).encode()
    return struct.pack(">QQ", len(text), len(blob)) + text + blob


def _decode(text: bytes, blob: bytes) -> Any:
    head = json.loads(text)
    if "result" in head:
        phones, words = head["result"]
        return blob, tuple(tuple(seg) for seg in phones), tuple(tuple(seg) for seg in words)
    if "request" in head:
        return tuple(head["request"])
    return head["value"]


def _write_msg(fd: int, obj: Any) -> None:
    view = memoryview(_encode(obj))
    while view:
        view = view[os.write(fd, view) :]


def _read_exact(fh: Any, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = fh.read(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def _read_msg(fh: Any) -> Any:
    head = _read_exact(fh, 16)
    if head is None:
        return None
    n_text, n_blob = struct.unpack(">QQ", head)
    text, blob = _read_exact(fh, n_text), _read_exact(fh, n_blob)
    if text is None or blob is None:
        raise EOFError("truncated message")
    return _decode(text, blob)


def _zygote_main() -> None:
    """Entry point of the zygote process (``python -c``; argv[1] is the voice folder).

    It initialises espeak-ng once and never speaks; for each request (arguments of
    :meth:`_Library.speak`, or the two of :meth:`_Library.phonemes`, on stdin) it forks a
    child that answers it once from that pristine state, writes the result to stdout and exits. The zygote imports little, so a fork
    costs ~2 ms instead of ~9 ms from a process that has scipy loaded.
    """
    import sys

    library = _Library(Path(sys.argv[1]))
    # load the English dictionary and phoneme tables once (no speech: the hidden synthesis
    # state stays untouched); each child then starts from this same state
    library.lib.espeak_SetVoiceByName(b"en-us")
    out = sys.stdout.fileno()
    _write_msg(out, library.sample_rate)
    while True:
        args = _read_msg(sys.stdin.buffer)
        if args is None:
            break
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                _write_msg(out, library.phonemes(*args) if len(args) == 2 else library.speak(*args))
            except BaseException:  # noqa: B036 - the child must never return into the loop
                code = 1
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        if status != 0:
            _write_msg(out, f"espeak-ng child process failed (wait status {status}) on {args[0][:40]!r}")


class _Zygote:
    """Client side of :func:`_zygote_main`."""

    def __init__(self, voice_dir: Path) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from deepwide.corpora.espeak import _zygote_main; _zygote_main()",
             str(voice_dir)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
        )
        sr = _read_msg(self.proc.stdout)
        if not isinstance(sr, int):
            self.close()
            raise CorpusError("the espeak-ng helper process failed to start; run with -v for its error")
        self.sample_rate = sr

    def speak(self, args: tuple[str, str, int, int, int, int]) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        _write_msg(self.proc.stdin.fileno(), args)
        result = _read_msg(self.proc.stdout)
        if result is None:
            raise RuntimeError("the espeak-ng helper process exited unexpectedly")
        return result

    def close(self) -> None:
        """End the helper (closing its stdin ends its loop) and close both pipes."""
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()  # type: ignore[union-attr]
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


class EspeakEngine:
    """This process's handle on espeak-ng. Create it through :func:`get_engine`.

    espeak-ng carries hidden state from one message to the next (pitch-flutter phase and
    more), so the same call gives slightly different samples depending on what was spoken
    before — even after re-initialisation and with ``espeak_ng_SetRandSeed``. To make the
    output a function of the arguments alone, every call is spoken by a fresh fork of a small
    helper process (the *zygote*) whose engine has never spoken. Without ``os.fork`` the
    library runs in-process and is deterministic only for a fixed sequence of calls.

    Raises:
        CorpusError: the library or its data cannot be loaded (reinstall espeakng-loader).
    """

    def __init__(self) -> None:
        # voice definitions passed as text are written here under short names: espeak keeps
        # voice names in 40-byte buffers, so the file is loaded by a relative name
        self._voice_dir = Path(tempfile.mkdtemp(prefix="deepwide-espeak-"))
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._zygote: _Zygote | None = None
        self._library: _Library | None = None
        if hasattr(os, "fork"):
            self._zygote = _Zygote(self._voice_dir)
            self.sample_rate = self._zygote.sample_rate
        else:  # pragma: no cover - non-POSIX platforms
            self._library = _Library(self._voice_dir)
            self.sample_rate = self._library.sample_rate
        atexit.register(self.close)
        # multiprocessing workers leave through os._exit, which skips atexit
        multiprocessing.util.Finalize(self, _close_engine, args=(self._zygote, self._voice_dir, self._pid),
                                      exitpriority=10)

    def close(self) -> None:
        """Stop the helper process and remove the voice folder (idempotent)."""
        _close_engine(self._zygote, self._voice_dir, self._pid)

    def synthesize(
        self,
        text: str,
        *,
        voice: str = "en-us",
        rate: int = 175,
        pitch: int = 50,
        pitch_range: int = 50,
        seed: int = 0,
        voice_definition: str | None = None,
    ) -> SynthOutput:
        """Speak ``text`` and return the audio with its phone and word segments.

        The result depends only on the arguments, not on earlier calls (see the class notes).

        Args:
            text: ASCII/UTF-8 text.
            voice: espeak voice name, e.g. ``"en-us"`` or ``"en-us+m3"``.
            rate: words per minute, clipped to :data:`RATE_RANGE`.
            pitch: base pitch 0–100 (50 is the voice's default).
            pitch_range: pitch range 0–100 (0 is monotone).
            seed: seed of espeak's internal random generator.
            voice_definition: the text of an espeak voice file (language and variant lines,
                see :func:`voice_file_text`); when given it replaces ``voice``.

        Returns:
            A :class:`SynthOutput` (audio at ``self.sample_rate``).

        Raises:
            CorpusError: unknown voice name or a failed synthesis.
        """
        if os.getpid() != self._pid:
            raise RuntimeError("an EspeakEngine cannot be shared across processes; call get_engine()")
        if voice_definition is not None:
            voice = self._voice_file(voice_definition)
        args = (text, voice, int(rate), int(pitch), int(pitch_range), int(seed))
        with self._lock:
            if self._zygote is not None:
                result = self._zygote.speak(args)
            else:  # pragma: no cover - non-POSIX platforms
                assert self._library is not None
                result = self._library.speak(*args)
        if isinstance(result, str):
            raise CorpusError(result)
        wav_bytes, phones, words = result
        return SynthOutput(
            wav=np.frombuffer(wav_bytes, dtype=np.int16).copy(),
            sample_rate=self.sample_rate,
            phones=phones,
            words=words,
        )

    def phonemes(self, texts: list[str], *, voice: str = "en-us") -> list[str]:
        """espeak's phoneme names of each text, as its rules and dictionary pronounce it.

        One request for all ``texts`` (a fresh fork of the helper, as :meth:`synthesize`).

        Args:
            texts: words or sentences (UTF-8).
            voice: espeak voice name, e.g. ``"en-us"``.

        Returns:
            Per text, espeak's ASCII phoneme names separated by single spaces, a stress mark
            (``'`` primary, ``,`` secondary) leading the name it stresses, e.g. ``"h @ l 'oU"``
            for ``"hello"``; ``""`` when espeak pronounces nothing.

        Raises:
            CorpusError: unknown voice name, or the helper failed.
        """
        if os.getpid() != self._pid:
            raise RuntimeError("an EspeakEngine cannot be shared across processes; call get_engine()")
        args = (voice, [str(t) for t in texts])
        with self._lock:
            if self._zygote is not None:
                result = self._zygote.speak(args)  # type: ignore[arg-type]
            else:  # pragma: no cover - non-POSIX platforms
                assert self._library is not None
                result = self._library.phonemes(*args)
        if isinstance(result, str):
            raise CorpusError(result)
        return [str(r) for r in result]

    def _voice_file(self, definition: str) -> str:
        """Write ``definition`` once into the voice folder; returns its ``file:`` name."""
        name = "v" + hashlib.sha1(definition.encode()).hexdigest()[:16]
        path = self._voice_dir / name
        if not path.exists():
            tmp = self._voice_dir / f".{name}.{os.getpid()}"
            tmp.write_text(definition)
            os.replace(tmp, path)
        return f"file:{name}"


def _close_engine(zygote: _Zygote | None, voice_dir: Path, owner_pid: int) -> None:
    if os.getpid() != owner_pid:
        return
    if zygote is not None:
        zygote.close()
    shutil.rmtree(voice_dir, ignore_errors=True)


def _segments(
    events: list[tuple[int, int, int, int, str]], text: str, n_samples: int
) -> tuple[tuple[tuple[str, int, int], ...], tuple[tuple[str, int, int], ...]]:
    """Turn event lists into contiguous phone segments and word segments (in samples)."""
    raw_text = text.encode("utf-8")
    starts: list[tuple[str, int, int]] = []  # (label, start, word index or -1)
    # A word's text runs from its position to the next word's: espeak speaks some word pairs
    # as one unit ("of the") and reports a single word event for them.
    positions = [max(pos - 1, 0) for kind, _, pos, _, _ in events if kind == _EVENT_WORD]
    ends = [*positions[1:], len(raw_text)]
    word_names = [
        " ".join(raw_text[a:b].decode("utf-8", "replace").split()).strip(" ,.?!;:\"'").lower()
        for a, b in zip(positions, ends, strict=True)
    ]
    n_words, current = 0, -1
    for kind, sample, _pos, _length, label in events:
        if kind == _EVENT_WORD:
            current, n_words = n_words, n_words + 1
        else:
            is_pause = label.startswith("_")
            starts.append((label, min(max(sample, 0), n_samples), -1 if is_pause else current))
            if is_pause:
                current = -1
    phones: list[tuple[str, int, int]] = []
    owners: list[int] = []
    for i, (label, start, owner) in enumerate(starts):
        end = starts[i + 1][1] if i + 1 < len(starts) else n_samples
        if end > start:
            phones.append((label, start, end))
            owners.append(owner)
    spans: dict[int, list[int]] = {}
    for (_, start, end), owner in zip(phones, owners, strict=True):
        if owner >= 0:
            span = spans.setdefault(owner, [start, end])
            span[0], span[1] = min(span[0], start), max(span[1], end)
    words = tuple((word_names[w], s, e) for w, (s, e) in sorted(spans.items()) if word_names[w])
    return tuple(phones), words


def _data_path() -> Path:
    try:
        import espeakng_loader

        return Path(espeakng_loader.get_data_path())
    except (ImportError, RuntimeError) as exc:
        raise CorpusError(f"cannot find espeak-ng's data ({exc}); reinstall espeakng-loader") from exc


def language_file_text(language: str = "en-us") -> str:
    """Text of espeak's language voice file for ``language`` (e.g. ``lang/gmw/en-US``)."""
    root = _data_path() / "lang"
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.name.lower() == language.lower():
            return path.read_text()
    raise CorpusError(f"espeak-ng has no language {language!r}; use e.g. 'en-us'")


def variant_lines(variant: str) -> list[str]:
    """Lines of the voice variant ``voices/!v/<variant>`` without name/language/gender."""
    path = _data_path() / "voices" / "!v" / variant
    if not path.is_file():
        raise CorpusError(f"espeak-ng has no voice variant {variant!r}; use e.g. 'm3' or 'f2'")
    skip = ("name", "language", "gender", "//")
    return [ln.rstrip() for ln in path.read_text().splitlines() if ln.strip() and not ln.strip().startswith(skip)]


def voice_file_text(
    language: str,
    variant: str,
    formants: dict[int, tuple[float, float, float]] | None = None,
) -> str:
    """An espeak voice file: the language's lines, the variant's lines, and formant overrides.

    Args:
        language: e.g. ``"en-us"``.
        variant: e.g. ``"m3"`` (a file under ``voices/!v``).
        formants: ``{n: (freq_factor, height_factor, width_factor)}`` multiplying the
            variant's own ``formant n`` percentages (100 where the variant sets none).

    Returns:
        The file's text (later ``formant`` lines override earlier ones in espeak's parser).
    """
    lines = [language_file_text(language).rstrip(), *variant_lines(variant)]
    if formants:
        base: dict[int, list[int]] = {}
        for ln in lines[1:]:
            parts = ln.split()
            if parts and parts[0] == "formant" and len(parts) >= 5:
                base[int(parts[1])] = [int(v) for v in parts[2:]]
        for n, (f, h, w) in sorted(formants.items()):
            b = base.get(n, [100, 100, 100])
            extra = " ".join(str(v) for v in b[3:])
            vals = [max(1, int(round(b[0] * f))), max(1, int(round(b[1] * h))), max(1, int(round(b[2] * w)))]
            lines.append(f"formant {n} {vals[0]} {vals[1]} {vals[2]} {extra}".rstrip())
    return "\n".join(lines) + "\n"


_ENGINE: EspeakEngine | None = None


def get_engine() -> EspeakEngine:
    """The engine of this process, created on first use."""
    global _ENGINE
    if _ENGINE is None or _ENGINE._pid != os.getpid():
        _ENGINE = EspeakEngine()
    return _ENGINE
