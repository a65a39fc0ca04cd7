"""Lint, format and type checks run as part of the suite, so CI enforces them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _python_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if listed.returncode != 0 or not listed.stdout.strip():
        pytest.skip("not a git checkout")
    return listed.stdout.split()


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )


def test_ruff_lint_is_clean() -> None:
    result = _run("ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_clean() -> None:
    result = _run("ruff", "format", "--check", *_python_files())
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_is_clean() -> None:
    result = _run("mypy")  # the packages and settings come from pyproject.toml
    assert result.returncode == 0, result.stdout + result.stderr


def test_streams_are_typed_as_closable_generators(tmp_path: Path) -> None:
    # Stopping a stream early is part of its contract (queued requests stay unsent), so a
    # typed caller must be able to call close() / aclose() on what it gets back.
    usage = tmp_path / "usage.py"
    usage.write_text(
        "from typing import assert_type\n"
        "import numpy as np\n"
        "import numpy.typing as npt\n"
        "from opensearch_mm import MultiModalEmbeddingClient\n"
        "\n"
        "def sync(client: MultiModalEmbeddingClient) -> None:\n"
        "    stream = client.embed_iter(['a'])\n"
        "    assert_type(next(stream), list[float])\n"
        "    stream.close()\n"
        "    arrays = client.embed_iter(['a'], as_numpy=True)\n"
        "    assert_type(next(arrays), npt.NDArray[np.float32])\n"
        "\n"
        "async def run(client: MultiModalEmbeddingClient) -> None:\n"
        "    stream = client.aembed_iter(['a'])\n"
        "    assert_type(await anext(stream), list[float])\n"
        "    await stream.aclose()\n"
        "    arrays = client.aembed_iter(['a'], as_numpy=True)\n"
        "    assert_type(await anext(arrays), npt.NDArray[np.float32])\n"
    )
    result = _run("mypy", "--strict", "--python-version", "3.11", str(usage))
    assert result.returncode == 0, result.stdout + result.stderr
