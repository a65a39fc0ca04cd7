"""Every error the emulator can produce reaches the caller as the right exception."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from opensearch_mm import Content, MultiModalEmbeddingClient
from opensearch_mm.emulator import Emulator
from opensearch_mm.errors import (
    APIConnectionError,
    APIError,
    APIResponseError,
    APITimeoutError,
    AuthenticationError,
    InternalServerError,
    InvalidParameterError,
    OpenSearchMMError,
    QuotaExceededError,
    RateLimitError,
    ServiceNotFoundError,
)
from opensearch_mm.results import EmbeddingResult
from opensearch_mm.retry import RetryPolicy

KEY = "OS-errors-test-key-abcdef"
MODES = ["sync", "async"]


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(api_key=KEY, qps=None, latency_ms=0) as e:
        yield e


def make(
    emu: Emulator, *, key: str = KEY, endpoint: str | None = None, max_retries: int = 0, **kw: Any
) -> MultiModalEmbeddingClient:
    kw.setdefault("qps", None)
    policy = RetryPolicy(max_retries=max_retries, initial_delay=0.01, max_delay=0.05)
    client = MultiModalEmbeddingClient(
        api_key=key, endpoint=endpoint or emu.url, retry_policy=policy, **kw
    )
    return client


async def call(client: MultiModalEmbeddingClient, mode: str, inputs: list[Any]) -> EmbeddingResult:
    if mode == "sync":
        return client.embed(inputs)
    return await client.aembed(inputs)


@pytest.fixture
async def clients() -> AsyncIterator[list[MultiModalEmbeddingClient]]:
    made: list[MultiModalEmbeddingClient] = []
    yield made
    for c in made:
        await c.aclose()


def check_no_key(err: BaseException) -> None:
    assert KEY not in str(err) and KEY not in repr(err)
    assert all(KEY not in str(a) for a in err.args)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("kind", "cls", "status", "code"),
    [
        ("throttle", RateLimitError, 429, "Throttling.RateQuota"),
        ("throttling", RateLimitError, 429, "Throttling"),
        ("quota", QuotaExceededError, 429, "Throttling.AllocationQuota"),
        ("server_error", InternalServerError, 500, "InternalServerError"),
        ("bad_gateway", InternalServerError, 502, None),
    ],
)
async def test_error_faults_mapped(
    emu: Emulator,
    clients: list[MultiModalEmbeddingClient],
    mode: str,
    kind: str,
    cls: type[APIError],
    status: int,
    code: str | None,
) -> None:
    client = make(emu)
    clients.append(client)
    emu.inject(kind, 1)
    with pytest.raises(cls) as ei:
        await call(client, mode, ["hello"])
    err = ei.value
    assert type(err) is cls
    assert err.status_code == status and err.code == code
    assert err.message
    if kind == "bad_gateway":
        assert "502 Bad Gateway" in err.message
    else:
        assert err.request_id  # from the JSON body
    check_no_key(err)
    assert emu.stats.requests == 1
    assert err.partial is not None and err.partial.failed_indices == [0]
    # the fault is gone: the same client works again
    assert len((await call(client, mode, ["hello"])).embeddings[0]) == 768


@pytest.mark.parametrize("mode", MODES)
async def test_drop_is_connection_error(
    emu: Emulator, clients: list[MultiModalEmbeddingClient], mode: str
) -> None:
    client = make(emu)
    clients.append(client)
    emu.inject("drop", 1)
    with pytest.raises(APIConnectionError) as ei:
        await call(client, mode, ["x"])
    assert not isinstance(ei.value, APITimeoutError)
    check_no_key(ei.value)
    assert emu.stats.dropped == 1


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("kind", "text"), [("malformed", "not a JSON object"), ("incomplete", "lacks embeddings")]
)
async def test_bad_bodies_are_response_errors(
    emu: Emulator, clients: list[MultiModalEmbeddingClient], mode: str, kind: str, text: str
) -> None:
    client = make(emu)
    clients.append(client)
    emu.inject(kind, 1)
    with pytest.raises(APIResponseError, match=text) as ei:
        await call(client, mode, ["a", "b"])
    assert ei.value.request_id  # from the x-acs-request-id header or the body
    assert emu.stats.requests == 1


@pytest.mark.parametrize("mode", MODES)
async def test_slow_is_timeout(
    emu: Emulator, clients: list[MultiModalEmbeddingClient], mode: str
) -> None:
    client = make(emu, timeout=0.2)
    clients.append(client)
    emu.inject("slow", 1, delay=1.0)
    with pytest.raises(APITimeoutError):
        await call(client, mode, ["x"])


@pytest.mark.parametrize("mode", MODES)
async def test_wrong_key(
    emu: Emulator, clients: list[MultiModalEmbeddingClient], mode: str
) -> None:
    wrong = "OS-wrong-key-zzzzzz"
    client = make(emu, key=wrong, max_retries=3)
    clients.append(client)
    with pytest.raises(AuthenticationError) as ei:
        await call(client, mode, [f"t{i}" for i in range(100)])
    err = ei.value
    assert err.status_code == 401 and err.code == "Unauthorized" and err.request_id
    assert wrong not in str(err) and wrong not in repr(err)
    # fatal for the call: no retries, and not more batches than were already in flight
    assert 1 <= emu.stats.requests <= 4
    assert err.partial is not None and err.partial.failed_indices == list(range(100))


@pytest.mark.parametrize("mode", MODES)
async def test_unknown_service_id(
    emu: Emulator, clients: list[MultiModalEmbeddingClient], mode: str
) -> None:
    client = make(emu, model="ops-nope", max_retries=3)
    clients.append(client)
    with pytest.raises(ServiceNotFoundError) as ei:
        await call(client, mode, ["x"])
    assert ei.value.status_code == 400 and ei.value.code == "ServiceIdNotExist"
    assert ei.value.message == "service_id is not exist."
    # (The service's message names no model: the error says which was asked for, and
    # which are known, a typo's likely fix.)
    assert "asked for service_id 'ops-nope' in workspace 'default'" in str(ei.value)
    assert "ops-m2-encoder-large" in str(ei.value)
    assert emu.stats.requests == 1


@pytest.mark.parametrize("mode", MODES)
async def test_wrong_path_is_not_found(
    emu: Emulator, clients: list[MultiModalEmbeddingClient], mode: str
) -> None:
    client = make(emu, endpoint=emu.url + "/prefix", max_retries=3)
    clients.append(client)
    with pytest.raises(ServiceNotFoundError) as ei:
        await call(client, mode, ["x"])
    assert ei.value.status_code == 404 and ei.value.code == "NotFound"
    assert emu.stats.requests == 1


def _corrupt(request: httpx.Request) -> httpx.Request:
    headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
    return httpx.Request(
        request.method, request.url, headers=headers, content=b'{"input": "not a list"}'
    )


class _CorruptingTransport(httpx.HTTPTransport):
    """Sends a body the service refuses (what a client bug would look like)."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        bad = _corrupt(request)
        return super().handle_request(bad)


class _AsyncCorruptingTransport(httpx.AsyncHTTPTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        bad = _corrupt(request)
        return await super().handle_async_request(bad)


@pytest.mark.parametrize("mode", MODES)
async def test_invalid_parameter(emu: Emulator, mode: str) -> None:
    http = httpx.Client(transport=_CorruptingTransport())
    ahttp = httpx.AsyncClient(transport=_AsyncCorruptingTransport())
    client = make(emu, max_retries=3, http_client=http, http_async_client=ahttp)
    try:
        with pytest.raises(InvalidParameterError) as ei:
            await call(client, mode, ["x"])
    finally:
        await client.aclose()
        http.close()
        await ahttp.aclose()
    err = ei.value
    assert err.status_code == 400 and err.code == "InvalidParameter"
    assert "input" in err.message and err.request_id
    assert emu.stats.requests == 1  # never retried


@pytest.mark.parametrize("mode", MODES)
async def test_connection_refused(clients: list[MultiModalEmbeddingClient], mode: str) -> None:
    with Emulator(api_key=KEY) as e:
        url = e.url  # a port that is closed once the emulator stops
    client = MultiModalEmbeddingClient(api_key=KEY, endpoint=url, qps=None, max_retries=0)
    clients.append(client)
    with pytest.raises(APIConnectionError) as ei:
        await call(client, mode, ["x"])
    check_no_key(ei.value)


@pytest.mark.parametrize("mode", MODES)
async def test_input_errors_before_network(
    emu: Emulator, clients: list[MultiModalEmbeddingClient], mode: str
) -> None:
    client = make(emu)
    clients.append(client)
    with pytest.raises(OpenSearchMMError) as ei:
        await call(client, mode, ["a"] * 40 + [Content(text="t", image="https://x.org/a.png")])
    assert getattr(ei.value, "index", None) == 40
    assert emu.stats.requests == 0


@pytest.mark.parametrize("mode", MODES)
async def test_an_answer_sent_a_little_at_a_time_is_held_to_the_timeout(
    emu: Emulator, clients: list[MultiModalEmbeddingClient], mode: str
) -> None:
    # httpx times each read: a body whose pieces each come within the timeout held a
    # call for as long as it took (the answer here takes 3 s; the timeout is 0.5 s).
    emu.inject("trickle", 1, delay=3.0)
    client = make(emu, timeout=0.5)
    clients.append(client)
    with pytest.raises(APITimeoutError):
        await call(client, mode, ["x"])
    emu.inject("trickle", 1, delay=0.2)  # (a body read in full within it is taken)
    result = await call(client, mode, ["x"])
    assert len(result.embeddings) == 1
