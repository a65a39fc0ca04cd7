"""Quotas counted over windows of many seconds: the client against the naive loop.

    python benchmarks/long_windows.py            # 5-s and 10-s windows, about 6 minutes
    python benchmarks/long_windows.py --minute   # and a per-minute window, 16 minutes more
    python benchmarks/long_windows.py --quick    # the 5-s window, 40-s cells

A window of W seconds refuses an overshoot only once it is full, up to W seconds later, and
then stays shut for the rest of it. Rows are such windows at 10 requests/s on average (the
client is never told the cap or the window), 40 ms of service time (lognormal, sigma 0.2),
against the emulator in a child process. Columns, each the requests/s over the cap with the
share refused, whole run then steady state after a warm-up of a few windows, as in
``benchmarks/throughput.py``:

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

from benchmarks.common import EmulatorProcess, Workload
from benchmarks.throughput import Cell, Row, Runner, cell, ours_sync, sdk_loop

__all__ = ["CONTENDERS", "main", "rows", "versus_loop_table"]

CONTENDERS: dict[str, Runner] = {"project sync": ours_sync, "SDK plain loop": sdk_loop}


def rows(*, minute: bool = False, quick: bool = False) -> list[tuple[Row, float, float]]:
    """(row, seconds of work at the cap, warm-up seconds): a few windows of warm-up, then
    several of steady state (the first windows are the start-up ramp's)."""
    if quick:
        return [(Row("fixed", 10.0, window=5.0), 40.0, 15.0)]
    out = [
        (Row("fixed", 10.0, window=5.0), 60.0, 15.0),
        (Row("sliding", 10.0, window=10.0), 90.0, 25.0),
    ]
    if minute:
        out.append((Row("fixed", 10.0, window=60.0), 420.0, 120.0))
    return out


def versus_loop_table(
    emu: EmulatorProcess, table: list[tuple[Row, float, float]]
) -> dict[tuple[str, str], Cell]:
    """Print the client against the SDK's plain loop on each (row, seconds of work,
    warm-up seconds); return the cells by (row label, column)."""
    width, cw = 36, 26
    print(f"{'throttle, 40 ms':{width}}" + "".join(f"{c:>{cw}}" for c in CONTENDERS))
    cells: dict[tuple[str, str], Cell] = {}
    for row, seconds, warmup in table:
        work = Workload(max(1, int(row.nominal() * seconds)) * 32, images=False)
        line = f"{row.name:{width}}"
        for name, runner in CONTENDERS.items():
            c = cell(emu, row, runner, work, row.nominal(), warmup=warmup, until=seconds)
            cells[(row.name, name)] = c
            line += f"{c!s:>{cw}}"
        print(line, flush=True)
    print(
        "cells: whole run: requests/s over the cap (429s as a share of requests), then the "
        "steady state after the row's warm-up"
    )
    return cells


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the 5-s window, 40-s cells")
    parser.add_argument("--minute", action="store_true", help="add a per-minute window")
    args = parser.parse_args(argv)
    with EmulatorProcess(latency_ms=40.0) as emu:
        versus_loop_table(emu, rows(minute=args.minute, quick=args.quick))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
