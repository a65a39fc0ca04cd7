"""Run ``opensearch-mm`` as a user does: the installed entry point, in a subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from opensearch_mm.emulator import Emulator

KEY = "sk-cli-SECRET-0123456789abcdef"
DATA = Path(__file__).resolve().parents[1] / "support" / "data"
ROOT = Path(__file__).resolve().parents[2]


def command() -> Path:
    script = Path(sys.executable).parent / "opensearch-mm"
    if not script.exists():  # pragma: no cover - depends on the install
        pytest.skip("the opensearch-mm script is not installed next to this interpreter")
    return script


@dataclass
class Ran:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return self.err.splitlines()


def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    stdin: bytes | Path | None = None,
    stdout: Path | None = None,
    timeout: float = 120,
) -> Ran:
    """``opensearch-mm ARGS`` with no OPENSEARCH_MM_* variables but those in ``env``.

    ``stdin`` is piped in (bytes) or redirected from a file (``< PATH``); ``stdout``, if
    given, is appended to that file (``>> PATH``) instead of captured.
    """
    full = {k: v for k, v in os.environ.items() if not k.startswith("OPENSEARCH_MM_")}
    full.update(env or {})
    with ExitStack() as files:
        source = files.enter_context(stdin.open("rb")) if isinstance(stdin, Path) else None
        sink = files.enter_context(stdout.open("ab")) if stdout is not None else None
        proc = subprocess.run(
            [str(command()), *args],
            env=full,
            cwd=cwd,
            input=stdin if isinstance(stdin, bytes) else None,
            stdin=source,
            stdout=sink if sink is not None else subprocess.PIPE,
            stderr=subprocess.PIPE,
            timeout=timeout,
            check=False,
        )
    out = proc.stdout or b""
    assert KEY.encode() not in out + proc.stderr
    return Ran(proc.returncode, out.decode(), proc.stderr.decode())


def service_env(server: Emulator) -> dict[str, str]:
    return {"OPENSEARCH_MM_ENDPOINT": server.url, "OPENSEARCH_MM_API_KEY": KEY}


def records(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(raw) for raw in path.read_bytes().splitlines() if raw.strip()]


def write_manifest(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def server() -> Iterator[Emulator]:
    with Emulator(api_key=KEY, qps=None, latency_ms=0) as emu:
        yield emu


@pytest.fixture(autouse=True)
def _no_faults_left(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "server" in request.fixturenames:
        request.getfixturevalue("server").clear_faults()
