"""Throughput at the account's rate limit, and client CPU per request.

    python benchmarks/throughput.py            # the full run (a few minutes)
    python benchmarks/throughput.py --quick    # a smoke run (seconds)
    python benchmarks/throughput.py --cpu-only # only the client CPU table (~1 minute)

One process, one run. The emulator runs in a child process (``benchmarks/_emuproc.py``)
with a token-bucket QPS cap the client is not told about and ~40 ms of service latency;
every contender gets a fresh, full bucket and embeds the same mixed workload:

* opensearch-mm, default settings, sync (``client.embed``) and async (``client.aembed``);
* the official SDK (alibabacloud-searchplat20240529) in a plain sequential loop (it raises
  on a 429, so the loop catches it and sleeps 1 s: the least a script needs to finish);
* the SDK in an 8-thread pool with naive retry (sleep 0.1 s on a 429, try again);
* a raw httpx + orjson sequential loop (retry after 0.25 s on a 429): the overhead floor
  (and, in the CPU table, the same loop over ``httpx.AsyncClient``: the async floor).

It prints inputs per second, the fraction of the ceiling (QPS x 32 inputs per second),
429s received and errors surfaced to the caller, and ratios against each baseline. Then,
with no cap and no latency, the client CPU seconds per 1,000 requests of each contender
(``time.process_time`` of this process: the emulator's CPU is not counted), against the
raw floor measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import orjson

from benchmarks.common import (
    API_KEY,
    INPUTS_PER_REQUEST,
    MODEL,
    WORKSPACE,
    EmulatorProcess,
    Workload,
    wire_input,
)
from opensearch_mm import MultiModalEmbeddingClient

__all__ = [
    "CONTENDERS",
    "Run",
    "cpu_table",
    "main",
    "measure",
    "throughput_table",
]


@dataclass
class Run:
    name: str
    inputs: int  # vectors handed to the caller
    seconds: float
    cpu: float  # process CPU seconds (all threads of this process)
    errors: int  # errors surfaced to the caller (the SDK's 429s count: it raises them)
    requests: int = 0  # requests the emulator received
    throttled: int = 0  # 429s the emulator sent

    @property
    def rate(self) -> float:
        return self.inputs / self.seconds if self.seconds > 0 else 0.0


Runner = Callable[[EmulatorProcess, Workload], tuple[int, int]]  # -> (vectors, errors)


# ------------------------------------------------------------------ contenders


def ours_sync(emu: EmulatorProcess, work: Workload, **options: Any) -> tuple[int, int]:
    with MultiModalEmbeddingClient(api_key=API_KEY, endpoint=emu.url, **options) as client:
        result = client.embed(work.contents())
    return len(result.embeddings), 0


def ours_async(emu: EmulatorProcess, work: Workload, **options: Any) -> tuple[int, int]:
    async def go() -> int:
        async with MultiModalEmbeddingClient(
            api_key=API_KEY, endpoint=emu.url, **options
        ) as client:
            result = await client.aembed(work.contents())
        return len(result.embeddings)

    return asyncio.run(go()), 0


def _sdk(emu: EmulatorProcess) -> tuple[Any, Any, type[Exception]]:
    from alibabacloud_searchplat20240529 import models as sdk_models
    from alibabacloud_searchplat20240529.client import Client
    from alibabacloud_tea_openapi.models import Config
    from Tea.exceptions import TeaException

    config = Config(bearer_token=API_KEY, endpoint=emu.endpoint, protocol="http")
    return Client(config), sdk_models, TeaException


def _sdk_request(sdk_models: Any, chunk: list[str | bytes]) -> Any:
    return sdk_models.GetMultiModalEmbeddingRequest(
        input=[sdk_models.GetMultiModalEmbeddingRequestInput(**wire_input(x)) for x in chunk]
    )


def _sdk_vectors(response: Any) -> list[list[float]]:
    items = sorted(response.body.result.embeddings, key=lambda e: e.index)
    return [e.embedding for e in items]


def _is_throttle(exc: Any) -> bool:
    code = getattr(exc, "code", "") or ""
    return code.startswith("Throttling") and code != "Throttling.AllocationQuota"


def sdk_loop(emu: EmulatorProcess, work: Workload) -> tuple[int, int]:
    client, sdk_models, tea_error = _sdk(emu)
    vectors: list[list[float]] = []
    errors = 0
    for chunk in work.chunks():
        request = _sdk_request(sdk_models, chunk)
        while True:
            try:
                vectors += _sdk_vectors(client.get_multi_modal_embedding(WORKSPACE, MODEL, request))
                break
            except tea_error as exc:
                errors += 1  # raised to the caller's code
                if not _is_throttle(exc):
                    raise
                time.sleep(1.0)
    return len(vectors), errors


def sdk_pool(emu: EmulatorProcess, work: Workload, threads: int = 8) -> tuple[int, int]:
    _, sdk_models, tea_error = _sdk(emu)
    local = threading.local()
    errors = 0
    lock = threading.Lock()

    def one(chunk: list[str | bytes]) -> list[list[float]]:
        nonlocal errors
        if not hasattr(local, "client"):
            local.client = _sdk(emu)[0]
        request = _sdk_request(sdk_models, chunk)
        for _ in range(200):
            try:
                answer = local.client.get_multi_modal_embedding(WORKSPACE, MODEL, request)
                return _sdk_vectors(answer)
            except tea_error as exc:
                with lock:
                    errors += 1
                if not _is_throttle(exc):
                    raise
                time.sleep(0.1)
        raise RuntimeError("gave up")

    with ThreadPoolExecutor(threads) as pool:
        done = sum(len(v) for v in pool.map(one, work.chunks()))
    return done, errors


def raw_loop(emu: EmulatorProcess, work: Workload) -> tuple[int, int]:
    url = f"{emu.url}/v3/openapi/workspaces/{WORKSPACE}/multi-modal-embedding/{MODEL}"
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    vectors: list[list[float]] = []
    errors = 0
    with httpx.Client(timeout=60) as http:
        for chunk in work.chunks():
            body = orjson.dumps({"input": [wire_input(x) for x in chunk]})
            while True:
                response = http.post(url, content=body, headers=headers)
                if response.status_code != 429:
                    break
                errors += 1
                time.sleep(0.25)
            response.raise_for_status()
            out: list[Any] = [None] * len(chunk)
            for item in orjson.loads(response.content)["result"]["embeddings"]:
                out[item["index"]] = item["embedding"]
            vectors += out
    return len(vectors), errors


def raw_async_loop(emu: EmulatorProcess, work: Workload) -> tuple[int, int]:
    """The same as :func:`raw_loop` over ``httpx.AsyncClient``: the floor for async."""
    url = f"{emu.url}/v3/openapi/workspaces/{WORKSPACE}/multi-modal-embedding/{MODEL}"
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}

    async def go() -> tuple[int, int]:
        vectors: list[list[float]] = []
        errors = 0
        async with httpx.AsyncClient(timeout=60) as http:
            for chunk in work.chunks():
                body = orjson.dumps({"input": [wire_input(x) for x in chunk]})
                while True:
                    response = await http.post(url, content=body, headers=headers)
                    if response.status_code != 429:
                        break
                    errors += 1
                    await asyncio.sleep(0.25)
                response.raise_for_status()
                out: list[Any] = [None] * len(chunk)
                for item in orjson.loads(response.content)["result"]["embeddings"]:
                    out[item["index"]] = item["embedding"]
                vectors += out
        return len(vectors), errors

    return asyncio.run(go())


CONTENDERS: dict[str, Runner] = {
    "opensearch-mm sync (defaults)": ours_sync,
    "opensearch-mm async (defaults)": ours_async,
    "official SDK, plain loop": sdk_loop,
    "official SDK, 8 threads + naive retry": sdk_pool,
    "raw httpx+orjson loop": raw_loop,
}
OURS = ("opensearch-mm sync (defaults)", "opensearch-mm async (defaults)")
BASELINES = tuple(name for name in CONTENDERS if name not in OURS)


def measure(
    emu: EmulatorProcess,
    name: str,
    runner: Runner,
    work: Workload,
    *,
    qps: float | None,
    latency_ms: float,
) -> Run:
    emu.configure(qps=qps, latency_ms=latency_ms)
    cpu0, t0 = time.process_time(), time.perf_counter()
    done, errors = runner(emu, work)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    stats = emu.stats()
    if done != len(work):
        raise RuntimeError(f"{name}: {done} vectors for {len(work)} inputs")
    return Run(name, done, seconds, cpu, errors, stats["requests"], stats["throttled"])


# ------------------------------------------------------------------ tables


def throughput_table(
    emu: EmulatorProcess,
    work: Workload,
    qps: float,
    latency_ms: float,
    contenders: dict[str, Runner] | None = None,
) -> list[Run]:
    contenders = contenders or CONTENDERS
    ceiling = qps * INPUTS_PER_REQUEST
    print(
        f"\n### cap {qps:g} QPS (unknown to the clients), latency {latency_ms:g} ms, "
        f"{len(work):,} inputs = {work.requests()} requests; ceiling {ceiling:,.0f} inputs/s"
    )
    print(
        f"{'contender':40} {'inputs/s':>9} {'of ceiling':>10} {'seconds':>8} "
        f"{'requests':>8} {'429s':>5} {'429 %':>6} {'errors':>6}"
    )
    runs = []
    for name, runner in contenders.items():
        run = measure(emu, name, runner, work, qps=qps, latency_ms=latency_ms)
        runs.append(run)
        share = 100.0 * run.throttled / run.requests if run.requests else 0.0
        print(
            f"{name:40} {run.rate:9,.0f} {run.rate / ceiling:10.3f} {run.seconds:8.2f} "
            f"{run.requests:8} {run.throttled:5} {share:5.1f}% {run.errors:6}",
            flush=True,
        )
    by_name = {r.name: r for r in runs}
    baselines = [b for b in BASELINES if b in by_name]
    for ours in (o for o in OURS if o in by_name):
        ratios = ", ".join(f"{by_name[ours].rate / by_name[b].rate:.2f}x {b}" for b in baselines)
        print(f"  {ours}: {ratios}")
    return runs


def cpu_table(emu: EmulatorProcess, work: Workload, repeats: int) -> dict[str, float]:
    """CPU seconds per 1,000 requests with no cap and no latency (median of ``repeats``)."""
    contenders: dict[str, Runner] = {
        "raw httpx+orjson loop (floor)": raw_loop,
        "raw async httpx+orjson loop": raw_async_loop,
        "opensearch-mm sync (defaults)": ours_sync,
        "opensearch-mm async (defaults)": ours_async,
        "opensearch-mm sync, max_concurrency=1": lambda e, w: ours_sync(e, w, max_concurrency=1),
        "official SDK, plain loop": sdk_loop,
    }
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    walls: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):  # interleaved, so drift on a shared machine hits all alike
        for name, runner in contenders.items():
            run = measure(emu, name, runner, work, qps=None, latency_ms=0.0)
            samples[name].append(run.cpu * 1000.0 / work.requests())
            walls[name].append(run.seconds)
    per_k = {name: statistics.median(v) for name, v in samples.items()}
    floor = per_k["raw httpx+orjson loop (floor)"]
    async_floor = per_k["raw async httpx+orjson loop"]
    print(
        f"\n### client CPU, no cap, no latency: {len(work):,} inputs = {work.requests()} "
        f"requests, median of {repeats}"
    )
    print(
        f"{'contender':40} {'CPU s / 1,000 req':>17} {'vs floor':>9} {'vs async':>9} {'wall s':>7}"
    )
    for name, value in per_k.items():
        print(
            f"{name:40} {value:17.3f} {value / floor:8.2f}x {value / async_floor:8.2f}x "
            f"{statistics.median(walls[name]):7.2f}"
        )
    return per_k


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a smoke run on small workloads")
    p.add_argument("--inputs", type=int, default=None, help="inputs per throughput run")
    p.add_argument("--caps", default="10,50", help="QPS caps, comma-separated")
    p.add_argument("--latency-ms", type=float, default=40.0)
    p.add_argument(
        "--steady-seconds",
        type=float,
        default=None,
        help="also run opensearch-mm alone for about this long at each cap",
    )
    p.add_argument("--cpu-requests", type=int, default=None)
    p.add_argument("--cpu-repeats", type=int, default=None)
    p.add_argument(
        "--cpu-only", action="store_true", help="only the client CPU table (no throughput runs)"
    )
    args = p.parse_args(argv)
    n = args.inputs or (320 if args.quick else 5000)
    steady = args.steady_seconds if args.steady_seconds is not None else (0 if args.quick else 30)
    cpu_requests = args.cpu_requests or (20 if args.quick else 300)
    repeats = args.cpu_repeats or (1 if args.quick else 3)
    caps = [float(c) for c in args.caps.split(",") if c]
    print(
        f"opensearch-mm throughput benchmark (python {sys.version.split()[0]}): "
        f"{' '.join(sys.argv[1:]) or 'defaults'}"
    )
    with EmulatorProcess(latency_ms=args.latency_ms) as emu:
        if args.cpu_only:
            caps, steady = [], 0
        work = Workload(n)
        for qps in caps:
            throughput_table(emu, work, qps, args.latency_ms)
        if steady > 0:
            for qps in caps:
                long_work = Workload(int(qps * INPUTS_PER_REQUEST * steady), seed=2)
                steady_contenders = (*OURS, "official SDK, 8 threads + naive retry")
                throughput_table(
                    emu,
                    long_work,
                    qps,
                    args.latency_ms,
                    {name: CONTENDERS[name] for name in steady_contenders},
                )
        cpu_table(emu, Workload(cpu_requests * INPUTS_PER_REQUEST, seed=3), repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
