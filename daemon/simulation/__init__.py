"""Simulated panel parts shipped for the demo and reused by the tests: a resident phone, ALSA capture."""
