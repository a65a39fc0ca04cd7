"""The emulator in a process of its own, driven through a pipe (tests and benchmarks).

Ray's workers, the driver's streaming executor and the emulator then do not share one
interpreter (and one GIL): the throughput the emulator sees is the cluster's.
"""

from __future__ import annotations

import contextlib
import multiprocessing
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any


def _serve(conn: Connection, kwargs: dict[str, Any]) -> None:
    from opensearch_mm.emulator import Emulator

    emu = Emulator(**kwargs).start()
    conn.send(emu.url)
    try:
        while True:
            name, args, kw = conn.recv()
            if name == "stop":
                return
            try:
                attr = getattr(emu, name)
                result = attr(*args, **kw) if callable(attr) else attr
                conn.send((True, result))
            except Exception as exc:
                conn.send((False, repr(exc)))
    finally:
        emu.stop()


class EmulatorProcess:
    """``Emulator(**kwargs)`` served by a spawned process; ``call`` runs a method there."""

    def __init__(self, **kwargs: Any) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, kwargs), daemon=True)
        self._proc.start()
        if not self._conn.poll(60):
            self._proc.kill()
            raise RuntimeError("the emulator process did not start")
        self.url: str = self._conn.recv()

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """``emulator.<name>(*args, **kwargs)`` (or the attribute's value) in the child."""
        self._conn.send((name, args, kwargs))
        ok, value = self._conn.recv()
        if not ok:
            raise RuntimeError(f"emulator.{name} failed: {value}")
        return value

    def stats(self) -> Any:
        return self.call("stats")

    def close(self) -> None:
        if self._proc.is_alive():
            with contextlib.suppress(OSError):
                self._conn.send(("stop", (), {}))
            self._proc.join(10)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join(5)

    def __enter__(self) -> EmulatorProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
