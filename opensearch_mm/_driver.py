"""What the sync and async drivers share: their configuration and the pure steps.

A driver runs the batches of one call with bounded concurrency and, for each batch,
interprets the steps of a :class:`~opensearch_mm._request.Request`. Whether the call
still starts requests is asked of, and told to, the call's
:class:`~opensearch_mm._call.CallControl` (the one place that decides "fatal, so stop").
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from ._request import Request
from .batching import MAX_BODY_BYTES, Batch
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


# A stream lets answered batches wait behind a slower head of line up to 4 times what it
# keeps in flight: an answer a few times slower than the rest (a tail, a retry) then stalls
# no send, while what it holds stays a small multiple of the in-flight work.
_REORDER = 4


@dataclass(frozen=True)
class ReadAhead:
    """How far a call reads batches ahead of the one it yields next (in input order)."""

    in_flight: int  # batches read and not yet answered (sent, or ready for a free slot)
    queued: int  # ... plus answered ones waiting behind a slower head of line
    body_bytes: float  # the request bodies of all of them (an image batch holds megabytes)

    @classmethod
    def whole_call(cls, n_batches: int, max_concurrency: int) -> ReadAhead:
        """A call whose inputs are all in memory already: every batch may be queued at
        once (idle workers never wait for a slow head of line), except one at a time: a
        failure that stops the call is then seen before the next request goes out."""
        n = max(n_batches, 1) if max_concurrency > 1 else 1
        return cls(n, n, math.inf)

    @classmethod
    def stream(cls, max_concurrency: int) -> ReadAhead:
        """A stream: as many unanswered as can be in flight plus one ready for the next free
        slot, answered ones up to ``_REORDER`` times that, and never more request bodies
        than that many full-size requests (every batch read is encoded and held)."""
        window = max_concurrency + 1
        queued = _REORDER * window if max_concurrency > 1 else window  # one: answers in order
        return cls(window, queued, window * MAX_BODY_BYTES)


class Handle(Protocol):
    """A running request's outcome: a ``concurrent.futures.Future`` or an asyncio task."""

    def done(self) -> bool: ...


H = TypeVar("H", bound=Handle)


class Pending(Generic[H]):
    """The batches read and not yet yielded, in input order, each with its handle."""

    def __init__(self, limits: ReadAhead) -> None:
        self.limits = limits
        self._queue: deque[tuple[Batch, H, int]] = deque()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, batch: Batch, handle: H) -> None:
        size = batch.body_size()
        self._queue.append((batch, handle, size))
        self._bytes += size

    def pop(self) -> tuple[Batch, H]:
        batch, handle, size = self._queue.popleft()
        self._bytes -= size
        return batch, handle

    def handles(self) -> list[H]:
        return [handle for _, handle, _ in self._queue]

    def unanswered(self) -> list[H]:
        return [handle for _, handle, _ in self._queue if not handle.done()]

    def _held(self) -> bool:
        """Full by count of batches or bytes (not by what is in flight)."""
        return len(self._queue) >= self.limits.queued or self._bytes >= self.limits.body_bytes

    def room(self) -> bool:
        """Whether another batch may be read now."""
        if self._held():
            return False
        # (Fewer read than may be in flight: no need to ask each whether it is answered.)
        in_flight = self.limits.in_flight
        return len(self._queue) < in_flight or len(self.unanswered()) < in_flight

    def wait_for_any(self, more: bool) -> bool:
        """Whether to wait for any answer rather than for the head of line: the head is
        unanswered and, were another answered, another batch could be read (``more``: the
        source is not exhausted)."""
        return more and not self._queue[0][1].done() and not self._held()


class DriverBase:
    """Configuration shared by both drivers, and the per-request state machine."""

    def __init__(self, config: DriverConfig) -> None:
        self.url = config.url
        self.headers = config.headers
        self.retry = config.retry
        self.limiter = config.limiter
        self.secrets = config.secrets
        self.max_concurrency = config.max_concurrency
        self.origin = config.origin
        self._rng = random.Random()

    def request(self, batch: Batch, dimensions: int | None) -> Request:
        """A new state machine for sending ``batch``."""
        return Request(
            batch.body(),
            expected=len(batch),
            dimensions=dimensions,
            limiter=self.limiter,
            retry=self.retry,
            rng=self._rng,
            secrets=self.secrets,
            origin=self.origin,
        )
