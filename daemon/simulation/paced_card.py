"""A room with a clock: a paced virtual sound card for the demo, the tests and the benchmarks.

The ALSA ``file`` PCM (:mod:`daemon.simulation.alsa`) captures exact samples but has no clock: a 3 s prompt
"plays" in a few milliseconds. Here a private PulseAudio server (Debian ``pulseaudio``, started as a child
process with its own socket, nothing read from the host's audio setup) runs two null sinks:

* ``spk``: the panel's speaker. Whatever the panel plays is consumed in real time; ``spk.monitor`` is what
  a person standing at the gate hears (:meth:`PacedCard.record_speaker`).
* ``mic``: the air in front of the panel's microphone. The panel records ``mic.monitor``; a near-end talker
  (the visitor) is injected with :meth:`PacedCard.talk`, and an *echo path* (``module-loopback`` from
  ``spk.monitor`` into ``mic`` with a fixed delay and an attenuation) plays the panel's own speaker back into its
  microphone, as an open-air door station does.

ALSA's default PCM is the ``pulse`` plugin (``libasound2-plugins``) with ``hint { show on }`` so pjmedia's
device enumeration lists it, and PortAudio and pjmedia both open it and are paced by the server's clock.
Like the capture config, it is selected by ``ALSA_CONFIG_PATH`` (see :func:`PacedCard.alsa_environ`).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = ["EchoPath", "PacedCard", "PacedCardError", "paced_card", "paced_card_as_default"]

RATE = 16000  # the panel's talk rate; prompts at other rates are resampled by the server
START_TIMEOUT = 10.0
_WAV_HEADER_BYTES = 44


class PacedCardError(RuntimeError):
    """The virtual card could not be started (PulseAudio missing or failing)."""


@dataclass(frozen=True)
class EchoPath:
    """Speaker -> microphone coupling: ``delay_ms`` of air and enclosure, ``gain_db`` (negative) of loss."""

    delay_ms: int = 40
    gain_db: float = -6.0

    def volume(self) -> int:
        # PulseAudio volumes are linear in amplitude on a cubic scale: 65536 is 0 dB, vol = 65536 * 10^(dB/60).
        return max(0, min(65536, round(65536 * 10 ** (self.gain_db / 60))))


@dataclass
class PacedCard:
    """A running virtual card. Create with :func:`paced_card`."""

    directory: Path
    server: str  # PULSE_SERVER value, "unix:/.../native"
    alsa_config: Path
    process: subprocess.Popen[bytes]

    def alsa_environ(self) -> dict[str, str]:
        """Environment for a process (or this one) whose ALSA default PCM is the paced card."""
        return {"ALSA_CONFIG_PATH": str(self.alsa_config), "PULSE_SERVER": self.server}

    def pactl(self, *args: str, timeout: float = 5.0) -> str:
        result = subprocess.run(
            ["pactl", *args],
            env={**os.environ, "PULSE_SERVER": self.server},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise PacedCardError(f"pactl {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout.strip()

    def add_echo_path(self, echo: EchoPath) -> int:
        """Couple the speaker into the microphone; returns the module index (for :meth:`remove_module`)."""
        index = self.pactl(
            "load-module",
            "module-loopback",
            "source=spk.monitor",
            "sink=mic",
            f"latency_msec={max(1, echo.delay_ms)}",
            # A room's echo path does not move during a call. module-loopback by default re-adapts its resampling
            # every 10 s to hold latency_msec against its sink's and source's latencies, which change as clients
            # (pjmedia's sound device, the visitor, the recorders) come and go: measured, the delay then crept by
            # 14 ms over 30 s of a call, an echo that moves under the canceller. Both ends are null sinks on one
            # clock, so with the adaptation off (adjust_time=0) the delay set up at load is held to the sample
            # (tests/simulation/test_paced_card.py).
            "adjust_time=0",
            "source_dont_move=true",
            "sink_dont_move=true",
        )
        module = int(index)
        # The loopback's sink input names the module as its owner; its volume is the path's loss.
        for block in self.pactl("list", "sink-inputs").split("Sink Input #")[1:]:
            if f"Owner Module: {module}\n" in block:
                self.pactl("set-sink-input-volume", block.split("\n", 1)[0].strip(), str(echo.volume()))
                return module
        raise PacedCardError(f"echo path: no sink input of module {module}")

    def remove_module(self, module: int) -> None:
        self.pactl("unload-module", str(module))

    @contextmanager
    def talk(self, wav: Path) -> Iterator[subprocess.Popen[bytes]]:
        """The visitor speaks: ``wav`` is played into the air in front of the microphone, in real time."""
        proc = subprocess.Popen(
            ["paplay", "--device=mic", str(wav)],
            env={**os.environ, "PULSE_SERVER": self.server},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            yield proc
        finally:
            _stop(proc)

    @contextmanager
    def record_speaker(self, out: Path) -> Iterator[Path]:
        """Record what the panel's speaker plays (``spk.monitor``) into a WAV file until the block ends."""
        with self.record("spk.monitor", out) as path:
            yield path

    @contextmanager
    def record_microphone(self, out: Path) -> Iterator[Path]:
        """Record what reaches the panel's microphone (``mic.monitor``): the visitor plus the echo path."""
        with self.record("mic.monitor", out) as path:
            yield path

    @contextmanager
    def record(self, source: str, out: Path) -> Iterator[Path]:
        """Record ``source`` into a WAV file (16 kHz mono) from when the recorder is connected to the block's end."""
        argv = ["parec", f"--device={source}", f"--rate={RATE}", "--channels=1", "--format=s16le", "--file-format=wav"]
        # A short fragment: parec drops what it has not written yet when it is stopped (the default, ~2 s, lost the
        # last second of a test's audio).
        argv.append("--latency-msec=50")
        proc = subprocess.Popen(
            [*argv, str(out)],
            env={**os.environ, "PULSE_SERVER": self.server},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            self._wait_for_recorder(proc, out)
            yield out
        finally:
            _stop(proc, signal.SIGINT)  # parec finalizes the WAV header on SIGINT

    def _recording(self, proc: subprocess.Popen[bytes], out: Path | None) -> bool:
        """Samples in ``out``; without a file (the period clock's recorders), its source output listed by pid."""
        if out is not None:
            return _samples_in(out)
        return f'application.process.id = "{proc.pid}"' in self.pactl("list", "source-outputs")

    def _wait_for_recorder(self, proc: subprocess.Popen[bytes], out: Path | None = None) -> None:
        """Until parec records. Its source output being listed is not enough: in a whole-app talk test that ran
        after another in the same process, the recording lost its first ~1.6 s (the app, warm, played "porta
        aberta" within them; the prompt's start was missing, in 5 runs of 5), and waiting for samples in the file,
        past the WAV header, fixed it. Likely cause: a null sink rendered in blocks of its clients' latency (2 s
        with none asking for less) before the card's period clock (:func:`_period_clock`). Samples in the file also
        tell our parec from the clock's own recorders, which a match on the name "parec" did not."""
        deadline = time.monotonic() + START_TIMEOUT
        while proc.poll() is None and not self._recording(proc, out):
            if time.monotonic() > deadline:
                raise PacedCardError("parec did not record within 10 s")
            time.sleep(0.02)  # a child process connecting: nothing to wait on but the file it writes


def _samples_in(out: Path) -> bool:
    return out.exists() and out.stat().st_size > _WAV_HEADER_BYTES


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=3)


def _server_config(directory: Path) -> str:
    # norewinds: a real card never takes back what it played. A null sink rewinds each time one of its clients
    # ends an underrun (the period clock's silent players, several times a second) and renders its last block
    # again, moving every client's stream; through ALSA's pulse plugin pjmedia's playback then ran ~300 ppm
    # fast of the wall clock and its capture up to ~300 ppm slow, a clock mismatch the panel was charged for.
    return (
        "# Written by daemon/simulation/paced_card.py\n"
        + "".join(
            f"load-module module-null-sink sink_name={sink} rate={RATE} channels=1 norewinds=1"
            f" sink_properties=device.description={sink}\n"
            for sink in ("spk", "mic")
        )
        + f"load-module module-native-protocol-unix auth-anonymous=1 socket={directory / 'native'}\n"
        "set-default-sink spk\n"
        "set-default-source mic.monitor\n"
    )


def _alsa_config(server: str) -> str:
    # hint { show on }: pjmedia lists only hinted PCMs (alsa_dev.c uses snd_device_name_hint).
    return (
        "# Written by daemon/simulation/paced_card.py: ALSA's default PCM is the paced virtual card.\n"
        f'pcm.!default {{ type pulse; server "{server}"; hint {{ show on description "paced card" }} }}\n'
        f'ctl.!default {{ type pulse; server "{server}" }}\n'
    )


@contextmanager
def paced_card(directory: Path) -> Iterator[PacedCard]:
    """Start a private PulseAudio with the two null sinks; stop it on exit."""
    if shutil.which("pulseaudio") is None or shutil.which("pactl") is None:
        raise PacedCardError("PulseAudio is not installed (Debian packages pulseaudio, pulseaudio-utils)")
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "default.pa"
    config.write_text(_server_config(directory), encoding="utf-8")
    server = f"unix:{directory / 'native'}"
    env = {
        **os.environ,
        "HOME": str(directory),
        "XDG_RUNTIME_DIR": str(directory),
        "PULSE_RUNTIME_PATH": str(directory),
    }
    env.pop("PULSE_SERVER", None)
    log = (directory / "pulseaudio.log").open("wb")
    proc = subprocess.Popen(
        [
            "pulseaudio",
            "-n",
            "-F",
            str(config),
            "--daemonize=no",
            "--exit-idle-time=-1",
            "--disable-shm=yes",
            "--use-pid-file=no",
            "--system=no",
            "--log-target=stderr",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    alsa = directory / "asound.conf"
    alsa.write_text(_alsa_config(server), encoding="utf-8")
    card = PacedCard(directory, server, alsa, proc)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise PacedCardError(f"pulseaudio exited: {(directory / 'pulseaudio.log').read_text()[-2000:]}")
            try:
                if "spk" in card.pactl("list", "short", "sinks", timeout=2):
                    break
            except (PacedCardError, subprocess.TimeoutExpired):
                pass
            if time.monotonic() > deadline:
                raise PacedCardError("pulseaudio did not come up within 10 s")
            time.sleep(0.05)  # a child process starting up: nothing to wait on but its socket
        with _period_clock(card):
            yield card
    finally:
        _stop(proc)


PERIOD_MS = 10


@contextmanager
def _period_clock(card: PacedCard) -> Iterator[None]:
    """A fixed short period for both sinks, as a real card's interrupt gives: on each sink, a recorder of its
    monitor and a player of silence asking for 10 ms (what they record is thrown away). A null sink otherwise
    renders in blocks of the lowest latency its clients ask for (2 s with none asking: "configured 2000000
    usec"), which changes as clients come and go: pjmedia's capture and playback callbacks then come in bursts,
    and each burst makes Speex's canceller insert or drop a reference frame ("Auto-filling the buffer", "Had to
    discard a playback frame"), a 20 ms jump in the echo's alignment that it must learn again (docs/audio.md).
    Cost: the server and the four clients take about 8 % of an x86 core while the card runs."""
    env = {**os.environ, "PULSE_SERVER": card.server}
    fmt = [f"--latency-msec={PERIOD_MS}", f"--rate={RATE}", "--channels=1", "--format=s16le"]
    recorders = [
        subprocess.Popen(["parec", f"--device={monitor}", *fmt], env=env, stdout=subprocess.DEVNULL)
        for monitor in ("spk.monitor", "mic.monitor")
    ]
    # and a silent player on each sink, so each is asked for data every period too
    players = [
        subprocess.Popen(["pacat", f"--device={sink}", *fmt, "/dev/zero"], env=env, stderr=subprocess.DEVNULL)
        for sink in ("spk", "mic")
    ]
    procs = [*recorders, *players]
    try:
        for proc in recorders:
            card._wait_for_recorder(proc)
        yield
    finally:
        for proc in procs:
            _stop(proc)


@contextmanager
def paced_card_as_default(directory: Path) -> Iterator[PacedCard]:
    """A paced card that is this process's ALSA default for the block (PortAudio and pjmedia read the variables
    when they initialize, so create them inside); the previous environment comes back after."""
    previous = {key: os.environ.get(key) for key in ("ALSA_CONFIG_PATH", "PULSE_SERVER")}
    with paced_card(directory) as card:
        os.environ.update(card.alsa_environ())
        try:
            yield card
        finally:
            for key, value in previous.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
