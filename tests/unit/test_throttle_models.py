"""The throttle models the emulator and the simulation share, on an explicit clock."""

from __future__ import annotations

import pytest

from opensearch_mm.emulator._throttle import (
    AllOf,
    AnchoredWindow,
    ConcurrencyCap,
    FixedWindow,
    QueuedRate,
    SlicedWindow,
    SlidingWindow,
    TokenBucket,
    WarmUp,
    WeightedWindow,
    make_throttle,
)
from opensearch_mm.protocol import parse_retry_after


def admitted(throttle: object, times: list[float]) -> list[bool]:
    return [throttle.admit(t) for t in times]  # type: ignore[attr-defined]


def test_token_bucket_starts_full_and_refills_at_its_rate() -> None:
    bucket = TokenBucket(10, now=0.0)  # capacity: one second's worth
    assert admitted(bucket, [0.0] * 11) == [True] * 10 + [False]
    assert bucket.retry_after(0.0) == pytest.approx(0.1)
    assert admitted(bucket, [0.1, 0.1]) == [True, False]  # one token per 0.1 s
    small = TokenBucket(10, capacity=2, now=0.0)
    assert admitted(small, [0.0, 0.0, 0.0]) == [True, True, False]


def test_a_penalty_bucket_charges_refusals_down_to_a_full_debt() -> None:
    bucket = TokenBucket(10, penalty=True, now=0.0)
    assert all(bucket.admit(0.0) for _ in range(10))
    assert not any(bucket.admit(0.0) for _ in range(30))  # debt stops at -capacity
    assert not bucket.admit(1.0)  # a second refills 10: still at -1, and this costs one
    assert bucket.admit(1.25)  # -2 + 2.5 tokens
    plain = TokenBucket(10, now=0.0)
    assert all(plain.admit(0.0) for _ in range(10)) and not plain.admit(0.0)
    assert plain.admit(0.1)  # a plain bucket charged nothing for the refusal


def test_fixed_window_counts_per_clock_window() -> None:
    window = FixedWindow(3, 1.0, phase=0.5)  # windows [0.5, 1.5), [1.5, 2.5), ...
    assert admitted(window, [0.6, 0.7, 0.8, 0.9]) == [True, True, True, False]
    assert window.retry_after(0.9) == pytest.approx(0.6)
    assert admitted(window, [1.5, 1.5, 1.5, 1.6]) == [True, True, True, False]


def test_anchored_window_starts_at_the_first_request_after_the_last_one_ended() -> None:
    window = AnchoredWindow(3, 1.0)  # no clock: the first request opens [0.3, 1.3)
    assert admitted(window, [0.3, 0.4, 1.2, 1.25]) == [True, True, True, False]
    assert window.retry_after(1.25) == pytest.approx(0.05)
    # Ended at 1.3; the next window opens at 1.6, the first request since, not at 1.3.
    assert admitted(window, [1.6, 1.7, 2.5, 2.55, 2.6]) == [True, True, True, False, True]
    made = make_throttle("anchored", 10.0, window=2.0)
    assert isinstance(made, AnchoredWindow) and made.limit == 20 and made.window == 2.0


def test_sliding_window_counts_any_span() -> None:
    window = SlidingWindow(3, 1.0)
    assert admitted(window, [0.0, 0.4, 0.8, 0.9]) == [True, True, True, False]
    assert window.retry_after(0.9) == pytest.approx(0.1)
    assert admitted(window, [1.0, 1.05, 1.3, 1.41]) == [True, False, False, True]


def test_a_penalty_sliding_window_counts_refused_arrivals_too() -> None:
    window = SlidingWindow(3, 1.0, penalty=True)
    assert admitted(window, [0.0, 0.4, 0.8, 0.9]) == [True, True, True, False]
    assert window.retry_after(0.95) == pytest.approx(0.45)  # 0.4 must leave, not only 0.0
    # At 1.0 the 0.0 arrival has left, but the refused 0.9 holds its place; each refused
    # arrival keeps the window full for a second more.
    assert admitted(window, [1.0, 1.05, 1.45, 2.3]) == [False, False, False, True]
    plain = SlidingWindow(3, 1.0)
    assert admitted(plain, [0.0, 0.4, 0.8, 0.9, 1.0]) == [True, True, True, False, True]
    assert make_throttle("sliding", 3.0, penalty=True).penalty  # type: ignore[union-attr]


def test_sliced_window_counts_the_current_and_previous_slice() -> None:
    window = SlicedWindow(4, 1.0, slices=2, phase=0.0)  # slices [0, 0.5), [0.5, 1), ...
    assert admitted(window, [0.1, 0.2, 0.6, 0.7, 0.9]) == [True, True, True, True, False]
    assert window.retry_after(0.9) == pytest.approx(0.1)
    # At 1.0 the slice [0, 0.5) leaves the count: two places free until 1.5.
    assert admitted(window, [1.0, 1.1, 1.2]) == [True, True, False]
    # At 1.5 [0.5, 1) leaves: only [1, 1.5) counts, with its two.
    assert admitted(window, [1.5, 1.5, 1.5]) == [True, True, False]


def test_weighted_window_weighs_the_last_window_by_what_a_sliding_one_still_covers() -> None:
    window = WeightedWindow(4, 1.0, phase=0.0)  # windows [0, 1), [1, 2), ...
    assert admitted(window, [0.1, 0.2, 0.3, 0.4, 0.5]) == [True, True, True, True, False]
    # Full until the next window, where its 4 weigh in whole at first.
    assert window.retry_after(0.5) == pytest.approx(0.5, abs=1e-5)
    # The last window's 4 weigh 3 at 1.25 (3 + 0 passes), 2.8 at 1.3 (2.8 + 1 passes) and
    # 2.6 at 1.35 (2.6 + 2 does not).
    assert window.estimate(1.25) == pytest.approx(3.0)
    assert admitted(window, [1.25, 1.3, 1.35]) == [True, True, False]
    assert window.retry_after(1.35) == pytest.approx(0.15, abs=1e-5)  # 4 x 0.5 + 2 = 4 until 1.5
    assert admitted(window, [1.5, 1.5 + 1e-6]) == [False, True]
    # A window skipped entirely leaves nothing to weigh.
    assert window.estimate(3.0) == 0.0
    assert window.ceiling == 4.0


def test_weighted_window_holds_an_even_sender_to_its_limit() -> None:
    window = WeightedWindow(4, 1.0, phase=0.3)
    at_limit = [0.31 + k / 4 for k in range(40)]
    assert all(admitted(window, at_limit))
    faster = WeightedWindow(4, 1.0, phase=0.3)
    results = admitted(faster, [0.31 + k / 5 for k in range(50)])
    assert 38 <= sum(results) <= 41  # 4 a second of 5 sent, over 10 s
    # A burst at the end of a window weighs on the start of the next, less as it ends.
    burst = WeightedWindow(4, 1.0, phase=0.0)
    assert admitted(burst, [0.95, 0.96, 0.97, 0.98, 1.1, 1.15]) == [True] * 5 + [False]
    made = make_throttle("weighted", 10.0, window=2.0, phase=0.5)
    assert isinstance(made, WeightedWindow) and made.limit == 20 and made.phase == 0.5


def test_a_queue_holds_requests_in_line_and_refuses_only_a_wait_too_long() -> None:
    line = QueuedRate(10.0, max_wait=0.25)
    # Four at once: served 0.1 s apart; the fourth would wait 0.3 s, over 0.25: refused.
    assert [line.admit_after(0.0) for _ in range(4)] == [0.0, 0.1, 0.2, None]
    assert line.retry_after(0.0) == pytest.approx(0.05)  # the line is 0.25 s long at 0.05
    assert line.admit_after(0.05) == pytest.approx(0.25)
    assert line.admit_after(1.0) == 0.0  # the line emptied at 0.4
    assert line.ceiling == 10.0
    queue = make_throttle("queue", 10.0, window=0.25)
    assert isinstance(queue, QueuedRate) and queue.max_wait == 0.25


def test_all_of_waits_as_long_as_its_longest_line() -> None:
    both = make_throttle("queue", 10.0, window=0.5, max_in_flight=2)
    assert isinstance(both, AllOf)
    assert [both.admit_after(0.0) for _ in range(3)] == [0.0, 0.1, None]  # two in flight
    both.release(0.05)
    assert both.admit_after(0.05) == pytest.approx(0.15)


def test_concurrency_cap_ignores_the_rate() -> None:
    cap = ConcurrencyCap(2)
    assert admitted(cap, [0.0, 0.0, 0.0]) == [True, True, False]
    cap.release(0.1)
    assert admitted(cap, [5.0, 5.0]) == [True, False]


def test_all_of_charges_nothing_when_one_part_refuses() -> None:
    both = make_throttle("sliding", 2.0, max_in_flight=1)
    assert isinstance(both, AllOf)
    assert admitted(both, [0.0, 0.1]) == [True, False]  # the second: one in flight already
    both.release(0.2)
    assert admitted(both, [0.3]) == [True]
    both.release(0.35)
    assert admitted(both, [0.4]) == [False]  # two in the last second: the rate part refuses
    both.release(0.45)  # (nothing was taken: releasing more frees nothing below zero)
    assert admitted(both, [1.05]) == [True]


def test_make_throttle_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="unknown throttle"):
        make_throttle("leaky", 5.0)
    with pytest.raises(ValueError, match="max_in_flight"):
        make_throttle("concurrency", None)
    assert make_throttle("bucket", None) is None


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"x-acs-retry-after": "1500"}, 1.5),  # milliseconds, as the SDK runtime reads it
        ({"x-acs-retry-after": "250", "retry-after": "9"}, 0.25),  # the gateway's wins
        ({"retry-after-ms": "100", "x-acs-retry-after": "900"}, 0.1),
        ({"x-acs-retry-after": "0", "retry-after": "2"}, 2.0),  # not positive: absent
        ({"x-acs-retry-after": "soon", "retry-after": "3"}, 3.0),  # not a number: absent
        ({"x-acs-retry-after": "-5"}, None),
    ],
)
def test_x_acs_retry_after_is_milliseconds(headers: dict[str, str], seconds: float | None) -> None:
    assert parse_retry_after(headers) == seconds


def _passed_per_second(throttle: object, seconds: int, every: float) -> list[int]:
    """What a sender trying every ``every`` seconds gets through in each clock second."""
    counts = [0] * seconds
    steps = round(seconds / every)
    for k in range(steps):
        t = k * every
        if throttle.admit(t):  # type: ignore[attr-defined]
            counts[int(t)] += 1
    return counts


def test_a_warm_up_lets_a_third_through_when_cold_and_all_after_its_period() -> None:
    warm = WarmUp(30, 10.0)
    counts = _passed_per_second(warm, 30, 0.002)
    assert counts[0] == 10  # cold: a third of 30/s
    assert counts[1] < counts[8] < 30  # climbing with each second's traffic
    assert counts[20:] == [30] * 10  # warm before its period is twice over
    assert warm.limit_at(30.0) == pytest.approx(30.0)
    assert warm.ceiling == 30.0


def test_a_warm_up_cools_when_idle_or_held_below_its_cold_limit() -> None:
    warm = WarmUp(30, 10.0)
    _passed_per_second(warm, 30, 0.002)
    assert warm.limit_at(29.5) == pytest.approx(30.0)
    assert warm.limit_at(60.0) == pytest.approx(10.0)  # 30 s idle: cold again
    held = WarmUp(30, 10.0)
    counts = _passed_per_second(held, 30, 1 / 9.5)  # 9-10 a second, under the 10 that warm
    assert max(counts) <= 10
    assert held.limit_at(30.0) < 12.0  # seconds of 9 refill the store: still cold


def test_make_throttle_builds_a_warm_up_from_its_period() -> None:
    warm = make_throttle("warmup", 30.0, window=5.0, phase=0.0)
    assert isinstance(warm, WarmUp)
    assert warm.period == 5.0 and warm.limit_at(0.0) == pytest.approx(10.0)
