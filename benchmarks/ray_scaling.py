"""Ray Data embedding: CPU scaling with actors, and one shared account limit.

    python benchmarks/ray_scaling.py            # both parts (a couple of minutes)
    python benchmarks/ray_scaling.py --quick    # a smoke run

Needs the ``ray`` extra. Starts a local Ray with 2 CPUs and the emulator in a child
process (``benchmarks/_emuproc.py``), so the service's CPU is not an actor's.

1. **Scaling.** Large JPEGs (as bytes, as ``read_binary_files`` gives) downscaled with
   ``image_max_side`` before sending: the client's CPU work. The emulator has no cap and
   no latency, so the actors' CPU is what limits. Prints rows/s with 1 and 2 actors and
   the ratio (the baseline is 1 actor, measured in the same run). On a machine with
   more cores than actors the ratio approaches 2; here the driver and the emulator share
   the same 2 cores.
2. **Shared limit.** Text rows through 2 actors under the default adaptive ``qps``
   against an emulator that throttles at a cap the client is not told (token bucket,
   fixed window, sliding window, or a cap on requests in flight). Prints the accepted
   requests/s as a fraction of the cap (after the first quarter of the run: the limiter
   starts at the documented 10 QPS and has to find the cap) and the share of requests
   throttled, over the whole run and after warm-up. Under a cap in flight the ceiling
   is measured first, in the same run: ``k`` threads that each keep one request in
   flight.
3. **Throttle models, simulated.** The same coordinator and local limiters (no Ray: direct
   calls) against token-bucket, fixed-window, sliding-window and concurrency-cap throttles
   (and a rate limit with a cap in flight on top) in virtual time
   (``opensearch_mm.emulator._simulate``), next to the baseline: the same adaptive limiter
   shared by the clients inside one process.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import API_KEY, EmulatorProcess


def _jpeg(seed: int, size: tuple[int, int]) -> bytes:
    """A photo-like JPEG: smooth gradients plus noise (so it compresses like a photo)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    h, w = size[1], size[0]
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack(
        [(x * 255 // w), (y * 255 // h), ((x + y) * 127 // (w + h) + seed * 17) % 256], axis=-1
    )
    noise = rng.integers(-20, 20, size=(h, w, 3))
    pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=90)
    return out.getvalue()


def _unique(jpeg: bytes, i: int) -> bytes:
    """The same picture with a distinct comment segment: a distinct input."""
    payload = f"row {i}".encode()
    segment = b"\xff\xfe" + (len(payload) + 2).to_bytes(2, "big") + payload
    return jpeg[:2] + segment + jpeg[2:]


def _run(ds: Any, concurrency: int, **kwargs: Any) -> tuple[float, int, float]:
    """(seconds, rows, rows/s after the first batch came out: actor start-up excluded)."""
    from opensearch_mm.ray import embed_dataset

    started = time.perf_counter()
    out = embed_dataset(ds, concurrency=concurrency, num_cpus=1, **kwargs)
    # (not out.count(): Ray knows the map keeps the row count and would skip it)
    rows = 0
    first: tuple[float, int] | None = None
    for batch in out.iter_batches(batch_size=None):
        rows += len(batch["embedding"])
        if first is None:
            first = (time.perf_counter(), rows)
    end = time.perf_counter()
    assert first is not None
    rate = (rows - first[1]) / (end - first[0]) if end > first[0] else float("nan")
    return end - started, rows, rate


def scaling(quick: bool) -> None:
    import ray

    n = 48 if quick else 240
    pictures = [_jpeg(s, (2400, 1800)) for s in range(4)]
    rows = [{"id": i, "image": _unique(pictures[i % len(pictures)], i)} for i in range(n)]
    mb = sum(len(r["image"]) for r in rows) / 1e6
    print(f"\n1. scaling: {n} JPEGs of 2400x1800 ({mb:.0f} MB) -> image_max_side=384")
    with EmulatorProcess(qps=None) as emu:
        ds = ray.data.from_items(rows, override_num_blocks=n // 8).materialize()
        kwargs = {
            "image_column": "image",
            "api_key": API_KEY,
            "endpoint": emu.url,
            "qps": None,
            "image_max_side": 384,
            "batch_size": 16,
        }
        _run(ds.limit(16), 1, **kwargs)  # warm-up: workers, imports
        results = {}
        for actors in (1, 2):
            elapsed, count, rate = _run(ds, actors, **kwargs)
            assert count == n
            results[actors] = rate
            print(
                f"   {actors} actor(s): {rate:7.1f} rows/s once running "
                f"({elapsed:.1f} s in all, actor start-up included)"
            )
        print(f"   2 actors / 1 actor: {results[2] / results[1]:.2f}x")
        load = os.getloadavg()[0]
        print(f"   (load average {load:.1f} on {os.cpu_count()} cores: other work shares them)")


def _ceiling_in_flight(url: str, k: int, seconds: float) -> float:
    """Requests/s the service answers with ``k`` requests in flight at all times, never
    more: the best any client can do under a cap of ``k`` (measured, not computed from
    the service time, so HTTP and scheduling overheads of this machine count too)."""
    from opensearch_mm import MultiModalEmbeddingClient

    texts = [f"ceiling probe {i}" for i in range(32)]
    stop = time.perf_counter() + seconds
    counts = [0] * k

    def worker(i: int) -> None:
        with MultiModalEmbeddingClient(
            api_key=API_KEY, endpoint=url, qps=None, max_concurrency=1, max_retries=0
        ) as client:
            while time.perf_counter() < stop:
                client.embed_texts(texts)
                counts[i] += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(k)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - started)


def shared_limit(
    quick: bool, cap: float, throttle: str, max_in_flight: int = 4, latency_ms: float = 100.0
) -> None:
    import ray

    from opensearch_mm.ray import AccountRateLimit
    from tests.ray._emulator import EmulatorProcess as ModelEmulator

    seconds = 12 if quick else 40
    if throttle == "concurrency":
        model = f"more than {max_in_flight} requests in flight, {latency_ms:g} ms each"
        settings: dict[str, Any] = {
            "throttle": "concurrency",
            "max_in_flight": max_in_flight,
            "latency_ms": latency_ms,
        }
        cap = max_in_flight / (latency_ms / 1000.0)  # (for the row count; measured below)
    else:
        model = f"above {cap:g} requests/s ({throttle})"
        settings = {"qps": cap, "throttle": throttle, "latency_ms": 20.0}
    n = int(cap * 32 * seconds)
    print(
        f"\n2. shared limit: {n} text rows, 2 actors, qps='adaptive' (shared); "
        f"the service throttles {model}"
    )
    with ModelEmulator(api_key=API_KEY, **settings) as emu:
        if throttle == "concurrency":
            cap = _ceiling_in_flight(emu.url, max_in_flight, 3.0 if quick else 6.0)
            print(
                f"   ceiling, measured: {max_in_flight} requests in flight always: {cap:.1f} req/s"
            )
        words = ["red", "blue", "cat", "dog", "lamp", "river", "city", "night", "shoe"]
        rng = random.Random(3)
        rows = [{"id": i, "text": f"{' '.join(rng.choices(words, k=6))} #{i}"} for i in range(n)]
        ds = ray.data.from_items(rows).materialize()
        emu.call("reset_stats")
        samples: list[tuple[float, int, int]] = []
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                stats = emu.stats()
                samples.append((time.perf_counter(), stats.by_status.get(200, 0), stats.throttled))
                time.sleep(0.25)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        limit = AccountRateLimit("adaptive")  # a fresh coordinator, to read its counters
        elapsed, count, _ = _run(
            ds,
            2,
            text_column="text",
            api_key=API_KEY,
            endpoint=emu.url,
            rate_limit=limit,
            batch_size=256,
        )
        done.set()
        sampler.join()
        assert count == n
        status = limit.status()
        limit.shutdown()
    active = [s for s in samples if s[1] + s[2] > 0]
    if len(active) < 8:
        print("   too short to measure")
        return
    first, last = active[0], active[-1]
    warm = active[len(active) // 4]
    total_ok, total_no = last[1], last[2]
    whole = (last[1] - first[1]) / (last[0] - first[0])
    steady = (last[1] - warm[1]) / (last[0] - warm[0])
    steady_no = last[2] - warm[2]
    steady_all = steady_no + last[1] - warm[1]
    print(f"   {count} rows in {elapsed:.1f} s; {total_ok} requests accepted, {total_no} throttled")
    print(
        f"   whole run:   {whole:6.1f} req/s = {whole / cap:.2f} of the cap, "
        f"{100 * total_no / max(1, total_ok + total_no):.1f}% throttled"
    )
    print(
        f"   after warm-up: {steady:6.1f} req/s = {steady / cap:.2f} of the cap, "
        f"{100 * steady_no / max(1, steady_all):.1f}% throttled"
    )
    print(
        f"   coordinator: {status['calls']} calls and {status['watches']} watches for "
        f"{status['sent']} requests "
        f"({status['sent'] / max(1, status['calls'] + status['watches']):.1f} requests per call), "
        f"{status['unused']} slots handed back unused"
    )
    if throttle == "concurrency":
        print(
            f"   cap on requests in flight learned: {status.get('max_in_flight')} "
            f"(permits {sorted(status.get('permits', {}).values())}); the limiter's rate "
            f"{status.get('rate') or 0:.0f}/s; learned again {status.get('relearned')} times, "
            f"{status.get('explained')} of {status.get('throttles')} 429s explained by it"
        )


def simulated(quick: bool) -> None:
    from dataclasses import replace

    from opensearch_mm.emulator._simulate import Scenario, format_table, simulate
    from opensearch_mm.ratelimit import AdaptiveRateLimiter
    from tests.ray._direct import coordinated

    seconds = 30 if quick else 60
    scenarios = [
        Scenario("bucket", qps=40, clients=2, seconds=seconds),
        Scenario("fixed", qps=40, clients=2, seconds=seconds),
        Scenario("sliding", qps=40, clients=2, seconds=seconds),
        Scenario("bucket", qps=300, clients=8, seconds=seconds),
        Scenario("fixed", qps=300, clients=8, seconds=seconds),
        Scenario("sliding", qps=300, clients=8, seconds=seconds),
        Scenario("concurrency", max_in_flight=8, clients=2, seconds=seconds),
        # (at 380 requests/s: the actors' counts run ahead of the service's by the answers
        # on their way back)
        Scenario("concurrency", max_in_flight=24, clients=3, latency=0.06, seconds=seconds),
        # (a rate limit, and a cap in flight met only when answers are slow)
        Scenario(
            "bucket",
            qps=40,
            max_in_flight=3,
            clients=2,
            seconds=seconds,
            label="bucket 40/s + 3 in flight 40ms x2",
        ),
    ]
    print("\n3. throttle models, simulated (ratio to the ceiling after warm-up)")
    print("   coordinated (one coordinator, a local limiter per actor):")
    rows = format_table(simulate(s, coordinated()) for s in scenarios)
    print("\n".join("   " + line for line in rows.splitlines()))
    print("   baseline (the same limiter shared by the clients in one process):")
    one = [replace(s, shared=True) for s in scenarios]
    rows = format_table(simulate(s, lambda clock: AdaptiveRateLimiter(clock=clock)) for s in one)
    print("\n".join("   " + line for line in rows.splitlines()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--cap", type=float, default=40.0, help="the service's requests/s")
    parser.add_argument(
        "--throttle",
        choices=["bucket", "fixed", "sliding", "concurrency"],
        action="append",
        help="the service's throttle model (repeatable; default: all four)",
    )
    parser.add_argument(
        "--max-in-flight",
        type=int,
        default=4,
        help="the concurrency model's cap (its service time is --latency-ms)",
    )
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--only", choices=["scaling", "limit", "simulated"], default=None)
    args = parser.parse_args()
    if args.only == "simulated":
        simulated(args.quick)
        return
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    try:
        if args.only in (None, "scaling"):
            scaling(args.quick)
        if args.only in (None, "limit"):
            for throttle in args.throttle or ["bucket", "fixed", "sliding", "concurrency"]:
                shared_limit(args.quick, args.cap, throttle, args.max_in_flight, args.latency_ms)
    finally:
        ray.shutdown()
    if args.only is None:
        simulated(args.quick)


if __name__ == "__main__":
    main()
