"""A local server speaking the multimodal embedding API (tests, benchmarks, offline work).

>>> from opensearch_mm.emulator import Emulator
>>> with Emulator(api_key="test-key") as emu:   # doctest: +SKIP
...     url = emu.url   # http://127.0.0.1:<port>

Run it standalone with ``python -m opensearch_mm.emulator --port 8080 --api-key KEY``.
Needs numpy (the ``emulator`` extra).
"""

from __future__ import annotations

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
