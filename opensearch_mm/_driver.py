"""What the sync and async drivers share: their configuration and the pure steps.

A driver runs the batches of one call with bounded concurrency and, for each batch,
interprets the steps of a :class:`~opensearch_mm._request.Request`. Whether the call
still starts requests is asked of, and told to, the call's
:class:`~opensearch_mm._call.CallControl` (the one place that decides "fatal, so stop").
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ._request import Request
from .batching import Batch
from .ratelimit import RateLimiter
from .retry import RetryPolicy

__all__ = ["DriverBase", "DriverConfig"]


@dataclass(frozen=True)
class DriverConfig:
    """What a driver needs from its client."""

    url: str
    headers: dict[str, str] | None  # None: the HTTP client already sends them
    retry: RetryPolicy
    limiter: RateLimiter
    secrets: tuple[str, ...]
    max_concurrency: int
    origin: str  # scheme://host:port, for error messages


class DriverBase:
    """Configuration shared by both drivers, and the per-request state machine."""

    def __init__(self, config: DriverConfig) -> None:
        self.url = config.url
        self.headers = config.headers
        self.retry = config.retry
        self.limiter = config.limiter
        self.secrets = config.secrets
        self.max_concurrency = config.max_concurrency
        self.origin = config.origin
        self._rng = random.Random()

    def request(self, batch: Batch, dimensions: int | None) -> Request:
        """A new state machine for sending ``batch``."""
        return Request(
            batch.body(),
            expected=len(batch),
            dimensions=dimensions,
            limiter=self.limiter,
            retry=self.retry,
            rng=self._rng,
            secrets=self.secrets,
            origin=self.origin,
        )
