"""Rate limiters under a fake clock: pacing, backing off, converging on an unknown cap."""

from __future__ import annotations

import heapq
import random
import threading

import pytest

from opensearch_mm.errors import QuotaExceededError, RateLimitError
from opensearch_mm.ratelimit import (
    AdaptiveRateLimiter,
    FixedRateLimiter,
    Ticket,
    UnlimitedRateLimiter,
    make_rate_limiter,
)

THROTTLED = RateLimitError("slow down", status_code=429, code="Throttling.RateQuota")


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class TokenBucket:
    """What the service (and the emulator) does: ``rate`` tokens/s, ``rate`` at most."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = rate
        self.stamp = 0.0

    def take(self, now: float) -> bool:
        self.tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


def simulate(
    cap: float, requests: int, *, workers: int = 8, latency: float = 0.042, seed: int = 0
) -> tuple[float, int, AdaptiveRateLimiter]:
    """Drive an adaptive limiter as the drivers do (acquire, wait, confirm, send, observe,
    jittered retry of a 429) against a token bucket; returns (seconds, 429s, limiter)."""
    clock = FakeClock()
    limiter = AdaptiveRateLimiter(clock=clock)
    bucket = TokenBucket(cap)
    rng = random.Random(seed)
    todo = requests
    throttled = 0
    events: list[tuple[float, int, int, str, int, Ticket | None]] = []
    seq = 0

    def at(
        t: float, worker: int, what: str, retries: int = 0, ticket: Ticket | None = None
    ) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (t, seq, worker, what, retries, ticket))

    for w in range(workers):
        at(0.0, w, "next")
    while events:
        t, _, w, what, retries, ticket = heapq.heappop(events)
        clock.now = t
        if what == "next" and todo:
            todo -= 1
            at(t, w, "acquire")
        elif what == "acquire":
            ticket = limiter.acquire()
            at(t + ticket.wait, w, "send", retries, ticket)
        elif what == "send":
            assert ticket is not None
            if not limiter.confirm(ticket):
                at(t, w, "acquire", retries)
            elif bucket.take(t):
                at(t + latency, w, "ok", retries, ticket)
            else:
                at(t + 0.002, w, "429", retries, ticket)
        elif what == "ok":
            limiter.observe(None, ticket)
            at(t, w, "next")
        elif what == "429":
            throttled += 1
            limiter.observe(THROTTLED, ticket)
            at(t + rng.uniform(0, 0.5 * 2**retries), w, "acquire", retries + 1)
    return clock.now, throttled, limiter


# ----------------------------------------------------------------- fixed / unlimited


def test_fixed_rate_spaces_sends_evenly() -> None:
    clock = FakeClock()
    limiter = FixedRateLimiter(4, clock=clock)
    assert [limiter.reserve() for _ in range(4)] == [0.0, 0.25, 0.5, 0.75]
    clock.now = 10.0  # idle: no burst is saved up
    assert [limiter.reserve() for _ in range(2)] == [0.0, 0.25]
    assert limiter.rate == 4


def test_fixed_rate_ignores_feedback() -> None:
    limiter = FixedRateLimiter(5, clock=FakeClock())
    for _ in range(10):
        limiter.observe(THROTTLED)
        limiter.observe(None)
    assert limiter.rate == 5
    assert limiter.confirm(limiter.acquire())


def test_unlimited_and_factory() -> None:
    assert UnlimitedRateLimiter().reserve() == 0.0
    assert UnlimitedRateLimiter().rate is None
    assert isinstance(make_rate_limiter(None), UnlimitedRateLimiter)
    assert isinstance(make_rate_limiter("adaptive"), AdaptiveRateLimiter)
    fixed = make_rate_limiter(7)
    assert type(fixed) is FixedRateLimiter and fixed.rate == 7
    with pytest.raises(ValueError):
        make_rate_limiter("fast")
    with pytest.raises(ValueError):
        FixedRateLimiter(0)


def test_reserve_is_thread_safe() -> None:
    limiter = FixedRateLimiter(1000)
    waits: list[float] = []
    lock = threading.Lock()

    def book() -> None:
        mine = [limiter.reserve() for _ in range(200)]
        with lock:
            waits.extend(mine)

    threads = [threading.Thread(target=book) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    # 1,600 distinct slots 1 ms apart: the last one is 1.6 s out, give or take the test's run time.
    assert len(waits) == 1600
    assert max(waits) >= 1.5


# ----------------------------------------------------------------- adaptive


def test_adaptive_starts_at_documented_rate_and_grows_only_when_binding() -> None:
    clock = FakeClock()
    limiter = AdaptiveRateLimiter(clock=clock)
    assert limiter.rate == 10
    for _ in range(5):  # one send per second: the limiter is not the bottleneck
        limiter.observe(None, limiter.acquire())
        clock.now += 1.0
    assert limiter.rate == 10
    for _ in range(5):  # queued sends: slow start
        limiter.acquire()
    assert limiter.rate > 10


def test_adaptive_cut_rebooks_slots_and_counts_one_signal() -> None:
    clock = FakeClock()
    limiter = AdaptiveRateLimiter(clock=clock)
    tickets = [limiter.acquire() for _ in range(8)]
    rate = limiter.rate
    limiter.observe(THROTTLED, tickets[0])
    cut = limiter.rate
    assert cut is not None and cut <= rate / 2
    # The other tickets were booked before the cut: they must re-book, and their 429s
    # are the same overfull second, not new signals.
    assert not any(limiter.confirm(t) for t in tickets[1:])
    for t in tickets[1:]:
        limiter.observe(THROTTLED, t)
    assert limiter.rate == cut and limiter.cuts == 1
    fresh = limiter.acquire()
    assert limiter.confirm(fresh) and fresh.wait > 0
    limiter.observe(THROTTLED, fresh)  # a 429 at the new rate: a second, gentler cut
    assert limiter.cuts == 2 and limiter.rate == pytest.approx(cut * 0.8)


def test_quota_exhaustion_is_not_a_rate_signal() -> None:
    limiter = AdaptiveRateLimiter(clock=FakeClock())
    quota = QuotaExceededError("gone", status_code=429, code="Throttling.AllocationQuota")
    limiter.observe(quota, limiter.acquire())
    assert limiter.cuts == 0 and limiter.slow_start


def test_adaptive_never_below_min() -> None:
    clock = FakeClock()
    limiter = AdaptiveRateLimiter(clock=clock, min_qps=1.0)
    for _ in range(50):
        limiter.observe(THROTTLED, limiter.acquire())
        clock.now += 0.5
    assert limiter.rate == 1.0


@pytest.mark.parametrize("cap", [10, 25, 50, 100])
def test_adaptive_converges_on_an_unknown_cap(cap: float) -> None:
    requests = int(cap * 60)  # a minute's worth at the cap
    seconds, throttled, limiter = simulate(cap, requests)
    ceiling_seconds = requests / cap
    assert ceiling_seconds / seconds >= 0.95  # at least 95% of the ceiling
    assert throttled <= 0.02 * requests  # at most 2% throttled
    assert limiter.rate is not None and 0.75 * cap <= limiter.rate <= 1.3 * cap


def test_adaptive_finds_a_cap_below_the_documented_default() -> None:
    seconds, throttled, limiter = simulate(3, 180)
    assert (180 / 3) / seconds >= 0.9
    assert throttled <= 6
    assert limiter.rate is not None and 2 <= limiter.rate <= 4


@pytest.mark.parametrize("cap", [10, 50])
def test_adaptive_short_run_few_throttles(cap: float) -> None:
    seconds, throttled, _ = simulate(cap, 157)  # 5,000 inputs in requests of 32
    assert throttled <= 3
    assert (157 / cap) / seconds >= 0.9


def test_adaptive_follows_a_lowered_cap() -> None:
    clock = FakeClock()
    limiter = AdaptiveRateLimiter(clock=clock)
    bucket = TokenBucket(40)
    for step in range(4000):  # 40 QPS for a while, then the account drops to 10
        if step == 2000:
            bucket = TokenBucket(10)
            bucket.stamp = clock.now
            bucket.tokens = 0
        ticket = limiter.acquire()
        clock.now += ticket.wait
        if not limiter.confirm(ticket):
            continue
        limiter.observe(None if bucket.take(clock.now) else THROTTLED, ticket)
    assert limiter.rate is not None and 7 <= limiter.rate <= 13
