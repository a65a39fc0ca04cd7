"""Throttle models: what an account's rate limit may look like, without I/O.

The service does not document its throttle. Each model here is a plausible shape of it; the
emulator serves any of them over HTTP and :mod:`opensearch_mm.emulator._simulate` drives the
real rate limiter against them in virtual time. Every method takes the time ``now`` (seconds,
any monotonic origin), so one implementation serves both.

* :class:`TokenBucket` -- ``rate`` tokens per second, at most ``capacity`` saved up;
* :class:`FixedWindow` -- at most ``limit`` requests per window aligned on the clock;
* :class:`AnchoredWindow` -- the same per window started by the first request after the last
  one ended (a counter with an expiry: Redis ``INCR`` with ``EXPIRE``);
* :class:`SlidingWindow` -- at most ``limit`` requests in any ``window`` seconds;
* :class:`SlicedWindow` -- a sliding window counted in clock-aligned slices (the way
  counters such as Alibaba's Sentinel keep a second: two slices of 500 ms);
* :class:`WeightedWindow` -- a sliding-window counter: the current clock-aligned window's
  count plus the last one's, weighted by how much of it the sliding window still covers
  (the approximation Cloudflare describes and many Redis-backed limiters use);
* :class:`QueuedRate` -- requests held in line and let through at an even rate, refused
  only when the wait would be too long (a gateway that shapes traffic: Sentinel's rate
  limiter mode, nginx's ``limit_req`` with a burst);
* :class:`WarmUp` -- a sliced window whose limit starts at a third of the rate on an idle
  account and climbs to it over a warm-up period (Guava's and Sentinel's warm-up mode);
* :class:`ConcurrencyCap` -- at most ``limit`` requests in flight (a rate-free 429);
* :class:`AllOf` -- a request must pass every part (a rate cap and a concurrency cap).

A refused request takes nothing (no token, no place in a window, no slot), except with
``penalty``, as some gateways charge every arrival: in a bucket a refusal takes a token too,
down to a debt of a full bucket; a sliding window logs it too (a log that records each
arrival before it counts them), so a sender refused keeps the window full.
"""

from __future__ import annotations

import math
import random
import threading
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass

__all__ = [
    "THROTTLE_KINDS",
    "AllOf",
    "AnchoredWindow",
    "ConcurrencyCap",
    "FixedWindow",
    "Latency",
    "QueuedRate",
    "SlicedWindow",
    "SlidingWindow",
    "Throttle",
    "TokenBucket",
    "WarmUp",
    "WeightedWindow",
    "make_throttle",
]

THROTTLE_KINDS: tuple[str, ...] = (
    "bucket",
    "fixed",
    "anchored",
    "sliding",
    "sliced",
    "weighted",
    "queue",
    "warmup",
    "concurrency",
)


class Throttle(ABC):
    """One account's limit. Thread-safe: the emulator calls it from many handler threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def admit(self, now: float) -> bool:
        """Whether a request arriving at ``now`` is let through (and take its share if so)."""
        with self._lock:
            return self._admit_after(now) is not None

    def admit_after(self, now: float) -> float | None:
        """Seconds a request arriving at ``now`` waits in line before it is served (0 for
        every model but a queue), or ``None`` if it is refused."""
        with self._lock:
            return self._admit_after(now)

    def release(self, now: float) -> None:
        """A request let through by :meth:`admit` has been answered."""
        with self._lock:
            self._release(now)

    def retry_after(self, now: float) -> float:
        """Seconds until a request could pass again (the hint sent with a 429)."""
        with self._lock:
            return max(0.0, self._retry_after(now))

    @abstractmethod
    def _admit(self, now: float) -> bool:
        """Whether a request arriving at ``now`` passes (lock held)."""

    def _admit_after(self, now: float) -> float | None:
        return 0.0 if self._admit(now) else None

    def _release(self, now: float) -> None:
        pass

    def _retry_after(self, now: float) -> float:
        return 0.0

    @property
    def ceiling(self) -> float | None:
        """Requests per second this throttle lets through at best (``None``: depends on
        latency, as for a concurrency cap)."""
        return None


class TokenBucket(Throttle):
    """``rate`` tokens per second, at most ``capacity`` (default: one second's worth);
    ``penalty``: a refused request takes a token too (the bucket goes down to ``-capacity``)."""

    def __init__(
        self,
        rate: float,
        capacity: float | None = None,
        *,
        penalty: bool = False,
        now: float = 0.0,
    ) -> None:
        super().__init__()
        if not rate > 0:
            raise ValueError("qps must be > 0")
        self.rate = float(rate)
        self.capacity = max(1.0, float(rate) if capacity is None else float(capacity))
        self.penalty = penalty
        self._tokens = self.capacity
        self._stamp = now

    def _refill(self, now: float) -> None:
        if now > self._stamp:
            self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now

    def _admit(self, now: float) -> bool:
        self._refill(now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        if self.penalty:
            self._tokens = max(-self.capacity, self._tokens - 1.0)
        return False

    def _retry_after(self, now: float) -> float:
        self._refill(now)
        return (1.0 - self._tokens) / self.rate

    @property
    def ceiling(self) -> float:
        return self.rate


class FixedWindow(Throttle):
    """At most ``limit`` requests in each window ``[phase + k*window, phase + (k+1)*window)``."""

    def __init__(self, limit: float, window: float = 1.0, *, phase: float = 0.0) -> None:
        super().__init__()
        if not limit > 0 or not window > 0:
            raise ValueError("limit and window must be > 0")
        self.limit = max(1, round(limit))
        self.window = float(window)
        self.phase = float(phase)
        self._current = -math.inf
        self._count = 0

    def _index(self, now: float) -> float:
        return math.floor((now - self.phase) / self.window)

    def _roll(self, now: float) -> None:
        """Start counting afresh if ``now`` is in a new window."""
        index = self._index(now)
        if index != self._current:
            self._current, self._count = index, 0

    def _admit(self, now: float) -> bool:
        self._roll(now)
        if self._count < self.limit:
            self._count += 1
            return True
        return False

    def _retry_after(self, now: float) -> float:
        return self.phase + (self._index(now) + 1) * self.window - now

    @property
    def ceiling(self) -> float:
        return self.limit / self.window


class AnchoredWindow(FixedWindow):
    """At most ``limit`` requests in each window of ``window`` seconds that starts at the
    first request after the last window ended: a counter that expires ``window`` after its
    first increment (Redis ``INCR`` with ``EXPIRE``), not aligned to any clock."""

    def __init__(self, limit: float, window: float = 1.0) -> None:
        super().__init__(limit, window)
        self._current = -math.inf  # when the current window started

    def _roll(self, now: float) -> None:
        if now >= self._current + self.window:
            self._current, self._count = now, 0

    def _retry_after(self, now: float) -> float:
        return max(0.0, self._current + self.window - now)


class SlidingWindow(Throttle):
    """At most ``limit`` requests let through in any ``window`` seconds; ``penalty``: at
    most ``limit`` arrivals, refused ones counted too."""

    def __init__(self, limit: float, window: float = 1.0, *, penalty: bool = False) -> None:
        super().__init__()
        if not limit > 0 or not window > 0:
            raise ValueError("limit and window must be > 0")
        self.limit = max(1, round(limit))
        self.window = float(window)
        self.penalty = penalty
        self._times: deque[float] = deque()

    def _expire(self, now: float) -> None:
        times = self._times
        while times and times[0] <= now - self.window:
            times.popleft()

    def _admit(self, now: float) -> bool:
        self._expire(now)
        if len(self._times) < self.limit:
            self._times.append(now)
            return True
        if self.penalty:
            self._times.append(now)
        return False

    def _retry_after(self, now: float) -> float:
        self._expire(now)
        over = len(self._times) - self.limit
        if over < 0:
            return 0.0
        return self._times[over] + self.window - now

    @property
    def ceiling(self) -> float:
        return self.limit / self.window


class SlicedWindow(Throttle):
    """At most ``limit`` requests in the current ``window``, counted in ``slices`` clock-aligned
    slices: the slice ``now`` is in and the ones before it that started less than ``window``
    ago (so the count covers between ``window - window/slices`` and ``window`` seconds)."""

    def __init__(
        self, limit: float, window: float = 1.0, *, slices: int = 2, phase: float = 0.0
    ) -> None:
        super().__init__()
        if not limit > 0 or not window > 0 or slices < 1:
            raise ValueError("limit and window must be > 0, slices >= 1")
        self.limit = max(1, round(limit))
        self.window = float(window)
        self.slice = self.window / slices
        self.phase = float(phase)
        self._counts: deque[tuple[int, int]] = deque()  # (slice index, requests let through)

    def _index(self, now: float) -> int:
        return math.floor((now - self.phase) / self.slice)

    def _expire(self, index: int) -> int:
        counts = self._counts
        oldest = index - round(self.window / self.slice) + 1
        while counts and counts[0][0] < oldest:
            counts.popleft()
        return sum(n for _, n in counts)

    def _admit(self, now: float) -> bool:
        index = self._index(now)
        if self._expire(index) >= self._limit_now(now):
            return False
        counts = self._counts
        if counts and counts[-1][0] == index:
            counts[-1] = (index, counts[-1][1] + 1)
        else:
            counts.append((index, 1))
        return True

    def _limit_now(self, now: float) -> int:
        return self.limit

    def _retry_after(self, now: float) -> float:
        # The oldest slice leaves the count when the slice after the current one starts.
        return self.phase + (self._index(now) + 1) * self.slice - now

    @property
    def ceiling(self) -> float:
        return self.limit / self.window


class WeightedWindow(FixedWindow):
    """A sliding-window counter: a request arriving ``f`` of the way into the current
    clock-aligned window is let through while ``previous x (1 - f) + current`` (the last
    window's count weighted by how much of it a sliding window ending now still covers,
    plus the current window's count) is below ``limit``. Two counters stand in for a log:
    an even sender is held to ``limit`` per window, a burst at a window's end weighs on the
    start of the next."""

    def __init__(self, limit: float, window: float = 1.0, *, phase: float = 0.0) -> None:
        super().__init__(limit, window, phase=phase)
        self._previous = 0  # let through in the window before the current one

    def estimate(self, now: float) -> float:
        """The weighted count a request arriving at ``now`` is judged by."""
        with self._lock:
            return self._estimate(now)

    def _estimate(self, now: float) -> float:
        position = (now - self.phase) / self.window
        index = math.floor(position)
        if index != self._current:
            self._previous = self._count if index == self._current + 1 else 0
            self._current, self._count = index, 0
        return self._previous * (1.0 - (position - index)) + self._count

    def _admit(self, now: float) -> bool:
        if self._estimate(now) >= self.limit:
            return False
        self._count += 1
        return True

    def _retry_after(self, now: float) -> float:
        # The weight of the last window falls linearly: the estimate is below the limit
        # once ``previous x (1 - f) + current < limit`` (a microsecond past the time it
        # equals the limit, still refused then).
        over = self._estimate(now) - self.limit
        if over < 0:
            return 0.0
        position = (now - self.phase) / self.window
        if self._count < self.limit:
            return (over / self._previous) * self.window + 1e-6  # (over >= 0: previous > 0)
        # The current window alone is full: it weighs on the next one as it ends.
        end = (math.floor(position) + 1 - position) * self.window
        return end + (self._count - self.limit) / self._count * self.window + 1e-6


class WarmUp(SlicedWindow):
    """A sliced 1-s window whose limit warms up, the way Guava's and Sentinel's warm-up
    mode guard a cold system: an account idle for a while is let through at ``rate /
    cold_factor``, and the limit climbs to ``rate`` over about ``period`` seconds of traffic;
    idle again, it cools.

    A store of tokens, full when cold, loses each clock second's passes; above a threshold
    the limit falls linearly in the store's excess (1/limit is linear in it), below it the
    limit is ``rate``. The store refills at ``rate`` a second while under the threshold, or
    above it after a second that let through less than ``rate / cold_factor``: a sender
    held below the cold limit keeps the account cold.
    """

    def __init__(
        self,
        rate: float,
        period: float = 10.0,
        *,
        cold_factor: float = 3.0,
        phase: float = 0.0,
    ) -> None:
        super().__init__(rate, 1.0, slices=2, phase=phase)
        if not period > 0 or not cold_factor > 1:
            raise ValueError("the warm-up period must be > 0 and the cold factor > 1")
        self.rate = float(rate)
        self.period = float(period)
        self.cold_factor = float(cold_factor)
        self._threshold = self.period * self.rate / (self.cold_factor - 1.0)
        self._most = self._threshold + 2.0 * self.period * self.rate / (1.0 + self.cold_factor)
        self._slope = (self.cold_factor - 1.0) / self.rate / (self._most - self._threshold)
        self._store = self._most  # cold at first
        self._second = -math.inf  # the clock second the store was last brought up to
        self._passes = 0  # let through in that second
        # A second letting through fewer than this keeps it cool (whole numbers, as Java's
        # integer division has it: a cold limit of 3.3/s lets 3 through, and 3 warm it).
        self._cool_below = math.floor(self.rate) // max(1, math.floor(self.cold_factor))

    def _sync(self, now: float) -> None:
        second = math.floor(now - self.phase)
        if second <= self._second:
            return
        elapsed = min(second - self._second, self._most / self.rate + 1.0)
        last = self._passes if second - self._second == 1 else 0
        store = self._store
        if store < self._threshold or last < self._cool_below:
            store = min(self._most, store + elapsed * self.rate)
        self._store = max(0.0, store - last)
        self._second, self._passes = second, 0

    def limit_at(self, now: float) -> float:
        """Requests per second let through at ``now`` (``rate`` once warm)."""
        with self._lock:
            self._sync(now)
            return self._limit()

    def _limit(self) -> float:
        above = self._store - self._threshold
        if above < 0:
            return self.rate
        return 1.0 / (above * self._slope + 1.0 / self.rate)

    def _limit_now(self, now: float) -> int:
        self._sync(now)
        return math.floor(self._limit() + 1e-9)  # (not one short for a rounding error)

    def _admit(self, now: float) -> bool:
        if not super()._admit(now):
            return False
        self._passes += 1
        return True

    @property
    def ceiling(self) -> float:
        return self.rate


class _Waiting(Throttle):
    """A throttle that may hold a request in line before serving it: it says how long
    (:meth:`_admit_after`), and passing is being given a wait."""

    def _admit(self, now: float) -> bool:
        return self._admit_after(now) is not None

    @abstractmethod
    def _admit_after(self, now: float) -> float | None:
        """Seconds a request arriving at ``now`` waits, or ``None`` if refused (lock held)."""


class QueuedRate(_Waiting):
    """Requests leave a line one per ``1/rate`` seconds; one that would wait longer than
    ``max_wait`` is refused. Sending faster than the rate costs answer time, not 429s,
    until the line is ``max_wait`` long."""

    def __init__(self, rate: float, max_wait: float = 0.5) -> None:
        super().__init__()
        if not rate > 0 or max_wait < 0:
            raise ValueError("qps must be > 0 and the longest wait >= 0")
        self.rate = float(rate)
        self.max_wait = float(max_wait)
        self._free = -math.inf  # when the line lets the next request through

    def _admit_after(self, now: float) -> float | None:
        start = max(now, self._free)
        if start - now > self.max_wait + 1e-9:  # (not refused for a rounding error)
            return None
        self._free = start + 1.0 / self.rate
        return start - now

    def _retry_after(self, now: float) -> float:
        return self._free - self.max_wait - now

    @property
    def ceiling(self) -> float:
        return self.rate


class ConcurrencyCap(Throttle):
    """At most ``limit`` requests in flight; one more gets a 429 whatever the rate."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        if limit < 1:
            raise ValueError("the concurrency limit must be >= 1")
        self.limit = int(limit)
        self.in_flight = 0

    def _admit(self, now: float) -> bool:
        if self.in_flight < self.limit:
            self.in_flight += 1
            return True
        return False

    def _release(self, now: float) -> None:
        self.in_flight = max(0, self.in_flight - 1)


class AllOf(_Waiting):
    """A request passes only if every part lets it through (none is charged otherwise)."""

    def __init__(self, *parts: Throttle) -> None:
        super().__init__()
        if not parts:
            raise ValueError("AllOf needs at least one throttle")
        self.parts = parts

    def _admit_after(self, now: float) -> float | None:
        taken: list[Throttle] = []
        wait = 0.0
        for part in self.parts:
            delay = part.admit_after(now)
            if delay is None:
                # Give back what the earlier parts took. Only a concurrency cap can be given
                # back exactly, so rate parts are checked after it (see ``make_throttle``).
                for t in taken:
                    t.release(now)
                return None
            taken.append(part)
            wait = max(wait, delay)
        return wait

    def _release(self, now: float) -> None:
        for part in self.parts:
            part.release(now)

    def _retry_after(self, now: float) -> float:
        return max(part.retry_after(now) for part in self.parts)

    @property
    def ceiling(self) -> float | None:
        rates = [c for c in (part.ceiling for part in self.parts) if c is not None]
        return min(rates) if rates else None


def make_throttle(
    kind: str,
    qps: float | None,
    *,
    burst: float | None = None,
    window: float = 1.0,
    max_in_flight: int | None = None,
    phase: float | None = None,
    penalty: bool = False,
    now: float = 0.0,
) -> Throttle | None:
    """The throttle named ``kind`` (see :data:`THROTTLE_KINDS`) at ``qps``.

    ``burst``: a bucket's capacity (default ``qps``). ``window``: the length of a fixed or
    sliding window in seconds (the limit is ``qps * window`` per window), the longest a
    request waits in a queue's line, or how long a warm-up takes. ``phase``: where fixed
    windows and clock seconds start (default: a random offset, as an unknown server clock
    would be). ``penalty``: refusals take a bucket's token or a sliding window's place too.
    ``max_in_flight``: a concurrency cap, alone (``kind="concurrency"``) or on top of a rate
    cap. Returns ``None`` when nothing limits.
    """
    if kind not in THROTTLE_KINDS:
        raise ValueError(f"unknown throttle {kind!r}; expected one of {THROTTLE_KINDS}")
    parts: list[Throttle] = []
    if max_in_flight is not None:
        parts.append(ConcurrencyCap(max_in_flight))
    if kind == "concurrency":
        if max_in_flight is None:
            raise ValueError("a concurrency throttle needs max_in_flight")
    elif qps is not None:
        if kind == "bucket":
            parts.append(TokenBucket(qps, burst, penalty=penalty, now=now))
        elif kind in ("fixed", "sliced", "weighted", "warmup"):
            span = 1.0 if kind == "warmup" else window
            start = random.random() * span if phase is None else phase
            if kind == "fixed":
                parts.append(FixedWindow(qps * window, window, phase=start))
            elif kind == "sliced":
                parts.append(SlicedWindow(qps * window, window, phase=start))
            elif kind == "weighted":
                parts.append(WeightedWindow(qps * window, window, phase=start))
            else:
                parts.append(WarmUp(qps, window, phase=start))
        elif kind == "anchored":
            parts.append(AnchoredWindow(qps * window, window))
        elif kind == "queue":
            parts.append(QueuedRate(qps, window))
        else:
            parts.append(SlidingWindow(qps * window, window, penalty=penalty))
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else AllOf(*parts)


@dataclass(frozen=True)
class Latency:
    """Service time: lognormal around ``median`` seconds (``sigma=0``: always the median)."""

    median: float
    sigma: float = 0.0

    def sample(self, rng: random.Random) -> float:
        if self.sigma <= 0:
            return self.median
        return self.median * math.exp(self.sigma * rng.gauss(0.0, 1.0))

    @property
    def mean(self) -> float:
        return self.median * math.exp(self.sigma**2 / 2.0)
