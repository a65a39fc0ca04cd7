"""``opensearch-mm embed``: a bulk job that survives SIGKILL and Ctrl-C and resumes exactly."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from opensearch_mm.bulk import read_progress
from opensearch_mm.cli import main
from opensearch_mm.emulator import Emulator

from .conftest import API_KEY

DATA = Path(__file__).resolve().parents[1] / "support" / "data"
N_TEXTS = 1500


def _manifest_lines() -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = [
        {"id": f"doc-{i}", "text": f"bulk text {i}"} for i in range(N_TEXTS)
    ]
    for k, name in enumerate(["red.png", "blue.jpg", "green.png"]):
        lines.insert(100 + 400 * k, {"id": f"img-{k}", "image": f"images/{name}"})
    return lines


@pytest.fixture(scope="module")
def server() -> Iterator[Emulator]:
    with Emulator(api_key=API_KEY, qps=None, latency_ms=0) as emu:
        yield emu


@pytest.fixture
def job(tmp_path: Path) -> Path:
    """A manifest in its own directory; image paths are relative to it."""
    (tmp_path / "images").mkdir()
    for name in ("red.png", "blue.jpg", "green.png"):
        shutil.copy(DATA / name, tmp_path / "images" / name)
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in _manifest_lines()))
    return manifest


def _args(server: Emulator, manifest: Path, output: Path, *extra: str) -> list[str]:
    return [
        "embed",
        str(manifest),
        "-o",
        str(output),
        "--endpoint",
        server.url,
        "--api-key",
        API_KEY,
        "--qps",
        "off",
        "--timeout",
        "5",
        *extra,
    ]


def _records(output: Path) -> list[dict[str, Any]]:
    return [orjson.loads(raw) for raw in output.read_bytes().splitlines()]


@pytest.fixture(scope="module")
def clean(server: Emulator, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """Records of an uninterrupted run."""
    directory = tmp_path_factory.mktemp("clean")
    (directory / "images").mkdir()
    for name in ("red.png", "blue.jpg", "green.png"):
        shutil.copy(DATA / name, directory / "images" / name)
    manifest = directory / "manifest.jsonl"
    manifest.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in _manifest_lines()))
    output = directory / "out.jsonl"
    assert main(_args(server, manifest, output)) == 0
    records = _records(output)
    assert [r["line"] for r in records] == list(range(1, len(_manifest_lines()) + 1))
    assert [r["id"] for r in records] == [x["id"] for x in _manifest_lines()]
    return records


def _start(server: Emulator, manifest: Path, output: Path, *extra: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENSEARCH_MM_")}
    return subprocess.Popen(
        [sys.executable, "-m", "opensearch_mm.cli", *_args(server, manifest, output, *extra)],
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # Like a job in a terminal: a shell running the suite in the background hands
        # its children SIGINT ignored, and Python then never raises KeyboardInterrupt.
        preexec_fn=_default_sigint,
    )


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_for_lines(output: Path, at_least: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if output.exists() and output.read_bytes().count(b"\n") >= at_least:
            return
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.01)
    raise AssertionError("the job wrote too little")


def _assert_complete(output: Path, clean: list[dict[str, Any]]) -> None:
    records = _records(output)
    lines = [r["line"] for r in records]
    assert len(lines) == len(set(lines)), "an input was written twice"
    assert records == clean


def test_sigkill_then_resume_writes_every_input_once(
    server: Emulator, job: Path, clean: list[dict[str, Any]]
) -> None:
    output = job.parent / "out.jsonl"
    server.latency_ms = 40
    try:
        # A pinned slow rate keeps the job running long after the first 200 lines.
        proc = _start(server, job, output, "--max-concurrency", "1", "--qps", "5")
        _wait_for_lines(output, 200, proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        server.latency_ms = 0
    written = output.read_bytes().count(b"\n")
    assert 200 <= written < len(clean)
    # A crash mid-write leaves a torn line: resume must cut it away.
    with output.open("ab") as fh:
        fh.write(b'{"line":999999,"id":"torn","embedding":[0.1,0.2')
    last, kept, _ = read_progress(output)
    assert kept == written and last == clean[written - 1]["line"]
    time.sleep(0.3)  # the killed job's last request is still being answered
    before = server.stats.inputs_embedded
    proc = _start(server, job, output, "--resume")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert b"resuming after manifest line" in err
    _assert_complete(output, clean)
    # Only the inputs not yet written were sent again.
    assert server.stats.inputs_embedded - before == len(clean) - written


def test_ctrl_c_exits_cleanly_and_resumes(
    server: Emulator, job: Path, clean: list[dict[str, Any]]
) -> None:
    output = job.parent / "out.jsonl"
    server.latency_ms = 40
    try:
        # A pinned slow rate keeps the job running long after the first 100 lines.
        proc = _start(server, job, output, "--max-concurrency", "2", "--qps", "4")
        _wait_for_lines(output, 100, proc)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        server.latency_ms = 0
    assert proc.returncode == 130, err
    assert b"interrupted" in err and b"--resume" in err
    assert b"Traceback" not in err
    data = output.read_bytes()
    assert data.endswith(b"\n")  # only complete lines
    records = _records(output)
    assert records == clean[: len(records)]
    assert main(_args(server, job, output, "--resume", "--npy", str(job.parent / "v.npy"))) == 0
    _assert_complete(output, clean)
    array = np.load(job.parent / "v.npy")
    assert array.dtype == np.float32 and array.shape == (len(clean), 768)
    assert np.allclose(array, np.asarray([r["embedding"] for r in clean], dtype=np.float32))


def test_existing_output_needs_resume_or_overwrite(
    server: Emulator, job: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = job.parent / "out.jsonl"
    output.write_text('{"line": 1, "embedding": [1.0]}\n')
    assert main(_args(server, job, output)) == 2
    assert "--resume" in capsys.readouterr().err
    assert output.read_text() == '{"line": 1, "embedding": [1.0]}\n'


def _small_manifest(directory: Path, lines: list[bytes]) -> Path:
    (directory / "images").mkdir(exist_ok=True)
    shutil.copy(DATA / "red.png", directory / "images" / "red.png")
    manifest = directory / "m.jsonl"
    manifest.write_bytes(b"\n".join(lines) + b"\n")
    return manifest


BAD_MANIFEST = [
    b'{"id": "a", "text": "first"}',
    b'{"image": "images/red.png"}',
    b'{"text": "broken json"',
    b"",
    b'{"id": "b", "text": "after"}',
    b'{"id": "c", "image": "images/missing.png"}',
    b'{"id": "d", "txt": "typo"}',
    b'{"id": "e", "image": "ftp://example.com/x.png"}',
    b'{"id": "f", "text": "last"}',
]


def test_invalid_line_stops_the_job_naming_it(
    server: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = _small_manifest(tmp_path, BAD_MANIFEST)
    output = tmp_path / "out.jsonl"
    assert main(_args(server, manifest, output)) == 2
    err = capsys.readouterr().err
    assert "line 3" in err and "not valid JSON" in err
    assert [r["line"] for r in _records(output)] == [1, 2]


def test_skip_invalid_records_bad_lines_and_goes_on(
    server: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = _small_manifest(tmp_path, BAD_MANIFEST)
    output = tmp_path / "out.jsonl"
    assert main(_args(server, manifest, output, "--skip-invalid")) == 0
    assert [r["line"] for r in _records(output)] == [1, 2, 5, 9]
    assert [r.get("id") for r in _records(output)] == ["a", None, "b", "f"]
    errors = _records(tmp_path / "out.jsonl.errors.jsonl")
    assert [e["line"] for e in errors] == [3, 6, 7, 8]
    assert "missing.png" in errors[1]["error"] and "txt" in errors[2]["error"]
    assert "ftp:" in errors[3]["error"]
    assert "4 invalid lines" in capsys.readouterr().err
    # Resuming a finished job writes nothing twice and keeps the error records.
    assert main(_args(server, manifest, output, "--skip-invalid", "--resume")) == 0
    assert [r["line"] for r in _records(output)] == [1, 2, 5, 9]
    assert [e["line"] for e in _records(tmp_path / "out.jsonl.errors.jsonl")] == [3, 6, 7, 8]


def test_endpoint_and_key_from_the_environment(
    server: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = _small_manifest(tmp_path, BAD_MANIFEST[:2])
    monkeypatch.setenv("OPENSEARCH_MM_ENDPOINT", server.url)
    monkeypatch.setenv("OPENSEARCH_MM_API_KEY", API_KEY)
    output = tmp_path / "out.jsonl"
    assert main(["embed", str(manifest), "-o", str(output), "--qps", "off"]) == 0
    assert len(_records(output)) == 2


def test_api_failure_keeps_the_work_and_says_what_to_do(
    server: Emulator, job: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = job.parent / "out.jsonl"
    server.inject("slow", 3, delay=0.0)  # three requests answered, then the quota is gone
    server.inject("quota", 1)
    try:
        assert main(_args(server, job, output, "--max-concurrency", "1")) == 1
    finally:
        server.clear_faults()
    err = capsys.readouterr().err
    assert "Throttling.AllocationQuota" in err and "to fix: raise the quota" in err
    assert f"96 vectors in {output}; once fixed, run the same command with --resume" in err
    assert len(_records(output)) == 96
    assert API_KEY not in err and "err.partial" not in err


def test_a_quota_gone_at_once_does_not_advise_resume(
    server: Emulator, job: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = job.parent / "out.jsonl"
    server.inject("quota", 1)
    try:
        assert main(_args(server, job, output, "--max-concurrency", "1")) == 1
    finally:
        server.clear_faults()
    err = capsys.readouterr().err
    assert "Throttling.AllocationQuota" in err and "--resume" not in err
    assert f"nothing written to {output}" in err
