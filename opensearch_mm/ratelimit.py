"""Client-side rate limiters, without I/O.

A limiter is shared by every call of a client, across threads and tasks. Before each
request a driver calls :meth:`RateLimiter.reserve`, which books the next send slot and
returns how many seconds to wait for it (the driver sleeps: ``time.sleep`` or
``asyncio.sleep``); after the answer it reports success or throttling.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable

from .errors import QuotaExceededError, RateLimitError

__all__ = [
    "DEFAULT_QPS",
    "AdaptiveRateLimiter",
    "FixedRateLimiter",
    "RateLimiter",
    "UnlimitedRateLimiter",
    "make_rate_limiter",
]

DEFAULT_QPS = 10.0  # the documented default per account


class RateLimiter(ABC):
    """Interface: ``reserve()`` -> seconds to wait; feedback through the ``on_*`` hooks."""

    @abstractmethod
    def reserve(self) -> float:
        """Book the next send slot; return the seconds to wait before sending."""

    def on_success(self) -> None:
        """A request was answered without throttling."""

    def on_throttle(self) -> None:
        """A request was refused with 429 ``Throttling``/``Throttling.RateQuota``."""

    @property
    def rate(self) -> float | None:
        """Current requests per second, ``None`` when unlimited."""
        return None

    def observe(self, error: BaseException | None) -> None:
        """Feed back one answer: ``None`` for success, else the error it raised."""
        if error is None:
            self.on_success()
        elif isinstance(error, RateLimitError) and not isinstance(error, QuotaExceededError):
            self.on_throttle()


class UnlimitedRateLimiter(RateLimiter):
    """No client-side limit (``qps=None``)."""

    def reserve(self) -> float:
        return 0.0


class FixedRateLimiter(RateLimiter):
    """Evenly spaced sends at a pinned rate (``qps=N``)."""

    def __init__(self, qps: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        if not qps > 0:
            raise ValueError("qps must be > 0")
        self._rate = float(qps)
        self._clock = clock
        self._lock = threading.Lock()
        self._next = 0.0

    @property
    def rate(self) -> float:
        return self._rate

    def reserve(self) -> float:
        with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + 1.0 / self._rate
            return slot - now


class AdaptiveRateLimiter(FixedRateLimiter):
    """Starts at the documented 10 QPS, backs off on 429 and probes upward without them.

    Before the first throttle the rate grows multiplicatively (a slow start); a 429
    cuts it and remembers the level, after which it probes upward gently.
    """

    def __init__(
        self,
        initial_qps: float = DEFAULT_QPS,
        *,
        min_qps: float = 0.5,
        max_qps: float = 10_000.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(initial_qps, clock=clock)
        self._min = min_qps
        self._max = max_qps
        self._throttled_at: float | None = None
        self._last_cut = -1e9

    def on_success(self) -> None:
        with self._lock:
            if self._throttled_at is None:
                self._rate = min(self._max, self._rate * 1.02)
            else:
                self._rate = min(self._max, self._rate + 0.02)

    def on_throttle(self) -> None:
        with self._lock:
            now = self._clock()
            # One cut per second: a burst of 429s from one overfull window is one signal.
            if now - self._last_cut < 1.0:
                return
            self._last_cut = now
            self._throttled_at = self._rate
            self._rate = max(self._min, self._rate * 0.8)
            self._next = max(self._next, now + 1.0 / self._rate)


def make_rate_limiter(qps: float | str | None) -> RateLimiter:
    """``"adaptive"`` -> :class:`AdaptiveRateLimiter`, a number -> fixed, ``None`` -> off."""
    if qps is None:
        return UnlimitedRateLimiter()
    if isinstance(qps, str):
        if qps != "adaptive":
            raise ValueError(f"qps must be 'adaptive', a number or None, got {qps!r}")
        return AdaptiveRateLimiter()
    return FixedRateLimiter(float(qps))
