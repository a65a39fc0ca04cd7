"""Shared helpers of the reliability suite: an emulator and fast-retrying clients."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from opensearch_mm import MultiModalEmbeddingClient
from opensearch_mm.emulator import Emulator
from opensearch_mm.retry import RetryPolicy

API_KEY = "sk-reliability-SECRET-0123456789abcdef"

# Short delays keep fault tests fast; enough retries that 20% faults never exhaust them.
FAST_RETRY = RetryPolicy(max_retries=12, initial_delay=0.005, max_delay=0.05, max_retry_after=0.1)


def make_client(url: str, **options: Any) -> MultiModalEmbeddingClient:
    settings: dict[str, Any] = {
        "api_key": API_KEY,
        "endpoint": url,
        "qps": None,
        "retry_policy": FAST_RETRY,
        "timeout": 5.0,
    }
    settings.update(options)
    return MultiModalEmbeddingClient(**settings)


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(api_key=API_KEY, qps=None, latency_ms=0) as server:
        yield server
