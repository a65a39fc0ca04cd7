"""Concurrency, the shared rate limiter and streaming against the emulator.

Correctness only: no timing assertions (benchmarks/ measures speed).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import numpy as np
import pytest

from opensearch_mm import MultiModalEmbeddingClient
from opensearch_mm._driver import ReadAhead
from opensearch_mm.emulator import Emulator
from opensearch_mm.errors import RateLimitError

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
    # Read-ahead is bounded: at most the stream's queued batches (answers waiting behind
    # a slower head of line included), plus the one being packed.
    assert worst <= (ReadAhead.stream(limit).queued + 1) * 32
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
    from benchmarks.throughput import CONTENDERS, Row, cpu_table, sharing_cell, throughput_table

    with EmulatorProcess(latency_ms=1) as emu:
        row = Row("fixed", 50.0, latency_ms=1.0)
        cells = throughput_table(emu, [row], seconds=0.4, sharing=False)
        assert {column for _, column in cells} == set(CONTENDERS)
        assert all(c.ratio > 0 and 0 <= c.throttled < 1 for c in cells.values())
        shared = sharing_cell(emu, Row("sliding", 50.0, latency_ms=1.0), 64, shared=True)
        assert shared.ratio > 0 and shared.fairness is not None and shared.fairness >= 1
        alone = sharing_cell(emu, Row("sliding", 50.0, latency_ms=1.0), 64, shared=False)
        assert alone.ratio > 0 and alone.fairness is not None
        per_k = cpu_table(emu, Workload(64, seed=3), repeats=1)
        assert all(v > 0 for v in per_k.values())


def test_stream_benchmark_functions_run() -> None:
    from benchmarks.common import EmulatorProcess
    from benchmarks.stream import CONTENDERS, stream_table
    from benchmarks.throughput import Row

    with EmulatorProcess(latency_ms=1) as emu:
        rows = [(Row("sliding", 50.0, latency_ms=1.0), tail) for tail in (False, True)]
        cells = stream_table(emu, rows, seconds=0.3, warmup=0.1)
        assert {column for _, column in cells} == set(CONTENDERS)
        assert len(cells) == 2 * len(CONTENDERS)
        assert all(c.ratio > 0 and 0 <= c.throttled < 1 for c in cells.values())
        assert emu.stats()["requests"] > 0


def test_long_windows_benchmark_functions_run() -> None:
    pytest.importorskip("alibabacloud_searchplat20240529")
    from benchmarks.common import EmulatorProcess
    from benchmarks.long_windows import CONTENDERS, rows, versus_loop_table
    from benchmarks.throughput import Row

    assert [row.window for row, _, _ in rows(minute=True)] == [5.0, 10.0, 60.0]
    with EmulatorProcess(latency_ms=1) as emu:
        row = Row("sliding", 50.0, latency_ms=1.0, window=2.0)
        assert row.name == "sliding 50/s per 2 s window"
        cells = versus_loop_table(emu, [(row, 0.3, 0.1)])
        assert set(cells) == {(row.name, column) for column in CONTENDERS}
        assert all(c.ratio > 0 and 0 <= c.throttled < 1 for c in cells.values())
        assert emu.stats()["requests"] > 0


def test_retry_hints_benchmark_functions_run() -> None:
    pytest.importorskip("alibabacloud_searchplat20240529")
    from benchmarks.common import API_KEY, EmulatorProcess
    from benchmarks.long_windows import CONTENDERS, versus_loop_table
    from benchmarks.retry_hints import HEADERS, rows
    from benchmarks.throughput import Row

    assert {row.hint for row, _, _ in rows()} == set(HEADERS)
    with EmulatorProcess(latency_ms=1) as emu:
        for header, hint in (("retry-after", 1.0), ("x-acs-retry-after", 0.001)):
            # The row's header is what the emulator sends on a 429.
            Row("fixed", 0.001, latency_ms=1.0, window=1000.0, hint=header).configure(emu)
            with MultiModalEmbeddingClient(
                api_key=API_KEY, endpoint=emu.url, qps=None, max_retries=0
            ) as client:
                client.embed(["fills the window"])
                with pytest.raises(RateLimitError) as refused:
                    client.embed(["refused"])
            assert refused.value.retry_after is not None
            assert refused.value.retry_after >= hint
        row = Row("fixed", 50.0, latency_ms=1.0, hint="retry-after")
        assert row.name == "fixed 50/s + retry-after"
        cells = versus_loop_table(emu, [(row, 0.3, 0.1)])
        assert set(cells) == {(row.name, column) for column in CONTENDERS}
        assert all(c.ratio > 0 and 0 <= c.throttled < 1 for c in cells.values())


# ------------------------------------------------------------- throttle models over HTTP


def test_emulator_window_models_refuse_past_the_limit() -> None:
    # 5 requests per 50 s (sliding) and per 100 s (fixed, on the clock; sliced, in two
    # halves of 50 s that both count): the 6th is refused.
    for kind, window in (("sliding", 50.0), ("fixed", 100.0), ("sliced", 100.0)):
        with (
            Emulator(KEY, qps=5 / window, throttle=kind, window=window) as emu,
            client_for(emu, qps=None, max_retries=0) as client,
        ):
            for i in range(5):
                client.embed_texts([f"{kind} {i}"])
            with pytest.raises(RateLimitError):
                client.embed_texts(["one too many"])
            assert emu.stats.throttled == 1


def test_emulator_concurrency_cap_refuses_requests_beyond_it() -> None:
    with Emulator(KEY, throttle="concurrency", max_in_flight=2, latency_ms=400) as emu:
        outcomes: list[str] = []

        def one(k: int) -> None:
            with client_for(emu, qps=None, max_retries=0) as client:
                try:
                    client.embed_texts([f"in flight {k}"])
                    outcomes.append("ok")
                except RateLimitError:
                    outcomes.append("429")

        threads = [threading.Thread(target=one, args=(k,)) for k in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert sorted(outcomes) == ["429", "429", "ok", "ok"]


@pytest.mark.parametrize("header", ["x-acs-retry-after", "retry-after"])
def test_emulator_sends_a_retry_hint_the_client_reads(header: str) -> None:
    with (
        Emulator(KEY, qps=1 / 30, throttle="sliding", window=30, retry_after_header=header) as emu,
        client_for(emu, qps=None, max_retries=0) as client,
    ):
        client.embed_texts(["passes"])  # takes the window's one request
        with pytest.raises(RateLimitError) as caught:
            client.embed_texts(["refused"])
        hinted = [r for r in emu.requests_log if r.status == 429]
        assert len(hinted) == 1
    # The window frees up in about 30 s: the hint says so (in ms or s), read as seconds.
    assert caught.value.retry_after is not None
    assert 28.0 <= caught.value.retry_after <= 31.0


def test_emulator_latency_jitter_varies_answer_times() -> None:
    with Emulator(KEY, latency_ms=20, latency_jitter=0.6, seed=3) as emu:
        times = [emu._service_time() for _ in range(50)]
    assert len(set(times)) > 40 and 0.005 < sorted(times)[25] < 0.08


@pytest.mark.parametrize(
    "options",
    [
        {"throttle": "fixed", "qps": 8},
        {"throttle": "sliding", "qps": 8},
        {"throttle": "concurrency", "max_in_flight": 2},
        {"throttle": "bucket", "qps": 8, "burst": 1, "retry_after_header": "x-acs-retry-after"},
    ],
    ids=lambda o: str(o["throttle"]),
)
def test_adaptive_default_embeds_everything_under_each_model(options: dict[str, Any]) -> None:
    with Emulator(KEY, latency_ms=20, **options) as emu, client_for(emu) as client:
        result = client.embed(texts(32 * 12))
        assert len(result.embeddings) == 32 * 12
        assert emu.stats.inputs_embedded == 32 * 12


def test_emulator_command_line_takes_the_throttle_flags() -> None:
    from opensearch_mm.emulator.__main__ import build_parser

    flags = "--throttle sliding --qps 5 --window 60 --max-in-flight 3 --latency-ms 40"
    flags += " --latency-jitter 0.3 --retry-after-header x-acs-retry-after --burst 2"
    flags += " --charge-refusals"
    args = build_parser().parse_args(flags.split(" "))
    assert args.charge_refusals and not build_parser().parse_args([]).charge_refusals
    assert (args.throttle, args.qps, args.window, args.max_in_flight) == ("sliding", 5, 60, 3)
    assert (args.latency_jitter, args.retry_after_header, args.burst) == (
        0.3,
        "x-acs-retry-after",
        2,
    )


def test_memory_benchmark_stream_runs() -> None:
    from benchmarks.common import EmulatorProcess
    from benchmarks.memory import stream

    with EmulatorProcess() as emu:
        count, checksum = stream(emu.url, 200)
    assert count == 200 and checksum != 0.0
