"""One rate limit shared by many processes: a coordinator that leases send slots in blocks.

The coordinator owns one ordinary limiter (:func:`~opensearch_mm.ratelimit.make_rate_limiter`),
so every adaptive rule lives once, in :mod:`opensearch_mm.ratelimit`. Each process holds a
:class:`SharedRateLimiter`: it books send slots from a block leased from the coordinator
(one remote call per block, not per request) and forwards what the service answered
(successes in batches, throttles at once) for the coordinator's limiter to learn from.
Each process also keeps one call open that answers at the next rate cut, so the slots it
holds from before the cut are dropped within a round trip.

A cap on requests in flight is handled apart from the rate: a slot is leased ahead of its
send, so the coordinator cannot count requests in flight from its leases. Each process
counts its own (from send to answer), reports the count with every call, and tags each
answer with the account's number in flight when it was sent (its own count plus the others'
last reported). The coordinator learns the cap from those answers (the rule the client's
own limiter uses, :class:`~opensearch_mm.ratelimit.AdaptiveRateLimiter`'s) and splits it
into *permits*, requests each process may have in flight; a process refills a permit the
moment an answer frees it, without a remote call.

Nothing here imports Ray: the coordinator is a plain class (``opensearch_mm.ray`` runs it
as an actor) and the local side talks to it through a :class:`CoordinatorLink`.
"""

from __future__ import annotations

import bisect
import contextlib
import copy
import itertools
import math
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, NamedTuple, TypeVar

from . import errors
from ._in_flight import InFlightCap
from ._shut_watch import ShutWatch
from ._slot_line import SlotLine
from .errors import OpenSearchMMError, QuotaExceededError, RateLimitError, is_throttling
from .ratelimit import AdaptiveRateLimiter, RateLimiter, Ticket, make_rate_limiter

__all__ = [
    "CoordinatorLink",
    "ErrorInfo",
    "Load",
    "Observation",
    "RateCoordinator",
    "Reply",
    "SharedRateLimiter",
    "Slot",
    "SlotUnused",
    "describe_error",
    "rebuild_error",
]

# Why each default has its value (the remote call is ~1 ms on a cluster; a request is
# 20-200 ms; the client's adaptive limiter books at most 0.25 s or 4 slots ahead).
_HORIZON = 0.25  # a block covers 0.25 s of an actor's share: 5 requests per call at 40/s
# over 2 actors; no more, since the adaptive limiter books no further ahead
_MIN_BLOCK = 4  # at low rates a block still holds 4 slots (calls stay 4x rarer than sends)
_MAX_BLOCK = 64  # a block never holds more than 64 slots (what a dead actor can waste)
_PREFETCH_WITHIN = 0.1  # lease the next block once the held slots end within 0.1 s: a
# remote call's round trip many times over, and late enough that the limiter has room
_LEASE_INTERVAL = 0.25  # one lease per actor per 0.25 s at most: the adaptive limiter books
# 0.25 s ahead, so each lease finds that much room; longer, and actors run dry (measured)
_DEMAND_SECONDS = 1.0  # an actor's demand is the slots it used in the last second ...
_DEMAND_GAIN = 2.0  # ... and it asks for twice that per horizon: room to grow, little waste
_WATCH_TIMEOUT = 2.0  # an open watch call is renewed every 2 s: a lost one costs no more
_FLUSH_INTERVAL = 0.5  # successes wait <= 0.5 s for a lease to carry them (two leases' time)
_FLUSH_SIZE = 64  # ... or until 64 are queued (one Ray message stays small)
_MAX_LATE = 0.25  # a slot over 0.25 s late is handed back: it would bunch up with others'
_LOAD_SECONDS = 2.0  # a process's reported load counts for 2 s: a busy one calls every
# 0.5 s at least (its answers' flushes), so one silent for longer has stopped or died
_WANT_SECONDS = 1.0  # a process's demand is the most it wanted in flight in the last second
_FORGET_CLIENT = 10.0  # the slots of a process silent for 10 s are freed (it died)
_SETTLE = 0.75  # an answer is read against the others' this long after its send (plus
# three answer times): by then every process has reported what it had in flight then
_LEAD_SHARE = 0.5  # an answer seen within half a 429's round trip after a send had freed
# its slot before the send arrived: a 429's round trip is the two network hops and the
# gateway's turn, so half of it is at most the two hops unless the gateway takes longer
_REFUSAL_SAMPLES = 32  # ... the shortest of the last 32 round trips: the network's, unqueued
_EXPLAIN_ANSWERS = 50  # a cap that holds explains one 429 per 50 answers: what its probes
# cost (the coordinator's cap tries one more in flight after 50 answers at it) ...
_EXPLAIN_BURST = 20  # ... saved up to 20: the races of a cap one too high, until it is
# lowered, spend them; a rate limit refusing a few percent of the sends runs them out in
# seconds (then the cap is learned again, and the limiter hears of the 429)
_LEASE_PERMITS = 1.5  # under a learned cap, a lease holds at most 1.5 times what the
# process's permits send in the lease's horizon at the mean answer time: some more, for
# answers faster than the mean; not twice, as slots handed back unused count as accepted
# sends for the limiter, which would then raise its rate with nothing to stop it
_MISSES = 3  # 429s within a learned cap before it is learned again: one or two are noise
_MISS_SECONDS = 2.0  # ... if they come within 2 s (a cap that moved down refuses at once)
_MAX_SETTLE = 5.0  # ... but no longer (a process that went silent is not waited for)
_POLL_SHARE = 0.02  # with every permit in use, look for a free one every 2 % of an answer
_MIN_POLL = 0.001  # ... but not more often than each millisecond ...
_MAX_POLL = 0.05  # ... nor less often than 20 times a second
_REFUSED_KEPT = 1024  # refused requests' send times kept for a retry's question (most recent)

ErrorInfo = tuple[str, str, int | None, str | None, float | None, float | None]
"""An error reduced to what a limiter may look at: class name, message, HTTP status,
service code, retry hint seconds and the hint's unit. Exceptions of this package do not
all survive pickling (keyword-only constructors), so observations travel in this form."""


class Observation(NamedTuple):
    """What became of one leased slot: the coordinator ``incarnation`` that leased it, its
    ``slot`` id, whether a request was ``sent`` in it, the answer's error (``None`` for a
    success), the requests its process had ``in_flight`` when it was sent (this one
    included), and when it was sent and answered (``sent_at``, ``answered_at``: wall
    clock; 0 if not sent)."""

    incarnation: str
    slot: int
    sent: bool
    error: ErrorInfo | None = None
    in_flight: int = 0
    sent_at: float = 0.0
    answered_at: float = 0.0


class Load(NamedTuple):
    """What a process reports with each call: its requests ``in_flight`` now, and the most
    it ``wanted`` in flight since its last report (those in flight plus the callers that
    waited for a permit)."""

    in_flight: int
    wanted: int


class Slot(NamedTuple):
    """A leased send slot: its id, the wall-clock ``time.time()`` to send at, and the
    limiter's ``generation`` (number of rate cuts) when it was booked."""

    slot: int
    at: float
    generation: int


class Reply(NamedTuple):
    """The coordinator's answer to a lease or an observation flush."""

    incarnation: str
    """Changes when the coordinator restarts (its limiter then starts afresh)."""
    generation: int
    """Rate cuts so far: slots of an older generation were booked at a rate since cut."""
    slots: list[Slot]
    retry_in: float
    """With no slots: the limiter asks to come back after this many seconds."""
    rate: float | None
    permits: int | None = None
    """Requests this process may have in flight (``None``: no cap on requests in flight
    has been learned)."""


class SlotUnused(Exception):
    """Fed to the coordinator's limiter for a slot no request was sent in: it frees the
    slot (a limiter counting requests in flight forgets it) and is no rate signal."""


def describe_error(error: BaseException) -> ErrorInfo:
    """``error`` as :data:`ErrorInfo`."""
    if isinstance(error, errors.APIError):
        return (
            type(error).__name__,
            error.message,
            error.status_code,
            error.code,
            error.retry_after,
            error.retry_after_unit,
        )
    return (type(error).__name__, str(error), None, None, None, None)


def rebuild_error(info: ErrorInfo) -> BaseException:
    """An exception equivalent to the one :func:`describe_error` described."""
    name, message, status, code, retry_after, unit = info
    cls = getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, errors.APIError) and status is not None:
        return cls(
            message, status_code=status, code=code, retry_after=retry_after, retry_after_unit=unit
        )
    if isinstance(cls, type) and issubclass(cls, OpenSearchMMError):
        try:
            return cls(message)
        except TypeError:
            pass
    return OpenSearchMMError(message)


class RateCoordinator:
    """The single owner of the account's limiter; hands out send slots in blocks.

    Each slot is booked (``acquire``) and confirmed on the limiter when it is leased, so
    the limiter sees the send at the slot's time; what became of it comes back later as
    an :class:`Observation` and is fed to ``observe`` with the slot's own ticket. A slot
    no request used is handed back as :class:`SlotUnused`; one never heard of again is
    freed once its process has been silent for ``forget_client`` seconds (it died), or
    after ``forget_after`` seconds.

    A block covers about ``horizon`` seconds of the current rate, split between the
    processes that leased in the last second, so an idle or dead process wastes at most
    that much of the account's capacity.

    A cap on requests in flight is learned here, not by the limiter (whose count of
    requests in flight runs from lease to report, not from send to answer): from the
    number in flight each answer was sent with (:attr:`Observation.in_flight`), by the
    same rule as the client's own limiter. Once learned, it is split between the
    processes as permits (:attr:`Reply.permits`), by what each wanted in flight; the
    429s it explains are no rate signal and do not reach the limiter.

    Args:
        qps: ``"adaptive"`` or a number, as for the client (``None`` is refused: an
            unlimited account needs no coordinator).
        horizon: Seconds of sending one lease covers, shared by the active processes.
        min_block: Fewest slots in one lease (at low rates: calls stay rarer than requests).
        max_block: Most slots in one lease.
        forget_after: Free a leased slot never heard of after this many seconds.
        forget_client: Free the slots of a process not heard from for this many seconds.
        limiter: Use this limiter instead of ``make_rate_limiter(qps)`` (tests).
        clock: Wall clock (``time.time``): slot times are compared across processes.
    """

    def __init__(
        self,
        qps: float | str | None = "adaptive",
        *,
        horizon: float = _HORIZON,
        min_block: int = _MIN_BLOCK,
        max_block: int = _MAX_BLOCK,
        forget_after: float = 120.0,
        forget_client: float = _FORGET_CLIENT,
        limiter: RateLimiter | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if limiter is None:
            if qps is None:
                raise ValueError("an unlimited rate (qps=None) needs no coordinator")
            limiter = make_rate_limiter(qps)
        if isinstance(limiter, AdaptiveRateLimiter):
            limiter.read_counts = False  # its slots are leases, not sends
            limiter.prompt = False  # and answers are reported late, in batches
        if not horizon > 0:
            raise ValueError("horizon must be > 0")
        if max_block < 1:
            raise ValueError("max_block must be >= 1")
        self.limiter = limiter
        self.incarnation = uuid.uuid4().hex
        self._horizon = horizon
        self._min_block = min_block
        self._max_block = max_block
        self._forget_after = forget_after
        self._forget_client = forget_client
        self._clock = clock
        self._seen: dict[str, float] = {}  # process id -> last lease time
        self._heard: dict[str, float] = {}  # process id -> last call of any kind
        self._loads: dict[str, tuple[float, Load]] = {}  # process id -> (when, its load)
        self._peaks: dict[str, tuple[float, int]] = {}  # process id -> (when, most wanted)
        # slot -> (its ticket on the limiter, None if leased past it; lease time; holder)
        self._leased: dict[int, tuple[Ticket | None, float, str]] = {}
        self._holders: dict[str, set[int]] = {}  # process id -> the slots it holds
        self._window = InFlightCap()  # the account's cap on requests in flight, once learned
        # While it is being learned: every accepted request's send and answer times (sorted
        # apart: the number in flight at t is the sends up to t less the answers), and the
        # answers waiting to be read against them once all processes have reported.
        self._sends: list[float] = []
        self._answers: list[float] = []
        self._learning: list[tuple[float, bool]] = []  # (sent at, refused)
        self._counted_from = -math.inf  # the counts hold for sends from then on
        self._settled = 0  # the cap that last held (above it: a probe)
        self._limit_since = -math.inf  # when the cap last changed ...
        self._lowered_at = -math.inf  # ... and went down
        self._misses: deque[float] = deque()  # 429s within the cap lately (see _check)
        self._overs: deque[float] = deque()  # ... and beyond it
        self._verify: list[tuple[float, ErrorInfo]] = []  # 429s at the cap, to be read
        self._at_permits: list[float] = []  # answers sent at a process's permits, to be read
        self._latency = 0.0
        self._refusal_times: deque[float] = deque(maxlen=_REFUSAL_SAMPLES)
        self._explainable = 0.0  # 429s the held cap may still explain (see _EXPLAIN_*)
        self._permits: dict[str, int] = {}
        self._permits_at = -math.inf
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # a rate cut, for watch()
        self.calls = 0
        self.watches = 0
        self.booked = 0
        self.sent = 0
        self.unused = 0
        self.throttles = 0
        self.explained = 0  # 429s the cap on requests in flight explains
        self.relearned = 0  # times a learned cap in flight was dropped to be learned again

    @property
    def generation(self) -> int:
        """Rate cuts so far (the limiter's ``cuts``; 0 for a limiter that never cuts)."""
        cuts = getattr(self.limiter, "cuts", 0)
        return cuts if isinstance(cuts, int) else 0

    @property
    def max_in_flight(self) -> int | None:
        """The account's cap on requests in flight, once learned (else ``None``)."""
        return self._window.limit if self._window.active else None

    def _hear(self, client: str, load: Load | None, now: float) -> None:
        self._heard[client] = now
        if load is not None:
            # What a process wants is its peak over the last second: between two units of
            # work it wants less for a moment, and a permit taken from it then would be
            # in use twice (its requests still in flight) once another process has it.
            peak = self._peaks.get(client)
            if peak is None or load.wanted >= peak[1] or peak[0] < now - _WANT_SECONDS:
                self._peaks[client] = peak = (now, load.wanted)
            self._loads[client] = (now, Load(load.in_flight, peak[1]))
        if len(self._heard) > 1 and min(self._heard.values()) < now - self._forget_client:
            for key in [k for k, t in self._heard.items() if t < now - self._forget_client]:
                # Silent for long: the process died. Its slots and load count no more.
                del self._heard[key]
                self._loads.pop(key, None)
                self._peaks.pop(key, None)
                self._seen.pop(key, None)
                for slot in self._holders.pop(key, set()):
                    self._free(slot)

    def _free(self, slot: int) -> None:
        leased = self._leased.pop(slot, None)
        if leased is not None:
            self._unused(leased[0])

    def _unused(self, ticket: Ticket | None) -> None:
        if ticket is not None:
            self.limiter.observe(SlotUnused(), ticket)
        self.unused += 1

    def _apply(self, client: str, observations: list[Observation]) -> None:
        before = (self.generation, self.max_in_flight)
        now = self._clock()
        self._apply_each(client, observations, now)
        self._learn(now)
        if self.max_in_flight != before[1]:
            self._split(now)  # (the watch calls answer for the permits it takes back)
            if before[1] is None:
                self._settled, self._limit_since = self._window.limit, now
                self._explainable = _EXPLAIN_BURST
        if self.generation != before[0] or self.max_in_flight != before[1]:
            self._changed.notify_all()

    def _apply_each(self, client: str, observations: list[Observation], now: float) -> None:
        for obs in observations:
            if obs.incarnation != self.incarnation:
                continue  # leased by a coordinator before a restart: its tickets are gone
            leased = self._leased.pop(obs.slot, None)
            if leased is None:
                continue
            ticket, _, holder = leased
            self._holders.get(holder, set()).discard(obs.slot)
            if not obs.sent:
                self._unused(ticket)
                continue
            self.sent += 1
            error = None if obs.error is None else rebuild_error(obs.error)
            refused = isinstance(error, RateLimitError) and not isinstance(
                error, QuotaExceededError
            )
            self.throttles += refused
            self._record(obs, refused)
            if not self._window.active:
                # Learning: each answer is read later against what every process had in
                # flight when it was sent (see _learn); meanwhile a 429 is a rate signal,
                # as for the client's own limiter until it knows of a cap in flight.
                self._learning.append((obs.sent_at, refused))
            elif error is None:
                self._explainable = min(_EXPLAIN_BURST, self._explainable + 1.0 / _EXPLAIN_ANSWERS)
                if obs.in_flight >= self._permits.get(client, 0) and (
                    obs.sent_at >= self._limit_since
                ):
                    # Sent with all this process's permits in use: whether the account
                    # had the whole cap in flight (the others' permits in use too) is
                    # read once every process has reported (see _learn).
                    self._at_permits.append(obs.sent_at)
            elif refused:
                # Learned. The process this 429 came to kept to its permits, and so did
                # the others, so the permits add up to more than the cap allows: while
                # the cap is probed (one more permit now and then), that is the probe
                # failing, and the cap goes back down at once.
                self.explained += 1
                info = obs.error or describe_error(error)
                if self._window.limit <= self._settled:
                    if self._explainable < 1.0:
                        # At a cap that held, more 429s than its probes and races cost:
                        # the limit is on the rate too. Learn the cap again (the limiter
                        # hears of this 429).
                        self._unused(ticket)
                        self._relearn(obs.sent_at, info)
                        continue
                    self._explainable -= 1.0
                if self._window.limit > self._settled:
                    # (one more in flight than the cap that held: back to that cap)
                    if not self._window.throttled(self._settled + 1):
                        self._relearn(obs.sent_at, info)
                    self._settled, self._limit_since = self._window.limit, now
                else:
                    # At a cap that held: permits in transit between processes, or the
                    # cap moved down, or it is a rate limit after all. Read against the
                    # exact count once every process has reported (see _learn).
                    self._verify.append((obs.sent_at, info))
                self._unused(ticket)
                continue
            if ticket is not None:
                self.limiter.observe(error, ticket)
            elif error is not None:
                # A slot leased past the limiter while the cap held the sends: it hears
                # of the 429 all the same.
                self.limiter.observe(error)

    def _record(self, obs: Observation, refused: bool) -> None:
        if not obs.sent_at or obs.answered_at < obs.sent_at:
            return
        if refused:
            self._refusal_times.append(obs.answered_at - obs.sent_at)
            return  # (a refused request takes no place at the service)
        bisect.insort(self._sends, obs.sent_at)
        bisect.insort(self._answers, obs.answered_at)
        took = obs.answered_at - obs.sent_at
        self._latency = took if not self._latency else 0.9 * self._latency + 0.1 * took

    def _in_flight_at(self, t: float) -> int:
        """Accepted requests in flight at the service when a request sent at ``t`` reached
        it (as far as reported): those sent up to ``t``, less those answered by then. An
        answer seen a little after ``t`` was on its way back when the request arrived:
        the service had freed its slot (up to half the shortest 429 round trip later)."""
        lead = _LEAD_SHARE * min(self._refusal_times, default=0.0)
        ended = bisect.bisect_right(self._answers, t + lead)
        return bisect.bisect_right(self._sends, t) - ended

    def _check(self, until: float) -> None:
        """Read the 429s that came at a cap that held, sent up to ``until``, against the
        exact number in flight: more than the cap, a race; one more than the cap, the cap
        is lower (it goes down); fewer, the cap moved down or the limit is on the rate
        (see ``InFlightCap.throttled``). One such 429 may be noise (a server slow to free a
        slot, a client slow to read an answer); ``_MISSES`` within ``_MISS_SECONDS`` are
        not: the cap is learned again, and the limiter hears of the 429. As many races
        in that time mean the cap is one too high (the permits add up to more than it)."""
        due = [item for item in self._verify if item[0] <= until]
        if not due:
            return
        self._verify = [item for item in self._verify if item[0] > until]
        for sent_at, info in sorted(due):
            if not self._window.active or sent_at < self._counted_from:
                continue
            n = self._in_flight_at(sent_at) + 1  # (the 429 itself is the one more)
            trial = copy.copy(self._window)
            if not trial.throttled(n):
                self._misses.append(sent_at)
                while self._misses[0] < sent_at - _MISS_SECONDS:
                    self._misses.popleft()
                if len(self._misses) >= _MISSES:
                    self._relearn(sent_at, info)
                    break
                continue
            limit = self._window.limit
            self._window = trial
            if trial.limit < 1:
                self._relearn(sent_at, info)  # (no request may go: a cap is not that)
                break
            if sent_at > self._lowered_at + 2.0 * (self._horizon + self._latency):
                self._overs.append(sent_at)  # (sent once every process knew the cap)
            while self._overs and self._overs[0] < sent_at - _MISS_SECONDS:
                self._overs.popleft()
            if len(self._overs) >= _MISSES and trial.limit == limit > 1:
                # 429s keep coming at a cap taken to hold: it is one too high (a probe
                # passed without meeting it), or a rate limit refuses too (the limiter
                # hears of it: it paces the sends again if so).
                trial.limit -= 1
                self._overs.clear()
                self.explained -= 1
                self.limiter.observe(rebuild_error(info))
            if self._window.limit != limit:
                self._settled, self._limit_since = self._window.limit, until
                self._lowered_at = until

    def _read_at_permits(self, until: float, now: float) -> None:
        """Read the answers sent up to ``until`` at their process's permits against the
        account's count then: sent with the whole cap in flight, the cap was reached and
        held (a probe of one more passed). A process at its permits is no evidence alone:
        another's permits may have been idle, and a cap raised on that is found too high
        only by the 429s once every process is busy."""
        due = [t for t in self._at_permits if t <= until]
        if not due:
            return
        self._at_permits = [t for t in self._at_permits if t > until]
        for sent_at in sorted(due):
            if not self._window.active or sent_at < max(self._counted_from, self._limit_since):
                continue  # (counts forgotten, or sent before the cap last changed)
            n = self._in_flight_at(sent_at)
            if n < self._window.limit:
                continue
            limit = self._window.limit
            self._window.ok(n)
            if self._window.limit != limit:
                self._settled, self._limit_since = limit, now  # (a probe begins)

    def _relearn(self, sent_at: float, info: ErrorInfo) -> None:
        """A 429 the cap does not explain: it is learned again, and the limiter hears of
        the 429 (late, if it was held back as explained)."""
        self.explained -= 1
        self.relearned += 1
        self._window = InFlightCap()
        self._misses.clear()
        self._overs.clear()
        self._learning.append((sent_at, True))
        self._verify.clear()
        self.limiter.observe(rebuild_error(info))

    def _learn(self, now: float) -> None:
        """Read each answer, once every process has reported on its send time, against the
        number in flight then (in the order they were sent)."""
        settle = min(_MAX_SETTLE, _SETTLE + 3.0 * self._latency)
        self._check(now - settle)
        self._read_at_permits(now - settle, now)
        due = sorted(item for item in self._learning if item[0] <= now - settle)
        if due:
            self._learning = [item for item in self._learning if item[0] > now - settle]
        for sent_at, refused in due:
            if sent_at < self._counted_from or self._window.active:
                continue  # reported too late to count, or learned meanwhile
            n = self._in_flight_at(sent_at)
            if refused:
                self._window.throttled(n + 1)  # (an accepted request is among the sends)
            else:
                self._window.ok(n)
        if self._window.active and self._window._over_ok > self._window._over_bad:
            # Exact counts make a cap in flight plain: above it, a send is refused, not
            # answered, nearly always. More answered than refused above it is a rate
            # limit met in bursts (a hold and its release): not a cap. Look afresh.
            self._window = InFlightCap()
        if self._window.active:
            self._learning.clear()  # learned: each answer is now read as it comes
        # Forget the requests answered before any send still to be read (each is in both
        # lists, so the counts at later times stay the same without it).
        pending = [item[0] for item in self._learning] + [item[0] for item in self._verify]
        pending += self._at_permits
        oldest = min(pending, default=now - _MAX_SETTLE)
        self._counted_from = max(self._counted_from, min(oldest, now - _MAX_SETTLE))
        gone = bisect.bisect_left(self._answers, self._counted_from)
        if gone:
            del self._answers[:gone]
            del self._sends[:gone]

    def _forget(self, now: float) -> None:
        old = [k for k, (_, t, _) in self._leased.items() if t < now - self._forget_after]
        for key in old:
            self._holders.get(self._leased[key][2], set()).discard(key)
            self._free(key)

    def _split(self, now: float) -> None:
        """Share the learned cap between the processes by what each wanted in flight
        (water-filling: none gets more than it wants while another wants more)."""
        self._permits_at = now
        cap = self.max_in_flight
        if cap is None:
            self._permits = {}
            return
        wanted = {
            client: max(1, load.wanted, load.in_flight)
            for client, (t, load) in self._loads.items()
            if t > now - _LOAD_SECONDS
        }
        # Equal claims keep the permits they held: a permit that moves between processes
        # is in use twice for a moment (the old holder's request is still in flight).
        # With fewer permits than processes, they go round in turn (by the second).
        before, order = self._permits, list(wanted)
        if cap < len(order):
            turn = int(now) % len(order)
            order = order[turn:] + order[:turn]
        else:
            order.sort(key=lambda c: before.get(c, 0))
        order.sort(key=lambda c: wanted[c])
        self._permits = {}
        left = cap
        for i, client in enumerate(order):
            share = min(wanted[client], left // (len(order) - i))
            self._permits[client] = share
            left -= share
        for client in order[::-1]:  # what the smallest claims leave goes to the largest
            if left <= 0:
                break
            self._permits[client] += 1
            left -= 1

    def _block_size(self, now: float) -> int:
        active = sum(1 for t in self._seen.values() if t > now - 1.0)
        rate = self.limiter.rate
        if rate is None:
            return self._max_block
        share = math.ceil(rate * self._horizon / max(1, active))
        return max(min(self._min_block, self._max_block), min(self._max_block, share))

    def _reply(self, client: str, slots: list[Slot], retry_in: float = 0.0) -> Reply:
        now = self._clock()
        permits = None
        if self.max_in_flight is not None:
            if now - self._permits_at > self._horizon or client not in self._permits:
                self._split(now)
            permits = self._permits.get(client, 1)
        return Reply(
            self.incarnation,
            self.generation,
            slots,
            retry_in,
            self.limiter.rate,
            permits,
        )

    def lease(
        self,
        client: str,
        observations: list[Observation],
        want: int | None = None,
        load: Load | None = None,
    ) -> Reply:
        """Apply ``observations``, then book a block of send slots for ``client`` (at most
        ``want``: a process that cannot send faster books no slots it would waste);
        ``load`` is what the process has in flight."""
        with self._lock:
            self.calls += 1
            now = self._clock()
            self._hear(client, load, now)
            self._apply(client, observations)
            self._seen[client] = now
            for key in [k for k, t in self._seen.items() if t < now - 10.0]:
                del self._seen[key]
            if len(self._leased) > 1000:
                self._forget(now)
            slots: list[Slot] = []
            size = self._block_size(now)
            if want is not None:
                size = max(1, min(size, want))
            if self.max_in_flight is not None and self._latency > 0:
                # (what the process's permits let it send in the horizon: see _LEASE_PERMITS)
                permits = self._permits.get(client, 1)
                use = math.ceil(_LEASE_PERMITS * permits * self._horizon / self._latency)
                size = max(1, min(size, use))
            held = self._holders.setdefault(client, set())
            for _ in range(size):
                ticket = self.limiter.acquire()
                if ticket.epoch < 0:  # not a slot: the limiter asks to come back later
                    if not slots:
                        return self._reply(client, [], max(ticket.wait, 0.001))
                    break
                if not self.limiter.confirm(ticket):
                    continue
                slot = next(self._ids)
                self._leased[slot] = (ticket, now, client)
                held.add(slot)
                slots.append(Slot(slot, now + ticket.wait, self.generation))
            self.booked += len(slots)
            return self._reply(client, slots, 0.0 if slots else 0.01)

    def observe(
        self, client: str, observations: list[Observation], load: Load | None = None
    ) -> Reply:
        """Apply ``observations``; the reply carries the current generation and permits."""
        with self._lock:
            self.calls += 1
            self._hear(client, load, self._clock())
            self._apply(client, observations)
            return self._reply(client, [])

    def changed(self, client: str, generation: int, permits: int | None = None) -> bool:
        """Whether the rate was cut past ``generation``, or ``client`` holds fewer than
        ``permits`` now (what a :meth:`watch` call waits for)."""
        if self.generation > generation:
            return True
        if permits is None or self.max_in_flight is None:
            return False
        return self._permits.get(client, permits) < permits

    def watch(
        self,
        client: str,
        generation: int,
        permits: int | None = None,
        timeout: float = _WATCH_TIMEOUT,
    ) -> Reply:
        """Answer once the rate is cut past ``generation``, or ``client``'s permits fall
        below ``permits`` (or after ``timeout`` seconds): each process keeps one such
        call open, so a cut voids its held slots, and a failed probe of the cap on
        requests in flight takes its permit back, within a round trip."""
        with self._changed:
            self.watches += 1
            self._heard[client] = self._clock()
            self._changed.wait_for(lambda: self.changed(client, generation, permits), timeout)
            return self._reply(client, [])

    def status(self) -> dict[str, Any]:
        """Counters for monitoring and tests."""
        with self._lock:
            return {
                "rate": self.limiter.rate,
                "max_in_flight": self.max_in_flight,
                "permits": dict(self._permits),
                "calls": self.calls,
                "watches": self.watches,
                "booked": self.booked,
                "sent": self.sent,
                "unused": self.unused,
                "throttles": self.throttles,
                "explained": self.explained,
                "relearned": self.relearned,
                "generation": self.generation,
                "outstanding": len(self._leased),
                "incarnation": self.incarnation,
            }


H = TypeVar("H")


class CoordinatorLink(ABC, Generic[H]):
    """How a :class:`SharedRateLimiter` reaches its coordinator: calls return a handle
    (``H``) that can be polled and waited on."""

    @abstractmethod
    def lease(self, client: str, observations: list[Observation], want: int, load: Load) -> H:
        """Start a :meth:`RateCoordinator.lease` call."""

    @abstractmethod
    def observe(self, client: str, observations: list[Observation], load: Load) -> H:
        """Start a :meth:`RateCoordinator.observe` call."""

    @abstractmethod
    def watch(self, client: str, generation: int, permits: int | None) -> H:
        """Start a :meth:`RateCoordinator.watch` call."""

    @abstractmethod
    def ready(self, handles: list[H]) -> list[H]:
        """The handles whose reply has arrived (never blocks)."""

    @abstractmethod
    def result(self, handle: H, timeout: float) -> Reply:
        """Wait for a reply; raise if it cannot come (the caller retries)."""


_NOT_A_SLOT = -1


class SharedRateLimiter(RateLimiter, Generic[H]):
    """The local side of a coordinated limit: a :class:`RateLimiter` for one client.

    ``acquire`` hands out the next slot of the leased block (leasing the next block in
    the background when this one runs low, at most every ``lease_interval`` seconds);
    ``confirm`` refuses a slot booked before a rate cut the coordinator has told of since
    (a lease's reply, or the :meth:`RateCoordinator.watch` call each side keeps open);
    ``observe`` queues the answer and sends the queue to the coordinator with the next
    lease, every ``flush_interval`` seconds, every ``flush_size`` answers, or at once for
    a throttle. Slots not used (dropped as too late or cut) go
    back the same way, so the coordinator's limiter hears of every slot once.

    Once the coordinator has learned a cap on requests in flight, it grants this process
    a number of permits (:attr:`Reply.permits`): ``acquire`` then hands out no slot while
    that many requests are in flight here (the caller looks again within a few percent
    of an answer's time), and ``confirm`` keeps a slot for later if another request took
    the last permit meanwhile. A request counts from ``confirm`` (its send) to
    ``observe`` (its answer).

    Args:
        link: The way to the coordinator.
        flush_interval: Longest time a success waits before it is forwarded.
        flush_size: Forward when this many answers are queued.
        max_late: A slot older than this many seconds is handed back, not used late (a
            late slot would bunch up with the slots of other processes).
        prefetch_within: Lease the next block in the background once the held slots end
            within this many seconds.
        lease_interval: Lease at most this often (unless the coordinator asked to come
            back sooner): the fewer the calls, the larger each block.
        horizon: Ask for about this many seconds of this process's recent sending per
            lease (twice its demand: room to grow), at least ``min_block`` slots.
        retry_for: Keep retrying an unreachable coordinator this long (it restarts),
            then raise :class:`~opensearch_mm.errors.OpenSearchMMError`.
        clock: Wall clock, as the coordinator's.
    """

    def __init__(
        self,
        link: CoordinatorLink[H],
        *,
        flush_interval: float = _FLUSH_INTERVAL,
        flush_size: int = _FLUSH_SIZE,
        max_late: float = _MAX_LATE,
        prefetch_within: float = _PREFETCH_WITHIN,
        horizon: float = _HORIZON,
        lease_interval: float = _LEASE_INTERVAL,
        retry_for: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._link = link
        self._prefetch_within = prefetch_within
        self._id = uuid.uuid4().hex
        self._flush_interval = flush_interval
        self._flush_size = flush_size
        self._max_late = max_late
        self._retry_for = retry_for
        self._clock = clock
        self._lock = threading.Lock()
        self._slots: deque[tuple[str, Slot]] = deque()
        self._incarnation: str | None = None
        self._generation = 0
        self._retry_in = 0.0
        self._not_before = 0.0
        self._horizon = horizon
        self._lease_interval = lease_interval
        self._last_lease = -math.inf
        self._used: deque[float] = deque()  # when each recent slot was handed out
        self._timer: threading.Timer | None = None
        self._acquires = 0  # acquire() calls so far ...
        self._idle_from = -1  # ... when the last unit of work ended (flush_soon)
        self._tickets: dict[int, tuple[str, Slot]] = {}  # local ticket -> leased slot
        self._ticket_ids = itertools.count()
        self._queue: list[Observation] = []
        self._last_flush = clock()
        self._prefetch: H | None = None
        self._watch: H | None = None
        self._watched: int | None = None  # the permits the open watch call knows of
        self._pending: list[H] = []
        self._rate: float | None = None
        self._permits: int | None = None  # requests this process may have in flight
        self._in_flight: dict[int, tuple[float, int]] = {}  # ticket -> (sent at, account's n)
        self._line = SlotLine()  # requests waiting for a free permit, in order
        self._waiting: set[int] = set()  # threads told to wait for a permit ...
        self._wanted = 0  # ... and the most in flight wanted since the last report
        self._latency = 0.0  # seconds from send to answer (moving average)
        self._last_report = -math.inf  # when the coordinator last heard this process's load
        self._shut = ShutWatch()  # how long this process has heard only refusals ...
        self._refused_sent: dict[int, float] = {}  # ... and when its refused ones were sent

    # -- RateLimiter -------------------------------------------------------------------

    @property
    def rate(self) -> float | None:
        """The account's rate as last heard from the coordinator."""
        return self._rate

    def reserve(self) -> float:
        return self.acquire().wait

    def acquire(self) -> Ticket:
        return self._acquire(0)

    def rebook(self, ticket: Ticket) -> Ticket:
        # (A ticket that is not a slot carries its waiter id as its token.)
        return self._acquire(ticket.token if ticket.epoch == _NOT_A_SLOT else 0)

    def _acquire(self, waiter: int) -> Ticket:
        """Lease or hand out a slot (``waiter``: the request's id, if it waits in line
        for a permit)."""
        with self._lock:
            self._acquires += 1
            self._poll()
            now = self._clock()
            if self._permits is not None:
                poll = min(_MAX_POLL, max(_MIN_POLL, _POLL_SHARE * (self._latency or 0.25)))
                free = self._permits - len(self._in_flight)
                ahead = self._line.ahead(now, waiter, poll)
                if free <= ahead:
                    # Every permit is in use, or the free ones are for those waiting
                    # before this request: look again soon, before an answer's time is
                    # out (a freed permit then idles for little of a request's life).
                    waiter, wait = self._line.wait(now, waiter, ahead, free, poll)
                    self._waiting.add(threading.get_ident())
                    self._want()
                    if now - self._last_report >= self._lease_interval:
                        # Report what this process waits for now and then, unasked: the
                        # coordinator moves permits to where they are wanted, and this
                        # process hears of any it is given.
                        self._send_queue(always=True)
                    return Ticket(max(_MIN_POLL, wait), _NOT_A_SLOT, token=waiter)
                self._line.leave(waiter)
            elif self._line:
                self._line.clear()  # no permits any more: no line
            self._waiting.discard(threading.get_ident())
            self._drop_unusable(now)
            # No lease before the coordinator said to come back, nor sooner than
            # ``lease_interval`` after the last one (so the limiter has a block's room).
            ready_at = max(self._not_before, self._last_lease + self._lease_interval)
            if not self._slots and self._prefetch is None and now < ready_at:
                return Ticket(ready_at - now, _NOT_A_SLOT)
            if (
                self._prefetch is None
                and now >= ready_at
                and (not self._slots or self._slots[-1][1].at - now < self._prefetch_within)
            ):
                # The held slots run out soon: lease the next block in the background.
                self._prefetch = self._lease()
            if not self._slots:
                if self._prefetch is None:
                    self._prefetch = self._lease()
                handle, self._prefetch = self._prefetch, None
                self._absorb(self._wait(handle))
                now = self._clock()
                self._drop_unusable(now)
                if not self._slots:  # the limiter asked to come back later
                    return Ticket(max(self._not_before - now, 0.001), _NOT_A_SLOT)
            incarnation, slot = self._slots.popleft()
            self._used.append(now)
            ticket_id = next(self._ticket_ids)
            self._tickets[ticket_id] = (incarnation, slot)
            return Ticket(max(0.0, slot.at - now), ticket_id)

    def confirm(self, ticket: Ticket) -> bool:
        with self._lock:
            if ticket.epoch == _NOT_A_SLOT:
                return False
            self._poll()
            held = self._tickets.get(ticket.epoch)
            if held is None:
                return False
            del self._tickets[ticket.epoch]
            if not self._usable(*held):
                self._queue.append(Observation(held[0], held[1].slot, False))
                return False
            if self._permits is not None and len(self._in_flight) >= self._permits:
                # Another request took the last permit while this one waited for its
                # slot: keep the slot for the next caller.
                self._slots.appendleft(held)
                return False
            self._tickets[ticket.epoch] = held
            self._in_flight[ticket.epoch] = (self._clock(), len(self._in_flight) + 1)
            self._want()
            return True

    def observe(self, error: BaseException | None, ticket: Ticket | None = None) -> None:
        with self._lock:
            held = self._tickets.pop(ticket.epoch, None) if ticket is not None else None
            if held is not None:
                assert ticket is not None
                sent_at, n = self._in_flight.pop(ticket.epoch, (None, 0))
                if sent_at is not None and error is None:
                    took = max(0.0, self._clock() - sent_at)  # (for the poll interval)
                    self._latency = took if not self._latency else 0.9 * self._latency + 0.1 * took
                info = None if error is None else describe_error(error)
                now = self._clock()
                if error is None:
                    self._shut.accepted(now)
                elif is_throttling(error) and sent_at is not None:
                    self._shut.refused(sent_at)
                    if len(self._refused_sent) >= _REFUSED_KEPT:
                        del self._refused_sent[next(iter(self._refused_sent))]
                    self._refused_sent[ticket.epoch] = sent_at
                self._queue.append(
                    Observation(held[0], held[1].slot, True, info, n, sent_at or 0.0, now)
                )
            if (
                isinstance(error, RateLimitError)
                or len(self._queue) >= self._flush_size
                or self._clock() - self._last_flush >= self._flush_interval
            ):
                self._send_queue()
            self._poll()

    def shut_for(self, ticket: Ticket | None) -> float:
        with self._lock:
            sent = self._refused_sent.pop(ticket.epoch, None) if ticket is not None else None
            return 0.0 if sent is None else self._shut.shut_for(sent, self._clock())

    def accepted_count(self) -> int:
        return self._shut.accepted_total

    def flush(self) -> None:
        """Forward the queued answers now."""
        with self._lock:
            self._send_queue()
            self._poll()

    def flush_soon(self) -> None:
        """Forward the queued answers within ``flush_interval`` seconds, unless a lease
        carries them first (call when a unit of work ends: the process may go idle, and
        the coordinator must hear of every slot it holds)."""
        with self._lock:
            self._idle_from = self._acquires
            if self._timer is not None and self._timer.is_alive():
                return
            self._timer = threading.Timer(self._flush_interval, self._flush_idle)
            self._timer.daemon = True
            self._timer.start()

    def _flush_idle(self) -> None:
        with self._lock:
            if self._acquires == self._idle_from:
                # No request since the work ended: the held slots go back too.
                for incarnation, slot in self._slots:
                    if incarnation == self._incarnation:
                        self._queue.append(Observation(incarnation, slot.slot, False))
                self._slots.clear()
            self._drop_unusable(self._clock())
            self._send_queue()
            self._poll()

    # -- internals (lock held) ----------------------------------------------------------

    def _want(self) -> None:
        self._wanted = max(self._wanted, len(self._in_flight) + len(self._waiting))

    def _load(self) -> Load:
        """This process's load for the coordinator; the peak of what it wanted starts over."""
        self._last_report = self._clock()
        load = Load(len(self._in_flight), max(self._wanted, len(self._in_flight)))
        self._wanted = len(self._in_flight)
        self._waiting.clear()  # (the callers still waiting add themselves at their next look)
        return load

    def _lease(self) -> H:
        # Ask for twice what this process used per horizon lately: enough to grow, not so
        # much that a process held back by its own work books slots it would hand back.
        now = self._clock()
        self._last_lease = now
        while self._used and self._used[0] < now - _DEMAND_SECONDS:
            self._used.popleft()
        demand = len(self._used) / _DEMAND_SECONDS * self._horizon
        want = max(_MIN_BLOCK, math.ceil(_DEMAND_GAIN * demand))
        return self._link.lease(self._id, self._take_queue(), want, self._load())

    def _send_queue(self, always: bool = False) -> None:
        if self._queue or always:
            self._pending.append(self._link.observe(self._id, self._take_queue(), self._load()))

    def _usable(self, incarnation: str, slot: Slot) -> bool:
        return incarnation == self._incarnation and slot.generation >= self._generation

    def _take_queue(self) -> list[Observation]:
        queue, self._queue = self._queue, []
        self._last_flush = self._clock()
        return queue

    def _drop_unusable(self, now: float) -> None:
        kept: deque[tuple[str, Slot]] = deque()
        for incarnation, slot in self._slots:
            if slot.at < now - self._max_late or not self._usable(incarnation, slot):
                if incarnation == self._incarnation:
                    self._queue.append(Observation(incarnation, slot.slot, False))
            else:
                kept.append((incarnation, slot))
        self._slots = kept

    def _absorb(self, reply: Reply) -> None:
        if not reply.slots and reply.retry_in > 0:
            # The limiter asked to come back later: then, and no sooner.
            self._not_before = self._clock() + max(reply.retry_in, 0.001)
            self._last_lease = -math.inf
        if reply.incarnation != self._incarnation:
            self._incarnation = reply.incarnation
            self._generation = reply.generation
        elif reply.generation > self._generation:
            # A rate cut: the held slots are void, so the next block may come at once.
            self._generation = reply.generation
            self._last_lease = -math.inf
        self._rate = reply.rate
        self._permits = reply.permits
        self._retry_in = reply.retry_in
        if reply.slots:
            self._slots.extend((reply.incarnation, slot) for slot in reply.slots)

    def _poll(self) -> None:
        if self._watch is not None and (self._permits or 0) > (self._watched or 0):
            # More permits than the open call watches for: a new call, so the permit is
            # taken back within a round trip if the probe fails (the old call is left to
            # answer at its timeout, unread).
            self._watch = None
        if self._watch is None and self._incarnation is not None:
            # One call kept open that answers at the next rate cut, or when this process's
            # permits fall (see RateCoordinator.watch).
            self._watched = self._permits
            self._watch = self._link.watch(self._id, self._generation, self._permits)
        handles = list(self._pending)
        if self._prefetch is not None:
            handles.append(self._prefetch)
        if self._watch is not None:
            handles.append(self._watch)
        if not handles:
            return
        for handle in self._link.ready(handles):
            if self._prefetch is not None and handle is self._prefetch:
                self._prefetch = None
            elif self._watch is not None and handle is self._watch:
                self._watch = None  # renewed at the next poll, with the new generation
            else:
                self._pending.remove(handle)
            # A lost flush loses its observations; the limit itself still holds.
            with contextlib.suppress(Exception):
                self._absorb(self._link.result(handle, timeout=0.0))

    def _wait(self, handle: H) -> Reply:
        deadline = time.monotonic() + self._retry_for
        delay = 0.05
        while True:
            try:
                return self._link.result(handle, timeout=max(1.0, self._retry_for))
            except Exception as exc:
                if time.monotonic() >= deadline:
                    raise OpenSearchMMError(
                        f"the shared rate coordinator did not answer for {self._retry_for:.0f} s "
                        f"({type(exc).__name__}: {exc})"
                    ) from exc
                time.sleep(delay)
                delay = min(1.0, delay * 2)
                handle = self._lease()
