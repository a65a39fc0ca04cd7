"""The README's quickstart closes what it opens, and runs as written (against the
emulator, with the example images standing in for the user's files)."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _quickstart() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Quickstart\n", 1)[1].split("\n## ", 1)[0]
    block: str
    (block,) = re.findall(r"```python\n(.*?)```", section, re.S)
    return block


def test_every_client_is_opened_by_with() -> None:
    tree = ast.parse(_quickstart())
    managed = {
        id(item.context_expr)
        for node in ast.walk(tree)
        if isinstance(node, (ast.With, ast.AsyncWith))
        for item in node.items
    }
    calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", "") == "MultiModalEmbeddingClient"
    ]
    assert len(calls) == 2
    assert all(id(call) in managed for call in calls)


def test_the_quickstart_runs_without_resource_warnings(tmp_path: Path) -> None:
    images = ROOT / "examples" / "images"
    (tmp_path / "photos").mkdir()
    shutil.copy(images / "cat.png", tmp_path / "photos" / "cat.jpg")
    shutil.copy(images / "cat.png", tmp_path / "cat.jpg")
    shutil.copy(images / "house.png", tmp_path / "dog.png")
    code = _quickstart()
    code = code.replace('"https://example.com/bike.png"', '"photos/cat.jpg"')
    code = code.replace('api_key="OS-...",', "api_key=KEY,").replace(
        'endpoint="ops-cn-hangzhou.opensearch.aliyuncs.com",', "endpoint=URL,"
    )
    script = tmp_path / "quickstart.py"
    script.write_text(
        "import asyncio, os\n"
        "from opensearch_mm.emulator import Emulator\n"
        "def read_captions():\n    yield from ['one', 'two', 'three']\n"
        "with Emulator(api_key='readme-key') as emu:\n"
        "    KEY, URL = emu.api_key, emu.url\n"
        "    os.environ.update(OPENSEARCH_MM_API_KEY=KEY, OPENSEARCH_MM_ENDPOINT=URL)\n"
        + "".join(f"    {line}\n" for line in code.splitlines())
        + "    asyncio.run(main())\n"
        "    print('requests', emu.stats.requests)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENSEARCH_MM_")}
    proc = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error::ResourceWarning", str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "ResourceWarning" not in proc.stderr, proc.stderr
    assert "requests 5" in proc.stdout
