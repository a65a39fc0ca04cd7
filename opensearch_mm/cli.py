"""The ``opensearch-mm`` command: ``demo`` and ``embed``."""

from __future__ import annotations

import argparse
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
    result: int = args.run(args)
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
