"""Messages in the command's terms: options, 1-based numbers, manifest lines, environment
variables; the endpoint on connection errors; ``--resume`` only where it helps."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import orjson
import pytest

from opensearch_mm._cli_errors import explain
from opensearch_mm.emulator import Emulator
from opensearch_mm.errors import RateLimitError
from opensearch_mm.results import PartialResult

from .conftest import DATA, KEY, free_port, records, run_cli, service_env, write_manifest

PYTHON_TERMS = ("err.partial", "api_key=", "endpoint=", "input 0", "image_max_side=", "Traceback")


def _plain(text: str) -> None:
    for term in PYTHON_TERMS:
        assert term not in text, f"{term!r} in {text!r}"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, "no endpoint and no API key: set OPENSEARCH_MM_ENDPOINT and OPENSEARCH_MM_API_KEY"),
        ({"OPENSEARCH_MM_ENDPOINT": "http://127.0.0.1:9"}, "no API key: set OPENSEARCH_MM_API_KEY"),
        ({"OPENSEARCH_MM_API_KEY": KEY}, "no endpoint: set OPENSEARCH_MM_ENDPOINT (or pass"),
    ],
)
def test_missing_credentials_name_the_variables(env: dict[str, str], expected: str) -> None:
    ran = run_cli("embed", "--text", "hi", env=env)
    assert ran.code == 2 and len(ran.err_lines) == 1
    assert expected in ran.err
    _plain(ran.err)


def test_direct_inputs_are_named_by_option_and_1_based_number(server: Emulator) -> None:
    png = (DATA / "red.png").read_bytes()
    ran = run_cli(
        "embed",
        "--text",
        "fine",
        "--text",
        png[:8].decode("latin-1") + "IHDR",
        env=service_env(server),
    )
    assert ran.code == 2 and len(ran.err_lines) == 1
    assert "error: --text #2: text starts like a PNG image file" in ran.err
    assert "pass it as an image" in ran.err
    ran = run_cli("embed", "--text", "fine", "--image", "x.png", env=service_env(server))
    assert "error: --image #1: no such file: x.png" in ran.err


def test_manifest_inputs_are_named_by_line(server: Emulator, tmp_path: Path) -> None:
    manifest = write_manifest(
        tmp_path / "m.jsonl", [{"text": "a"}, {"text": "b"}, {"text": "\u0000binary\u0000"}]
    )
    ran = run_cli("embed", str(manifest), "-o", str(tmp_path / "o.jsonl"), env=service_env(server))
    assert ran.code == 2
    assert "error: line 3 (text): text holds NUL characters" in ran.err
    assert (
        f"2 vectors in {tmp_path / 'o.jsonl'}; fix it, then run the same command with --resume"
        in ran.err
    )
    _plain(ran.err)


def test_oversized_image_hint_names_the_option(server: Emulator, tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    big.write_bytes((DATA / "red.png").read_bytes() + b"\0" * 7_000_000)
    ran = run_cli("embed", "--image", str(big), env=service_env(server))
    assert ran.code == 2
    _plain(ran.err)


@pytest.mark.parametrize("mode", ["direct", "manifest"])
def test_the_advice_for_an_oversized_image_works(
    server: Emulator, tmp_path: Path, mode: str
) -> None:
    # Noise does not compress: 1500 x 1500 pixels make a PNG of some 6.8 MB, over the
    # request's 8 MB once base64-encoded, with sides under any usual --image-max-side.
    np = pytest.importorskip("numpy")
    image = pytest.importorskip("PIL.Image")
    pixels = np.random.default_rng(7).integers(0, 256, (1500, 1500, 3), dtype=np.uint8)
    image.fromarray(pixels).save(tmp_path / "big.png", compress_level=1)
    manifest = write_manifest(tmp_path / "m.jsonl", [{"id": "big", "image": "big.png"}])
    out = tmp_path / "o.jsonl"
    job = ["--image", "big.png"] if mode == "direct" else [str(manifest), "-o", str(out)]
    env = service_env(server)
    ran = run_cli("embed", *job, env=env, cwd=tmp_path)
    assert ran.code == 2 and "bytes but one request body holds at most" in ran.err
    _plain(ran.err)
    advice = re.search(r"; pass (--[a-z-]+(?: \d+)?) to shrink", ran.err_lines[0])
    assert advice is not None, ran.err
    ran = run_cli("embed", *job, *advice.group(1).split(), env=env, cwd=tmp_path)
    assert ran.code == 0, ran.err
    got = records(out) if mode == "manifest" else [orjson.loads(ran.out)]
    assert len(got) == 1 and len(got[0]["embedding"]) == 768


def test_downscale_oversized_without_pillow_names_the_option(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from opensearch_mm import images
    from opensearch_mm.cli import main

    monkeypatch.setattr(images, "pillow_available", lambda: False)
    monkeypatch.setenv("OPENSEARCH_MM_API_KEY", KEY)
    code = main(
        ["embed", "--text", "a", "--downscale-oversized", "--endpoint", "http://127.0.0.1:9"]
    )
    assert code == 2
    assert capsys.readouterr().err.splitlines() == [
        "opensearch-mm embed: error: --downscale-oversized needs Pillow: "
        "pip install 'opensearch-mm[images]'"
    ]


def test_a_wrong_key_says_what_to_fix_and_not_resume(server: Emulator, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "m.jsonl", [{"text": f"t{i}"} for i in range(100)])
    env = {"OPENSEARCH_MM_ENDPOINT": server.url, "OPENSEARCH_MM_API_KEY": "wrong-key"}
    ran = run_cli("embed", str(manifest), "-o", str(tmp_path / "o.jsonl"), env=env)
    assert ran.code == 1
    assert "failed: the service refused the API key (HTTP 401" in ran.err
    assert "to fix: check OPENSEARCH_MM_API_KEY (or --api-key)" in ran.err
    assert "--resume" not in ran.err
    _plain(ran.err)


def test_an_unknown_model_says_check_model(server: Emulator) -> None:
    ran = run_cli("embed", "--text", "hi", "--model", "ops-no-such-model", env=service_env(server))
    assert ran.code == 1
    assert "no service 'ops-no-such-model' in workspace 'default'" in ran.err
    assert "to fix: check --model and --workspace" in ran.err
    assert "--resume" not in ran.err
    _plain(ran.err)


def test_a_partial_direct_failure_keeps_the_vectors_and_names_the_rest(
    server: Emulator,
) -> None:
    texts = [arg for i in range(40) for arg in ("--text", f"text {i}")]
    server.inject("slow", 1, delay=0.0)  # the first request (32 inputs) is answered
    server.inject("quota", 1)
    ran = run_cli("embed", *texts, "--max-concurrency", "1", env=service_env(server))
    assert ran.code == 1
    assert len(ran.out.splitlines()) == 32
    assert "32 of 40 inputs embedded, written to stdout; not embedded: --text #33," in ran.err
    _plain(ran.err)


def test_a_refused_connection_names_the_endpoint(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    env = {"OPENSEARCH_MM_ENDPOINT": url, "OPENSEARCH_MM_API_KEY": KEY}
    manifest = write_manifest(tmp_path / "m.jsonl", [{"text": "a"}])
    ran = run_cli(
        "embed", str(manifest), "-o", str(tmp_path / "o.jsonl"), "--max-retries", "1", env=env
    )
    assert ran.code == 1
    assert f"cannot connect to {url}: connection refused" in ran.err
    assert "check the host and port in OPENSEARCH_MM_ENDPOINT (or --endpoint)" in ran.err
    assert "nothing written" not in ran.err or "--resume" not in ran.err
    _plain(ran.err)


def test_an_https_endpoint_speaking_plain_http_gets_the_scheme_hint(server: Emulator) -> None:
    https = server.url.replace("http://", "https://")
    env = {"OPENSEARCH_MM_ENDPOINT": https, "OPENSEARCH_MM_API_KEY": KEY}
    t0 = time.monotonic()
    ran = run_cli("embed", "--text", "hi", "--max-retries", "1", env=env)
    assert ran.code == 1
    assert f"cannot connect to {https}: the server answers in plain http, not https" in ran.err
    assert f"use --endpoint {server.url}" in ran.err
    assert time.monotonic() - t0 < 30
    _plain(ran.err)


def test_a_plain_socket_that_never_answers_is_not_a_traceback(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        env = {"OPENSEARCH_MM_ENDPOINT": url, "OPENSEARCH_MM_API_KEY": KEY}
        ran = run_cli("embed", "--text", "hi", "--timeout", "0.5", "--max-retries", "0", env=env)
    assert ran.code == 1
    assert url in ran.err and "raise --timeout" in ran.err
    _plain(ran.err)


def test_resume_is_advised_after_transient_failures_with_work_written(
    server: Emulator, tmp_path: Path
) -> None:
    manifest = write_manifest(tmp_path / "m.jsonl", [{"text": f"t{i}"} for i in range(100)])
    out = tmp_path / "o.jsonl"
    server.inject("slow", 1, delay=0.0)
    server.inject("server_error", 3)
    ran = run_cli(
        "embed",
        str(manifest),
        "-o",
        str(out),
        "--max-concurrency",
        "1",
        "--max-retries",
        "2",
        env=service_env(server),
    )
    assert ran.code == 1
    assert "failed: the service failed (HTTP 5" in ran.err
    assert f"32 vectors in {out}; run the same command with --resume to continue" in ran.err
    assert len(records(out)) == 32
    _plain(ran.err)


def test_retries_that_wait_say_so_and_are_counted(server: Emulator, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "m.jsonl", [{"text": f"t{i}"} for i in range(10)])
    server.inject("throttle", 2, retry_after=0.2)
    ran = run_cli(
        "embed", str(manifest), "-o", str(tmp_path / "o.jsonl"), "--max-concurrency", "1",
        env=service_env(server),
    )  # fmt: skip
    assert ran.code == 0, ran.err
    notices = [line for line in ran.err_lines if "retrying in" in line]
    assert len(notices) == 2
    for number, line in enumerate(notices, 1):
        assert re.fullmatch(
            rf"opensearch-mm embed: throttled, retrying in 0\.[23] s \({number}/6\)", line
        ), line
    assert "2 retries (2 throttled)" in ran.err_lines[-1]


def test_a_refused_connection_is_reported_within_seconds(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    env = {"OPENSEARCH_MM_ENDPOINT": url, "OPENSEARCH_MM_API_KEY": KEY}
    t0 = time.monotonic()
    ran = run_cli("embed", "--text", "hi", env=env)  # the default retry budget
    elapsed = time.monotonic() - t0
    assert ran.code == 1
    assert f"cannot connect to {url}: connection refused" in ran.err
    assert elapsed < 10, f"{elapsed:.1f} s"


def test_a_job_held_back_by_requests_in_flight_names_the_option(tmp_path: Path) -> None:
    lines = [{"text": f"line {i}"} for i in range(32 * 22)]
    manifest = write_manifest(tmp_path / "m.jsonl", lines)
    with Emulator(api_key=KEY, qps=None, latency_ms=250) as slow:
        ran = run_cli(
            "embed",
            str(manifest),
            "-o",
            str(tmp_path / "o.jsonl"),
            "--max-concurrency",
            "2",
            env=service_env(slow) | {"OPENSEARCH_MM_SHARE_RATE_LIMIT": "0"},
        )
    assert ran.code == 0, ran.err
    notes = [line for line in ran.err_lines if "requests in flight held this job" in line]
    assert len(notes) == 1, ran.err
    assert re.search(
        r"note: 2 requests in flight held this job to about [\d.]+ requests/s \(answers took "
        r"0\.\d\d s\); the rate limit allows 10\.0/s: --max-concurrency \d+ would reach it",
        notes[0],
    ), notes[0]
    assert "WARNING" not in ran.err and "max_concurrency=" not in ran.err
    _plain(ran.err)
    assert len(records(tmp_path / "o.jsonl")) == len(lines)


def test_an_account_that_let_nothing_through_says_wait_and_resume() -> None:
    error = RateLimitError("slow down", status_code=429, code="Throttling.RateQuota")
    busy = explain(error, endpoint="http://h:1", workspace="default", model="m", retries=6)
    assert busy.transient and "still throttled after 6 retries" in busy.message
    error.account_shut = True
    shut = explain(error, endpoint="http://h:1", workspace="default", model="m", retries=6)
    assert shut.transient and "let no request through" in shut.message
    assert "--resume" in shut.fix
    # The error raised is the first failed input's; the one that stopped the call is in
    # err.partial.errors.
    first = RateLimitError("slow down", status_code=429, code="Throttling.RateQuota")
    first.partial = PartialResult(
        embeddings=[None, None], failed_indices=[0, 1], errors={0: first, 1: error}
    )
    stopped = explain(first, endpoint="http://h:1", workspace="default", model="m", retries=6)
    assert "let no request through" in stopped.message
