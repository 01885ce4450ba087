"""Spoken prompts: speech engines, WAV conversion and the on-disk prompt cache.

Use :class:`PromptCache` at start-up and on reload: ``await cache.prepare(config.prompts, rates)``
returns a :class:`PromptSet` whose files are ready before any button is pressed.
"""

from daemon.prompts._cache import PromptCache, PromptSet, PromptTiming
from daemon.prompts._engines import (
    EspeakEngine,
    PiperEngine,
    PiperModel,
    PromptError,
    SpeechEngine,
    check_piper_model,
    engine_for,
)
from daemon.prompts._wav import Pcm, WavFormatError, encode_wav, parse_wav, peak, resample, to_mono16

__all__ = [
    "EspeakEngine",
    "Pcm",
    "PiperEngine",
    "PiperModel",
    "PromptCache",
    "PromptError",
    "PromptSet",
    "PromptTiming",
    "SpeechEngine",
    "WavFormatError",
    "check_piper_model",
    "encode_wav",
    "engine_for",
    "parse_wav",
    "peak",
    "resample",
    "to_mono16",
]
