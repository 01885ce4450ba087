"""PortAudio, made safe to start in a daemon: probed in a child first, its native chatter routed to logging.

Two things PortAudio does that a daemon cannot afford, measured with Debian's libportaudio2 19.6.0:

* With no ALSA PCM defined at all (an ``asound.conf`` without ``pcm.default``, ``ALSA_CONFIG_PATH`` pointing at a
  missing or empty file), ``Pa_Initialize`` fails a C assertion (``pa_linux_alsa.c:1454: BuildDeviceList: Assertion
  'devIdx < numDeviceNames' failed``) and SIGABRTs the whole process: the SIP engine and the relay with it. A C
  assertion cannot be caught, so :func:`probe` initializes PortAudio once in a short-lived child (about 70 ms on x86)
  and the daemon's own process only initializes it after a child has survived doing so. A child that hangs counts as
  a failure too (:data:`PROBE_TIMEOUT_S`).
* While it enumerates devices, PortAudio's JACK host API and ALSA's plugins print to fd 2 ("jack server is not
  running or cannot be started", "ALSA lib pcm.c:2666:(snd_pcm_open_noupdate) Unknown PCM cards.pcm.rear", dozens of
  lines on a stock Pi), whatever the daemon's log level. :func:`initialize` installs the libraries' own message hooks
  (``jack_set_error_function``, ALSA's thread-local ``snd_lib_error_set_local``) so those lines go to ``logging`` at
  DEBUG instead. Nothing touches fd 2: a redirect would also swallow what other threads (the SIP engine, logging
  itself) write meanwhile. ``JACK_NO_START_SERVER`` keeps libjack from starting a JACK server on a Pi that has one
  installed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import Any, Literal

import pyaudio

from hw.errors import AudioError

__all__ = ["PROBE_TIMEOUT_S", "ProbeResult", "find_device", "initialize", "probe", "quiet_jack_environment"]

log = logging.getLogger(__name__)

# A Pi 3 imports pyaudio and enumerates ALSA in well under a second; far beyond that, the child is hanging.
PROBE_TIMEOUT_S = 15.0

Direction = Literal["output", "input"]

# Runs in the child: only pyaudio, so it works whatever the parent's import path is (``python -I``).
_PROBE_SCRIPT = """
import json, pyaudio
pa = pyaudio.PyAudio()
names = [
    [str(i["name"]), int(i["maxOutputChannels"]), int(i["maxInputChannels"])]
    for i in map(pa.get_device_info_by_index, range(pa.get_device_count()))
]
pa.terminate()
print(json.dumps({"devices": names}))
"""


@dataclass(frozen=True)
class ProbeResult:
    """Whether PortAudio can be initialized in this process's ALSA setup, and why not."""

    ok: bool
    detail: str


def quiet_jack_environment() -> None:
    """Keep libjack from trying to start a JACK server while PortAudio probes for one. Call it before any thread
    that might read the environment starts (setenv is not thread-safe); it only adds the variable if unset."""
    os.environ.setdefault("JACK_NO_START_SERVER", "1")


def probe(timeout: float = PROBE_TIMEOUT_S) -> ProbeResult:
    """Initialize PortAudio in a child process and report whether it survived. Blocking: call from a worker thread.

    The child's stderr (JACK and ALSA chatter, or the assertion that killed it) goes to this module's log at DEBUG;
    the last line of a dead child is in ``detail``.
    """
    try:
        child = subprocess.run(
            [sys.executable, "-I", "-c", _PROBE_SCRIPT],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
            env={**os.environ, "JACK_NO_START_SERVER": os.environ.get("JACK_NO_START_SERVER", "1")},
        )
    except subprocess.TimeoutExpired:
        return ProbeResult(False, f"PortAudio hung for {timeout:.0f} s listing the sound devices (ALSA setup?)")
    except OSError as exc:
        return ProbeResult(False, f"cannot start the PortAudio probe: {exc}")
    errors = child.stderr.decode(errors="replace").strip().splitlines()
    for line in errors:
        log.debug("portaudio probe: %s", line)
    if child.returncode != 0:
        how = (
            f"was killed by {signal.Signals(-child.returncode).name}"
            if child.returncode < 0
            else f"exited with status {child.returncode}"
        )
        last = errors[-1] if errors else "no message"
        return ProbeResult(False, f"PortAudio {how} while listing the sound devices ({last}): check the ALSA setup")
    try:
        devices = json.loads(child.stdout)["devices"]
    except (ValueError, KeyError, TypeError) as exc:
        return ProbeResult(False, f"PortAudio probe said something unexpected: {exc}")
    outputs = sum(1 for _, out, _ in devices if out > 0)
    return ProbeResult(True, f"PortAudio lists {len(devices)} device(s), {outputs} with outputs")


def initialize() -> Any:
    """A new ``pyaudio.PyAudio`` (``Pa_Initialize``), with JACK's and ALSA's messages routed to logging.

    Only call it after :func:`probe` succeeded. Raises :class:`AudioError` if PortAudio reports a failure.
    """
    hooks = _NativeHooks.get()
    with hooks.quiet():
        try:
            return pyaudio.PyAudio()
        except OSError as exc:
            raise AudioError(f"PortAudio failed to initialize: {exc}") from exc


def find_device(pa: Any, wanted: str, direction: Direction) -> int:
    """PortAudio index of ``wanted`` for ``direction``: exact name, then case-insensitive substring, then (for
    ``"default"``) PortAudio's default device. Raises :class:`AudioError` listing what there is."""
    channels_key = "maxOutputChannels" if direction == "output" else "maxInputChannels"
    found: list[tuple[int, str]] = []
    for i in range(pa.get_device_count()):
        info = pa.get_device_info_by_index(i)
        if int(info.get(channels_key, 0)) > 0:
            found.append((i, str(info["name"])))
    for i, name in found:
        if name == wanted:
            return i
    for i, name in found:
        if wanted.lower() in name.lower():
            return i
    if wanted == "default" and found:
        getter = pa.get_default_output_device_info if direction == "output" else pa.get_default_input_device_info
        try:
            return int(getter()["index"])
        except OSError:
            return found[0][0]
    names = ", ".join(repr(n) for _, n in found) or "none"
    raise AudioError(f"{direction} device {wanted!r} not found; PortAudio {direction} devices: {names}")


_JackCallback = ctypes.CFUNCTYPE(None, ctypes.c_char_p)
# ALSA's handler is variadic (file, line, function, err, fmt, ...); the fixed arguments arrive the same way on
# x86_64, arm64 and 32-bit ARM, and the format's arguments are simply not read.
_AlsaCallback = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p)


class _NativeHooks:
    """JACK's (process-wide) and ALSA's (per-thread) message hooks, installed once, kept alive for the process."""

    _instance: _NativeHooks | None = None
    _instance_lock = threading.Lock()

    def __init__(self) -> None:
        self._initializing = 0
        self._lock = threading.Lock()
        # The ctypes callbacks must outlive every call the libraries may make into them: kept on the singleton.
        self._jack_cb = _JackCallback(self._on_jack)
        self._alsa_cb = _AlsaCallback(self._on_alsa)
        # Looked up by name, so a library without the hook (an alsa-lib older than 1.1.6) just keeps its chatter.
        self._set_local = _symbol(_load("asound"), "snd_lib_error_set_local")
        if self._set_local is not None:
            self._set_local.restype = ctypes.c_void_p
            self._set_local.argtypes = [ctypes.c_void_p]
        jack = _load("jack")
        for name in ("jack_set_error_function", "jack_set_info_function"):
            setter = _symbol(jack, name)
            if setter is not None:
                setter(self._jack_cb)

    @classmethod
    def get(cls) -> _NativeHooks:
        with cls._instance_lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def quiet(self) -> _Quiet:
        return _Quiet(self)

    def _on_jack(self, message: bytes | None) -> None:
        # JACK speaks here only because PortAudio probes for a server; outside that, its words may matter.
        level = logging.DEBUG if self._initializing else logging.WARNING
        log.log(level, "jack: %s", (message or b"").decode(errors="replace"))

    def _on_alsa(self, file: bytes | None, line: int, function: bytes | None, err: int, fmt: bytes | None) -> None:
        text = (fmt or b"").decode(errors="replace")
        where = f"{(file or b'?').decode(errors='replace')}:{line} {(function or b'?').decode(errors='replace')}"
        log.debug("alsa: %s: %s%s", where, text, f" (error {err})" if err else "")


class _Quiet:
    """Context manager: JACK's messages at DEBUG, and ALSA's for the calling thread, while PortAudio initializes."""

    def __init__(self, hooks: _NativeHooks) -> None:
        self._hooks = hooks
        self._previous: int | None = None

    def __enter__(self) -> None:
        with self._hooks._lock:
            self._hooks._initializing += 1
        set_local = self._hooks._set_local
        if set_local is not None:
            self._previous = set_local(ctypes.cast(self._hooks._alsa_cb, ctypes.c_void_p))

    def __exit__(self, *exc: object) -> None:
        set_local = self._hooks._set_local
        if set_local is not None:
            set_local(self._previous)
        with self._hooks._lock:
            self._hooks._initializing -= 1


def _load(name: str) -> Any:
    """The shared library ``lib<name>`` PortAudio is linked with, or None when this system has none."""
    path = ctypes.util.find_library(name)
    if path is None:
        return None
    try:
        return ctypes.CDLL(path)
    except OSError as exc:
        log.debug("portaudio: cannot load %s: %s", path, exc)
        return None


def _symbol(library: Any, name: str) -> Any:
    """``library.name``, or None when there is no library or it lacks that function."""
    if library is None:
        return None
    try:
        return getattr(library, name)
    except AttributeError:
        log.debug("portaudio: %s has no %s", library, name)
        return None
