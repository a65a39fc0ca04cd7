"""The ``opensearch-mm`` command: ``demo`` and ``embed``."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence

from ._version import __version__

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="opensearch-mm",
        description="Multimodal embeddings from Alibaba Cloud AI Search Open Platform.",
    )
    parser.add_argument("--version", action="version", version=f"opensearch-mm {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    from . import bulk, demo

    demo.add_parser(commands)
    bulk.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.run(args)
    except KeyboardInterrupt:
        # A Ctrl-C the command did not take as its own: most often a second one while
        # the first waits for the requests out to end (what was written is closed by
        # then). Out at once, with no traceback: exiting the usual way would wait for the
        # requests again (the interpreter joins the threads sending them).
        print("interrupted: stopped without waiting for the requests out", file=sys.stderr)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(130)
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
