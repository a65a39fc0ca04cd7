"""Client-side rate limiters, without I/O.

A limiter is shared by every call of a client, across threads and tasks. Before each
request a driver takes a :class:`Ticket` with :meth:`RateLimiter.acquire` (the ticket
says how long to wait for the booked send slot), sleeps (``time.sleep`` or
``asyncio.sleep``), and checks with :meth:`RateLimiter.confirm` that the slot still holds
(a throttle cut since the booking moves the slot: the driver then acquires again). After
the answer it feeds back success or throttling with :meth:`RateLimiter.observe`.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

from .errors import QuotaExceededError, RateLimitError

__all__ = [
    "DEFAULT_QPS",
    "AdaptiveRateLimiter",
    "FixedRateLimiter",
    "RateLimiter",
    "Ticket",
    "UnlimitedRateLimiter",
    "make_rate_limiter",
]

DEFAULT_QPS = 10.0  # the documented default per account


class Ticket(NamedTuple):
    """A booked send slot: ``wait`` seconds from the booking; ``epoch`` of the limiter's
    rate at booking time (a throttle cut starts a new epoch)."""

    wait: float
    epoch: int = 0


class RateLimiter(ABC):
    """Interface: ``acquire()``/``reserve()`` book a slot; feedback through ``observe``."""

    @abstractmethod
    def reserve(self) -> float:
        """Book the next send slot; return the seconds to wait before sending."""

    def acquire(self) -> Ticket:
        """Book the next send slot as a :class:`Ticket`."""
        return Ticket(self.reserve())

    def confirm(self, ticket: Ticket) -> bool:
        """After waiting ``ticket.wait``: may the request go now? ``False`` means the rate
        was cut since the booking and the caller should :meth:`acquire` again."""
        return True

    def on_success(self, ticket: Ticket | None = None) -> None:
        """A request was answered without throttling."""

    def on_throttle(self, ticket: Ticket | None = None) -> None:
        """A request was refused with 429 ``Throttling``/``Throttling.RateQuota``."""

    @property
    def rate(self) -> float | None:
        """Current requests per second, ``None`` when unlimited."""
        return None

    def observe(self, error: BaseException | None, ticket: Ticket | None = None) -> None:
        """Feed back one answer: ``None`` for success, else the error it raised."""
        if error is None:
            self.on_success(ticket)
        elif isinstance(error, RateLimitError) and not isinstance(error, QuotaExceededError):
            self.on_throttle(ticket)


class UnlimitedRateLimiter(RateLimiter):
    """No client-side limit (``qps=None``)."""

    def reserve(self) -> float:
        return 0.0


class FixedRateLimiter(RateLimiter):
    """Evenly spaced sends at a pinned rate (``qps=N``): no bursts, even after idling."""

    def __init__(self, qps: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if not qps > 0:
            raise ValueError("qps must be > 0")
        self._rate = float(qps)
        self._clock = clock
        self._lock = threading.Lock()
        self._next = 0.0
        self._epoch = 0

    @property
    def rate(self) -> float:
        return self._rate

    def _book(self, now: float) -> float:
        """Book the slot after the last one (lock held); return the wait."""
        slot = self._next if self._next > now else now
        self._next = slot + 1.0 / self._rate
        return slot - now

    def reserve(self) -> float:
        with self._lock:
            return self._book(self._clock())

    def acquire(self) -> Ticket:
        with self._lock:
            return Ticket(self._book(self._clock()), self._epoch)


class AdaptiveRateLimiter(FixedRateLimiter):
    """Finds the account's real limit from 429s, starting at the documented 10 QPS.

    * **Slow start**: while no 429 has come, each success raises the rate by
      ``slow_start_gain`` requests/s, which doubles it about every 1.4 s when the limiter is
      what holds the sender back (it does not grow while the caller sends less).
    * The **first 429** halves the rate; later ones cut it by ``backoff`` (x0.8). A cut
      starts a new epoch: slots booked before it are re-booked at the new rate
      (:meth:`confirm`), and 429s for requests sent before it are not counted again, so
      the burst of refusals from one overfull second is one signal, not many.
    * **Probing**: without 429s the rate grows by ``probe_gain`` per success (about 2% a
      second): a token bucket emptied by a cut refills while the rate climbs back, so
      the sender holds about the real limit with a throttle every so often.

    Sends are evenly spaced (``1/rate`` apart), never bursts.
    """

    def __init__(
        self,
        initial_qps: float = DEFAULT_QPS,
        *,
        min_qps: float = 0.5,
        max_qps: float = 10_000.0,
        slow_start_gain: float = 2.0,
        probe_gain: float = 0.02,
        backoff: float = 0.8,
        margin: float = 0.95,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(initial_qps, clock=clock)
        if not 0 < min_qps <= initial_qps <= max_qps:
            raise ValueError("need 0 < min_qps <= initial_qps <= max_qps")
        if not 0 < backoff < 1:
            raise ValueError("backoff must be within (0, 1)")
        self._min = float(min_qps)
        self._max = float(max_qps)
        self._slow_start_gain = slow_start_gain
        self._probe_gain = probe_gain
        self._backoff = backoff
        self._margin = margin
        self._first_success: float | None = None
        self.slow_start = True
        self.cuts = 0
        self._recent: deque[float] = deque()  # answer times of the last second's successes

    def _book(self, now: float) -> float:
        wait = super()._book(now)
        if self.slow_start and wait > 0:
            # Slow start grows per booked slot while sends queue behind the limiter:
            # growing per answer would lag by the whole queue of slots booked ahead.
            self._rate = min(self._max, self._rate + self._slow_start_gain)
        return wait

    def confirm(self, ticket: Ticket) -> bool:
        with self._lock:
            return ticket.epoch == self._epoch

    def on_success(self, ticket: Ticket | None = None) -> None:
        with self._lock:
            now = self._clock()
            if self.slow_start:
                if self._first_success is None:
                    self._first_success = now
                recent = self._recent
                recent.append(now)
                while recent[0] < now - 1.0:
                    recent.popleft()
                return
            if self._next > now:  # only while the limiter is what holds the sender back
                self._rate = min(self._max, self._rate + self._probe_gain)

    def on_throttle(self, ticket: Ticket | None = None) -> None:
        with self._lock:
            if ticket is not None and ticket.epoch != self._epoch:
                return  # sent before the last cut: already accounted for
            now = self._clock()
            if self.slow_start:
                # The bucket is empty now. What it let through in the last ``window``
                # seconds is its rate times the window plus what it held (about a
                # second's worth): a little under that estimate, and never more than half
                # the rate that was refused.
                while self._recent and self._recent[0] < now - 1.0:
                    self._recent.popleft()
                start = now if self._first_success is None else self._first_success
                window = min(1.0, now - start)
                estimate = self._margin * len(self._recent) / (1.0 + window)
                rate = min(self._rate * 0.5, estimate) if estimate > 0 else self._rate * 0.5
                self.slow_start = False
                self._recent.clear()
            else:
                rate = self._rate * self._backoff
            self._rate = max(self._min, rate)
            self._epoch += 1
            self.cuts += 1
            self._next = now + 1.0 / self._rate


def make_rate_limiter(qps: float | str | None) -> RateLimiter:
    """``"adaptive"`` -> :class:`AdaptiveRateLimiter`, a number -> fixed, ``None`` -> off."""
    if qps is None:
        return UnlimitedRateLimiter()
    if isinstance(qps, str):
        if qps != "adaptive":
            raise ValueError(f"qps must be 'adaptive', a number or None, got {qps!r}")
        return AdaptiveRateLimiter()
    return FixedRateLimiter(float(qps))
