"""The asynchronous driver: the same request state machine as ``_sync``, awaited."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterable
from typing import TypeVar

import httpx

from ._call import NOT_SENT, CallControl, NotSent, Outcome, Split, halving, split_first
from ._driver import DriverBase, DriverConfig, Pending, ReadAhead
from ._request import Done, GiveUp
from .batching import Batch
from .errors import ClientClosedError, OpenSearchMMError
from .protocol import BatchResponse

__all__ = ["AsyncDriver", "as_async_iter"]

T = TypeVar("T")


class AsyncDriver(DriverBase):
    """Sends batches over one ``httpx.AsyncClient``."""

    def __init__(self, http: httpx.AsyncClient, config: DriverConfig) -> None:
        super().__init__(config)
        self.http = http

    async def send(
        self,
        batch: Batch,
        dimensions: int | None,
        *,
        at_once: bool = False,
        control: CallControl | None = None,
    ) -> BatchResponse | NotSent:
        """As ``SyncDriver.send``, awaited (and a pool closed under it ends the request in
        ``ClientClosedError``)."""
        if self.http.is_closed:  # (the client was closed while its call ran)
            raise _closed()
        request = self.request(batch, dimensions, at_once=at_once)
        while True:
            slots = request.slot()
            for wait in slots:
                if await _stopped_within(wait, control):
                    slots.close()  # (its slot goes back to the limiter)
                    return request.given_up()
            try:
                status, headers, content = await self._post(request.body)
            except httpx.HTTPError as exc:
                if self.http.is_closed:  # its connection was closed with the pool
                    request.abandoned(exc)
                    raise _closed() from exc
                step = request.transport_failed(exc)
            except BaseException as exc:  # cancelled or interrupted while the request was out
                request.abandoned(exc)
                if isinstance(exc, RuntimeError) and self.http.is_closed:
                    raise _closed() from exc  # (httpx: "the client has been closed")
                raise
            else:
                step = request.answered(status, headers, content)
            if isinstance(step, Done):
                return step.response
            if isinstance(step, GiveUp):
                raise step.error
            if await _stopped_within(step.delay, control):
                return request.given_up()

    async def _post(self, body: bytes) -> tuple[int, httpx.Headers, bytes]:
        """POST ``body``; the answer's status, headers and body, read within the timeout
        (httpx times each read: a body sent a little at a time could take for ever)."""
        stream = self.http.stream("POST", self.url, content=body, headers=self.headers)
        async with stream as response:
            deadline = self.answer_deadline(self.http.timeout)
            parts = []
            async for part in response.aiter_bytes():
                parts.append(part)
                self.check_deadline(deadline)
            return response.status_code, response.headers, b"".join(parts)

    async def run(
        self,
        batches: Iterable[Batch] | AsyncIterable[Batch],
        control: CallControl,
        *,
        limits: ReadAhead,
    ) -> AsyncGenerator[tuple[Batch, Outcome], None]:
        """Yield each batch with its outcome, in order, reading ahead within ``limits``
        and ``max_concurrency`` in flight; once ``control.stopped`` nothing more is sent."""
        semaphore = asyncio.Semaphore(self.max_concurrency)
        at_once = self.one_at_a_time(limits)

        async def attempt(batch: Batch) -> Outcome:
            if control.stopped:
                return NOT_SENT
            try:
                return await self.send(batch, control.dimensions, at_once=at_once, control=control)
            except OpenSearchMMError as exc:
                control.note(exc)
                return exc

        async def split(batch: Batch) -> Split:
            # (A batch refused as invalid, sent again in parts: see halving.)
            plan = halving(batch)
            try:
                part = next(plan)
                while True:
                    part = plan.send(await attempt(part))
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]

        async def outcome(batch: Batch) -> Outcome:
            async with semaphore:
                result = await attempt(batch)
                return await split(batch) if split_first(batch, result) else result

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
            tasks = pending.handles()
            for task in tasks:
                task.cancel()
            if tasks:
                # (Cancelled, those waiting give their booked slots back as they end: a
                # moment lets them, before the caller's next call books behind the slots.)
                await asyncio.wait(tasks, timeout=self.give_back_seconds)


def _closed() -> ClientClosedError:
    return ClientClosedError("this client was closed while the call ran")


_STOP_POLL = 0.05  # a request waiting for its slot or a retry looks 20 times a second
# whether its call stopped (a fatal error in another request, the consumer gone): sooner
# costs wake-ups, later sends a request the call no longer wants. (The sync driver wakes
# on the stop itself.)


async def _stopped_within(seconds: float, control: CallControl | None) -> bool:
    """Sleep ``seconds`` (less once ``control`` stops); whether it stopped."""
    if control is None:
        await asyncio.sleep(seconds)
        return False
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while not control.stopped:
        left = end - loop.time()
        if left <= 0:
            return False
        await asyncio.sleep(min(left, _STOP_POLL))
    return True


async def as_async_iter(items: Iterable[T] | AsyncIterable[T]) -> AsyncIterator[T]:
    """Iterate a sync or an async iterable asynchronously."""
    if isinstance(items, AsyncIterable):
        async for item in items:
            yield item
    else:
        for item in items:
            yield item
