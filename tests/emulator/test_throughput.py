"""Concurrency, the shared rate limiter and streaming against the emulator.

Correctness only: no timing assertions (benchmarks/ measures speed).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator

import numpy as np
import pytest

from opensearch_mm import MultiModalEmbeddingClient
from opensearch_mm.emulator import Emulator

KEY = "throughput-key"


def texts(n: int, tag: str = "t") -> list[str]:
    return [f"{tag} text number {i}" for i in range(n)]


def client_for(emu: Emulator, **options: object) -> MultiModalEmbeddingClient:
    return MultiModalEmbeddingClient(api_key=KEY, endpoint=emu.url, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("limit", [1, 3])
def test_sync_concurrency_is_bounded(limit: int) -> None:
    with (
        Emulator(KEY, latency_ms=30) as emu,
        client_for(emu, max_concurrency=limit, qps=None) as client,
    ):
        vectors = client.embed_texts(texts(32 * 12))
        assert len(vectors) == 32 * 12
        stats = emu.stats
        assert stats.requests == 12
        assert stats.max_in_flight <= limit
        if limit > 1:
            assert stats.max_in_flight >= 2  # requests really overlap


async def test_async_concurrency_is_bounded() -> None:
    with Emulator(KEY, latency_ms=30) as emu:
        async with client_for(emu, max_concurrency=3, qps=None) as client:
            vectors = await client.aembed_texts(texts(32 * 12))
        assert len(vectors) == 32 * 12
        assert 2 <= emu.stats.max_in_flight <= 3


def test_limiter_is_shared_by_calls_across_threads() -> None:
    # Four threads, one pinned 4 QPS limiter: the service's 4 QPS bucket never refuses.
    # Four separate limiters would send 16 QPS and be throttled within the first second.
    with Emulator(KEY, qps=4) as emu, client_for(emu, qps=4, max_retries=0) as client:
        errors: list[BaseException] = []

        def work(k: int) -> None:
            try:
                for j in range(3):
                    client.embed_texts([f"thread {k} call {j}"])
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert errors == []
        assert emu.stats.requests == 12 and emu.stats.throttled == 0


def test_adaptive_default_absorbs_throttling_without_errors() -> None:
    with Emulator(KEY, qps=5, latency_ms=5) as emu, client_for(emu) as client:
        result = client.embed(texts(32 * 20))
        assert len(result.embeddings) == 32 * 20
        assert emu.stats.inputs_embedded == 32 * 20


async def test_sync_calls_work_inside_a_running_event_loop() -> None:
    # Jupyter and FastAPI handlers run inside a loop: the sync API must not start another.
    asyncio.get_running_loop()
    with Emulator(KEY) as emu, client_for(emu) as client:
        assert len(client.embed_texts(texts(70))) == 70
        assert len(list(client.embed_iter(texts(70)))) == 70


def test_embed_iter_keeps_order_and_bounds_what_is_in_flight() -> None:
    pulled = 0
    yielded = 0
    worst = 0

    def source(n: int) -> Iterator[str]:
        nonlocal pulled
        for text in texts(n, "stream"):
            pulled += 1
            yield text

    limit = 2
    with (
        Emulator(KEY, latency_ms=5) as emu,
        client_for(emu, max_concurrency=limit, qps=None) as client,
    ):
        expected = client.embed_texts(texts(32 * 30, "stream"))
        got = []
        for vector in client.embed_iter(source(32 * 30)):
            got.append(vector)
            yielded += 1
            worst = max(worst, pulled - yielded)
        assert got == expected  # same vectors, same order
    # Read-ahead follows the in-flight window: at most max_concurrency + 1 batches
    # queued, plus the one being packed.
    assert worst <= (limit + 2) * 32
    assert pulled == 32 * 30


def test_embed_iter_numpy_output() -> None:
    with Emulator(KEY) as emu, client_for(emu, qps=None) as client:
        lists = client.embed_texts(texts(40))
        arrays = list(client.embed_iter(texts(40), as_numpy=True))
    assert len(arrays) == 40
    for array, vector in zip(arrays, lists, strict=True):
        assert isinstance(array, np.ndarray)
        assert array.dtype == np.float32 and array.shape == (768,)
        np.testing.assert_allclose(array, np.asarray(vector, dtype=np.float32))


async def test_aembed_iter_over_an_async_source_keeps_order() -> None:
    async def source(n: int) -> AsyncIterator[str]:
        for text in texts(n, "async"):
            yield text

    with Emulator(KEY, latency_ms=5) as emu:
        async with client_for(emu, max_concurrency=3, qps=None) as client:
            expected = await client.aembed_texts(texts(100, "async"))
            got = [v async for v in client.aembed_iter(source(100), as_numpy=True)]
        assert len(got) == 100
        for array, vector in zip(got, expected, strict=True):
            np.testing.assert_allclose(array, np.asarray(vector, dtype=np.float32))
        assert emu.stats.max_in_flight <= 3


# ------------------------------------------------------------- benchmark smoke tests


def test_throughput_benchmark_functions_run() -> None:
    pytest.importorskip("alibabacloud_searchplat20240529")
    from benchmarks.common import EmulatorProcess, Workload
    from benchmarks.throughput import CONTENDERS, cpu_table, throughput_table

    with EmulatorProcess(latency_ms=1) as emu:
        work = Workload(70)
        runs = throughput_table(emu, work, 50, 1)
        assert [r.name for r in runs] == list(CONTENDERS)
        assert all(r.inputs == 70 and r.requests >= 3 for r in runs)
        per_k = cpu_table(emu, Workload(64, seed=3), repeats=1)
        assert all(v > 0 for v in per_k.values())


def test_memory_benchmark_stream_runs() -> None:
    from benchmarks.common import EmulatorProcess
    from benchmarks.memory import stream

    with EmulatorProcess() as emu:
        count, checksum = stream(emu.url, 200)
    assert count == 200 and checksum != 0.0
