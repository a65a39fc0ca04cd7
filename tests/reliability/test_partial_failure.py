"""When retries run out part-way, the error carries the work done and what is left."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import httpx
import pytest

from opensearch_mm import (
    AuthenticationError,
    InputError,
    InternalServerError,
    PartialResult,
    QuotaExceededError,
    RateLimitError,
)
from opensearch_mm.emulator import Emulator
from opensearch_mm.ratelimit import (
    AdaptiveRateLimiter,
    FixedRateLimiter,
    RateLimiter,
    UnlimitedRateLimiter,
)
from opensearch_mm.retry import RetryPolicy

from .conftest import make_client

TEXTS = [f"partial failure text {i}" for i in range(200)]  # 7 requests: 6 x 32 + 8
THREE_TRIES = RetryPolicy(max_retries=2, initial_delay=0.001, max_delay=0.005)


class FaultAt(httpx.HTTPTransport):
    """Arms an emulator fault just before the n-th request (1-based) goes out."""

    def __init__(self, emu: Emulator, plan: dict[int, tuple[str, int]]) -> None:
        super().__init__()
        self.emu, self.plan, self.sent = emu, plan, 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent += 1
        if self.sent in self.plan:
            self.emu.inject(*self.plan[self.sent])
        return super().handle_request(request)


class AsyncFaultAt(httpx.AsyncHTTPTransport):
    def __init__(self, emu: Emulator, plan: dict[int, tuple[str, int]]) -> None:
        super().__init__()
        self.emu, self.plan, self.sent = emu, plan, 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.sent += 1
        if self.sent in self.plan:
            self.emu.inject(*self.plan[self.sent])
        return await super().handle_async_request(request)


@pytest.fixture
def clean(emu: Emulator) -> list[list[float]]:
    with make_client(emu.url) as client:
        vectors = client.embed_texts(TEXTS)
    emu.reset_stats()
    return vectors


def _client(emu: Emulator, plan: dict[int, tuple[str, int]], **options: Any) -> Any:
    http = httpx.Client(transport=FaultAt(emu, plan))
    return make_client(
        emu.url, http_client=http, max_concurrency=1, retry_policy=THREE_TRIES, **options
    )


def _check_partial(partial: PartialResult, clean: list[list[float]]) -> None:
    """Every vector in the partial result is the right one, and only failed ones lack one."""
    for j, vector in enumerate(partial.embeddings):
        index = partial.offset + j
        assert (vector is None) == (index in partial.failed_indices)
        if vector is not None:
            assert vector == clean[index]
            assert partial.vector(index) == vector


def test_retries_run_out_mid_call_the_rest_still_finishes(
    emu: Emulator, clean: list[list[float]]
) -> None:
    # Request 3 (inputs 64..95) fails three times: its retries run out.
    with _client(emu, {3: ("server_error", 3)}) as client, pytest.raises(InternalServerError) as ei:
        client.embed_texts(TEXTS)
    err = ei.value
    partial = err.partial
    assert partial is not None and partial.offset == 0
    assert partial.failed_indices == list(range(64, 96))
    assert partial.succeeded_indices == [*range(64), *range(96, 200)]
    assert all(partial.errors[i] is err for i in partial.failed_indices)
    _check_partial(partial, clean)
    assert "168 of 200 inputs embedded" in str(err) and "first: input 64" in str(err)
    assert len(partial.request_ids) == 6 and partial.usage.token_count > 0
    # The caller finishes the rest without redoing the work.
    with make_client(emu.url) as client:
        rest = client.embed_texts([TEXTS[i] for i in partial.failed_indices])
    merged = list(partial.embeddings)
    for i, vector in zip(partial.failed_indices, rest, strict=True):
        merged[i] = vector
    assert merged == clean
    assert emu.stats.inputs_embedded == len(TEXTS)  # not one input embedded twice


async def test_async_retries_run_out_mid_call(emu: Emulator, clean: list[list[float]]) -> None:
    http = httpx.AsyncClient(transport=AsyncFaultAt(emu, {5: ("drop", 3)}))
    client = make_client(
        emu.url, http_async_client=http, max_concurrency=1, retry_policy=THREE_TRIES
    )
    try:
        with pytest.raises(Exception) as ei:
            await client.aembed(TEXTS)
    finally:
        await client.aclose()
        await http.aclose()
    partial = ei.value.partial  # type: ignore[attr-defined]
    assert partial is not None
    assert partial.failed_indices == list(range(128, 160))
    _check_partial(partial, clean)


def test_fatal_error_sends_nothing_more(emu: Emulator, clean: list[list[float]]) -> None:
    with _client(emu, {3: ("quota", 1)}) as client, pytest.raises(QuotaExceededError) as ei:
        client.embed_texts(TEXTS)
    assert emu.stats.requests == 3  # the quota is gone: no retry, no later batch
    partial = ei.value.partial
    assert partial is not None
    assert partial.failed_indices == list(range(64, 200))
    assert partial.errors[64] is ei.value and partial.errors[199] is None  # never sent
    assert partial.embeddings[:64] == clean[:64]


def test_wrong_key_stops_the_call(emu: Emulator) -> None:
    client = make_client(emu.url, api_key="wrong-key", max_concurrency=1)
    with client, pytest.raises(AuthenticationError) as ei:
        client.embed_texts(TEXTS)
    assert emu.stats.requests == 1
    assert ei.value.partial is not None and len(ei.value.partial.failed_indices) == 200


def _resume_stream(
    yielded: list[list[float]], partial: PartialResult, rest: list[list[float]], redo: Any
) -> list[list[float]]:
    """What a caller does after a stream failed: keep, redo the failed, continue."""
    tail = list(partial.embeddings)
    fixed = redo([TEXTS[i] for i in partial.failed_indices])
    for i, vector in zip(partial.failed_indices, fixed, strict=True):
        tail[i - partial.offset] = vector
    filled = [v for v in tail if v is not None]
    assert len(filled) == len(tail)  # every failed index was redone
    return yielded + filled + rest


def test_embed_iter_failure_says_where_to_resume(emu: Emulator, clean: list[list[float]]) -> None:
    source = iter(TEXTS)
    yielded: list[list[float]] = []
    with _client(emu, {3: ("server_error", 3)}) as client:
        with pytest.raises(InternalServerError) as ei:
            for vector in client.embed_iter(source):
                yielded.append(vector)
        sent_before = emu.stats.requests
        partial = ei.value.partial
        assert partial is not None
        assert yielded == clean[:64]
        assert partial.offset == 64 == len(yielded)
        assert partial.failed_indices[:32] == list(range(64, 96))
        assert "stream stopped at input 64" in str(ei.value)
        _check_partial(partial, clean)
        # The source was read exactly up to what the partial result covers.
        read = partial.offset + len(partial.embeddings)
        assert read < len(TEXTS)
        remaining = list(source)
        assert remaining == TEXTS[read:]
        time.sleep(0.05)
        assert emu.stats.requests == sent_before  # nothing sent after the error
        rest = list(client.embed_iter(remaining))
        resumed = _resume_stream(yielded, partial, rest, client.embed_texts)
    assert resumed == clean


async def test_aembed_iter_failure_says_where_to_resume(
    emu: Emulator, clean: list[list[float]]
) -> None:
    async def source() -> AsyncIterator[str]:
        for text in TEXTS:
            yield text

    http = httpx.AsyncClient(transport=AsyncFaultAt(emu, {2: ("server_error", 3)}))
    client = make_client(
        emu.url, http_async_client=http, max_concurrency=1, retry_policy=THREE_TRIES
    )
    yielded: list[list[float]] = []
    try:
        with pytest.raises(InternalServerError) as ei:
            async for vector in client.aembed_iter(source()):
                yielded.append(vector)
    finally:
        await client.aclose()
        await http.aclose()
    partial = ei.value.partial
    assert partial is not None
    assert yielded == clean[:32] and partial.offset == 32
    assert partial.failed_indices[:32] == list(range(32, 64))
    _check_partial(partial, clean)


def test_invalid_input_mid_stream_after_the_vectors_before_it(
    emu: Emulator, clean: list[list[float]]
) -> None:
    inputs: list[Any] = [*TEXTS[:100], None, *TEXTS[101:]]
    yielded: list[list[float]] = []
    with make_client(emu.url) as client, pytest.raises(InputError) as ei:
        for vector in client.embed_iter(inputs):
            yielded.append(vector)
    assert ei.value.index == 100
    assert yielded == clean[:100]
    assert emu.stats.inputs_embedded == 100  # nothing at or after the bad input was sent


def test_abandoned_stream_stops_sending(emu: Emulator) -> None:
    emu.latency_ms = 20
    texts = (f"abandoned {i}" for i in itertools.count())  # endless
    sent: list[httpx.Request] = []  # counted as the client sends them (the emulator counts
    # arrivals, and one sent just before the close may arrive after it on a busy machine)
    http = httpx.Client(event_hooks={"request": [sent.append]})
    with http, make_client(emu.url, max_concurrency=4, http_client=http) as client:
        stream = client.embed_iter(texts)
        first = [next(stream) for _ in range(5)]
        stream.close()
        at_close = len(sent)
        time.sleep(0.5)
        # Left open, the stream would send on until its window filled.
        assert len(sent) <= at_close + 1  # (one leaving as it closed)
    assert len(first) == 5


async def test_abandoned_async_stream_stops_sending(emu: Emulator) -> None:
    emu.latency_ms = 20
    texts = (f"abandoned async {i}" for i in itertools.count())  # endless
    sent: list[httpx.Request] = []  # as the client sends them (see the sync twin)

    async def record(request: httpx.Request) -> None:
        sent.append(request)

    http = httpx.AsyncClient(event_hooks={"request": [record]})
    async with http, make_client(emu.url, max_concurrency=4, http_async_client=http) as client:
        stream = client.aembed_iter(texts)
        first = [await anext(stream) for _ in range(5)]
        await stream.aclose()
        at_close = len(sent)
        await asyncio.sleep(0.5)
        # Left open, the stream would send on until its window filled (6 requests here).
        assert len(sent) <= at_close + 1  # (one leaving as it closed)
    assert len(first) == 5


def test_wrong_key_with_concurrency_stops_soon(emu: Emulator) -> None:
    texts = [f"t{i}" for i in range(3200)]  # 100 requests
    client = make_client(emu.url, api_key="wrong-key", max_concurrency=8)
    with client, pytest.raises(AuthenticationError):
        client.embed_texts(texts)
    # Only the requests already in flight when the first 401 arrives may still go out.
    assert emu.stats.requests <= 8


async def test_async_wrong_key_stops_soon(emu: Emulator) -> None:
    texts = [f"t{i}" for i in range(3200)]
    client = make_client(emu.url, api_key="wrong-key", max_concurrency=8)
    try:
        with pytest.raises(AuthenticationError):
            await client.aembed_texts(texts)
    finally:
        await client.aclose()
    assert emu.stats.requests <= 8


def _shut_from_the_second_request(
    emu: Emulator, limiter: RateLimiter, *, max_concurrency: int
) -> RateLimitError:
    """Embed TEXTS through a throttle that refuses everything from the second request on
    (three tries each, no shut waited out); the error the call stopped with."""
    transport = FaultAt(emu, {2: ("throttle", 10_000)})
    client = make_client(
        emu.url,
        rate_limiter=limiter,
        retry_policy=replace(THREE_TRIES, max_shut_wait=0.0),
        max_concurrency=max_concurrency,
        http_client=httpx.Client(transport=transport),
    )
    with client, pytest.raises(RateLimitError) as ei:
        client.embed_texts(TEXTS)
    # (The error raised is the first failed input's; the request that stopped the call
    # may be another, whose error says so. Requests waiting to retry then end at once.)
    partial = ei.value.partial
    assert partial is not None
    assert any(getattr(e, "account_shut", False) for e in partial.errors.values())
    return ei.value


@pytest.mark.parametrize(
    "limiter",
    [AdaptiveRateLimiter, lambda: FixedRateLimiter(50.0), UnlimitedRateLimiter],
    ids=["adaptive", "pinned", "unlimited"],
)
def test_an_account_that_stops_letting_anything_through_stops_the_call(
    emu: Emulator, clean: list[list[float]], limiter: Callable[[], RateLimiter]
) -> None:
    # The second request meets a throttle that refuses everything from then on: it is
    # retried, no one gets through meanwhile, and the call starts nothing more (before,
    # each of the five batches after it spent its retries too: 19 requests in all; and
    # so they still did with a pinned rate or none). (Not waited out first: by default
    # that takes max_shut_wait, 120 s.)
    error = _shut_from_the_second_request(emu, limiter(), max_concurrency=1)
    assert emu.stats.requests == 4  # the first batch, then three tries of the second
    partial = error.partial
    assert partial is not None
    assert partial.failed_indices == list(range(32, 200))
    assert partial.embeddings[:32] == clean[:32]


def test_a_call_stopped_by_a_shut_account_says_so_once(
    emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    # Every request in flight when the account shuts ends in the same refusal; the call
    # stops once, and says so once, not once for each of them.
    caplog.set_level(logging.WARNING, logger="opensearch_mm")
    # (A floor of 5/s: refused throughout, the rate falls to the default 0.2/s and the
    # dozen repeats would take a minute; how it paces is not what is tested.)
    _shut_from_the_second_request(emu, AdaptiveRateLimiter(min_qps=5.0), max_concurrency=4)
    shut = [r for r in caplog.records if "let no request through" in r.getMessage()]
    assert len(shut) == 1, [r.getMessage() for r in shut]
    assert emu.stats.requests > 4  # (several requests were refused throughout)
