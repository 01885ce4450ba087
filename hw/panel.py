"""The whole panel: every device built from :class:`~hw.settings.PanelConfig`, one owner, one ``close()``."""

from __future__ import annotations

import logging
from contextlib import ExitStack
from types import TracebackType
from typing import Any

import anyio

from hw._timing import Dispatcher, Outbox
from hw.events import EventSink
from hw.inputs import DoorbellButton, DoorContact, ExitButton, TamperSwitch
from hw.keypad import ButtonKeypad, Keypad, MatrixKeypad
from hw.leds import LedState, StatusLeds
from hw.relay import Relay
from hw.settings import DoorConfig, KeypadConfig, PanelConfig
from hw.speaker import Speaker

__all__ = ["Panel"]

log = logging.getLogger(__name__)


class Panel:
    """Buttons, relay, exit button, door contact, tamper switch, LEDs and speaker of one door panel.

    Wiring (the defaults in ``default-config.toml``, BCM numbers): doorbells GPIO17/18 to ground, relay
    module IN on GPIO27, exit button GPIO22 to ground, door reed contact GPIO23 to ground, tamper switch
    GPIO24 to ground, status LED GPIO5 and fault LED GPIO6 through 330 ohm to ground.

    Events go to ``post`` once per event: that is the only way hw reaches the daemon's loop. ``post`` may wait for
    the loop (``daemon.bridge.EventChannel.post``): the panel then calls it from an outbox thread of its own. With
    ``post_never_blocks`` (``EventChannel.post_soon``, which only queues the event for the loop) the devices call it
    directly from the dispatcher: one thread and one thread switch less between a press and the loop. Two things
    happen locally, without waiting for the daemon's flow: the exit button pulses the relay, and a tamper blocks the
    relay for ``tamper.block_seconds``.
    The app's task group must run :meth:`run` (it holds the relay's lifetime: the relay opens only meanwhile);
    :meth:`close` releases the relay and frees every pin.
    """

    def __init__(
        self,
        config: PanelConfig,
        *,
        pin_factory: Any,
        post: EventSink,
        speaker: Speaker | None = None,
        post_never_blocks: bool = False,
    ) -> None:
        self.config = config
        self.pin_factory = pin_factory
        self.dispatcher = Dispatcher("hw-panel")
        # Every device posts to ``sink``: it returns at once, so the dispatcher's deadlines (and the relay's pulses)
        # never wait for the event loop. A ``post`` that may wait gets an outbox whose own thread calls it.
        self.outbox = None if post_never_blocks else Outbox(post)
        self.sink: EventSink = post if self.outbox is None else self.outbox
        self.buttons: dict[str, DoorbellButton] = {}
        self.relays: dict[str, Relay] = {}  # per door, in config order; the first is the panel's own door
        self.exit_buttons: dict[str, ExitButton] = {}
        self.contacts: dict[str, DoorContact] = {}
        self.exit_button: ExitButton | None = None  # the first door's (one-door panels: the exit button)
        self.door: DoorContact | None = None  # the first door's contact
        self.tamper: TamperSwitch | None = None
        self.leds: StatusLeds | None = None
        self.keypad: Keypad | None = None
        self.speaker = speaker if speaker is not None else Speaker(config.audio)
        self._closed = False
        try:
            # The relays first: after a crash every lock must be released before anything else can fail.
            for door in config.door_list:
                self.relays[door.name] = Relay(
                    door.relay, pin_factory=pin_factory, post=self.sink, dispatcher=self.dispatcher, door=door.name
                )
            self.relay = next(iter(self.relays.values()))
            for button in config.buttons:
                self.buttons[button.name] = DoorbellButton(
                    button, pin_factory=pin_factory, post=self.sink, dispatcher=self.dispatcher
                )
            for door in config.door_list:
                self._build_door(door)
            first = config.door_list[0].name
            self.exit_button, self.door = self.exit_buttons.get(first), self.contacts.get(first)
            self.leds = StatusLeds(config.leds, pin_factory=pin_factory)
            if config.keypad is not None:
                self.keypad = _build_keypad(config.keypad, pin_factory, self.sink, self.dispatcher)
            if config.tamper is not None:
                self.tamper = TamperSwitch(
                    config.tamper,
                    pin_factory=pin_factory,
                    post=self.sink,
                    on_tamper=self._on_tamper,
                    dispatcher=self.dispatcher,
                )
        except BaseException:
            self.close()
            raise

    def _build_door(self, door: DoorConfig) -> None:
        relay = self.relays[door.name]
        if door.exit_button is not None:
            self.exit_buttons[door.name] = ExitButton(
                door.exit_button,
                pin_factory=self.pin_factory,
                post=self.sink,
                action=relay.open,  # this door's relay only
                dispatcher=self.dispatcher,
                door=door.name,
            )
        if door.door_contact is not None:
            self.contacts[door.name] = DoorContact(
                door.door_contact,
                pin_factory=self.pin_factory,
                post=self.sink,
                dispatcher=self.dispatcher,
                door=door.name,
            )

    def _on_tamper(self) -> None:
        seconds = self.config.tamper.block_seconds if self.config.tamper else 0.0
        if seconds > 0:
            for relay in self.relays.values():  # one panel cover guards every door it drives
                relay.block(seconds)

    async def run(self) -> None:
        """Probe and pre-open the speaker, and hold the relays' lifetime until cancelled (releasing them on the
        way out)."""
        with ExitStack() as lifetimes:
            for relay in self.relays.values():
                lifetimes.enter_context(relay.lifetime())
            async with anyio.create_task_group() as tg:
                tg.start_soon(self.speaker.start)
                await anyio.sleep_forever()

    def relay_for(self, door: str = "") -> Relay | None:
        """The relay of door ``door`` ("": the first door, the panel's own), None for a door it does not have."""
        return self.relay if not door else self.relays.get(door)

    def open_door(self, seconds: float | None = None) -> bool:
        """Pulse the first door's relay: True only when it energized; False or :class:`HardwareError` otherwise
        (see :meth:`Relay.open`)."""
        return self.relay.open(seconds)

    def release_all(self) -> None:
        """De-energize every door's relay at once (the fail-secure error path). Never raises."""
        for relay in self.relays.values():
            relay.release()

    def show(self, state: LedState) -> None:
        if self.leds is not None:
            self.leds.show(state)

    def close(self) -> None:
        """Release the relay, then free every device. Idempotent; never raises for a half-built panel."""
        if self._closed:
            return
        self._closed = True
        for relay in getattr(self, "relays", {}).values():
            relay.close()
        self.dispatcher.close()
        if self.outbox is not None:
            self.outbox.close()
        devices: list[Any] = [
            *self.buttons.values(),
            self.keypad,
            *self.exit_buttons.values(),
            *self.contacts.values(),
            self.tamper,
            self.leds,
        ]
        for device in devices:
            if device is not None:
                device.close()
        self.speaker.close()
        log.info("panel closed")

    def __enter__(self) -> Panel:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _build_keypad(keypad: KeypadConfig, pin_factory: Any, post: EventSink, dispatcher: Dispatcher) -> Keypad:
    """The keypad on the panel's own dispatcher and sink: its keys reach the loop like every other event."""
    matrix = keypad.matrix
    if matrix is not None:
        return MatrixKeypad(matrix, pin_factory=pin_factory, post=post, dispatcher=dispatcher)
    return ButtonKeypad(
        keypad.keys,
        pin_factory=pin_factory,
        post=post,
        min_press_ms=keypad.min_press_ms,
        holdoff_ms=keypad.holdoff_ms,
        dispatcher=dispatcher,
    )
