"""A local server speaking the multimodal embedding API (tests, benchmarks, offline work).

>>> from opensearch_mm.emulator import Emulator
>>> with Emulator(api_key="test-key") as emu:   # doctest: +SKIP
...     url = emu.url   # http://127.0.0.1:<port>

Run it standalone with ``python -m opensearch_mm.emulator --port 8080 --api-key KEY``.
Needs numpy (the ``emulator`` extra); the names below are imported on first use, so a
core-only install gets a one-line message naming the extra instead of a traceback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._server import (
        FAULT_KINDS,
        RETRY_AFTER_HEADERS,
        THROTTLE_KINDS,
        Emulator,
        EmulatorStats,
        RequestRecord,
    )
    from ._validate import MAX_BODY_BYTES, MAX_INPUTS

__all__ = [
    "FAULT_KINDS",
    "MAX_BODY_BYTES",
    "MAX_INPUTS",
    "RETRY_AFTER_HEADERS",
    "THROTTLE_KINDS",
    "Emulator",
    "EmulatorStats",
    "RequestRecord",
]

INSTALL_HINT = "the emulator needs numpy: pip install 'opensearch-mm[emulator]'"


def _load() -> dict[str, Any]:
    try:
        from . import _server, _validate
    except ModuleNotFoundError as exc:
        if exc.name != "numpy":
            raise
        raise ModuleNotFoundError(INSTALL_HINT, name="numpy") from None
    names = {name: getattr(_server, name, None) for name in __all__}
    names.update(MAX_BODY_BYTES=_validate.MAX_BODY_BYTES, MAX_INPUTS=_validate.MAX_INPUTS)
    return names


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = _load()[name]
    globals()[name] = value
    return value
