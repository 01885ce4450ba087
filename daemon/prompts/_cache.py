"""The prompt cache: every prompt made once, at start-up or reload, so a button press never waits.

Each prompt is kept at its source rate (the synth's native rate, or a recorded WAV's own rate: the
speaker plays that) and at each SIP call rate (16-bit mono, for announcements into the call). An entry's
file name is a hash of everything that determines its content (engine, voice, text, rate; or a recorded
file's path, size and mtime), so a changed prompt gets a new entry and never a stale one. Entries are
validated on every prepare (header and length); a missing, truncated or corrupt one is rebuilt. Writes go
to a temporary file in the same directory, then ``os.replace``, so a crash never leaves half an entry.
All file work and resampling run in a worker thread under the cache's own limiter.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar, TypeVarTuple, Unpack

import anyio

from daemon.config import PROMPT_NAMES, PromptsConfig
from daemon.errors import ConfigError
from daemon.prompts._engines import SOURCE, PromptError, SpeechEngine, engine_for
from daemon.prompts._wav import Pcm, WavFormatError, encode_wav, parse_wav, resample, to_mono16

__all__ = ["PromptCache", "PromptSet", "PromptTiming"]

log = logging.getLogger(__name__)

_KEY_VERSION = 1  # bump when the conversion changes, so old entries are not reused
_NATIVE = "native"

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


@dataclass(frozen=True)
class PromptTiming:
    """What making one prompt cost in :meth:`PromptCache.prepare` (benchmarks read these)."""

    name: str
    source: Literal["synth", "file"]
    cache_hit: bool  # every rate came from the cache: the engine did not run
    engine_seconds: float  # time inside the engine (0.0 on a hit)
    total_seconds: float  # lookup + validation + synthesis + resampling + writes


class PromptSet:
    """The prepared prompts: file paths per rate (for pjsua2) and the speaker's PCM in memory."""

    def __init__(
        self,
        paths: dict[str, dict[int, Path]],
        speaker: dict[str, tuple[Path, Pcm]],
        call_rate: int,
        timings: dict[str, PromptTiming],
    ) -> None:
        self._paths, self._speaker, self.call_rate = paths, speaker, call_rate
        self.timings = timings

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._paths)

    def rates(self, name: str) -> tuple[int, ...]:
        return tuple(sorted(self._lookup(name)))

    def _lookup(self, name: str) -> dict[int, Path]:
        try:
            return self._paths[name]
        except KeyError:
            raise KeyError(f"no prompt named {name!r}; prepared: {', '.join(self._paths)}") from None

    def path(self, name: str, rate: int) -> Path:
        """The WAV (16-bit mono) of ``name`` at ``rate`` Hz."""
        by_rate = self._lookup(name)
        try:
            return by_rate[rate]
        except KeyError:
            raise KeyError(f"prompt {name!r} was not prepared at {rate} Hz; prepared: {sorted(by_rate)}") from None

    def speaker_wav(self, name: str) -> Path:
        self._lookup(name)
        return self._speaker[name][0]

    def speaker_pcm(self, name: str) -> Pcm:
        """Raw PCM and its parameters for the speaker, already in memory."""
        self._lookup(name)
        return self._speaker[name][1]

    def call_wav(self, name: str) -> Path:
        return self.path(name, self.call_rate)

    def files(self) -> set[Path]:
        return {p for by_rate in self._paths.values() for p in by_rate.values()}

    def __repr__(self) -> str:
        return f"<PromptSet {len(self._paths)} prompts, call rate {self.call_rate} Hz>"


def _entry_key(base: Sequence[object], rate: int | str) -> str:
    blob = json.dumps([_KEY_VERSION, *base, rate], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


def _write_atomic(path: Path, blob: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".wav")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())  # the rename must not land before the data on power loss
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_entry(path: Path, rate: int | None) -> Pcm | None:
    """A valid cache entry's PCM, or None (missing, or corrupt and logged) so the caller rebuilds it."""
    try:
        pcm = parse_wav(path.read_bytes(), strict=True)
    except FileNotFoundError:
        return None
    except (OSError, WavFormatError) as exc:
        log.warning("prompt cache entry %s is unusable (%s); rebuilding it", path, exc)
        return None
    if pcm.channels != 1 or pcm.sample_width != 2 or pcm.frames == 0 or (rate is not None and pcm.rate != rate):
        log.warning(
            "prompt cache entry %s has the wrong format (%d Hz, %d ch, %d-byte); rebuilding it",
            path,
            pcm.rate,
            pcm.channels,
            pcm.sample_width,
        )
        return None
    return pcm


@dataclass
class _Job:
    """One prompt's entries: which are valid in the cache and which must be made."""

    name: str
    base: list[object]
    native: Pcm | None
    native_path: Path
    paths: dict[int, Path]
    missing: list[int]


class PromptCache:
    """Makes and keeps prompts under ``cache_dir``. Pass ``engine`` to override the config's (tests do)."""

    def __init__(
        self,
        cache_dir: Path | str,
        *,
        engine: SpeechEngine | None = None,
        limiter: anyio.CapacityLimiter | None = None,
        synth_timeout: float = 60.0,
    ) -> None:
        self.directory = Path(cache_dir) / "prompts"
        self._engine = engine
        self._limiter = limiter or anyio.CapacityLimiter(1)  # one thread: start-up is not a race
        self._synth_timeout = synth_timeout

    async def prepare(
        self,
        config: PromptsConfig,
        rates: Sequence[int] = (16000, 8000),
        *,
        speaker_rate: int | None = None,
        call_rate: int = 16000,
    ) -> PromptSet:
        """Make every prompt at each of ``rates``, at ``call_rate`` and for the speaker.

        :meth:`PromptSet.call_wav` is at ``call_rate``: 16 kHz by default, the clock rate of pjsua2's
        conference bridge, which converts to the codec's rate itself. The speaker gets the source's own
        rate, or ``speaker_rate`` when given. Raises :class:`ConfigError` (engine or recorded file
        unusable) or :class:`PromptError` (synthesis failed, cache not writable).
        """
        engine = self._engine or await engine_for(config, limiter=self._limiter)
        wanted = sorted({*rates, call_rate, *([speaker_rate] if speaker_rate else [])})
        await self._run(self._make_dir)
        texts, voice = config.texts(), config.voice_name()
        paths: dict[str, dict[int, Path]] = {}
        speaker: dict[str, tuple[Path, Pcm]] = {}
        timings: dict[str, PromptTiming] = {}
        for name in dict.fromkeys([*PROMPT_NAMES, *texts]):
            started = time.perf_counter()
            recorded = config.files.get(name)
            if recorded:
                base: list[object] = await self._run(self._file_base, name, recorded)
            else:
                base = ["synth", engine.identity, voice, texts[name]]
            job = await self._run(self._lookup, name, base, wanted)
            engine_seconds = 0.0
            hit = job.native is not None and not job.missing
            if job.native is None:
                if recorded:
                    source = await self._run(self._read_recording, name, recorded)
                else:
                    t0 = time.perf_counter()
                    source = await self._synthesize(engine, name, texts[name], voice)
                    engine_seconds = time.perf_counter() - t0
                job.native = await self._run(self._store_native, job, source)
                job.missing = list(wanted)  # a new source invalidates every rate made from the old one
            if job.missing:
                await self._run(self._store_rates, job)
            native = job.native
            speaker[name] = (
                (job.paths[speaker_rate], await self._run(_read_pcm, job.paths[speaker_rate]))
                if speaker_rate
                else (job.native_path, native)
            )
            paths[name] = {native.rate: job.native_path, **job.paths}
            timings[name] = PromptTiming(
                name, "file" if recorded else "synth", hit, engine_seconds, time.perf_counter() - started
            )
            log.debug("prompt %s: %s in %.3f s", name, "cache hit" if hit else "made", timings[name].total_seconds)
        return PromptSet(paths, speaker, call_rate, timings)

    async def prune(self, keep: Iterable[PromptSet]) -> int:
        """Delete entries no set in ``keep`` uses (call after a reload, keeping the live set)."""
        used = {p for s in keep for p in s.files()}
        return await self._run(self._prune, used)

    async def _run(self, fn: Callable[[Unpack[Ts]], T], *args: *Ts) -> T:
        return await anyio.to_thread.run_sync(fn, *args, limiter=self._limiter)

    async def _synthesize(self, engine: SpeechEngine, name: str, text: str, voice: str) -> bytes:
        try:
            with anyio.fail_after(self._synth_timeout):
                return await engine.synthesize(text, voice)
        except TimeoutError as exc:
            raise PromptError(f"prompt {name!r}: synthesis took more than {self._synth_timeout:.0f} s") from exc

    # The rest runs in the worker thread.

    def _make_dir(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PromptError(f"prompt cache {self.directory}: cannot create it: {exc.strerror or exc}") from exc

    @staticmethod
    def _file_base(name: str, recorded: str) -> list[object]:
        path = Path(recorded).expanduser().resolve()
        try:
            st = path.stat()
        except OSError as exc:
            raise ConfigError(f"files.{name}: cannot read {recorded!r}: {exc.strerror or exc}", SOURCE) from exc
        return ["file", str(path), st.st_size, st.st_mtime_ns]

    def _lookup(self, name: str, base: list[object], rates: list[int]) -> _Job:
        native_path = self.directory / f"{_entry_key(base, _NATIVE)}.wav"
        paths = {rate: self.directory / f"{_entry_key(base, rate)}.wav" for rate in rates}
        missing = [rate for rate, path in paths.items() if _read_entry(path, rate) is None]
        return _Job(name, base, _read_entry(native_path, None), native_path, paths, missing)

    @staticmethod
    def _read_recording(name: str, recorded: str) -> bytes:
        try:
            return Path(recorded).expanduser().read_bytes()
        except OSError as exc:
            raise ConfigError(f"files.{name}: cannot read {recorded!r}: {exc.strerror or exc}", SOURCE) from exc

    def _store_native(self, job: _Job, wav: bytes) -> Pcm:
        try:
            pcm = to_mono16(parse_wav(wav, strict=False))
        except WavFormatError as exc:
            raise PromptError(f"prompt {job.name!r}: the source is not a usable WAV: {exc}") from exc
        if pcm.frames == 0:
            raise PromptError(f"prompt {job.name!r}: the source has no audio")
        self._write(job.native_path, pcm)
        return pcm

    def _store_rates(self, job: _Job) -> None:
        assert job.native is not None  # prepare stores the native entry first
        for rate in job.missing:
            self._write(job.paths[rate], resample(job.native, rate))
        job.missing = []

    def _write(self, path: Path, pcm: Pcm) -> None:
        try:
            _write_atomic(path, encode_wav(pcm))
        except OSError as exc:
            raise PromptError(f"prompt cache {path}: cannot write: {exc.strerror or exc}") from exc

    def _prune(self, used: set[Path]) -> int:
        removed = 0
        for path in self.directory.glob("*.wav"):
            if path not in used:
                path.unlink(missing_ok=True)
                removed += 1
        return removed


def _read_pcm(path: Path) -> Pcm:
    return parse_wav(path.read_bytes(), strict=True)
