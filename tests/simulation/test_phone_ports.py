"""The simulated phone's ports: a port another process takes between the pick and baresip's bind is picked again.

CI once failed here: baresip's SIP over TLS (the port above its SIP port) found its port taken and the phone did
not start. The ports are checked as a span now, and a start that loses the race picks new ones.
"""

from __future__ import annotations

import socket
from pathlib import Path

from daemon.simulation.phone import Baresip, free_port


def _bound(port: int, kind: socket.SocketKind) -> bool:
    with socket.socket(socket.AF_INET, kind) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def test_free_port_spans_both_protocols() -> None:
    port = free_port(2)
    for p in (port, port + 1):
        assert not _bound(p, socket.SOCK_DGRAM)
        assert not _bound(p, socket.SOCK_STREAM)


def test_a_phone_whose_tls_port_was_taken_meanwhile_starts_on_other_ports(tmp_path: Path) -> None:
    phone = Baresip(tmp_path)
    taken = phone.port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)
        squatter.bind(("127.0.0.1", taken + 1))  # what another process did in CI: its TLS port, just before it
        squatter.listen()
        with phone:
            assert phone.running()
            assert phone.port != taken
            assert f":{phone.port}" in phone.uri
            assert phone.log_text().count("Address already in use") >= 1, "the first attempt did meet the squatter"
