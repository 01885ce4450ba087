"""The registrar book's decisions, without a network: which registrar is in use and how a dial is routed."""

from __future__ import annotations

from daemon.sip._registrars import RegisterReply, RegistrarBook
from daemon.sip.types import RegistrationFailure, RegistrationSnapshot

FIRST, SECOND = "sip:10.0.0.2", "sip:10.0.0.3:5070"


def _both_registered(now: float = 0.0) -> RegistrarBook:
    book = RegistrarBook((FIRST, SECOND), failover_seconds=5, now=now)
    for state in book.states:
        state.probed = True
    book.on_registration(0, True, 200, "OK", 300, now=now)
    book.on_registration(1, True, 200, "OK", 300, now=now)
    return book


def test_the_first_registered_is_in_use() -> None:
    book = _both_registered()
    assert book.active == 0
    assert book.snapshot().registrar == FIRST


def test_a_failed_registration_passes_over_at_once() -> None:
    book = _both_registered()
    book.on_registration(0, False, 408, "Request Timeout", 0, now=1.0)
    assert book.active == 1
    assert book.route("sip:101@10.0.0.2") == (1, "sip:101@10.0.0.3:5070")


def test_silence_passes_over_after_failover_seconds_only() -> None:
    book = _both_registered()
    book.on_answer(1, 4.0)
    assert book.check(5.0) == []  # exactly the period: not yet
    assert book.check(5.1) == [0]
    assert book.active == 1
    # Back: re-register first (it may have lost the binding), and only then use it again.
    assert book.on_answer(0, 6.0) is True
    assert book.active == 1
    book.on_registration(0, True, 200, "OK", 300, now=6.1)
    assert book.active == 0


def test_direct_ip_residents_are_dialled_as_they_are() -> None:
    book = _both_registered()
    assert book.route("sip:101@10.0.0.50:5062") == (0, "sip:101@10.0.0.50:5062")
    for index in (0, 1):
        book.on_registration(index, False, 503, "Service Unavailable", 0, now=1.0)
    assert book.active is None
    assert not book.snapshot(1).active and book.snapshot(1).registrar == SECOND
    assert book.route("sip:101@10.0.0.50:5062") == (0, "sip:101@10.0.0.50:5062")
    assert book.route("sip:101@10.0.0.2") == (0, "sip:101@10.0.0.2")  # nothing better to try


def test_the_default_port_matches_an_explicit_5060() -> None:
    book = _both_registered()
    book.on_registration(0, False, 503, "Service Unavailable", 0, now=1.0)
    assert book.route("sip:101@10.0.0.2:5060;transport=udp") == (1, "sip:101@10.0.0.3:5070;transport=udp")


def test_a_registrar_that_is_not_probed_never_falls_silent() -> None:
    # Over TCP/TLS (or a name that did not resolve) nothing is probed: its answers come only at refreshes,
    # minutes apart, and silence between them means nothing.
    book = RegistrarBook((FIRST, SECOND), failover_seconds=5, now=0.0)
    book.on_registration(0, True, 200, "OK", 300, now=0.0)
    assert book.check(1000.0) == []
    assert book.active == 0


def test_one_registrar_is_never_passed_over_but_an_answer_after_an_outage_registers_again() -> None:
    book = RegistrarBook((FIRST,), failover_seconds=5, now=0.0)
    book.states[0].probed = True
    book.on_registration(0, True, 200, "OK", 300, now=0.0)
    assert book.check(100.0) == []  # silence alone: the registration decides (no false "out of service")
    book.on_registration(0, False, 408, "Request Timeout", 0, now=100.0)
    assert book.on_answer(0, 130.0) is True  # the outage ended: register now, not at pjsua's retry
    assert book.on_answer(0, 131.0) is False  # once per failover period
    assert book.on_answer(0, 136.0) is True


def test_a_refused_registration_is_left_to_pjsuas_retry() -> None:
    book = RegistrarBook((FIRST,), failover_seconds=5, now=0.0)
    book.on_registration(0, False, 403, "Forbidden", 0, now=1.0)
    assert book.on_answer(0, 10.0) is False  # wrong credentials are not hammered into the PBX


def test_a_local_transport_error_is_typed_not_a_sip_status() -> None:
    # pjsip's made-up "503 <error text>" (no response received) is a transport failure with no SIP status...
    assert RegisterReply(0, 503, "Invalid argument", responded=False).classify(False) == (
        0,
        "transport error: Invalid argument",
        RegistrationFailure.TRANSPORT,
    )
    # ...and so is a REGISTER pjsip could not send at all (its own status non-zero).
    assert RegisterReply(70022, 0, "Invalid argument", responded=False).classify(False)[2] is (
        RegistrationFailure.TRANSPORT
    )
    # A registrar's own 503 is its answer; pjsip's timeout is "no answer"; a 200 is no failure.
    assert RegisterReply(0, 503, "Service Unavailable", responded=True).classify(False) == (
        503,
        "Service Unavailable",
        RegistrationFailure.REFUSED,
    )
    assert RegisterReply(0, 408, "Request Timeout", responded=False).classify(False)[2] is RegistrationFailure.NO_ANSWER
    assert RegisterReply(0, 200, "OK", responded=True).classify(True) == (200, "OK", RegistrationFailure.NONE)
    assert RegisterReply(0, 200, "OK", responded=True).classify(False)[2] is RegistrationFailure.NONE  # unregistered
    # pjsip's own status with a response: a 401 it had no credential for. A refusal, not a transport error.
    assert RegisterReply(171100, 401, "Unauthorized", responded=True).classify(False)[2] is RegistrationFailure.REFUSED


def test_a_transport_failure_fails_over_and_an_answer_after_it_registers_again() -> None:
    book = RegistrarBook((FIRST, SECOND), failover_seconds=5, now=0.0)
    book.states[0].probed = True
    book.on_registration(1, True, 200, "OK", 300, now=0.0)
    reason = "transport error: Invalid argument"
    book.on_registration(0, False, 0, reason, 0, now=0.0, failure=RegistrationFailure.TRANSPORT)
    assert book.active == 1  # passed over at once, as a 503 was
    assert book.states[0].unreachable  # not a refusal: no status code says so any more, the failure kind does
    assert book.on_answer(0, 10.0) is True  # it answers a probe: register with it now
    book.states[1].registered = False
    assert book.snapshot(0) == RegistrationSnapshot(True, False, 0, reason, 0, FIRST, RegistrationFailure.TRANSPORT)
