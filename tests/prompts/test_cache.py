"""The prompt cache: real espeak-ng synthesis, hits, corrupt entries, recorded WAVs, the engine missing."""

from __future__ import annotations

import math
import shutil
from array import array
from pathlib import Path

import pytest

from daemon.config import PROMPT_NAMES, PromptsConfig
from daemon.errors import ConfigError
from daemon.prompts import EspeakEngine, Pcm, PromptCache, PromptError, encode_wav, parse_wav, peak

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


class CountingEngine:
    """A fake engine: a tone whose pitch depends on the text, and a count of calls."""

    identity = "counting"

    def __init__(self, rate: int = 22050) -> None:
        self.rate = rate
        self.calls: list[tuple[str, str]] = []

    async def synthesize(self, text: str, voice: str) -> bytes:
        self.calls.append((text, voice))
        freq = 200 + len(text) * 5
        n = self.rate // 4
        samples = array("h", (round(8000 * math.sin(2 * math.pi * freq * i / self.rate)) for i in range(n)))
        return encode_wav(Pcm(samples.tobytes(), self.rate))


@needs_espeak
async def test_real_pt_br_prompt_is_valid_and_not_silent(tmp_path: Path) -> None:
    cache = PromptCache(tmp_path)
    prompts = await cache.prepare(PromptsConfig(), rates=(16000, 8000))
    assert set(PROMPT_NAMES) <= set(prompts.names)
    speaker = prompts.speaker_pcm("door_open")
    assert speaker.rate == 22050 and speaker.channels == 1 and speaker.sample_width == 2
    assert 0.5 < speaker.duration < 10
    assert peak(speaker) > 3000
    for rate in (16000, 8000):
        pcm = parse_wav(prompts.path("door_open", rate).read_bytes())
        assert pcm.rate == rate and pcm.channels == 1 and pcm.sample_width == 2
        assert abs(pcm.duration - speaker.duration) < 0.01
        assert peak(pcm) > 3000
    assert prompts.call_wav("door_open") == prompts.path("door_open", 16000)
    assert all(not t.cache_hit and t.engine_seconds > 0 for t in prompts.timings.values())
    again = await cache.prepare(PromptsConfig(), rates=(16000, 8000))
    assert all(t.cache_hit and t.engine_seconds == 0 for t in again.timings.values())


async def test_cache_hit_does_not_run_the_engine(tmp_path: Path) -> None:
    engine = CountingEngine()
    first = await PromptCache(tmp_path, engine=engine).prepare(PromptsConfig(), rates=(16000, 8000))
    assert len(engine.calls) == len(PROMPT_NAMES)
    assert {voice for _, voice in engine.calls} == {"pt-br"}
    second = await PromptCache(tmp_path, engine=engine).prepare(PromptsConfig(), rates=(16000, 8000))
    assert len(engine.calls) == len(PROMPT_NAMES)
    assert second.files() == first.files()
    # a changed text is a new entry: only that prompt is synthesized again
    await PromptCache(tmp_path, engine=engine).prepare(PromptsConfig(text={"busy": "Ocupado."}), rates=(16000,))
    assert engine.calls[-1] == ("Ocupado.", "pt-br") and len(engine.calls) == len(PROMPT_NAMES) + 1


@pytest.mark.parametrize("damage", ["truncate", "garbage", "delete", "wrong_rate"])
async def test_corrupt_entry_is_rebuilt(tmp_path: Path, damage: str) -> None:
    engine = CountingEngine()
    prompts = await PromptCache(tmp_path, engine=engine).prepare(PromptsConfig(), rates=(8000,))
    victim = prompts.path("waiting", 8000)
    good = victim.read_bytes()
    if damage == "truncate":
        victim.write_bytes(good[: len(good) // 2])
    elif damage == "garbage":
        victim.write_bytes(b"\0" * len(good))
    elif damage == "delete":
        victim.unlink()
    else:
        victim.write_bytes(encode_wav(Pcm(b"\1\0" * 100, 16000)))
    calls = len(engine.calls)
    again = await PromptCache(tmp_path, engine=engine).prepare(PromptsConfig(), rates=(8000,))
    assert again.path("waiting", 8000).read_bytes() == good
    # rebuilt from the cached native entry: no synthesis needed
    assert len(engine.calls) == calls
    assert not again.timings["waiting"].cache_hit and again.timings["busy"].cache_hit


async def test_corrupt_native_entry_resynthesizes(tmp_path: Path) -> None:
    engine = CountingEngine()
    prompts = await PromptCache(tmp_path, engine=engine).prepare(PromptsConfig(), rates=(8000,))
    prompts.speaker_wav("busy").write_bytes(b"RIFF....WAVE")
    again = await PromptCache(tmp_path, engine=engine).prepare(PromptsConfig(), rates=(8000,))
    assert len(engine.calls) == len(PROMPT_NAMES) + 1
    assert parse_wav(again.speaker_wav("busy").read_bytes()).frames > 0


async def test_no_temporary_files_are_left(tmp_path: Path) -> None:
    await PromptCache(tmp_path, engine=CountingEngine()).prepare(PromptsConfig(), rates=(16000, 8000))
    assert not list((tmp_path / "prompts").glob(".tmp-*"))


async def test_recorded_wav_overrides_synthesis_and_is_converted(tmp_path: Path) -> None:
    n = 44100 // 2
    left = array("h", (round(10000 * math.sin(2 * math.pi * 440 * i / 44100)) for i in range(n)))
    stereo = array("h", (v for s in left for v in (s, s)))
    recording = tmp_path / "porta.wav"
    recording.write_bytes(encode_wav(Pcm(stereo.tobytes(), 44100, channels=2)))
    engine = CountingEngine()
    config = PromptsConfig(files={"door_open": str(recording)})
    prompts = await PromptCache(tmp_path / "cache", engine=engine).prepare(config, rates=(16000, 8000))
    assert "Porta aberta. Pode entrar." not in [text for text, _ in engine.calls]
    assert len(engine.calls) == len(PROMPT_NAMES) - 1
    assert prompts.timings["door_open"].source == "file"
    speaker = prompts.speaker_pcm("door_open")
    assert (speaker.rate, speaker.channels, speaker.frames) == (44100, 1, n)
    for rate in (16000, 8000):
        pcm = parse_wav(prompts.path("door_open", rate).read_bytes())
        assert pcm.rate == rate and pcm.frames == n * rate // 44100
    # a changed recording is picked up (its size and mtime are in the key)
    recording.write_bytes(encode_wav(Pcm(left.tobytes()[:n], 44100)))
    again = await PromptCache(tmp_path / "cache", engine=engine).prepare(config, rates=(16000, 8000))
    assert again.speaker_pcm("door_open").frames == n // 2


async def test_recorded_file_that_is_not_a_wav_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_text("hello")
    with pytest.raises(PromptError, match=r"door_open.*not a usable WAV"):
        await PromptCache(tmp_path, engine=CountingEngine()).prepare(PromptsConfig(files={"door_open": str(bad)}))


async def test_fixed_speaker_rate(tmp_path: Path) -> None:
    prompts = await PromptCache(tmp_path, engine=CountingEngine()).prepare(
        PromptsConfig(), rates=(8000,), speaker_rate=48000
    )
    assert prompts.speaker_pcm("busy").rate == 48000
    assert prompts.rates("busy") == (8000, 16000, 22050, 48000)  # 16 kHz: the default call rate
    with pytest.raises(KeyError, match="11025"):
        prompts.path("busy", 11025)
    with pytest.raises(KeyError, match="no prompt named"):
        prompts.speaker_wav("nope")


async def test_call_rate_is_16k_unless_asked(tmp_path: Path) -> None:
    cache = PromptCache(tmp_path, engine=CountingEngine())
    prompts = await cache.prepare(PromptsConfig(), rates=(48000, 16000))  # the app: (speaker device, call)
    assert prompts.call_wav("busy") == prompts.path("busy", 16000)
    assert prompts.speaker_pcm("busy").rate == 22050 and prompts.path("busy", 48000).exists()
    narrow = await cache.prepare(PromptsConfig(), rates=(), call_rate=8000)
    assert parse_wav(narrow.call_wav("busy").read_bytes()).rate == 8000


async def test_prune_keeps_live_entries(tmp_path: Path) -> None:
    cache = PromptCache(tmp_path, engine=CountingEngine())
    await cache.prepare(PromptsConfig(text={"busy": "old"}), rates=(8000,))
    live = await cache.prepare(PromptsConfig(text={"busy": "new"}), rates=(8000,))
    assert await cache.prune([live]) == 3  # old "busy" at native, 8 and 16 kHz
    assert all(p.exists() for p in live.files())


async def test_missing_espeak_is_a_clear_error(tmp_path: Path) -> None:
    cache = PromptCache(tmp_path, engine=EspeakEngine("/nonexistent/espeak-ng"))
    with pytest.raises(ConfigError, match=r"espeak-ng not found.*apt install espeak-ng"):
        await cache.prepare(PromptsConfig())


@needs_espeak
async def test_unknown_espeak_voice_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PromptError, match="espeak-ng -v xx-nope failed"):
        await PromptCache(tmp_path).prepare(PromptsConfig(voice="xx-nope"))
