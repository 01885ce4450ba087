"""Capture what reaches ALSA: a private ALSA configuration whose default PCM is ``type file`` over
``null``, so a test reads back the exact samples PortAudio handed to ALSA.

Used by ``intercomd demo`` (the simulated panel's speaker) and by the tests (``tests/support/alsa.py``
wraps it as the ``alsa_capture`` fixture). It sets ``ALSA_CONFIG_PATH`` for the process, which
replaces the machine's whole ``alsa.conf``: nothing from the host's ALSA setup is read. alsa-lib loads
the configuration when PortAudio initializes (``pyaudio.PyAudio()``) and PortAudio frees it again on
``terminate()``, so it works in-process as long as the PyAudio instance is created *after* the variable
is set (``hw.speaker.Speaker`` creates it lazily, on ``start()`` or the first prompt).

The file plugin truncates its file on every stream open, so :meth:`AlsaCapture.last` is the last
stream (one prompt). With ``keep_all=True`` a second file plugin also appends every stream's raw
frames to ``all.raw`` (:meth:`AlsaCapture.all_frames`), for flows that play several prompts.
"""

from __future__ import annotations

import os
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["AlsaCapture", "CapturedStream", "capture_alsa", "write_capture_config"]


@dataclass(frozen=True)
class CapturedStream:
    rate: int
    channels: int
    sample_width: int
    frames: bytes  # interleaved PCM exactly as written to ALSA

    @property
    def nframes(self) -> int:
        return len(self.frames) // (self.channels * self.sample_width)


@dataclass(frozen=True)
class AlsaCapture:
    config_path: Path
    wav_path: Path  # the last stream, with a WAV header written by ALSA (rate, channels, format)
    raw_path: Path | None  # every stream appended, raw frames (keep_all=True only)

    def last(self) -> CapturedStream:
        """The last stream played (opened and closed) through ALSA's default PCM."""
        with wave.open(str(self.wav_path), "rb") as w:
            return CapturedStream(w.getframerate(), w.getnchannels(), w.getsampwidth(), w.readframes(w.getnframes()))

    def all_frames(self) -> bytes:
        if self.raw_path is None:
            raise ValueError("capture made without keep_all=True")
        return self.raw_path.read_bytes() if self.raw_path.exists() else b""

    def clear(self) -> None:
        self.wav_path.unlink(missing_ok=True)
        if self.raw_path is not None:
            self.raw_path.unlink(missing_ok=True)


def write_capture_config(directory: Path, *, keep_all: bool = False, mic_raw: Path | None = None) -> AlsaCapture:
    """Write ``asound.conf`` in ``directory``; returns where the captured audio will be. With ``mic_raw``
    (raw 16-bit mono PCM at the rate the reader opens), the default PCM's capture side reads that file:
    a file plugin's ``infile``. Like the null device, it never blocks: the reader sets the pace."""
    directory.mkdir(parents=True, exist_ok=True)
    wav_path = directory / "last.wav"
    raw_path = directory / "all.raw" if keep_all else None
    # A shell pipe ("|cmd") is the file plugin's way to append; only used with keep_all because the fork
    # adds a millisecond or two to every stream open.
    inner = (
        f'{{ type file; file "|cat >> {raw_path}"; format "raw"; slave.pcm {{ type null }} }}'
        if raw_path
        else "{ type null }"
    )
    playback = f'{{ type file; file "{wav_path}"; format "wav"; slave.pcm {inner} }}'
    default = f"pcm.!default {playback}\n"
    if mic_raw is not None:
        capture = f'{{ type file; file "/dev/null"; infile "{mic_raw}"; format "raw"; slave.pcm {{ type null }} }}'
        default = f"pcm.!default {{ type asym; playback.pcm {playback}; capture.pcm {capture} }}\n"
    config = directory / "asound.conf"
    config.write_text(
        "# Written by daemon/simulation/alsa.py: the default PCM records to a file and plays nowhere.\n"
        + default
        + "ctl.!default { type hw card 0 }\n",
        encoding="utf-8",
    )
    return AlsaCapture(config, wav_path, raw_path)


@contextmanager
def capture_alsa(directory: Path, *, keep_all: bool = False, mic_raw: Path | None = None) -> Iterator[AlsaCapture]:
    """Point ``ALSA_CONFIG_PATH`` at a capture config for the duration; restores the previous value."""
    capture = write_capture_config(directory, keep_all=keep_all, mic_raw=mic_raw)
    previous = os.environ.get("ALSA_CONFIG_PATH")
    os.environ["ALSA_CONFIG_PATH"] = str(capture.config_path)
    try:
        yield capture
    finally:
        if previous is None:
            os.environ.pop("ALSA_CONFIG_PATH", None)
        else:
            os.environ["ALSA_CONFIG_PATH"] = previous
