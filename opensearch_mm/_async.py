"""The asynchronous driver: the same protocol and retry decisions as ``_sync``."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from typing import TypeVar

import httpx

from ._driver import NOT_SENT, DriverBase, DriverConfig, Halt, Outcome, map_transport_error
from .batching import Batch
from .errors import OpenSearchMMError
from .protocol import BatchResponse

__all__ = ["AsyncDriver", "as_async_iter"]

T = TypeVar("T")


class AsyncDriver(DriverBase):
    """Sends batches over one ``httpx.AsyncClient``."""

    def __init__(self, http: httpx.AsyncClient, config: DriverConfig) -> None:
        super().__init__(config)
        self.http = http

    async def send(self, batch: Batch, dimensions: int | None) -> BatchResponse:
        """Send one batch, retrying what is retryable; raise the last error otherwise."""
        body = batch.body()
        retries = 0
        while True:
            ticket = self.limiter.acquire()
            while True:
                if ticket.wait > 0:
                    await asyncio.sleep(ticket.wait)
                if self.limiter.confirm(ticket):
                    break
                ticket = self.limiter.acquire()  # the rate was cut while waiting: re-book
            error: OpenSearchMMError
            try:
                response = await self.http.post(self.url, content=body, headers=self.headers)
                result = self.check(response, batch, dimensions)
            except httpx.HTTPError as exc:
                error = map_transport_error(exc)
            except OpenSearchMMError as exc:
                error = exc
            else:
                self.succeeded(ticket)
                return result
            await asyncio.sleep(self.retry_delay(error, ticket, retries))
            retries += 1

    async def run(
        self,
        batches: Iterable[Batch] | AsyncIterable[Batch],
        *,
        dimensions: Callable[[], int | None],
        window: int,
        stop: Callable[[], bool],
    ) -> AsyncIterator[tuple[Batch, Outcome]]:
        """Yield each batch with its outcome, in order, at most ``window`` queued and
        ``max_concurrency`` in flight; once ``stop()`` is true nothing more is sent."""
        semaphore = asyncio.Semaphore(self.max_concurrency)
        halt = Halt(stop)

        async def outcome(batch: Batch, dims: int | None) -> Outcome:
            async with semaphore:
                if halt():
                    return NOT_SENT
                try:
                    return await self.send(batch, dims)
                except OpenSearchMMError as exc:
                    halt.note(exc)
                    return exc

        pending: deque[tuple[Batch, asyncio.Task[Outcome]]] = deque()
        source = as_async_iter(batches)
        exhausted = False
        try:
            while True:
                while not exhausted and len(pending) < window:
                    try:
                        batch = await source.__anext__()
                    except StopAsyncIteration:
                        exhausted = True
                        break
                    task = asyncio.ensure_future(outcome(batch, dimensions()))
                    pending.append((batch, task))
                if not pending:
                    return
                batch, task = pending.popleft()
                yield batch, await task
        finally:
            for _, task in pending:
                task.cancel()


async def as_async_iter(items: Iterable[T] | AsyncIterable[T]) -> AsyncIterator[T]:
    """Iterate a sync or an async iterable asynchronously."""
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
