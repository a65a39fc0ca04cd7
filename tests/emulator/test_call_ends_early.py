"""A call that ends early sends nothing more: not its queued requests, not the ones
waiting for a slot or a retry, and it gives their booked slots back.

Pinned at 2 requests/s with 8 requests allowed in flight, a call of 20 requests has
seven waiting for slots up to 3.5 s ahead when its first answer comes: what is sent
after the call ends shows whether they gave up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

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
