"""Tiny test images stored as files, so request bodies are byte-identical everywhere.

(Encoding them at test time would tie cassettes to one Pillow/zlib build.)
"""

from __future__ import annotations

import shutil
from pathlib import Path

DATA = Path(__file__).parent / "data"
COLORS = ("red", "green", "blue", "yellow", "black", "white")


def _path(color: str, fmt: str) -> Path:
    if color not in COLORS:
        raise ValueError(f"no tiny image {color!r}; have {COLORS}")
    return DATA / f"{color}.{fmt}"


def tiny_png(color: str = "red") -> bytes:
    """An 8x8 PNG (about 100 bytes)."""
    return _path(color, "png").read_bytes()


def tiny_jpeg(color: str = "red") -> bytes:
    """An 8x8 JPEG (about 700 bytes)."""
    return _path(color, "jpg").read_bytes()


def tiny_png_file(directory: Path, name: str, color: str = "red") -> Path:
    """Copy the tiny PNG of ``color`` to ``directory/name`` and return the path."""
    target = Path(directory) / name
    shutil.copyfile(_path(color, "png"), target)
    return target
