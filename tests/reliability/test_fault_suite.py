"""A bulk call survives 20% random faults with every vector present, in order, unchanged."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterator

import pytest

from opensearch_mm.emulator import Emulator

from .conftest import API_KEY, make_client

N_INPUTS = 10_000
FAULT_RATE = 0.2
# Every failure mode a bulk job meets: 429s, 5xx, dropped connections, answers slower than the
# client's timeout, truncated JSON and answers missing a vector.
FAULT_KINDS = ("throttle", "server_error", "bad_gateway", "drop", "slow", "malformed", "incomplete")
TIMEOUT = 0.5
SLOW_DELAY = 1.5  # past TIMEOUT: a "slow" answer always times out on the client side

TEXTS = [f"document {i}: the quick brown fox, variant {i * 7919 % 10007}" for i in range(N_INPUTS)]


@pytest.fixture(scope="module")
def server() -> Iterator[Emulator]:
    with Emulator(api_key=API_KEY, qps=None, latency_ms=0, log_size=10_000) as emu:
        yield emu


@pytest.fixture(scope="module")
def clean(server: Emulator) -> list[list[float]]:
    """The fault-free run everything is compared with."""
    server.clear_faults()
    with make_client(server.url) as client:
        return client.embed_texts(TEXTS)


def _arm(server: Emulator, seed: int) -> None:
    server.reset_stats()
    server.set_random_faults(FAULT_RATE, FAULT_KINDS, seed=seed, slow_delay=SLOW_DELAY)


def _check_faults_happened(server: Emulator) -> None:
    stats = server.stats
    kinds = Counter(r.fault for r in server.requests_log if r.fault)
    server.clear_faults()
    assert stats.faults >= 0.1 * stats.requests, stats
    assert set(kinds) == set(FAULT_KINDS), kinds
    assert stats.dropped > 0


def test_sync_embed_under_faults_equals_clean_run(
    server: Emulator, clean: list[list[float]]
) -> None:
    assert len(clean) == N_INPUTS
    _arm(server, seed=1)
    with make_client(server.url, timeout=TIMEOUT) as client:
        result = client.embed(TEXTS)
    _check_faults_happened(server)
    assert len(result.embeddings) == N_INPUTS
    assert result.embeddings == clean
    # Every request that carried vectors back is counted exactly once.
    assert len(set(result.request_ids)) == len(result.request_ids) == -(-N_INPUTS // 32)


async def test_async_embed_under_faults_equals_clean_run(
    server: Emulator, clean: list[list[float]]
) -> None:
    _arm(server, seed=2)
    client = make_client(server.url, timeout=TIMEOUT)
    try:
        result = await client.aembed(TEXTS)
    finally:
        await client.aclose()
    _check_faults_happened(server)
    assert result.embeddings == clean


def test_embed_iter_under_faults_equals_clean_run(
    server: Emulator, clean: list[list[float]]
) -> None:
    _arm(server, seed=3)
    with make_client(server.url, timeout=TIMEOUT) as client:
        streamed = list(client.embed_iter(iter(TEXTS)))
    _check_faults_happened(server)
    assert streamed == clean


async def test_aembed_iter_under_faults_equals_clean_run(
    server: Emulator, clean: list[list[float]]
) -> None:
    _arm(server, seed=4)

    async def source() -> AsyncIterator[str]:
        for text in TEXTS:
            yield text

    client = make_client(server.url, timeout=TIMEOUT)
    try:
        streamed = [v async for v in client.aembed_iter(source())]
    finally:
        await client.aclose()
    _check_faults_happened(server)
    assert streamed == clean
