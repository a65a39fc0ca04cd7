"""Peak memory: streaming inputs through ``embed_iter(as_numpy=True)``, and
``opensearch-mm embed`` image jobs against their size.

    python benchmarks/memory.py            # 100,000 inputs; image jobs of 2,000 to 32,000
    python benchmarks/memory.py --quick    # 5,000 inputs; image jobs of 500 to 4,000

The emulator runs in a child process with no QPS cap and no latency; the inputs come
from a generator (never a list) and each float32 vector is consumed (summed into a
checksum) and dropped, as an indexing job writing to a vector store would. It prints the
peak resident set size of this process (``ru_maxrss``), the RSS before the run and the
Python heap peak (``tracemalloc`` is off by default: it slows the run several-fold).

The image jobs run the installed command in a child process on manifests of 59 KB JPEGs
(512 distinct noise images, cycled), writing JSON lines, and print each job's peak RSS
beside a text manifest of the same size measured in the same run (the baseline), and
beside the data actually in flight (``max_concurrency`` requests of 32 images).
"""

from __future__ import annotations

import argparse
import io
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import orjson

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import API_KEY, EmulatorProcess
from opensearch_mm import Content, MultiModalEmbeddingClient

__all__ = ["cli_job_peak_mb", "inputs", "main", "make_images", "stream"]

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


def make_images(directory: Path, count: int = 512, side: int = 220) -> list[Path]:
    """``count`` distinct noise JPEGs of about 59 KB (quality 95, ``side`` pixels)."""
    from PIL import Image

    rng = random.Random(0)
    paths = []
    for i in range(count):
        img = Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3))
        buffer = io.BytesIO()
        img.save(buffer, "JPEG", quality=95)
        path = directory / f"img{i:04d}.jpg"
        path.write_bytes(buffer.getvalue())
        paths.append(path)
    return paths


def _command() -> list[str]:
    script = Path(sys.executable).parent / "opensearch-mm"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "opensearch_mm.cli"]  # pragma: no cover


def cli_job_peak_mb(url: str, manifest: Path, output: Path, *extra: str) -> float:
    """Run ``opensearch-mm embed MANIFEST -o OUTPUT`` and return its peak RSS in MB."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENSEARCH_MM_")}
    env.update(OPENSEARCH_MM_ENDPOINT=url, OPENSEARCH_MM_API_KEY=API_KEY)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(Path(__file__).resolve().parent.parent), env.get("PYTHONPATH")) if p
    )
    proc = subprocess.Popen(
        [*_command(), "embed", str(manifest), "-o", str(output), "--qps", "off", *extra],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"the job failed: {err}")
    return usage.ru_maxrss / (2**20 if sys.platform == "darwin" else 1024)


def _write_manifest(path: Path, n: int, images: list[Path] | None) -> None:
    with path.open("wb") as fh:
        for i in range(n):
            if images is None:
                line = {"id": i, "text": f"product {i}: a short description of a thing"}
            else:
                line = {"id": i, "image": images[i % len(images)].name}
            fh.write(orjson.dumps(line) + b"\n")


def image_jobs(url: str, sizes: list[int]) -> None:
    """Print the peak RSS of image and text manifest jobs of each size."""
    work = Path(tempfile.mkdtemp(prefix="opensearch-mm-memory-"))
    try:
        images = make_images(work)
        item = sum(p.stat().st_size for p in images) / len(images)
        in_flight = 8 * 32 * item * 4 / 3 / 2**20
        print(
            f"opensearch-mm embed image jobs ({item / 1000:.0f} KB JPEGs; in flight at "
            f"most 8 requests x 32 images = {in_flight:.0f} MB of base64):"
        )
        print(f"{'inputs':>8} {'image job':>10} {'text job':>9} {'ratio':>6}")
        for n in sizes:
            peaks = []
            for kind in ("image", "text"):
                manifest = work / f"{kind}-{n}.jsonl"
                _write_manifest(manifest, n, images if kind == "image" else None)
                output = work / "out.jsonl"
                peaks.append(cli_job_peak_mb(url, manifest, output))
                output.unlink()
            print(f"{n:>8,} {peaks[0]:>7.0f} MB {peaks[1]:>6.0f} MB {peaks[0] / peaks[1]:>5.1f}x")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--inputs", type=int, default=None)
    p.add_argument(
        "--image-jobs", type=int, nargs="*", default=None, help="image job sizes to measure"
    )
    p.add_argument("--no-stream", action="store_true", help="measure the image jobs only")
    args = p.parse_args(argv)
    n = args.inputs or (5_000 if args.quick else 100_000)
    sizes = args.image_jobs or ([500, 2_000, 4_000] if args.quick else [2_000, 8_000, 32_000])
    with EmulatorProcess() as emu:
        if not args.no_stream:
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
        image_jobs(emu.url, sizes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
