"""What a visit needs: timing, prompts, the apartments (who a button rings, which codes open) and paths."""

from __future__ import annotations

import hmac
import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from daemon.config._uris import uri_problems
from daemon.flow.keypad import KeypadLimits
from daemon.prompt_texts import DEFAULT_PROMPTS_EN, DEFAULT_PROMPTS_PT, PROMPT_NAMES
from hw.settings import KeypadConfig, Range, range_problems

__all__ = [
    "CODE_LENGTH",
    "NUMBER_DIGITS",
    "Apartment",
    "KeypadSettings",
    "PathsConfig",
    "PromptsConfig",
    "TimingConfig",
    "code_problems",
    "door_open_prompt",
    "guessable",
]

# A door on a public street: fewer than 4 digits is guessed in minutes; more than 12 nobody types on a phone.
CODE_LENGTH = range(4, 13)


def code_problems(key: str, codes: tuple[str, ...]) -> list[str]:
    """Door codes: digits only, 4 to 12 of them, none a prefix of another. Problems never quote a code."""
    out: list[str] = []
    for i, code in enumerate(codes):
        digits = code.isascii() and code.isdigit()
        if not digits or len(code) not in CODE_LENGTH:
            out.append(
                f"{key}[{i}]: a door code is {CODE_LENGTH.start} to {CODE_LENGTH.stop - 1} digits 0-9 "
                f"(this one has {len(code)} character(s){'' if digits else ', not all digits'})"
            )
        elif guessable(code):
            out.append(f"{key}[{i}]: one digit repeated or a run like 1234: the first codes anyone tries; change it")
    for i, shorter in enumerate(codes):
        for j, longer in enumerate(codes):
            if i == j or not longer.startswith(shorter):
                continue
            if shorter == longer and i < j:
                out.append(f"{key}[{j}]: the same code as {key}[{i}]")
            elif len(shorter) < len(longer):
                # Digits are matched as they come: typing the longer code would open at the shorter one.
                out.append(f"{key}[{i}]: a prefix of {key}[{j}], which would then open at {key}[{i}]'s last digit")
    return out


def guessable(code: str) -> bool:
    steps = {int(b) - int(a) for a, b in itertools.pairwise(code)}
    return steps <= {0} or steps in ({1}, {-1})


@dataclass(frozen=True)
class TimingConfig:
    ring_timeout_seconds: Annotated[float, Range(1, 300, "seconds")] = 30.0
    max_call_seconds: Annotated[float, Range(10, 3600, "seconds")] = 120.0
    # The "call ending" prompt plays this long before max_call_seconds.
    call_warning_seconds: Annotated[float, Range(0, 600, "seconds", "0: no warning")] = 10.0
    visit_deadline_seconds: Annotated[float, Range(10, 7200, "seconds")] = 300.0
    hangup_after_open_seconds: Annotated[float, Range(0, 60, "seconds")] = 3.0
    wrong_code_limit: Annotated[int, Range(1, 20, "codes")] = 3
    lockout_seconds: Annotated[float, Range(1, 86_400, "seconds")] = 300.0
    second_press: Literal["ignore", "restart_prompt"] = "ignore"
    other_apartment_press: Literal["queue", "refuse"] = "queue"

    def problems(self) -> list[str]:
        out = range_problems(self)
        if self.call_warning_seconds >= self.max_call_seconds:
            out.append("call_warning_seconds: must be less than max_call_seconds")
        return out


MAX_PROMPT_TEXT = 1000
INBOUND_APARTMENT = "inbound"  # the apartment name of a visit started by an allowlisted caller


def door_open_prompt(door: str) -> str:
    """The name of the prompt said when ``door`` opened (``[prompts.doors]``), beside the enum's names."""
    return f"door_open.{door}"


@dataclass(frozen=True)
class PromptsConfig:
    language: Literal["pt-BR", "en"] = "pt-BR"
    engine: Literal["espeak-ng", "piper"] = "espeak-ng"
    voice: str = ""  # empty: the language's default voice (espeak-ng "pt-br" / "en-us")
    piper_model: str = ""  # path to a piper .onnx voice model, with engine = "piper"
    text: dict[str, str] = field(default_factory=dict)  # overrides per prompt name
    files: dict[str, str] = field(default_factory=dict)  # recorded WAV instead of synthesis
    # Said instead of door_open when that door opened: {"garage" = "Portão da garagem aberto."} ([[doors]] names)
    doors: dict[str, str] = field(default_factory=dict)

    def problems(self) -> list[str]:
        out = []
        for table, entries in (("text", self.text), ("files", self.files)):
            for name in entries:
                if name not in PROMPT_NAMES:
                    out.append(f"{table}.{name}: unknown prompt; accepted: {', '.join(PROMPT_NAMES)}")
        for name, path in self.files.items():
            if not Path(path).expanduser().is_file():
                out.append(f"files.{name}: WAV file {path!r} does not exist")
            elif not os.access(Path(path).expanduser(), os.R_OK):
                out.append(f"files.{name}: WAV file {path!r} is not readable")
        for table, texts in (("text", self.text), ("doors", self.doors)):
            for name, text in texts.items():
                if not text.strip():
                    out.append(f"{table}.{name}: empty; remove the line to keep the default text")
                elif len(text) > MAX_PROMPT_TEXT:
                    # Every text is synthesized before READY: a book-length one keeps the daemon from starting.
                    size = f"{len(text):,} characters; at most {MAX_PROMPT_TEXT:,}"
                    out.append(f"{table}.{name}: {size} (a prompt is a sentence)")
        if self.engine == "piper":
            if not self.piper_model:
                out.append("piper_model: required with engine = 'piper' (path to a .onnx voice)")
            elif not Path(self.piper_model).is_file():
                out.append(f"piper_model: {self.piper_model!r} does not exist")
        return out

    def texts(self) -> dict[str, str]:
        base = DEFAULT_PROMPTS_PT if self.language == "pt-BR" else DEFAULT_PROMPTS_EN
        return {**base, **self.text, **{door_open_prompt(door): text for door, text in self.doors.items()}}

    def voice_name(self) -> str:
        return self.voice or ("pt-br" if self.language == "pt-BR" else "en-us")


# An apartment number typed at the keypad: 1 to 8 digits (a tower and a unit, "1204", fit with room to spare).
NUMBER_DIGITS = range(1, 9)


@dataclass(frozen=True)
class KeypadSettings(KeypadConfig):
    """``[keypad]``: hw/'s wiring plus how typing behaves (the pure machine in :mod:`daemon.flow.keypad`)."""

    # A half-typed entry left alone this long is cleared (the next visitor starts clean).
    idle_timeout_seconds: Annotated[float, Range(2, 120, "seconds")] = 8.0
    # A typed number calls by itself after this pause, for visitors who never find the call key.
    call_after_idle_seconds: Annotated[float, Range(0, 60, "seconds", "0: only the call key or # calls")] = 0.0
    max_number_digits: Annotated[int, Range(1, 8, "digits")] = 6
    max_pin_digits: Annotated[int, Range(4, 12, "digits")] = 12

    def problems(self) -> list[str]:
        out = super().problems() + range_problems(self)
        if self.call_after_idle_seconds and self.call_after_idle_seconds >= self.idle_timeout_seconds:
            out.append("call_after_idle_seconds: must be less than idle_timeout_seconds (or 0)")
        return out

    @property
    def limits(self) -> KeypadLimits:
        return KeypadLimits(
            max_number_digits=self.max_number_digits,
            max_pin_digits=self.max_pin_digits,
            idle_timeout=self.idle_timeout_seconds,
            call_after_idle=self.call_after_idle_seconds or None,
        )


@dataclass(frozen=True)
class Apartment:
    name: str
    buttons: tuple[str, ...]
    residents: tuple[str, ...]
    codes: tuple[str, ...] = ()
    strategy: Literal["parallel", "sequential"] = "parallel"
    fallback: str = ""  # e.g. the concierge, called when no resident answers
    mode: Literal["talk", "announce"] = "talk"
    number: str = ""  # what a visitor types at the keypad to call it; empty: reached by its buttons only
    # Codes for the other doors ([[doors]] names): {"garage" = ["7391"]}. ``codes`` opens the first door.
    door_codes: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def all_codes(self) -> tuple[str, ...]:
        return self.codes + tuple(code for codes in self.door_codes.values() for code in codes)

    def door_for(self, code: str) -> str | None:
        """Which door ``code`` opens: "" for the first door (``codes``), a door's name, None for no door. Every
        code is compared in constant time: the time taken must not say which list was close."""
        found: str | None = None
        for door, codes in (("", self.codes), *self.door_codes.items()):
            matched = [hmac.compare_digest(code.encode(), c.encode()) for c in codes]  # every one, no early exit
            if any(matched) and found is None:
                found = door
        return found

    def problems(self) -> list[str]:
        out: list[str] = []
        if not self.name.strip():
            out.append("name: must not be empty (it names the apartment in logs, history and status)")
        elif self.name.strip().casefold() == INBOUND_APARTMENT:
            # The visits of allowlisted callers go by this name: sharing it would share their wrong-code
            # lockout (an inbound caller's right code would reset this apartment's count) and their history.
            out.append(f"name: {self.name!r} is reserved for calls from sip.inbound_allow; choose another")
        if not self.buttons and not self.number:
            out.append(
                "buttons: at least one button is required, or a keypad number (nothing would ring this apartment)"
            )
        if self.number and not (self.number.isascii() and self.number.isdigit() and len(self.number) in NUMBER_DIGITS):
            out.append(f"number: {self.number!r} is not {NUMBER_DIGITS.start} to {NUMBER_DIGITS.stop - 1} digits 0-9")
        if not self.residents:
            out.append("residents: at least one SIP address is required")
        for i, uri in enumerate(self.residents):
            out += uri_problems(f"residents[{i}]", uri)
        if self.fallback:
            out += uri_problems("fallback", self.fallback)
        # One list for the prefix rule: digits are matched as they come, whichever door a code opens.
        out += code_problems("codes", self.all_codes)
        return out

    @property
    def ring_stages(self) -> int:
        """How many ring timeouts a visit may wait through: one per stage (the fallback is the last stage)."""
        stages = 1 if self.strategy == "parallel" else len(self.residents)
        return stages + (1 if self.fallback else 0)


@dataclass(frozen=True)
class PathsConfig:
    state_dir: str = "/var/lib/intercom"  # history database, event log
    cache_dir: str = "/var/cache/intercom"  # synthesized prompts
    runtime_dir: str = "/run/intercom"  # control socket

    def problems(self) -> list[str]:
        out: list[str] = []
        for key in ("state_dir", "cache_dir", "runtime_dir"):
            value: str = getattr(self, key)
            if not value.startswith("/"):
                # systemd starts the daemon in /: a relative path would land somewhere else than check-config saw.
                out.append(f"{key}: {value!r} must be an absolute path")
        return out
