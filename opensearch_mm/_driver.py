"""What the sync and async drivers share: everything but the waiting and the I/O."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from .batching import Batch
from .errors import APIConnectionError, APITimeoutError, OpenSearchMMError
from .protocol import BatchResponse, parse_response
from .ratelimit import RateLimiter, Ticket
from .retry import RetryPolicy, is_fatal_for_call

__all__ = [
    "NOT_SENT",
    "DriverBase",
    "DriverConfig",
    "Halt",
    "NotSent",
    "Outcome",
    "map_transport_error",
]

logger = logging.getLogger("opensearch_mm")


class NotSent:
    """Outcome of a batch that was never sent because its call stopped first."""


NOT_SENT = NotSent()
Outcome = BatchResponse | BaseException | NotSent


def map_transport_error(exc: httpx.HTTPError) -> OpenSearchMMError:
    """An httpx failure as one of ours (the message never holds headers)."""
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(f"request timed out ({type(exc).__name__})")
    return APIConnectionError(f"connection failed ({type(exc).__name__}: {exc})")


class Halt:
    """When a run stops sending: the caller's ``stop()``, or at once after a fatal error
    (bad key, unknown model, quota gone), before its result comes up in input order."""

    def __init__(self, stop: Callable[[], bool]) -> None:
        self._stop = stop
        self.fatal = False

    def __call__(self) -> bool:
        return self.fatal or self._stop()

    def note(self, error: BaseException) -> None:
        if is_fatal_for_call(error):
            self.fatal = True


@dataclass(frozen=True)
class DriverConfig:
    """What a driver needs from its client."""

    url: str
    headers: dict[str, str] | None  # None: the HTTP client already sends them
    retry: RetryPolicy
    limiter: RateLimiter
    secrets: tuple[str, ...]
    max_concurrency: int


class DriverBase:
    """Configuration and the pure steps of one attempt, for both drivers."""

    def __init__(self, config: DriverConfig) -> None:
        self.url = config.url
        self.headers = config.headers
        self.retry = config.retry
        self.limiter = config.limiter
        self.secrets = config.secrets
        self.max_concurrency = config.max_concurrency
        self._rng = random.Random()

    def check(
        self, response: httpx.Response, batch: Batch, dimensions: int | None
    ) -> BatchResponse:
        """The checked answer to ``batch``; raises the matching error otherwise."""
        return parse_response(
            response.status_code,
            response.headers,
            response.content,
            expected=len(batch),
            dimensions=dimensions,
            secrets=self.secrets,
        )

    def succeeded(self, ticket: Ticket) -> None:
        self.limiter.observe(None, ticket)

    def retry_delay(self, error: OpenSearchMMError, ticket: Ticket, retries: int) -> float:
        """Feed ``error`` back to the limiter; raise it if it is not worth retrying,
        else return the seconds to wait before retry number ``retries + 1``."""
        self.limiter.observe(error, ticket)
        if not self.retry.should_retry(error, retries):
            raise error
        delay = self.retry.delay(error, retries, self._rng)
        logger.debug("retrying in %.2fs after %s", delay, type(error).__name__)
        return delay
