"""``intercomd``: the daemon's command line. The only place an event loop is started (``anyio.run``)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from daemon import __version__
from daemon.config import DEFAULT_CONFIG_PATH, Config, default_config_text, load_config
from daemon.errors import ConfigError, IntercomError

__all__ = ["main"]

EX_CONFIG = 78  # sysexits.h: configuration error
EX_SOFTWARE = 70

log = logging.getLogger("daemon")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="intercomd", description="Building-intercom daemon for the Raspberry Pi.")
    p.add_argument(
        "--config",
        type=Path,
        default=Path(os.environ.get("INTERCOM_CONFIG", DEFAULT_CONFIG_PATH)),
        help=f"TOML configuration file (default {DEFAULT_CONFIG_PATH})",
    )
    p.add_argument("--print-default-config", action="store_true", help="print the example configuration and exit")
    p.add_argument("--log-level", default=os.environ.get("INTERCOM_LOG_LEVEL", "INFO"))
    p.add_argument("--version", action="version", version=f"intercomd {__version__}")
    sub = p.add_subparsers(dest="command")
    sub.add_parser("run", help="run the daemon (the default)")
    sub.add_parser("check-config", help="validate the configuration and exit (status 78 when invalid)")
    demo = sub.add_parser("demo", help="a simulated panel: a visitor rings, the resident answers and opens")
    demo.add_argument("--visits", type=int, default=1, help="how many visits to simulate")
    demo.add_argument("--workdir", type=Path, default=None, help="where the demo keeps its files")
    return p


def _load(path: Path) -> Config:
    config, warnings = load_config(path)
    for warning in warnings:
        log.warning("%s", warning)
    return config


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.print_default_config:
        sys.stdout.write(default_config_text())
        return 0
    from daemon.service import setup_logging

    setup_logging(args.log_level)
    command = args.command or "run"
    if command == "demo":
        from daemon.demo import run_demo

        return run_demo(visits=args.visits, workdir=args.workdir)
    try:
        config = _load(args.config)
    except ConfigError as exc:
        sys.stderr.write(f"intercomd: {exc}\n")
        return EX_CONFIG
    if command == "check-config":
        sys.stdout.write(f"{args.config}: configuration is valid\n")
        return 0
    import anyio

    from daemon.app import run_app

    try:
        anyio.run(run_app, config, args.config)
    except KeyboardInterrupt:
        return 0
    except ConfigError as exc:
        sys.stderr.write(f"intercomd: {exc}\n")
        return EX_CONFIG
    except IntercomError as exc:
        log.critical("intercomd: %s", exc)
        return EX_SOFTWARE
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
