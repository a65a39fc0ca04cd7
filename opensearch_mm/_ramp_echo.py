"""The start-up ramp's echo: what a window of a second that refused the ramp lets through
in the second after it."""

from __future__ import annotations

__all__ = ["RampEcho"]

_ECHO_SECONDS = 1.0  # windows are a second long (the documented QPS)
_ECHO_MARGIN = 0.02  # a send reaches the throttle some ms after its slot, each differently:
# 20 ms covers a local network's jitter (the reads are in 50-ms bins; 5-50 ms measured alike)
_MAX_RAMP_SENDS = 1000  # the ramp sends about 100 before a 1-s window of 100 refuses it


class RampEcho:
    """Holds sends after the ramp's first 429 to the shape of the ramp's last second.

    A ramp refused a second or more after its first send filled a window of a second with
    its last second of sends, densest at its end (the ramp was accelerating). That window
    frees a slot only as each of them turns a second old: paced evenly at the rate read,
    the next sends outrun it and are refused (the *echo*), and that 429 is read as a lower
    limit. So, for a second after the refused send, a send goes no earlier than the send
    it replaces, ``count`` sends back, turns a second old. (A ramp refused within a second
    of its first send is held until that send is a second old, and from then its sends age
    faster than the paced rate fills the window: no echo.)

    One process's own sends only: where other processes pace with it, the caller does not
    use it.
    """

    def __init__(self) -> None:
        self._ramp: list[float] = []  # the ramp's send times
        self._sends: list[float] = []  # the window's sends since a second before the 429
        self._count = 0  # sends the window held when it refused (0: no echo to respect)
        self._until = 0.0

    @property
    def active(self) -> bool:
        return self._count > 0

    @property
    def until(self) -> float:
        """When the last echo ends."""
        return self._until

    def ramp_sent(self, at: float) -> None:
        """The ramp sent a request at ``at``."""
        if len(self._ramp) < _MAX_RAMP_SENDS:
            self._ramp.append(at)

    def ramp_refused(self, sent: float) -> None:
        """The ramp's first 429, for a request sent at ``sent``, read as a window's count:
        every send of the second before it was let through."""
        start = sent - _ECHO_SECONDS
        self._sends = [t for t in self._ramp if start < t < sent]
        self._count = len(self._sends)
        self._until = sent + _ECHO_SECONDS + _ECHO_MARGIN
        self._ramp = []

    def forget(self) -> None:
        """No echo to respect (the ramp is over, or other processes send too)."""
        self._ramp, self._sends, self._count = [], [], 0

    def rebooked(self, now: float) -> None:
        """Every slot not yet due at ``now`` is booked again (a cut, a hold): those slots
        leave the window, which their sends will never enter."""
        if self._count:
            self._sends = [t for t in self._sends if t <= now]

    def earliest(self, now: float) -> float:
        """The earliest slot the window frees for the next send (0: any)."""
        if not self._count:
            return 0.0
        if now >= self._until:
            self.forget()
            return 0.0
        return self._sends[-self._count] + _ECHO_SECONDS + _ECHO_MARGIN

    def booked(self, slot: float) -> None:
        """A send was booked at ``slot`` (it takes a place in the window)."""
        if self._count:
            self._sends.append(slot)
