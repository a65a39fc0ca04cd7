"""The example scripts run offline (local emulator) and against configured credentials."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from opensearch_mm.emulator import Emulator

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ENV = ("OPENSEARCH_MM_API_KEY", "OPENSEARCH_MM_ENDPOINT", "OPENSEARCH_MM_WORKSPACE")
KEY = "examples-test-key-0987654321"

# script -> lines its output must contain when run against the local emulator
SCRIPTS: dict[str, list[str]] = {
    "quickstart.py": [
        "model ops-m2-encoder: 768 dimensions",
        "embed_texts: 2 vectors of 768 floats",
        "embed_images: 2 vectors",
        "embed: 3 vectors, usage: 31 tokens + 1 image(s), 1 request(s), 1 reused",
        "cat.png as bytes vs as a path: 1.0000",
    ],
    "langchain_chroma_example.py": [
        "indexed 8 images with Chroma.add_images (embed_image)",
        "text -> image: 'a cartoon cat'",
        "image -> image: cat.png\n  cat.png\n",
    ],
    "llamaindex_multimodal.py": [
        "indexed 8 images and 8 captions",
        "text -> image: 'a yellow star'",
        "image -> image: yellow_star.png\n  +1.0000  yellow_star.png\n",
        "image -> text: yellow_star.png",
    ],
}
NEEDS = {"langchain_chroma_example.py": "langchain_chroma"}


def _run(script: str, cwd: Path, extra_env: dict[str, str] | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ENV}
    env.update(extra_env or {})
    env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def _skip_without_dependency(script: str) -> None:
    if script in NEEDS:
        pytest.importorskip(NEEDS[script])


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_example_runs_offline_with_the_emulator(script: str, tmp_path: Path) -> None:
    _skip_without_dependency(script)
    out = _run(script, cwd=tmp_path)  # not from the repository: paths must not depend on cwd
    assert out.startswith("no credentials: using the local emulator (vectors are NOT semantic)")
    for expected in SCRIPTS[script]:
        assert expected in out


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_example_uses_credentials_from_the_environment(script: str, tmp_path: Path) -> None:
    _skip_without_dependency(script)
    with Emulator(api_key=KEY) as service:  # stands in for the real service
        out = _run(
            script,
            cwd=tmp_path,
            extra_env={
                "OPENSEARCH_MM_ENDPOINT": service.url,
                "OPENSEARCH_MM_API_KEY": KEY,
                "OPENSEARCH_MM_WORKSPACE": "example-ws",
            },
        )
        log = service.requests_log
    assert "no credentials" not in out
    assert KEY not in out
    assert log, "the script did not call the configured endpoint"
    assert {r.status for r in log} == {200}
    assert {r.path for r in log} == {
        "/v3/openapi/workspaces/example-ws/multi-modal-embedding/ops-m2-encoder"
    }


def test_make_images_reproduces_the_committed_examples(tmp_path: Path) -> None:
    pytest.importorskip("PIL")
    shutil.copy(EXAMPLES / "make_images.py", tmp_path / "make_images.py")
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "make_images.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "captions.jsonl").read_text() == (EXAMPLES / "captions.jsonl").read_text()
    made = sorted(p.name for p in (tmp_path / "images").iterdir())
    assert made == sorted(p.name for p in (EXAMPLES / "images").iterdir())
    for name in made:
        # pixels, not bytes: another Pillow/zlib version may compress differently
        from PIL import Image, ImageChops

        with (
            Image.open(tmp_path / "images" / name) as new,
            Image.open(EXAMPLES / "images" / name) as old,
        ):
            assert new.size == old.size == (64, 64)
            diff = ImageChops.difference(new.convert("RGB"), old.convert("RGB"))
            if name.endswith(".png"):
                assert diff.getbbox() is None, name
            else:  # JPEG decoders may differ by a level or two
                assert int(np.asarray(diff).max()) <= 8, name


def test_an_example_missing_its_extra_says_which_in_one_line(tmp_path: Path) -> None:
    blocked = tmp_path / "blocked"
    (blocked / "langchain_chroma").mkdir(parents=True)
    (blocked / "langchain_chroma" / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'langchain_chroma'\", "
        "name='langchain_chroma')\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ENV}
    env["PYTHONPATH"] = os.pathsep.join([str(blocked), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "langchain_chroma_example.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr == (
        "this example needs langchain-chroma: pip install 'opensearch-mm[chroma]'\n"
    )
