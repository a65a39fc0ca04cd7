"""The asynchronous driver: the same protocol and retry decisions as ``_sync``."""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable

import httpx

from ._sync import NOT_SENT, Outcome, map_transport_error
from .batching import Batch
from .errors import OpenSearchMMError
from .protocol import BatchResponse, parse_response
from .ratelimit import RateLimiter
from .retry import RetryPolicy

__all__ = ["AsyncDriver"]

logger = logging.getLogger("opensearch_mm")


class AsyncDriver:
    """Sends batches over one ``httpx.AsyncClient``."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        url: str,
        headers: dict[str, str],
        retry: RetryPolicy,
        limiter: RateLimiter,
        secrets: tuple[str, ...],
        max_concurrency: int,
    ) -> None:
        self.http = http
        self.url = url
        self.headers = headers
        self.retry = retry
        self.limiter = limiter
        self.secrets = secrets
        self.max_concurrency = max_concurrency
        self._rng = random.Random()

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
                result = parse_response(
                    response.status_code,
                    response.headers,
                    response.content,
                    expected=len(batch),
                    dimensions=dimensions,
                    secrets=self.secrets,
                )
            except httpx.HTTPError as exc:
                error = map_transport_error(exc)
            except OpenSearchMMError as exc:
                error = exc
            else:
                self.limiter.observe(None, ticket)
                return result
            self.limiter.observe(error, ticket)
            if not self.retry.should_retry(error, retries):
                raise error
            delay = self.retry.delay(error, retries, self._rng)
            logger.debug("retrying in %.2fs after %s", delay, type(error).__name__)
            await asyncio.sleep(delay)
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

        async def outcome(batch: Batch, dims: int | None) -> Outcome:
            async with semaphore:
                if stop():
                    return NOT_SENT
                try:
                    return await self.send(batch, dims)
                except OpenSearchMMError as exc:
                    return exc

        pending: deque[tuple[Batch, asyncio.Task[Outcome]]] = deque()
        source = _aiter(batches)
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


async def _aiter(items: Iterable[Batch] | AsyncIterable[Batch]) -> AsyncIterator[Batch]:
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
