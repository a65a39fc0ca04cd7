"""The HTTP pools and drivers of one client, and their lifecycle.

A client sends sync calls over one ``httpx.Client`` and async calls over one
``httpx.AsyncClient`` per event loop (an ``AsyncClient`` belongs to the loop it first
ran on), kept while that loop lives and closed before it ends. Pools the client created
are closed with it; injected ones are used as they are and left open. Once closed,
nothing is rebuilt: every call raises :class:`ClientClosedError`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import AsyncGenerator
from dataclasses import dataclass

import httpx

from ._async import AsyncDriver
from ._config import ClientConfig
from ._driver import DriverConfig
from ._sync import SyncDriver
from .errors import ClientClosedError
from .ratelimit import RateLimiter

__all__ = ["Pools"]

_CLOSE_TIMEOUT = 5.0  # how long close() waits for a loop running in another thread to
# close its pool: that loop may be blocked (on this very thread, even), and the pool is
# closed at its shutdown anyway.


class _LoopDriver(AsyncDriver):
    """The driver of a pool made here: closing it first lets the requests out finish
    (httpcore leaves a connection still opening when its pool closes unclosed for ever),
    and sends nothing more."""

    def __init__(self, http: httpx.AsyncClient, config: DriverConfig) -> None:
        super().__init__(http, config)
        self.closing = False
        self._out = 0
        self._idle: asyncio.Event | None = None

    async def _post(self, body: bytes) -> tuple[int, httpx.Headers, bytes]:
        if self.closing:
            raise ClientClosedError("this client was closed while the call ran")
        self._out += 1
        try:
            return await super()._post(body)
        finally:
            self._out -= 1
            if not self._out and self._idle is not None:
                self._idle.set()

    async def drain(self) -> None:
        """Send nothing more; return once the requests out have ended."""
        self.closing = True
        if self._idle is None:
            self._idle = asyncio.Event()
        while self._out:
            await self._idle.wait()


@dataclass
class _LoopPool:
    """The async pool and driver of one event loop."""

    http: httpx.AsyncClient
    driver: _LoopDriver
    closer: AsyncGenerator[None, None]  # its ``finally`` closes ``http`` (Pools._closer)
    thread: int  # the thread the loop ran in (the only one that may run it)


async def _shut(pool: _LoopPool) -> None:
    """Close ``pool`` (in its own loop), after its requests out; idempotent."""
    await pool.driver.drain()
    # (Runs its finally and ends it, so it is not finalized later; RuntimeError: its
    # loop's shutdown is closing it right now.)
    with contextlib.suppress(RuntimeError):
        await pool.closer.aclose()
    await pool.http.aclose()  # (a no-op when closed already)


class Pools:
    """The sync pool and driver, and an async pool and driver per event loop."""

    def __init__(
        self,
        config: ClientConfig,
        limiter: RateLimiter,
        *,
        http_client: httpx.Client | None,
        http_async_client: httpx.AsyncClient | None,
    ) -> None:
        self.config = config
        self.limiter = limiter
        self.closed = False
        # A pool made here carries the request headers itself (merged once); an injected
        # one gets them with each request (the same headers on the wire either way).
        self.own_http = http_client is None
        self.http = http_client or config.http_client()
        self.sync = SyncDriver(self.http, self._driver_config(own_http=self.own_http))
        self._injected_async: AsyncDriver | None = None
        if http_async_client is not None:
            config_ = self._driver_config(own_http=False)
            self._injected_async = AsyncDriver(http_async_client, config_)
        # Threads may call (and close) at once. (A plain dict, not weak keys: a pool's
        # closer refers to its loop (the loop's asyncgen finalizer) so the loop would not
        # be freed anyway; an entry leaves when its loop shuts down, see _closer.)
        self._lock = threading.Lock()
        self._loop_pools: dict[asyncio.AbstractEventLoop, _LoopPool] = {}
        self._closing: set[asyncio.Task[None]] = set()  # (the loop keeps weak refs only)

    def _driver_config(self, *, own_http: bool) -> DriverConfig:
        config = self.config
        return DriverConfig(
            url=config.url,
            headers=None if own_http else config.headers(),
            retry=config.retry_policy,
            limiter=self.limiter,
            secrets=config.secrets,
            max_concurrency=config.max_concurrency,
            origin=config.origin,
            target=config.target,
        )

    def ensure_open(self) -> None:
        """Raise :class:`ClientClosedError` once the client has been closed."""
        if self.closed:
            raise ClientClosedError("this client has been closed; create a new one")

    def sync_driver(self) -> SyncDriver:
        """The sync driver (raises once closed)."""
        self.ensure_open()
        return self.sync

    async def async_driver(self) -> AsyncDriver:
        """The async driver of the running loop, made on its first call there (raises
        once closed)."""
        self.ensure_open()
        if self._injected_async is not None:
            return self._injected_async
        loop = asyncio.get_running_loop()
        with self._lock:
            self.ensure_open()  # (close() may have run in another thread meanwhile)
            pool = self._loop_pools.get(loop)
            if pool is not None:
                return pool.driver
            # A loop closed without shutting its async generators down left its pool
            # unclosed; nothing can close it now, so just forget it.
            for old in [old for old in self._loop_pools if old.is_closed()]:
                del self._loop_pools[old]
            http = self.config.http_async_client()
            driver = _LoopDriver(http, self._driver_config(own_http=True))
            pool = _LoopPool(http, driver, self._closer(loop, http), threading.get_ident())
            self._loop_pools[loop] = pool
        # Started here, the closer is one of this loop's async generators: asyncio.run()
        # (loop.shutdown_asyncgens) closes it, running its finally, before the loop ends.
        await anext(pool.closer, None)
        return driver

    async def _closer(
        self, loop: asyncio.AbstractEventLoop, http: httpx.AsyncClient
    ) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            await http.aclose()
            with self._lock:
                pool = self._loop_pools.get(loop)
                if pool is not None and pool.http is http:
                    del self._loop_pools[loop]

    def close(self) -> None:
        """Close the pools made here, each async one in its loop, and the thread pool;
        idempotent."""
        with self._lock:
            self.closed = True
            pools, self._loop_pools = self._loop_pools, {}
        for loop, pool in pools.items():
            if not self._close_in_loop(loop, pool):
                # Not closable from here: left to its loop's shutdown (see _closer).
                with self._lock:
                    self._loop_pools.setdefault(loop, pool)
        self.sync.close()
        if self.own_http:
            self.http.close()

    def _close_in_loop(self, loop: asyncio.AbstractEventLoop, pool: _LoopPool) -> bool:
        """Close ``pool`` in ``loop`` (its own: it cannot run in another); whether it is
        closed or will be shortly."""
        if loop.is_closed():
            return True  # closed at the loop's shutdown (or, if it skipped that, lost)
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is running:  # a sync close() called from async code: done next turn
            task = loop.create_task(_shut(pool))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
            return True
        if not loop.is_running() and (running is not None or pool.thread != threading.get_ident()):
            # (One loop runs in a thread at a time, and an idle loop is run only by the
            # thread it ran in: run here, its own run_until_complete would fail there.)
            return False
        shut = _shut(pool)
        try:
            if loop.is_running():  # in another thread
                future = asyncio.run_coroutine_threadsafe(shut, loop)
            else:  # idle between runs
                loop.run_until_complete(shut)
                return True
        except RuntimeError:  # it started, stopped or closed meanwhile: not run
            shut.close()
            return False
        try:
            future.result(timeout=_CLOSE_TIMEOUT)
        except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError):
            return False  # still to run there, or that loop is ending: its shutdown closes it
        return True

    async def aclose(self) -> None:
        """Close this loop's pool, then the rest as :meth:`close` does; idempotent."""
        loop = asyncio.get_running_loop()
        with self._lock:
            self.closed = True
            pool = self._loop_pools.pop(loop, None)
        if pool is not None:
            await _shut(pool)
        # The rest may block: other loops' pools, and the thread pool waiting for the sync
        # requests of other threads. In a worker thread, so this loop runs meanwhile (not
        # shutdown(wait=False): the sync pool closed under those requests would fail them).
        await asyncio.to_thread(self.close)
