"""Small test doubles shared by several test files: a transport that arms a server fault
before a given request, and a progress bar that records its steps."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from opensearch_mm.emulator import Emulator


class FailSecond(httpx.HTTPTransport):
    """Arms a server error (answered for every retry) just before the 2nd request."""

    def __init__(self, emu: Emulator) -> None:
        super().__init__()
        self.emu, self.sent = emu, 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent += 1
        if self.sent == 2:
            self.emu.inject("server_error", 10)
        return super().handle_request(request)


class RecordingBar:
    """Stands in for a tqdm bar: records each step (and, with ``when``, what that callable
    returned at the step, e.g. how many requests the server had received)."""

    def __init__(self, total: int = 0, when: Callable[[], int] | None = None) -> None:
        self.total, self.when = total, when
        self.steps: list[int] = []
        self.seen: list[int] = []
        self.closed = False

    def update(self, n: int) -> None:
        self.steps.append(n)
        if self.when is not None:
            self.seen.append(self.when())

    def close(self) -> None:
        self.closed = True
