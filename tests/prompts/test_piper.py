"""Piper model refusals, checked from the files alone: piper itself need not be installed."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

from daemon.config import PromptsConfig
from daemon.errors import ConfigError
from daemon.prompts import PiperEngine, PromptCache, check_piper_model, engine_for

GOOD_CONFIG = {"audio": {"sample_rate": 22050}, "phoneme_id_map": {"a": [1]}}


def make_voice(directory: Path, *, model: bytes = b"\x08\x07" + b"\0" * 64, config: object = GOOD_CONFIG) -> Path:
    path = directory / "pt_BR-faber-medium.onnx"
    path.write_bytes(model)
    if config is not None:
        Path(f"{path}.json").write_text(config if isinstance(config, str) else json.dumps(config))
    return path


def test_good_model_passes_the_file_checks(tmp_path: Path) -> None:
    model = check_piper_model(make_voice(tmp_path))
    assert model.sample_rate == 22050
    assert model.config.name == "pt_BR-faber-medium.onnx.json"
    assert model.identity.startswith("piper:")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.onnx' does not exist"):
        check_piper_model(tmp_path / "nope.onnx")


def test_empty_path() -> None:
    with pytest.raises(ConfigError, match="piper_model: required"):
        check_piper_model("")


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    (tmp_path / "voice.onnx").mkdir()
    with pytest.raises(ConfigError, match=r"voice\.onnx' is not a file"):
        check_piper_model(tmp_path / "voice.onnx")


def test_wrong_extension(tmp_path: Path) -> None:
    path = tmp_path / "voice.bin"
    path.write_bytes(b"\x08\x07")
    with pytest.raises(ConfigError, match=r"voice\.bin' is not a \.onnx file"):
        check_piper_model(path)


def test_missing_config(tmp_path: Path) -> None:
    path = make_voice(tmp_path, config=None)
    with pytest.raises(ConfigError, match=rf"{path.name}' has no voice config '{path.name}\.json'"):
        check_piper_model(path)


@pytest.mark.parametrize("config", ["{not json", json.dumps({"audio": {}}), json.dumps([1, 2])])
def test_corrupt_config(tmp_path: Path, config: str) -> None:
    path = make_voice(tmp_path, config=config)
    with pytest.raises(ConfigError, match=str(path)):
        check_piper_model(path)


@pytest.mark.parametrize("content", [b"", b"\x08", b"<html>404 Not Found</html>"])
def test_corrupt_model(tmp_path: Path, content: bytes) -> None:
    path = make_voice(tmp_path, model=content)
    with pytest.raises(ConfigError, match=rf"{path}' is not an ONNX model"):
        check_piper_model(path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_model(tmp_path: Path) -> None:
    path = make_voice(tmp_path)
    path.chmod(0)
    with pytest.raises(ConfigError, match="cannot be read"):
        check_piper_model(path)


async def test_engine_for_refuses_before_use(tmp_path: Path) -> None:
    config = PromptsConfig(engine="piper", piper_model=str(tmp_path / "missing.onnx"))
    with pytest.raises(ConfigError, match="does not exist"):
        await engine_for(config)
    with pytest.raises(ConfigError, match="does not exist"):
        await PromptCache(tmp_path).prepare(config)


@pytest.mark.skipif(importlib.util.find_spec("piper") is not None, reason="piper-tts is installed")
async def test_piper_not_installed_says_how_to_install(tmp_path: Path) -> None:
    engine = PiperEngine(check_piper_model(make_voice(tmp_path)))
    with pytest.raises(ConfigError, match="pip install piper-tts"):
        await engine.synthesize("Olá", "")
