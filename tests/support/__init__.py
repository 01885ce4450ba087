"""Reusable test helpers: real SIP peers (kamailio, baresip, sipp) run as subprocesses on 127.0.0.1."""
