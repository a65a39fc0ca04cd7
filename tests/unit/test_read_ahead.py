"""How far a call reads ahead: answers wait behind a slow head of line, within bounds."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from typing import Any

import httpx

from opensearch_mm import MultiModalEmbeddingClient
from opensearch_mm._driver import Pending, ReadAhead
from opensearch_mm.batching import Batch
from opensearch_mm.inputs import WireItem

KEY = "OS-read-ahead-key-0123456789"
HOST = "http://127.0.0.1:9"
HELD = 12  # requests the tests want sent while the first is unanswered


class _Handle:
    def __init__(self, answered: bool = False) -> None:
        self.answered = answered

    def done(self) -> bool:
        return self.answered


def _batch(size: int = 10) -> Batch:
    return Batch((WireItem(0, b"x" * size, False),))


def test_a_stream_lets_answers_wait_behind_an_unanswered_head() -> None:
    limits = ReadAhead.stream(4)
    assert (limits.in_flight, limits.queued) == (5, 20)
    pending: Pending[_Handle] = Pending(limits)
    head = _Handle()
    pending.add(_batch(), head)
    for _ in range(4):
        pending.add(_batch(), _Handle())
    assert not pending.room()  # five unanswered: the in-flight bound
    assert pending.wait_for_any(more=True)
    assert not pending.wait_for_any(more=False)  # nothing more to read: wait for the head
    for handle in pending.handles()[1:]:
        handle.answered = True
    while pending.room():  # answered ones wait behind the head, up to the queued bound
        pending.add(_batch(), _Handle(answered=True))
    assert len(pending) == limits.queued
    assert not pending.wait_for_any(more=True)  # full: only the head frees room
    head.answered = True
    assert pending.pop()[1] is head and pending.room()


def test_an_answered_batch_waiting_in_line_drops_its_encoded_inputs() -> None:
    pending: Pending[_Handle] = Pending(ReadAhead.stream(4))
    head, second = _Handle(), _Handle()
    pending.add(_batch(), head)
    pending.add(Batch((WireItem(7, b"x" * 1000, True), WireItem(8, b"y", False))), second)
    assert pending.unanswered() == [head, second]
    second.answered = True
    assert pending.unanswered() == [head]
    head.answered = True
    pending.pop()
    batch, handle = pending.pop()
    assert handle is second
    kept = [(i.index, i.data, i.has_image) for i in batch.items]
    assert kept == [(7, b"", True), (8, b"", False)]


def test_one_request_at_a_time_reads_no_further_than_the_next() -> None:
    assert ReadAhead.stream(1) == ReadAhead(2, 2)
    assert ReadAhead.whole_call(7, 1) == ReadAhead(1, 1)
    assert ReadAhead.whole_call(7, 4).queued == 7


def _answer(request: httpx.Request) -> httpx.Response:
    n = len(json.loads(request.content)["input"])
    body = {
        "request_id": "rid",
        "result": {"embeddings": [{"index": i, "embedding": [0.5, 0.5]} for i in range(n)]},
        "usage": {"token_count": n},
    }
    return httpx.Response(200, json=body)


def _client(**kw: Any) -> MultiModalEmbeddingClient:
    return MultiModalEmbeddingClient(
        api_key=KEY, endpoint=HOST, model="new-model", qps=None, max_concurrency=4, **kw
    )


def test_a_slow_head_of_line_does_not_stop_the_stream_sending() -> None:
    # The first request is answered only once HELD others have been (or after 10 s):
    # reading ahead only what is in flight (5) would send 4 more, then wait for it.
    seen = 0
    sent_while_held = 0
    enough = threading.Event()
    lock = threading.Lock()

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal seen, sent_while_held
        with lock:
            seen += 1
            first = seen == 1
            if seen > HELD:
                enough.set()
        if first:
            enough.wait(10)
            sent_while_held = seen
        return _answer(request)

    http = httpx.Client(transport=httpx.MockTransport(handler))
    texts = [f"t{i}" for i in range(32 * 30)]
    with _client(http_client=http) as client:
        vectors = list(client.embed_iter(texts))
    http.close()
    assert len(vectors) == len(texts) and seen == 30
    assert sent_while_held > HELD


async def test_a_slow_head_of_line_does_not_stop_the_async_stream_sending() -> None:
    seen = 0
    sent_while_held = 0
    enough = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal seen, sent_while_held
        seen += 1
        if seen > HELD:
            enough.set()
        if seen == 1:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(enough.wait(), 10)
            sent_while_held = seen
        return _answer(request)

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    texts = [f"t{i}" for i in range(32 * 30)]
    async with _client(http_async_client=http) as client:
        vectors = [v async for v in client.aembed_iter(texts)]
    await http.aclose()
    assert len(vectors) == len(texts) and seen == 30
    assert sent_while_held > HELD
