"""First contact over real sockets: wrong port, https to a plain-http server, retry logs."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from opensearch_mm import APIConnectionError, MultiModalEmbeddingClient
from opensearch_mm.emulator import Emulator
from opensearch_mm.ratelimit import Ticket, UnlimitedRateLimiter
from opensearch_mm.retry import RetryPolicy

KEY = "OS-connection-test-key-0123456789"
MODES = ["sync", "async"]


class CountingLimiter(UnlimitedRateLimiter):
    """No limit; counts the requests sent (one ``observe`` each)."""

    def __init__(self) -> None:
        self.observed = 0

    def observe(self, error: BaseException | None, ticket: Ticket | None = None) -> None:
        self.observed += 1


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PlainHTTPServer:
    """Answers every connection with a plain-http 400, counting connections."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = int(self.sock.getsockname()[1])
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                conn.settimeout(2)
                try:
                    conn.recv(65536)
                    conn.sendall(
                        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                        b"Connection: close\r\n\r\n"
                    )
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def plain_http() -> Iterator[PlainHTTPServer]:
    server = PlainHTTPServer()
    yield server
    server.close()


async def embed(client: MultiModalEmbeddingClient, mode: str) -> Any:
    if mode == "sync":
        return client.embed_texts(["x"])
    return await client.aembed_texts(["x"])


@pytest.mark.parametrize("mode", MODES)
async def test_refused_connection_is_reported_quickly_naming_the_endpoint(mode: str) -> None:
    port = closed_port()
    limiter = CountingLimiter()
    # default max_retries (6): a refusal must not go through the full backoff
    client = MultiModalEmbeddingClient(
        api_key=KEY, endpoint=f"http://127.0.0.1:{port}", rate_limiter=limiter
    )
    start = time.monotonic()
    try:
        with pytest.raises(APIConnectionError) as ei:
            await embed(client, mode)
    finally:
        await client.aclose()
    elapsed = time.monotonic() - start
    err = ei.value
    assert err.kind == "refused"
    assert err.endpoint == f"http://127.0.0.1:{port}"
    assert f"http://127.0.0.1:{port}" in str(err) and "refused" in str(err)
    assert KEY not in str(err)
    assert limiter.observed == 3  # the first try and two quick retries, not seven
    assert elapsed < 5.0  # ~1 s of jittered waits at most, with a wide margin


@pytest.mark.parametrize("mode", MODES)
async def test_an_unknown_host_is_reported_quickly_naming_it(mode: str) -> None:
    # (".invalid" never resolves: RFC 6761. A misspelt host went through six retries
    # and their backoff, about 25 s, before it was told.)
    limiter = CountingLimiter()
    client = MultiModalEmbeddingClient(
        api_key=KEY, endpoint="https://embedding.invalid", rate_limiter=limiter
    )
    try:
        with pytest.raises(APIConnectionError) as ei:
            await embed(client, mode)
    finally:
        await client.aclose()
    assert ei.value.kind == "unresolved"
    assert "embedding.invalid cannot be found" in str(ei.value)
    assert limiter.observed == 3  # the first try and two quick retries, not seven


@pytest.mark.parametrize("mode", MODES)
async def test_https_to_a_plain_http_server_is_not_retried_and_hints_http(
    plain_http: PlainHTTPServer, mode: str
) -> None:
    client = MultiModalEmbeddingClient(
        api_key=KEY, endpoint=f"https://127.0.0.1:{plain_http.port}", qps=None
    )
    try:
        with pytest.raises(APIConnectionError) as ei:
            await embed(client, mode)
    finally:
        await client.aclose()
    err = ei.value
    assert err.kind == "tls_mismatch"
    assert f"'http://127.0.0.1:{plain_http.port}'" in str(err)
    assert KEY not in str(err)
    assert plain_http.connections == 1


@pytest.mark.parametrize("mode", MODES)
async def test_retries_are_logged_at_info_with_n_of_m(
    mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    with Emulator(api_key=KEY, qps=None, latency_ms=0) as emu:
        emu.inject("server_error", 2)
        client = MultiModalEmbeddingClient(
            api_key=KEY,
            endpoint=emu.url,
            qps=None,
            retry_policy=RetryPolicy(max_retries=3, initial_delay=0.01, max_delay=0.02),
        )
        with caplog.at_level(logging.INFO, logger="opensearch_mm"):
            try:
                assert len(await embed(client, mode)) == 1
            finally:
                await client.aclose()
    records = [r for r in caplog.records if r.name == "opensearch_mm" and r.levelno == 20]
    messages = [r.getMessage() for r in records]
    assert [m.split(" after ")[0].split(" (")[1] for m in messages] == [
        "retry 1 of 3)",
        "retry 2 of 3)",
    ]
    assert all("HTTP 500" in m and "request_id=" in m for m in messages)
    assert [r.__dict__["retry_number"] for r in records] == [1, 2]
    assert all(r.__dict__["retry_error"].status_code == 500 for r in records)
    assert KEY not in caplog.text
