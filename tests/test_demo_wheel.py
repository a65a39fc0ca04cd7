"""The demo runs from an installed wheel, anywhere, without a checkout.

The wheel is built from this tree (no build isolation: needs hatchling, which the ``dev``
extra installs) and installed without dependencies into a fresh virtual environment whose
dependencies come from the running environment, so the test needs no network.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("hatchling", reason="building the wheel needs hatchling (dev extra)")
    out = tmp_path_factory.mktemp("dist")
    _run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
        "-q", "-w", out, ROOT,
    )  # fmt: skip
    (built,) = out.glob("opensearch_mm-*.whl")
    return built


def test_the_wheel_ships_the_demo_data(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(n for n in names if n.startswith("opensearch_mm/_examples/"))
    images = sorted(p.name for p in (ROOT / "examples" / "images").iterdir())
    assert shipped == [
        "opensearch_mm/_examples/captions.jsonl",
        *(f"opensearch_mm/_examples/images/{name}" for name in images),
    ]


def test_the_demo_runs_from_an_installed_wheel_in_an_empty_directory(
    wheel: Path, tmp_path: Path
) -> None:
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    _run(
        sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
        "-q", wheel,
    )  # fmt: skip
    # The dependencies: this environment's site-packages, after the venv's own (a plain
    # path line: the editable install's .pth files there are not processed).
    purelib = Path(
        _run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))").strip()
    )
    ours = [sysconfig.get_path("purelib"), *site.getsitepackages()]
    (purelib / "zz_test_dependencies.pth").write_text("\n".join(dict.fromkeys(ours)) + "\n")
    empty = tmp_path / "anywhere"
    empty.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "PYTHONPATH" and not k.startswith(("OPENSEARCH_MM_", "VIRTUAL_ENV"))
    }
    where = _run(
        python, "-c", "import opensearch_mm; print(opensearch_mm.__file__)", cwd=empty, env=env
    )
    assert where.strip().startswith(str(purelib)), where
    out = _run(venv / "bin" / "opensearch-mm", "demo", "--queries", "1", cwd=empty, env=env)
    assert f"examples: 8 images with captions from {purelib / 'opensearch_mm' / '_examples'}" in out
    assert "self-check passed" in out
    assert "no examples found" not in out
    assert list(empty.iterdir()) == []
