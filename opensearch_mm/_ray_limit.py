"""One rate limit shared by many processes: a coordinator that leases send slots in blocks.

The coordinator owns one ordinary limiter (:func:`~opensearch_mm.ratelimit.make_rate_limiter`),
so every adaptive rule lives once, in :mod:`opensearch_mm.ratelimit`. Each process holds a
:class:`SharedRateLimiter`: it books send slots from a block leased from the coordinator
(one remote call per block, not per request) and forwards what the service answered
(successes in batches, throttles at once) for the coordinator's limiter to learn from.
Each process also keeps one call open that answers at the next rate cut, so the slots it
holds from before the cut are dropped within a round trip.

Nothing here imports Ray: the coordinator is a plain class (``opensearch_mm.ray`` runs it
as an actor) and the local side talks to it through a :class:`CoordinatorLink`.
"""

from __future__ import annotations

import contextlib
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
from .errors import OpenSearchMMError, RateLimitError
from .ratelimit import RateLimiter, Ticket, make_rate_limiter

__all__ = [
    "CoordinatorLink",
    "ErrorInfo",
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

ErrorInfo = tuple[str, str, int | None, str | None, float | None]
"""An error reduced to what a limiter may look at: class name, message, HTTP status,
service code, ``Retry-After`` seconds. Exceptions of this package do not all survive
pickling (keyword-only constructors), so observations travel in this form."""


class Observation(NamedTuple):
    """What became of one leased slot: the coordinator ``incarnation`` that leased it, its
    ``slot`` id, whether a request was ``sent`` in it, and the answer's error (``None``
    for a success)."""

    incarnation: str
    slot: int
    sent: bool
    error: ErrorInfo | None = None


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
        )
    return (type(error).__name__, str(error), None, None, None)


def rebuild_error(info: ErrorInfo) -> BaseException:
    """An exception equivalent to the one :func:`describe_error` described."""
    name, message, status, code, retry_after = info
    cls = getattr(errors, name, None)
    if isinstance(cls, type) and issubclass(cls, errors.APIError) and status is not None:
        return cls(message, status_code=status, code=code, retry_after=retry_after)
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
    no request used is handed back as :class:`SlotUnused`; one never heard of again
    (its process died) is freed after ``forget_after`` seconds.

    A block covers about ``horizon`` seconds of the current rate, split between the
    processes that leased in the last second, so an idle or dead process wastes at most
    that much of the account's capacity.

    Args:
        qps: ``"adaptive"`` or a number, as for the client (``None`` is refused: an
            unlimited account needs no coordinator).
        horizon: Seconds of sending one lease covers, shared by the active processes.
        min_block: Fewest slots in one lease (at low rates: calls stay rarer than requests).
        max_block: Most slots in one lease.
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
        limiter: RateLimiter | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if limiter is None:
            if qps is None:
                raise ValueError("an unlimited rate (qps=None) needs no coordinator")
            limiter = make_rate_limiter(qps)
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
        self._clock = clock
        self._seen: dict[str, float] = {}  # process id -> last lease time
        self._leased: dict[int, tuple[Ticket, float]] = {}  # slot -> (ticket, lease time)
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # a rate cut, for watch()
        self.calls = 0
        self.watches = 0
        self.booked = 0
        self.sent = 0
        self.unused = 0
        self.throttles = 0

    @property
    def generation(self) -> int:
        """Rate cuts so far (the limiter's ``cuts``; 0 for a limiter that never cuts)."""
        cuts = getattr(self.limiter, "cuts", 0)
        return cuts if isinstance(cuts, int) else 0

    def _apply(self, observations: list[Observation]) -> None:
        before = self.generation
        self._apply_each(observations)
        if self.generation != before:
            self._changed.notify_all()

    def _apply_each(self, observations: list[Observation]) -> None:
        for obs in observations:
            if obs.incarnation != self.incarnation:
                continue  # leased by a coordinator before a restart: its tickets are gone
            leased = self._leased.pop(obs.slot, None)
            if leased is None:
                continue
            ticket = leased[0]
            if not obs.sent:
                self.limiter.observe(SlotUnused(), ticket)
                self.unused += 1
                continue
            error = None if obs.error is None else rebuild_error(obs.error)
            self.limiter.observe(error, ticket)
            self.sent += 1
            if isinstance(error, RateLimitError):
                self.throttles += 1

    def _forget(self, now: float) -> None:
        old = [k for k, (_, t) in self._leased.items() if t < now - self._forget_after]
        for key in old:
            ticket, _ = self._leased.pop(key)
            self.limiter.observe(SlotUnused(), ticket)
            self.unused += 1

    def _block_size(self, now: float) -> int:
        active = sum(1 for t in self._seen.values() if t > now - 1.0)
        rate = self.limiter.rate
        if rate is None:
            return self._max_block
        share = math.ceil(rate * self._horizon / max(1, active))
        return max(min(self._min_block, self._max_block), min(self._max_block, share))

    def _reply(self, slots: list[Slot], retry_in: float = 0.0) -> Reply:
        return Reply(self.incarnation, self.generation, slots, retry_in, self.limiter.rate)

    def lease(self, client: str, observations: list[Observation], want: int | None = None) -> Reply:
        """Apply ``observations``, then book a block of send slots for ``client`` (at most
        ``want``: a process that cannot send faster books no slots it would waste)."""
        with self._lock:
            self.calls += 1
            self._apply(observations)
            now = self._clock()
            self._seen[client] = now
            for key in [k for k, t in self._seen.items() if t < now - 10.0]:
                del self._seen[key]
            if len(self._leased) > 1000:
                self._forget(now)
            slots: list[Slot] = []
            size = self._block_size(now)
            if want is not None:
                size = max(1, min(size, want))
            for _ in range(size):
                ticket = self.limiter.acquire()
                if ticket.epoch < 0:  # not a slot: the limiter asks to come back later
                    if not slots:
                        return self._reply([], max(ticket.wait, 0.001))
                    break
                if not self.limiter.confirm(ticket):
                    continue
                slot = next(self._ids)
                self._leased[slot] = (ticket, now)
                slots.append(Slot(slot, now + ticket.wait, self.generation))
            self.booked += len(slots)
            return self._reply(slots, 0.0 if slots else 0.01)

    def observe(self, client: str, observations: list[Observation]) -> Reply:
        """Apply ``observations``; the reply carries the current generation."""
        with self._lock:
            self.calls += 1
            self._apply(observations)
            return self._reply([])

    def watch(self, client: str, generation: int, timeout: float = _WATCH_TIMEOUT) -> Reply:
        """Answer once the rate is cut past ``generation`` (or after ``timeout`` seconds):
        each process keeps one such call open, so a cut voids its held slots within a
        round trip, not at its next lease."""
        with self._changed:
            self.watches += 1
            self._changed.wait_for(lambda: self.generation > generation, timeout)
            return self._reply([])

    def status(self) -> dict[str, Any]:
        """Counters for monitoring and tests."""
        with self._lock:
            return {
                "rate": self.limiter.rate,
                "calls": self.calls,
                "watches": self.watches,
                "booked": self.booked,
                "sent": self.sent,
                "unused": self.unused,
                "throttles": self.throttles,
                "generation": self.generation,
                "outstanding": len(self._leased),
                "incarnation": self.incarnation,
            }


H = TypeVar("H")


class CoordinatorLink(ABC, Generic[H]):
    """How a :class:`SharedRateLimiter` reaches its coordinator: calls return a handle
    (``H``) that can be polled and waited on."""

    @abstractmethod
    def lease(self, client: str, observations: list[Observation], want: int) -> H:
        """Start a :meth:`RateCoordinator.lease` call."""

    @abstractmethod
    def observe(self, client: str, observations: list[Observation]) -> H:
        """Start a :meth:`RateCoordinator.observe` call."""

    @abstractmethod
    def watch(self, client: str, generation: int) -> H:
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
        self._pending: list[H] = []
        self._rate: float | None = None

    # -- RateLimiter -------------------------------------------------------------------

    @property
    def rate(self) -> float | None:
        """The account's rate as last heard from the coordinator."""
        return self._rate

    def reserve(self) -> float:
        return self.acquire().wait

    def acquire(self) -> Ticket:
        with self._lock:
            self._acquires += 1
            self._poll()
            now = self._clock()
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
            if self._usable(*held):
                return True
            del self._tickets[ticket.epoch]
            self._queue.append(Observation(held[0], held[1].slot, False))
            return False

    def observe(self, error: BaseException | None, ticket: Ticket | None = None) -> None:
        with self._lock:
            held = self._tickets.pop(ticket.epoch, None) if ticket is not None else None
            if held is not None:
                info = None if error is None else describe_error(error)
                self._queue.append(Observation(held[0], held[1].slot, True, info))
            if (
                isinstance(error, RateLimitError)
                or len(self._queue) >= self._flush_size
                or self._clock() - self._last_flush >= self._flush_interval
            ):
                self._send_queue()
            self._poll()

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

    def _lease(self) -> H:
        # Ask for twice what this process used per horizon lately: enough to grow, not so
        # much that a process held back by its own work books slots it would hand back.
        now = self._clock()
        self._last_lease = now
        while self._used and self._used[0] < now - _DEMAND_SECONDS:
            self._used.popleft()
        demand = len(self._used) / _DEMAND_SECONDS * self._horizon
        want = max(_MIN_BLOCK, math.ceil(_DEMAND_GAIN * demand))
        return self._link.lease(self._id, self._take_queue(), want)

    def _send_queue(self) -> None:
        if self._queue:
            self._pending.append(self._link.observe(self._id, self._take_queue()))

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
        self._retry_in = reply.retry_in
        if reply.slots:
            self._slots.extend((reply.incarnation, slot) for slot in reply.slots)

    def _poll(self) -> None:
        if self._watch is None and self._incarnation is not None:
            # One call kept open that answers at the next rate cut (see RateCoordinator.watch).
            self._watch = self._link.watch(self._id, self._generation)
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
