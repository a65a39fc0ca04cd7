"""Peak memory of streaming 100,000 inputs through ``embed_iter(as_numpy=True)``.

    python benchmarks/memory.py            # 100,000 inputs
    python benchmarks/memory.py --quick    # 5,000 inputs

The emulator runs in a child process with no QPS cap and no latency; the inputs come
from a generator (never a list) and each float32 vector is consumed (summed into a
checksum) and dropped, as an indexing job writing to a vector store would. It prints the
peak resident set size of this process (``ru_maxrss``), the RSS before the run and the
Python heap peak (``tracemalloc`` is off by default: it slows the run several-fold).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from collections.abc import Iterator
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import API_KEY, EmulatorProcess
from opensearch_mm import Content, MultiModalEmbeddingClient

__all__ = ["inputs", "main", "stream"]

_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def _peak_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def inputs(n: int) -> Iterator[str | Content]:
    """``n`` inputs generated lazily: 3 of 4 texts, 1 of 4 a tiny PNG."""
    for i in range(n):
        yield Content(image=_PNG) if i % 4 == 3 else f"product {i}: a short description"


def stream(url: str, n: int, *, qps: float | str | None = "adaptive") -> tuple[int, float]:
    """Stream ``n`` inputs; returns (vectors seen, checksum)."""
    count, checksum = 0, 0.0
    with MultiModalEmbeddingClient(api_key=API_KEY, endpoint=url, qps=qps) as client:
        for vector in client.embed_iter(inputs(n), as_numpy=True):
            checksum += float(vector[0])
            count += 1
    return count, checksum


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--inputs", type=int, default=None)
    args = p.parse_args(argv)
    n = args.inputs or (5_000 if args.quick else 100_000)
    with EmulatorProcess() as emu:
        import numpy  # noqa: F401  (imported before the baseline, as the run needs it)

        before = _rss_mb()
        t0 = time.perf_counter()
        count, _ = stream(emu.url, n)
        seconds = time.perf_counter() - t0
    if count != n:
        raise RuntimeError(f"{count} vectors for {n} inputs")
    print(
        f"embed_iter(as_numpy=True) over {n:,} generated inputs (768-d, no QPS cap, "
        f"no latency; client defaults): {seconds:.1f} s"
    )
    print(
        f"RSS before: {before:.0f} MB; peak RSS: {_peak_mb():.0f} MB "
        f"(the vectors alone would be {n * 768 * 4 / 2**20:.0f} MB as float32, "
        f"{n * 768 * 32 / 2**20:,.0f} MB as lists of floats)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
