"""The async pools: one per event loop, kept while it runs, closed with the client or
before the loop ends; a call in flight when the client closes ends in ClientClosedError."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from opensearch_mm import MultiModalEmbeddingClient
from opensearch_mm.emulator import Emulator
from opensearch_mm.errors import ClientClosedError

KEY = "OS-pools-test-key"

pytestmark = pytest.mark.skipif(
    not Path("/proc/net/tcp").exists(), reason="counts sockets through /proc (Linux)"
)


def open_sockets_to(port: int) -> int:
    """This process's TCP sockets still open whose peer is ``port`` (the client side of
    connections to the emulator, which runs in this process too)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if int(fields[2].rsplit(":", 1)[1], 16) == port and fields[9] in inodes:
                count += 1
    return count


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(api_key=KEY, qps=None, latency_ms=0) as emulator:
        yield emulator


def port_of(emulator: Emulator) -> int:
    port = urlsplit(emulator.url).port
    assert port is not None
    return port


def make(emulator: Emulator, **kwargs: Any) -> MultiModalEmbeddingClient:
    return MultiModalEmbeddingClient(
        api_key=KEY, endpoint=emulator.url, qps=None, share_rate_limit=False, **kwargs
    )


def texts(n: int, tag: str = "t") -> list[str]:
    return [f"{tag} {i}" for i in range(n)]


def test_a_pool_is_closed_when_its_asyncio_run_ends_and_by_close(emu: Emulator) -> None:
    port = port_of(emu)
    with make(emu) as client:
        assert len(asyncio.run(client.aembed_texts(texts(256)))) == 256
        assert open_sockets_to(port) == 0  # closed before its loop ended
        assert len(asyncio.run(client.aembed_texts(texts(64, "again")))) == 64
    assert open_sockets_to(port) == 0


def test_close_closes_the_pool_of_an_idle_loop(emu: Emulator) -> None:
    port = port_of(emu)
    client = make(emu)
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(client.aembed_texts(texts(256)))
        assert open_sockets_to(port) > 0  # kept while its loop lives
        client.close()
        assert open_sockets_to(port) == 0
    finally:
        loop.close()


def test_close_from_another_thread_never_runs_an_idle_loop(emu: Emulator) -> None:
    # An idle loop is run only by its own thread: run by close() in another, the owner's
    # next run_until_complete failed ("This event loop is already running") whenever
    # the two met. Its pool is closed when the loop runs again, or at its shutdown.
    port = port_of(emu)
    client = make(emu)
    loop = asyncio.new_event_loop()
    runners: list[int] = []
    run = loop.run_until_complete

    def recorded(future: object) -> object:
        runners.append(threading.get_ident())
        return run(future)  # type: ignore[arg-type]

    loop.run_until_complete = recorded  # type: ignore[method-assign,assignment]
    try:
        loop.run_until_complete(client.aembed_texts(texts(64)))
        closer = threading.Thread(target=client.close)
        closer.start()
        closer.join(10)
        assert set(runners) == {threading.get_ident()}
        with pytest.raises(ClientClosedError):
            loop.run_until_complete(client.aembed_texts(texts(1)))
        loop.run_until_complete(loop.shutdown_asyncgens())
        assert open_sockets_to(port) == 0
    finally:
        loop.close()


async def test_a_sync_close_from_async_code_closes_this_loops_pool(emu: Emulator) -> None:
    port = port_of(emu)
    client = make(emu)
    await client.aembed_texts(texts(256))
    client.close()
    deadline = time.monotonic() + 5
    while open_sockets_to(port) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)  # (closed on a later turn of this loop)
    assert open_sockets_to(port) == 0


def test_closing_after_asyncio_run_warns_of_no_unclosed_socket(emu: Emulator) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio
        from opensearch_mm import MultiModalEmbeddingClient
        from opensearch_mm.emulator import Emulator

        with Emulator(api_key={KEY!r}, qps=None, latency_ms=0) as emu:
            with MultiModalEmbeddingClient(api_key={KEY!r}, endpoint=emu.url, qps=None) as c:
                asyncio.run(c.aembed_texts([f"t {{i}}" for i in range(256)]))
                asyncio.run(c.aembed_texts(["again"]))
        print("done")
        """
    )
    run = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error::ResourceWarning", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONTRACEMALLOC": "5"},
    )
    assert run.returncode == 0, run.stderr
    assert "done" in run.stdout
    assert "ResourceWarning" not in run.stderr


def test_two_loops_in_two_threads_keep_one_pool_each() -> None:
    with Emulator(api_key=KEY, qps=None, latency_ms=20) as emu:
        port = port_of(emu)
        client = make(emu, max_concurrency=2)
        rounds, calls = threading.Barrier(2), 10
        results: list[int] = []
        errors: list[BaseException] = []

        def worker(tag: str) -> None:
            async def main() -> None:
                for _ in range(calls):
                    rounds.wait()  # the two loops' calls interleave, round after round
                    results.append(len(await client.aembed_texts(texts(40, tag))))

            try:
                asyncio.run(main())
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)
                rounds.abort()

        before = emu.stats.connections
        threads = [threading.Thread(target=worker, args=(tag,)) for tag in "ab"]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors and results == [40] * 2 * calls
        # One pool per loop, up to 2 * max_concurrency connections each, all closed when
        # their loop ended.
        assert emu.stats.connections - before <= 2 * 2 * 2
        assert open_sockets_to(port) == 0
        client.close()


def test_close_from_another_thread_closes_a_running_loops_pool(emu: Emulator) -> None:
    port = port_of(emu)
    client = make(emu)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    try:
        call = asyncio.run_coroutine_threadsafe(client.aembed_texts(texts(256)), loop)
        assert len(call.result(timeout=30)) == 256
        assert open_sockets_to(port) > 0
        client.close()
        client.close()  # idempotent
        assert open_sockets_to(port) == 0
        asyncio.run_coroutine_threadsafe(client.aclose(), loop).result(timeout=30)
        later = asyncio.run_coroutine_threadsafe(client.aembed_texts(["x"]), loop)
        with pytest.raises(ClientClosedError):
            later.result(timeout=30)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


async def test_aclose_during_a_call_ends_it_in_client_closed_error() -> None:
    with Emulator(api_key=KEY, qps=None, latency_ms=100) as emu:
        port = port_of(emu)
        client = make(emu)
        call = asyncio.ensure_future(client.aembed_texts(texts(32 * 40)))
        while not emu.stats.requests:
            await asyncio.sleep(0.01)
        await client.aclose()
        await client.aclose()  # idempotent
        client.close()
        with pytest.raises(ClientClosedError) as info:
            await call
        assert info.value.partial is not None
        assert open_sockets_to(port) == 0


async def test_aclose_lets_the_loop_run_while_sync_requests_finish() -> None:
    with Emulator(api_key=KEY, qps=None, latency_ms=300) as emu:
        client = make(emu, max_concurrency=4)
        sync_done = threading.Event()

        def sync_call() -> None:
            try:
                client.embed_texts(texts(32 * 4, "sync"))  # four requests, in the thread pool
            finally:
                sync_done.set()

        thread = threading.Thread(target=sync_call)
        thread.start()
        while not emu.stats.requests:
            await asyncio.sleep(0.01)
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while not sync_done.is_set():
                ticks += 1
                await asyncio.sleep(0.005)

        ticker = asyncio.ensure_future(tick())
        await client.aclose()  # waits for the sync requests out, but not on this loop
        assert sync_done.is_set()
        await ticker
        thread.join()
        assert ticks > 1


async def test_an_injected_async_client_is_left_open(emu: Emulator) -> None:
    async with httpx.AsyncClient() as http:
        client = make(emu, http_async_client=http)
        assert len(await client.aembed_texts(texts(8))) == 8
        await client.aclose()
        client.close()
        assert not http.is_closed
        answer = await http.get(f"{emu.url}/")
        assert answer.status_code > 0
