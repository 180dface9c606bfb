"""The ``xtalscreen`` command line: a thin skin over the library.

Each sub-command lives in a small module of this package exposing ``register(subparsers)``,
which adds its parser and sets ``func`` to a function ``(args) -> int``. Errors a user can cause
arrive as :class:`xtalscreen.errors.XtalscreenError` and are printed as one line (exit 1); a
``--debug`` flag shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from xtalscreen import __version__
from xtalscreen.errors import XtalscreenError

#: Modules (relative to this package) that register sub-commands, in ``--help`` order.
COMMAND_MODULES = (
    "io_cmds",
    "geom_cmd",
    "demo_cmd",
    "drops_cmd",
    "simulate_cmd",
    "spots_cmds",
    "train_cmds",
    "screen_cmd",
    "web_cmd",
)


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    pass


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xtalscreen",
        description="Decide, fast and reliably, which crystallography images are worth keeping.",
        epilog="Run 'xtalscreen COMMAND --help' for the options and examples of each command.",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"xtalscreen {__version__}")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def add_command(sub, name: str, *, help: str, description: str = "", examples: str = "") -> argparse.ArgumentParser:
    """Add a sub-command parser with the shared formatter, ``--debug`` and an examples epilog."""
    epilog = ("examples:\n" + examples.rstrip()) if examples else None
    p = sub.add_parser(name, help=help, description=description or help, epilog=epilog,
                       formatter_class=_Formatter)
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show Python tracebacks on errors")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = bool(getattr(args, "debug", False)) or os.environ.get("XTALSCREEN_DEBUG") == "1"
    try:
        rc = args.func(args)
        return int(rc or 0)
    except XtalscreenError as exc:
        if debug:
            raise
        print(f"xtalscreen {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except (OSError, MemoryError) as exc:
        if debug:
            raise
        print(f"xtalscreen {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"xtalscreen {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
