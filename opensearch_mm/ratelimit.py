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
import heapq
import itertools
import logging
import math
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, Literal, NamedTuple

from ._in_flight import InFlightCap
from ._ramp_echo import RampEcho
from ._shared_state import (
    _BIN,
    _MAX_BINS,
    _SHARED_FIELDS,
    _STALE_SECONDS,
    SharedState,
    _open_shared,
)
from ._shut_watch import ShutWatch
from ._slot_line import SlotLine
from .errors import APIStatusError, QuotaExceededError, RateLimitError, is_throttling

__all__ = [
    "DEFAULT_QPS",
    "AdaptiveRateLimiter",
    "FixedRateLimiter",
    "InFlightBound",
    "RateLimiter",
    "SharedState",
    "Ticket",
    "UnlimitedRateLimiter",
    "describe_qps",
    "describe_share",
    "make_rate_limiter",
]

DEFAULT_QPS = 10.0  # the documented default per account

logger = logging.getLogger("opensearch_mm")

# Why each constant of AdaptiveRateLimiter has its value (docs/performance.md: the design).
_SLOW_START_GAIN = 2.0  # QPS added per slot booked in a queue: the rate e-folds every 0.5 s
_BETA = 0.95  # cut to 0.95 of the ceiling: below a limit refused <=5 % above it, avg 0.99 back
_MAX_CUT = 0.5  # with no answer yet to measure, a 429 halves the rate
_SETTLED_BETA = 0.985  # refused again at a ceiling that held a whole return: the limit is
# there, and a cut of 1.5 % drains what the probe's 1-2 % steps put above it (a fixed
# pacer at 0.98-0.99 of a sliding window's count is refused little or never)
_SETTLED_TOLERANCE = 0.01  # ... read within 1 % of it (a probe's first step)
_TRUST_RATE = 0.9  # accepted >= 0.9 x the refused rate: refused just above the limit
_RETURN_SECONDS = 2.0  # climbing back takes >= 2 s of queued sends ...
_RETURN_REQUESTS = 50  # ... and >= 50 answers: one 429 per cycle stays under 2 % at any cap
_PROBE_SECONDS = 0.5  # probing above the ceiling doubles its step every 0.5 s ...
_PROBE_REQUESTS = 5  # ... and 5 answers: a tripled quota is found within about 4 s, so
# one raised just after a cut (a 5-s return at 10/s first) is found within 10 s ...
_LATE_PROBE_SECONDS = 0.6  # ... (0.6 s and 6 answers where answers are heard late, in
_LATE_PROBE_REQUESTS = 6  # batches, as a coordinator's: its probes' 429s come back later,
# and at 0.5 s its probes overshot: 6.8 % refused by a bucket with a cap in flight) ...
_SHUT_PROBE = 0.5  # ... and no faster than every half of the longest shut remembered: a
# window of W seconds refuses an overshoot only once full, up to W later
_PROBE_STEP = 0.01  # first probe 1 % above the ceiling: a limit that moved a little
_UNSURE_STEP = 0.03  # ... but 3 % above a read too small to tell a rate (_UNSURE_READ): a
# guess from a send or two, not a limit (3x it is reached in 6 doublings, not 7.7; at 10 %,
# a fixed 1/s window read its first probe's 429 high, and held 0.01 less for minutes)
_WINDOW_SHUTS = 2.0  # a window is read over twice the longest shut: a whole one, when a
# burst filled it (shut for half of it or more)
_RECENT_SECONDS = 10.0  # a reopening lowers the ceiling no further than what the last 10 s
# let through: a cycle shorter than the window, its count still the ramp's burst, read 20
# per 2 s as 1.5/s; a sender refused throughout gets the rate over whole cycles of windows
# of seconds, and a window of a minute, shut for the last 10 s, leaves that span near empty
_RECENT_MIN = 2.0  # ... read over 2 s at least (from the first send, if sooner)
_SHUT_HALF_LIFE = 300.0  # the longest shut is remembered with a half-life of 5 minutes: a
# one-off long refusal (an outage) fades, a long window renews it whenever it fills
_MAX_LEAD = 2.0  # probing sends at most twice the accepted rate (doubling per second at most)
_PROBE_GAIN = 1.25  # accepting <= 1.25x the old ceiling after a probe: not a raised quota
_GOODPUT_SECONDS = 1.0  # accepted rate: answers in the last second (windows are 1 s) ...
_GOODPUT_REQUESTS = 10.0  # ... or the last 10 answers' time, so a low cap is not read from 1 or 2
_LAG_REFUSALS = 1.5  # a send without a 429 for 1.5x the usual 429 time was accepted
_REFUSAL_TIME = 0.05  # a 429's round trip until one is seen: 50 ms (a gateway's answer)
_HORIZON_SECONDS = 0.25  # slots are booked at most 0.25 s ahead ...
_HORIZON_SLOTS = 4  # ... or 4 slots: a later sender waits unbooked, so a rate rise reaches it
_UNSURE_HORIZON = 1.0  # ... but no more than 1 s ahead while climbing by time from a read
# too small to tell a rate: four slots at 1/s would hold that rate for 4 s of a climb
# whose steps double every half second
_SHARED_AHEAD = 0.025  # processes sharing a state each hold booked slots for at most 25 ms
# of the rate (one at least, so one each up to 40/s): the others book between its turns,
# and turns alternate within a second (a queue of all their workers' slots went in blocks
# of one process's workers: at 10/s three processes got 25-34 each in nine seconds; two
# slots each at 26.7/s left eight processes 1.16-1.27x apart, one each 1.05-1.10x)
_FAST_RETURN_REQUESTS = 10  # a ceiling measured while refused is no guess: return in 10
_MAX_HOLD = 60.0  # a retry hint longer than this is not held for all sends
_HINT_UNIT = 1.0  # a hint of unknown header in whole seconds is read as Retry-After's (at
# worst a second less is held, which the pauses after refusals make up)
_PAUSE_GROWTH = 2.0  # each refusal of a send since a cut, none accepted, doubles the pause ...
_MAX_PAUSE = 1.0  # ... up to 1 s (a 1-s window is open again after it; a bucket in debt,
# refilling by one second's worth per second, after a few)
_RAMP_SECONDS = 2.5  # the ramp's count over a second reaches 500 about 2.4 s in: a 1-s
# window of up to 500 (the sweep's largest cap) refuses it by then (a later first 429 is a
# longer window's; at 1.5 s, 100/s and more were read as half the refused rate, 1.2-1.3x the
# limit, and the next cuts in the ramp's echo brought it to 0.93x)
_UNSURE_READ = 2.0  # a ramp's first second read as <= 2 let through: a 1-s window that
# small, or a throttle spacing sends (a bucket of one, nginx's limit_req without burst) at up
# to ten times that (the second send was refused 0.1 s in): the climb back and the probes
# after it go by time alone until the next cut (at 1/s, by answers, a minute; a window of 3
# and more fills later than 0.1 s in, and is read as before)
_RAMP_ANSWERS = 5.0  # a ramp refused within 5 answer times of its first send, others in
# flight, may be refused for the number in flight (a window refuses once its count is
# reached: at 10/s and more, a third of a second in, 8 answer times of a 40-ms request)
_STARVED_SECONDS = 1.5  # refused throughout 1.5 s since a cut at start-up: far above (a
# 1-s window reopens and a bucket of >= 1/s refills within a second), so cut again
_CLOSED_INTERVALS = 2.0  # refused for longer than 2 send intervals ...
_CLOSED_SECONDS = 0.1  # ... and 0.1 s (beyond answer-time jitter): a window was full
_SHUT_SHARE = 0.5  # shut half the time since it last opened: let through in bursts
_HELD_SPAN = 5.0  # a read spanning a hold is checked against 5 s (cycles of windows of
# seconds; a collapse under charged refusals is checked against the same 5 s)
_COLLAPSE_SHARE = 0.7  # refused on after a far-above cut, a second letting through under 0.7
# of the last 5 s' rate is a collapse (charged refusals read half or less; a share moving
# among clients, a few per cent a cut)
_CAP_PACED = 0.8  # accepting under 0.8 of what a learned cap's slots carry: something else
# holds the sends back (above it, answer-time jitter and pacing gaps explain the difference)
_POLL_SHARE = 0.02  # at a full concurrency cap, look for a free slot every 2 % of an answer
_MIN_POLL = 0.001  # ... but not more often than each millisecond ...
_MAX_POLL = 0.05  # ... nor less often than 20 times a second
_KEPT_SECONDS = 0.9 * _MAX_BINS * _BIN  # reads reach back no further than the bins kept
_PURGE_AT = 1000  # in-flight entries before the ones never answered are looked for
_BOUND_ANSWERS = 20  # answers before their average time is trusted (the 0.9-weighted
# average has then mostly forgotten the first, a cold connection's)
_BOUND_SHARE = 0.8  # in flight carry < 0.8 of the allowed rate: worth telling (above it,
# latency jitter and pacing gaps can explain the difference)
_BOUND_MARGIN = 1.25  # in flight to suggest: rate x answer time, plus a quarter for
# answers slower than the average


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


class InFlightBound(NamedTuple):
    """Requests in flight, not the rate limiter, bound a client's rate: ``reachable``
    requests/s is what ``max_in_flight`` requests carry at ``answer_time`` seconds each,
    below the ``allowed`` rate; ``needed`` in flight would carry it."""

    max_in_flight: int
    reachable: float
    allowed: float
    answer_time: float
    needed: int


class RateLimiter(ABC):
    """Interface: ``acquire()``/``reserve()`` book a slot; feedback through ``observe``."""

    @abstractmethod
    def reserve(self) -> float:
        """Book the next send slot; return the seconds to wait before sending."""

    def acquire(self) -> Ticket:
        """Book the next send slot as a :class:`Ticket`."""
        return Ticket(self.reserve())

    def acquire_now(self) -> Ticket:
        """Book the next slot behind those already booked, for a call that has one request
        out at a time (a query): it does not wait with a bulk call's requests for a turn
        to book. Limiters without such turns book as :meth:`acquire` does."""
        return self.acquire()

    def confirm(self, ticket: Ticket) -> bool:
        """After waiting ``ticket.wait``: may the request go now? ``False`` means the rate
        was cut since the booking and the caller should :meth:`rebook`."""
        return True

    def rebook(self, ticket: Ticket) -> Ticket:
        """Book again for the request whose ``ticket`` did not :meth:`confirm`: like
        :meth:`acquire`, but a limiter that makes requests wait in line for a free slot
        keeps this one's place."""
        return self.acquire()

    def release(self, ticket: Ticket) -> None:
        """The request booked with ``ticket`` will not be sent (its call stopped while it
        waited): a limiter that booked its slot ahead may give the slot to another."""

    def on_success(self, ticket: Ticket | None = None) -> None:
        """A request was answered without throttling."""

    def on_throttle(self, ticket: Ticket | None = None) -> None:
        """A request was refused with 429 ``Throttling``/``Throttling.RateQuota``."""

    @property
    def rate(self) -> float | None:
        """Current requests per second, ``None`` when unlimited."""
        return None

    def shut_for(self, ticket: Ticket | None) -> float:
        """Seconds the account has let nothing through, if nothing got through since
        ``ticket``'s request was sent (0.0 when something did, or when this limiter cannot
        tell). A retry policy lets requests wait out such a shut without using retries."""
        return 0.0

    def accepted_count(self) -> int | None:
        """Requests this limiter has heard let through so far (``None``: it cannot tell,
        as before its first answer, or when a subclass's ``observe`` does not call this
        one's). A request that sees no change over all its retries met an account let no
        one through meanwhile, and its call stops."""
        return getattr(self, "_heard_accepted", None)

    def observe(self, error: BaseException | None, ticket: Ticket | None = None) -> None:
        """Feed back one answer: ``None`` for success, else the error it raised."""
        # (Counted without a lock: two successes at once may count as one, still a change.)
        self._heard_accepted = getattr(self, "_heard_accepted", 0) + (error is None)
        if error is None:
            self.on_success(ticket)
        elif is_throttling(error):
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
        self._free: list[float] = []  # booked slots given back, still ahead (a heap)

    @property
    def rate(self) -> float:
        return self._rate

    def _book(self, now: float) -> tuple[float, float]:
        """Book the earliest slot given back that is still ahead, else the slot after the
        last one (lock held); return (its time, the wait)."""
        while self._free:
            slot = heapq.heappop(self._free)
            if slot >= now:
                return slot, slot - now
        slot = self._next if self._next > now else now
        self._next = slot + 1.0 / self._rate
        return slot, slot - now

    def reserve(self) -> float:
        with self._lock:
            return self._book(self._clock())[1]

    def acquire(self) -> Ticket:
        with self._lock:
            slot, wait = self._book(self._clock())
            return Ticket(wait, self._epoch, sent=slot)

    def release(self, ticket: Ticket) -> None:
        # (A slot still ahead goes to the next booking, so a call that stopped with many
        # slots booked does not hold the next call back by all of them.)
        with self._lock:
            if ticket.sent > self._clock():
                heapq.heappush(self._free, ticket.sent)


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
      refusing is the ceiling.) The rate is cut to ``0.95 x`` ceiling (``0.985 x`` when
      refused again where the ceiling was read before), climbs back to it on a concave
      curve, then probes above it by steps that double while nothing is refused:
      a raised quota is found in seconds, a steady one costs about one 429 per cycle.
    * **Concurrency caps.** Every request carries the number in flight when it was sent.
      When 429s come only above some in-flight count, the limiter caps requests in flight
      at that count (and tries one more now and then). A first 429 above every count
      answered so far is tested at once: sends go at the rate that count carries, so the
      next 429 either confirms the cap or shows a rate cap.
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
        # Answers are heard as they come (this process's own sends). A coordinator's are
        # reported late and in batches: it probes more slowly.
        self.prompt = True
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
        self._echo_until = -math.inf  # when the ramp's echo (a hold too) stopped holding sends
        self._hinted = 0.0  # a retry hint holds every send until then
        self._cut_sent = 0.0  # when the request refused at the last cut was sent
        self._shut_sent = 0.0  # ... and the last one refused since, none accepted between
        self._open_sent = 0.0  # when the first request accepted after a cut was sent
        self._open_cuts = 0  # cuts counted then
        self._shut_open = -math.inf  # when the first send after a long shut was sent
        self._long_shut = 0.0  # the longest time refused throughout (a window that long)
        self._long_at = 0.0  # ... as of when (it fades with time)
        self._lowered_at = -math.inf  # when a reopening last lowered the ceiling
        self._settled = False  # ten requests in a row have been accepted once
        self._return_requests = _RETURN_REQUESTS
        self._held_ceiling = 0.0  # the ceiling before a probe raised it a little
        self._raised = False  # the last cut was such a probe's
        self._unsure = False  # the ramp's read was too small to tell a rate (_UNSURE_READ)
        self._started = -1.0  # the first send's time (-1: none yet)
        self._shut = ShutWatch()  # how long this process has heard only refusals
        # Per process: how long answers and 429s take, what is in flight.
        self._refusal_time = _REFUSAL_TIME
        self._latency = 0.0
        self._answers = 0  # accepted answers timed (for the average answer time)
        self._in_flight_avg = 0.0  # requests in flight at each send (moving average)
        self._tokens = itertools.count(1)
        self._in_flight: dict[int, tuple[float, int]] = {}  # token -> (sent at, in flight)
        self._window = InFlightCap(prompt=True)
        self._line = SlotLine()  # requests waiting for a free slot under a learned cap
        self._echo = RampEcho()  # (this process's sends: off while others send too)
        self._limit_set = 0.0  # when the window's limit last changed
        self._others = 0  # requests in flight in the other processes sharing the state
        self._turns: deque[float] = deque()  # this process's booked slots not yet due ...
        self._turns_epoch = 0  # ... in this epoch (with a shared state only)
        self._initial, self._share = float(initial_qps), share
        self._shared = _open_shared(share) if share is not None else None
        self._bins: _Bins | SharedState = self._shared or _Bins()
        self._slots: list[tuple[object, str]] = [(self, name) for name in _SHARED_FIELDS]
        self._slots += [(self._window, name) for name in InFlightCap.FIELDS]
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
            return self._acquire(now, 0)

    def acquire_now(self) -> Ticket:
        with self._locked() as now:
            return self._acquire(now, 0, at_once=True)

    def rebook(self, ticket: Ticket) -> Ticket:
        with self._locked() as now:
            # (A ticket that is not a slot, epoch -1, carries its waiter id as its token.)
            return self._acquire(now, ticket.token if ticket.epoch < 0 else 0)

    def _acquire(self, now: float, waiter: int, *, at_once: bool = False) -> Ticket:
        """Book a slot for a request (``waiter``: its id, if it already waits in line;
        ``at_once``: behind the booked slots, however far, without a turn to wait for)."""
        if self._window.active:
            poll = min(_MAX_POLL, max(_MIN_POLL, _POLL_SHARE * self._latency))
            free = self._window.limit - len(self._in_flight) - self._others
            ahead = self._line.ahead(now, waiter, poll)
            if free <= ahead:
                # Every allowed request is in flight, or the free slots are for those
                # waiting before this one: look again soon (a small share of an answer
                # time, so a freed slot idles for little of a request's life).
                waiter, wait = self._line.wait(now, waiter, ahead, free, poll)
                wait = max(_MIN_POLL, wait)
                return Ticket(wait, -1, now + wait, self._rate, waiter)
            self._line.leave(waiter)
        elif self._line:
            self._line.clear()  # no cap any more: no line
        self._update_rate(now)
        if self._others:
            self._echo.forget()
        slot = max(self._next, now, self._echo.earliest(now))
        wait = slot - now
        horizon = max(_HORIZON_SECONDS, _HORIZON_SLOTS / self._rate)
        if self._unsure:
            horizon = max(_HORIZON_SECONDS, min(horizon, _UNSURE_HORIZON))
        if wait > horizon and self._shared is None and not at_once:
            # Far down the queue: come back about when this slot is due, and book then,
            # at the rate of that moment (a slot booked now would keep today's rate).
            # Processes sharing a state book in the order they ask instead, each
            # holding a turn or a few (below): turns alike. (Not a call with one request
            # out at a time: those told to come back come back together and race for the
            # slots, and a query behind a bulk call's requests lost for seconds.)
            return Ticket(wait - horizon / 2.0, -1, slot, self._rate, 0)
        if self._shared is not None and not at_once:
            due = self._own_turn(now)
            if due is not None:
                # This process holds its share of the booked slots: come back when
                # the next of them is due (the others book meanwhile).
                return Ticket(due - now, -1, due, self._rate, 0)
            self._turns.append(slot)
        if self._last_book >= 0 and wait > 0:
            self._busy += now - self._last_book
        self._last_book = now
        if self.slow_start and wait > 0:
            # Slow start grows per booked slot while sends queue: per answer would lag by
            # the whole queue of slots booked ahead.
            self._rate = min(self._max, self._rate + _SLOW_START_GAIN)
        self._next = slot + self._interval()
        self._echo.booked(slot)
        return Ticket(wait, self._epoch, slot, self._rate, next(self._tokens))

    def _own_turn(self, now: float) -> float | None:
        """With a shared state: when this process's next booked slot is due, if it holds
        as many as ``_SHARED_AHEAD`` allows (``None``: it may book another)."""
        turns = self._turns
        if self._turns_epoch != self._epoch:
            turns.clear()  # a cut or hold since: those slots are booked again
            self._turns_epoch = self._epoch
        while turns and turns[0] <= now:
            turns.popleft()
        if len(turns) < max(1, math.ceil(self._rate * _SHARED_AHEAD)):
            return None
        return turns[0]

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
            self._in_flight_avg = 0.9 * self._in_flight_avg + 0.1 * n if self._in_flight_avg else n
            self._count(ticket, now, 0)
            if self.slow_start:
                self._echo.ramp_sent(now)
            return True

    def observe(self, error: BaseException | None, ticket: Ticket | None = None) -> None:
        with self._locked() as now:
            sent = self._in_flight.pop(ticket.token, None) if ticket is not None else None
            n = 0
            if sent is not None:
                took, n = now - sent[0], sent[1]
                if error is None:
                    self._latency = took if not self._latency else 0.9 * self._latency + 0.1 * took
                    self._answers += 1
                elif isinstance(error, RateLimitError):
                    self._refusal_time = 0.9 * self._refusal_time + 0.1 * took
            if error is None:
                self._shut.accepted(now)
                if ticket is None or ticket.epoch >= self._cut_epoch:
                    if not self._ok_since_cut and ticket is not None and not self.slow_start:
                        self._reopened(ticket.sent, now)
                    self._ok_since_cut += 1
                    if self._ok_since_cut >= _FAST_RETURN_REQUESTS:
                        self._settled = True
                    self._pause = 0.0
                self._window.ok(n, sent is not None and sent[0] >= self._limit_set)
            elif _refused(error):
                self._shut.refused(_sent_time(ticket, now))
                self._count(ticket, now, 1)
                hint = getattr(error, "retry_after", None), getattr(error, "retry_after_unit", None)
                self._on_throttle(now, n, ticket, *hint)
            elif isinstance(error, QuotaExceededError) and error.refills:
                # A quota per period, back when the hint says: no send before then (each
                # would be refused), and no rate signal (the rate is not what ran out).
                self._hold_for_hint(now, error.retry_after, error.retry_after_unit)

    def shut_for(self, ticket: Ticket | None) -> float:
        if ticket is None:
            return 0.0
        with self._locked() as now:
            return self._shut.shut_for(ticket.sent, now)

    def accepted_count(self) -> int:
        return self._shut.accepted_total  # (this process's answers: one int, read whole)

    def in_flight_bound(self, max_in_flight: int) -> InFlightBound | None:
        """Whether ``max_in_flight`` requests in flight (a client's ``max_concurrency``)
        hold this process below the rate the limiter allows, at the answer time measured
        (slow requests: large images, a distant region), sends having found them all
        busy. ``None`` when they do not, when too few answers were timed, when the
        service caps requests in flight itself, and while other processes share this
        limiter's rate."""
        with self._locked():
            if self._answers < _BOUND_ANSWERS or self._latency <= 0:
                return None
            if self._window.active or self._others:
                return None
            if not _BOUND_SHARE * max_in_flight <= self._in_flight_avg <= max_in_flight + 0.5:
                # Sends found free slots (the caller sent less, e.g. one small call at a
                # time), or more were in flight than one call's (concurrent async calls).
                return None
            # (Before any 429 the rate is a ramp, not a limit: claim only the initial rate.)
            allowed = min(self._rate, self._initial) if self.slow_start else self._rate
            reachable = max_in_flight / self._latency
            if reachable >= _BOUND_SHARE * allowed:
                return None
            needed = math.ceil(_BOUND_MARGIN * allowed * self._latency)
            return InFlightBound(max_in_flight, reachable, allowed, self._latency, needed)

    # -- the algorithm (lock held) --------------------------------------------------------
    def _count(self, ticket: Ticket | None, now: float, kind: int) -> None:
        sent = _sent_time(ticket, now)
        if self._started < 0:
            self._started = sent
        self._bins.add(int(sent / _BIN), kind)

    def _reopened(self, sent: float, now: float) -> None:
        """The first request sent since the cut has been accepted (it was sent at ``sent``;
        the answer came at ``now``).

        The throttle refused everything sent for ``closed`` seconds before it: a window
        at least that long was full (the longest such time is remembered, fading). What
        the account accepted over that time plus as long again before it (at least a
        second, and at least the longest shut remembered) is what it lets through in a
        cycle of filling and waiting, whatever the window's length: the ceiling is no
        higher. So is what it accepted since it last opened, when it was shut for half
        that time.
        """
        # (The first cycle runs from the first send: a window of a minute, filled by the
        # start-up ramp in seconds, is read from it.)
        last_open, self._open_sent = self._open_sent or self._started, sent
        one_cycle, self._open_cuts = self.cuts - self._open_cuts == 1, self.cuts
        # (Known shut from the cut's refused send to the last refused send: the pause
        # after that one is the sender's idling, not the throttle's.)
        closed = self._shut_sent - self._cut_sent
        if self._cut_sent <= 0:
            return
        shortest = max(_CLOSED_SECONDS, _CLOSED_INTERVALS / self._rate)
        # (How long a window is decides whether a second's count can be its rate. It
        # reopened between the last refused send and this one, sent after a pause of up
        # to a second: it is remembered as shut until halfway. The known part alone left
        # a 2-s window's shuts of about a second on the edge of the 1-s read.)
        shut = (self._shut_sent + sent) / 2.0 - self._cut_sent if closed > shortest else closed
        fade = 0.5 ** (max(0.0, sent - self._long_at) / _SHUT_HALF_LIFE)
        self._long_shut, self._long_at = max(shut, fade * self._long_shut), sent
        # A window is at least as long as the longest shut: a cycle or a read spanning
        # less cannot hold a whole window.
        window = max(_GOODPUT_SECONDS, _GOODPUT_REQUESTS / self._rate, self._long_shut)
        if closed <= shortest:
            return  # refused for a send interval or two: a bucket's token gap, no window
        self._shut_open = sent
        cycle = sent - last_open
        ceiling = self._ceiling
        if one_cycle and cycle >= window and closed >= _SHUT_SHARE * cycle:
            # Shut for half the time or more since it last opened, one cut between: a
            # long window lets the sender through in bursts, and what passed over the
            # whole cycle of filling and waiting is its rate.
            self._lower_ceiling(last_open, sent)
        # (As far back as the steady sending since the last reopen goes.)
        steady = self._cut_sent - max(self._started, last_open)
        before = max(_GOODPUT_SECONDS, _GOODPUT_REQUESTS / self._rate, closed, min(window, steady))
        start = self._cut_sent - before
        if start < max(self._started, last_open):
            first = last_open <= self._started and self._cut_sent - self._started < _GOODPUT_SECONDS
            if not first or shut <= _GOODPUT_SECONDS:
                return  # not a cycle of steady sending: too little history, or another hold
            # The start-up ramp was first refused within a second of its first send, and
            # the throttle then stayed shut for longer than a second: a window of seconds,
            # whose count over a second, or the part of one, is the ramp's burst (a window
            # of two seconds lets twenty through at once at 10/s). What passed from the
            # first send to the reopening is one whole cycle. (A 1-s window shared with
            # other senders is not read so: what passed for this sender in its first
            # second is its start-up share, not its rate.)
            start = self._started
        self._lower_ceiling(start, self._shut_sent + _BIN)
        if self._ceiling < ceiling:
            self._lowered_at = now

    def _lower_ceiling(self, start: float, end: float) -> None:
        """Lower the ceiling to what the account accepted of the sends in [start, end), not
        below what it accepted over the last seconds (see ``_RECENT_SECONDS``)."""
        first, last = int(start / _BIN), int(end / _BIN)
        if last <= first:
            return
        accepted = self._accepted_in(first, last)
        recent = max(int(self._started / _BIN), last - int(_RECENT_SECONDS / _BIN))
        if (last - recent) * _BIN >= _RECENT_MIN:
            accepted = max(accepted, self._accepted_in(recent, last))
        if 0 < accepted < self._ceiling:
            self._ceiling = max(self._min, accepted)
            self._floor = max(self._min, _BETA * self._ceiling)

    def _update_rate(self, now: float) -> None:
        if self.slow_start:
            return
        spent = self._busy - self._cut_busy
        done = math.inf if self._unsure else self._ok_since_cut
        x = min(spent / _RETURN_SECONDS, done / self._return_requests)
        ceiling = self._ceiling
        if x < 1.0:
            rate = ceiling - (ceiling - self._floor) * (1.0 - x) ** 3
        else:
            probe, answers = _PROBE_SECONDS, _PROBE_REQUESTS
            if not self.prompt:
                probe, answers = _LATE_PROBE_SECONDS, _LATE_PROBE_REQUESTS
            period = max(probe, _SHUT_PROBE * self._long_shut)
            y = min(
                (spent - _RETURN_SECONDS) / period,
                (done - self._return_requests) / answers,
            )
            step = _UNSURE_STEP if self._unsure else _PROBE_STEP
            rate = ceiling * (1.0 + step * (2.0 ** min(y, 30.0) - 1.0))
            good = self._goodput(now)
            if good > 0 and not self._cap_alone():
                # Never send more than twice what the account has been accepting: a 429
                # takes a moment to come, and an overshoot of more costs a burst of them.
                # (Under a concurrency cap alone the cap holds the sends; pacing must not.)
                rate = min(rate, max(ceiling, _MAX_LEAD * good))
        if self._window.testing and self._latency > 0:
            # A first 429 above every count answered, and each of its slots has answered a
            # request sent since: send at the rate those slots carry, so that a count above it comes
            # within an answer time or two. A concurrency cap refuses it (the cap is
            # learned in about a second, not when probing next brings the count there);
            # a rate cap answers it or refuses at lower counts too (the candidate goes).
            rate = max(rate, self._window.limit / self._latency)
        if self._cap_alone():
            # Under a concurrency cap alone (no rate throttle refusing within it) the cap
            # holds the sends back, not the rate: a ceiling a cut read while the cap was
            # being learned was the cap's doing. The rate stays twice what the cap lets
            # through (so were the cap to go, a 429 would read the limit from what was
            # accepted, as for any overshoot).
            rate = max(rate, _MAX_LEAD * self._window.limit / self._latency)
        self._rate = min(self._max, max(self._min, rate))

    def _cap_alone(self) -> bool:
        """Whether a learned cap on requests in flight, not a rate, holds the sends back:
        no rate throttle refuses within it, or its slots carry less than the ceiling one
        read (a cap that moved down below it)."""
        window = self._window
        if not window.active or self._latency <= 0:
            return False
        return window.alone or window.limit / self._latency < self._ceiling

    def _interval(self) -> float:
        """Seconds between booked slots: one over the rate, but under a learned concurrency
        cap alone answers come back bunched, and slots freed together are filled within a
        poll's time each (2 % of an answer), not a pacing interval apart."""
        if self._cap_alone():
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

    def _in_flight_ramp(self, n: int, sent: float) -> bool:
        """Whether the ramp's first 429, for a request sent at ``sent`` with ``n`` in
        flight, may be a cap on requests in flight: others were in flight and it came
        within a few answer times of the first send (none timed yet: any time is few)."""
        if n <= 1:
            return False
        return self._latency <= 0 or sent - self._started < _RAMP_ANSWERS * self._latency

    def _accepted_before(self, end: float, seconds: float) -> float:
        """Requests/s accepted of the sends in the ``seconds`` before ``end``, over
        ``seconds`` (the bins at both ends counted in proportion)."""
        start = end - seconds
        first, last = math.floor(start / _BIN), math.floor(end / _BIN)
        total, refused = self._bins.sums(first + 1, last)
        accepted = float(total - refused)
        for key, share in ((first, first + 1 - start / _BIN), (last, end / _BIN - last)):
            total, refused = self._bins.sums(key, key + 1)
            accepted += share * (total - refused)
        return max(0.0, accepted) / seconds

    def _accepted_over(self, end: float, seconds: float, span: float) -> float:
        """Requests/s accepted of the sends in the ``seconds`` before ``end`` (at most the
        bins kept; at least ``span`` long)."""
        seconds = min(seconds, _KEPT_SECONDS)
        first, last = int(max(end - seconds, self._started) / _BIN), int(end / _BIN)
        return self._accepted_in(first, last, span)

    def _accepted_in(self, first: int, last: int, span: float = 0.0) -> float:
        """Requests/s accepted of the sends in bins [first, last), over at least ``span``."""
        total, refused = self._bins.sums(first, last)
        return max(0, total - refused) / max(span, (last - first) * _BIN)

    def _on_throttle(
        self,
        now: float,
        n: int,
        ticket: Ticket | None,
        retry_after: float | None,
        unit: float | None = None,
    ) -> None:
        """A refusal of a request sent with ``n`` in flight: read the ceiling it says and
        cut to it, unless it says nothing new (then at most a hold of every send)."""
        self._hold_for_hint(now, retry_after, unit)
        if not self._is_rate_signal(now, n, ticket):
            return
        sent = _sent_time(ticket, now)
        starved = (
            not self._settled
            and sent - self._cut_sent >= _STARVED_SECONDS
            and now - self._cut_sent >= _STARVED_SECONDS + self._latency
        )
        if not self._ok_since_cut and not self.slow_start and not starved:
            # Nothing sent since the cut has passed yet: the throttle that refused the
            # last burst (a window still full, however long; a bucket still empty or in
            # debt) is still refusing. Cutting again would count the same burst twice;
            # sending on would feed it: every send is held instead.
            if self._settled:
                self._hold_sends(now, ticket)
            # (Not before the account has once accepted ten in a row: until then the
            # refusals are the start-up ramp's, and holding would stall finding the first
            # rate; at 1 QPS, for minutes. But a start-up refused throughout since the cut,
            # past the time any 1-s throttle takes to let one through, is far above: it is
            # cut again, below, rather than sending on at a rate a throttle that counts
            # refusals never lets through.)
            return
        sent_at = ticket.rate if ticket is not None and ticket.rate > 0 else self._rate
        # (A far-above cut, not the start-up ramp's first, whose read did not stop the
        # refusals: this one comes before its fast return is done.)
        cut_short = (
            self._return_requests == _FAST_RETURN_REQUESTS
            and self._ok_since_cut < _FAST_RETURN_REQUESTS
            and self.cuts > 1
        )
        self._return_requests = _RETURN_REQUESTS
        previous = self._ceiling
        returned = self._busy - self._cut_busy >= _RETURN_SECONDS and (
            self._unsure or self._ok_since_cut >= self._return_requests
        )
        ramp_read, ramp_hold = self._read_ramp(n, sent, sent_at)
        ceiling = self._read_ceiling(now, sent, sent_at, ramp_read, cut_short)
        reopened = max(self._cut_sent, self._open_sent)
        if (
            not returned
            and not ramp_read
            and self.read_counts
            and _GOODPUT_REQUESTS / self._rate <= _GOODPUT_SECONDS
            and self._count_coarse(previous)
            and 0 < sent_at < previous
            and sent - reopened >= _GOODPUT_SECONDS
        ):
            # Refused on the climb back, below the ceiling: the second it was read from
            # let through more than the limit (a fixed window straddled, a token a bucket
            # saved: at 10/s one count over is 10 %, twice the cut), and so may the last
            # second now (read so, the ceiling came down 1 % a 429, a 429 every 2-3 s).
            # What the account let through since the first send accepted after the cut,
            # a second and more, says the limit (not counted from the 429: the hold after
            # it is the sender's idling), no lower than the cut's floor, which held.
            since = self._accepted_before(sent, sent - reopened)
            ceiling = min(ceiling, max(self._floor, since))
        held = 0.0  # the ceiling that held a whole return, below a probe's raised one
        raised = False
        if self._held_ceiling and not returned and ceiling > self._held_ceiling:
            # Refused before the return to a ceiling a probe raised was done: that ceiling
            # was read high (a bucket's burst, a window straddled by the second read), and
            # so would a read now be (the second still holds the burst: read so, the ceiling
            # came down 1 % a 429). Halfway back to the one that held a whole return.
            ceiling = (ceiling + self._held_ceiling) / 2.0
            held = self._held_ceiling
        elif returned and previous < ceiling <= _PROBE_GAIN * previous and sent_at > previous:
            # A probe raised the ceiling by no more than a raised quota would: the one it
            # raised held a whole return, and is where a read high comes back to.
            held, raised = previous, True
            if self._count_coarse(previous) and not self._raised:
                # (The read cannot tell the probe's step from a count one over: halfway.
                # Not when the last probe raised it too, and the raised one held a whole
                # return: the quota went up. Halved here as well as in the read, a sliding
                # window raised from 10 to 12.5/s gained a quarter of the gap a probe, and
                # was 38 s from 0.95 of it.)
                ceiling = (previous + ceiling) / 2.0
        if self.slow_start:
            # (The ramp's first cut. Held until its first send is a second old, a ramp
            # refused within that second has no echo: see RampEcho.)
            if ramp_read and not ramp_hold and not self._others:
                self._echo.ramp_refused(sent)
                self._echo_until = self._echo.until
            else:
                self._echo.forget()
        if not ramp_hold:
            self._unsure = False
        # Refused again where the ceiling that held a whole return was read, within a
        # probe's first step: the limit is there (a window's count, refused on a probe or on
        # jitter), not lower, so the cut only drains the overshoot. (Not below ten sends a
        # second: a read there spans seconds of the cycle and cannot tell 1 %.)
        settled = (
            returned
            and not ramp_hold
            and previous * _GOODPUT_SECONDS >= _GOODPUT_REQUESTS
            and abs(ceiling - previous) <= _SETTLED_TOLERANCE * previous
        )
        self._raised = raised
        self._cut(now, sent, ceiling, held, ramp_hold, _SETTLED_BETA if settled else _BETA)

    @staticmethod
    def _count_coarse(ceiling: float) -> bool:
        """Whether a second's count at ``ceiling`` is coarser than the cut: under 20 sends
        a second, one count over (a fixed window straddled, a token a bucket saved) is
        more than 5 %. (At 30/s the cut covers it, and reads below the ceiling that
        correct for it cost sliding windows what they saved.)"""
        return ceiling * _GOODPUT_SECONDS * (1.0 - _BETA) < 1.0

    def _is_rate_signal(self, now: float, n: int, ticket: Ticket | None) -> bool:
        """Whether a refusal says anything of the rate: not when the number in flight
        explains it, nor when it belongs to a burst already read. (The cap on requests in
        flight hears of every refusal here, and may learn or drop a cap from it.)"""
        unanswered = None
        if n and not self._others and not self._window.active:
            # (Other processes' requests in flight are not known here: with any, none are
            # passed.)
            sure = now - _LAG_REFUSALS * self._refusal_time
            unanswered = [m for at, m in self._in_flight.values() if at < sure]
        limit = self._window.limit
        # (Under a cap alone the rate is held above what the cap's slots carry: accepting
        # well under that, something else holds the sends, a rate throttle within it.)
        paced = False
        if self._window.active and self._latency > 0:
            paced = self._goodput(now) < _CAP_PACED * limit / self._latency
        fresh = ticket is None or ticket.epoch == self._epoch
        explained = bool(n) and self._window.throttled(n, unanswered, paced=paced, fresh=fresh)
        if self._window.limit != limit:
            self._limit_set = now  # (answers to requests sent before it are not fresh)
        if explained:
            return False  # explained by the number in flight: not a rate signal
        if not fresh:
            return False  # sent before the last cut: that burst was already counted
        if ticket is not None and ticket.rate > self._ceiling:
            horizon = max(_HORIZON_SECONDS, _HORIZON_SLOTS / ticket.rate)
            if ticket.sent < self._lowered_at + horizon:
                # Booked ahead at a rate that a reopening has since read as too high: its
                # refusal is what lowered the ceiling says already, no new signal (read as
                # one, it would cut from a second that holds nothing yet).
                return False
        return True

    def _hold_sends(self, now: float, ticket: Ticket | None) -> None:
        """Hold every send for a pause that grows with each refusal since the cut (none
        accepted), starting at one send interval (a bucket refills a token in it), so the
        next send tests whether the throttle has recovered."""
        if ticket is not None and ticket.sent:
            self._shut_sent = max(self._shut_sent, ticket.sent)
        self._pause = min(_MAX_PAUSE, max(1.0 / self._rate, self._pause * _PAUSE_GROWTH))
        # (Slots booked before it go after it, the queue no later than a booking horizon:
        # in a shared state it is every process's, seconds long, and would idle them all
        # that long. A longer hold already set stands.)
        horizon = max(_HORIZON_SECONDS, _HORIZON_SLOTS / self._rate)
        queue = min(self._next, now + horizon)
        self._next = max(self._hinted, self._held_at, now + self._pause, queue)
        self._held_at = self._next
        self._book_again(now)  # slots booked before the pause go after it

    def _read_ramp(self, n: int, sent: float, sent_at: float) -> tuple[float, float]:
        """The start-up ramp's first refusal (of a send at ``sent``, at rate ``sent_at``):
        (what it let through, per second; until when every send is held), or (0, 0) when
        this refusal is not the ramp's, or may be a cap on requests in flight. A read
        within the first second also marks whether it was too small to tell a rate
        (``_unsure``)."""
        if not (
            self.slow_start
            and self.read_counts  # (a coordinator's slots are leases, not sends)
            and sent - self._started < _RAMP_SECONDS
            and not self._in_flight_ramp(n, sent)
        ):
            return 0.0, 0.0
        # Everything the ramp sent before was let through, and the throttle now refuses.
        # What it let through of the sends in the second before the refused one is its
        # limit: a window's count, a bucket's burst and refill (a second's worth even when
        # the ramp ran for less: a window of a second counts them all whenever they came;
        # read over less, 10 sent in half a second are 20/s). The share refused is no
        # guide here: none of them was.
        ramp_read = self._accepted_before(sent, _GOODPUT_SECONDS)
        if sent - self._started >= _GOODPUT_SECONDS:
            return ramp_read, 0.0
        # Refused within a second of the first send: a window of a second holds every send
        # since until that one is a second old (a bucket refills in the meantime), and
        # counts arrivals, a send interval after the slots.
        rate = _BETA * min(self._max, max(self._min, ramp_read or sent_at))
        self._unsure = ramp_read * _GOODPUT_SECONDS <= _UNSURE_READ
        return ramp_read, self._started + _GOODPUT_SECONDS + 1.0 / rate

    def _read_ceiling(
        self, now: float, sent: float, sent_at: float, ramp_read: float, cut_short: bool
    ) -> float:
        """The ceiling a refusal of a send at rate ``sent_at`` (at ``sent``) says, from what
        the account accepted lately (``ramp_read``: the ramp's read, if this is its first
        refusal)."""
        previous = self._ceiling
        good, refused = self._measure(now)
        span = max(_GOODPUT_SECONDS, _GOODPUT_REQUESTS / self._rate)
        end = now - _LAG_REFUSALS * self._refusal_time
        if self._long_shut > span:
            # A window as long as the longest shut can let nothing through for a second
            # and more: what it let through over that long is what it accepts.
            good = max(good, self._accepted_over(end, self._long_shut, span))
        if not self.slow_start and good >= _TRUST_RATE * sent_at:
            # Refused just above what it accepts: the limit is about here. When the last
            # second held ten sends or more, what it let through is the limit itself (a
            # window's count, a bucket's refill and burst); at lower rates the measure
            # spans several seconds of the cycle, below the limit, and the sent rate is read.
            ceiling = sent_at
            if self.read_counts and _GOODPUT_REQUESTS / self._rate <= _GOODPUT_SECONDS:
                ceiling = min(sent_at, good)
                if previous and good >= previous and sent - self._cut_sent < _GOODPUT_SECONDS:
                    # Refused within a second of the last cut's 429, the last second having
                    # let the ceiling through: the window still holds the sends from before
                    # the cut (a sliding one refuses the floor until they leave it), no
                    # lower limit. Read as the rate refused at, a sliding 20/s window was
                    # held at 0.94 of it for seconds after start-up.
                    ceiling = previous
            if self._long_shut > span:
                # Under a window of seconds, a second's count is a burst's: what it let
                # through over a whole window is its rate (not below the trusted share).
                whole = self._accepted_over(end, _WINDOW_SHUTS * self._long_shut, span)
                ceiling = min(ceiling, max(_TRUST_RATE * sent_at, whole))
            return ceiling
        if previous and previous < sent_at and good <= _PROBE_GAIN * previous:
            # A probe went well past the ceiling before the 429 came (a window refuses only
            # once it is full): the limit is between the two. A fixed window straddled by
            # the last second can let through more than its limit in it, so meet halfway.
            if _GOODPUT_REQUESTS / self._rate > _GOODPUT_SECONDS:
                # (Below ten sends a second the read spans several seconds of the cycle,
                # back into the return: read below the ceiling that held it, it is the
                # span's, not the limit's. A 10-s window at 10/s was cut to 0.7-0.8 of it.)
                good = max(good, previous)
            return (previous + min(good, sent_at)) / 2.0
        coarse = self._count_coarse(good) and not self._unsure
        if self.read_counts and previous and previous < sent_at and refused <= 1 and not coarse:
            # A probe let through well past the ceiling, refused only now: the ceiling was
            # read low (a bucket of a small burst refuses a ramp as soon as it passes the
            # rate, and the second before holds the ramp's rising average), and the last
            # second's count lags the probe's rise as well. The limit is between that count
            # and the rate refused (no more than the trusted share of it): halfway. (Read
            # as the count, a bucket of 5 at 100/s took 10-15 s to be found, 0.91 of it.
            # Not from a count of under 20, which one token a bucket saved moves more than
            # the cut: a 10/s bucket charging refusals, probed to 20/s on its saved burst,
            # was read at 17. But after a read too small to tell a rate, whose climb goes
            # by time: a throttle spacing requests at 3/s was held at 0.85 of it, not 0.93.
            # Nor from a coordinator's leases, which are no count of sends.)
            return (good + max(good, _TRUST_RATE * sent_at)) / 2.0
        self._return_requests = _FAST_RETURN_REQUESTS
        # Far above the limit (the ramp overshot, or the quota was cut): while a sender
        # is refused, what the account accepts is its limit, whatever the throttle's
        # shape. If none of the measured sends was refused, it is only a floor. If the
        # sender held its sends in the measured span, that span is no measure: its idle
        # part reads as capacity refused (a window of seconds lets the sender through in
        # bursts, and one second of it can hold almost nothing; a client sharing the
        # account with others, refused now and then by their probes, read its own hold
        # as half its share gone, and again at the next: a ratchet down to a tenth of
        # the others' rate). It is checked against what was accepted over several seconds,
        # a floor read so as well. The ramp's echo is such a hold: a weighted window at
        # 30/s, still counting the ramp's burst when the echo ended, refused a climb at
        # 33/s, and a second holding the echo's gaps read 21-23/s (a whole 15-s call
        # held 0.89 of the ceiling). So is a second that holds a throttle's shut:
        # refused within a second of the first send let through after a long shut, the
        # ramp's cut the only one, a window of seconds the ramp filled frees its slots
        # only as the ramp's sends leave it (densest last). (Read from the shut, 60 per
        # 2 s was paced at 11-17/s for seconds.)
        sender_held = good > 0 and max(self._held_at, self._echo_until) > end - span
        just_reopened = self.cuts == 1 and self._shut_open > end - span
        if sender_held or just_reopened:
            good = max(good, self._accepted_over(end, _HELD_SPAN, span))
        if ramp_read > 0:
            ceiling = min(ramp_read, _TRUST_RATE * sent_at)
        elif refused and good > 0:
            ceiling = min(good, _TRUST_RATE * sent_at)
        else:
            ceiling = max(good, _MAX_CUT * sent_at)
        if cut_short:
            # A throttle that charges refusals (a bucket taking a token for each, a log
            # recording each) lets through less the longer a sender overshoots it, down
            # to nothing: a second's read far below what the last 5 s let through, when
            # the last far-above read did not stop the refusals, is of the collapse, not
            # the limit (read so, half the limit was held for ten seconds and more).
            seconds = self._accepted_over(end, _HELD_SPAN, span)
            if good < _COLLAPSE_SHARE * seconds:
                ceiling = max(ceiling, min(_TRUST_RATE * sent_at, seconds))
        return ceiling

    def _cut(
        self,
        now: float,
        sent: float,
        ceiling: float,
        held: float,
        hold: float,
        beta: float = _BETA,
    ) -> None:
        """Remember ``ceiling`` (``held``: the one a probe raised it from) and cut the rate
        to ``beta x`` it, the refused send's (at ``sent``) epoch closed; with ``hold``, no
        send before then."""
        self.slow_start = False
        self._held_ceiling = held
        self._ceiling = min(self._max, max(self._min, ceiling))
        self._floor = max(self._min, beta * self._ceiling)
        self._rate = self._floor
        self._book_again(now)
        self._cut_epoch = self._epoch
        self._cut_sent = self._shut_sent = sent
        self.cuts += 1
        self._cut_busy = self._busy
        self._ok_since_cut = 0
        # (Slots booked before the cut are booked again: a hint's hold stands, not them.)
        self._next = max(self._hinted, now + 1.0 / self._rate, hold)
        if hold:
            self._held_at = hold

    def _book_again(self, now: float) -> None:
        """A new epoch: every slot booked before is booked again (``confirm`` refuses it),
        and the ones not yet due leave the ramp's echo, which they will never enter."""
        self._epoch += 1
        self._echo.rebooked(now)

    def _hold_for_hint(self, now: float, retry_after: float | None, unit: float | None) -> None:
        """Hold every send until a retry hint's time (one unit less: see below)."""
        if isinstance(retry_after, (int, float)) and 0 < retry_after <= _MAX_HOLD:
            # A hint is rounded up to its header's unit (Retry-After's whole seconds: "1"
            # when a window reopens in 0.1 s): every send is held until the earliest it can
            # mean, one unit less. (The refused request itself waits the whole hint.)
            hold = float(retry_after)
            if not isinstance(unit, (int, float)):
                unit = _HINT_UNIT if hold.is_integer() else 0.0
            self._hinted = max(self._hinted, now + max(0.0, hold - unit))
            self._next = max(self._next, self._hinted)

    def _purge(self, now: float) -> None:
        """Forget requests whose answer never came back to ``observe`` (a cancelled task)."""
        stale = now - max(_STALE_SECONDS, 20.0 * self._latency)
        for token in [t for t, (at, _) in self._in_flight.items() if at < stale]:
            del self._in_flight[token]


def _rebuild_limiter(
    initial_qps: float, options: dict[str, Any], clock: Callable[[], float]
) -> AdaptiveRateLimiter:
    return AdaptiveRateLimiter(initial_qps, clock=clock, **options)


def _sent_time(ticket: Ticket | None, now: float) -> float:
    """When ``ticket``'s request was sent (its booked slot), else ``now``."""
    return ticket.sent if ticket is not None and ticket.sent else now


def _refused(error: BaseException) -> bool:
    """A refusal to slow down for: a 429 ``Throttling`` (not a used-up quota), or a 503
    (the service says it is overloaded: an answer, but not an accepted request)."""
    return is_throttling(error) or (isinstance(error, APIStatusError) and error.status_code == 503)


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
