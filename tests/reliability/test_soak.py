"""A soak: 20,000 requests through one client, memory steady and the pool reused."""

from __future__ import annotations

import gc
import resource
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from opensearch_mm.emulator import Emulator

from .conftest import API_KEY, make_client

REQUESTS = 20_000
CHUNKS = 20
THREADS = 8
DISTINCT = 500  # the emulator caches vectors; a bounded set of texts keeps its memory flat


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * resource.getpagesize() / 2**20


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_soak_memory_steady_and_connections_reused() -> None:
    texts = [f"soak text number {i}" for i in range(DISTINCT)]
    objects: list[int] = []
    rss: list[float] = []
    with Emulator(api_key=API_KEY, qps=None, latency_ms=0, log_size=100) as emu:
        client = make_client(emu.url, max_concurrency=THREADS)
        per_chunk = REQUESTS // CHUNKS

        def one(i: int) -> int:
            # One input per call: one request per call.
            return len(client.embed_texts([texts[i % DISTINCT]])[0])

        started = time.monotonic()
        try:
            with ThreadPoolExecutor(THREADS) as pool:
                for chunk in range(CHUNKS):
                    widths = list(pool.map(one, range(chunk * per_chunk, (chunk + 1) * per_chunk)))
                    assert widths == [768] * per_chunk
                    gc.collect()
                    # Live Python objects (cheap, unlike tracemalloc, which triples the
                    # run time): a leak of one object per request would add thousands.
                    objects.append(len(gc.get_objects()))
                    rss.append(_rss_mb())
        finally:
            client.close()
        elapsed = time.monotonic() - started
        stats = emu.stats
    assert stats.requests == REQUESTS
    assert stats.by_status == {200: REQUESTS}
    # Keep-alive: a handful of connections for 20,000 requests (the pool holds 2x threads).
    assert stats.connections <= 2 * THREADS
    # After warm-up (the first quarter), memory stays flat: no per-request leak.
    warm = CHUNKS // 4
    assert max(objects[warm:]) - objects[warm] < 2_000, objects
    assert max(rss[warm:]) - rss[warm] < 30, rss
    print(
        f"soak: {REQUESTS} requests in {elapsed:.1f}s, {stats.connections} connections, "
        f"objects {objects[warm]} -> {objects[-1]}, "
        f"rss {rss[warm]:.0f} -> {rss[-1]:.0f} MiB"
    )
