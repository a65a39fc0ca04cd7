"""Retry decisions (``opensearch_mm.retry``)."""

from __future__ import annotations

import random

import pytest

from opensearch_mm.errors import (
    APIConnectionError,
    APIError,
    APIResponseError,
    APITimeoutError,
    AuthenticationError,
    ConfigurationError,
    InputError,
    InternalServerError,
    InvalidParameterError,
    QuotaExceededError,
    RateLimitError,
    ServiceNotFoundError,
)
from opensearch_mm.retry import RetryPolicy, is_fatal_for_call, is_retryable


def api(
    cls: type[APIError], status: int, code: str | None = None, retry_after: float | None = None
) -> APIError:
    return cls("m", status_code=status, code=code, retry_after=retry_after)


RETRYABLE: list[BaseException] = [
    api(RateLimitError, 429, "Throttling"),
    api(RateLimitError, 429, "Throttling.RateQuota"),
    api(RateLimitError, 429, None),
    api(InternalServerError, 500, "InternalServerError"),
    api(InternalServerError, 502),
    api(InternalServerError, 503),
    api(InternalServerError, 504),
    api(APIError, 408),
    api(APIError, 409),
    api(InternalServerError, 507),  # (a gateway's own 5xx too: 520-530 at CDNs)
    api(InternalServerError, 520),
    api(InternalServerError, 524),
    APIConnectionError("reset"),
    APITimeoutError("slow"),
    APIResponseError("truncated"),
]
NOT_RETRYABLE: list[BaseException] = [
    api(InvalidParameterError, 400, "InvalidParameter"),
    api(ServiceNotFoundError, 400, "ServiceIdNotExist"),
    api(ServiceNotFoundError, 404, "NotFound"),
    api(AuthenticationError, 401),
    api(AuthenticationError, 403),
    api(QuotaExceededError, 429, "Throttling.AllocationQuota"),
    api(APIError, 418),
    api(InternalServerError, 501),
    api(InternalServerError, 505),
    InputError("bad", index=0),
    ConfigurationError("bad"),
    ValueError("x"),
    KeyboardInterrupt(),
]


@pytest.mark.parametrize("exc", RETRYABLE, ids=repr)
def test_retryable(exc: BaseException) -> None:
    assert is_retryable(exc)
    assert RetryPolicy(max_retries=1).should_retry(exc, 0)


@pytest.mark.parametrize("exc", NOT_RETRYABLE, ids=repr)
def test_not_retryable(exc: BaseException) -> None:
    assert not is_retryable(exc)
    assert not RetryPolicy(max_retries=5).should_retry(exc, 0)


def quota(message: str, retry_after: float | None) -> QuotaExceededError:
    return QuotaExceededError(
        message, status_code=429, code="Throttling.AllocationQuota", retry_after=retry_after
    )


def test_a_quota_the_service_says_is_back_soon_is_retried_after_the_hint() -> None:
    """A quota per period (tokens per minute) with a retry hint: retried when it says."""
    exc = quota("Allocated quota exceeded, please increase your quota limit.", 20.0)
    policy = RetryPolicy(max_retries=2)
    assert exc.refills and is_retryable(exc) and policy.should_retry(exc, 0)
    assert 20.0 <= policy.delay(exc, 0, random.Random(0)) <= 20.1
    assert not policy.should_retry(exc, 2)  # the retries still run out
    assert is_fatal_for_call(exc)  # and then the call stops


@pytest.mark.parametrize(
    ("message", "retry_after", "max_retry_after"),
    [
        ("Allocated quota exceeded, please increase your quota limit.", None, 60.0),
        ("Free allocated quota exceeded.", 20.0, 60.0),  # only billing brings it back
        ("Allocated quota exceeded, please increase your quota limit.", 90.0, 60.0),
    ],
)
def test_a_quota_with_no_hint_the_free_one_or_one_back_too_late_is_not_retried(
    message: str, retry_after: float | None, max_retry_after: float
) -> None:
    exc = quota(message, retry_after)
    assert not RetryPolicy(max_retries=5, max_retry_after=max_retry_after).should_retry(exc, 0)


@pytest.mark.parametrize(
    ("exc", "fatal"),
    [
        (api(AuthenticationError, 401), True),
        (api(AuthenticationError, 403), True),
        (api(ServiceNotFoundError, 404), True),
        (api(ServiceNotFoundError, 400, "ServiceIdNotExist"), True),
        (api(QuotaExceededError, 429, "Throttling.AllocationQuota"), True),
        (api(RateLimitError, 429, "Throttling.RateQuota"), False),
        (api(InvalidParameterError, 400, "InvalidParameter"), False),
        (api(InternalServerError, 500), False),
        (APIConnectionError("x"), False),
        (APIResponseError("x"), False),
        (ValueError("x"), False),
    ],
    ids=repr,
)
def test_is_fatal_for_call(exc: BaseException, fatal: bool) -> None:
    assert is_fatal_for_call(exc) is fatal


def test_max_retries_counts() -> None:
    exc = api(InternalServerError, 500)
    policy = RetryPolicy(max_retries=3)
    assert [policy.should_retry(exc, n) for n in range(5)] == [True, True, True, False, False]
    assert not RetryPolicy(max_retries=0).should_retry(exc, 0)


def test_negative_max_retries_refused() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(max_retries=-1)


def test_full_jitter_bounds() -> None:
    policy = RetryPolicy(initial_delay=0.5, max_delay=4.0)
    rng = random.Random(1234)
    exc = api(InternalServerError, 500)
    for attempt in range(10):
        cap = min(4.0, 0.5 * 2**attempt)
        delays = [policy.delay(exc, attempt, rng) for _ in range(300)]
        assert all(0 <= d <= cap for d in delays)
        # full jitter spreads over the whole range, not just near the cap
        assert min(delays) < cap * 0.1 and max(delays) > cap * 0.9


def test_jitter_is_reproducible_with_seed() -> None:
    policy = RetryPolicy()
    exc = APIConnectionError("x")
    a = [policy.delay(exc, n, random.Random(7)) for n in range(6)]
    b = [policy.delay(exc, n, random.Random(7)) for n in range(6)]
    assert a == b


def test_retry_after_honoured() -> None:
    policy = RetryPolicy(initial_delay=0.5, max_delay=1.0)
    rng = random.Random(0)
    exc = api(RateLimitError, 429, "Throttling", retry_after=3.0)
    for attempt in range(5):
        d = policy.delay(exc, attempt, rng)
        # the server's wait wins over the (smaller) backoff cap, plus at most 0.1 s jitter
        assert 3.0 <= d <= 3.1


def test_retry_after_zero() -> None:
    policy = RetryPolicy(initial_delay=0.01)
    d = policy.delay(api(RateLimitError, 429, retry_after=0.0), 0, random.Random(0))
    assert 0.0 <= d <= 0.01


def test_retry_after_is_capped() -> None:
    policy = RetryPolicy(initial_delay=0.5, max_delay=2.0, max_retry_after=10.0)
    exc = api(RateLimitError, 429, retry_after=3600.0)
    d = policy.delay(exc, 0, random.Random(0))
    # capped at max_retry_after, not ignored (a short backoff would only earn another 429)
    assert 10.0 <= d <= 10.1


def test_retry_after_on_connection_error_ignored() -> None:
    policy = RetryPolicy(initial_delay=0.2, max_delay=0.2)
    d = policy.delay(APIConnectionError("x"), 3, random.Random(5))
    assert 0 <= d <= 0.2


def test_a_shut_throttles_429s_use_up_no_retry_for_a_while() -> None:
    policy = RetryPolicy()  # max_shut_wait 120 s
    throttled = RateLimitError("slow down", status_code=429, code="Throttling.RateQuota")
    assert not policy.counts(throttled, 30.0)  # a full window of a minute: waited out
    assert policy.counts(throttled, 0.0)  # something got through meanwhile
    assert policy.counts(throttled, 0.9)  # under a second: a busy window
    assert policy.counts(throttled, 121.0)  # shut for longer than a window of a minute
    assert not RetryPolicy(max_shut_wait=600.0).counts(throttled, 300.0)
    assert RetryPolicy(max_shut_wait=0.0).counts(throttled, 30.0)  # off
    used_up = QuotaExceededError("quota", status_code=429, code="Throttling.AllocationQuota")
    assert policy.counts(used_up, 30.0)
    assert policy.counts(InternalServerError("busy", status_code=503), 30.0)
    with pytest.raises(ConfigurationError):
        RetryPolicy(max_shut_wait=-1.0)
