"""``intercomd``: the daemon's command line. The only place an event loop is started (``anyio.run``).

A user's mistake (a bad file, a bad option, a host that cannot run the configuration) is one message and exit
status 78 (``EX_CONFIG``: systemd's ``RestartPreventExitStatus=78`` then stops retrying), never a traceback.
``check-config`` runs exactly the checks ``run`` runs before starting anything.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path
from typing import NoReturn

from daemon import __version__
from daemon.config import DEFAULT_CONFIG_PATH, check_config, default_config_text
from daemon.errors import ConfigError, IntercomError

__all__ = ["LOG_LEVELS", "main"]

EX_CONFIG = 78  # sysexits.h: configuration error
EX_SOFTWARE = 70
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

log = logging.getLogger("daemon")


class _Parser(argparse.ArgumentParser):
    """Usage errors exit 78 like configuration errors: under systemd a wrong option in ``ExecStart=`` is one,
    and any other status would have the unit restart the daemon forever."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EX_CONFIG, f"{self.prog}: error: {message}\n")


def _global_options(p: argparse.ArgumentParser, *, defaults: bool) -> None:
    """The options every command takes. Subcommands take them too (``intercomd check-config --config F``),
    with no defaults of their own so that they never overwrite one given before the subcommand."""

    def default(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    p.add_argument(
        "--config",
        type=Path,
        default=default(Path(os.environ.get("INTERCOM_CONFIG", DEFAULT_CONFIG_PATH))),
        help=f"TOML configuration file (default {DEFAULT_CONFIG_PATH}, or $INTERCOM_CONFIG)",
    )
    p.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        default=default(os.environ.get("INTERCOM_LOG_LEVEL", "INFO")),
        help="log level (default INFO, or $INTERCOM_LOG_LEVEL)",
    )


MAX_DEMO_VISITS = 1000  # history shows at most 1,000 rows; the demo checks each visit in it


def _visit_count(text: str) -> int:
    # A usage error (exit 78) rather than -1 running nothing and 10**20 ending in a TimeoutError traceback.
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= count <= MAX_DEMO_VISITS:
        raise argparse.ArgumentTypeError(f"must be 1..{MAX_DEMO_VISITS}")
    return count


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="intercomd", description="Building-intercom daemon for the Raspberry Pi.")
    _global_options(p, defaults=True)
    p.add_argument("--print-default-config", action="store_true", help="print the example configuration and exit")
    p.add_argument("--version", action="version", version=f"intercomd {__version__}")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    _global_options(sub.add_parser("run", help="run the daemon (the default)"), defaults=False)
    _global_options(
        sub.add_parser("check-config", help="validate the configuration and exit (status 78 when invalid)"),
        defaults=False,
    )
    hash_pin = sub.add_parser("hash-pin", help="read a PIN (terminal or stdin) and print its [[pins]] pin_hash line")
    _global_options(hash_pin, defaults=False)
    hash_pin.add_argument("--salt", default=None, help="the panel's salt (default: [access] salt of --config)")
    demo = sub.add_parser("demo", help="a simulated panel: a visitor rings, the resident answers and opens")
    _global_options(demo, defaults=False)
    demo.add_argument(
        "--visits", type=_visit_count, default=1, help=f"how many visits to simulate (1..{MAX_DEMO_VISITS})"
    )
    demo.add_argument("--workdir", type=Path, default=None, help="where the demo keeps its files")
    demo.add_argument(
        "--audio",
        choices=("paced", "file", "host"),
        default=None,
        help="the panel's sound card: a paced virtual card (default when PulseAudio is installed), "
        "an ALSA file capture, or this machine's own card",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if (args.command or "run") == "run":
        # Until the app's handler takes SIGHUP over (handle_signals), its default action would end the daemon:
        # a `kill -HUP` during the seconds of start-up (prompt synthesis) killed it. There is nothing to reload
        # yet: the file is being read now.
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if args.print_default_config:
        sys.stdout.write(default_config_text())
        return 0
    level = str(args.log_level).upper()
    if level not in LOG_LEVELS:  # only a default from $INTERCOM_LOG_LEVEL gets here unchecked
        sys.stderr.write(f"intercomd: INTERCOM_LOG_LEVEL: {args.log_level!r} is not a log level; accepted: ")
        sys.stderr.write(f"{', '.join(LOG_LEVELS)}\n")
        return EX_CONFIG
    from daemon.service import setup_logging

    setup_logging(level)
    command = args.command or "run"
    if command == "hash-pin":
        from daemon.hash_pin import run_hash_pin

        return run_hash_pin(args.config, args.salt)
    if command == "demo":
        from daemon.demo import run_demo

        return run_demo(visits=args.visits, workdir=args.workdir, audio=args.audio)
    try:
        config, warnings = check_config(args.config)
    except ConfigError as exc:
        sys.stderr.write(f"intercomd: {exc}\n")
        return EX_CONFIG
    for warning in warnings:
        log.warning("%s", warning)
    if command == "check-config":
        sys.stdout.write(f"{args.config}: configuration is valid\n")
        return 0
    import anyio

    from daemon.app import run_app

    try:
        anyio.run(run_app, config, args.config)
    except KeyboardInterrupt:
        return 0
    except (IntercomError, BaseExceptionGroup) as raised:
        ours = _our_error(raised)
        if ours is None:
            raise  # a bug: its traceback is what the journal needs
        if isinstance(ours, ConfigError):
            sys.stderr.write(f"intercomd: {ours}\n")
            return EX_CONFIG
        log.critical("intercomd: %s", ours)
        return EX_SOFTWARE
    return 0


def _our_error(raised: BaseException) -> IntercomError | None:
    """The daemon's own error behind ``raised``. Errors raised inside the app's task groups arrive wrapped in
    (nested) exception groups: "another intercomd is already listening" is still one line, not a traceback.
    None when anything else is in the group (then it is a bug, and its traceback is wanted)."""
    if isinstance(raised, IntercomError):
        return raised
    if isinstance(raised, BaseExceptionGroup):
        found = [_our_error(e) for e in raised.exceptions]
        if found and all(e is not None for e in found):
            return found[0]
    return None


if __name__ == "__main__":
    raise SystemExit(main())
