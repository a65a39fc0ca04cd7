"""Three processes, each with a default client of one account, share its rate limit.

Real OS processes (spawned), each building ``MultiModalEmbeddingClient(api_key=...,
endpoint=...)`` with no other option, against one emulator with a rate cap. They start
together and stop together (when the emulator has answered a set number of requests);
each counts the requests it got answered. Counts only, with wide margins: no timing.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from opensearch_mm import MultiModalEmbeddingClient
from opensearch_mm.emulator import Emulator

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="sharing needs fcntl (POSIX)")

KEY = "shared-default-SECRET-key"
PROCESSES = 3
CAP = 20.0  # the account's requests/s (a sliding window: no bursts to hide unfairness in)
ANSWERED = 150  # the emulator's 200s at which every process stops (about 7 s at the cap)
PER_CALL = 2  # requests per embed call (32 texts each)


def _embed_until_stopped(url: str, index: int, ready: Any, stop: Any, results: Any) -> None:
    answered, error = 0, ""
    try:
        with MultiModalEmbeddingClient(api_key=KEY, endpoint=url) as client:
            ready.wait(60)
            call = 0
            while not stop.is_set():
                texts = [f"process {index} call {call} text {i}" for i in range(32 * PER_CALL)]
                client.embed_texts(texts)
                answered += PER_CALL
                call += 1
    except BaseException as exc:  # reported to the test
        error = f"{type(exc).__name__}: {exc}"
    results.put((index, answered, error))


def run_three(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[list[int], Any]:
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the children's state file goes here
    context = multiprocessing.get_context("spawn")
    ready, stop, results = context.Barrier(PROCESSES + 1), context.Event(), context.Queue()
    with Emulator(KEY, qps=CAP, throttle="sliding", latency_ms=20) as emu:
        workers = [
            context.Process(target=_embed_until_stopped, args=(emu.url, k, ready, stop, results))
            for k in range(PROCESSES)
        ]
        for worker in workers:
            worker.start()
        try:
            ready.wait(90)  # every child has imported and built its client
            emu.reset_stats()
            while emu.stats.by_status.get(200, 0) < ANSWERED:
                stop.wait(0.05)
                if not all(w.is_alive() for w in workers):
                    break
        finally:
            stop.set()
        got = sorted(results.get(timeout=60) for _ in workers)
        for worker in workers:
            worker.join(30)
        stats = emu.stats
    assert [error for _, _, error in got] == [""] * PROCESSES
    assert [w.exitcode for w in workers] == [0] * PROCESSES
    return [answered for _, answered, _ in got], stats


def test_default_clients_in_three_processes_share_the_account_fairly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENSEARCH_MM_SHARE_RATE_LIMIT", raising=False)
    answered, stats = run_three(tmp_path, monkeypatch)
    # They paced as one client: one state file (of this user, in a private folder) ...
    [folder] = tmp_path.glob("opensearch-mm-*")
    assert folder.name == f"opensearch-mm-{os.getuid()}" and len(list(folder.iterdir())) == 1
    # ... each got a fair share of what the account accepted (measured: within 0.85-0.89
    # of each other; pacing alone, 0.11-0.8, one process often starving) ...
    assert min(answered) >= 0.5 * max(answered), answered
    # ... and few requests were refused: the start-up ramp's burst, then about one per
    # cycle (measured: 6-7 % of requests; pacing alone, 13-14 %).
    assert stats.throttled <= 0.15 * stats.requests, (stats.throttled, stats.requests)
