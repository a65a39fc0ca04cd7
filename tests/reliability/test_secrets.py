"""The API key never shows up in reprs, errors, tracebacks, logs, cassettes or redirects."""

from __future__ import annotations

import asyncio
import logging
import threading
import traceback
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import vcr

from opensearch_mm import (
    APIError,
    InsecureTransportWarning,
    MultiModalEmbeddingClient,
    OpenSearchMMError,
)
from opensearch_mm.emulator import Emulator
from tests.support.recording import CASSETTES, _scrub_request, _scrub_response

from .conftest import API_KEY, make_client

FAULTS = ("throttle", "quota", "server_error", "bad_gateway", "drop", "malformed", "incomplete")


def _assert_clean(text: str) -> None:
    assert API_KEY not in text
    assert API_KEY[8:24] not in text  # not even a piece of it


def _everything_about(exc: BaseException, *, with_locals: bool = True) -> str:
    """Message, repr, traceback and (as error trackers record them) the frames' locals."""
    parts = [str(exc), repr(exc), *map(repr, exc.args)]
    parts += traceback.format_exception(exc)
    if with_locals:
        trace = traceback.TracebackException.from_exception(exc, capture_locals=True)
        parts += list(trace.format())
    partial = getattr(exc, "partial", None)
    if partial is not None:
        parts.append(repr(partial))
    return "\n".join(parts)


def test_reprs_hold_no_key(emu: Emulator) -> None:
    with make_client(emu.url) as client:
        client.embed_texts(["warm up"])
        for obj in (client, client._sync, client._http, client.rate_limiter, client.retry_policy):
            _assert_clean(repr(obj))
            _assert_clean(str(obj))
        assert "****" in repr(client)


@pytest.mark.parametrize("fault", FAULTS)
def test_errors_and_tracebacks_hold_no_key(emu: Emulator, fault: str) -> None:
    emu.inject(fault, 100)
    client = make_client(emu.url, retry_policy=None, max_retries=0, max_concurrency=1)
    with client, pytest.raises(OpenSearchMMError) as ei:
        client.embed_texts([f"text {i}" for i in range(40)])
    _assert_clean(_everything_about(ei.value))


def test_auth_error_and_connection_error_hold_no_key(emu: Emulator) -> None:
    client = make_client(emu.url, api_key=API_KEY + "-wrong")
    with client, pytest.raises(APIError) as ei:
        client.embed_texts(["x"])
    assert ei.value.status_code == 401
    _assert_clean(_everything_about(ei.value))
    client = make_client("http://127.0.0.1:9", retry_policy=None, max_retries=0)
    with client, pytest.raises(OpenSearchMMError) as ei2:  # nothing listens on port 9
        client.embed_texts(["x"])
    _assert_clean(_everything_about(ei2.value))


class _Echo(BaseHTTPRequestHandler):
    """Answers 400 with the request's Authorization header in the message."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        token = self.headers.get("Authorization", "")
        body = b'{"code": "InvalidParameter", "message": "bad token ' + token.encode() + b'"}'
        self.send_response(400)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def echo() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_configuration_error_traceback_holds_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENSEARCH_MM_API_KEY", API_KEY)
    with pytest.raises(OpenSearchMMError) as ei:
        MultiModalEmbeddingClient(endpoint="https://example.com", timeout=0)
    _assert_clean(_everything_about(ei.value))


def test_a_server_echoing_the_key_is_scrubbed(echo: str) -> None:
    with make_client(echo) as client, pytest.raises(APIError) as ei:
        client.embed_texts(["x"])
    assert "****" in str(ei.value)
    # Not the frames' locals: they hold the raw answer, which here contains the key.
    _assert_clean(_everything_about(ei.value, with_locals=False))


def test_debug_logs_hold_no_key(emu: Emulator, caplog: pytest.LogCaptureFixture) -> None:
    retryable = [kind for kind in FAULTS if kind != "quota"]
    emu.set_random_faults(0.3, retryable, seed=5)
    caplog.set_level(logging.DEBUG)  # root: httpx, httpcore, opensearch_mm, emulator
    with make_client(emu.url) as client:
        client.embed_texts([f"log {i}" for i in range(300)])
    with make_client(emu.url, api_key="wrong") as client, pytest.raises(APIError):
        client.embed_texts(["x"])

    async def run() -> None:
        client = make_client(emu.url)
        await client.aembed_texts([f"alog {i}" for i in range(100)])
        await client.aclose()

    asyncio.run(run())
    emu.clear_faults()
    assert any(r.name.startswith("httpcore") for r in caplog.records)  # DEBUG really on
    assert any("retrying" in r.getMessage() for r in caplog.records)
    for record in caplog.records:
        _assert_clean(record.getMessage())
        _assert_clean(repr(record.args))
        _assert_clean(repr(record.__dict__))
    _assert_clean(caplog.text)


def test_recorded_cassette_holds_no_key(emu: Emulator, tmp_path: Path) -> None:
    recorder = vcr.VCR(
        cassette_library_dir=str(tmp_path),
        record_mode="all",
        before_record_request=_scrub_request,
        before_record_response=_scrub_response,
    )
    with recorder.use_cassette("scrubbed.yaml"), make_client(emu.url) as client:
        client.embed_texts(["recorded"])
    raw = vcr.VCR(cassette_library_dir=str(tmp_path), record_mode="all")
    with raw.use_cassette("raw.yaml"), make_client(emu.url) as client:
        client.embed_texts(["recorded"])
    assert API_KEY in (tmp_path / "raw.yaml").read_text()  # the scan can see a leak
    _assert_clean((tmp_path / "scrubbed.yaml").read_text())


@pytest.mark.parametrize(
    "path", sorted(CASSETTES.rglob("*.*")), ids=lambda p: str(p.relative_to(CASSETTES))
)
def test_committed_cassettes_hold_no_key(path: Path) -> None:
    text = path.read_text(errors="replace")
    for secret in (API_KEY, "record-key", "test-key"):
        assert secret not in text
    assert "Bearer" not in text and "uthorization" not in text


# -- redirects ---------------------------------------------------------------------------


class _Sink(BaseHTTPRequestHandler):
    """Records what reaches it; answers 307 to ``target`` if set, else 401."""

    seen: list[dict[str, str]]
    target: str | None = None

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).seen.append({k.lower(): v for k, v in self.headers.items()})
        if self.target:
            self.send_response(307)
            self.send_header("Location", self.target + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b'{"code": "Unauthorized", "message": "no key"}'
        self.send_response(401)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def redirect() -> Iterator[tuple[str, list[dict[str, str]], list[dict[str, str]]]]:
    """(redirecting URL, headers seen there, headers seen at the other host)."""
    other: type[_Sink] = type("Other", (_Sink,), {"seen": [], "target": None})
    other_server = ThreadingHTTPServer(("127.0.0.1", 0), other)
    # Another host (localhost vs 127.0.0.1) and another port: a different origin.
    first: type[_Sink] = type(
        "First",
        (_Sink,),
        {"seen": [], "target": f"http://localhost:{other_server.server_address[1]}"},
    )
    first_server = ThreadingHTTPServer(("127.0.0.1", 0), first)
    for server in (other_server, first_server):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{first_server.server_address[1]}", first.seen, other.seen
    for server in (other_server, first_server):
        server.shutdown()
        server.server_close()


def test_key_not_sent_after_redirect_by_default(redirect: Any) -> None:
    url, first, other = redirect
    with make_client(url) as client, pytest.raises(APIError) as ei:
        client.embed_texts(["x"])
    assert ei.value.status_code == 307
    assert first[0]["authorization"] == f"Bearer {API_KEY}"
    assert other == []  # the redirect was not followed
    # (this test's own locals hold the headers the first server saw: not a leak)
    _assert_clean(_everything_about(ei.value, with_locals=False))


def test_key_not_sent_after_redirect_with_a_following_client(redirect: Any) -> None:
    url, _, other = redirect
    http = httpx.Client(follow_redirects=True)
    with make_client(url, http_client=http) as client, pytest.raises(APIError):
        client.embed_texts(["x"])
    http.close()
    assert len(other) >= 1  # the user's client did follow it...
    for headers in other:  # ...but httpx dropped the key on the way to the other origin
        assert "authorization" not in headers
        _assert_clean(repr(headers))


async def test_key_not_sent_after_redirect_async(redirect: Any) -> None:
    url, _, other = redirect
    client = make_client(url)
    with pytest.raises(APIError):
        await client.aembed_texts(["x"])
    await client.aclose()
    assert other == []
    http = httpx.AsyncClient(follow_redirects=True)
    client = make_client(url, http_async_client=http)
    with pytest.raises(APIError):
        await client.aembed_texts(["x"])
    await client.aclose()
    await http.aclose()
    assert other and all("authorization" not in h for h in other)


# -- plain http ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "endpoint", ["http://example.com", "http://10.0.0.5:8080", "http://ops.aliyuncs.com/"]
)
def test_warns_before_sending_the_key_over_plain_http(endpoint: str) -> None:
    with pytest.warns(InsecureTransportWarning) as caught:
        client = MultiModalEmbeddingClient(api_key=API_KEY, endpoint=endpoint)
    client.close()
    _assert_clean(str(caught[0].message))


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://example.com",
        "example.com",
        "http://127.0.0.1:8080",
        "http://localhost:1234",
        "http://[::1]:80",
        "http://127.5.5.5",
    ],
)
def test_no_warning_for_https_or_loopback(endpoint: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", InsecureTransportWarning)
        MultiModalEmbeddingClient(api_key=API_KEY, endpoint=endpoint).close()
