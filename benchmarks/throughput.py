"""Throughput at the account's rate limit, whatever shape its throttle has.

    python benchmarks/throughput.py             # the table (a few minutes)
    python benchmarks/throughput.py --quick     # a smoke run (about a minute)
    python benchmarks/throughput.py --cpu-only  # only the client CPU table
    python benchmarks/throughput.py --only processes  # only the 3-process sharing rows

One table. Rows: the throttle model the emulator enforces (token bucket, fixed window on the
clock, sliding window, a cap on requests in flight) at a cap of 10 and of 30 QPS, which the
clients are never told; and 3 processes sharing one account (each pacing alone with
``share_rate_limit=False``, then default clients, which pace as one). Columns: this client
sync and async, its LangChain and LlamaIndex adapters (sync and async batch methods), the
official SDK (alibabacloud-searchplat20240529) in a plain loop that sleeps 1 s after any
error, and the SDK in an 8-thread pool retrying after 0.1 s. Each cell: the requests/s
achieved over the whole run as a ratio to the ceiling (start-up included) with the share of
requests the emulator refused with 429, then the same two numbers in the steady state:
requests the emulator answered and refused between ``--warmup`` seconds after the start and
``--seconds`` (or the end of the work, if sooner).

The ceiling of a rate-cap row is its cap. The ceiling of a concurrency-cap row is measured in
the same run: this client with no limiter (``qps=None``) and exactly K requests in flight,
in lockstep, its steady requests/s (every answer also carries the emulator's HTTP handling,
so K over the nominal latency is out of reach for anyone).

The emulator runs in a child process (``benchmarks/_emuproc.py``; its CPU is not the
client's), with 40 ms of service latency (lognormal, sigma 0.2) for rate caps and 200 ms for
concurrency caps (2 or 6 in flight: 10 or 30 requests/s). Every cell gets a fresh throttle
(a full bucket, empty windows), a fresh account (the limiter state that default clients
share on this machine is removed: nothing learned in the last cell carries over) and the
same all-text workload of about ``--seconds`` worth of requests of 32 texts at the cap (a
slower contender takes longer over it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import math
import os
import statistics
import subprocess
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
    forget_shared_limit,
    wire_input,
)
from opensearch_mm import MultiModalEmbeddingClient

__all__ = [
    "CONTENDERS",
    "ROWS",
    "Cell",
    "Row",
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


def langchain_sync(emu: EmulatorProcess, work: Workload) -> tuple[int, int]:
    from langchain_opensearch_mm import OpenSearchMultiModalEmbeddings

    embeddings = OpenSearchMultiModalEmbeddings(api_key=API_KEY, endpoint=emu.url)
    return len(embeddings.embed_documents(work.texts())), 0


def llamaindex_sync(emu: EmulatorProcess, work: Workload) -> tuple[int, int]:
    from llamaindex_opensearch_mm import OpenSearchMultiModalEmbedding

    model = OpenSearchMultiModalEmbedding(api_key=API_KEY, endpoint=emu.url)
    return len(model.get_text_embedding_batch(work.texts())), 0


def llamaindex_async(emu: EmulatorProcess, work: Workload) -> tuple[int, int]:
    from llamaindex_opensearch_mm import OpenSearchMultiModalEmbedding

    async def go() -> int:
        model = OpenSearchMultiModalEmbedding(api_key=API_KEY, endpoint=emu.url)
        return len(await model.aget_text_embedding_batch(work.texts()))

    return asyncio.run(go()), 0


def _import_contenders() -> None:
    """Import the adapters and the SDK before any cell is timed: a cell's whole-run time
    starts before its contender builds a client, and the first to import LlamaIndex paid
    about a second for it (a tenth of a 10-s cell)."""
    for name in (
        "langchain_opensearch_mm",
        "llamaindex_opensearch_mm",
        "alibabacloud_searchplat20240529.client",
    ):
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


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
    "sync": ours_sync,
    "async": ours_async,
    "LangChain": langchain_sync,
    "LlamaIndex sync": llamaindex_sync,
    "LlamaIndex async": llamaindex_async,
    "SDK loop": sdk_loop,
    "SDK 8 threads": sdk_pool,
}
"""The table's columns: this client (sync, async), its adapters, and the official SDK."""


@dataclass(frozen=True)
class Row:
    """One throttle model at one cap."""

    throttle: str
    cap: float
    latency_ms: float = 40.0
    jitter: float = 0.2
    window: float = 1.0  # a fixed or sliding window's length in seconds
    hint: str | None = None  # the retry hint header sent on each 429 (None: none)

    @property
    def max_in_flight(self) -> int | None:
        if self.throttle != "concurrency":
            return None
        return max(1, round(self.cap * self.latency_ms / 1000.0))

    @property
    def qps(self) -> float | None:
        return None if self.throttle == "concurrency" else self.cap

    @property
    def name(self) -> str:
        if self.throttle == "concurrency":
            return f"concurrency {self.max_in_flight} in flight x {self.latency_ms:g} ms"
        per = f" per {self.window:g} s window" if self.window != 1.0 else ""
        hint = f" + {self.hint}" if self.hint else ""
        return f"{self.throttle} {self.cap:g}/s{per}{hint}"

    def nominal(self) -> float:
        """Requests/s the account allows at best, on paper (the answer time alone)."""
        if self.throttle == "concurrency":
            # K always in flight, each for the mean of a lognormal answer time.
            mean = self.latency_ms / 1000.0 * math.exp(self.jitter**2 / 2.0)
            return (self.max_in_flight or 1) / mean
        return self.cap

    def configure(self, emu: EmulatorProcess) -> None:
        emu.configure(
            qps=self.qps,
            latency_ms=self.latency_ms,
            throttle=self.throttle,
            max_in_flight=self.max_in_flight,
            jitter=self.jitter,
            window=self.window,
            hint=self.hint,
        )


ROWS = [
    Row(kind, cap, latency_ms=200.0 if kind == "concurrency" else 40.0)
    for kind in ("bucket", "fixed", "sliding", "concurrency")
    for cap in (10.0, 30.0)
]


@dataclass
class Cell:
    ratio: float  # whole run: requests/s over the ceiling
    throttled: float  # whole run: share of requests refused
    fairness: float | None = None  # slowest process's time over the fastest's
    steady: float | None = None  # steady state: answered requests/s over the ceiling
    steady_throttled: float | None = None  # steady state: share of requests refused
    rate: float = 0.0  # steady requests/s answered (whole run's if no steady state)

    def __str__(self) -> str:
        text = f"{self.ratio:.2f} ({100 * self.throttled:.0f}%)"
        if self.steady is not None and self.steady_throttled is not None:
            text += f" {self.steady:.2f} ({100 * self.steady_throttled:.1f}%)"
        if self.fairness is not None:
            text += f" {self.fairness:.2f}x"
        return text


class _Steady:
    """Counts the emulator's answers between ``warmup`` and ``until`` seconds from now
    (or until :meth:`stop`, if sooner), from a thread polling its counters."""

    def __init__(self, emu: EmulatorProcess, warmup: float, until: float) -> None:
        self._emu, self._warmup, self._until = emu, warmup, until
        self._done = threading.Event()
        self._lock = threading.Lock()
        self.first: tuple[float, dict[str, Any]] | None = None
        self.last: tuple[float, dict[str, Any]] | None = None
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _snapshot(self) -> tuple[float, dict[str, Any]]:
        with self._lock:  # one command at a time on the emulator's pipe
            return time.perf_counter(), self._emu.stats()

    def _run(self) -> None:
        if self._done.wait(self._warmup):
            return  # the work ended within the warm-up: no steady state
        self.first = self._snapshot()
        self._done.wait(max(0.0, self._t0 + self._until - time.perf_counter()))
        self.last = self._snapshot()

    def stop(self) -> None:
        self._done.set()
        self._thread.join()

    def result(self) -> tuple[float, float] | None:
        """(answered requests/s, share refused) in the window; ``None`` without one."""
        if self.first is None or self.last is None:
            return None
        (t1, a), (t2, b) = self.first, self.last
        sent = b["requests"] - a["requests"]
        refused = b["throttled"] - a["throttled"]
        if t2 - t1 < 1.0 or sent <= 0:
            return None
        return (sent - refused) / (t2 - t1), refused / sent


def cell(
    emu: EmulatorProcess,
    row: Row,
    runner: Runner,
    work: Workload,
    ceiling: float,
    *,
    warmup: float,
    until: float,
) -> Cell:
    """Run one contender against a fresh throttle; its ratios to ``ceiling``."""
    row.configure(emu)
    forget_shared_limit(emu.url)  # and a fresh account: nothing learned in the last cell
    t0 = time.perf_counter()
    steady = _Steady(emu, warmup, until)
    try:
        done, _ = runner(emu, work)
    finally:
        steady.stop()
    seconds = time.perf_counter() - t0
    stats = emu.stats()
    if done != len(work):
        raise RuntimeError(f"{runner.__name__}: {done} vectors for {len(work)} inputs")
    rate = work.requests() / seconds
    refused = stats["throttled"] / stats["requests"] if stats["requests"] else 0.0
    window = steady.result()
    if window is None:
        return Cell(rate / ceiling, refused, rate=rate)
    return Cell(rate / ceiling, refused, None, window[0] / ceiling, window[1], window[0])


def baseline(row: Row) -> Runner:
    """The ceiling of a concurrency cap: exactly K in flight, in lockstep, no limiter."""
    k = row.max_in_flight or 1
    return lambda emu, work: ours_sync(emu, work, qps=None, max_concurrency=k)


def sharing_cell(
    emu: EmulatorProcess, row: Row, work_each: int, *, shared: bool, processes: int = 3
) -> Cell:
    """``processes`` processes, each embedding ``work_each`` texts with this client's sync
    API: default clients (``shared``: they pace as one, the default), or each pacing alone
    (``share_rate_limit=False``)."""
    row.configure(emu)
    forget_shared_limit(emu.url)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    env.pop("OPENSEARCH_MM_SHARE_RATE_LIMIT", None)
    alone = "" if shared else "alone"
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", emu.url, str(work_each), str(k), alone],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for k in range(processes)
    ]
    spans = []
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise RuntimeError("a sharing worker failed")
        start, end = (float(x) for x in out.split())
        spans.append((start, end))
    stats = emu.stats()
    requests = processes * -(-work_each // INPUTS_PER_REQUEST)
    wall = max(e for _, e in spans) - min(s for s, _ in spans)
    times = [e - s for s, e in spans]
    refused = stats["throttled"] / stats["requests"] if stats["requests"] else 0.0
    return Cell(requests / wall / row.nominal(), refused, max(times) / min(times))


def worker(url: str, n: int, seed: int, alone: str) -> int:
    """One sharing process: embed ``n`` texts with a default client (``alone``: with
    ``share_rate_limit=False``); print when it started and ended."""
    work = Workload(n, seed=10 + seed, images=False)
    options: dict[str, Any] = {"share_rate_limit": False} if alone else {}
    start = time.time()
    with MultiModalEmbeddingClient(api_key=API_KEY, endpoint=url, **options) as client:
        client.embed_texts(work.texts())
    print(start, time.time())
    return 0


def throughput_table(
    emu: EmulatorProcess,
    rows: list[Row],
    seconds: float,
    contenders: dict[str, Runner] | None = None,
    *,
    sharing: bool = True,
    warmup: float = 3.0,
) -> dict[tuple[str, str], Cell]:
    """Print the table; return its cells by (row, column). A concurrency row's cells are
    ratios to the ``"ceiling"`` column, measured first (see :func:`baseline`)."""
    contenders = contenders or CONTENDERS
    width = 34
    cw = 24
    header = " ".join(f"{c:>{cw}}" for c in ["ceiling/s", *contenders])
    print(f"{'throttle (cap unknown to clients)':{width}} {header}")
    cells: dict[tuple[str, str], Cell] = {}
    for row in rows:
        n = max(INPUTS_PER_REQUEST, int(row.nominal() * seconds) * INPUTS_PER_REQUEST)
        work = Workload(n, images=False)
        ceiling = row.nominal()
        label = f"{ceiling:.1f}"
        if row.throttle == "concurrency":
            base = cell(emu, row, baseline(row), work, ceiling, warmup=warmup, until=seconds)
            ceiling = base.rate
            cells[(row.name, "ceiling")] = base
            label = f"{ceiling:.1f} ({ceiling / row.nominal():.2f} nominal)"
        line = f"{row.name:{width}} {label:>{cw}}"
        for name, runner in contenders.items():
            c = cell(emu, row, runner, work, ceiling, warmup=warmup, until=seconds)
            cells[(row.name, name)] = c
            line += f" {c!s:>{cw}}"
        print(line, flush=True)
    if sharing:
        row = Row("sliding", 10.0)
        each = int(row.nominal() * seconds) * INPUTS_PER_REQUEST
        for shared in (False, True):
            how = "default clients (shared)" if shared else "share_rate_limit=False"
            label = f"3 processes, {row.name}, {how}"
            c = sharing_cell(emu, row, each, shared=shared)
            cells[(label, "sync")] = c
            print(f"{label:{width}} {'':>{cw}} {c!s:>{cw}}", flush=True)
    print(
        "cells: whole run: requests/s over the ceiling (429s as a share of requests), then "
        f"steady state from {warmup:g} s to {seconds:g} s: answered requests/s over the "
        "ceiling (429s as a share of requests); concurrency ceilings: measured, K in "
        "flight in lockstep with no limiter; sharing rows (whole run only): all processes "
        "together, and the slowest process's time over the fastest's"
    )
    return cells


def measure(
    emu: EmulatorProcess,
    name: str,
    runner: Runner,
    work: Workload,
    *,
    qps: float | None,
    latency_ms: float,
) -> Run:
    """One run of one contender against a fresh token bucket (or none), with CPU time."""
    emu.configure(qps=qps, latency_ms=latency_ms)
    forget_shared_limit(emu.url)
    cpu0, t0 = time.process_time(), time.perf_counter()
    done, errors = runner(emu, work)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    stats = emu.stats()
    if done != len(work):
        raise RuntimeError(f"{name}: {done} vectors for {len(work)} inputs")
    return Run(name, done, seconds, cpu, errors, stats["requests"], stats["throttled"])


def cpu_table(emu: EmulatorProcess, work: Workload, repeats: int) -> dict[str, float]:
    """CPU seconds per 1,000 requests with no cap and no latency (median of ``repeats``)."""
    contenders: dict[str, Runner] = {
        "raw httpx+orjson loop (floor)": raw_loop,
        "raw async httpx+orjson loop": raw_async_loop,
        "opensearch-mm sync (defaults)": ours_sync,
        "opensearch-mm async (defaults)": ours_async,
        "opensearch-mm sync, max_concurrency=1": lambda e, w: ours_sync(e, w, max_concurrency=1),
        "opensearch-mm sync, share_rate_limit=False": lambda e, w: ours_sync(
            e, w, share_rate_limit=False
        ),
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
        f"{'contender':44} {'CPU s / 1,000 req':>17} {'vs floor':>9} {'vs async':>9} {'wall s':>7}"
    )
    for name, value in per_k.items():
        print(
            f"{name:44} {value:17.3f} {value / floor:8.2f}x {value / async_floor:8.2f}x "
            f"{statistics.median(walls[name]):7.2f}"
        )
    return per_k


def main(argv: list[str] | None = None) -> int:
    given = sys.argv[1:] if argv is None else argv
    if given[:1] == ["--worker"]:  # one process of a sharing row (see sharing_cell)
        url, n, seed, alone = [*given[1:], ""][:4]
        return worker(url, int(n), int(seed), alone)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a smoke run: two rows, short runs")
    p.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="work per cell, in seconds at the cap; the steady state ends there (10; quick 6)",
    )
    p.add_argument("--warmup", type=float, default=3.0, help="seconds before the steady state (3)")
    p.add_argument(
        "--only", default=None, help="only the rows whose name contains this (e.g. concurrency)"
    )
    p.add_argument("--cpu-requests", type=int, default=None)
    p.add_argument("--cpu-repeats", type=int, default=None)
    p.add_argument("--cpu-only", action="store_true", help="only the client CPU table")
    args = p.parse_args(argv)
    seconds = args.seconds or (6.0 if args.quick else 10.0)
    print(
        f"opensearch-mm throughput benchmark (python {sys.version.split()[0]}): "
        f"{' '.join(sys.argv[1:]) or 'defaults'}"
    )
    _import_contenders()
    with EmulatorProcess(latency_ms=40.0) as emu:
        if args.cpu_only:
            requests = args.cpu_requests or 300
            cpu_table(emu, Workload(requests * INPUTS_PER_REQUEST, seed=3), args.cpu_repeats or 3)
            return 0
        quick_rows = {("bucket", 10.0), ("concurrency", 10.0)}
        rows = [r for r in ROWS if (r.throttle, r.cap) in quick_rows] if args.quick else ROWS
        if args.only:
            rows = [r for r in rows if args.only in r.name]
        contenders = None
        if args.quick:
            contenders = {k: CONTENDERS[k] for k in ("sync", "async", "SDK loop")}
        throughput_table(
            emu,
            rows,
            seconds,
            contenders,
            sharing=not args.quick and (not args.only or args.only in "3 processes"),
            warmup=args.warmup,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
