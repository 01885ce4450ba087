"""PCM audio as the panel's speaker takes it: the format, WAV reading, volume scaling and a test tone."""

from __future__ import annotations

import array
import io
import math
import sys
import wave
from dataclasses import dataclass
from pathlib import Path

from hw.errors import AudioError

__all__ = ["PcmFormat", "read_wav", "scale_volume", "tone"]


@dataclass(frozen=True)
class PcmFormat:
    """Interleaved little-endian PCM: ``sample_width`` bytes per sample (1 = unsigned 8-bit)."""

    rate: int
    channels: int = 1
    sample_width: int = 2

    @property
    def frame_bytes(self) -> int:
        return self.channels * self.sample_width


def read_wav(source: str | Path | bytes) -> tuple[bytes, PcmFormat]:
    """PCM frames and format of a WAV file (path or bytes). Raises :class:`AudioError` if unreadable."""
    try:
        with wave.open(io.BytesIO(source) if isinstance(source, bytes) else str(source), "rb") as wav:
            fmt = PcmFormat(wav.getframerate(), wav.getnchannels(), wav.getsampwidth())
            return wav.readframes(wav.getnframes()), fmt
    except (OSError, EOFError, wave.Error) as exc:
        raise AudioError(f"speaker: cannot read WAV {str(source)[:80]!r}: {exc}") from exc


def scale_volume(pcm: bytes, sample_width: int, volume: float) -> bytes:
    """``pcm`` scaled by ``volume`` and clipped (not wrapped) at full scale."""
    if volume == 1.0:
        return pcm
    if sample_width == 1:
        return bytes(min(255, max(0, round((b - 128) * volume) + 128)) for b in pcm)
    code = {2: "h", 4: "i"}[sample_width]
    samples = array.array(code, pcm)
    if sys.byteorder == "big":
        samples.byteswap()
    top = (1 << (8 * sample_width - 1)) - 1
    out = array.array(code, (min(top, max(-top - 1, round(s * volume))) for s in samples))
    if sys.byteorder == "big":
        out.byteswap()
    return out.tobytes()


def tone(hz: float, seconds: float, rate: int = 16000, level: float = 0.3) -> tuple[bytes, PcmFormat]:
    """A sine tone as 16-bit mono PCM (the self-test's test tone)."""
    n = int(rate * seconds)
    amp = int(32767 * level)
    samples = array.array("h", (round(amp * math.sin(2 * math.pi * hz * i / rate)) for i in range(n)))
    if sys.byteorder == "big":
        samples.byteswap()
    return samples.tobytes(), PcmFormat(rate)
