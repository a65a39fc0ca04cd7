"""``python -m opensearch_mm.emulator`` as a user meets it: one line, never a traceback,
for a busy port or a core-only install (no numpy)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _emulator(*args: str, pythonpath: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    paths = [*(pythonpath or []), str(ROOT), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return subprocess.run(
        [sys.executable, "-m", "opensearch_mm.emulator", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_busy_port_is_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = _emulator("--port", str(port))
    assert proc.returncode == 1
    assert proc.stderr == (
        f"opensearch-mm emulator: port {port} is in use on 127.0.0.1; "
        "pick another with --port (0: any)\n"
    )
    assert proc.stdout == ""


def test_without_numpy_the_extra_is_named_in_one_line(tmp_path: Path) -> None:
    # A numpy that cannot be imported, as on a core-only install.
    (tmp_path / "numpy").mkdir()
    (tmp_path / "numpy" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'numpy'\", name='numpy')\n"
    )
    proc = _emulator("--port", "0", pythonpath=[str(tmp_path)])
    assert proc.returncode == 2
    assert proc.stderr == (
        "opensearch-mm emulator: the emulator needs numpy: pip install 'opensearch-mm[emulator]'\n"
    )
    # the core itself still imports
    check = subprocess.run(
        [sys.executable, "-c", "import opensearch_mm, opensearch_mm.emulator; print('ok')"],
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.stdout == "ok\n", check.stderr
