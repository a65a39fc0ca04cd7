"""The command's allocator setting: large freed buffers go back to the system."""

from __future__ import annotations

import subprocess
import sys

import pytest

from opensearch_mm._memory import return_large_buffers


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_the_setting_is_taken_on_linux() -> None:
    code = "from opensearch_mm._memory import return_large_buffers as r; print(r())"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert proc.stdout.strip() == "True"


def test_off_linux_it_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    assert return_large_buffers() is False
