"""Endpoint and account creation for the SIP owner thread (the ``_pj_*``
modules are the only ones importing pjsua2). Called once, on the owner thread, before it starts polling."""

from __future__ import annotations

import importlib.metadata
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pjsua2 as pj

from daemon.config import SipConfig
from daemon.sip._pj_calls import OwnerHooks, PjAccount, PjEndpoint
from daemon.sip._pj_log import PjLogWriter, log_config, native_output_to_debug
from daemon.sip._pjsip_log import PjsipLogRouter
from daemon.sip._pjsua_info import (
    PjsuaInfo,
    SoundDevice,
    build_kind,
    choose_sound_device,
    echo_cancellers_in,
    loaded_pj_libraries,
)
from daemon.sip._talk_audio import TalkMediaSettings, talk_media_settings

__all__ = ["TLS_HANDSHAKE_TIMEOUT_MS", "StartInfo", "create_account", "create_endpoint"]

log = logging.getLogger("daemon.sip._pj_owner")  # one logger name for the owner thread's messages

TLS_HANDSHAKE_TIMEOUT_MS = 5000

_TRANSPORTS = {"udp": pj.PJSIP_TRANSPORT_UDP, "tcp": pj.PJSIP_TRANSPORT_TCP, "tls": pj.PJSIP_TRANSPORT_TLS}
# pjsua_contact_rewrite_method (pjsua.h); the binding does not export these names.
_CONTACT_REWRITE_UNREGISTER = 1
_CONTACT_REWRITE_ALWAYS_UPDATE = 4
_SRTP = {
    "disabled": pj.PJMEDIA_SRTP_DISABLED,
    "optional": pj.PJMEDIA_SRTP_OPTIONAL,
    "mandatory": pj.PJMEDIA_SRTP_MANDATORY,
}


@dataclass(frozen=True)
class StartInfo:
    sip_port: int
    sound_device_index: int | None  # the card pjmedia drives (its enumDev2 index), None: the null device
    wake_address: tuple[str, int]  # a UDP transport of ours: a CRLF datagram there ends the current poll
    pjsua: PjsuaInfo
    transport_id: int  # the main SIP transport, the account's

    @property
    def has_sound_device(self) -> bool:
        return self.pjsua.sound_device is not None


def create_endpoint(
    c: SipConfig, log_router: PjsipLogRouter, hooks: OwnerHooks, talk: TalkMediaSettings | None = None
) -> tuple[Any, StartInfo]:
    """Create, configure and start the Endpoint on the calling (owner) thread, with its transports.
    ``talk``: the sound device's echo cancellation and latency (None: off, pjsua's default latency)."""
    talk = talk or talk_media_settings(None)
    ep = PjEndpoint(hooks)
    with native_output_to_debug():  # pjlib prints its start-up lines before any writer can be installed
        ep.libCreate()
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 0  # no pjsua worker: this thread polls
    cfg.uaConfig.mainThreadOnly = True  # DTMF and media callbacks come here too, not to the media thread
    cfg.uaConfig.maxCalls = c.max_calls
    cfg.uaConfig.userAgent = "pi-intercom"
    log_config(cfg, PjLogWriter(log_router))
    # pjsua never closes the device itself: its auto-close fires with a call up but nothing connected (the null
    # device's clock then stopped and no RTP or DTMF left). The owner opens and closes it (MediaCommands.keep_clock).
    cfg.medConfig.sndAutoCloseTime = -1
    # RTP and RTCP sockets on pjsip's ioqueue, read by the owner's libHandleEvents: pjmedia's own ioqueue needs a
    # worker thread ("media") that polls it every 10 ms for ever, 100 wake-ups a second with no call.
    cfg.medConfig.hasIoqueue = False
    cfg.medConfig.threadCnt = 0
    # Talk mode on a sound device: echo cancellation and the card's buffering (docs/audio.md). pjsua2 applies
    # them to the sound-device port only; with the null device they are accepted and do nothing.
    cfg.medConfig.ecTailLen = talk.ec_tail_ms
    cfg.medConfig.ecOptions = talk.ec_options
    cfg.medConfig.sndPlayLatency = talk.play_latency_ms
    cfg.medConfig.sndRecLatency = talk.rec_latency_ms
    # The receive side of every call (docs/audio.md, "The jitter buffer and the call's start").
    cfg.medConfig.noVad = not talk.vad
    _set_jitter_discard(cfg.medConfig, talk.jb_discard)
    with native_output_to_debug():  # a source build lists ALSA devices here: libjack's probe prints
        ep.libInit(cfg)
    tc = pj.TransportConfig()
    tc.port = c.port
    if c.bind_address not in ("", "0.0.0.0"):
        tc.boundAddress = c.bind_address
    if c.transport == "tls":
        tc.tlsConfig.CaListFile = c.tls_ca_file
        tc.tlsConfig.certFile = c.tls_cert_file
        tc.tlsConfig.privKeyFile = c.tls_key_file
        tc.tlsConfig.verifyServer = c.tls_verify_server
        tc.tlsConfig.method = pj.PJSIP_TLSV1_2_METHOD
        # A connection that never completes its handshake is not a transport yet (no state callback, so
        # _pj_connections cannot see it) and would hold one of pjlib's 64 sockets for ever (no timeout by
        # default): closed after this. Also bounds our own connects' handshakes.
        tc.tlsConfig.msecTimeout = TLS_HANDSHAKE_TIMEOUT_MS
    main_tid = ep.transportCreate(_TRANSPORTS[c.transport], tc)
    sip_port = _port_of(ep.transportGetInfo(main_tid).localName)
    wake_host = c.bind_address if c.bind_address not in ("", "0.0.0.0") else "127.0.0.1"
    wake_port = sip_port
    if c.transport != "udp":
        # Only a UDP transport can be woken by a datagram; this one listens on loopback only.
        wc = pj.TransportConfig()
        wc.port = 0
        wc.boundAddress = "127.0.0.1"
        wake_port = _port_of(ep.transportGetInfo(ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, wc)).localName)
        wake_host = "127.0.0.1"
    ep.libStart()
    info, sound_index = _choose_sound_and_describe(ep)
    log.info("sip: %s", info.summary())
    _warn_about_the_build(info, c.max_calls)
    log.info(
        "sip: started on %s port %d (%s)",
        c.transport,
        sip_port,
        f"registrars {', '.join(c.account.registrars)}" if c.account.registrars else "direct IP, no registrar",
    )
    return ep, StartInfo(sip_port, sound_index, (wake_host, wake_port), info, main_tid)


_PJSUA_DEFAULT_JB_DISCARD = 2  # PJMEDIA_JB_DISCARD_PROGRESSIVE


def _set_jitter_discard(media_config: Any, algorithm: int) -> None:
    """``MediaConfig.jbDiscardAlgo``: an int on our build (swig-jb-discard-algo.patch); a build without the patch
    (the wheel, an older cache) exports it as an opaque SWIG pointer, and keeps pjsua's default (progressive)."""
    if not hasattr(pj, "PJMEDIA_JB_DISCARD_NONE"):
        if algorithm == _PJSUA_DEFAULT_JB_DISCARD:
            return
        log.warning(
            "sip: this pjsua2 cannot set the jitter buffer's discard algorithm ([audio] jitter_discard): pjmedia's "
            "progressive discard stays; rebuild pjsua2 (packaging/pjsua2/build.sh)"
        )
        return
    media_config.jbDiscardAlgo = algorithm


def _warn_about_the_build(info: PjsuaInfo, max_calls: int) -> None:
    """What this pjsua2 cannot do that the config or the panel needs, said once at start."""
    if info.build == "wheel":
        log.warning(
            "sip: this is the pjsua2-python wheel, which the daemon does not support (no sound device, so no talk "
            "audio; at most 4 calls): build pjsua2 from source (packaging/pjsua2/build.sh, README)"
        )
    if info.sound_device is None:
        log.warning(
            "sip: no sound device with inputs and outputs; using the null device: calls carry RTP and DTMF, but a "
            "talk call has no audio at the panel (docs/audio.md)"
        )
    if max_calls > info.max_calls:
        log.warning(
            "sip: sip.max_calls is %d but this pjsua2 places at most %d calls at once (PJSUA_MAX_CALLS): a "
            "ring group's legs beyond %d will fail to dial; build pjsua2 with a larger PJSUA_MAX_CALLS",
            max_calls,
            info.max_calls,
            info.max_calls,
        )


def _choose_sound_and_describe(ep: Any) -> tuple[PjsuaInfo, int | None]:
    """Pick the sound device (or the null device) and say which pjsua2 this is. Nothing is opened: the device
    stays closed (``setNoDev``, no conference clock) until a call needs it (MediaCommands.keep_clock)."""
    adm = ep.audDevManager()
    # The position in the list is the device index setCaptureDev takes: AudioDevInfo.id is a SWIG pointer to a
    # pjmedia_aud_dev_index here, and its int() overflowed setCaptureDev on the first real card (the paced one).
    devices = [
        SoundDevice(index, str(d.name), str(d.driver), int(d.inputCount), int(d.outputCount))
        for index, d in enumerate(adm.enumDev2())
    ]
    # Named explicitly when a call opens it: pjmedia's "default" would take the first device with inputs, which
    # may have no outputs (or be a plugin with no channels).
    chosen = choose_sound_device(devices)
    adm.setNoDev()
    try:
        dist = importlib.metadata.distribution("pjsua2-python")
        wheel_files: list[Path] | None = [Path(str(dist.locate_file(f))) for f in dist.files or []]
    except importlib.metadata.PackageNotFoundError:
        wheel_files = None
    info = PjsuaInfo(
        version=str(ep.libVersion().full),
        build=build_kind(str(getattr(getattr(pj, "_pjsua2", None), "__file__", "")), wheel_files),
        # pjsua_config_default() sets max_calls to PJSUA_MAX_CALLS, and pjsua lowers any larger maxCalls to it.
        max_calls=int(pj.UaConfig().maxCalls),
        sound_device=None if chosen is None else f"{chosen.name} ({chosen.driver})",
        echo_cancellers=echo_cancellers_in(loaded_pj_libraries(Path("/proc/self/maps").read_text())),
    )
    return info, None if chosen is None else chosen.id


def create_account(c: SipConfig, transport_id: int, hooks: OwnerHooks, index: int = 0) -> PjAccount:
    """One of the panel's accounts: the one registering with ``registrars[index]`` (or the direct-IP account
    when there is none), with its credentials, retries, keep-alives, media and SRTP settings."""
    a = c.account
    acfg = pj.AccountConfig()
    acfg.idUri = a.uri
    acfg.sipConfig.transportId = transport_id
    if a.registrars:
        registrar = a.registrars[index]
        if c.transport != "udp" and "transport=" not in registrar:
            registrar += f";transport={c.transport}"
        acfg.regConfig.registrarUri = registrar
        acfg.regConfig.timeoutSec = a.register_expiry
        # pjsua's default retry after a failure is 300 s, the same for every panel: a door panel should come
        # back sooner, and a fleet should not come back all in the same second (the random part).
        acfg.regConfig.retryIntervalSec = a.retry_seconds
        acfg.regConfig.firstRetryIntervalSec = a.retry_seconds
        acfg.regConfig.randomRetryIntervalSec = a.retry_jitter_seconds
        acfg.regConfig.delayBeforeRefreshSec = a.refresh_margin_seconds
        acfg.regConfig.dropCallsOnFail = False
    acfg.natConfig.udpKaIntervalSec = a.keepalive_seconds
    # When the panel's address changes (handleIpChange) or the registrar sees it behind another one, remove the
    # old binding before adding the new: pjsua's default keeps it, and the registrar then rings the dead
    # address first (measured with kamailio: the INVITE went to the old contact and the call never arrived).
    acfg.natConfig.contactRewriteMethod = _CONTACT_REWRITE_UNREGISTER | _CONTACT_REWRITE_ALWAYS_UPDATE
    if a.username:
        acfg.sipConfig.authCreds.append(pj.AuthCredInfo("digest", a.realm, a.username, 0, a.password))
    acfg.mediaConfig.transportConfig.port = c.rtp_port
    acfg.mediaConfig.transportConfig.portRange = c.rtp_port_range
    if c.bind_address not in ("", "0.0.0.0"):
        # RTP on the same interface as SIP; otherwise pjsua advertises whatever the hostname resolves to.
        acfg.mediaConfig.transportConfig.boundAddress = c.bind_address
    acfg.mediaConfig.srtpUse = _SRTP[c.srtp]
    acfg.natConfig.sipOutboundUse = 0
    # No re-INVITE after answer just to settle on one codec: one less media restart per call.
    acfg.mediaConfig.lockCodecEnabled = False
    account = PjAccount(hooks, index)
    # Only the first is pjsua's default account (the one answering requests no account matches).
    account.create(acfg, index == 0)
    return account


def _port_of(local_name: str) -> int:
    return int(local_name.rsplit(":", 1)[1])
