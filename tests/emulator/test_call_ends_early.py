"""A call that ends early sends nothing more: not its queued requests, not the ones
waiting for a slot or a retry, and it gives their booked slots back.

Pinned at 2 requests/s with 8 requests allowed in flight, a call of 20 requests has
seven waiting for slots up to 3.5 s ahead when its first answer comes: what is sent
after the call ends shows whether they gave up.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from opensearch_mm import AuthenticationError, MultiModalEmbeddingClient
from opensearch_mm.emulator import Emulator
from opensearch_mm.ratelimit import FixedRateLimiter

KEY = "OS-ends-early-key"
TEXTS = [f"text {i}" for i in range(640)]  # 20 requests of 32


class Stop(Exception):
    """What the caller's progress callback raises."""


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(api_key=KEY, qps=None, latency_ms=0) as e:
        yield e


def pinned(emu: Emulator, limiter: FixedRateLimiter, key: str = KEY) -> MultiModalEmbeddingClient:
    return MultiModalEmbeddingClient(
        api_key=key, endpoint=emu.url, rate_limiter=limiter, max_concurrency=8, max_retries=0
    )


def settle() -> None:
    time.sleep(1.2)  # (more than two slots at 2/s: a request still waiting would be sent)


def raise_on_first(done: int) -> None:
    raise Stop


def test_a_sync_call_ended_by_its_caller_sends_nothing_more(emu: Emulator) -> None:
    limiter = FixedRateLimiter(2.0)
    with pinned(emu, limiter) as client:
        with pytest.raises(Stop):
            client.embed_texts(TEXTS, on_progress=raise_on_first)
        sent = emu.stats.requests
        settle()
        assert emu.stats.requests == sent  # (before: one more every half second)
        # The slots booked ahead went back: the next request waits no more than one
        # interval behind the last one sent (before: behind all seven, 3.5 s).
        assert limiter.acquire().wait <= 0.5 + 1e-6


async def test_an_async_call_ended_by_its_caller_sends_nothing_more(emu: Emulator) -> None:
    limiter = FixedRateLimiter(2.0)
    async with pinned(emu, limiter) as client:
        with pytest.raises(Stop):
            await client.aembed_texts(TEXTS, on_progress=raise_on_first)
        sent = emu.stats.requests
        await asyncio.sleep(1.2)
        assert emu.stats.requests == sent
        assert limiter.acquire().wait <= 0.5 + 1e-6


def test_a_stream_closed_early_sends_nothing_more(emu: Emulator) -> None:
    limiter = FixedRateLimiter(2.0)
    with pinned(emu, limiter) as client:
        stream = client.embed_iter(TEXTS)
        next(stream)
        stream.close()
        sent = emu.stats.requests
        settle()
        assert emu.stats.requests == sent
        assert limiter.acquire().wait <= 0.5 + 1e-6


async def test_an_async_stream_closed_early_gives_its_slots_back(emu: Emulator) -> None:
    limiter = FixedRateLimiter(2.0)
    async with pinned(emu, limiter) as client:
        stream = client.aembed_iter(TEXTS)
        await stream.__anext__()
        await stream.aclose()
        # (Given back as the stream closes, not when it is collected: by then the
        # caller's next call had booked behind them.)
        assert limiter.acquire().wait <= 0.5 + 1e-6
        sent = emu.stats.requests
        await asyncio.sleep(1.2)
        assert emu.stats.requests == sent


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_fatal_answer_stops_the_requests_waiting_for_a_slot(emu: Emulator, mode: str) -> None:
    # A wrong key: the first 401 stops the call, and the seven requests waiting for their
    # slots are not sent (before: each was, and got its own 401).
    with pinned(emu, FixedRateLimiter(2.0), key="OS-not-the-key") as client:
        with pytest.raises(AuthenticationError) as ei:
            if mode == "sync":
                client.embed_texts(TEXTS)
            else:
                asyncio.run(client.aembed_texts(TEXTS))
        settle()
    assert emu.stats.requests == 1
    partial = ei.value.partial
    assert partial is not None and partial.failed_indices == list(range(640))


def test_a_slot_given_back_goes_to_the_next_booking() -> None:
    now = [100.0]
    limiter = FixedRateLimiter(2.0, clock=lambda: now[0])
    first, second, third = (limiter.acquire() for _ in range(3))
    assert [t.wait for t in (first, second, third)] == [0.0, 0.5, 1.0]
    limiter.release(second)
    assert limiter.acquire().wait == 0.5  # the slot given back
    assert limiter.acquire().wait == 1.5  # then after the last one booked
    now[0] = 102.0
    limiter.release(third)  # (a slot already past is not given to anyone)
    assert limiter.acquire().wait == 0.0


class _ByBatch:
    """Arms the fault for the batch about to go out: a 429 with a hint of a second for
    the first batch's first send, the quota gone for the second batch's."""

    def __init__(self, emu: Emulator) -> None:
        self.emu, self.lock = emu, threading.Lock()
        self.armed: set[bool] = set()

    def arm(self, body: bytes) -> None:
        first = b'"text 0"' in body
        if first not in self.armed:
            self.armed.add(first)
            if first:
                self.emu.inject("throttle", 1, retry_after=1.0)
            else:
                self.emu.inject("quota", 1)


class ByBatch(httpx.HTTPTransport):
    def __init__(self, faults: _ByBatch) -> None:
        super().__init__()
        self.faults = faults

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self.faults.lock:  # (armed and sent one at a time: the fault is this one's)
            self.faults.arm(request.read())
            return super().handle_request(request)


class AsyncByBatch(httpx.AsyncHTTPTransport):
    def __init__(self, faults: _ByBatch) -> None:
        super().__init__()
        self.faults = faults

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.faults.arm(await request.aread())  # (one loop: nothing runs in between)
        return await super().handle_async_request(request)


@pytest.mark.parametrize("mode", ["sync", "async", "stream"])
def test_the_error_raised_is_the_one_that_stopped_the_call(emu: Emulator, mode: str) -> None:
    # The first batch is refused with a hint of a second; meanwhile the second finds the
    # quota gone. The first, cut short while it waited to retry, ends in its 429, but
    # the call raises what stopped it (a 429 to retry later would mislead).
    from opensearch_mm import QuotaExceededError

    faults = _ByBatch(emu)
    http = httpx.Client(transport=ByBatch(faults))
    ahttp = httpx.AsyncClient(transport=AsyncByBatch(faults))
    texts = [f"text {i}" for i in range(64)]  # two requests, both out at once
    client = MultiModalEmbeddingClient(
        api_key=KEY, endpoint=emu.url, qps=None, http_client=http, http_async_client=ahttp
    )

    async def embed_async() -> None:
        try:
            await client.aembed_texts(texts)
        finally:
            await ahttp.aclose()

    with client, pytest.raises(QuotaExceededError) as ei:
        if mode == "sync":
            client.embed_texts(texts)
        elif mode == "async":
            asyncio.run(embed_async())
        else:
            list(client.embed_iter(texts))
    http.close()
    assert ei.value.partial is not None
    assert emu.stats.requests == 2


def test_a_sync_call_whose_client_closes_under_it_ends_in_client_closed_error(
    emu: Emulator,
) -> None:
    # One request, sent from the caller's thread, waiting to retry when another thread
    # closes the client: its retry met httpx's "the client has been closed" RuntimeError.
    from opensearch_mm import ClientClosedError, RetryPolicy

    emu.inject("server_error", 1, retry_after=1.0)  # (the retry a second later, honoured)
    client = MultiModalEmbeddingClient(
        api_key=KEY, endpoint=emu.url, qps=None, retry_policy=RetryPolicy(max_retries=2)
    )
    closer = threading.Timer(0.2, client.close)
    closer.start()
    with pytest.raises(ClientClosedError):
        client.embed_texts(["one"])
    closer.join()
