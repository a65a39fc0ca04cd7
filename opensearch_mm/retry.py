"""Retry decisions, without I/O: what is worth retrying and how long to wait."""

from __future__ import annotations

import random
from dataclasses import dataclass

from .errors import (
    APIConnectionError,
    APIError,
    APIResponseError,
    QuotaExceededError,
    RateLimitError,
)

__all__ = ["RetryPolicy", "is_fatal_for_call", "is_retryable"]

_RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


def is_retryable(exc: BaseException) -> bool:
    """Whether sending the same request again may succeed.

    Retried: 429 ``Throttling``/``Throttling.RateQuota``, 408/409/5xx, connection errors,
    timeouts and malformed 2xx bodies. Never: 400, 401/403, 404 and
    ``Throttling.AllocationQuota`` (the quota is gone; retrying cannot help).
    """
    if isinstance(exc, QuotaExceededError):
        return False
    if isinstance(exc, RateLimitError):
        return True
    if isinstance(exc, APIError):
        return exc.status_code in _RETRYABLE_STATUS
    return isinstance(exc, (APIConnectionError, APIResponseError))


def is_fatal_for_call(exc: BaseException) -> bool:
    """Whether a failed request means the other requests of the call would fail too.

    After such an error no new request of the call is started (authentication, unknown
    model or workspace, exhausted quota); other failures only lose their own batch.
    """
    if not isinstance(exc, APIError):
        return False
    if isinstance(exc, QuotaExceededError) or exc.status_code in (401, 403, 404):
        return True
    return exc.code == "ServiceIdNotExist"


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter; ``Retry-After`` wins when the server sends it."""

    max_retries: int = 6
    initial_delay: float = 0.5
    max_delay: float = 16.0
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")

    def should_retry(self, exc: BaseException, retries_done: int) -> bool:
        return retries_done < self.max_retries and is_retryable(exc)

    def delay(self, exc: BaseException, retries_done: int, rng: random.Random) -> float:
        """Seconds to sleep before retry number ``retries_done + 1``."""
        retry_after = getattr(exc, "retry_after", None)
        if isinstance(retry_after, (int, float)) and retry_after >= 0:
            # Capped, never ignored: retrying sooner than asked only earns another 429.
            # A little jitter keeps concurrent retries from landing in the same instant.
            wait = min(float(retry_after), self.max_retry_after)
            return wait + rng.uniform(0, min(0.1, self.initial_delay))
        cap = min(self.max_delay, self.initial_delay * (2**retries_done))
        return rng.uniform(0, cap)
