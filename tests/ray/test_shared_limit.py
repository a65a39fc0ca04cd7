"""The coordinated limit without Ray: a coordinator leasing blocks to several local sides."""

from __future__ import annotations

import functools
import itertools
import time
from dataclasses import replace

import pytest

from opensearch_mm._ray_limit import (
    Load,
    Observation,
    RateCoordinator,
    Reply,
    SharedRateLimiter,
    describe_error,
    rebuild_error,
)
from opensearch_mm.emulator._simulate import Result, Scenario, format_table, simulate
from opensearch_mm.errors import (
    APIConnectionError,
    InternalServerError,
    QuotaExceededError,
    RateLimitError,
)
from opensearch_mm.ratelimit import AdaptiveRateLimiter, FixedRateLimiter, RateLimiter, Ticket

from ._direct import Direct, Watch, coordinated


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Recording(RateLimiter):
    """A limiter that records what the coordinator does with its tickets."""

    def __init__(self) -> None:
        self.ids = itertools.count()
        self.confirmed: list[int] = []
        self.observed: list[tuple[int, str]] = []

    def reserve(self) -> float:
        return 0.0

    def acquire(self) -> Ticket:
        return Ticket(0.0, next(self.ids))

    def confirm(self, ticket: Ticket) -> bool:
        self.confirmed.append(ticket.epoch)
        return True

    def observe(self, error: BaseException | None, ticket: Ticket | None = None) -> None:
        assert ticket is not None
        self.observed.append((ticket.epoch, type(error).__name__))


def book(side: SharedRateLimiter[Reply | Watch], clock: Clock) -> Ticket:
    """A confirmed ticket, as a driver gets one: a refusal's wait passes on ``clock``
    (the granted slot's own wait is left for the caller)."""
    while True:
        ticket = side.acquire()
        if side.confirm(ticket):
            return ticket
        clock.now += ticket.wait


def test_two_local_sides_share_one_fixed_rate() -> None:
    clock = Clock()
    coordinator = RateCoordinator(limiter=FixedRateLimiter(200, clock=clock), clock=clock)
    links = [Direct(coordinator), Direct(coordinator)]
    sides = [SharedRateLimiter(link, clock=clock) for link in links]
    send_times = []
    for _ in range(100):  # both sides ask in turn, as fast as they like
        for side in sides:
            ticket = book(side, clock)
            send_times.append(clock.now + ticket.wait)
            side.observe(None, ticket)
    send_times.sort()
    # 200 sends at the account's 200/s, not 200/s each: 1 second, evenly spaced
    assert send_times[-1] - send_times[0] >= 199 / 200 - 1e-6
    gaps = [b - a for a, b in itertools.pairwise(send_times)]
    assert min(gaps) >= 1 / 200 - 1e-9
    # blocks (up to 25 slots here: 0.25 s of 200/s between two, one lease per side per
    # 0.25 s at most), not a call per request: measured 18 leases for 200 requests
    assert sum(link.leases for link in links) <= 200 / 8


def test_block_size_is_split_between_active_processes() -> None:
    clock = Clock()
    coordinator = RateCoordinator(
        limiter=FixedRateLimiter(100, clock=clock), horizon=0.2, clock=clock
    )
    assert len(coordinator.lease("a", []).slots) == 20
    assert len(coordinator.lease("b", []).slots) == 10  # two active now
    clock.now += 5.0  # "a" and "b" went quiet
    assert len(coordinator.lease("c", []).slots) == 20


def test_every_slot_reaches_the_limiter_once_with_its_own_ticket() -> None:
    clock = Clock()
    limiter = Recording()
    coordinator = RateCoordinator(limiter=limiter, max_block=8, clock=clock)
    side = SharedRateLimiter(Direct(coordinator), clock=clock, max_late=0.25)
    sent = []
    for _ in range(5):
        ticket = book(side, clock)
        side.observe(None, ticket)
        sent.append(ticket)
    throttled = book(side, clock)
    side.observe(RateLimitError("m", status_code=429, code="Throttling"), throttled)
    clock.now += 1.0  # the rest of the leased slots are now too late to use
    side.acquire()
    side.flush()
    # confirmed at lease time, then observed exactly once each: sent (ok or throttled),
    # or handed back unused
    outcomes = dict(limiter.observed)
    assert len(outcomes) == len(limiter.observed)
    assert set(outcomes) <= set(limiter.confirmed)
    assert list(outcomes.values()).count("NoneType") == 5
    assert list(outcomes.values()).count("RateLimitError") == 1
    assert "SlotUnused" in outcomes.values()
    assert coordinator.status()["throttles"] == 1


def test_a_throttle_is_forwarded_at_once_and_cut_slots_are_booked_again() -> None:
    clock = Clock()
    limiter = AdaptiveRateLimiter(50, clock=clock)
    coordinator = RateCoordinator(limiter=limiter, clock=clock)
    link = Direct(coordinator)
    side = SharedRateLimiter(link, clock=clock)
    first = side.acquire()
    assert side.confirm(first)
    later = side.acquire()
    side.observe(None, first)
    assert link.flushes == []  # successes wait for a batch
    third = side.acquire()
    assert side.confirm(third)
    side.observe(RateLimitError("slow down", status_code=429, code="Throttling"), third)
    assert link.flushes and link.flushes[-1][-1].error is not None
    assert limiter.cuts == 1 and coordinator.throttles == 1
    assert not side.confirm(later)  # booked before the cut: book again
    again = side.acquire()
    assert side.confirm(again)


def test_a_cut_voids_the_slots_other_sides_hold_without_a_lease() -> None:
    clock = Clock()
    limiter = AdaptiveRateLimiter(50, clock=clock)
    coordinator = RateCoordinator(limiter=limiter, clock=clock)
    held_link, throttled_link = Direct(coordinator), Direct(coordinator)
    holder = SharedRateLimiter(held_link, clock=clock)
    other = SharedRateLimiter(throttled_link, clock=clock)
    first = book(holder, clock)  # the holder leases a block and keeps the rest of it
    held = holder.acquire()
    assert held.epoch >= 0
    holder.observe(None, first)
    sent = book(other, clock)
    other.observe(RateLimitError("slow down", status_code=429, code="Throttling"), sent)
    assert limiter.cuts == 1
    leases = held_link.leases
    # the holder's open watch call answered: its slot booked before the cut is refused
    assert not holder.confirm(held)
    assert held_link.leases == leases  # learned without leasing
    assert held_link.watches >= 1


def test_an_idle_side_hands_its_answers_back_by_itself() -> None:
    coordinator = RateCoordinator(limiter=FixedRateLimiter(100))
    side = SharedRateLimiter(Direct(coordinator), flush_interval=0.05)
    ticket = side.acquire()
    assert side.confirm(ticket)
    side.observe(None, ticket)
    side.flush_soon()  # the unit of work ended; no lease will carry the answer
    assert coordinator.status()["sent"] == 0
    deadline = time.monotonic() + 5.0
    while coordinator.status()["outstanding"] and time.monotonic() < deadline:
        time.sleep(0.01)
    # the answer, and the rest of the block it held, went back by themselves
    status = coordinator.status()
    assert status["sent"] == 1
    assert status["unused"] == status["booked"] - 1
    assert status["outstanding"] == 0


def test_successes_are_forwarded_in_batches() -> None:
    clock = Clock()
    coordinator = RateCoordinator(limiter=FixedRateLimiter(1000, clock=clock), clock=clock)
    link = Direct(coordinator)
    side = SharedRateLimiter(link, clock=clock, flush_size=10, flush_interval=60)
    for _ in range(25):
        ticket = book(side, clock)
        side.observe(None, ticket)
    assert all(len(f) <= 10 for f in link.flushes)
    side.flush()
    assert coordinator.calls < 25  # leases and flushes together: fewer than the answers
    assert coordinator.sent == 25  # every answer arrived, exactly once


def test_a_restarted_coordinator_is_followed() -> None:
    clock = Clock()
    coordinator = RateCoordinator(limiter=FixedRateLimiter(10, clock=clock), clock=clock)
    link = Direct(coordinator)
    side = SharedRateLimiter(link, clock=clock)
    ticket = side.acquire()
    link.coordinator = RateCoordinator(limiter=FixedRateLimiter(10, clock=clock), clock=clock)
    clock.now += 1.0  # the old block runs out; the next lease meets the new incarnation
    fresh = side.acquire()
    assert side.confirm(fresh)
    assert not side.confirm(ticket)  # a slot of the old incarnation no longer holds


def test_stale_slots_are_handed_back_not_sent_late() -> None:
    clock = Clock()
    coordinator = RateCoordinator(limiter=FixedRateLimiter(100, clock=clock), clock=clock)
    side = SharedRateLimiter(Direct(coordinator), clock=clock, max_late=0.25)
    side.acquire()
    clock.now += 10.0  # the process stalled: its block is long past
    ticket = side.acquire()
    assert ticket.wait <= 0.25
    side.flush()
    assert coordinator.status()["unused"] >= 1


def test_a_limiter_asking_to_come_back_later_gets_no_slot() -> None:
    class Full(Recording):
        def acquire(self) -> Ticket:
            return Ticket(0.3, -1)  # e.g. every allowed request is in flight

    clock = Clock()
    side = SharedRateLimiter(Direct(RateCoordinator(limiter=Full(), clock=clock)), clock=clock)
    ticket = side.acquire()
    assert ticket.wait == pytest.approx(0.3)
    assert not side.confirm(ticket)


def test_errors_travel_as_plain_data() -> None:
    for error in (
        RateLimitError(
            "m", status_code=429, code="Throttling", retry_after=1.0, retry_after_unit=0.001
        ),
        QuotaExceededError("q", status_code=429, code="Throttling.AllocationQuota"),
        InternalServerError("boom", status_code=503),
        APIConnectionError("reset"),
    ):
        rebuilt = rebuild_error(describe_error(error))
        assert type(rebuilt) is type(error)
        assert describe_error(rebuilt) == describe_error(error)
    assert isinstance(rebuild_error(("NoSuchError", "x", None, None, None, None)), Exception)


def test_observations_of_a_past_incarnation_are_ignored() -> None:
    clock = Clock()
    limiter = Recording()
    coordinator = RateCoordinator(limiter=limiter, clock=clock)
    slot = coordinator.lease("x", []).slots[0]
    throttle = describe_error(RateLimitError("m", status_code=429, code="Throttling"))
    coordinator.observe("x", [Observation("an-old-incarnation", slot.slot, True, throttle)])
    assert limiter.observed == []
    coordinator.observe("x", [Observation(coordinator.incarnation, slot.slot, True, throttle)])
    assert [name for _, name in limiter.observed] == ["RateLimitError"]


# -- the coordinated limit against the throttle models, in virtual time -------------------

SIMULATED = [  # (scenario, not the ones the block horizon was tuned on)
    Scenario("bucket", qps=120, clients=3, seconds=40, seed=11),
    Scenario("fixed", qps=60, clients=2, seconds=40, seed=11, latency=0.08),
    Scenario("sliding", qps=120, clients=3, seconds=40, seed=11),
    Scenario("sliding", qps=25, clients=2, seconds=40, seed=11, latency=0.15),
    Scenario("fixed", qps=400, clients=6, seconds=40, seed=11),
]


@pytest.mark.parametrize(
    ("scenario", "per_call"),
    [
        # measured 3.4 (4.1 leaving out the watches: one per rate cut per side)
        (Scenario("bucket", qps=40, clients=2, seconds=30, seed=5), 3.0),
        (Scenario("bucket", qps=140, clients=2, seconds=30, seed=5), 9.0),
    ],
    ids=lambda x: x.name if isinstance(x, Scenario) else str(x),
)
def test_many_requests_per_coordinator_call(scenario: Scenario, per_call: float) -> None:
    # Every remote call counts: leases, flushes of answers and watches for rate cuts.
    made: list[RateCoordinator] = []
    result = simulate(scenario, coordinated(made))
    status = made[0].status()
    calls = status["calls"] + status["watches"]
    assert result.ratio >= 0.9, format_table([result])
    assert status["sent"] >= per_call * calls, (status, format_table([result]))


@pytest.mark.parametrize("scenario", SIMULATED, ids=lambda s: s.name)
def test_the_actors_together_hold_the_ceiling(scenario: Scenario) -> None:
    result = simulate(scenario, coordinated())
    assert result.ratio >= 0.9, format_table([result])
    assert result.throttled_share <= 0.05, format_table([result])
    assert result.gave_up == 0


@pytest.mark.parametrize(
    "scenario",
    [
        Scenario("concurrency", max_in_flight=2, latency=0.05, seconds=60, seed=1),
        Scenario("concurrency", max_in_flight=6, clients=2, seconds=40, seed=0),
    ],
    ids=lambda s: s.name,
)
def test_requests_waiting_for_a_permit_get_freed_ones_in_turn(scenario: Scenario) -> None:
    # A permit an answer frees goes to the request that waited first, not to the next
    # request of the worker just answered: those waiting got only the permits a probe
    # adds, which the service refuses (one request met 3-6 429s in a row).
    result = simulate(scenario, coordinated())
    assert result.gave_up == 0
    assert result.most_refused <= 2, format_table([result])


@functools.cache
def _concurrency_runs() -> tuple[Result, Result, dict[str, object]]:
    scenario = Scenario("concurrency", max_in_flight=6, clients=2, seconds=40, seed=11)
    alone = simulate(replace(scenario, shared=True), lambda clock: AdaptiveRateLimiter(clock=clock))
    made: list[RateCoordinator] = []
    together = simulate(scenario, coordinated(made))
    return alone, together, made[0].status()


def test_under_a_concurrency_cap_the_actors_do_as_well_as_one_process() -> None:
    # A cap on requests in flight rather than on the rate. A leased slot is not in flight
    # until it is sent, so the coordinator learns the cap from the send and answer times
    # the processes report, and splits it into permits each process refills locally.
    # Measured 0.91 of the ceiling (one process: 0.92), 1.2% throttled; 0.66 when the
    # coordinator counted leased slots as in flight. (The run includes the ~13 s the
    # limiter takes to learn the cap, from the documented 10 QPS.)
    alone, together, status = _concurrency_runs()
    table = format_table([alone, together])
    assert together.gave_up == 0, table
    assert together.throttled_share <= 0.05, table
    assert together.ratio >= 0.85, table
    assert together.ratio >= 0.93 * alone.ratio, table
    # the cap was learned (6, or 7 while a probe for a raised cap is out), and the permits
    # add up to it
    assert status["max_in_flight"] in (6, 7), status
    permits = status["permits"]
    assert isinstance(permits, dict) and sum(permits.values()) == status["max_in_flight"]


CONCURRENCY = [  # (none of them the scenario the permits were tuned on)
    Scenario(
        "concurrency",
        max_in_flight=12,
        clients=3,
        seconds=60,
        seed=4,
        latency=0.08,
        handling=0.005,
        client_time=0.003,
        warmup=25,
    ),
    Scenario(
        "concurrency",
        max_in_flight=5,
        clients=4,
        seconds=60,
        seed=9,
        latency=0.15,
        sigma=0.6,
        warmup=25,
    ),
    # At 380 requests/s the client's count of requests in flight runs ahead of the
    # service's by the answers on their way back (an answer every 2.6 ms, the network
    # 2 ms each way). Counted as the service saw them, the cap is told from a rate limit.
    # Measured 0.94 (before: 0.81, the cap not learned; one process, the same limiter: 0.79).
    Scenario(
        "concurrency",
        max_in_flight=28,
        clients=2,
        seconds=40,
        seed=16,
        latency=0.07,
        client_time=0.001,
        warmup=20,
    ),
]


@pytest.mark.parametrize("scenario", CONCURRENCY, ids=lambda s: s.name)
def test_once_the_cap_in_flight_is_learned_the_actors_hold_the_ceiling(scenario: Scenario) -> None:
    # measured 0.91 to 0.94 of the ceiling after learning, 0.9 to 2.4% throttled
    made: list[RateCoordinator] = []
    result = simulate(scenario, coordinated(made))
    assert result.ratio >= 0.88, format_table([result])
    assert result.throttled_share <= 0.05, format_table([result])
    assert result.gave_up == 0
    # the cap learned (one above while a probe is out, one below after a race, until the
    # next probe)
    cap = scenario.max_in_flight
    assert cap is not None and made[0].max_in_flight in (cap - 1, cap, cap + 1), made[0].status()


RATE_AND_CAP = [  # (a rate limit and, above what it needs, a cap in flight: not the
    # scenario this was tuned on, 40/s with 3 in flight at 40 ms)
    # measured over six seeds 4.0% throttled on average (2.7-5.7%), 1.02 of the rate
    # (before the rate's 429s reached the limiter: 11.4% in one seed, the limiter's rate at
    # 105/s while the cap explained them; one process: 0.9%)
    Scenario("bucket", qps=60, clients=2, seconds=45, max_in_flight=5, latency=0.05, seed=21),
    # measured 4.9% on average (3.6-6.5%), 0.93 (before: 6.7% in one seed; one process:
    # 1.5%, 0.82)
    Scenario(
        "bucket", qps=40, clients=2, seconds=45, max_in_flight=3, latency=0.04, sigma=0.5, seed=24
    ),
]


@pytest.mark.parametrize("scenario", RATE_AND_CAP, ids=lambda s: s.name)
def test_a_rate_limit_with_a_cap_in_flight_above_it_is_held_with_few_429s(
    scenario: Scenario,
) -> None:
    # The cap in flight is met now and then (answers that take long) and may be learned;
    # the rate limit's 429s must still reach the limiter, or its rate climbs unchecked.
    # One seed's share of 429s moves by 2 points either way: six are averaged.
    results = []
    for seed in range(scenario.seed, scenario.seed + 6):
        made: list[RateCoordinator] = []
        result = simulate(replace(scenario, seed=seed), coordinated(made))
        assert result.gave_up == 0
        rate = made[0].status()["rate"]
        assert isinstance(rate, float) and rate <= 1.2 * scenario.qps, made[0].status()
        results.append(result)
    table = format_table(results)
    assert sum(r.ratio for r in results) / len(results) >= 0.9, table
    assert sum(r.throttled_share for r in results) / len(results) <= 0.055, table


@pytest.mark.parametrize("new", [4, 10], ids=["cap cut 8->4", "cap raised 4->8"])
def test_a_cap_in_flight_that_moves_is_followed(new: int) -> None:
    old = 8 if new == 4 else 4
    scenario = Scenario(
        "concurrency",
        max_in_flight=old,
        clients=2,
        seconds=50,
        seed=4,
        change_at=25,
        new_max_in_flight=new,
    )
    made: list[RateCoordinator] = []
    result = simulate(scenario, coordinated(made))
    # measured 0.91 of the new ceiling, back at 0.9 of it within 5 s
    assert result.ratio >= 0.85, format_table([result])
    assert result.recovery is not None and result.recovery <= 15.0, format_table([result])
    assert result.throttled_share <= 0.05, format_table([result])
    assert made[0].status()["max_in_flight"] in (new, new + 1)


def test_a_429_the_cap_explains_is_no_rate_signal() -> None:
    clock = Clock()
    limiter = AdaptiveRateLimiter(50, clock=clock)
    coordinator = RateCoordinator(limiter=limiter, clock=clock)
    refused = describe_error(RateLimitError("busy", status_code=429, code="Throttling"))
    load = Load(3, 4)
    # Three requests in flight at a time are answered; a fourth, sent beside them, is
    # refused: the reports of the sends and answers show a cap of 3 in flight.
    for _ in range(100):
        if coordinator.max_in_flight is not None:
            break  # learned (from the answers sent a settling time ago)
        slots = coordinator.lease("a", [], 4, load).slots
        t = clock.now
        answers = [
            Observation(coordinator.incarnation, slot.slot, True, None, k + 1, t, t + 0.04)
            for k, slot in enumerate(slots[:3])
        ]
        if len(slots) == 4:
            answers.append(
                Observation(
                    coordinator.incarnation, slots[3].slot, True, refused, 4, t + 0.01, t + 0.012
                )
            )
        clock.now += 0.1
        coordinator.observe("a", answers, load)
    reply = coordinator.observe("a", [], load)
    assert coordinator.max_in_flight == 3
    assert reply.permits == 3  # the only process holds every permit
    cuts = limiter.cuts
    # another 429 at the learned cap: a race, not the rate's doing
    slot = coordinator.lease("a", [], 1, load).slots[0]
    t = clock.now
    coordinator.observe(
        "a", [Observation(coordinator.incarnation, slot.slot, True, refused, 3, t, t + 0.002)], load
    )
    clock.now += 5.0
    coordinator.observe("a", [], load)
    assert limiter.cuts == cuts
    assert coordinator.status()["explained"] >= 1


def _learn_cap_of_three(
    coordinator: RateCoordinator, clock: Clock, took: float = 0.04, refused_took: float = 0.002
) -> None:
    """Three requests in flight at a time are answered (each in ``took`` seconds); a
    fourth, sent beside them, is refused: until the coordinator has learned a cap of 3."""
    load = Load(3, 4)
    refused = describe_error(RateLimitError("busy", status_code=429, code="Throttling"))
    for _ in range(100):
        if coordinator.max_in_flight is not None:
            return
        slots = coordinator.lease("a", [], 4, load).slots
        t = clock.now
        answers = [
            Observation(coordinator.incarnation, slot.slot, True, None, k + 1, t, t + took)
            for k, slot in enumerate(slots[:3])
        ]
        if len(slots) == 4:
            answers.append(
                Observation(
                    coordinator.incarnation,
                    slots[3].slot,
                    True,
                    refused,
                    4,
                    t + 0.01,
                    t + 0.01 + refused_took,
                )
            )
        clock.now += max(0.1, 2.5 * took)
        coordinator.observe("a", answers, load)
    raise AssertionError(f"no cap learned: {coordinator.status()}")


def test_a_held_cap_explains_few_429s_and_more_are_the_rates() -> None:
    clock = Clock()
    limiter = AdaptiveRateLimiter(50, clock=clock)
    coordinator = RateCoordinator(limiter=limiter, clock=clock)
    _learn_cap_of_three(coordinator, clock)
    assert coordinator.max_in_flight == 3
    cuts = limiter.cuts
    load = Load(3, 3)
    refused = describe_error(RateLimitError("busy", status_code=429, code="Throttling"))
    # Three requests always in flight (the cap holds), and beside them, every 50 ms, a
    # fourth refused: far more 429s than the cap's probes cost (one per 50 answers).
    # Counted with the three in flight, each looks like a race past the cap.
    refusals = 0
    for _ in range(200):
        if coordinator.max_in_flight is None:
            break
        slots = coordinator.lease("a", [], 4, load).slots
        t = clock.now
        obs = [
            Observation(coordinator.incarnation, slot.slot, True, None, k + 1, t - 0.01, t + 0.04)
            for k, slot in enumerate(slots[:3])
        ]
        obs += [
            Observation(coordinator.incarnation, slot.slot, True, refused, 3, t, t + 0.002)
            for slot in slots[3:4]
        ]
        refusals += len(slots[3:4])
        clock.now += 0.05
        coordinator.observe("a", obs, load)
    # learned again (the limiter heard of it), after some were taken for races (when every
    # such 429 was a race, the cap stepped down to 1 and the limiter's rate ran to 5200/s)
    assert coordinator.max_in_flight is None, coordinator.status()
    assert limiter.cuts > cuts
    assert 10 <= refusals <= 60, refusals


def test_under_a_learned_cap_a_lease_holds_what_the_permits_can_send() -> None:
    clock = Clock()
    coordinator = RateCoordinator(limiter=FixedRateLimiter(1000, clock=clock), clock=clock)
    _learn_cap_of_three(coordinator, clock, took=0.2)
    assert coordinator.max_in_flight == 3
    reply = coordinator.lease("a", [], None, Load(3, 3))
    assert reply.permits == 3
    # 3 permits, answers in 0.2 s: 15 requests/s, so about 4 in a lease's 0.25 s (with
    # some room for quicker answers), not the 64 that 1000/s would give
    assert 4 <= len(reply.slots) <= 8, reply


def test_a_process_at_its_permits_waits_for_an_answer() -> None:
    clock = Clock()
    coordinator = RateCoordinator(limiter=FixedRateLimiter(1000, clock=clock), clock=clock)
    side = SharedRateLimiter(Direct(coordinator), clock=clock)
    # (as if a cap of 2 in flight had been learned: the replies carry 2 permits)
    coordinator._window.limit, coordinator._window.active = 2, True
    first, second = book(side, clock), book(side, clock)
    assert side._permits == 2
    waiting = side.acquire()
    assert waiting.epoch < 0 and 0 < waiting.wait <= 0.05  # look again soon
    assert not side.confirm(waiting)
    early = side.acquire()
    side.observe(None, first)  # an answer frees a permit, with no remote call
    late = side.acquire()
    assert late.epoch >= 0 and side.confirm(late)
    assert early.epoch < 0
    # a slot handed out while a permit was free keeps for the next caller if the permit
    # was taken meanwhile
    side.observe(None, second)
    spare = side.acquire()
    third = book(side, clock)
    assert not side.confirm(spare)
    side.observe(None, third)
    assert side.confirm(side.acquire())


def test_the_slots_of_a_process_gone_silent_are_freed() -> None:
    clock = Clock()
    limiter = Recording()
    coordinator = RateCoordinator(limiter=limiter, clock=clock, forget_client=10.0)
    gone = coordinator.lease("gone", [], 8)
    assert len(gone.slots) == 8
    clock.now += 5.0
    coordinator.lease("alive", [], 4)
    assert coordinator.status()["outstanding"] == 12
    clock.now += 6.0  # "gone" has been silent for 11 s: killed, its answers lost with it
    coordinator.lease("alive", [], 4)
    status = coordinator.status()
    assert status["outstanding"] == 8  # only "alive"'s slots are still out
    assert [name for _, name in limiter.observed].count("SlotUnused") == 8


def test_a_side_tells_how_long_its_requests_have_all_been_refused() -> None:
    clock = Clock()
    coordinator = RateCoordinator(limiter=FixedRateLimiter(100, clock=clock), clock=clock)
    side = SharedRateLimiter(Direct(coordinator), clock=clock)
    throttled = RateLimitError("slow down", status_code=429, code="Throttling.RateQuota")
    ok = book(side, clock)
    side.observe(None, ok)
    first = book(side, clock)
    clock.now += 0.05
    side.observe(throttled, first)
    assert side.shut_for(first) == pytest.approx(0.05)
    assert side.shut_for(first) == 0.0  # asked once per refusal
    clock.now += 20.0
    again = book(side, clock)
    clock.now += 0.05
    side.observe(throttled, again)
    assert side.shut_for(again) == pytest.approx(20.1)  # since the first refused was sent
    out = book(side, clock)
    side.observe(None, book(side, clock))  # another got through while it was out
    side.observe(throttled, out)
    assert side.shut_for(out) == 0.0
    assert side.shut_for(None) == 0.0


@pytest.mark.parametrize("other_busy", [False, True])
def test_a_probe_of_the_cap_holds_only_if_the_account_had_that_many_in_flight(
    other_busy: bool,
) -> None:
    clock = Clock()
    coordinator = RateCoordinator(limiter=FixedRateLimiter(1000, clock=clock), clock=clock)
    _learn_cap_of_three(coordinator, clock)
    assert coordinator.max_in_flight == 3
    # "b" joins wanting one in flight: of the three permits "a" gets two, "b" one
    coordinator.observe("b", [], Load(0, 1))
    assert coordinator.observe("a", [], Load(2, 3)).permits == 2
    # For 30 s, "a" sends as many as its permits let it (three at most) and "b" sends one
    # with its permit or holds it idle; the service answers every request.
    for _ in range(300):
        t = clock.now
        permits = coordinator.observe("a", [], Load(0, 3)).permits or 0
        sent = coordinator.lease("a", [], min(3, permits), Load(0, 3)).slots[: min(3, permits)]
        answers = [
            Observation(coordinator.incarnation, slot.slot, True, None, k + 1, t, t + 0.09)
            for k, slot in enumerate(sent)
        ]
        others: list[Observation] = []
        if other_busy:
            slot = coordinator.lease("b", [], 1, Load(0, 1)).slots[0]
            others = [Observation(coordinator.incarnation, slot.slot, True, None, 1, t, t + 0.09)]
        clock.now += 0.1
        coordinator.observe("a", answers, Load(0, 3))
        coordinator.observe("b", others, Load(0, 1))
    if other_busy:
        # The account had 3 in flight, then 4, each answered: each cap held, and more
        # was tried (the positive control: the reads still see the whole account)
        assert (coordinator.max_in_flight or 0) > 4, coordinator.status()
    else:
        # "b"'s permit idle, the account never had more than two in flight: its cap of
        # three was never reached, so nothing shows a fourth would pass (each process
        # at its own permits is no evidence)
        assert coordinator.max_in_flight == 3, coordinator.status()
