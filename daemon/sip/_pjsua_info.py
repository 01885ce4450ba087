"""Which pjsua2 the daemon loaded, and the sound-device decision. Pure: no pjsua2 (the owner thread reads
the facts from pjsua2 and hands them here), so the rules are tested with plain lists.

Sound device (docs/pjsua2.md, "Sound device"): pjmedia lists ALSA's plugin devices (jack, pulse, oss...)
even on a machine with no sound card, each with 0 inputs and 0 outputs, and counts them: a source build
there reported 9 devices, the daemon believed it had a card, never chose the null device, and every dial
failed with PJMEDIA_EAUD_NODEFDEV (420006). So a device counts only when it has inputs *and* outputs, and
ALSA's ``null`` PCM never does (it has no clock: pjmedia's sound port would run unthrottled).
"""

from __future__ import annotations

import mmap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = [
    "ECHO_CANCELLERS",
    "PjsuaInfo",
    "SoundDevice",
    "build_kind",
    "choose_sound_device",
    "echo_cancellers_in",
    "loaded_pj_libraries",
]

BuildKind = Literal["source", "wheel"]

# The names pjmedia's echo factories carry (pjmedia/echo_common.c), present in the library only when that
# canceller is compiled in (``--disable-libwebrtc`` drops the WebRTC ones). NUL-terminated as in C.
ECHO_CANCELLERS = ("Echo suppressor", "Speex AEC", "WebRTC AEC", "WebRTC AEC3")


@dataclass(frozen=True)
class SoundDevice:
    id: int
    name: str
    driver: str
    inputs: int
    outputs: int


@dataclass(frozen=True)
class PjsuaInfo:
    """What ``status`` shows about the SIP stack; logged in one line at start."""

    version: str  # pjproject's, e.g. "2.15.1"
    build: BuildKind  # "wheel": the PyPI pjsua2-python wheel; "source": built from pjproject's source
    max_calls: int  # PJSUA_MAX_CALLS of the loaded library: pjsua silently lowers maxCalls to it
    sound_device: str | None  # the pjmedia device used for talk, None: the null device
    echo_cancellers: tuple[str, ...]

    def summary(self) -> str:
        sound = self.sound_device or "none (null device)"
        echo = ", ".join(self.echo_cancellers) or "none"
        return (
            f"pjsua2 {self.version} ({self.build} build), at most {self.max_calls} calls at once, "
            f"sound device: {sound}, echo cancellers: {echo}"
        )

    def ring_groups_beyond_limit(self, groups: Iterable[tuple[str, int]]) -> list[str]:
        """A warning for each parallel ring group (apartment name, residents rung at once) larger than this
        pjsua2 can call at once: the config allows up to ``sip.max_calls``, but the wheel stops at 4 and its
        legs 5-8 would fail to dial on every press, so say so at start, naming the apartment."""
        return [
            f"apartment {name} rings {size} residents at once (strategy 'parallel') but this pjsua2 ({self.build} "
            f"build) places at most {self.max_calls} calls at once: residents {self.max_calls + 1}-{size} will fail "
            "to dial on every press; use the pjsua2 source build (./dev.sh build-pjsua2) or ring 'sequential'"
            for name, size in groups
            if size > self.max_calls
        ]


def choose_sound_device(devices: Sequence[SoundDevice]) -> SoundDevice | None:
    """The device for live talk: one with inputs and outputs, ALSA's ``default`` first; None -> null device."""
    usable = [d for d in devices if d.inputs > 0 and d.outputs > 0 and not d.name.lower().startswith("null")]
    preferred = [d for d in usable if d.name == "default"]
    candidates = preferred or usable
    return candidates[0] if candidates else None


def build_kind(extension_file: str, wheel_files: Iterable[Path] | None) -> BuildKind:
    """ "wheel" when the loaded ``_pjsua2`` extension is one of the files the ``pjsua2-python`` distribution
    installed (a source build installs its own ``_pjsua2`` into the same site-packages, so the directory
    alone cannot tell)."""
    if wheel_files is None:
        return "source"
    loaded = Path(extension_file).resolve()
    return "wheel" if any(Path(f).resolve() == loaded for f in wheel_files) else "source"


def echo_cancellers_in(libraries: Iterable[Path]) -> tuple[str, ...]:
    """The echo cancellers compiled into these shared libraries (pjsua2's extension, libpjmedia...)."""
    found: set[str] = set()
    for path in libraries:
        try:
            with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                found.update(name for name in ECHO_CANCELLERS if data.find(name.encode() + b"\0") >= 0)
        except (OSError, ValueError):
            continue
    return tuple(name for name in ECHO_CANCELLERS if name in found)


def loaded_pj_libraries(maps: str) -> list[Path]:
    """The pjproject libraries mapped into this process, from the text of ``/proc/self/maps``."""
    paths = {line.split()[-1] for line in maps.splitlines() if "/" in line and ".so" in line}
    return sorted(Path(p) for p in paths if Path(p).name.startswith(("_pjsua2", "libpj")))
