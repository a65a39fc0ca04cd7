"""Retry hints on each 429: the client against the naive loop, with and without them.

    python benchmarks/retry_hints.py            # about 4 minutes
    python benchmarks/retry_hints.py --quick    # 20-s cells

A throttled answer can say when to come back: ``x-acs-retry-after`` in milliseconds (what
Alibaba Cloud's OpenAPI gateway sends) or ``Retry-After`` in whole seconds, rounded up, so
that a window reopening in a tenth of a second says ``1``. Rows are 1-s windows (the client
is never told the cap), 40 ms of service time (lognormal, sigma 0.2), against the emulator
in a child process; each throttle is run with no hint, then with each header. Columns, each
the requests/s over the cap with the share refused, whole run then steady state after a
warm-up, as in ``benchmarks/throughput.py``:

* ``project sync``: ``embed`` over the whole workload, the client's defaults;
* ``SDK plain loop``: the official SDK, one request at a time, sleeping 1 s after any error
  (the baseline, measured in the same run).

Single runs on a shared machine move by a few hundredths: repeat a row before reading much
into one number.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import EmulatorProcess
from benchmarks.long_windows import versus_loop_table
from benchmarks.throughput import Row

__all__ = ["main", "rows"]

HEADERS = (None, "x-acs-retry-after", "retry-after")


def rows(*, quick: bool = False) -> list[tuple[Row, float, float]]:
    """(row, seconds of work at the cap, warm-up seconds) for each throttle and hint."""
    throttles = [("fixed", 10.0)] if quick else [("fixed", 10.0), ("sliding", 30.0)]
    seconds, warmup = (20.0, 6.0) if quick else (30.0, 8.0)
    return [
        (Row(kind, cap, hint=hint), seconds, warmup) for kind, cap in throttles for hint in HEADERS
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one throttle, 20-s cells")
    args = parser.parse_args(argv)
    with EmulatorProcess(latency_ms=40.0) as emu:
        versus_loop_table(emu, rows(quick=args.quick))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
