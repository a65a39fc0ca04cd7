"""Requests waiting for a free slot under a cap on requests in flight, in the order they came.

A slot an answer frees goes to the request that has waited longest, not to whichever asks
first: that would be the next request of the worker just answered, ready at once, and the
requests waiting would get only the slots a probe for a raised cap adds, which the service
refuses (the same request, refused again and again, ran out of retries).
"""

from __future__ import annotations

import itertools

__all__ = ["SlotLine"]

_GONE_POLLS = 3.0  # a request in line that has not looked for 3 polls ...
_GONE_MIN = 0.05  # ... and 50 ms (a busy event loop runs timers late) has gone: its place
# is not held against the others (it keeps it if it comes back)
_FORGET = 1.0  # one that has not looked for a second is out of line (a cancelled task)
_NEXT_POLL = 0.25  # the next in line looks 4x as often: a freed slot idles a quarter of a
# poll on average, and those behind it, who cannot have it, look no more often


class SlotLine:
    """Waiters by id, each with when it last looked. A request gets an id the first time
    it finds no free slot, and takes its place when it asks again with it."""

    def __init__(self) -> None:
        self._line: dict[int, float] = {}
        self._ids = itertools.count(1)

    def __bool__(self) -> bool:
        return bool(self._line)

    def ahead(self, now: float, waiter: int, poll: float) -> int:
        """How many wait before ``waiter`` (all of them, for ``0``: a request not in line),
        counting those that looked within a few ``poll`` intervals."""
        gone = max(_GONE_POLLS * poll, _GONE_MIN)
        count = 0
        for other, looked in list(self._line.items()):
            if other == waiter:
                break
            if now - looked > _FORGET:
                del self._line[other]
            elif now - looked <= gone:
                count += 1
        return count

    def wait(
        self, now: float, waiter: int, ahead: int, free: int, poll: float
    ) -> tuple[int, float]:
        """``waiter`` (``0``: a new one) found no slot for it: (its id, when to look again,
        ``poll`` from now or sooner for the next in line). It takes its place in line
        (at the back, if it has none) once it asks again with its id."""
        if not waiter:
            return next(self._ids), poll
        self._line[waiter] = now
        return waiter, (_NEXT_POLL * poll if ahead == max(free, 0) else poll)

    def leave(self, waiter: int) -> None:
        """``waiter`` got its slot."""
        self._line.pop(waiter, None)

    def clear(self) -> None:
        self._line.clear()
