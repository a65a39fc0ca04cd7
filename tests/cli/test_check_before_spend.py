"""Every output path is checked before the first request: exit 2, one line, nothing sent."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from opensearch_mm.emulator import Emulator

from .conftest import DATA, records, run_cli, service_env, write_manifest

MISSING_DIR = "/no/such/dir"


def _manifest(tmp_path: Path, n: int = 40) -> Path:
    return write_manifest(tmp_path / "m.jsonl", [{"id": i, "text": f"t {i}"} for i in range(n)])


def _refused(server: Emulator, *args: str, cwd: Path | None = None) -> str:
    before = server.stats.requests
    ran = run_cli("embed", *args, "--qps", "off", env=service_env(server), cwd=cwd)
    assert ran.code == 2, ran.err
    assert len(ran.err_lines) == 1, ran.err
    assert "Traceback" not in ran.err and ran.out == ""
    assert server.stats.requests == before, "a request was sent before the check"
    return ran.err


def test_direct_output_in_a_missing_directory(server: Emulator) -> None:
    err = _refused(server, "--text", "hi", "-o", f"{MISSING_DIR}/v.jsonl")
    assert f"-o {MISSING_DIR}/v.jsonl: directory {MISSING_DIR} does not exist" in err


def test_npy_in_a_missing_directory_in_a_manifest_job(server: Emulator, tmp_path: Path) -> None:
    out = tmp_path / "v.jsonl"
    err = _refused(
        server, str(_manifest(tmp_path)), "-o", str(out), "--npy", f"{MISSING_DIR}/v.npy"
    )
    assert f"--npy {MISSING_DIR}/v.npy" in err and "does not exist" in err
    assert not out.exists()


def test_npy_naming_a_directory(server: Emulator, tmp_path: Path) -> None:
    err = _refused(server, "--text", "hi", "--npy", str(tmp_path))
    assert f"--npy {tmp_path} is a directory" in err


@pytest.mark.parametrize("flag", [[], ["--overwrite"], ["--resume"]])
def test_output_naming_a_directory(server: Emulator, tmp_path: Path, flag: list[str]) -> None:
    err = _refused(server, str(_manifest(tmp_path)), "-o", str(tmp_path), *flag)
    assert f"-o {tmp_path} is a directory" in err and "--overwrite" not in err


def test_direct_output_naming_a_directory_with_overwrite(server: Emulator, tmp_path: Path) -> None:
    err = _refused(server, "--text", "hi", "-o", str(tmp_path), "--overwrite")
    assert "is a directory" in err


def test_unwritable_places(server: Emulator, tmp_path: Path) -> None:
    # /proc takes no new files, whoever runs the test (root included)
    err = _refused(server, "--text", "hi", "-o", "/proc/opensearch-mm-test.jsonl")
    assert "-o /proc/opensearch-mm-test.jsonl: cannot write there" in err
    err = _refused(server, "--text", "hi", "--npy", "/proc/opensearch-mm-test.npy")
    assert "--npy /proc/opensearch-mm-test.npy: cannot write there" in err
    a_file = tmp_path / "plain.txt"
    a_file.write_text("x")
    err = _refused(server, "--text", "hi", "-o", f"{a_file}/v.jsonl")
    assert "is not a directory" in err


def test_errors_file_and_parquet_are_checked_too(server: Emulator, tmp_path: Path) -> None:
    manifest = str(_manifest(tmp_path))
    err = _refused(
        server,
        manifest,
        "-o",
        str(tmp_path / "v.jsonl"),
        "--skip-invalid",
        "--errors",
        f"{MISSING_DIR}/e.jsonl",
    )
    assert f"--errors {MISSING_DIR}/e.jsonl" in err
    err = _refused(server, manifest, "-o", f"{MISSING_DIR}/v.parquet")
    assert f"-o {MISSING_DIR}/v.parquet" in err


def test_the_check_leaves_no_file_behind_and_the_job_then_runs(
    server: Emulator, tmp_path: Path
) -> None:
    out, npy = tmp_path / "v.jsonl", tmp_path / "v.npy"
    _refused(server, str(_manifest(tmp_path)), "-o", str(out), "--npy", f"{MISSING_DIR}/v.npy")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.jsonl"]
    ran = run_cli(
        "embed",
        str(_manifest(tmp_path)),
        "-o",
        str(out),
        "--npy",
        str(npy),
        "--qps",
        "off",
        env=service_env(server),
    )
    assert ran.code == 0, ran.err
    assert len(records(out)) == 40 and npy.stat().st_size > 40 * 768 * 4


def test_an_npy_failure_at_the_end_keeps_the_vectors(server: Emulator, tmp_path: Path) -> None:
    """The .npy is written last; if that fails the JSON lines are complete and --resume
    writes the .npy again without sending anything."""
    out = tmp_path / "v.jsonl"
    npy = tmp_path / "sub" / "v.npy"
    (tmp_path / "sub").mkdir()
    manifest = str(_manifest(tmp_path))
    env = service_env(server)
    ran = run_cli("embed", manifest, "-o", str(out), "--qps", "off", env=env)
    assert ran.code == 0
    before = server.stats.requests
    ran = run_cli("embed", manifest, "-o", str(out), "--resume", "--npy", str(npy), env=env)
    assert ran.code == 0, ran.err
    assert server.stats.requests == before
    assert "wrote 40 vectors to" in ran.err


def test_images_in_direct_mode_are_checked_before_the_output(server: Emulator) -> None:
    err = _refused(server, "--text", "ok", "--image", str(DATA / "nope.png"))
    assert "--image #1: no such file" in err


def test_a_full_disk_in_direct_mode_puts_the_vectors_on_stdout(server: Emulator) -> None:
    ran = run_cli("embed", "--text", "a", "--text", "b", "-o", "/dev/full", env=service_env(server))
    assert ran.code == 1
    assert "cannot write /dev/full (No space left on device); the vectors follow on stdout" in (
        ran.err
    )
    assert [(r["input"], r["text"]) for r in map(orjson.loads, ran.out.splitlines())] == [
        (1, "a"),
        (2, "b"),
    ]
    assert "Traceback" not in ran.err


def test_a_full_disk_in_a_manifest_job_is_reported_and_resumable(
    server: Emulator, tmp_path: Path
) -> None:
    ran = run_cli("embed", str(_manifest(tmp_path)), "-o", "/dev/full", env=service_env(server))
    assert ran.code == 1
    assert "failed: cannot write /dev/full (No space left on device)" in ran.err
    assert "Traceback" not in ran.err


def test_devices_are_written_as_they_are(server: Emulator, tmp_path: Path) -> None:
    ran = run_cli("embed", str(_manifest(tmp_path)), "-o", "/dev/null", env=service_env(server))
    assert ran.code == 0, ran.err
    assert "done: 40 vectors in /dev/null" in ran.err


def test_the_check_never_creates_the_output_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A watcher polling the output path (a test, a tail -F, a sync agent) must not see it
    # appear and vanish before the job has started: the check writes a hidden sibling.
    from opensearch_mm._sinks import check_writable

    opened: list[Path] = []
    real_open = Path.open

    def spy(self: Path, *args: object, **kwargs: object) -> object:
        opened.append(self)
        return real_open(self, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(Path, "open", spy)
    out = tmp_path / "v.jsonl"
    check_writable(out, "-o")
    assert out not in opened
    assert list(tmp_path.iterdir()) == [], "the check left a file behind"
