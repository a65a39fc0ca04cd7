"""A job never writes the file it reads: an output, its journal, the errors file or the
``.npy`` naming the manifest (under any name: a hard link, a symlink, stdin redirected from
it) is refused before anything is touched or sent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from opensearch_mm.emulator import Emulator

from .conftest import records, run_cli, service_env, write_manifest

LINES = [{"id": i, "text": f"t {i}"} for i in range(5)]


def _refused(
    server: Emulator,
    *args: str,
    cwd: Path | None = None,
    stdin: Path | None = None,
    stdout: Path | None = None,
) -> str:
    before = server.stats.requests
    env = service_env(server)
    ran = run_cli("embed", *args, "--qps", "off", env=env, cwd=cwd, stdin=stdin, stdout=stdout)
    assert ran.code == 2, ran.err
    assert len(ran.err_lines) == 1 and "Traceback" not in ran.err, ran.err
    assert server.stats.requests == before, "a request was sent before the check"
    return ran.err


@pytest.mark.parametrize(
    ("manifest_name", "args", "clash", "option"),
    [
        ("m.jsonl", ["-o", "m.jsonl", "--resume"], "-o m.jsonl", "-o"),
        ("m.jsonl", ["-o", "m.jsonl", "--overwrite"], "-o m.jsonl", "-o"),
        (
            "m.jsonl",
            ["-o", "o.jsonl", "--skip-invalid", "--errors", "m.jsonl"],
            "--errors m.jsonl",
            "--errors",
        ),
        ("m.jsonl", ["-o", "o.jsonl", "--npy", "m.jsonl"], "--npy m.jsonl", "--npy"),
        (
            "o.jsonl.errors.jsonl",
            ["-o", "o.jsonl", "--skip-invalid"],
            "the errors file o.jsonl.errors.jsonl",
            "--errors",
        ),
        (
            "o.parquet.partial",
            ["-o", "o.parquet", "--resume"],
            "the journal o.parquet.partial of -o",
            "-o",
        ),
        ("o.parquet.tmp", ["-o", "o.parquet"], "the temporary file o.parquet.tmp of -o", "-o"),
    ],
)
def test_an_output_naming_the_manifest_is_refused_and_the_manifest_kept(
    server: Emulator, tmp_path: Path, manifest_name: str, args: list[str], clash: str, option: str
) -> None:
    if "o.parquet" in args:
        pytest.importorskip("pyarrow")
    manifest = write_manifest(tmp_path / manifest_name, LINES)
    before = manifest.read_bytes()
    err = _refused(server, manifest_name, *args, cwd=tmp_path)
    assert f"{clash} and the manifest {manifest_name} are the same file" in err
    assert f"give {option} a path of its own" in err
    assert manifest.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [manifest_name], "a file was created"


@pytest.mark.parametrize("link", ["hard", "symbolic"])
def test_another_name_for_the_manifest_is_the_same_file(
    server: Emulator, tmp_path: Path, link: str
) -> None:
    manifest = write_manifest(tmp_path / "m.jsonl", LINES)
    before = manifest.read_bytes()
    alias = tmp_path / "o.jsonl"
    if link == "hard":
        os.link(manifest, alias)
    else:
        alias.symlink_to(manifest)
    err = _refused(server, str(manifest), "-o", str(alias), "--overwrite")
    assert f"-o {alias} and the manifest {manifest} are the same file" in err
    assert manifest.read_bytes() == before


def test_a_manifest_on_stdin_is_not_overwritten_either(server: Emulator, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "m.jsonl", LINES)
    before = manifest.read_bytes()
    err = _refused(server, "-", "-o", str(manifest), "--overwrite", stdin=manifest)
    assert f"-o {manifest} and the manifest (stdin) are the same file" in err
    assert manifest.read_bytes() == before


def test_stdout_appended_to_the_manifest_is_refused(server: Emulator, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "m.jsonl", LINES)
    before = manifest.read_bytes()
    err = _refused(server, str(manifest), "-o", "-", stdout=manifest)
    assert f"-o - (stdout) and the manifest {manifest} are the same file" in err
    assert manifest.read_bytes() == before


def test_npy_naming_the_output_in_direct_mode(server: Emulator, tmp_path: Path) -> None:
    npy = tmp_path / "v.jsonl"  # the same file as -o, one name relative and one absolute
    err = _refused(server, "--text", "a", "-o", "v.jsonl", "--npy", str(npy), cwd=tmp_path)
    assert f"--npy {npy} and -o v.jsonl are the same file: give --npy a path of its own" in err
    assert list(tmp_path.iterdir()) == []


def test_distinct_files_and_devices_are_fine(server: Emulator, tmp_path: Path) -> None:
    # /dev/null for several roles destroys nothing: the job runs.
    manifest = write_manifest(tmp_path / "m.jsonl", LINES)
    ran = run_cli(
        "embed", str(manifest), "-o", "/dev/null", "--npy", "/dev/null", env=service_env(server)
    )
    assert ran.code == 0, ran.err
    out = tmp_path / "o.jsonl"
    ran = run_cli("embed", str(manifest), "-o", str(out), env=service_env(server))
    assert ran.code == 0, ran.err
    assert [r["id"] for r in records(out)] == list(range(5))
