"""Every Python code block in README.md and docs/*.md runs, against the emulator.

The blocks of one file run in order in one namespace, as a reader would paste them into a
session. What the harness provides, and nothing else:

* the emulator's key and endpoint, in ``OPENSEARCH_MM_API_KEY`` / ``OPENSEARCH_MM_ENDPOINT``
  and in place of the docs' placeholders ``"OS-..."`` and
  ``"ops-cn-hangzhou.opensearch.aliyuncs.com"``;
* a working directory holding a small image at every image path a block names
  (``photos/bike.jpg``, ``cat.jpg``, ...), as a reader's own files would be;
* top-level ``await``, run on a fresh event loop per block;
* no network: a connection to anything but loopback fails the test.

Markers, HTML comments (invisible to readers) on the lines just above a block:

* ``<!-- docs-test: skip REASON -->``: a block that cannot run offline; the reason is
  required and shown in the test output.
* ``<!-- docs-test: setup CODE -->``: one line of code run before the block, for the
  names a fragment takes from its surroundings (``client``, ``texts``). ``emulator`` is
  available to it, to script faults (``emulator.inject("server_error", 1)``) so that the
  error-handling path of a block runs too.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import os
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from opensearch_mm.emulator import Emulator

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
KEY = "sk-docs-0123456789"
PLACEHOLDER_KEY = '"OS-..."'
PLACEHOLDER_ENDPOINT = '"ops-cn-hangzhou.opensearch.aliyuncs.com"'
MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<kind>skip|setup)\b\s*(?P<text>.*?)\s*-->\s*$")
IMAGE_PATH = re.compile(r"""["']((?:[\w.-]+/)*[\w.-]+\.(?:jpg|jpeg|png))["']""")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    source: str
    skip_reason: str | None
    setup: tuple[str, ...]


def python_blocks(path: Path) -> list[Block]:
    """The ```python blocks of a Markdown file, with the skip marker just above each."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        fence = lines[i].strip()
        if fence.startswith("```"):
            lang = fence[3:].strip()
            j = i + 1
            while j < len(lines) and not lines[j].strip().startswith("```"):
                j += 1
            if lang == "python":
                skip: str | None = None
                setup: list[str] = []
                k = i - 1
                while k >= 0 and (not lines[k].strip() or MARKER.match(lines[k])):
                    marker = MARKER.match(lines[k])
                    if marker and marker["kind"] == "skip":
                        skip = marker["text"]
                    elif marker:
                        setup.insert(0, marker["text"])
                    k -= 1
                source = "\n".join(lines[i + 1 : j])
                blocks.append(Block(path, i + 1, source, skip, tuple(setup)))
            i = j + 1
        else:
            i += 1
    return blocks


FILES_WITH_BLOCKS = [p for p in DOC_FILES if python_blocks(p)]


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(api_key=KEY, qps=None, latency_ms=0) as server:
        yield server


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection but to loopback raises (a doc that needs the internet is marked)."""
    real_connect = socket.socket.connect

    def connect(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            host = str(address[0])
            if host not in ("127.0.0.1", "::1", "localhost"):
                raise AssertionError(f"a docs block connected to {address!r}")
        real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)


def _make_images(blocks: list[Block], where: Path) -> None:
    from PIL import Image

    colours = [(200, 40, 40), (40, 160, 60), (40, 60, 200), (220, 200, 40), (120, 40, 160)]
    for n, name in enumerate(
        sorted({m for b in blocks for m in IMAGE_PATH.findall(b.source) if "://" not in m})
    ):
        target = where / name
        target.parent.mkdir(parents=True, exist_ok=True)
        fmt = "JPEG" if name.lower().endswith((".jpg", ".jpeg")) else "PNG"
        Image.new("RGB", (24, 24), colours[n % len(colours)]).save(target, fmt)


def _run(block: Block, namespace: dict[str, Any], emu: Emulator) -> None:
    for line in block.setup:
        exec(line, namespace)
    source = block.source.replace(PLACEHOLDER_KEY, repr(KEY)).replace(
        PLACEHOLDER_ENDPOINT, repr(emu.url)
    )
    where = f"{block.path.relative_to(ROOT)}:{block.line}"
    code = compile(source, where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(code, namespace)
    if inspect.iscoroutine(result):
        asyncio.run(result)


def test_the_harness_finds_the_adapter_docs() -> None:
    names = {p.name for p in FILES_WITH_BLOCKS}
    assert {"README.md", "langchain.md", "llamaindex.md"} <= names


@pytest.mark.parametrize("path", FILES_WITH_BLOCKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_python_blocks_run_against_the_emulator(
    path: Path,
    emu: Emulator,
    offline: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    emu.clear_faults()
    blocks = python_blocks(path)
    _make_images(blocks, tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OPENSEARCH_MM_API_KEY", KEY)
    monkeypatch.setenv("OPENSEARCH_MM_ENDPOINT", emu.url)
    monkeypatch.delenv("OPENSEARCH_MM_WORKSPACE", raising=False)
    namespace: dict[str, Any] = {"__name__": "__docs__", "emulator": emu}
    skipped = []
    for block in blocks:
        if block.skip_reason is not None:
            assert len(block.skip_reason) >= 10, f"{block.path}:{block.line}: say why it is skipped"
            skipped.append(f"line {block.line}: {block.skip_reason}")
            continue
        try:
            _run(block, namespace, emu)
        except Exception as exc:
            raise AssertionError(
                f"{path.relative_to(ROOT)}:{block.line}: the block raised {exc!r}"
            ) from exc
    for note in skipped:
        print(f"skipped {path.name} {note}")
    assert os.getcwd() == str(tmp_path)
