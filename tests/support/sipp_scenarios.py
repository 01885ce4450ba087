"""SIPp scenario texts used by :class:`tests.support.peers.Sipp`. ``{...}`` fields are filled by Python.

UAS scenarios answer calls *to* the engine's dial; UAC scenarios place calls *into* the engine.
"""

from __future__ import annotations

import re

__all__ = ["SCENARIOS"]

_HEAD = '<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="{name}">\n'
_TAIL = "</scenario>\n"

_REPLY = """  <send><![CDATA[
SIP/2.0 {code} {reason}
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[local_ip]:[local_port];transport=[transport]>
Content-Length: 0

]]></send>
"""

_OK_SDP = """  <send retrans="500"><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[local_ip]:[local_port];transport=[transport]>
Content-Type: application/sdp
Content-Length: [len]

v=0
o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
]]></send>
"""

_RECV_INVITE = """  <recv request="INVITE">
    <action>
      <ereg regexp=".*" search_in="hdr" header="From:" assign_to="remote_from"/>
      <ereg regexp="sips?:[^>]*" search_in="hdr" header="Contact:" assign_to="remote_contact"/>
      <ereg regexp=".*" search_in="hdr" header="To:" assign_to="local_to"/>
      <ereg regexp="[0-9]+ INVITE" search_in="hdr" header="CSeq:" assign_to="invite_cseq"/>
    </action>
  </recv>
"""

_WAIT_BYE = """  <recv request="BYE"/>
""" + _REPLY.format(code=200, reason="OK").replace("[last_To:];tag=[pid]SIPpTag01[call_number]", "[last_To:]")

_RING = _REPLY.format(code=180, reason="Ringing")


def _uas_refuse(code: int, reason: str) -> str:
    return _RECV_INVITE + _RING + _REPLY.format(code=code, reason=reason) + '  <recv request="ACK"/>\n'


_UAS_NEVER_ANSWER = (
    _RECV_INVITE
    + _RING
    + """  <recv request="CANCEL"/>
"""
    + _REPLY.format(code=200, reason="OK")
    + _REPLY.format(code=487, reason="Request Terminated").replace("[last_CSeq:]", "CSeq: [$invite_cseq]")
    + '  <recv request="ACK"/>\n'
)

# Never answers anything: no 100, no 180, no final response (a far end that is gone, or a black hole).
# Retransmitted INVITEs are taken in a loop until 40 s pass without one.
_UAS_IGNORE_INVITE = """  <label id="again"/>
  <recv request="INVITE" next="again" timeout="40000" ontimeout="end"/>
  <label id="end"/>
"""

# Rings, then ignores the CANCEL (and its retransmissions): no 200 to the CANCEL, no 487 to the INVITE.
_UAS_RING_IGNORE_CANCEL = (
    _RECV_INVITE
    + _RING
    + """  <label id="again"/>
  <recv request="CANCEL" next="again" timeout="40000" ontimeout="end"/>
  <label id="end"/>
"""
)

_UAS_INFO_DTMF = (
    _RECV_INVITE
    + _RING
    + _OK_SDP
    + """  <recv request="ACK"/>
  <pause milliseconds="300"/>
  <send retrans="500"><![CDATA[
INFO [$remote_contact] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: [$local_to];tag=[pid]SIPpTag01[call_number]
To: [$remote_from]
[last_Call-ID:]
CSeq: 1 INFO
Max-Forwards: 70
Contact: <sip:sipp@[local_ip]:[local_port]>
Content-Type: application/dtmf-relay
Content-Length: [len]

Signal={digit}
Duration=160
]]></send>
  <recv response="200"/>
"""
    + _WAIT_BYE
)

# Answers, then hangs up after a random 0.05-0.8 s unless the engine hangs up first (an unexpected BYE
# arriving during the pause is answered by sipp's default behaviour, and the call counted as failed).
_UAS_ANSWER_RANDOM_BYE = (
    _RECV_INVITE
    + _OK_SDP
    + """  <recv request="ACK">
    <action><sample assign_to="hold" distribution="uniform" min="50" max="800"/></action>
  </recv>
  <pause variable="hold"/>
  <send retrans="500"><![CDATA[
BYE [$remote_contact] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: [$local_to];tag=[pid]SIPpTag01[call_number]
To: [$remote_from]
[last_Call-ID:]
CSeq: 2 BYE
Max-Forwards: 70
Contact: <sip:sipp@[local_ip]:[local_port]>
Content-Length: 0

]]></send>
  <recv response="200"/>
"""
)

# Answers with SDP, then sends no RTP at all until the engine's BYE: "media never arrives". (sipp sends RTP
# only when a scenario asks it to, or with -rtp_echo; neither is used here.)
_UAS_ANSWER_SILENT = _RECV_INVITE + _RING + _OK_SDP + '  <recv request="ACK"/>\n' + _WAIT_BYE

# Answers, then takes one re-INVITE (the panel's new address after handleIpChange: its Contact and SDP), answers
# it with SDP (to the re-INVITE's Via: sipp would answer the call's first address, now gone), and then sends a
# DTMF digit as SIP INFO to the Contact the re-INVITE named: it arrives only if the dialog followed the panel to
# its new address. Then waits for the BYE.
_UAS_ANSWER_REINVITE = (
    _RECV_INVITE
    + _RING
    + _OK_SDP
    + """  <recv request="ACK"/>
  <recv request="INVITE">
    <action>
      <ereg regexp="sips?:[^>]*" search_in="hdr" header="Contact:" assign_to="new_contact"/>
      <ereg regexp="UDP ([0-9.]+):([0-9]+)" search_in="hdr" header="Via:" assign_to="via,via_host,via_port"/>
      <setdest host="[$via_host]" port="[$via_port]" protocol="udp"/>
    </action>
  </recv>
"""
    # (X-Via: sipp refuses a variable never used, and the regexp's whole match is one.)
    + _OK_SDP.replace("[last_To:];tag=[pid]SIPpTag01[call_number]", "[last_To:]\nX-Via: [$via]")
    + """  <recv request="ACK"/>
  <send retrans="500"><![CDATA[
INFO [$new_contact] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: [$local_to];tag=[pid]SIPpTag01[call_number]
To: [$remote_from]
[last_Call-ID:]
CSeq: 1 INFO
Max-Forwards: 70
Contact: <sip:sipp@[local_ip]:[local_port]>
Content-Type: application/dtmf-relay
Content-Length: [len]

Signal={digit}
Duration=160
]]></send>
  <recv response="200"/>
"""
    + _WAIT_BYE
)

_INVITE = """  <send retrans="500"><![CDATA[
INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:{caller}@127.0.0.1>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:{caller}@[local_ip]:[local_port]>
Max-Forwards: 70
{body}
]]></send>
"""

_SDP_BODY = """Content-Type: application/sdp
Content-Length: [len]

v=0
o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0
a=rtpmap:0 PCMU/8000"""

_ACK = """  <send><![CDATA[
ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:{caller}@127.0.0.1>;tag=[pid]SIPpTag00[call_number]
[last_To:]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
"""

_PROVISIONALS = """  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
"""


def _uac_expect(status: int, *, sdp: bool) -> str:
    body = _SDP_BODY if sdp else "Content-Length: 0\n"
    return _INVITE.replace("{body}", body) + _PROVISIONALS + f'  <recv response="{status}"/>\n' + _ACK


_UAC_ANSWERED = (
    _INVITE.replace("{body}", _SDP_BODY)
    + _PROVISIONALS
    + """  <recv response="200" rrs="true"/>
"""
    + _ACK
    + """  <pause milliseconds="{hold_ms}"/>
  <send retrans="500"><![CDATA[
BYE [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:{caller}@127.0.0.1>;tag=[pid]SIPpTag00[call_number]
[last_To:]
Call-ID: [call_id]
CSeq: 2 BYE
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200"/>
"""
)

SCENARIOS: dict[str, str] = {
    "uas_busy": _uas_refuse(486, "Busy Here"),
    "uas_decline": _uas_refuse(603, "Decline"),
    "uas_not_found": _uas_refuse(404, "Not Found"),
    "uas_unavailable": _uas_refuse(480, "Temporarily Unavailable"),
    "uas_never_answer": _UAS_NEVER_ANSWER,
    "uas_ignore_invite": _UAS_IGNORE_INVITE,
    "uas_ring_ignore_cancel": _UAS_RING_IGNORE_CANCEL,
    "uas_info_dtmf": _UAS_INFO_DTMF,
    "uas_answer_random_bye": _UAS_ANSWER_RANDOM_BYE,
    "uas_answer_silent": _UAS_ANSWER_SILENT,
    "uas_answer_reinvite": _UAS_ANSWER_REINVITE,
    "uac_expect_refusal": _uac_expect(0, sdp=True).replace('response="0"', 'response="{status}"'),
    "uac_no_sdp_expect_refusal": _uac_expect(0, sdp=False).replace('response="0"', 'response="{status}"'),
    "uac_answered": _UAC_ANSWERED,
}


def render(name: str, **fields: object) -> str:
    """The full XML of scenario ``name``; ``fields`` fill its ``{...}`` placeholders."""
    body = SCENARIOS[name]
    for key, value in fields.items():
        body = body.replace("{" + key + "}", str(value))
    # sipp refuses a variable that is assigned but never used: keep only the captures this scenario uses.
    kept = []
    for line in body.splitlines(keepends=True):
        m = re.search(r'assign_to="(\w+)"', line)
        if m and "<ereg" in line and f"[${m.group(1)}]" not in body:
            continue
        kept.append(line)
    body = "".join(kept)
    if "<action>\n    </action>" in body:
        body = body.replace("\n    <action>\n    </action>\n  </recv>", "/>").replace(
            '<recv request="INVITE">/>', '<recv request="INVITE"/>'
        )
    return _HEAD.replace("{name}", name) + body + _TAIL
