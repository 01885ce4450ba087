"""Speech engines behind one small protocol: text in, a WAV out.

espeak-ng (the default) runs as a subprocess through :func:`anyio.run_process`, so the loop never waits
on it. Piper is optional and loaded in a worker thread; its model files are checked *before* piper is
imported, so a wrong path is reported the same way whether or not piper is installed.
"""

from __future__ import annotations

import io
import json
import logging
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import anyio

from daemon.config import PromptsConfig
from daemon.errors import ConfigError, IntercomError

__all__ = [
    "EspeakEngine",
    "PiperEngine",
    "PiperModel",
    "PromptError",
    "SpeechEngine",
    "check_piper_model",
    "engine_for",
]

log = logging.getLogger(__name__)

SOURCE = "[prompts]"  # ConfigError source: the problem is in the prompts table of the config


class PromptError(IntercomError, RuntimeError):
    """A prompt could not be synthesized, converted or cached."""


class SpeechEngine(Protocol):
    @property
    def identity(self) -> str:
        """Names the engine and whatever changes its output (a model file's size and mtime): part of the cache key."""

    async def synthesize(self, text: str, voice: str) -> bytes:
        """Return a WAV file's bytes (any integer PCM; the cache converts)."""


class EspeakEngine:
    """espeak-ng as a subprocess. Text goes on stdin, so a prompt starting with ``-`` is not an option."""

    def __init__(self, executable: str = "espeak-ng", *, timeout: float = 30.0) -> None:
        self._executable = executable
        self._timeout = timeout

    @property
    def identity(self) -> str:
        return "espeak-ng"

    async def synthesize(self, text: str, voice: str) -> bytes:
        try:
            with anyio.fail_after(self._timeout):
                result = await anyio.run_process(
                    [self._executable, "-v", voice, "--stdout"], input=text.encode("utf-8"), check=False
                )
        except FileNotFoundError as exc:
            raise ConfigError(
                f"engine: espeak-ng not found ({self._executable!r}); install it with "
                "'apt install espeak-ng', or use engine = 'piper'",
                SOURCE,
            ) from exc
        except TimeoutError as exc:
            raise PromptError(f"espeak-ng took more than {self._timeout:.0f} s for {text[:40]!r}") from exc
        if result.returncode != 0:
            detail = result.stderr.decode("utf-8", "replace").strip()
            raise PromptError(f"espeak-ng -v {voice} failed (exit {result.returncode}): {detail}")
        return result.stdout


@dataclass(frozen=True)
class PiperModel:
    model: Path
    config: Path
    sample_rate: int
    identity: str


def _refuse(path: Path | str, why: str) -> ConfigError:
    return ConfigError(f"piper_model: {str(path)!r} {why}", SOURCE)


def check_piper_model(path: str | Path) -> PiperModel:
    """Check a piper voice (``X.onnx`` plus ``X.onnx.json``) without importing piper. Blocking file I/O.

    Raises :class:`ConfigError` naming the path and what is wrong with it.
    """
    if not str(path):
        raise ConfigError("piper_model: required with engine = 'piper' (path to a .onnx voice)", SOURCE)
    model = Path(path).expanduser()
    if not model.exists():
        raise _refuse(model, "does not exist")
    if not model.is_file():
        raise _refuse(model, "is not a file")
    if model.suffix != ".onnx":
        raise _refuse(model, "is not a .onnx file (piper voices are X.onnx with X.onnx.json beside it)")
    config = model.with_name(model.name + ".json")
    if not config.is_file():
        raise _refuse(model, f"has no voice config {config.name!r} beside it (download both files)")
    try:
        with model.open("rb") as f:
            head = f.read(2)
        size, mtime = model.stat().st_size, model.stat().st_mtime_ns
        settings = json.loads(config.read_text(encoding="utf-8"))
    except OSError as exc:
        raise _refuse(model, f"cannot be read: {exc.strerror or exc}") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise _refuse(model, f"has a corrupt voice config {config.name!r}: {exc}") from exc
    # An ONNX file is a ModelProto; serializers write field 1 (ir_version, a varint) first: tag byte 0x08.
    if len(head) < 2 or head[0] != 0x08:
        raise _refuse(model, "is not an ONNX model (corrupt or truncated?)")
    audio = settings.get("audio") if isinstance(settings, dict) else None
    rate = audio.get("sample_rate") if isinstance(audio, dict) else None
    if not isinstance(rate, int) or not 8000 <= rate <= 48000 or not isinstance(settings.get("phoneme_id_map"), dict):
        raise _refuse(model, f"has a voice config {config.name!r} without audio.sample_rate or phoneme_id_map")
    return PiperModel(model, config, rate, f"piper:{model.resolve()}:{size}:{mtime}")


def _import_piper() -> Any:
    try:
        import piper  # type: ignore[import-not-found]
    except ImportError as exc:
        raise ConfigError(
            "engine: 'piper' is selected but piper-tts is not installed; install it with "
            "'.venv/bin/pip install piper-tts', or use engine = 'espeak-ng'",
            SOURCE,
        ) from exc
    return piper


class PiperEngine:
    """Piper, in-process. Loading (seconds on a Pi) and synthesis run in a worker thread under ``limiter``."""

    def __init__(
        self, model: PiperModel, *, limiter: anyio.CapacityLimiter | None = None, timeout: float = 120.0
    ) -> None:
        self._model = model
        self._limiter = limiter or anyio.CapacityLimiter(1)
        self._timeout = timeout
        self._voice: Any = None

    @property
    def identity(self) -> str:
        return self._model.identity

    def _load(self) -> Any:
        piper = _import_piper()
        try:
            return piper.PiperVoice.load(str(self._model.model), config_path=str(self._model.config))
        except Exception as exc:  # onnxruntime raises its own types: translate them all at this boundary
            raise _refuse(self._model.model, f"could not be loaded by piper: {exc}") from exc

    def _synthesize(self, text: str) -> bytes:
        if self._voice is None:
            self._voice = self._load()
        buf = io.BytesIO()
        with wave.open(buf, "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(self._model.sample_rate)
            if hasattr(self._voice, "synthesize_wav"):  # piper-tts >= 1.3
                self._voice.synthesize_wav(text, out, set_wav_format=False)
            else:
                self._voice.synthesize(text, out)
        return buf.getvalue()

    async def synthesize(self, text: str, voice: str) -> bytes:
        # ``voice`` is ignored: a piper model is one voice. Not abandon_on_cancel: the limiter must stay
        # held while the thread runs, so the timeout bounds how long we wait only between prompts.
        with anyio.fail_after(self._timeout):
            return await anyio.to_thread.run_sync(self._synthesize, text, limiter=self._limiter)


async def engine_for(config: PromptsConfig, *, limiter: anyio.CapacityLimiter | None = None) -> SpeechEngine:
    """The engine ``config`` selects; a piper model is checked (in a worker thread) before it is used."""
    if config.engine == "piper":
        model = await anyio.to_thread.run_sync(check_piper_model, config.piper_model, limiter=limiter)
        return PiperEngine(model, limiter=limiter)
    return EspeakEngine()
