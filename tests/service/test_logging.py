"""Journald-aware logging: priority-prefixed lines, the native protocol with VISIT_ID, the plain fallback."""

from __future__ import annotations

import io
import logging
import os
import socket
import struct
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.service import JournalFormatter, JournalHandler, setup_logging, under_journal


def record(level: int, msg: str, *, exc: bool = False, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("daemon.flow", level, "/x/flow.py", 42, msg, None, None, func="step")
    if exc:
        try:
            raise ValueError("bad relay")
        except ValueError:
            rec.exc_info = sys.exc_info()
    rec.__dict__.update(extra)
    return rec


@pytest.mark.parametrize(
    ("level", "prefix"),
    [
        (logging.CRITICAL, "<2>"),
        (logging.ERROR, "<3>"),
        (logging.WARNING, "<4>"),
        (logging.INFO, "<6>"),
        (logging.DEBUG, "<7>"),
    ],
)
def test_journal_formatter_priority_prefix(level: int, prefix: str) -> None:
    assert JournalFormatter("%(message)s").format(record(level, "hello")) == f"{prefix}daemon.flow: hello"


def test_journal_formatter_puts_the_visit_in_the_line() -> None:
    fmt = JournalFormatter("%(message)s")
    assert fmt.format(record(logging.INFO, "ringing 101", visit="v42")) == "<6>daemon.flow: [visit v42] ringing 101"
    # the visit log's own attribute name, and its "-" for "no visit"
    assert fmt.format(record(logging.INFO, "x", visit_id="v7")) == "<6>daemon.flow: [visit v7] x"
    assert fmt.format(record(logging.INFO, "x", visit_id="-")) == "<6>daemon.flow: x"


def test_journal_formatter_prefixes_every_traceback_line() -> None:
    lines = JournalFormatter("%(message)s").format(record(logging.ERROR, "relay failed", exc=True)).splitlines()
    assert lines[0] == "<3>daemon.flow: relay failed"
    assert all(line.startswith("<3>daemon.flow: ") for line in lines)
    assert lines[-1] == "<3>daemon.flow: ValueError: bad relay"


@pytest.fixture
def stderr_file() -> Iterator[io.TextIOWrapper]:
    with tempfile.TemporaryFile("w+") as f:
        yield f


def journal_env(f: io.TextIOWrapper) -> dict[str, str]:
    st = os.fstat(f.fileno())
    return {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}


def test_under_journal_compares_the_stream_with_journal_stream(stderr_file: io.TextIOWrapper) -> None:
    assert under_journal(journal_env(stderr_file), stderr_file)
    assert not under_journal({}, stderr_file)
    assert not under_journal({"JOURNAL_STREAM": "1:2"}, stderr_file)  # stderr redirected away from the journal


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for h in root.handlers[:]:
        if h not in handlers:
            root.removeHandler(h)
            h.close()
    root.setLevel(level)


@pytest.mark.usefixtures("restore_root_logger")
def test_setup_logging_under_systemd_without_native_socket(stderr_file: io.TextIOWrapper, tmp_path: Path) -> None:
    setup_logging("INFO", environ=journal_env(stderr_file), stream=stderr_file, journal_socket=tmp_path / "none")
    logging.getLogger("daemon.sip").warning("registration lost", extra={"visit": "v9"})
    logging.getLogger("daemon.sip").debug("not shown at INFO")
    stderr_file.seek(0)
    assert stderr_file.read() == "<4>daemon.sip: [visit v9] registration lost\n"


@pytest.mark.usefixtures("restore_root_logger")
def test_setup_logging_plain_has_timestamps_and_visit() -> None:
    out = io.StringIO()
    handler = setup_logging("DEBUG", environ={}, stream=out)
    logging.getLogger("daemon.flow").info("door opened", extra={"visit": "v3"})
    logging.getLogger("daemon.flow").info("idle")
    handler.flush()  # INFO is written a moment later (daemon.logwriter)
    first, second = out.getvalue().splitlines()
    assert first.endswith(" INFO    daemon.flow: [visit v3] door opened")
    assert first[:4].isdigit()  # starts with the date
    assert second.endswith(" INFO    daemon.flow: idle")


@pytest.mark.usefixtures("restore_root_logger")
def test_setup_logging_replaces_its_own_handler() -> None:
    first = setup_logging("INFO", environ={}, stream=io.StringIO())
    second = setup_logging("INFO", environ={}, stream=io.StringIO())
    handlers = logging.getLogger().handlers
    assert second in handlers
    assert first not in handlers


def parse_native(data: bytes) -> dict[str, str]:
    """The journal native protocol, as journald reads it."""
    fields: dict[str, str] = {}
    while data:
        head, _, rest = data.partition(b"\n")
        if b"=" in head:
            key, _, value = head.partition(b"=")
            fields[key.decode()] = value.decode()
            data = rest
        else:
            (size,) = struct.unpack("<Q", rest[:8])
            fields[head.decode()] = rest[8 : 8 + size].decode()
            assert rest[8 + size : 9 + size] == b"\n"
            data = rest[9 + size :]
    return fields


@pytest.fixture
def journal_socket() -> Iterator[tuple[socket.socket, Path]]:
    with tempfile.TemporaryDirectory(prefix="ic-") as d, socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        path = Path(d) / "journal.sock"
        sock.bind(str(path))
        sock.settimeout(2)
        yield sock, path


@pytest.mark.usefixtures("restore_root_logger")
def test_native_journal_carries_visit_id_as_a_field(
    journal_socket: tuple[socket.socket, Path], stderr_file: io.TextIOWrapper
) -> None:
    sock, path = journal_socket
    handler = setup_logging("INFO", environ=journal_env(stderr_file), stream=stderr_file, journal_socket=path)
    assert isinstance(handler.target, JournalHandler)
    logging.getLogger("daemon.flow").info("ringing %s", "101", extra={"visit": "v42"})
    fields = parse_native(sock.recv(65536))
    assert fields["MESSAGE"] == "ringing 101"
    assert fields["PRIORITY"] == "6"
    assert fields["VISIT_ID"] == "v42"
    assert fields["SYSLOG_IDENTIFIER"] == "intercomd"
    assert fields["LOGGER"] == "daemon.flow"
    assert fields["CODE_FUNC"] == "test_native_journal_carries_visit_id_as_a_field"

    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("daemon.flow").exception("multi\nline")
    fields = parse_native(sock.recv(65536))
    assert fields["MESSAGE"].startswith("multi\nline\nTraceback")  # the binary-safe form keeps newlines
    assert "VISIT_ID" not in fields
    assert fields["PRIORITY"] == "3"


@pytest.mark.usefixtures("restore_root_logger")
def test_native_journal_falls_back_to_stderr_when_journald_is_gone(
    journal_socket: tuple[socket.socket, Path], stderr_file: io.TextIOWrapper
) -> None:
    _, path = journal_socket
    setup_logging("INFO", environ=journal_env(stderr_file), stream=stderr_file, journal_socket=path)
    path.unlink()  # journald restarting
    logging.getLogger("daemon.app").error("relay stuck", extra={"visit": "v1"})
    stderr_file.seek(0)
    assert stderr_file.read() == "<3>daemon.app: [visit v1] relay stuck\n"
