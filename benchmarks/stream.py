"""Streams at the account's rate limit when some answers are slow.

    python benchmarks/stream.py             # 6 rows, about four minutes
    python benchmarks/stream.py --quick     # 2 rows, 6-s cells

``embed_iter`` yields in input order, so one slow answer holds every answer after it. This
table shows what that costs, against the emulator in a child process: rows are a throttle
at 30 requests/s (cap unknown to the client) with a service time of 40 ms (lognormal, sigma
0.2), without and with a tail: 1 % of answers 500 ms slower (a guess at a real service's
tail: a cold cache, a large image, a retry behind a gateway). Columns, each the requests/s
over the cap with the share refused, whole run then steady state, as in
``benchmarks/throughput.py``:

* ``stream``: ``embed_iter`` as it ships (answers wait behind a slow head of line);
* ``stream, in-flight only``: the same client reading ahead only ``max_concurrency + 1``
  batches, as streams did before (the baseline, measured in the same run);
* ``whole list``: ``embed`` over the same inputs (every batch queued at once).

Single runs on a shared machine move by a few hundredths: repeat a row before reading
much into one number.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import API_KEY, EmulatorProcess, Workload
from benchmarks.throughput import Cell, Row, Runner, cell, ours_sync
from opensearch_mm import MultiModalEmbeddingClient
from opensearch_mm._driver import ReadAhead

__all__ = ["CONTENDERS", "ROWS", "main", "stream_table"]

CAP = 30.0


def _stream(emu: EmulatorProcess, work: Workload, *, old: bool) -> tuple[int, int]:
    with MultiModalEmbeddingClient(api_key=API_KEY, endpoint=emu.url) as client:
        if old:
            window = client.max_concurrency + 1
            client._stream_limits = ReadAhead(window, window)
        done = sum(1 for _ in client.embed_iter(work.contents()))
    return done, 0


def stream(emu: EmulatorProcess, work: Workload) -> tuple[int, int]:
    return _stream(emu, work, old=False)


def stream_in_flight_only(emu: EmulatorProcess, work: Workload) -> tuple[int, int]:
    return _stream(emu, work, old=True)


CONTENDERS: dict[str, Runner] = {
    "stream": stream,
    "stream, in-flight only": stream_in_flight_only,
    "whole list": ours_sync,
}

TAIL = (0.01, 0.5)  # the share of answers delayed, and by how many seconds
ROWS = [(Row(kind, CAP), tail) for tail in (False, True) for kind in ("bucket", "fixed", "sliding")]


def stream_table(
    emu: EmulatorProcess, rows: list[tuple[Row, bool]], seconds: float, warmup: float
) -> dict[tuple[str, str], Cell]:
    """Print the table; return its cells by (row label, column)."""
    width, cw = 30, 26
    print(f"{'throttle, 40 ms':{width}}" + "".join(f"{c:>{cw}}" for c in CONTENDERS))
    cells: dict[tuple[str, str], Cell] = {}
    for row, tail in rows:
        emu.slow(*(TAIL if tail else (0.0, 0.0)))
        work = Workload(max(1, int(row.nominal() * seconds)) * 32, images=False)
        label = row.name + (", 1 % +500 ms" if tail else "")
        line = f"{label:{width}}"
        for name, runner in CONTENDERS.items():
            c = cell(emu, row, runner, work, row.nominal(), warmup=warmup, until=seconds)
            cells[(label, name)] = c
            line += f"{c!s:>{cw}}"
        print(line, flush=True)
    emu.slow(0.0, 0.0)
    print(
        "cells: whole run: requests/s over the cap (429s as a share of requests), then the "
        f"steady state from {warmup:g} s to {seconds:g} s"
    )
    return cells


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 rows, 6-s cells")
    parser.add_argument("--seconds", type=float, default=12.0, help="work per cell at the cap")
    parser.add_argument("--warmup", type=float, default=3.0, help="steady state from here")
    args = parser.parse_args(argv)
    rows = [(r, t) for r, t in ROWS if r.throttle == "sliding"] if args.quick else ROWS
    with EmulatorProcess(latency_ms=40.0) as emu:
        stream_table(emu, rows, 6.0 if args.quick else args.seconds, args.warmup)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
