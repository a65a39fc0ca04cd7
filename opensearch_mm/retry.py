"""Retry decisions, without I/O: what is worth retrying and how long to wait.

:func:`is_retryable` says whether a failed request may succeed if sent again;
:func:`is_fatal_for_call` whether the other requests of the same call would fail too;
:class:`RetryPolicy` how many retries and how long between them. The per-request state
machine (``opensearch_mm._request``) applies them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .errors import (
    APIConnectionError,
    APIResponseError,
    APIStatusError,
    ConfigurationError,
    QuotaExceededError,
    RateLimitError,
    is_throttling,
)

__all__ = [
    "REFUSED_MAX_RETRIES",
    "SHUT_MIN",
    "RetryPolicy",
    "is_fatal_for_call",
    "is_retryable",
]

_RETRYABLE_STATUS = frozenset({408, 409, 429})  # and every 5xx but these two:
_FINAL_5XX = frozenset({501, 505})  # not implemented, HTTP version: the same every time
# (A gateway's own 5xx, 520-530 at CDNs, are passing failures like 502-504.)
# A refused connection means nothing listens at the endpoint (wrong port, server down), an
# unknown host a misspelt endpoint:
# a couple of quick retries ride out a restart, but the user hears about it in ~1 s,
# not after the full backoff (~30 s with the defaults).
REFUSED_MAX_RETRIES = 2
REFUSED_MAX_DELAY = 0.5  # seconds, the cap of each jittered wait after a refusal
# A throttle that has let nothing through for over a second is shut, not busy: longer than a
# 1-s window stays shut for a sender it was accepting, or a bucket takes to refill at 1/s.
SHUT_MIN = 1.0


def _refused(exc: BaseException) -> bool:
    # (An unknown host is as permanent, save a name service's hiccup.)
    return isinstance(exc, APIConnectionError) and exc.kind in ("refused", "unresolved")


def is_retryable(exc: BaseException) -> bool:
    """Whether sending the same request again may succeed.

    Retried: 429 ``Throttling``/``Throttling.RateQuota``, 408/409, 5xx but 501/505,
    connection errors, timeouts and malformed 2xx bodies, and
    ``Throttling.AllocationQuota`` with a retry hint (a quota per period, back when the
    hint says: see ``QuotaExceededError``).
    Never: 400, 401/403, 404, ``Throttling.AllocationQuota`` without a hint or on the
    free quota (retrying cannot help) and an https endpoint that answers in plain http
    (every retry would fail the same way).

    Args:
        exc: The error a request ended in.

    Returns:
        ``True`` when a retry may help.
    """
    if isinstance(exc, QuotaExceededError):
        return exc.refills
    if isinstance(exc, RateLimitError):
        return True
    if isinstance(exc, APIStatusError):
        status = exc.status_code
        return status in _RETRYABLE_STATUS or (500 <= status < 600 and status not in _FINAL_5XX)
    if isinstance(exc, APIConnectionError):
        return exc.kind != "tls_mismatch"
    return isinstance(exc, APIResponseError)


def is_fatal_for_call(exc: BaseException) -> bool:
    """Whether a failed request means the other requests of the call would fail too.

    After such an error no new request of the call is started (authentication, unknown
    model or workspace, exhausted quota, an account that let no request through while one
    was retried: ``RateLimitError.account_shut``); other failures only lose their own batch.

    Args:
        exc: The error a request finally ended in.

    Returns:
        ``True`` when the call should stop starting requests.
    """
    if not isinstance(exc, APIStatusError):
        return False
    if isinstance(exc, QuotaExceededError) or exc.status_code in (401, 403, 404):
        return True
    if isinstance(exc, RateLimitError) and exc.account_shut:
        return True
    return exc.code == "ServiceIdNotExist"


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter; ``Retry-After`` wins when the server sends it.

    Attributes:
        max_retries: Retries per request after the first attempt (0 disables retries).
        initial_delay: Cap of the first jittered wait, in seconds; doubles per retry.
        max_delay: Largest cap of a jittered wait.
        max_retry_after: Largest server-requested wait honoured (longer ones are capped).
        max_shut_wait: Longest a request waits out a throttle that has stopped letting
            anything through (a window of a minute the start of a call spent in seconds
            stays shut for most of it): its 429s then use up no retry, for up to this
            many seconds since the account last let a request through (0: every 429
            counts).

    Raises:
        ConfigurationError: A field is not a number, or is negative.
    """

    max_retries: int = 6
    initial_delay: float = 0.5
    max_delay: float = 16.0
    max_retry_after: float = 60.0
    max_shut_wait: float = 120.0  # a minute's window stays shut < 60 s: twice that, to spare

    def __post_init__(self) -> None:
        if (
            not isinstance(self.max_retries, int)
            or isinstance(self.max_retries, bool)
            or self.max_retries < 0
        ):
            raise ConfigurationError(
                f"max_retries must be an int >= 0, got {self.max_retries!r}"
                + (" (use 0 to disable retries)" if self.max_retries is None else "")
            )
        for name in ("initial_delay", "max_delay", "max_retry_after", "max_shut_wait"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ConfigurationError(f"{name} must be a number >= 0, got {value!r}")

    def budget(self, exc: BaseException) -> int:
        """How many retries a request ending in ``exc`` gets in all: ``max_retries``, or
        at most ``REFUSED_MAX_RETRIES`` after a refused connection."""
        return min(self.max_retries, REFUSED_MAX_RETRIES) if _refused(exc) else self.max_retries

    def counts(self, exc: BaseException, shut_for: float) -> bool:
        """Whether a failure uses up one of the retries.

        Every failure does, but a throttle's 429 while the account has let nothing through
        for ``shut_for`` seconds, over :data:`SHUT_MIN` and up to ``max_shut_wait``: the
        throttle is shut (a window of seconds or minutes, full), and the rate limiter
        paces the sends that find it open again, whichever request they carry.

        Args:
            exc: The error the last attempt ended in.
            shut_for: Seconds the account has let nothing through, since before the
                request was sent (0 when something got through meanwhile: see
                :meth:`~opensearch_mm.ratelimit.RateLimiter.shut_for`).
        """
        return not (is_throttling(exc) and SHUT_MIN < shut_for <= self.max_shut_wait)

    def should_retry(self, exc: BaseException, retries_done: int) -> bool:
        """Whether to retry after ``retries_done`` retries, the last ending in ``exc``."""
        if isinstance(exc, QuotaExceededError) and (exc.retry_after or 0) > self.max_retry_after:
            return False  # back later than a wait this policy honours: retrying early fails
        return retries_done < self.budget(exc) and is_retryable(exc)

    def delay(self, exc: BaseException, retries_done: int, rng: random.Random) -> float:
        """Seconds to sleep before retry number ``retries_done + 1``.

        Args:
            exc: The error the last attempt ended in (its ``retry_after`` wins).
            retries_done: Retries already made.
            rng: The source of jitter (seeded in tests).

        Returns:
            The wait in seconds.
        """
        retry_after = getattr(exc, "retry_after", None)
        if isinstance(retry_after, (int, float)) and retry_after >= 0:
            # Capped, never ignored: retrying sooner than asked only earns another 429.
            # A little jitter keeps concurrent retries from landing in the same instant.
            wait = min(float(retry_after), self.max_retry_after)
            return wait + rng.uniform(0, min(0.1, self.initial_delay))
        cap = min(self.max_delay, self.initial_delay * (2**retries_done))
        if _refused(exc):
            cap = min(cap, REFUSED_MAX_DELAY)
        return rng.uniform(0, cap)
