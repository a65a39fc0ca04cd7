"""Keeping the API key out of reprs, including the locals a traceback may capture."""

from __future__ import annotations

__all__ = ["Secrets"]


class Secrets(tuple[str, ...]):
    """The strings to scrub from messages; its repr never shows them.

    Error trackers that record each frame's local variables (``capture_locals``, Sentry)
    call ``repr`` on them: a plain tuple there would print the key.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Secrets(<{len(self)} hidden>)"

    __str__ = __repr__
