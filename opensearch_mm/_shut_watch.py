"""How long the account has let nothing through, as one process hears its answers.

A retry policy lets a request wait out a throttle that is shut (a full window of seconds
or minutes) without using up its retries (see :meth:`RetryPolicy.counts
<opensearch_mm.retry.RetryPolicy.counts>`); the rate limiters keep one of these to tell it.
"""

from __future__ import annotations

__all__ = ["ShutWatch"]


class ShutWatch:
    """Since when every answer heard has been a refusal (times on the limiter's clock)."""

    __slots__ = ("_last_ok", "_refused_from", "accepted_total")

    def __init__(self) -> None:
        self._last_ok = -1.0  # when a request was last heard let through ...
        self._refused_from = -1.0  # ... and when the first refused since was sent
        self.accepted_total = 0  # requests heard let through so far

    def accepted(self, now: float) -> None:
        """A request was let through (heard at ``now``)."""
        self._last_ok, self._refused_from = now, -1.0
        self.accepted_total += 1

    def refused(self, sent: float) -> None:
        """A request sent at ``sent`` was refused."""
        if self._refused_from < 0:
            self._refused_from = sent

    def shut_for(self, sent: float, now: float) -> float:
        """Seconds nothing has got through, if nothing did since a request went out at
        ``sent`` (0.0 when something did: that request met a busy throttle, not a shut).

        Also 0.0 before any request was let through: an account that refuses everything
        from the start (a quota of nothing, a blocked key) is not a window that filled,
        and its caller hears so after the usual retries.
        """
        if self._refused_from < 0 or self._last_ok < 0 or self._last_ok > sent:
            return 0.0
        return now - self._refused_from
