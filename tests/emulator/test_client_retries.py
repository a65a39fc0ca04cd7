"""What the client retries, what it does not, Retry-After, and partial results."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from opensearch_mm import MultiModalEmbeddingClient
from opensearch_mm.emulator import Emulator
from opensearch_mm.errors import (
    AuthenticationError,
    InternalServerError,
    QuotaExceededError,
    RateLimitError,
)
from opensearch_mm.results import EmbeddingResult
from opensearch_mm.retry import RetryPolicy

KEY = "OS-retries-test-key"
MODES = ["sync", "async"]
TEXTS = ["alpha", "beta", "gamma"]


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(api_key=KEY, qps=None, latency_ms=0) as e:
        yield e


def make(
    emu: Emulator, *, key: str = KEY, max_retries: int = 4, **kw: Any
) -> MultiModalEmbeddingClient:
    kw.setdefault("qps", None)
    policy = RetryPolicy(max_retries=max_retries, initial_delay=0.01, max_delay=0.05)
    client = MultiModalEmbeddingClient(api_key=key, endpoint=emu.url, retry_policy=policy, **kw)
    return client


@pytest.fixture
async def clients() -> AsyncIterator[list[MultiModalEmbeddingClient]]:
    made: list[MultiModalEmbeddingClient] = []
    yield made
    for c in made:
        await c.aclose()


async def call(client: MultiModalEmbeddingClient, mode: str, inputs: list[Any]) -> EmbeddingResult:
    if mode == "sync":
        return client.embed(inputs)
    return await client.aembed(inputs)


@pytest.fixture
def expected(emu: Emulator) -> list[list[float]]:
    with make(emu) as c:
        vectors = c.embed_texts(TEXTS)
    emu.reset_stats()
    return vectors


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "kind",
    ["throttle", "throttling", "server_error", "bad_gateway", "drop", "malformed", "incomplete"],
)
async def test_retried_then_success(
    emu: Emulator,
    clients: list[MultiModalEmbeddingClient],
    expected: list[list[float]],
    mode: str,
    kind: str,
) -> None:
    client = make(emu)
    clients.append(client)
    emu.inject(kind, 2)
    result = await call(client, mode, TEXTS)
    assert result.embeddings == expected
    assert emu.stats.requests == 3
    log = emu.requests_log
    assert [r.fault for r in log] == [kind, kind, None]
    assert log[-1].status == 200
    assert len(result.request_ids) == 1


@pytest.mark.parametrize("mode", MODES)
async def test_timeout_retried(
    emu: Emulator, clients: list[MultiModalEmbeddingClient], expected: list[list[float]], mode: str
) -> None:
    client = make(emu, timeout=0.25)
    clients.append(client)
    emu.inject("slow", 1, delay=1.0)
    start = time.monotonic()
    result = await call(client, mode, TEXTS)
    assert time.monotonic() - start >= 0.25
    assert result.embeddings == expected
    assert emu.stats.requests == 2


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("kind", "cls"), [("quota", QuotaExceededError)])
async def test_quota_not_retried(
    emu: Emulator,
    clients: list[MultiModalEmbeddingClient],
    mode: str,
    kind: str,
    cls: type[Exception],
) -> None:
    client = make(emu, max_retries=5)
    clients.append(client)
    emu.inject(kind, 3)
    with pytest.raises(cls):
        await call(client, mode, TEXTS)
    assert emu.stats.requests == 1
    assert emu.pending_faults == 2


@pytest.mark.parametrize("mode", MODES)
async def test_a_quota_back_after_a_hint_is_retried_then(
    emu: Emulator,
    clients: list[MultiModalEmbeddingClient],
    mode: str,
    expected: list[list[float]],
) -> None:
    # "Allocated quota exceeded" with Retry-After: a quota per period the service says is
    # back then. (Without a hint the call stops at once: above.)
    client = make(emu, max_retries=5)
    clients.append(client)
    emu.inject("quota", 2, retry_after=0.2)
    start = time.monotonic()
    result = await call(client, mode, TEXTS)
    assert time.monotonic() - start >= 0.35  # each retry waited for its hint
    assert result.embeddings == expected
    assert emu.stats.requests == 3


@pytest.mark.parametrize("mode", MODES)
async def test_auth_not_retried(
    emu: Emulator, clients: list[MultiModalEmbeddingClient], mode: str
) -> None:
    client = make(emu, key="wrong-key", max_retries=5)
    clients.append(client)
    with pytest.raises(AuthenticationError):
        await call(client, mode, TEXTS)
    assert emu.stats.requests == 1


class _BadBody(httpx.HTTPTransport):
    def handle_request(self, request: httpx.Request) -> httpx.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
        return super().handle_request(
            httpx.Request("POST", request.url, headers=headers, content=b"{oops")
        )


class _AsyncBadBody(httpx.AsyncHTTPTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
        return await super().handle_async_request(
            httpx.Request("POST", request.url, headers=headers, content=b"{oops")
        )


@pytest.mark.parametrize("mode", MODES)
async def test_400_not_retried(emu: Emulator, mode: str) -> None:
    from opensearch_mm.errors import InvalidParameterError

    http, ahttp = httpx.Client(transport=_BadBody()), httpx.AsyncClient(transport=_AsyncBadBody())
    client = make(emu, max_retries=5, http_client=http, http_async_client=ahttp)
    try:
        with pytest.raises(InvalidParameterError):
            await call(client, mode, TEXTS)
    finally:
        await client.aclose()
        http.close()
        await ahttp.aclose()
    # No body is sent twice: the request of three, then its halves ([alpha], [beta,
    # gamma]) to tell a bad input from good ones, then the second half's.
    assert emu.stats.requests == 5


@pytest.mark.parametrize("mode", MODES)
async def test_retry_after_honoured(
    emu: Emulator, clients: list[MultiModalEmbeddingClient], expected: list[list[float]], mode: str
) -> None:
    client = make(emu)
    clients.append(client)
    emu.inject("throttle", 1, retry_after=0.3)
    start = time.monotonic()
    result = await call(client, mode, TEXTS)
    elapsed = time.monotonic() - start
    assert elapsed >= 0.3
    assert elapsed < 5.0
    assert result.embeddings == expected
    assert emu.stats.requests == 2


@pytest.mark.parametrize("mode", MODES)
async def test_retries_exhausted(
    emu: Emulator, clients: list[MultiModalEmbeddingClient], mode: str
) -> None:
    client = make(emu, max_retries=2)
    clients.append(client)
    emu.inject("throttle", 10)
    with pytest.raises(RateLimitError) as ei:
        await call(client, mode, TEXTS)
    assert ei.value.code == "Throttling.RateQuota"
    assert emu.stats.requests == 3  # one try and two retries


def _inject_after_first(emu: Emulator, kind: str, count: int) -> tuple[Any, Any]:
    """Response hooks that script ``count`` faults once the first answer has arrived."""
    done: list[bool] = []

    def hook(response: httpx.Response) -> None:
        if not done:
            done.append(True)
            emu.inject(kind, count)

    async def ahook(response: httpx.Response) -> None:
        hook(response)

    return hook, ahook


@pytest.mark.parametrize("mode", MODES)
async def test_partial_result_when_retries_exhausted(emu: Emulator, mode: str) -> None:
    texts = [f"text {i}" for i in range(96)]
    with make(emu) as c:
        reference = c.embed_texts(texts)
    emu.reset_stats()
    hook, ahook = _inject_after_first(emu, "server_error", 100)
    http = httpx.Client(event_hooks={"response": [hook]})
    ahttp = httpx.AsyncClient(event_hooks={"response": [ahook]})
    client = make(emu, max_retries=2, max_concurrency=1, http_client=http, http_async_client=ahttp)
    try:
        with pytest.raises(InternalServerError) as ei:
            await call(client, mode, texts)
    finally:
        await client.aclose()
        http.close()
        await ahttp.aclose()
    err = ei.value
    assert err.status_code == 500
    partial = err.partial
    assert partial is not None
    assert partial.embeddings[:32] == reference[:32]
    assert partial.succeeded_indices == list(range(32))
    assert partial.failed_indices == list(range(32, 96))
    assert all(partial.errors[i] is not None for i in range(32, 96))
    assert len(partial.request_ids) == 1 and partial.usage.token_count > 0
    # 1 success, then 2 batches x 3 tries
    assert emu.stats.requests == 7


@pytest.mark.parametrize("mode", MODES)
async def test_one_bad_batch_does_not_sink_the_others(emu: Emulator, mode: str) -> None:
    texts = [f"t{i}" for i in range(96)]
    with make(emu) as c:
        reference = c.embed_texts(texts)
    emu.reset_stats()
    # the first batch gets retried to exhaustion, the next two succeed
    client = make(emu, max_retries=1, max_concurrency=1)
    emu.inject("server_error", 2)
    try:
        with pytest.raises(InternalServerError) as ei:
            await call(client, mode, texts)
    finally:
        await client.aclose()
    partial = ei.value.partial
    assert partial is not None
    assert partial.failed_indices == list(range(32))
    assert partial.embeddings[32:] == reference[32:]
    assert emu.stats.requests == 4


@pytest.mark.parametrize("mode", MODES)
async def test_key_never_logged_during_retries(
    emu: Emulator,
    caplog: pytest.LogCaptureFixture,
    clients: list[MultiModalEmbeddingClient],
    mode: str,
) -> None:
    client = make(emu)
    clients.append(client)
    for kind in ("throttle", "server_error", "drop", "malformed"):
        emu.inject(kind, 1)
    with caplog.at_level("DEBUG"):
        await call(client, mode, TEXTS)
    assert emu.stats.requests == 5
    assert caplog.records  # the retries were logged
    assert KEY not in caplog.text
