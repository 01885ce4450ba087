"""Checks that depend on this host, not on the file: directories, addresses, ports, TLS files, GPIO library.

``parse_config`` says whether a file is a valid configuration anywhere; :func:`host_problems` says whether *this*
host can run it, so that ``check-config`` finds what ``run`` would die on (and ``run`` says it with exit 78, a
key and no traceback, instead of failing half-way through start-up). Permission checks are made as the user
running the check: run ``check-config`` as the daemon's user (or root) to see what the service will see.
"""

from __future__ import annotations

import errno
import importlib.util
import os
import shutil
import socket
import subprocess
from pathlib import Path

from daemon.config._model import Config

__all__ = ["CONTROL_SOCKET_NAME", "SUN_PATH_MAX", "host_problems"]

CONTROL_SOCKET_NAME = "control.sock"
SUN_PATH_MAX = 107  # sockaddr_un.sun_path is 108 bytes on Linux, one of them the terminating NUL
# The shipped unit's StateDirectory=/CacheDirectory=/RuntimeDirectory=: systemd creates these at start.
_MADE_BY_SYSTEMD = {
    "state_dir": "/var/lib/intercom",
    "cache_dir": "/var/cache/intercom",
    "runtime_dir": "/run/intercom",
}
_MAX_RECORDING_BYTES = 50 << 20  # a minute of 48 kHz stereo is 11 MB; a prompt is seconds
_PIN_FACTORY_MODULES = {"lgpio": "lgpio", "rpigpio": "RPi.GPIO", "pigpio": "pigpio"}


def host_problems(config: Config) -> list[str]:
    """Every reason this host cannot run ``config``, each naming its key; empty when it can."""
    out: list[str] = []
    for key, default in _MADE_BY_SYSTEMD.items():
        out += _directory_problems(f"paths.{key}", Path(getattr(config.paths, key)), made_by_systemd=default)
    out += _socket_path_problems(Path(config.paths.runtime_dir) / CONTROL_SOCKET_NAME)
    out += _address_problems(config)
    out += _tls_file_problems(config)
    out += _prompt_problems(config)
    out += _control_socket_problems(Path(config.paths.runtime_dir) / CONTROL_SOCKET_NAME)
    module = _PIN_FACTORY_MODULES.get(config.gpio.pin_factory)
    if module is not None and not _importable(module):
        out.append(
            f"gpio.pin_factory: {config.gpio.pin_factory!r} needs the Python module {module}, which is not installed "
            'in the daemon\'s environment; install it or use pin_factory = "auto"'
        )
    return out


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing raises instead of returning None
        return False


def _who() -> str:
    return f"uid {os.geteuid()}"


def _directory_problems(key: str, path: Path, *, made_by_systemd: str) -> list[str]:
    if path.exists() or path.is_symlink():
        if not path.is_dir():
            return [f"{key}: {path} exists and is not a directory"]
        if not os.access(path, os.W_OK | os.X_OK):
            return [f"{key}: {path} is not writable ({_who()}); the daemon keeps files there"]
        return []
    if str(path) == made_by_systemd:
        return []  # the unit's *Directory= setting creates it before the daemon starts
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return [f"{key}: {path} cannot be created: {ancestor} is not a directory"]
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return [f"{key}: {path} does not exist and cannot be created: {ancestor} is not writable ({_who()})"]
    # access() says yes to root everywhere (/proc, a read-only mount): make the first missing directory, and
    # take it away again, to know.
    first_missing = path
    while first_missing.parent != ancestor:
        first_missing = first_missing.parent
    try:
        first_missing.mkdir()
        first_missing.rmdir()
    except OSError as exc:
        return [f"{key}: {path} cannot be created: {exc.strerror or exc}"]
    return []


def _socket_path_problems(path: Path) -> list[str]:
    size = len(os.fsencode(str(path)))
    if size <= SUN_PATH_MAX:
        return []
    return [
        f"paths.runtime_dir: the control socket {path} would be {size} bytes long; a Unix socket path holds at "
        f"most {SUN_PATH_MAX}: choose a shorter runtime_dir"
    ]


def _address_problems(config: Config) -> list[str]:
    sip = config.sip
    address = sip.bind_address or "0.0.0.0"
    kind = socket.SOCK_DGRAM if sip.transport == "udp" else socket.SOCK_STREAM
    out: list[str] = []
    if address != "0.0.0.0":
        failure = _bind_error(address, 0, socket.SOCK_DGRAM)
        if failure == errno.EADDRNOTAVAIL:
            return [f"sip.bind_address: this host has no address {address}; use one of its own or 0.0.0.0"]
        if failure is not None:
            return [f"sip.bind_address: cannot bind {address}: {os.strerror(failure)}"]
    # A port in use is left alone: it may be this very daemon, checking its configuration while it runs.
    failure = _bind_error(address, sip.port, kind)
    if failure in (errno.EACCES, errno.EPERM):
        out.append(
            f"sip.port: {sip.port} needs privileges the daemon does not have (ports below 1024); "
            "use 5060 or another port above 1023"
        )
    return out


def _bind_error(address: str, port: int, kind: socket.SocketKind) -> int | None:
    with socket.socket(socket.AF_INET, kind) as probe:
        try:
            probe.bind((address, port))
        except OSError as exc:
            return exc.errno
    return None


def _tls_file_problems(config: Config) -> list[str]:
    sip = config.sip
    if sip.transport != "tls":
        return []
    out: list[str] = []
    for key in ("tls_ca_file", "tls_cert_file", "tls_key_file"):
        name: str = getattr(sip, key)
        if not name:
            continue
        path = Path(name)
        if not path.is_file():
            out.append(f"sip.{key}: {name!r} does not exist or is not a file")
        elif not os.access(path, os.R_OK):
            out.append(f"sip.{key}: {name!r} is not readable ({_who()})")
    if out:
        return out
    # Loaded the way pjsip's OpenSSL will: a file that is not PEM would otherwise fail the transport at start.
    # Imported here: ssl (OpenSSL) costs ~5 MB of resident memory, and only a TLS config reaches this line.
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if sip.tls_ca_file:
        try:
            context.load_verify_locations(cafile=sip.tls_ca_file)
        except (ssl.SSLError, OSError) as exc:
            out.append(f"sip.tls_ca_file: {sip.tls_ca_file!r} holds no usable PEM certificate: {exc}")
    if sip.tls_cert_file and sip.tls_key_file:
        try:
            context.load_cert_chain(sip.tls_cert_file, sip.tls_key_file)
        except (ssl.SSLError, OSError) as exc:
            out.append(f"sip.tls_cert_file and tls_key_file: not a PEM certificate with its key: {exc}")
    return out


def _prompt_problems(config: Config) -> list[str]:
    # Imported here: daemon.prompts imports this configuration package.
    from daemon.errors import ConfigError
    from daemon.prompts import WavFormatError, parse_wav, to_mono16
    from daemon.prompts._engines import check_piper_model

    prompts = config.prompts
    out: list[str] = []
    espeak = shutil.which("espeak-ng")
    if prompts.engine == "espeak-ng" and espeak is None:
        out.append("prompts.engine: espeak-ng is not installed (apt install espeak-ng), or use engine = 'piper'")
    elif prompts.engine == "espeak-ng" and espeak is not None and prompts.voice:
        out += _espeak_voice_problems(espeak, prompts.voice)
    if prompts.engine == "piper":
        try:
            check_piper_model(prompts.piper_model)
        except ConfigError as exc:
            out += [f"prompts.{p}" for p in exc.problems]
        if not _importable("piper"):
            out.append("prompts.engine: 'piper' is selected but piper-tts is not installed in the daemon's environment")
    for name, recorded in prompts.files.items():
        path = Path(recorded).expanduser()
        try:
            if path.stat().st_size > _MAX_RECORDING_BYTES:
                out.append(f"prompts.files.{name}: {recorded!r} is larger than {_MAX_RECORDING_BYTES:,} bytes")
                continue
            if to_mono16(parse_wav(path.read_bytes(), strict=False)).frames == 0:
                out.append(f"prompts.files.{name}: {recorded!r} has no audio")
        except OSError as exc:
            out.append(f"prompts.files.{name}: cannot read {recorded!r}: {exc.strerror or exc}")
        except WavFormatError as exc:
            out.append(f"prompts.files.{name}: {recorded!r} is not a usable WAV: {exc}")
    return out


def _espeak_voice_problems(espeak: str, voice: str) -> list[str]:
    """`run` synthesizes every prompt before READY and exits 70 on a voice espeak-ng does not have: ask
    espeak-ng itself (voice names with variants, "pt-br+f3", are its business, not a list of ours)."""
    if voice.startswith("-"):
        return [f"prompts.voice: {voice!r} is not a voice name (espeak-ng --voices lists them)"]
    try:
        done = subprocess.run([espeak, "-q", "-v", voice, "."], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [f"prompts.voice: espeak-ng could not be asked about {voice!r}: {exc}"]
    if done.returncode != 0:
        return [f"prompts.voice: espeak-ng has no voice {voice!r} (espeak-ng --voices lists them)"]
    return []


def _control_socket_problems(path: Path) -> list[str]:
    if (path.exists() or path.is_symlink()) and not path.is_socket():
        return [f"paths.runtime_dir: {path} exists and is not a socket; remove it or choose another runtime_dir"]
    return []
