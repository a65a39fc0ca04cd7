"""Inputs the service refuses under ``--skip-invalid``, Ctrl-C in direct mode and in a
Parquet job, the invalid-line count after ``--resume``, ``--resume`` advice with nothing
written, and a closed stdout (``| head``)."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from opensearch_mm.emulator import Emulator

from .conftest import KEY, command, free_port, records, run_cli, service_env, write_manifest

DEAD = {6, 18, 41}  # manifest lines whose image the service cannot download


def _dead_manifest(path: Path, n: int = 60, dead: set[int] = DEAD) -> Path:
    lines: list[dict[str, Any]] = []
    for number in range(1, n + 1):
        if number in dead:
            lines.append({"id": f"d{number}", "image": f"https://x{number}.invalid/a.jpg"})
        else:
            lines.append({"id": f"t{number}", "text": f"text number {number}"})
    return write_manifest(path, lines)


def test_skip_invalid_records_inputs_the_service_refuses(server: Emulator, tmp_path: Path) -> None:
    manifest = _dead_manifest(tmp_path / "m.jsonl")
    out = tmp_path / "o.jsonl"
    ran = run_cli("embed", str(manifest), "-o", str(out), "--skip-invalid", env=service_env(server))
    assert ran.code == 0, ran.err
    lines = [r["line"] for r in records(out)]
    assert lines == [n for n in range(1, 61) if n not in DEAD]
    errors = records(Path(f"{out}.errors.jsonl"))
    assert [e["line"] for e in errors] == sorted(DEAD)
    assert all("refused" in e["error"] and "invalid" in e["error"] for e in errors), errors
    assert f"3 invalid lines in {out}.errors.jsonl" in ran.err
    assert "Traceback" not in ran.err


def test_skip_invalid_refused_inputs_with_inputs_never_sent(
    server: Emulator, tmp_path: Path
) -> None:
    # One request in flight and a long manifest: the stream fails with inputs read but not
    # yet sent, which must be sent again, once, in order.
    dead = {3, 70, 71, 300}
    manifest = _dead_manifest(tmp_path / "m.jsonl", n=400, dead=dead)
    out = tmp_path / "o.jsonl"
    ran = run_cli(
        "embed",
        str(manifest),
        "-o",
        str(out),
        "--skip-invalid",
        "--max-concurrency",
        "1",
        env=service_env(server),
    )
    assert ran.code == 0, ran.err
    got = records(out)
    assert [r["line"] for r in got] == [n for n in range(1, 401) if n not in dead]
    assert [r["id"] for r in got][:3] == ["t1", "t2", "t4"]
    assert [e["line"] for e in records(Path(f"{out}.errors.jsonl"))] == sorted(dead)


def test_skip_invalid_a_dead_link_on_two_lines_is_recorded_twice(
    server: Emulator, tmp_path: Path
) -> None:
    lines: list[dict[str, Any]] = [{"text": f"t{i}"} for i in range(1, 41)]
    lines[3] = lines[8] = {"image": "https://same.invalid/a.jpg"}  # sent once, refused once
    manifest = write_manifest(tmp_path / "m.jsonl", lines)
    out = tmp_path / "o.jsonl"
    ran = run_cli("embed", str(manifest), "-o", str(out), "--skip-invalid", env=service_env(server))
    assert ran.code == 0, ran.err
    assert [r["line"] for r in records(out)] == [n for n in range(1, 41) if n not in (4, 9)]
    assert [e["line"] for e in records(Path(f"{out}.errors.jsonl"))] == [4, 9]


def test_refused_input_stops_without_skip_invalid_then_resume_skips_it(
    server: Emulator, tmp_path: Path
) -> None:
    manifest = _dead_manifest(tmp_path / "m.jsonl")
    out = tmp_path / "o.jsonl"
    ran = run_cli("embed", str(manifest), "-o", str(out), env=service_env(server))
    assert ran.code == 1
    assert "manifest line 6" in ran.err
    assert "add --skip-invalid to record such inputs and go on" in ran.err
    assert [r["line"] for r in records(out)] == [1, 2, 3, 4, 5]
    ran = run_cli(
        "embed", str(manifest), "-o", str(out), "--resume", "--skip-invalid",
        env=service_env(server),
    )  # fmt: skip
    assert ran.code == 0, ran.err
    assert [r["line"] for r in records(out)] == [n for n in range(1, 61) if n not in DEAD]
    assert [e["line"] for e in records(Path(f"{out}.errors.jsonl"))] == sorted(DEAD)


@pytest.fixture
def slow_server() -> Iterator[Emulator]:
    with Emulator(api_key=KEY, qps=None, latency_ms=400) as emu:
        yield emu


def _interrupt_when(
    args: list[str], server: Emulator, embedded: int, cwd: Path
) -> subprocess.CompletedProcess[bytes]:
    """Run the command, press Ctrl-C once ``embedded`` inputs have been answered."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENSEARCH_MM_")}
    env.update(service_env(server))
    proc = subprocess.Popen(
        [str(command()), *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while server.stats.inputs_embedded < embedded and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.6)  # the answer reaches the command (and is written)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_direct_mode_ctrl_c_writes_the_vectors_that_arrived(
    slow_server: Emulator, tmp_path: Path
) -> None:
    texts: list[str] = []
    for i in range(320):
        texts += ["--text", f"text {i}"]
    out = tmp_path / "o.jsonl"
    done = _interrupt_when(
        ["embed", *texts, "-o", str(out), "--max-concurrency", "1"], slow_server, 64, tmp_path
    )
    err = done.stderr.decode()
    assert done.returncode == 130, err
    got = records(out)
    assert 0 < len(got) < 320, err
    assert [r["input"] for r in got] == list(range(1, len(got) + 1))
    assert f"interrupted: {len(got)} of 320 inputs embedded, written to {out}" in err
    assert "nothing written" not in err


def test_parquet_interrupt_and_rerun_name_the_journal(
    slow_server: Emulator, tmp_path: Path
) -> None:
    pytest.importorskip("pyarrow")
    manifest = write_manifest(
        tmp_path / "m.jsonl", [{"id": i, "text": f"text {i}"} for i in range(320)]
    )
    out = tmp_path / "p.parquet"
    done = _interrupt_when(
        ["embed", str(manifest), "-o", str(out), "--max-concurrency", "1"],
        slow_server,
        32,
        tmp_path,
    )
    err = done.stderr.decode()
    assert done.returncode == 130, err
    assert not out.exists()
    assert f"in {out}.partial (the journal of {out})" in err
    ran = run_cli("embed", str(manifest), "-o", str(out), env=service_env(slow_server))
    assert ran.code == 2
    assert f"{out}.partial (the journal of {out}) exists" in ran.err
    assert f"{out} exists" not in ran.err


def test_invalid_line_count_after_resume_is_the_files_total(
    server: Emulator, tmp_path: Path
) -> None:
    first: list[dict[str, Any]] = [{"text": f"t{i}"} for i in range(1, 11)]
    first[2] = {"txt": "typo"}
    manifest = write_manifest(tmp_path / "m.jsonl", first)
    out = tmp_path / "o.jsonl"
    ran = run_cli("embed", str(manifest), "-o", str(out), "--skip-invalid", env=service_env(server))
    assert ran.code == 0 and f"1 invalid lines in {out}.errors.jsonl" in ran.err, ran.err
    more: list[dict[str, Any]] = [{"text": f"t{i}"} for i in range(11, 21)]
    more[4] = {"txt": "typo"}
    write_manifest(manifest, first + more)
    ran = run_cli(
        "embed", str(manifest), "-o", str(out), "--skip-invalid", "--resume",
        env=service_env(server),
    )  # fmt: skip
    assert ran.code == 0, ran.err
    assert len(records(Path(f"{out}.errors.jsonl"))) == 2
    assert f"2 invalid lines in {out}.errors.jsonl" in ran.err


@pytest.mark.parametrize("name", ["o.jsonl", "o.parquet"])
def test_no_resume_advice_when_nothing_was_written(tmp_path: Path, name: str) -> None:
    if name.endswith(".parquet"):
        pytest.importorskip("pyarrow")
    manifest = write_manifest(tmp_path / "m.jsonl", [{"text": "a"}, {"text": "b"}])
    out = tmp_path / name
    env = {
        "OPENSEARCH_MM_ENDPOINT": f"http://127.0.0.1:{free_port()}",
        "OPENSEARCH_MM_API_KEY": KEY,
    }
    ran = run_cli("embed", str(manifest), "-o", str(out), "--max-retries", "0", env=env)
    assert ran.code == 1
    assert "--resume" not in ran.err, ran.err
    assert f"nothing written to {out}" in ran.err
    # and the plain command can indeed be run again
    ran = run_cli("embed", str(manifest), "-o", str(out), "--max-retries", "0", env=env)
    assert ran.code == 1 and "exists" not in ran.err, ran.err


@pytest.mark.parametrize("mode", ["manifest", "direct"])
def test_closed_stdout_ends_quietly(server: Emulator, tmp_path: Path, mode: str) -> None:
    manifest = write_manifest(
        tmp_path / "m.jsonl", [{"id": i, "text": f"text {i}"} for i in range(300)]
    )
    if mode == "manifest":
        args = ["embed", "-", "-o", "-"]
    else:
        args = ["embed"]
        for i in range(300):
            args += ["--text", f"text {i}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENSEARCH_MM_")}
    env.update(service_env(server))
    script = (
        f"{shlex.join([str(command()), *args])} < {manifest} | head -3 >/dev/null; "
        'echo "${PIPESTATUS[0]}"'
    )
    done = subprocess.run(
        ["bash", "-c", script], env=env, capture_output=True, timeout=120, check=False
    )
    assert done.stderr == b"", done.stderr.decode()
    assert done.stdout.decode().strip() == "141"


def test_a_second_ctrl_c_ends_the_job_at_once_without_a_traceback(tmp_path: Path) -> None:
    # The first Ctrl-C writes what arrived and waits for the requests out (here 8 s
    # answers); a second one during that wait printed a traceback, and the process still
    # waited for them.
    manifest = write_manifest(tmp_path / "m.jsonl", [{"text": f"t{i}"} for i in range(200)])
    with Emulator(api_key=KEY, qps=None, latency_ms=8000) as slow:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OPENSEARCH_MM_")}
        env.update(service_env(slow))
        args = ["embed", str(manifest), "-o", str(tmp_path / "o.jsonl"), "--max-concurrency", "2"]
        proc = subprocess.Popen(
            [str(command()), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 30
        while slow.stats.requests < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        time.sleep(1.0)
        start = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        took = time.monotonic() - start
    assert proc.returncode == 130
    assert b"Traceback" not in err, err.decode()
    assert took < 4.0  # (the answers were 8 s away: not waited for)
