"""The adaptive limiter against every throttle model, in virtual time.

The real limiter code runs against simulated accounts (``opensearch_mm/emulator/_simulate``):
no sockets, no sleeps, the same numbers on every run. These are the targets it is held
to; ``python benchmarks/simulate.py`` prints the full sweep.
"""

from __future__ import annotations

import statistics
from dataclasses import replace

import pytest

from opensearch_mm.emulator._simulate import (
    Clock,
    Result,
    Scenario,
    format_table,
    held_out,
    simulate,
    sweep,
)
from opensearch_mm.ratelimit import AdaptiveRateLimiter, Ticket

STEADY_RATIO = 0.95  # of the ceiling, in steady state
STEADY_SHARE = 0.03  # of sends refused with 429, in steady state


@pytest.fixture(scope="module")
def results() -> list[Result]:
    runs = [simulate(s) for s in sweep(quick=True)]
    print("\n" + format_table(runs))  # shown with -s, and in a failing test's output
    return runs


def test_steady_state_on_every_throttle_model(results: list[Result]) -> None:
    alone = [r for r in results if r.scenario.clients == 1 and r.scenario.change_at is None]
    assert {r.scenario.throttle for r in alone} == {"bucket", "fixed", "sliding", "concurrency"}
    for r in alone:
        assert r.ratio >= STEADY_RATIO, r.scenario.name
        assert r.throttled_share <= STEADY_SHARE, r.scenario.name
        assert r.gave_up == 0, r.scenario.name


def test_back_near_a_changed_cap_within_ten_seconds(results: list[Result]) -> None:
    changed = [r for r in results if r.scenario.change_at is not None]
    assert {r.scenario.new_qps > r.scenario.qps for r in changed if r.scenario.new_qps} == {
        True,
        False,
    }  # a raised quota and a cut one
    for r in changed:
        assert r.recovery is not None and r.recovery <= 10.0, r.scenario.name
        assert r.ratio >= 0.9, r.scenario.name  # and it stays there
        assert r.throttled_share <= 0.05, r.scenario.name


def test_a_raised_quota_is_found_within_ten_seconds_whenever_it_comes() -> None:
    """10 -> 30/s under a fixed window, the raise at 30 phases of the limiter's cycle. One
    just after a cut waits for the return (50 answers: 5 s at 10/s) before probing finds
    it: probing that doubled its step every 0.6 s took 10.1-10.7 s in 3 phases of 30."""
    raised = next(s for s in sweep(quick=True) if s.new_qps is not None and s.new_qps > s.qps)
    slow = {}
    for seed in range(30):
        r = simulate(replace(raised, seed=seed))
        if r.recovery is None or r.recovery > 10.0:
            slow[seed] = r.recovery
    assert not slow


@pytest.mark.parametrize("seed", [0, 1])
def test_a_quota_raised_by_a_fifth_is_held_once_found(seed: int) -> None:
    """10 -> 12/s under a sliding window: each probe reads 12 and is met halfway (a fixed
    window straddled reads as much over its limit). The second probe running to read above
    a ceiling that held a whole return is met halfway once, not once more in the cut: met
    halfway twice, the ceiling gained a quarter of the gap a probe, and the minute after the
    raise held 0.91-0.93 of it."""
    r = simulate(Scenario("sliding", qps=10, seconds=60, change_at=20, new_qps=12, seed=seed))
    assert r.ratio >= STEADY_RATIO
    assert r.throttled_share <= STEADY_SHARE


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_buckets_burst_does_not_keep_a_probes_ceiling_up(seed: int) -> None:
    """A probe into a bucket that saved up a burst reads more than its rate; refused again
    before the return to it is done, read again from a second that still holds the burst,
    the ceiling came down 1 % a 429 (2.6-3.0 % of the sends refused at 10/s). It comes
    back halfway to the ceiling that held a whole return instead."""
    bucket = next(s for s in sweep(quick=True) if s.name == "bucket 10/s 40ms")
    r = simulate(replace(bucket, seed=seed))
    assert r.ratio >= 0.98
    assert r.throttled_share <= 0.025


@pytest.mark.parametrize(
    "scenario",
    [
        Scenario("sliding", qps=1, seconds=60, warmup=0, workers=8),
        Scenario("fixed", qps=3, seconds=50, warmup=0, workers=8),
        Scenario("sliding", qps=10, seconds=15, warmup=0, workers=8),
        Scenario("fixed", qps=10, seconds=15, warmup=0, workers=8),
    ],
    ids=lambda s: s.name,
)
def test_a_short_run_from_the_first_send_is_seldom_refused(scenario: Scenario) -> None:
    """A whole run, start-up included (a call of a few thousand inputs at the documented
    10/s takes 15 s): the ramp's first 429 is read from the second before it, and nothing
    is sent into the window it filled. (Read as half the refused rate, 5.6-16 % of these
    runs were refused.)"""
    for seed in (0, 1):
        r = simulate(replace(scenario, seed=seed))
        assert r.ratio >= 0.93, seed
        assert r.throttled_share <= 0.06, seed


def test_a_raised_cap_in_flight_is_found_within_ten_seconds() -> None:
    """6 -> 18 in flight at 600 ms: after a step up that held, the next comes once the new
    slots have carried a few answers (at 50 answers a step this took 12-14 s)."""
    r = simulate(
        Scenario(
            "concurrency",
            max_in_flight=6,
            latency=0.6,
            seconds=60,
            change_at=25,
            new_max_in_flight=18,
        )
    )
    assert r.recovery is not None and r.recovery <= 10.0
    assert r.ratio >= STEADY_RATIO
    assert r.throttled_share <= STEADY_SHARE


def test_clients_sharing_an_account(results: list[Result]) -> None:
    sharing = [r for r in results if r.scenario.clients > 1]
    assert sharing
    for r in sharing:
        assert r.ratio >= 0.9, r.scenario.name  # together
        if r.scenario.shared:  # coordinating through the shared state
            assert r.fairness <= 1.25, r.scenario.name
            assert r.throttled_share <= STEADY_SHARE, r.scenario.name
        else:  # converging from 429s alone
            assert r.fairness <= 1.5, r.scenario.name


@pytest.mark.parametrize("throttle", ["bucket", "fixed", "sliding"])
def test_processes_sharing_a_state_take_turns_within_seconds(throttle: str) -> None:
    """Three processes of eight workers each, 0.5 s apart, on one shared state at 10/s:
    each gets its share in the nine seconds measured, not only over minutes (a queue of
    all their workers' slots went in blocks of one process's, 1.3-1.5x apart)."""
    base = Scenario(throttle, qps=10, clients=3, shared=True, seconds=12, warmup=3)
    base = replace(base, stagger=0.5, workers=8, send_lag=0.003)
    for seed in range(6):
        r = simulate(replace(base, seed=seed))
        assert r.fairness <= 1.2, (seed, r.fairness)
        assert r.ratio >= 0.9, (seed, r.ratio)


@pytest.mark.parametrize(
    "scenario",
    [
        Scenario("concurrency", max_in_flight=4, latency=0.2, clients=3, shared=True),
        Scenario("concurrency", max_in_flight=2, latency=0.05, clients=2, shared=True),
    ],
    ids=lambda s: s.name,
)
def test_processes_sharing_a_state_under_a_cap_in_flight_get_slots_alike(
    scenario: Scenario,
) -> None:
    """Each process hands its freed slots to its own requests in line: a slot freed in one
    process was taken by its next request at once, and another process's requests,
    waiting in line, got only probes' slots (one process starved in the measured minute,
    or got half the others' share; one request met 5-8 429s in a row). (Which process's
    request takes a slot freed in another is still a race of their looks: over this 32-s
    span 1.13-1.40x apart, over a minute's 48 s 1.04-1.21x.)"""
    r = simulate(replace(scenario, seconds=40, seed=1))
    assert r.fairness <= 1.5
    assert r.most_refused <= 2
    assert r.ratio >= 0.9


@pytest.mark.parametrize(
    "scenario",
    [
        Scenario("bucket", qps=30, penalty=True, seconds=60),
        Scenario("sliding", qps=10, window=2.0, seconds=60),
        Scenario("sliding", qps=30, window=2.0, seconds=60),
    ],
    ids=lambda s: f"{s.name} window {s.window:g}s penalty {s.penalty}",
)
def test_a_throttle_that_stays_shut_is_not_fed(scenario: Scenario) -> None:
    """A bucket that charges refusals, or a window longer than a second, stays shut after
    a burst: sends must wait for it (the old limiter sent on and held 0.2-0.8 of these)."""
    r = simulate(scenario)
    assert r.ratio >= 0.94, r.scenario.name
    assert r.throttled_share <= 0.05, r.scenario.name
    assert r.gave_up == 0


@pytest.mark.parametrize("qps", [30, 60])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_window_the_ramp_filled_is_not_sent_into_before_its_sends_age(
    qps: int, seed: int
) -> None:
    """A ramp refused a second or more after its first send filled a 1-s window with its
    last second, densest at its end: sends paced at the rate read were refused within the
    next second (1-2 at 30/s, 3-4 at 60/s), and each read as a lower limit (60/s came down
    to 50-56). The second after the refusal follows the ramp's shape instead."""
    refused: list[tuple[float, float, float]] = []  # (sent, answered, ceiling after)

    class Recording(AdaptiveRateLimiter):
        def observe(self, error: BaseException | None, ticket: Ticket | None = None) -> None:
            super().observe(error, ticket)
            if error is not None and ticket is not None:
                refused.append((ticket.sent, self._clock(), self.ceiling or 0.0))

    def factory(clock: Clock) -> AdaptiveRateLimiter:
        return Recording(clock=clock)

    simulate(Scenario("sliding", qps=qps, seconds=4, warmup=0, workers=8, seed=seed), factory)
    first_sent, first_answered, _ = refused[0]
    echo = [r for r in refused if first_answered < r[0] < first_sent + 1.0]
    assert echo == []
    assert refused[-1][2] >= 0.95 * qps


@pytest.mark.parametrize("seed", [5, 10])
def test_a_reopening_soon_after_the_ramp_is_not_read_as_a_whole_cycle(seed: int) -> None:
    """20 per 2 s in 500-ms slices, a whole 15-s call: the ramp fills the window, a slice
    lets one send through, and the window shuts again until the ramp's sends leave it.
    What passed between those two reopenings (2 sends in 1.3 s) was read as the rate, and
    the call went on at 1.5/s (0.30-0.35 of the ceiling). A reopening now lowers the
    ceiling no further than what the last seconds let through."""
    scenario = Scenario(
        "sliced", qps=10, window=2.0, seconds=15, warmup=0, workers=8, send_lag=0.003
    )
    r = simulate(replace(scenario, seed=seed))
    assert r.ratio >= 0.85


@pytest.mark.parametrize("seed", [5, 6, 9])
def test_a_window_of_seconds_just_reopened_is_not_read_from_its_shut(seed: int) -> None:
    """60 per 2 s, a whole 15-s call: the ramp fills the window, which shuts until its first
    sends leave it, then frees slots as the rest do. A 429 soon after it reopened was read
    from the last second, mostly the shut: 0.75-0.80 of the ceiling on these seeds."""
    scenario = Scenario(
        "sliding", qps=30, window=2.0, seconds=15, warmup=0, workers=8, send_lag=0.003
    )
    r = simulate(replace(scenario, seed=seed))
    assert r.ratio >= 0.88


@pytest.mark.parametrize("seed", [5, 6, 11])
def test_a_second_the_ramps_echo_held_is_no_measure_of_the_limit(seed: int) -> None:
    """A weighted window (two counters) at 30/s, a whole 15-s call: after the ramp, sends
    follow its shape for a second, with gaps. The window, still counting the ramp's burst,
    refuses a climb soon after, and the second read then held those gaps: the ceiling came
    down to 21-23/s (0.89-0.90 of the ceiling on these seeds)."""
    scenario = Scenario("weighted", qps=30, seconds=15, warmup=0, workers=8, send_lag=0.003)
    r = simulate(replace(scenario, seed=seed))
    assert r.ratio >= 0.92


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_ramp_refused_late_by_a_large_window_reads_what_it_let_through(seed: int) -> None:
    """A sliding 100/s window refuses the ramp 1.6 s in. Read as half the refused rate,
    the first ceiling was 1.2x the limit, and the cuts in the ramp's echo took it to 0.93x:
    a whole 5-s call held 0.75-0.80 of the ceiling on these seeds."""
    scenario = Scenario("sliding", qps=100, seconds=5, warmup=0, workers=16, send_lag=0.003)
    assert simulate(replace(scenario, seed=seed)).ratio >= 0.81


def test_a_long_window_is_read_over_its_whole_cycle() -> None:
    """60 per 4 s: a burst fills the window, then it stays shut for most of 4 s. The rate is
    read from the cycle of filling and waiting (sending in bursts held 0.90-0.92 of it with
    12-13 % refused)."""
    r = simulate(Scenario("sliding", qps=15, window=4.0, seconds=60))
    assert r.ratio >= STEADY_RATIO
    assert r.throttled_share <= STEADY_SHARE


def test_a_window_of_seconds_is_not_read_from_a_bursts_second() -> None:
    """30 per 3 s, sliding: a second just after it reopens lets a burst through, so a 429
    read from the last second's count overshot every cycle (0.82 of the ceiling, 14.6 %
    refused). Read over twice the longest shut it holds 0.89 with 5.1 % (short of the
    targets: this shape is still learned slowly)."""
    r = simulate(Scenario("sliding", qps=10, window=3.0, seconds=60))
    assert r.ratio >= 0.88
    assert r.throttled_share <= 0.06


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_window_that_counts_refusals_is_not_hammered_at_start_up(seed: int) -> None:
    """A log that records every arrival stays full while the start-up ramp's rate keeps
    arriving: sending on at it (refusals before the first ten accepted in a row are not
    held for) let nothing through for seconds (0.53-0.87 of the ceiling at 3/s)."""
    scenario = next(s for s in sweep() if s.label == "sliding 3/s, 429s counted")
    r = simulate(replace(scenario, seed=seed))
    assert r.ratio >= 0.9
    assert r.throttled_share <= STEADY_SHARE


@pytest.mark.parametrize("seed", [0, 1, 3])
def test_a_throttle_that_charges_refusals_is_not_read_from_its_collapse(seed: int) -> None:
    """A bucket that takes a token for each refusal lets next to nothing through while a
    sender overshoots it: cut after cut at start-up, a second's read held a sliver of the
    limit, and about half of it was held for ten seconds (0.73 of the ceiling over the
    first 15 s with these seeds). A read that did not stop the refusals is checked against
    the last 5 s."""
    r = simulate(Scenario("bucket", qps=10, penalty=True, seconds=15, warmup=0, seed=seed))
    assert r.ratio >= 0.88


@pytest.mark.parametrize(
    "scenario",
    [s for s in sweep() if "hints" in s.label]
    + [Scenario("sliced", qps=10, retry_after=True, seconds=60, label="sliced 10/s + hints")],
    ids=lambda s: s.name,
)
def test_a_retry_hint_costs_no_throughput(scenario: Scenario) -> None:
    """A 429 saying when to come back holds every send until then, and no longer: a cut
    that kept the slots booked before it held sends past a window's reopening each cycle
    (0.89-0.93 of the ceiling), and a hint in whole seconds rounded up, held whole, kept
    every send back most of each second (0.67 at 30/s)."""
    r = simulate(scenario)
    assert r.ratio >= STEADY_RATIO
    assert r.throttled_share <= STEADY_SHARE


@pytest.mark.parametrize(
    "scenario",
    [s for s in sweep() if s.label in ("fixed 600/min", "sliding 100/10s")],
    ids=lambda s: s.name,
)
def test_a_quota_per_minute_is_not_burst_into(scenario: Scenario) -> None:
    """A window of ten seconds or a minute, once full, stays shut for most of its length,
    and shows an overshoot only then: probing as fast as under a 1-s window raced past
    the rate every cycle (9-15 % refused, and 30-40 requests a run out of retries)."""
    r = simulate(scenario)
    assert r.ratio >= STEADY_RATIO
    assert r.throttled_share <= STEADY_SHARE
    assert r.gave_up <= 2  # (a burst while the window is being learned may spend some)


@pytest.mark.parametrize(
    "scenario",
    [
        s
        for s in held_out()
        if s.label.startswith(
            ("bucket 10/s burst", "fixed 50/s jitter", "sliding 1800/min", "fixed 300/min")
        )
        or s.label
        in (
            "fixed 2000 per 20 s",
            "sliding 600/30s",
            "weighted 10/s (two counters)",
            "weighted 30/s (two counters)",
            "weighted 20 per 2 s",
        )
    ]
    + [Scenario("bucket", qps=3, latency=2.0, seconds=90)],
    ids=lambda s: s.name,
)
def test_on_variants_it_was_not_tuned_on(scenario: Scenario) -> None:
    r = simulate(scenario)
    assert r.ratio >= STEADY_RATIO
    assert r.throttled_share <= STEADY_SHARE


@pytest.mark.parametrize(
    ("scenario", "behind"),
    [
        (Scenario("bucket", qps=10, seconds=60), 0.0),
        (Scenario("fixed", qps=10, seconds=60), 0.0),
        (Scenario("sliding", qps=30, seconds=60), 0.0),
        (Scenario("concurrency", max_in_flight=4, latency=0.2, seconds=60), 0.0),
        # An account that takes one request at a time, which the naive loop fits exactly:
        # paced as a rate, sends overlapped with the answers' jitter (0.52-0.60 of it).
        (Scenario("concurrency", max_in_flight=1, latency=0.2, seconds=60), 0.0),
        (Scenario("concurrency", max_in_flight=1, latency=1.0, seconds=60), 0.0),
        # Seen from 25 ms away, sends at two in flight are refused only now and then: the
        # cap is learned from more evidence, 13-20 s in (paced as a rate: 0.57, naive 0.81).
        (Scenario("concurrency", max_in_flight=1, latency=0.2, network=0.025, seconds=60), 0.05),
        (Scenario("bucket", qps=10, burst=1, seconds=60), 0.0),
        (Scenario("sliced", qps=1, seconds=120), 0.0),
        # Known shortfalls (docs/performance.md): throttles that a loop sending one request
        # at a time fits exactly, where each probe above the limit costs a request or two.
        (Scenario("fixed", qps=1, seconds=300), 0.01),
        (Scenario("queue", qps=10, window=0.1, seconds=60), 0.01),
    ],
    ids=lambda p: p.name if isinstance(p, Scenario) else str(p),
)
def test_never_slower_than_the_naive_loop(scenario: Scenario, behind: float) -> None:
    seeds = range(3)
    ours = [simulate(replace(scenario, seed=seed)) for seed in seeds]
    naive = [simulate(replace(scenario, seed=seed, naive=True)) for seed in seeds]
    one_request = 1.0 / (0.8 * scenario.seconds) / ours[0].ceiling  # the measured span's unit
    mean = statistics.mean(r.ratio for r in ours)
    assert mean >= statistics.mean(r.ratio for r in naive) - one_request - behind


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_small_concurrency_cap_is_filled_soon_despite_http_handling(seed: int) -> None:
    # Over sockets every answer also carries HTTP handling (the service's, holding its slot,
    # and the client's): the first seconds of a run are where a learned cap must already be
    # filled. Measured from 3 s to 10 s against K requests in lockstep with no limiter (the
    # best anyone gets at that cap) in the same simulated account.
    from opensearch_mm.ratelimit import UnlimitedRateLimiter

    scenario = Scenario(
        "concurrency",
        max_in_flight=2,
        latency=0.2,
        sigma=0.2,
        handling=0.02,
        client_time=0.02,
        seconds=10,
        warmup=3,
        seed=seed,
    )
    lockstep = simulate(replace(scenario, workers=2), lambda clock: UnlimitedRateLimiter())
    ours = simulate(scenario)
    assert ours.rate >= 0.9 * lockstep.rate, (ours.rate, lockstep.rate)
    assert ours.throttled_share <= 0.05
    assert ours.gave_up == 0


@pytest.mark.parametrize(
    ("cap", "latency", "network"), [(4, 0.2, 0.025), (4, 0.1, 0.01), (16, 0.4, 0.025)]
)
def test_a_cap_in_flight_seen_from_afar_is_filled(cap: int, latency: float, network: float) -> None:
    # A client some ms from the service counts answers still on their way back, and
    # requests still on theirs: sends above the cap are refused only now and then. Against
    # K requests in lockstep with no limiter (what keeping K in flight gets; 0.70-0.89 of
    # it when such refusals were read as a rate cap's), in the same simulated account.
    from opensearch_mm.ratelimit import UnlimitedRateLimiter

    scenario = Scenario(
        "concurrency", max_in_flight=cap, latency=latency, network=network, seconds=30
    )
    lockstep = simulate(replace(scenario, workers=cap), lambda clock: UnlimitedRateLimiter())
    ours = simulate(scenario)
    assert ours.rate >= 0.95 * lockstep.rate, (ours.rate, lockstep.rate)
    assert ours.throttled_share <= STEADY_SHARE


@pytest.mark.parametrize("seed", [1, 9])
def test_a_rate_throttle_seen_from_afar_is_not_held_as_a_cap_in_flight(seed: int) -> None:
    """A bucket at 20/s, 40-ms answers, 25 ms away each way: about two in flight, and the
    sends bunched up, the ones at three, are the ones the bucket refuses. With one in four
    of them refused taken for a cap of two, the sends went unpaced at what two in flight
    carry (21/s), and 10.9 % and 8.1 % of these calls' steady part were refused."""
    scenario = Scenario(
        "bucket", qps=20, seconds=16, warmup=4, workers=8, send_lag=0.003, network=0.025
    )
    r = simulate(replace(scenario, seed=seed))
    assert r.ratio >= STEADY_RATIO
    assert r.throttled_share <= 0.04


@pytest.mark.parametrize("latency", [0.04, 0.2])
def test_a_cap_of_one_in_flight_is_kept_through_a_race(latency: float) -> None:
    """One request at a time, each slot freed once its answer is written: a send made the
    moment an answer came is now and then refused with nothing else in flight. Read as no
    cap at all, the cap was dropped, a burst refused and the cap learned again: at 40 ms,
    0.70-0.73 of the ceiling with 4-6 % refused, where one request at a time with no limiter
    holds 0.83."""
    from opensearch_mm.ratelimit import UnlimitedRateLimiter

    scenario = Scenario(
        "concurrency",
        max_in_flight=1,
        latency=latency,
        handling=0.001,
        client_time=0.001,
        send_lag=0.003,
        seconds=60,
    )
    lockstep = simulate(replace(scenario, workers=1), lambda clock: UnlimitedRateLimiter())
    for seed in range(3):
        ours = simulate(replace(scenario, seed=seed))
        assert ours.rate >= 0.95 * lockstep.rate, (seed, ours.rate, lockstep.rate)
        assert ours.throttled_share <= 0.04, seed


@pytest.mark.parametrize("cap", [2, 6])
def test_a_cap_in_flight_is_kept_where_slots_free_after_the_answer(cap: int) -> None:
    # A server that frees a slot once its answer is written (and its connection handled)
    # now and then refuses a send made the moment that answer came: at the cap the client
    # keeps to. Such a 429 is not the cap moving down (learned again, it fell to a rate
    # pace: 0.62-0.72 of the ceiling). The refusals include the races themselves, which
    # K requests in lockstep with no limiter meet too (1.6-2 % of theirs).
    freed_late = next(s for s in sweep() if s.release_lag)  # (2 in flight, 0.5 ms late)
    ours = simulate(replace(freed_late, max_in_flight=cap))
    assert ours.ratio >= STEADY_RATIO
    assert ours.throttled_share <= 0.05


@pytest.mark.parametrize("seed", range(3))
def test_requests_waiting_for_a_slot_under_a_cap_in_flight_get_freed_ones_in_turn(
    seed: int,
) -> None:
    # More requests ready than the cap lets in flight: a freed slot goes to the one that
    # waited first. Taken by whichever asked first (the next request of the worker just
    # answered), the waiting ones got only the slots a probe adds, which the service
    # refuses: the same request was refused again and again until its retries ran out
    # (1-3 requests a minute at 2 in flight and 50 ms; the most 429s of one request: 7).
    r = simulate(Scenario("concurrency", max_in_flight=2, latency=0.05, seconds=60, seed=seed))
    assert r.gave_up == 0
    assert r.most_refused <= 2
    assert r.ratio >= 0.9


def test_a_scenarios_name_says_what_it_models() -> None:
    assert Scenario("sliding", qps=20, max_in_flight=3).name == "sliding 20/s 40ms + 3 in flight"
    assert Scenario("concurrency", max_in_flight=4, latency=0.2).name == "concurrency K=4 200ms"
    slow = Scenario("fixed", qps=30, slow_share=0.01)
    assert slow.name == "fixed 30/s 40ms, 1% +500ms"


def test_slow_answers_hold_their_slot_and_count_in_a_caps_ceiling() -> None:
    # Half the answers 100 ms late on top of 50 ms: each holds its slot 100 ms on average,
    # so 2 in flight carry 20/s, the ceiling the run is measured against (at 40/s, what the
    # median alone would give, the same run read about half).
    slow = Scenario(
        "concurrency", max_in_flight=2, latency=0.05, sigma=0.0, slow_share=0.5, slow=0.1
    )
    r = simulate(replace(slow, seconds=30))
    assert r.ceiling == pytest.approx(20.0)
    assert 0.9 <= r.ratio <= 1.02
    assert r.throttled_share <= STEADY_SHARE
    # Without them, the same scenario's answers come as fast as the median says.
    assert simulate(replace(slow, slow_share=0.0, seconds=30)).ceiling == pytest.approx(40.0)


def test_sends_that_reach_a_sliding_window_late_keep_near_the_best_fixed_pacing() -> None:
    # Sends 8 ms late on average (exponential), 1 % of answers 0.5 s late: on a 30/s sliding
    # window the best fixed pacing, told the cap, gets 0.963 (paced at 0.97 of it, 0.8 %
    # refused); the limiter 0.95 (a 429 at or just below the ceiling now and then). A cut
    # or a read that a late send's 429 pushes far lower shows here.
    late = Scenario("sliding", qps=30, send_lag=0.008, slow_share=0.01, seconds=40)
    for seed in range(2):
        r = simulate(replace(late, seed=seed))
        assert r.ratio >= 0.93
        assert r.throttled_share <= STEADY_SHARE


@pytest.mark.parametrize(("qps", "latency"), [(10, 0.04), (30, 0.04), (50, 2.0)])
def test_a_window_refused_at_its_count_again_and_again_is_not_cut_below_it(
    qps: float, latency: float
) -> None:
    # Each probe is refused at the same count: cut 5 % each time, a 1-s sliding window got
    # 0.96-0.97 of its ceiling; cut only what the probe overshot, 0.973-0.98.
    for seed in range(2):
        r = simulate(Scenario("sliding", qps=qps, latency=latency, seconds=40, seed=seed))
        assert r.ratio >= 0.972, (seed, r.ratio)
        assert r.throttled_share <= STEADY_SHARE


@pytest.mark.parametrize("throttle", ["fixed", "sliced"])
def test_a_window_read_one_over_at_ten_a_second_is_not_refused_on_every_climb(
    throttle: str,
) -> None:
    """At 10/s a second's count one over the limit (a fixed window straddled) is 10 % over,
    twice the cut: a ceiling read so was refused again on each climb back, 1 % lower each
    time. Sixteen-second calls, measured after the first 4 s (sends 3 ms late): 3.4 % and
    3.3 % refused over these seeds, most calls over 3 %."""
    base = Scenario(throttle, qps=10, seconds=16, warmup=4, workers=8, send_lag=0.003)
    runs = [simulate(replace(base, seed=seed)) for seed in range(8)]
    assert sum(r.throttled for r in runs) <= STEADY_SHARE * sum(r.sent for r in runs)
    assert min(r.ratio for r in runs) >= STEADY_RATIO


def test_a_sliding_window_still_holding_the_sends_before_a_cut_is_not_read_lower() -> None:
    """Refused just after a cut, at its floor, while the last second let the ceiling
    through: a sliding window still holding the sends from before the cut. Read as the rate
    refused at, a 20/s window was held at 0.94 of it for seconds: 16-s calls measured after
    the first 4 s got 0.949 on average over these seeds (0.942-0.954)."""
    base = Scenario("sliding", qps=20, seconds=16, warmup=4, workers=8, send_lag=0.003)
    ratios = [simulate(replace(base, seed=seed)).ratio for seed in range(8)]
    assert statistics.mean(ratios) >= 0.955, ratios


@pytest.mark.parametrize(("qps", "burst", "ratio"), [(100, 5, 0.925), (30, 2, 0.9)])
def test_a_bucket_of_a_small_burst_read_low_at_start_up_is_found_within_seconds(
    qps: int, burst: int, ratio: float
) -> None:
    """A bucket of a small burst refuses the ramp as soon as it passes the rate, and the
    second before holds the ramp's rising average: about 0.6 of the rate. A probe then goes
    well past the ceiling before its 429, and the last second's count lags its rise too:
    read as that count, the rate took 10-15 s to be found (16-s calls measured after the
    first 4 s, these seeds: 0.913 on average for 5 at 100/s, 0.863 for 2 at 30/s)."""
    base = Scenario("bucket", qps=qps, burst=burst, seconds=16, warmup=4, workers=8)
    runs = [simulate(replace(base, seed=seed, send_lag=0.003)) for seed in range(4)]
    assert statistics.mean(r.ratio for r in runs) >= ratio, [r.ratio for r in runs]
    assert sum(r.throttled for r in runs) <= STEADY_SHARE * sum(r.sent for r in runs)


@pytest.mark.parametrize("throttle", ["fixed", "sliding"])
def test_a_window_of_a_minute_the_start_spent_loses_no_request(throttle: str) -> None:
    # The ramp spends a minute's quota in seconds and the window stays shut for the rest
    # of the minute: requests refused throughout wait it out instead of running out of
    # retries (default retries: 3-12 requests of each run were lost so).
    for seed in range(3):
        r = simulate(Scenario(throttle, qps=10, window=60.0, seconds=130, seed=seed))
        assert r.gave_up == 0
        assert r.ratio >= 0.55  # the rest of the first minute's shut is in the measure


def test_clients_that_do_not_coordinate_do_not_ratchet_one_down() -> None:
    """Three clients on one 10/s bucket, each pacing from its own 429s. One refused now and
    then by the others' probes holds its sends; a read spanning that hold took the idle
    part for capacity refused, cut the client to half, and again at the next hold: over
    these seeds one client kept under half an equal share (0.44-0.49) in three runs of ten.
    A read spanning a hold is checked against 5 s."""
    for seed in range(10):
        r = simulate(Scenario("bucket", qps=10, clients=3, seconds=60, seed=seed))
        equal = sum(c.ok for c in r.clients) / len(r.clients)
        assert min(c.ok for c in r.clients) >= 0.5 * equal, seed
        assert r.ratio >= 0.95, seed


@pytest.mark.parametrize("seed", [1, 4])
def test_a_probe_refused_at_a_low_rate_is_not_read_below_its_ceiling(seed: int) -> None:
    """Below ten sends a second a rate read spans several seconds, back into the climb to
    the ceiling: a probe's 429 read from it put the limit below a ceiling that had held a
    whole climb, and a 10-s window at 10/s was held at 0.79-0.83 of it with these seeds."""
    r = simulate(Scenario("sliding", qps=10, window=10.0, seconds=60, send_lag=0.003, seed=seed))
    assert r.ratio >= 0.93
    assert r.throttled_share <= STEADY_SHARE


@pytest.mark.parametrize("qps", [3, 10])
def test_a_throttle_spacing_requests_is_not_read_from_its_first_refusal(qps: int) -> None:
    """A throttle that spaces requests (a bucket of one, nginx's ``limit_req`` without a
    burst) refuses the start-up's second send, 0.1 s in: read as a window, one let through
    in that second is 1/s, and climbing back by answers at 1/s took most of a minute (whole
    30-s calls: 0.32-0.35 of the rate with these seeds; climbing back by time, 0.59-0.69).
    So small a read is climbed back from by time alone, from a first step of 3 %, with
    slots booked at most 1 s ahead (at 1 %, with slots booked up to 4 s ahead at 1/s,
    whole calls with sends 3 ms late held 0.58-0.63 at 3/s and 0.48-0.50 at 10/s with
    these seeds; now 0.67-0.71 and 0.57-0.58)."""
    ratios = []
    for seed in range(3):
        scenario = Scenario(
            "bucket", qps=qps, burst=1, seconds=30, warmup=0, workers=8, send_lag=0.003
        )
        r = simulate(replace(scenario, seed=seed))
        assert r.ratio >= 0.55, seed
        ratios.append(r.ratio)
    assert statistics.mean(ratios) >= (0.66 if qps == 3 else 0.56)


def test_a_throttle_spacing_requests_is_found_past_its_first_probe() -> None:
    """Climbing by time from a read of one or two, the probe that finds a spacing throttle's
    rate rises over the second before its 429, which then holds the probe's rising average:
    read as that count, a bucket of one at 3/s was held at 0.85 of it over a minute (these
    seeds, sends 3 ms late; 0.93 read halfway to the rate refused)."""
    base = Scenario("bucket", qps=3, burst=1, seconds=60, workers=8, send_lag=0.003)
    ratios = [simulate(replace(base, seed=seed)).ratio for seed in range(4)]
    assert statistics.mean(ratios) >= 0.9, ratios


def test_a_scenario_names_what_changes_mid_run() -> None:
    # (A cap in flight that changes under a rate cap once failed to format: no new rate.)
    both = Scenario("sliding", qps=30, max_in_flight=6, change_at=30, new_max_in_flight=3)
    assert both.name == "sliding 30/s 40ms + 6 in flight ->3 in flight@30s"
    assert Scenario("fixed", qps=10, change_at=30, new_qps=30).name == "fixed 10/s 40ms ->30@30s"
    cap = Scenario("concurrency", max_in_flight=8, change_at=30, new_max_in_flight=16)
    assert cap.name == "concurrency K=8 40ms ->16@30s"


@pytest.mark.parametrize(
    "scenario",
    [
        Scenario("sliding", qps=30, max_in_flight=6, latency=0.15, seconds=60),
        # ... and the cap cut to 3 mid-run, below the rate (the cap alone holds again)
        Scenario(
            "sliding",
            qps=30,
            max_in_flight=6,
            latency=0.15,
            seconds=60,
            change_at=30,
            new_max_in_flight=3,
        ),
    ],
    ids=lambda s: s.name,
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_rate_cap_and_a_cap_in_flight_together_are_both_held(
    scenario: Scenario, seed: int
) -> None:
    # A gateway with both limits: the cap is learned from sharp refusals above it, then
    # the rate cap refuses within it. Read as the cap moving down, the cap was learned
    # again lower and the pair paced as a rate: 0.855-0.878 (a 30/s window, 6 in flight).
    r = simulate(replace(scenario, seed=seed))
    assert r.ratio >= 0.92, r.ratio
    assert r.throttled_share <= STEADY_SHARE
