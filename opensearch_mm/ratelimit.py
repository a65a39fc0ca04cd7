"""Client-side rate limiters, without I/O.

A limiter is shared by every call of a client, across threads and tasks. Before each
request a driver takes a :class:`Ticket` with :meth:`RateLimiter.acquire` (the ticket
says how long to wait for the booked send slot), sleeps (``time.sleep`` or
``asyncio.sleep``), and checks with :meth:`RateLimiter.confirm` that the slot still holds
(a throttle cut since the booking moves the slot: the driver then acquires again). After
the answer it feeds back success or throttling with :meth:`RateLimiter.observe`.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import math
import mmap
import os
import stat
import struct
import tempfile
import threading
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

from .errors import APIStatusError, QuotaExceededError, RateLimitError

__all__ = [
    "DEFAULT_QPS",
    "AdaptiveRateLimiter",
    "FixedRateLimiter",
    "RateLimiter",
    "SharedState",
    "Ticket",
    "UnlimitedRateLimiter",
    "describe_qps",
    "describe_share",
    "make_rate_limiter",
]

DEFAULT_QPS = 10.0  # the documented default per account

# Why each constant of AdaptiveRateLimiter has its value (docs/performance.md: the design).
_SLOW_START_GAIN = 2.0  # QPS added per slot booked in a queue: the rate e-folds every 0.5 s
_BETA = 0.95  # cut to 0.95 of the ceiling: below a limit refused <=5 % above it, avg 0.99 back
_MAX_CUT = 0.5  # with no answer yet to measure, a 429 halves the rate
_TRUST_RATE = 0.9  # accepted >= 0.9 x the refused rate: refused just above the limit
_RETURN_SECONDS = 2.0  # climbing back takes >= 2 s of queued sends ...
_RETURN_REQUESTS = 50  # ... and >= 50 answers: one 429 per cycle stays under 2 % at any cap
_PROBE_SECONDS = 0.6  # probing above the ceiling doubles its step every 0.6 s ...
_PROBE_REQUESTS = 6  # ... and 6 answers: a tripled quota is found within about 5 s
_PROBE_STEP = 0.01  # first probe 1 % above the ceiling: a limit that moved a little
_MAX_LEAD = 2.0  # probing sends at most twice the accepted rate (doubling per second at most)
_PROBE_GAIN = 1.25  # accepting <= 1.25x the old ceiling after a probe: not a raised quota
_GOODPUT_SECONDS = 1.0  # accepted rate: answers in the last second (windows are 1 s) ...
_GOODPUT_REQUESTS = 10.0  # ... or the last 10 answers' time, so a low cap is not read from 1 or 2
_BIN = 0.05  # sends and 429s are counted per 50 ms of send time (a twentieth of a window)
_MAX_BINS = 4096  # 200 s of bins: the longest span (10 sends at the slowest rate) fits
_LAG_REFUSALS = 1.5  # a send without a 429 for 1.5x the usual 429 time was accepted
_REFUSAL_TIME = 0.05  # a 429's round trip until one is seen: 50 ms (a gateway's answer)
_HORIZON_SECONDS = 0.25  # slots are booked at most 0.25 s ahead ...
_HORIZON_SLOTS = 4  # ... or 4 slots: a later sender waits unbooked, so a rate rise reaches it
_FAST_RETURN_REQUESTS = 10  # a ceiling measured while refused is no guess: return in 10
_MAX_HOLD = 60.0  # a retry hint longer than this is not held for all sends
_PAUSE_GROWTH = 2.0  # each refusal of a send since a cut, none accepted, doubles the pause ...
_MAX_PAUSE = 1.0  # ... up to 1 s (a 1-s window is open again after it; a bucket in debt,
# refilling by one second's worth per second, after a few)
_CLOSED_INTERVALS = 2.0  # refused for longer than 2 send intervals ...
_CLOSED_SECONDS = 0.1  # ... and 0.1 s (beyond answer-time jitter): a window was full
_SHUT_SHARE = 0.5  # shut half the time since it last opened: let through in bursts
_HELD_CUT = 0.25  # after a hold, a second's read below a quarter of the rate is checked ...
_HELD_SPAN = 5.0  # ... against what was accepted over 5 s (cycles of windows of seconds)
_WINDOW_EVIDENCE = 2  # 429s above an in-flight count (one may be a rate cap's) before a cap ...
_LATE_EVIDENCE = 3  # ... (3 where answers are heard late, in batches: a coordinator's) ...
_WINDOW_ODDS = 3  # ... at least one in four sends above it refused (in-transit answers blur it) ...
_WINDOW_ANSWERS = 5  # ... and 5 answers per slot at or below it (a rate cap refuses at any)
_WINDOW_PROBE_ANSWERS = 50  # answers before one more in flight is tried (<= 2 % 429s)
_POLL_SHARE = 0.02  # at a full concurrency cap, look for a free slot every 2 % of an answer
_MIN_POLL = 0.001  # ... but not more often than each millisecond ...
_MAX_POLL = 0.05  # ... nor less often than 20 times a second
_MAX_PROCESSES = 32  # processes one shared state counts requests in flight for
_PURGE_AT = 1000  # in-flight entries before the ones never answered are looked for
_STALE_SECONDS = 120.0  # an entry this old (and 20 answer times) was cancelled, not slow


class Ticket(NamedTuple):
    """A booked send slot: ``wait`` seconds from the booking; ``epoch`` of the limiter's
    rate at booking time (a throttle cut starts a new epoch); ``sent``, the slot's time on
    the limiter's clock; ``rate``, the rate it was booked at; ``token``, which request it is
    (for limiters that count requests in flight)."""

    wait: float
    epoch: int = 0
    sent: float = 0.0
    rate: float = 0.0
    token: int = 0


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


class _Bins:
    """Sends and 429s counted per ``_BIN`` seconds of send time, in this process."""

    def __init__(self) -> None:
        self._counts: dict[int, list[int]] = {}

    def add(self, key: int, kind: int) -> None:
        counts = self._counts.get(key)
        if counts is None:
            counts = self._counts[key] = [0, 0]
            if len(self._counts) > _MAX_BINS:
                for old in [k for k in self._counts if k <= key - _MAX_BINS]:
                    del self._counts[old]
        counts[kind] += 1

    def sums(self, first: int, last: int) -> tuple[int, int]:
        sent = refused = 0
        for key in range(first, last):
            counts = self._counts.get(key)
            if counts is not None:
                sent += counts[0]
                refused += counts[1]
        return sent, refused


# What clients sharing one state (processes on one machine) share: every field of the
# rate, the send schedule and the counts (see :class:`SharedState`). Concurrency caps and
# answer times are learned per process.
_SHARED_FIELDS = (
    "_rate",
    "_next",
    "_epoch",
    "slow_start",
    "cuts",
    "_ceiling",
    "_floor",
    "_busy",
    "_last_book",
    "_cut_busy",
    "_ok_since_cut",
    "_cut_epoch",
    "_cut_sent",
    "_shut_sent",
    "_open_sent",
    "_open_cuts",
    "_settled",
    "_pause",
    "_held_at",
    "_return_requests",
    "_started",
)
_RATE_SLOT = _SHARED_FIELDS.index("_rate")  # where the rate is in the shared values


class AdaptiveRateLimiter(RateLimiter):
    """Finds the account's real limit from 429s alone, whatever shape the throttle has.

    It paces sends evenly at a rate and reads one signal: a 429 for a request sent at the
    current rate (an *epoch*; 429s for requests sent before the last cut, or before anything
    sent since it has passed, are the same burst: one signal, not many). What it does with
    it (``docs/performance.md`` has the reasoning):

    * **Slow start** from the documented 10 QPS: the rate grows while sends queue behind it
      and no 429 has come.
    * **Remember, cut a little, return fast, probe gently.** A 429 for a request sent while
      the account accepted about as much as was sent means the limit is just below that
      rate: it becomes the *ceiling*. (Far above it, what the account accepted while
      refusing is the ceiling.) The rate is cut to ``0.95 x`` ceiling, climbs back to it on
      a concave curve, then probes above it by steps that double while nothing is refused:
      a raised quota is found in seconds, a steady one costs about one 429 per cycle.
    * **Concurrency caps.** Every request carries the number in flight when it was sent.
      When 429s come only above some in-flight count, the limiter caps requests in flight
      at that count (and tries one more now and then).
    * A ``Retry-After``/``x-acs-retry-after`` hint on a 429 holds every send until then.

    The rate only climbs while it is what holds the sender back. Thread-safe; one limiter
    is shared by every call of a client. ``clock`` is for tests and simulations.

    Args:
        initial_qps: The rate to start from (the documented account default).
        min_qps: Never slower than this.
        max_qps: Never faster than this.
        share: Coordinate with every other limiter on this machine (in any process of
            this user) that passes the same value (an account name, say): they pace as
            one client, through a small file (see :class:`SharedState`). Where that
            cannot work the limiter paces alone (logged at DEBUG; :attr:`shared` says
            which). ``None``: this limiter alone. A client makes one from its account by
            default (``share_rate_limit``).
        clock: Seconds, monotonic (with ``share``, the same clock in every process).
    """

    def __init__(
        self,
        initial_qps: float = DEFAULT_QPS,
        *,
        min_qps: float = 0.2,
        max_qps: float = 10_000.0,
        share: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < min_qps <= initial_qps <= max_qps:
            raise ValueError("need 0 < min_qps <= initial_qps <= max_qps")
        self._min = float(min_qps)
        self._max = float(max_qps)
        self._clock = clock
        self._lock = threading.Lock()
        self._rate = float(initial_qps)
        self._next = 0.0  # the next free send slot
        self._epoch = 0
        self.slow_start = True
        self.cuts = 0
        # Read a ceiling from the count of the last second's sends (see _on_throttle).
        # Off where the booked slots are leases handed out ahead, some handed back (a
        # coordinator's): their count is not what the account let through.
        self.read_counts = True
        # The remembered ceiling, the rate the last cut went to, and the progress since.
        self._ceiling = 0.0
        self._floor = 0.0
        self._busy = 0.0  # seconds during which sends queued behind the limiter
        self._last_book = -1.0  # when the last slot was booked (-1: never)
        self._cut_busy = 0.0
        self._ok_since_cut = 0
        self._cut_epoch = 0  # the epoch the last cut started (holds start more, not cuts)
        self._pause = 0.0  # the last hold of every send (0: none since an accepted one)
        self._held_at = -math.inf  # when the last hold ended
        self._cut_sent = 0.0  # when the request refused at the last cut was sent
        self._shut_sent = 0.0  # ... and the last one refused since, none accepted between
        self._open_sent = 0.0  # when the first request accepted after a cut was sent
        self._open_cuts = 0  # cuts counted then
        self._settled = False  # ten requests in a row have been accepted once
        self._return_requests = _RETURN_REQUESTS
        self._started = -1.0  # the first send's time (-1: none yet)
        # Per process: how long answers and 429s take, what is in flight.
        self._refusal_time = _REFUSAL_TIME
        self._latency = 0.0
        self._tokens = itertools.count(1)
        self._in_flight: dict[int, tuple[float, int]] = {}  # token -> (sent at, in flight)
        self._window = _Window(prompt=True)
        self._others = 0  # requests in flight in the other processes sharing the state
        self._initial, self._share = float(initial_qps), share
        self._shared = _open_shared(share) if share is not None else None
        self._bins: _Bins | SharedState = self._shared or _Bins()
        self._slots: list[tuple[object, str]] = [(self, name) for name in _SHARED_FIELDS]
        self._slots += [(self._window, name) for name in _Window.FIELDS]
        self._fresh = [getattr(owner, name) for owner, name in self._slots]  # a new start

    # -- what callers see ---------------------------------------------------------------
    @property
    def rate(self) -> float:
        return self._rate

    @property
    def ceiling(self) -> float | None:
        """The rate at which the account last refused requests (``None``: not yet)."""
        return self._ceiling or None

    @property
    def max_in_flight(self) -> int | None:
        """The concurrency cap learned from 429s (``None``: throttling is not by concurrency)."""
        return self._window.limit if self._window.active else None

    @property
    def shared(self) -> bool:
        """Whether this limiter paces with other processes through a shared state (it
        paces alone where sharing cannot work: see :class:`SharedState`)."""
        return self._shared is not None

    def __reduce__(self) -> tuple[Any, ...]:
        # A shared limiter's state is in its file: a copy (or an unpickled one, in
        # another process) opens the file anew and paces with it. An unshared one's state
        # is this object's alone.
        if self._share is None:
            raise TypeError(
                "an AdaptiveRateLimiter without share= paces this process only and cannot be "
                "copied or pickled; pass share=... to pace several processes as one"
            )
        options = {"min_qps": self._min, "max_qps": self._max, "share": self._share}
        return (_rebuild_limiter, (self._initial, options, self._clock))

    @contextlib.contextmanager
    def _locked(self) -> Iterator[float]:
        """Hold the lock (and the shared file's, with its state loaded); yield the time."""
        with self._lock:
            shared = self._shared
            if shared is not None:
                try:
                    shared.lock()
                except (OSError, ValueError) as exc:
                    logger.debug("rate limit no longer shared, pacing alone: %s", exc)
                    self._shared, self._bins, shared = None, _Bins(), None
            if shared is None:
                yield self._clock()
                return
            try:
                now = self._clock()
                self._others = shared.load(self._slots, now, self._fresh)
                yield now
                shared.save(self._slots, len(self._in_flight), now)
            finally:
                shared.unlock()

    def reserve(self) -> float:
        return self.acquire().wait

    def acquire(self) -> Ticket:
        with self._locked() as now:
            if self._window.full(len(self._in_flight) + self._others):
                # Every allowed request is in flight: look again soon (a small share of an
                # answer time, so a freed slot idles for little of a request's life).
                poll = min(_MAX_POLL, max(_MIN_POLL, _POLL_SHARE * self._latency))
                return Ticket(poll, -1, now + poll, self._rate, 0)
            self._update_rate(now)
            slot = self._next if self._next > now else now
            wait = slot - now
            horizon = max(_HORIZON_SECONDS, _HORIZON_SLOTS / self._rate)
            if wait > horizon and self._shared is None:
                # Far down the queue: come back about when this slot is due, and book then,
                # at the rate of that moment (a slot booked now would keep today's rate).
                # Processes sharing a state book in the order they ask instead: turns alike.
                return Ticket(wait - horizon / 2.0, -1, slot, self._rate, 0)
            if self._last_book >= 0 and wait > 0:
                self._busy += now - self._last_book
            self._last_book = now
            if self.slow_start and wait > 0:
                # Slow start grows per booked slot while sends queue: per answer would lag by
                # the whole queue of slots booked ahead.
                self._rate = min(self._max, self._rate + _SLOW_START_GAIN)
            self._next = slot + self._interval()
            return Ticket(wait, self._epoch, slot, self._rate, next(self._tokens))

    def confirm(self, ticket: Ticket) -> bool:
        with self._locked() as now:
            if ticket.epoch != self._epoch:
                return False  # a cut since the booking (or a wait for a free slot): re-book
            n = len(self._in_flight) + self._others + 1
            if self._window.active and n > self._window.limit:
                return False
            if len(self._in_flight) > _PURGE_AT:
                self._purge(now)
            self._in_flight[ticket.token] = (now, n)
            self._count(ticket, now, 0)
            return True

    def observe(self, error: BaseException | None, ticket: Ticket | None = None) -> None:
        with self._locked() as now:
            sent = self._in_flight.pop(ticket.token, None) if ticket is not None else None
            n = 0
            if sent is not None:
                took, n = now - sent[0], sent[1]
                if error is None:
                    self._latency = took if not self._latency else 0.9 * self._latency + 0.1 * took
                elif isinstance(error, RateLimitError):
                    self._refusal_time = 0.9 * self._refusal_time + 0.1 * took
            if error is None:
                if ticket is None or ticket.epoch >= self._cut_epoch:
                    if not self._ok_since_cut and ticket is not None and not self.slow_start:
                        self._reopened(ticket.sent)
                    self._ok_since_cut += 1
                    if self._ok_since_cut >= _FAST_RETURN_REQUESTS:
                        self._settled = True
                    self._pause = 0.0
                self._window.ok(n)
            elif _refused(error):
                self._count(ticket, now, 1)
                self._on_throttle(now, n, ticket, getattr(error, "retry_after", None))

    # -- the algorithm (lock held) --------------------------------------------------------
    def _count(self, ticket: Ticket | None, now: float, kind: int) -> None:
        sent = ticket.sent if ticket is not None and ticket.sent else now
        if self._started < 0:
            self._started = sent
        self._bins.add(int(sent / _BIN), kind)

    def _reopened(self, sent: float) -> None:
        """The first request sent since the cut has been accepted (it was sent at ``sent``).

        The throttle refused everything sent for ``closed`` seconds before it: a window
        at least that long was full. What the account accepted over that time plus as
        long again before it (at least a second) is what it lets through in a cycle of
        filling and waiting, whatever the window's length: the ceiling is no higher. So is
        what it accepted since it last opened, when it was shut for half that time.
        """
        last_open, self._open_sent = self._open_sent, sent
        one_cycle, self._open_cuts = self.cuts - self._open_cuts == 1, self.cuts
        # (Known shut from the cut's refused send to the last refused send: the pause
        # after that one is the sender's idling, not the throttle's.)
        closed = self._shut_sent - self._cut_sent
        shortest = max(_CLOSED_SECONDS, _CLOSED_INTERVALS / self._rate)
        if self._cut_sent <= 0 or closed <= shortest:
            return  # refused for a send interval or two: a bucket's token gap, no window
        cycle = sent - last_open
        if (
            one_cycle
            and last_open > 0
            and cycle >= max(_GOODPUT_SECONDS, _GOODPUT_REQUESTS / self._rate)
            and closed >= _SHUT_SHARE * cycle
        ):
            # Shut for half the time or more since it last opened, one cut between: a
            # long window lets the sender through in bursts, and what passed over the
            # whole cycle of filling and waiting is its rate.
            self._lower_ceiling(last_open, sent)
        before = max(_GOODPUT_SECONDS, _GOODPUT_REQUESTS / self._rate, closed)
        start = self._cut_sent - before
        if start < max(self._started, last_open):
            return  # not a cycle of steady sending: too little history, or another hold
        self._lower_ceiling(start, self._shut_sent + _BIN)

    def _lower_ceiling(self, start: float, end: float) -> None:
        """Lower the ceiling to what the account accepted of the sends in [start, end)."""
        first, last = int(start / _BIN), int(end / _BIN)
        if last <= first:
            return
        total, refused = self._bins.sums(first, last)
        accepted = max(0, total - refused) / ((last - first) * _BIN)
        if 0 < accepted < self._ceiling:
            self._ceiling = max(self._min, accepted)
            self._floor = max(self._min, _BETA * self._ceiling)

    def _update_rate(self, now: float) -> None:
        if self.slow_start:
            return
        spent = self._busy - self._cut_busy
        done = self._ok_since_cut
        x = min(spent / _RETURN_SECONDS, done / self._return_requests)
        ceiling = self._ceiling
        if x < 1.0:
            rate = ceiling - (ceiling - self._floor) * (1.0 - x) ** 3
        else:
            y = min(
                (spent - _RETURN_SECONDS) / _PROBE_SECONDS,
                (done - self._return_requests) / _PROBE_REQUESTS,
            )
            rate = ceiling * (1.0 + _PROBE_STEP * (2.0 ** min(y, 30.0) - 1.0))
            good = self._goodput(now)
            if good > 0 and not self._window.active:
                # Never send more than twice what the account has been accepting: a 429
                # takes a moment to come, and an overshoot of more costs a burst of them.
                # (Under a concurrency cap the cap holds the sends; pacing must not.)
                rate = min(rate, max(ceiling, _MAX_LEAD * good))
        if self._window.active and self._latency > 0:
            # Under a concurrency cap the cap holds the sends back, not the rate: a ceiling
            # a cut read while the cap was being learned was the cap's doing. The rate stays
            # twice what the cap lets through (so were the cap to go, a 429 would read the
            # limit from what was accepted, as for any overshoot).
            rate = max(rate, _MAX_LEAD * self._window.limit / self._latency)
        self._rate = min(self._max, max(self._min, rate))

    def _interval(self) -> float:
        """Seconds between booked slots: one over the rate, but under a learned concurrency
        cap answers come back bunched, and slots freed together are filled within a poll's
        time each (2 % of an answer), not a pacing interval apart."""
        if self._window.active and self._latency > 0:
            return min(1.0 / self._rate, _POLL_SHARE * self._latency / self._window.limit)
        return 1.0 / self._rate

    def _goodput(self, now: float) -> float:
        """Requests/s the account accepted of those sent lately: see :meth:`_measure`."""
        return self._measure(now)[0]

    def _measure(self, now: float) -> tuple[float, int]:
        """(accepted per second, refused) among the sends of the last second (or of the
        last ten sends' time at low rates), by send time. A 429 comes back at once, an
        answer after the service's work: so a send is counted as accepted once it has had
        1.5 times the usual 429 time without one. 0 before any send."""
        if self._started < 0:
            return 0.0, 0
        span = max(_GOODPUT_SECONDS, _GOODPUT_REQUESTS / self._rate)
        end = now - _LAG_REFUSALS * self._refusal_time
        start = max(end - span, self._started)
        if end - start < _BIN:
            return 0.0, 0
        first, last = int(start / _BIN), int(end / _BIN)
        sent, refused = self._bins.sums(first, last)
        floor = _GOODPUT_SECONDS if end - self._started > span else 0.0
        return max(0, sent - refused) / max(floor, (last - first) * _BIN), refused

    def _on_throttle(
        self, now: float, n: int, ticket: Ticket | None, retry_after: float | None
    ) -> None:
        if isinstance(retry_after, (int, float)) and 0 < retry_after <= _MAX_HOLD:
            self._next = max(self._next, now + float(retry_after))
        if n and self._window.throttled(n):
            return  # explained by the number in flight: not a rate signal
        if ticket is not None and ticket.epoch != self._epoch:
            return  # sent before the last cut: that burst was already counted
        if not self._ok_since_cut and not self.slow_start:
            # Nothing sent since the cut has passed yet: the throttle that refused the
            # last burst (a window still full, however long; a bucket still empty or in
            # debt) is still refusing. Cutting again would count the same burst twice;
            # sending on would feed it. Hold every send for a pause that grows with each
            # such refusal, starting at one send interval (a bucket refills a token in
            # it), so the next send tests whether it has recovered.
            if not self._settled:
                # (Not before the account has once accepted ten in a row: until then the
                # refusals are the start-up ramp's, and holding would stall finding the
                # first rate; at 1 QPS, for minutes.)
                return
            if ticket is not None and ticket.sent:
                self._shut_sent = max(self._shut_sent, ticket.sent)
            self._pause = min(_MAX_PAUSE, max(1.0 / self._rate, self._pause * _PAUSE_GROWTH))
            self._next = max(self._next, now + self._pause)
            self._held_at = self._next
            self._epoch += 1  # slots booked before the pause book again after it
            return
        sent_at = ticket.rate if ticket is not None and ticket.rate > 0 else self._rate
        good, refused = self._measure(now)
        self._return_requests = _RETURN_REQUESTS
        previous = self._ceiling
        if not self.slow_start and good >= _TRUST_RATE * sent_at:
            # Refused just above what it accepts: the limit is about here. When the last
            # second held ten sends or more, what it let through is the limit itself (a
            # window's count, a bucket's refill and burst); at lower rates the measure
            # spans several seconds of the cycle, below the limit, and the sent rate is read.
            ceiling = sent_at
            if self.read_counts and _GOODPUT_REQUESTS / self._rate <= _GOODPUT_SECONDS:
                ceiling = min(sent_at, good)
        elif previous and previous < sent_at and good <= _PROBE_GAIN * previous:
            # A probe went well past the ceiling before the 429 came (a window refuses only
            # once it is full): the limit is between the two. A fixed window straddled by
            # the last second can let through more than its limit in it, so meet halfway.
            ceiling = (previous + min(good, sent_at)) / 2.0
        else:
            self._return_requests = _FAST_RETURN_REQUESTS
            # Far above the limit (the ramp overshot, or the quota was cut): while a sender
            # is refused, what the account accepts is its limit, whatever the throttle's
            # shape. If none of the measured sends was refused, it is only a floor. If the
            # sender held its sends in the measured span, that span is no measure (a window
            # of seconds lets the sender through in bursts, and one second of it can hold
            # almost nothing): a read below a quarter of the refused rate is checked against
            # what was accepted over several seconds.
            span = max(_GOODPUT_SECONDS, _GOODPUT_REQUESTS / self._rate)
            end = now - _LAG_REFUSALS * self._refusal_time
            if refused and 0 < good < _HELD_CUT * sent_at and self._held_at > end - span:
                first, last = int(max(end - _HELD_SPAN, self._started) / _BIN), int(end / _BIN)
                total, no = self._bins.sums(first, last)
                good = max(good, max(0, total - no) / max(span, (last - first) * _BIN))
            if refused and good > 0:
                ceiling = min(good, _TRUST_RATE * sent_at)
            else:
                ceiling = max(good, _MAX_CUT * sent_at)
        self.slow_start = False
        self._ceiling = min(self._max, max(self._min, ceiling))
        self._floor = max(self._min, _BETA * self._ceiling)
        self._rate = self._floor
        self._epoch += 1
        self._cut_epoch = self._epoch
        self._cut_sent = self._shut_sent = (
            ticket.sent if ticket is not None and ticket.sent else now
        )
        self.cuts += 1
        self._cut_busy = self._busy
        self._ok_since_cut = 0
        self._next = max(self._next if retry_after else 0.0, now + 1.0 / self._rate)

    def _purge(self, now: float) -> None:
        """Forget requests whose answer never came back to ``observe`` (a cancelled task)."""
        stale = now - max(_STALE_SECONDS, 20.0 * self._latency)
        for token in [t for t, (at, _) in self._in_flight.items() if at < stale]:
            del self._in_flight[token]


def _rebuild_limiter(
    initial_qps: float, options: dict[str, Any], clock: Callable[[], float]
) -> AdaptiveRateLimiter:
    return AdaptiveRateLimiter(initial_qps, clock=clock, **options)


def _refused(error: BaseException) -> bool:
    """A refusal to slow down for: a 429 ``Throttling`` (not a used-up quota), or a 503
    (the service says it is overloaded: an answer, but not an accepted request)."""
    if isinstance(error, RateLimitError):
        return not isinstance(error, QuotaExceededError)
    return isinstance(error, APIStatusError) and error.status_code == 503


logger = logging.getLogger("opensearch_mm")


class _Unshareable(OSError):
    """Why a limiter cannot share its state here (it then paces this process alone)."""


def _private_folder(directory: str | os.PathLike[str] | None, uid: int) -> Path:
    """The folder for state files: this user's, writable by no one else (created 0700)."""
    if directory is not None:
        folder = Path(directory)
    else:
        folder = Path(tempfile.gettempdir()) / f"opensearch-mm-{uid}"
    with contextlib.suppress(FileExistsError):
        os.mkdir(folder, 0o700)
    status = os.lstat(folder)
    if not stat.S_ISDIR(status.st_mode) or status.st_uid != uid:
        raise _Unshareable(f"{folder} is not a directory of this user")
    if status.st_mode & 0o022:
        raise _Unshareable(f"{folder} is writable by other users")
    return folder


class SharedState:
    """A limiter's state in a small file that processes on one machine map and lock.

    The file holds the rate, the next send slot, the last minutes of send/429 counts and
    each process's requests in flight. Each limiter call locks it (``fcntl.flock``), reads
    the state, updates it and writes it back: the processes pace as one client, so the
    account sees one evenly paced stream and each process gets slots in turn.

    Where it lives: ``<temp dir>/opensearch-mm-<uid>/`` (mode 0700, this user's only),
    named from a hash of ``key``, the user id and the file layout (``key`` itself appears
    nowhere). The file is checked before use (this user's, of this layout) and written
    in full when created (no sparse pages to fault on a full disk). State nobody touched
    for :attr:`IDLE_SECONDS` (and :attr:`IDLE_INTERVALS` send intervals) is not trusted:
    the first limiter to come back starts afresh.
    A process that forks gets its own handle on its first call. POSIX only (``fcntl``).

    Args:
        key: Who shares: every limiter passing the same key uses one state.
        directory: Where the file goes instead of the temp directory's folder (tests).

    Raises:
        ImportError: No ``fcntl`` (Windows).
        OSError: The folder or file cannot be used (another user's, another layout, not
            writable).
    """

    FORMAT = 2  # the layout's version: part of the file name, so two layouts never meet
    # Untouched for 3 s and 5 send intervals at its rate: the run that wrote it has ended (a
    # working process writes it with each request), and the next may meet another quota (a
    # test account reconfigured, a quota raised): slow start finds it again in seconds.
    IDLE_SECONDS = 3.0
    IDLE_INTERVALS = 5.0
    CLEANUP_SECONDS = 86_400.0  # files untouched for a day go when a new file is made
    TOUCH_SECONDS = 60.0  # a file in use has its mtime refreshed this often (cleanup reads it)
    LOCK_PATIENCE = 5.0  # a lock held this long: a process stopped mid-call; pace alone
    _MAGIC = 0x4F534D4D52415432  # "OSMMRAT2"

    def __init__(self, key: str, directory: str | os.PathLike[str] | None = None) -> None:
        import fcntl  # noqa: F401  (POSIX only: fail here, where the caller falls back)

        self._uid = os.getuid()
        # magic, layout size, writes so far, last write (limiter clock, wall clock), state
        self._top = struct.Struct("<QQQdd")
        self._head = struct.Struct(f"<QQQdd{len(_SHARED_FIELDS) + len(_Window.FIELDS)}d")
        self._saved = -1  # the write count after this limiter's last write (-1: reload)
        self._bin = struct.Struct("<qii")
        self._proc = struct.Struct("<qqd")  # limiter id, requests in flight, when written
        self._procs = struct.Struct("<" + "qqd" * _MAX_PROCESSES)
        self._table = self._head.size + _MAX_BINS * self._bin.size
        self._kinds_of: object = None
        self._kinds: list[type] = []
        self.size = self._table + _MAX_PROCESSES * self._proc.size
        name = "\0".join([key, str(self._uid), str(self.FORMAT), str(self.size)])
        digest = hashlib.blake2b(name.encode(), digest_size=16, person=b"osmm-rate-file")
        self.folder = _private_folder(directory, self._uid)
        self.path = self.folder / f"rate-{digest.hexdigest()}"
        self._open()

    # -- the file ---------------------------------------------------------------------
    def _open(self) -> None:
        import fcntl

        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        for _ in range(5):
            fd = os.open(self.path, flags, 0o600)
            try:
                self._take_lock(fd)
                status = os.fstat(fd)
                if not _same_file(self.path, status):
                    os.close(fd)  # removed by a cleanup after the open: open the new one
                    continue
                created = self._prepare(fd, status)
                self._map = mmap.mmap(fd, self.size)
                magic, size = struct.unpack_from("<QQ", self._map, 0)
                if created or (magic, size) == (0, 0):
                    struct.pack_into("<QQQd", self._map, 0, self._MAGIC, self.size, 0, math.nan)
                elif (magic, size) != (self._MAGIC, self.size):
                    self._map.close()
                    raise _Unshareable(f"{self.path} is not a state file of this version")
                fcntl.flock(fd, fcntl.LOCK_UN)
            except BaseException:
                os.close(fd)
                raise
            break
        else:
            raise _Unshareable(f"{self.path} keeps being replaced")
        self._fd = fd
        self._owner = os.getpid()
        self._pid = int.from_bytes(os.urandom(7), "big") | 1  # this limiter, among all sharing
        self._mine: int | None = None  # where its entry is in the table of processes
        self._touched = time.time()
        self._closer = weakref.finalize(self, _close, self._map, fd)
        if created:
            self._cleanup()

    def _prepare(self, fd: int, status: os.stat_result) -> bool:
        """Check the opened file (lock held); write a new, empty one in full. Returns
        whether it was new."""
        if not stat.S_ISREG(status.st_mode) or status.st_uid != self._uid:
            raise _Unshareable(f"{self.path} is not a file of this user")
        if status.st_size == self.size:
            return False
        if status.st_size:
            raise _Unshareable(f"{self.path} has {status.st_size} bytes, not {self.size}")
        try:
            zeros = memoryview(bytes(self.size))
            while zeros:
                zeros = zeros[os.write(fd, zeros) :]
        except OSError:
            os.ftruncate(fd, 0)  # a full disk: leave it empty for a later try
            raise
        return True

    def _cleanup(self) -> None:
        """Remove this user's state files that nobody touched for a day (a test suite
        makes one per emulator port)."""
        import fcntl

        old = time.time() - self.CLEANUP_SECONDS
        with contextlib.suppress(OSError), os.scandir(self.folder) as entries:
            for entry in entries:
                if not entry.name.startswith("rate-") or entry.name == self.path.name:
                    continue
                with contextlib.suppress(OSError):
                    status = entry.stat(follow_symlinks=False)
                    if status.st_mtime > old or status.st_uid != self._uid:
                        continue
                    fd = os.open(entry.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # in use: keep it
                        again = os.fstat(fd)
                        if again.st_mtime <= old and _same_file(Path(entry.path), again):
                            os.unlink(entry.path)
                    finally:
                        os.close(fd)

    def close(self) -> None:
        """Unmap and close the file (the state stays for the others)."""
        self._closer()

    # -- one limiter call ---------------------------------------------------------------
    def lock(self) -> None:
        """Take the file's lock (in a forked child, on a handle of its own first).

        Raises:
            OSError: The lock cannot be taken (the caller stops sharing).
        """

        if not self._closer.alive:
            raise _Unshareable("the shared state was closed")
        if os.getpid() != self._owner:
            self._closer()  # the parent's handle: its lock would be the parent's too
            self._open()
        self._take_lock(self._fd)

    def _take_lock(self, fd: int) -> None:
        """``flock`` ``fd``. Another limiter holds it for microseconds, normally: poll for
        it, but give up after :attr:`LOCK_PATIENCE` (a process stopped while holding it)."""
        import fcntl

        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        deadline = time.monotonic() + self.LOCK_PATIENCE
        pause = 0.0001
        while True:
            time.sleep(pause)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise _Unshareable(
                        f"the state file stayed locked for {self.LOCK_PATIENCE:g} s"
                    ) from None
                pause = min(2 * pause, 0.01)

    def unlock(self) -> None:
        import fcntl

        fcntl.flock(self._fd, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the file's lock."""
        self.lock()
        try:
            yield
        finally:
            self.unlock()

    def load(
        self,
        slots: Sequence[tuple[object, str]],
        now: float,
        fresh: Sequence[float] | None = None,
    ) -> int:
        """Set each ``(object, attribute)`` from the file; return the requests in flight
        in the other processes. State nobody wrote for :attr:`IDLE_SECONDS` (or from
        before a reboot) is not trusted: the slots are set to ``fresh`` (when given) and
        the counts cleared."""
        _, _, writes, touched, wall, *values = self._head.unpack_from(self._map, 0)
        saved, self._saved = self._saved, -1
        rate = values[_RATE_SLOT]
        idle = max(self.IDLE_SECONDS, self.IDLE_INTERVALS / rate if rate > 0 else 0.0)
        if not (
            now - idle <= touched <= now + 1.0
            and abs(time.time() - wall) <= idle
            and values[1] <= now + _STALE_SECONDS  # the next send slot
        ):
            if fresh is not None:
                for (owner, name), value in zip(slots, fresh, strict=True):
                    setattr(owner, name, value)
            self._map[self._head.size : self.size] = bytes(self.size - self._head.size)
            return 0
        if writes != saved:  # another limiter wrote since this one did: read its state
            if slots is not self._kinds_of:  # (the types of the attributes, read once)
                self._kinds_of, self._kinds = slots, [type(getattr(o, n)) for o, n in slots]
            for (owner, name), kind, value in zip(slots, self._kinds, values, strict=True):
                setattr(owner, name, value if kind is float else kind(value))
        table = self._procs.unpack_from(self._map, self._table)
        others, stale = 0, now - _STALE_SECONDS
        for pid, count, stamp in zip(table[0::3], table[1::3], table[2::3], strict=True):
            if pid and pid != self._pid and count > 0 and stamp > stale:
                others += count  # (a process gone for minutes no longer counts)
        return others

    def save(self, slots: Sequence[tuple[object, str]], in_flight: int, now: float) -> None:
        """Write each ``(object, attribute)`` and this process's requests in flight."""
        values = [getattr(owner, name) for owner, name in slots]
        wall = time.time()
        writes = (self._top.unpack_from(self._map, 0)[2] + 1) & 0xFFFFFFFFFFFFFFFF
        self._head.pack_into(self._map, 0, self._MAGIC, self.size, writes, now, wall, *values)
        self._saved = writes
        if wall - self._touched > self.TOUCH_SECONDS:
            self._touched = wall
            with contextlib.suppress(OSError, NotImplementedError):
                os.utime(self._fd if os.utime in os.supports_fd else self.path)
        mine = self._mine
        if mine is not None and self._proc.unpack_from(self._map, mine)[0] == self._pid:
            self._proc.pack_into(self._map, mine, self._pid, in_flight, now)
            return
        self._mine = None
        free = None
        for i in range(_MAX_PROCESSES):
            offset = self._table + i * self._proc.size
            pid, count, stamp = self._proc.unpack_from(self._map, offset)
            if pid == self._pid:
                free = offset
                break
            if free is None and (not pid or count <= 0 or stamp <= now - _STALE_SECONDS):
                free = offset
        if free is not None and in_flight:
            self._proc.pack_into(self._map, free, self._pid, in_flight, now)
            self._mine = free

    def add(self, key: int, kind: int) -> None:
        offset = self._head.size + (key % _MAX_BINS) * self._bin.size
        stamp, sent, refused = self._bin.unpack_from(self._map, offset)
        if stamp != key:
            stamp, sent, refused = key, 0, 0
        if kind:
            refused += 1
        else:
            sent += 1
        self._bin.pack_into(self._map, offset, stamp, sent, refused)

    def sums(self, first: int, last: int) -> tuple[int, int]:
        sent = refused = 0
        for key in range(first, last):
            offset = self._head.size + (key % _MAX_BINS) * self._bin.size
            stamp, s, r = self._bin.unpack_from(self._map, offset)
            if stamp == key:
                sent += s
                refused += r
        return sent, refused


def _same_file(path: Path, status: os.stat_result) -> bool:
    """Whether ``path`` still names the file ``status`` describes."""
    try:
        current = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return (current.st_ino, current.st_dev) == (status.st_ino, status.st_dev)


def _close(mapped: mmap.mmap, fd: int) -> None:
    with contextlib.suppress(OSError, ValueError):
        mapped.close()
    with contextlib.suppress(OSError):
        os.close(fd)


def _open_shared(share: str) -> SharedState | None:
    """The shared state for ``share``, or ``None`` (logged at DEBUG) where sharing cannot
    work: no ``fcntl`` (Windows), a temp directory that is not writable, a file of another
    user or layout. The limiter then paces this process alone."""
    try:
        return SharedState(share)
    except (ImportError, OSError, ValueError) as exc:
        logger.debug("rate limit not shared with other processes, pacing alone: %s", exc)
        return None


class _Window:
    """Learns a concurrency cap: 429s that come only above some number in flight.

    ``limit`` is one less than the fewest in flight seen with a 429. It becomes ``active``
    once requests sent above it were refused far more often than answered, while many at
    or below it were answered (a rate throttle refuses requests whatever the number in
    flight, so answers above the limit keep it off). While active, after enough answers
    without a 429 it allows one more, then two, four... more (a raised cap is found
    quickly: after a step that held, the next comes once the slots it added have carried
    five answers each); a 429 at ``n`` in flight within the limit puts it at ``n - 1``
    (the probe failed, or the cap moved down); one with nothing else in flight means it
    was never a concurrency cap.
    """

    FIELDS = (
        "limit",
        "active",
        "_over_ok",
        "_over_bad",
        "_under_ok",
        "_since",
        "_step",
        "_held",
    )

    def __init__(self, *, prompt: bool = False) -> None:
        # prompt: answers are heard as they come (this process's own). Where they are
        # reported late and in batches (a coordinator's), counts blur and a step would
        # look held too early: more evidence, and no quick steps up.
        self.prompt = prompt
        self._evidence = _WINDOW_EVIDENCE if prompt else _LATE_EVIDENCE
        self.limit = 0
        self.active = False
        self._over_ok = 0
        self._over_bad = 0
        self._under_ok = 0
        self._since = 0  # answers since the last change of the limit
        self._step = 1
        self._held = 0  # the last limit that held (before the latest probe)

    def full(self, in_flight: int) -> bool:
        return self.active and in_flight >= self.limit

    def _candidate(self, limit: int) -> None:
        self.limit, self.active = limit, False
        self._over_ok, self._over_bad, self._under_ok = 0, 1, 0

    def ok(self, n: int) -> None:
        if not self.limit or not n:
            return
        if not self.active:
            if n > self.limit:
                self._over_ok += 1
            else:
                self._under_ok += 1
            return
        self._since += 1
        # After a probe that held, the next needs only the answers that show the slots it
        # added carry requests (a failed probe costs the 429s, not one that held): a
        # raised cap is found in a few answer times, not 50 answers per step.
        wait = _WINDOW_PROBE_ANSWERS
        if self.prompt and self._step > 1:
            wait = _WINDOW_ANSWERS * (self._step // 2)
        if self._since >= wait:
            self._held = self.limit
            self.limit += self._step
            self._step *= 2
            self._since = 0

    def throttled(self, n: int) -> bool:
        """Record a 429 sent with ``n`` in flight; ``True`` if a concurrency cap explains it."""
        if self.active:
            if n > self.limit:
                return True  # a send that raced a freed slot
            if n > self._held:
                # A slot just probed was refused: the cap is below n. (Until the new limit
                # holds, 429s from the same probe, at any count above the last limit that
                # held, lower it further: they come back in any order.)
                self.limit, self._step, self._since = min(self.limit, n - 1), 1, 0
                return True
            # Refused at a count that was answered before: the cap moved down, or it was
            # never a concurrency cap (with a steady answer time, a rate cap also refuses
            # at high counts). Learn again.
            self._candidate(n - 1)
            return False
        if not self.limit or n - 1 < self.limit:
            self._candidate(n - 1)
            return False
        if n > self.limit:
            self._over_bad += 1
        if (
            self.limit >= 2  # one in flight at a time: no different from a rate cap
            and self._over_bad >= self._evidence
            and self._over_ok <= _WINDOW_ODDS * self._over_bad
            and self._under_ok >= _WINDOW_ANSWERS * self.limit
        ):
            self.active, self._step, self._since, self._held = True, 1, 0, self.limit
            return True
        return False


def describe_qps(limiter: RateLimiter) -> float | Literal["adaptive"] | None:
    """The ``qps`` value that describes ``limiter`` (``None`` for a custom one)."""
    if isinstance(limiter, AdaptiveRateLimiter):
        return "adaptive"
    if isinstance(limiter, FixedRateLimiter):
        return limiter.rate
    return None


def describe_share(limiter: RateLimiter) -> bool:
    """Whether ``limiter`` was made to pace with other processes (``share=``)."""
    return isinstance(limiter, AdaptiveRateLimiter) and limiter._share is not None


def make_rate_limiter(qps: float | str | None, *, share: str | None = None) -> RateLimiter:
    """``"adaptive"`` -> :class:`AdaptiveRateLimiter` (shared with every limiter passing
    the same ``share``, if given), a number -> fixed, ``None`` -> off."""
    if qps is None:
        return UnlimitedRateLimiter()
    if isinstance(qps, str):
        if qps != "adaptive":
            raise ValueError(f"qps must be 'adaptive', a number or None, got {qps!r}")
        return AdaptiveRateLimiter(share=share)
    return FixedRateLimiter(float(qps))
