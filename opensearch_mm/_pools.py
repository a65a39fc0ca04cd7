"""The HTTP pools and drivers of one client, and their lifecycle.

A client sends sync calls over one ``httpx.Client`` and async calls over one
``httpx.AsyncClient`` per event loop (an ``AsyncClient`` belongs to the loop it first
ran on, so a second ``asyncio.run`` gets its own). Pools the client created are closed
with it; injected ones are used as they are and left open. Once closed, nothing is
rebuilt: every call raises :class:`ClientClosedError`.
"""

from __future__ import annotations

import asyncio

import httpx

from ._async import AsyncDriver
from ._config import ClientConfig
from ._driver import DriverConfig
from ._sync import SyncDriver
from .errors import ClientClosedError
from .ratelimit import RateLimiter

__all__ = ["Pools"]


class Pools:
    """The sync pool and driver, and the async ones for the running event loop."""

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
        self.own_async_http = http_async_client is None
        self.async_http = http_async_client
        self._async_loop: asyncio.AbstractEventLoop | None = None
        self._async: AsyncDriver | None = None
        if http_async_client is not None:
            self._async = AsyncDriver(http_async_client, self._driver_config(own_http=False))

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

    def async_driver(self) -> AsyncDriver:
        """The async driver for the running loop (raises once closed)."""
        self.ensure_open()
        if not self.own_async_http:
            assert self._async is not None
            return self._async
        loop = asyncio.get_running_loop()
        if self._async is None or self._async_loop is not loop:
            self.async_http = self.config.http_async_client()
            self._async = AsyncDriver(self.async_http, self._driver_config(own_http=True))
            self._async_loop = loop
        return self._async

    def close(self) -> None:
        """Close the sync pool (if made here) and the thread pool; idempotent."""
        self.closed = True
        self.sync.close()
        if self.own_http:
            self.http.close()

    async def aclose(self) -> None:
        """Close the async pool made here, then the sync side; idempotent."""
        self.closed = True
        if self.own_async_http and self.async_http is not None:
            # A pool made on an earlier event loop (an earlier asyncio.run) cannot be
            # closed from this one: its loop is gone, so its sockets are just dropped.
            if self._async_loop is asyncio.get_running_loop():
                await self.async_http.aclose()
            self.async_http = None
            self._async = None
            self._async_loop = None
        self.close()
