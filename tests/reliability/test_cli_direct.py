"""``opensearch-mm embed --text ... --image ...``: direct mode, and the manifest from stdin."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from opensearch_mm.cli import build_parser, main
from opensearch_mm.emulator import Emulator

from .conftest import API_KEY, make_client

DATA = Path(__file__).resolve().parents[1] / "support" / "data"
RED = str(DATA / "red.png")
BLUE = str(DATA / "blue.jpg")


@pytest.fixture(scope="module")
def server() -> Iterator[Emulator]:
    with Emulator(api_key=API_KEY, qps=None, latency_ms=0) as emu:
        yield emu


def _cli(server: Emulator, *args: str) -> list[str]:
    return [
        "embed",
        *args,
        "--endpoint",
        server.url,
        "--api-key",
        API_KEY,
        "--qps",
        "off",
        "--timeout",
        "5",
    ]


def _lines(text: str | bytes) -> list[dict[str, Any]]:
    data = text.encode() if isinstance(text, str) else text
    return [orjson.loads(raw) for raw in data.splitlines() if raw.strip()]


def _core(server: Emulator, inputs: list[dict[str, str]]) -> list[list[float]]:
    with make_client(server.url) as client:
        return client.embed(inputs).embeddings


MIXED = ["--text", "a red bicycle", "--image", RED, "--text", "un vélo 🚲", "--image", BLUE]
MIXED_INPUTS = [{"text": "a red bicycle"}, {"image": RED}, {"text": "un vélo 🚲"}, {"image": BLUE}]


def test_text_and_image_options_keep_their_command_line_order() -> None:
    args = build_parser().parse_args(
        ["embed", "--image", "b.png", "--text", "one", "--image", "c.png", "--text", "two"]
    )
    assert args.inputs == [
        ("image", "b.png"),
        ("text", "one"),
        ("image", "c.png"),
        ("text", "two"),
    ]
    assert args.manifest is None and args.output is None
    assert build_parser().parse_args(["embed", "m.jsonl", "-o", "x"]).inputs is None


def test_direct_mode_writes_json_lines_to_stdout_in_order(
    server: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_cli(server, *MIXED)) == 0
    out = capsys.readouterr().out
    records = _lines(out)
    assert [r["input"] for r in records] == [1, 2, 3, 4]
    assert [{k: v for k, v in r.items() if k in ("text", "image")} for r in records] == (
        MIXED_INPUTS
    )
    assert [r["embedding"] for r in records] == _core(server, MIXED_INPUTS)
    assert all(len(r["embedding"]) == 768 for r in records)


def test_dash_output_is_stdout_too(server: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_cli(server, "--text", "hello", "-o", "-")) == 0
    records = _lines(capsys.readouterr().out)
    assert [r["embedding"] for r in records] == _core(server, [{"text": "hello"}])


def test_direct_mode_to_a_file_and_npy(
    server: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output, npy = tmp_path / "v.jsonl", tmp_path / "v.npy"
    assert main(_cli(server, *MIXED, "-o", str(output), "--npy", str(npy))) == 0
    assert capsys.readouterr().out == ""  # nothing on stdout when -o names a file
    expected = _core(server, MIXED_INPUTS)
    assert [r["embedding"] for r in _lines(output.read_bytes())] == expected
    array = np.load(npy)
    assert array.dtype == np.float32 and array.shape == (4, 768)
    assert np.array_equal(array, np.asarray(expected, dtype=np.float32))
    # An existing output is not replaced silently.
    assert main(_cli(server, "--text", "x", "-o", str(output))) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert len(_lines(output.read_bytes())) == 4
    assert main(_cli(server, "--text", "x", "-o", str(output), "--overwrite")) == 0
    assert len(_lines(output.read_bytes())) == 1


def test_stdout_and_npy(
    server: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    npy = tmp_path / "v.npy"
    assert main(_cli(server, "--image", RED, "--text", "t", "--npy", str(npy))) == 0
    records = _lines(capsys.readouterr().out)
    array = np.load(npy)
    assert array.dtype == np.float32 and array.shape == (2, 768)
    assert np.array_equal(array, np.asarray([r["embedding"] for r in records], dtype=np.float32))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--text", "a", "--image", RED, "--image", "x.png"], "--image #2: no such file: x.png"),
        (["--text", "a", "--text", ""], "--text #2: text is empty"),
        (["--image", "ftp://example.com/x.png"], "--image #1:"),
        (["--image", "file:///etc/passwd", "--text", "ok"], "--image #1:"),
        (["--text", "a", "--image", str(DATA)], "--image #1:"),
        (["--text", "\ud800"], "--text #1:"),
    ],
)
def test_an_invalid_input_is_named_and_nothing_is_sent(
    server: Emulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    before = server.stats.requests
    output = tmp_path / "out.jsonl"
    assert main(_cli(server, *args)) == 2
    captured = capsys.readouterr()
    assert f"error: {message}" in captured.err
    assert captured.out == ""
    assert main(_cli(server, *args, "-o", str(output))) == 2
    assert not output.exists() or output.read_bytes() == b""
    assert server.stats.requests == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "nothing to embed"),
        (["m.jsonl", "--text", "a"], "not both"),
        (["--text", "a", "--resume", "-o", "out.jsonl"], "--resume needs a manifest"),
        (["MANIFEST", "--resume", "-o", "-"], "--resume needs a manifest and an output file"),
        (["MANIFEST", "--resume"], "--resume needs a manifest and an output file"),
        (["MANIFEST"], "needs -o PATH"),
        (["--text", "a", "--skip-invalid"], "--skip-invalid needs a manifest"),
        (["MANIFEST", "-o", "-", "--skip-invalid"], "needs --errors PATH"),
    ],
)
def test_option_errors_exit_2_with_a_clear_message(
    server: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"text": "a"}\n')
    before = server.stats.requests
    args = [str(manifest) if a == "MANIFEST" else a for a in args]
    assert main(_cli(server, *args)) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.out == ""
    assert "Traceback" not in captured.err
    assert server.stats.requests == before
    assert not (tmp_path / "out.jsonl").exists()


def test_a_service_failure_exits_1(server: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    server.inject("quota", 1)
    try:
        assert main(_cli(server, "--text", "a")) == 1
    finally:
        server.clear_faults()
    captured = capsys.readouterr()
    assert "Throttling.AllocationQuota" in captured.err and captured.out == ""
    assert API_KEY not in captured.err


def _stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


def test_manifest_from_stdin_resolves_images_from_the_working_directory(
    server: Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "img").mkdir()
    shutil.copy(DATA / "red.png", tmp_path / "img" / "red.png")
    monkeypatch.chdir(tmp_path)
    lines = [{"id": "t", "text": "a text"}, {"id": "i", "image": "img/red.png"}]
    _stdin(monkeypatch, b"".join(orjson.dumps(x) + b"\n" for x in lines))
    output = tmp_path / "out.jsonl"
    assert main(_cli(server, "-", "-o", str(output))) == 0
    records = _lines(output.read_bytes())
    assert [(r["line"], r["id"]) for r in records] == [(1, "t"), (2, "i")]
    expected = _core(server, [{"text": "a text"}, {"image": str(tmp_path / "img" / "red.png")}])
    assert [r["embedding"] for r in records] == expected
    assert "done: 2 vectors" in capsys.readouterr().err


def test_manifest_to_stdout_with_npy(
    server: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"id": 7, "text": "x"}\n\n{"text": "y"}\n')
    npy = tmp_path / "v.npy"
    assert main(_cli(server, str(manifest), "-o", "-", "--npy", str(npy))) == 0
    captured = capsys.readouterr()
    records = _lines(captured.out)
    assert [(r["line"], r.get("id")) for r in records] == [(1, 7), (3, None)]
    assert [r["embedding"] for r in records] == _core(server, [{"text": "x"}, {"text": "y"}])
    assert "vectors in stdout" in captured.err and "--resume" not in captured.err
    array = np.load(npy)
    assert array.dtype == np.float32 and array.shape == (2, 768)


def test_the_installed_command(server: Emulator, tmp_path: Path) -> None:
    command = Path(sys.executable).parent / "opensearch-mm"
    if not command.exists():  # pragma: no cover - depends on the install
        pytest.skip("the opensearch-mm script is not installed next to this interpreter")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENSEARCH_MM_")}
    env.update(OPENSEARCH_MM_ENDPOINT=server.url, OPENSEARCH_MM_API_KEY=API_KEY)
    npy = tmp_path / "v.npy"
    proc = subprocess.run(
        [str(command), "embed", *MIXED, "--qps", "off", "--npy", str(npy)],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    records = _lines(proc.stdout)
    assert [r["embedding"] for r in records] == _core(server, MIXED_INPUTS)
    assert [r["input"] for r in records] == [1, 2, 3, 4]
    assert np.load(npy).shape == (4, 768)
    assert API_KEY.encode() not in proc.stdout + proc.stderr
    bad = subprocess.run(
        [str(command), "embed", "--text", "ok", "--image", RED, "--image", "x.png"],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert bad.returncode == 2 and bad.stdout == b""
    assert b"error: --image #2: no such file: x.png" in bad.stderr
