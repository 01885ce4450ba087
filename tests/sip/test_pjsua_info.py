"""Which pjsua2 is loaded, and the sound-device decision: pure rules tested with device lists, then what the
engine reports on the installed build."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from daemon.bridge import LoopBridge
from daemon.sip import PjsuaInfo, SipEngine
from daemon.sip._pj_setup import _warn_about_the_build
from daemon.sip._pjsua_info import SoundDevice, build_kind, choose_sound_device, echo_cancellers_in
from tests.sip.conftest import make_config

# What a source build listed on a machine with the ALSA plugins installed and no sound card: 9 devices,
# every one with 0 inputs and 0 outputs (and `getDevCount() > 0` said "sound device").
PLUGINS_NO_CARD = [
    SoundDevice(i, name, "ALSA", 0, 0)
    for i, name in enumerate(["jack", "oss", "pulse", "upmix", "vdownmix", "speex", "speexrate", "default", "null"])
]


def test_plugin_devices_without_channels_mean_the_null_device() -> None:
    assert choose_sound_device(PLUGINS_NO_CARD) is None
    assert choose_sound_device([]) is None


def test_a_device_needs_inputs_and_outputs() -> None:
    mic_only = SoundDevice(0, "hw:CARD=Mic", "ALSA", 1, 0)
    amp_only = SoundDevice(1, "hw:CARD=Amp", "ALSA", 0, 2)
    assert choose_sound_device([mic_only, amp_only]) is None
    usb = SoundDevice(2, "sysdefault:CARD=Device", "ALSA", 1, 2)
    assert choose_sound_device([*PLUGINS_NO_CARD, mic_only, usb]) == usb


def test_alsa_default_is_preferred_and_null_is_never_chosen() -> None:
    null = SoundDevice(0, "null", "ALSA", 2, 2)  # no clock: pjmedia's port would run unthrottled
    usb = SoundDevice(1, "sysdefault:CARD=Device", "ALSA", 1, 2)
    default = SoundDevice(2, "default", "ALSA", 32, 32)
    assert choose_sound_device([null]) is None
    assert choose_sound_device([null, usb, default]) == default


def test_build_kind_from_the_files_the_wheel_installed(tmp_path: Path) -> None:
    site = tmp_path / "site-packages"
    wheel_files = [site / "pjsua2" / "__init__.py", site / "pjsua2" / "_pjsua2.cpython-311-x86_64-linux-gnu.so"]
    assert build_kind(str(wheel_files[1]), wheel_files) == "wheel"
    # a source build's extension in the same site-packages, wheel still installed
    assert build_kind(str(site / "_pjsua2.cpython-311-x86_64-linux-gnu.so"), wheel_files) == "source"
    assert build_kind(str(wheel_files[1]), None) == "source"


def test_echo_cancellers_are_read_from_the_library(tmp_path: Path) -> None:
    lib = tmp_path / "libpjmedia.so"
    lib.write_bytes(b"\x7fELF...\0Echo suppressor\0junk\0WebRTC AEC3\0Speex AEC is not a name\0")
    assert echo_cancellers_in([lib, tmp_path / "missing.so"]) == ("Echo suppressor", "WebRTC AEC3")


async def test_the_engine_says_which_pjsua2_it_loaded(bridge: LoopBridge, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="daemon.sip")
    async with SipEngine(make_config(max_calls=8), bridge) as engine:
        info = engine.info
    assert isinstance(info, PjsuaInfo)
    assert info.version.startswith("2.") and info.build in ("wheel", "source")
    assert info.max_calls >= 4 and info.echo_cancellers
    assert engine.has_sound_device == (info.sound_device is not None)
    starts = [r.getMessage() for r in caplog.records if r.getMessage().startswith("sip: pjsua2 ")]
    assert starts == [f"sip: {info.summary()}"]
    warned = any("sip.max_calls is 8" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert warned == (info.max_calls < 8)


def test_parallel_groups_larger_than_the_loaded_pjsua2_are_named() -> None:
    wheel = PjsuaInfo("2.15.1", "wheel", 4, None, ())
    (warning,) = wheel.ring_groups_beyond_limit([("101", 8), ("102", 4), ("103", 2)])
    assert warning.startswith("apartment 101 rings 8 residents at once") and "residents 5-8 will fail" in warning
    source = PjsuaInfo("2.15.1", "source", 32, None, ())
    assert source.ring_groups_beyond_limit([("101", 8), ("102", 12)]) == []


def test_a_build_that_cannot_serve_the_panel_is_named_at_start(caplog: pytest.LogCaptureFixture) -> None:
    """The wheel (no sound device, 4 calls) is not supported: said once at start, with what it costs."""
    caplog.set_level(logging.WARNING, logger="daemon.sip")
    _warn_about_the_build(PjsuaInfo("2.15.1", "wheel", 4, None, ()), max_calls=8)
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 3
    assert "pjsua2-python wheel, which the daemon does not support" in said[0]
    assert "null device" in said[1] and "no audio at the panel" in said[1]
    assert "sip.max_calls is 8 but this pjsua2 places at most 4 calls" in said[2]
    caplog.clear()
    _warn_about_the_build(PjsuaInfo("2.15.1", "source", 32, "default (ALSA)", ("speex",)), max_calls=8)
    assert not caplog.records
