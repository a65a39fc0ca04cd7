"""The asynchronous driver: the same request state machine as ``_sync``, awaited."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import TypeVar

import httpx

from ._call import NOT_SENT, CallControl, Outcome
from ._driver import DriverBase, DriverConfig, Pending, ReadAhead
from ._request import Done, GiveUp
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

    async def send(
        self, batch: Batch, dimensions: int | None, *, at_once: bool = False
    ) -> BatchResponse:
        """Send one batch, retrying what is retryable; raise the final error otherwise
        (``at_once``: the only request of its call out: see ``DriverBase.request``)."""
        request = self.request(batch, dimensions, at_once=at_once)
        while True:
            for wait in request.slot():
                await asyncio.sleep(wait)
            try:
                response = await self.http.post(
                    self.url, content=request.body, headers=self.headers
                )
            except httpx.HTTPError as exc:
                step = request.transport_failed(exc)
            except BaseException as exc:  # cancelled or interrupted while the request was out
                request.abandoned(exc)
                raise
            else:
                step = request.answered(response.status_code, response.headers, response.content)
            if isinstance(step, Done):
                return step.response
            if isinstance(step, GiveUp):
                raise step.error
            await asyncio.sleep(step.delay)

    async def run(
        self,
        batches: Iterable[Batch] | AsyncIterable[Batch],
        control: CallControl,
        *,
        limits: ReadAhead,
    ) -> AsyncIterator[tuple[Batch, Outcome]]:
        """Yield each batch with its outcome, in order, reading ahead within ``limits``
        and ``max_concurrency`` in flight; once ``control.stopped`` nothing more is sent."""
        semaphore = asyncio.Semaphore(self.max_concurrency)
        at_once = self.one_at_a_time(limits)

        async def outcome(batch: Batch) -> Outcome:
            async with semaphore:
                if control.stopped:
                    return NOT_SENT
                try:
                    return await self.send(batch, control.dimensions, at_once=at_once)
                except OpenSearchMMError as exc:
                    control.note(exc)
                    return exc

        pending: Pending[asyncio.Future[Outcome]] = Pending(limits)
        source = as_async_iter(batches)
        exhausted = False
        try:
            while True:
                while not exhausted and pending.room():
                    try:
                        batch = await source.__anext__()
                    except StopAsyncIteration:
                        exhausted = True
                        break
                    pending.add(batch, asyncio.ensure_future(outcome(batch)))
                if not pending:
                    return
                if pending.wait_for_any(not exhausted):
                    await asyncio.wait(pending.unanswered(), return_when=asyncio.FIRST_COMPLETED)
                    continue
                batch, task = pending.pop()
                yield batch, await task
        finally:
            for task in pending.handles():
                task.cancel()


async def as_async_iter(items: Iterable[T] | AsyncIterable[T]) -> AsyncIterator[T]:
    """Iterate a sync or an async iterable asynchronously."""
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
