"""Pipes, devices and stdin: ``-o /dev/stdout`` is written as it is (never sought or read
back), a manifest piped on stdin resumes as it ran, and a device behind ``--errors`` is
never removed."""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from opensearch_mm._sinks import JsonLinesWriter, check_writable
from opensearch_mm.emulator import Emulator

from .conftest import records, run_cli, service_env, write_manifest

LINES = [{"id": i, "text": f"t {i}"} for i in range(6)]


def _manifest(tmp_path: Path) -> Path:
    return write_manifest(tmp_path / "m.jsonl", LINES)


def _lines(out: str) -> list[dict[str, object]]:
    return [orjson.loads(raw) for raw in out.splitlines()]


def test_dev_stdout_on_a_pipe_takes_the_records(server: Emulator, tmp_path: Path) -> None:
    ran = run_cli("embed", str(_manifest(tmp_path)), "-o", "/dev/stdout", env=service_env(server))
    assert ran.code == 0, ran.err
    assert [r["id"] for r in _lines(ran.out)] == [line["id"] for line in LINES]
    assert "done: 6 vectors in /dev/stdout" in ran.err


def test_dev_stdout_on_a_pipe_in_direct_mode(server: Emulator) -> None:
    ran = run_cli(
        "embed", "--text", "a", "--text", "b", "-o", "/dev/stdout", env=service_env(server)
    )
    assert ran.code == 0, ran.err
    assert [(r["input"], r["text"]) for r in _lines(ran.out)] == [(1, "a"), (2, "b")]


def test_dev_stdout_with_npy_keeps_the_vectors(server: Emulator, tmp_path: Path) -> None:
    npy = tmp_path / "v.npy"
    ran = run_cli(
        "embed",
        str(_manifest(tmp_path)),
        "-o",
        "/dev/stdout",
        "--npy",
        str(npy),
        env=service_env(server),
        timeout=60,
    )
    assert ran.code == 0, ran.err
    expected = np.asarray([r["embedding"] for r in _lines(ran.out)], dtype=np.float32)
    assert expected.shape == (6, 768)
    assert np.array_equal(np.load(npy), expected)


def test_npy_is_written_front_to_back(server: Emulator, tmp_path: Path) -> None:
    # A device behind --npy (here through a symlink, as /dev/stdout is) takes the .npy as a
    # file does; the file gets the same vectors as the JSON lines.
    manifest, out = _manifest(tmp_path), tmp_path / "o.jsonl"
    device = tmp_path / "device.npy"
    device.symlink_to(os.devnull)
    env = service_env(server)
    ran = run_cli("embed", str(manifest), "-o", str(out), "--npy", str(device), env=env)
    assert ran.code == 0, ran.err
    assert f"wrote 6 vectors to {device}" in ran.err
    assert device.is_symlink()
    npy = tmp_path / "v.npy"
    ran = run_cli("embed", str(manifest), "-o", str(out), "--resume", "--npy", str(npy), env=env)
    assert ran.code == 0, ran.err
    expected = np.asarray([r["embedding"] for r in records(out)], dtype=np.float32)
    got = np.load(npy)
    assert got.dtype == np.float32 and got.shape == (6, 768)
    assert np.array_equal(got, expected)


def test_resume_on_a_pipe_says_it_cannot(server: Emulator, tmp_path: Path) -> None:
    before = server.stats.requests
    ran = run_cli(
        "embed",
        str(_manifest(tmp_path)),
        "-o",
        "/dev/stdout",
        "--resume",
        env=service_env(server),
        timeout=60,
    )
    assert ran.code == 2 and ran.out == ""
    assert ran.err_lines == [
        "opensearch-mm embed: error: --resume needs -o to be a file: /dev/stdout is a pipe or a "
        "device, which keeps no record of what it was given; run without --resume, or give -o "
        "a file"
    ]
    assert server.stats.requests == before


def test_a_stdin_manifest_resumes_a_finished_parquet(server: Emulator, tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    manifest = _manifest(tmp_path).read_bytes()
    out = tmp_path / "s.parquet"
    env = service_env(server)
    assert run_cli("embed", "-", "-o", str(out), env=env, stdin=manifest).code == 0
    before = server.stats.requests
    ran = run_cli("embed", "-", "-o", str(out), "--resume", env=env, stdin=manifest)
    assert ran.code == 0, ran.err
    assert f"done: 6 vectors in {out} (already complete)" in ran.err
    assert server.stats.requests == before
    longer = manifest + orjson.dumps({"id": 6, "text": "t 6"}) + b"\n"
    ran = run_cli("embed", "-", "-o", str(out), "--resume", env=env, stdin=longer)
    assert ran.code == 2 and "Traceback" not in ran.err
    assert "the manifest has more lines; a Parquet file cannot be extended" in ran.err
    assert "pass --overwrite to redo the job" in ran.err
    assert pq.read_table(out).column("line").to_pylist() == [1, 2, 3, 4, 5, 6]


def test_a_device_behind_errors_is_written_not_replaced(server: Emulator, tmp_path: Path) -> None:
    # A symlink to /dev/null stands for the device: were the errors file unlinked and
    # created again, the link would become a file (and /dev/null itself, for a root user
    # passing --errors /dev/null, would be gone).
    lines: list[dict[str, Any]] = [{"text": "a"}, {"nope": 1}, {"text": "c"}]
    manifest = write_manifest(tmp_path / "m.jsonl", lines)
    errors = tmp_path / "errors"
    errors.symlink_to(os.devnull)
    out = tmp_path / "o.jsonl"
    env = service_env(server)
    ran = run_cli(
        "embed", str(manifest), "-o", str(out), "--skip-invalid", "--errors", str(errors), env=env
    )
    assert ran.code == 0, ran.err
    assert errors.is_symlink() and errors.resolve() == Path(os.devnull)
    assert [r["line"] for r in records(out)] == [1, 3]


def test_the_check_opens_a_pipe_without_seeking_or_waiting(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    check_writable(fifo, "-o")  # no reader yet: neither an error nor a hang
    assert fifo.exists() and not fifo.is_file()
    assert list(tmp_path.iterdir()) == [fifo]


def test_json_lines_go_through_a_pipe_unchanged(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got = io.BytesIO()

    def read() -> None:
        with fifo.open("rb") as fh:
            got.write(fh.read())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    writer = JsonLinesWriter(fifo, 0)
    writer.write({"line": 1, "embedding": [0.5]})
    writer.write({"line": 2, "embedding": [0.25]})
    writer.close()
    reader.join(timeout=10)
    assert got.getvalue() == b'{"line":1,"embedding":[0.5]}\n{"line":2,"embedding":[0.25]}\n'


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("to", [[], ["-o", "-"]], ids=["default", "dash"])
def test_stdout_that_cannot_be_written_is_one_line_not_a_traceback(
    server: Emulator, to: list[str]
) -> None:
    # (It fell back to stdout, the output that had just failed, and a traceback followed.)
    ran = run_cli("embed", "--text", "hi", *to, env=service_env(server), stdout=Path("/dev/full"))
    assert ran.code == 1, ran.err
    assert "Traceback" not in ran.err and "None" not in ran.err
    assert "failed: cannot write stdout" in ran.err
