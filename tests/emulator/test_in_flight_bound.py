"""Slow answers with few requests in flight: the client says which setting holds it back."""

from __future__ import annotations

import asyncio
import logging

import pytest

from opensearch_mm import MultiModalEmbeddingClient
from opensearch_mm.emulator import Emulator

KEY = "in-flight-key"
TEXTS = [f"text {i}" for i in range(32 * 22)]  # 22 requests: enough answers to average


def _client(emu: Emulator, max_concurrency: int) -> MultiModalEmbeddingClient:
    return MultiModalEmbeddingClient(
        api_key=KEY, endpoint=emu.url, max_concurrency=max_concurrency, share_rate_limit=False
    )


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_a_client_held_back_by_max_concurrency_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="opensearch_mm")
    with Emulator(api_key=KEY, qps=None, latency_ms=250) as emu, _client(emu, 2) as client:
        assert len(client.embed_texts(TEXTS)) == len(TEXTS)
        assert len(list(client.embed_iter(TEXTS[:64]))) == 64
    told = _warnings(caplog)
    assert len(told) == 1, told  # once per client, not once per call
    assert told[0].startswith("max_concurrency=2 held this client to about ")
    assert "the rate limiter allows 10.0/s: max_concurrency=" in told[0]
    assert KEY not in told[0]


def test_async_calls_say_so_too(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="opensearch_mm")

    async def run(client: MultiModalEmbeddingClient) -> int:
        return len(await client.aembed_texts(TEXTS))

    with Emulator(api_key=KEY, qps=None, latency_ms=250) as emu, _client(emu, 2) as client:
        assert asyncio.run(run(client)) == len(TEXTS)
    assert [m for m in _warnings(caplog) if m.startswith("max_concurrency=2 held")]


def test_enough_requests_in_flight_say_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="opensearch_mm")
    with Emulator(api_key=KEY, qps=None, latency_ms=250) as emu, _client(emu, 8) as client:
        assert len(client.embed_texts(TEXTS)) == len(TEXTS)
        # 8 in flight at a quarter second carry 32/s, above the 10/s the limiter allows.
        assert client.rate_limiter.in_flight_bound(8) is None  # type: ignore[attr-defined]
    assert not _warnings(caplog)
