"""What the sync and async drivers share: their configuration and the pure steps.

A driver runs the batches of one call with bounded concurrency and, for each batch,
interprets the steps of a :class:`~opensearch_mm._request.Request`. Whether the call
still starts requests is asked of, and told to, the call's
:class:`~opensearch_mm._call.CallControl` (the one place that decides "fatal, so stop").
"""

from __future__ import annotations

import random
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import httpx

from ._request import Request
from .batching import Batch
from .ratelimit import RateLimiter
from .retry import RetryPolicy

__all__ = ["DriverBase", "DriverConfig", "Pending", "ReadAhead"]


@dataclass(frozen=True)
class DriverConfig:
    """What a driver needs from its client."""

    url: str
    headers: dict[str, str] | None  # None: the HTTP client already sends them
    retry: RetryPolicy
    limiter: RateLimiter
    secrets: tuple[str, ...]
    max_concurrency: int
    origin: str  # scheme://host:port, for error messages
    target: str = ""  # the model and workspace asked for, for an unknown one's error


# A stream lets answered batches wait behind a slower head of line up to 4 times what it
# keeps in flight: an answer a few times slower than the rest (a tail, a retry) then stalls
# no send, while what it holds stays a small multiple of the in-flight work.
_REORDER = 4


@dataclass(frozen=True)
class ReadAhead:
    """How far a call reads batches ahead of the one it yields next (in input order)."""

    in_flight: int  # batches read and not yet answered (sent, or ready for a free slot)
    queued: int  # ... plus answered ones waiting behind a slower head of line

    @classmethod
    def whole_call(cls, n_batches: int, max_concurrency: int) -> ReadAhead:
        """A call whose inputs are all in memory already: every batch may be queued at
        once (idle workers never wait for a slow head of line), except one at a time: a
        failure that stops the call is then seen before the next request goes out."""
        n = max(n_batches, 1) if max_concurrency > 1 else 1
        return cls(n, n)

    @classmethod
    def stream(cls, max_concurrency: int) -> ReadAhead:
        """A stream: as many unanswered as can be in flight plus one ready for the next free
        slot (each holds its encoded request), and answered ones, which hold only their
        vectors, up to ``_REORDER`` times that."""
        window = max_concurrency + 1
        queued = _REORDER * window if max_concurrency > 1 else window  # one: answers in order
        return cls(window, queued)


class Handle(Protocol):
    """A running request's outcome: a ``concurrent.futures.Future`` or an asyncio task."""

    def done(self) -> bool: ...


H = TypeVar("H", bound=Handle)


class Pending(Generic[H]):
    """The batches read and not yet yielded, in input order, each with its handle.

    Once answered, a batch keeps only its inputs' positions (:meth:`Batch.answered`): the
    encoded inputs of an image batch are megabytes, and only the unanswered need them.
    """

    def __init__(self, limits: ReadAhead) -> None:
        self.limits = limits
        self._queue: deque[list[Any]] = deque()  # [batch, handle, still holds its data]

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, batch: Batch, handle: H) -> None:
        self._queue.append([batch, handle, True])

    def pop(self) -> tuple[Batch, H]:
        batch, handle, _ = self._queue.popleft()
        return batch, handle

    def handles(self) -> list[H]:
        return [entry[1] for entry in self._queue]

    def unanswered(self) -> list[H]:
        """The handles not answered yet (the answered batches drop their data)."""
        waiting = []
        for entry in self._queue:
            if not entry[1].done():
                waiting.append(entry[1])
            elif entry[2]:
                entry[0], entry[2] = entry[0].answered(), False
        return waiting

    def room(self) -> bool:
        """Whether another batch may be read now."""
        if len(self._queue) >= self.limits.queued:
            return False
        in_flight = self.limits.in_flight
        # (Fewer read than may be in flight: no need to ask each whether it is answered.)
        return len(self._queue) < in_flight or len(self.unanswered()) < in_flight

    def wait_for_any(self, more: bool) -> bool:
        """Whether to wait for any answer rather than for the head of line: the head is
        unanswered and, were another answered, another batch could be read (``more``: the
        source is not exhausted)."""
        full = len(self._queue) >= self.limits.queued
        return more and not full and not self._queue[0][1].done()


class DriverBase:
    """Configuration shared by both drivers, and the per-request state machine."""

    give_back_seconds = 0.05  # how long a call that ended early waits for its requests
    # waiting for a slot to give it back (they wake at once; those out are not waited for)

    def __init__(self, config: DriverConfig) -> None:
        self.url = config.url
        self.headers = config.headers
        self.retry = config.retry
        self.limiter = config.limiter
        self.secrets = config.secrets
        self.max_concurrency = config.max_concurrency
        self.origin = config.origin
        self.target = config.target
        self._rng = random.Random()

    @staticmethod
    def answer_deadline(timeout: httpx.Timeout) -> float | None:
        """When an answer whose headers came now must be read in full: its read timeout
        from now (``None``: no timeout). (httpx times each read: a body sent a little at
        a time could take for ever.)"""
        seconds = timeout.read
        return None if seconds is None else time.monotonic() + seconds

    @staticmethod
    def check_deadline(deadline: float | None) -> None:
        """Raise ``httpx.ReadTimeout`` (a timeout, as any read's) once past ``deadline``."""
        if deadline is not None and time.monotonic() > deadline:
            raise httpx.ReadTimeout("the answer's body took longer than the timeout")

    def one_at_a_time(self, limits: ReadAhead) -> bool:
        """Whether a call reading ahead within ``limits`` has one request out at a time (a
        call of one batch, or ``max_concurrency=1``): it books each slot at once."""
        return self.max_concurrency == 1 or limits.queued == 1

    def request(self, batch: Batch, dimensions: int | None, *, at_once: bool = False) -> Request:
        """A new state machine for sending ``batch`` (``at_once``: its call has one request
        out at a time, and books each slot at once: see ``RateLimiter.acquire_now``)."""
        return Request(
            batch.body(),
            expected=len(batch),
            dimensions=dimensions,
            limiter=self.limiter,
            retry=self.retry,
            rng=self._rng,
            secrets=self.secrets,
            origin=self.origin,
            target=self.target,
            at_once=at_once,
        )
