"""Batch entry points of both adapters reach the core's speed, measured in requests.

A whole batch goes to the core in one call, so its requests are sent concurrently (up to
``max_concurrency`` in flight) instead of one chunk after another. Counted at the
emulator: requests and the most requests in flight at once, never wall-clock time.
LlamaIndex's callback events, instrumentation events and progress bar are kept, and
``IngestionPipeline(num_workers=2)`` runs end to end.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from typing import Any

import pytest
from llama_index.core.bridge.pydantic import Field
from llama_index.core.callbacks import CallbackManager, CBEvent, LlamaDebugHandler
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.instrumentation import get_dispatcher  # type: ignore[attr-defined]
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.embedding import (
    EmbeddingEndEvent,
    EmbeddingStartEvent,
)
from llama_index.core.schema import TextNode
from PIL import Image

from langchain_opensearch_mm import OpenSearchMultiModalEmbeddings
from llamaindex_opensearch_mm import OpenSearchMultiModalEmbedding
from opensearch_mm.emulator import Emulator
from tests.support.doubles import RecordingBar

KEY = "sk-throughput-0123456789"
N = 320  # ten full requests
CONCURRENCY = 4


@pytest.fixture(scope="module")
def slow() -> Iterator[Emulator]:
    """Every answer takes 150 ms, so concurrent requests overlap for sure."""
    with Emulator(api_key=KEY, qps=None, latency_ms=150) as server:
        yield server


@pytest.fixture
def emu(slow: Emulator) -> Emulator:
    slow.reset_stats()
    return slow


def _llamaindex(emu: Emulator, **options: Any) -> OpenSearchMultiModalEmbedding:
    return OpenSearchMultiModalEmbedding(
        api_key=KEY, endpoint=emu.url, qps=None, max_concurrency=CONCURRENCY, **options
    )


def _langchain(emu: Emulator) -> OpenSearchMultiModalEmbeddings:
    return OpenSearchMultiModalEmbeddings(
        api_key=KEY, endpoint=emu.url, qps=None, max_concurrency=CONCURRENCY
    )


def _distinct_pngs(n: int) -> list[bytes]:
    images = []
    for i in range(n):
        buf = io.BytesIO()
        Image.new("RGB", (4, 4), (i % 256, (i * 7) % 256, (i // 256) * 40)).save(buf, "PNG")
        images.append(buf.getvalue())
    return images


TEXTS = [f"passage {i} about subject {i % 13}" for i in range(N)]


def _payload(event: CBEvent) -> dict[str, Any]:
    assert event.payload is not None
    return event.payload


@pytest.mark.parametrize(
    "call",
    [
        "llamaindex-sync",
        "llamaindex-async",
        "llamaindex-images-sync",
        "llamaindex-images-async",
        "langchain-sync",
        "langchain-async",
    ],
)
def test_a_batch_call_keeps_max_concurrency_requests_in_flight(emu: Emulator, call: str) -> None:
    if call.startswith("llamaindex"):
        adapter: Any = _llamaindex(emu)
        if call == "llamaindex-sync":
            vectors = adapter.get_text_embedding_batch(TEXTS)
        elif call == "llamaindex-async":
            vectors = asyncio.run(adapter.aget_text_embedding_batch(TEXTS))
        else:
            pngs = _distinct_pngs(N)  # distinct: identical inputs may be sent once
            if call == "llamaindex-images-sync":
                vectors = adapter.get_image_embedding_batch(pngs)
            else:
                vectors = asyncio.run(adapter.aget_image_embedding_batch(pngs))
    else:
        adapter = _langchain(emu)
        if call == "langchain-sync":
            vectors = adapter.embed_documents(TEXTS)
        else:
            vectors = asyncio.run(adapter.aembed_documents(TEXTS))
    assert len(vectors) == N
    stats = emu.stats
    assert stats.requests == N // 32
    # Sequential chunks (LlamaIndex's own loop) would never have two requests in flight.
    assert stats.max_in_flight == CONCURRENCY


class _Recorder(BaseEventHandler):
    events: list[str] = Field(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "_Recorder"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        if isinstance(event, EmbeddingStartEvent):
            self.events.append("start")
        elif isinstance(event, EmbeddingEndEvent):
            self.events.append(f"end:{len(event.chunks)}")


def test_callback_and_instrumentation_events_per_embed_batch_size(
    emu: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    handler = LlamaDebugHandler()
    recorder = _Recorder(events=[])
    dispatcher = get_dispatcher()  # the root: every dispatcher propagates to it
    dispatcher.add_event_handler(recorder)
    try:
        adapter = _llamaindex(
            emu, embed_batch_size=100, callback_manager=CallbackManager([handler])
        )
        adapter.get_text_embedding_batch(TEXTS, show_progress=True)
        asyncio.run(adapter.aget_text_embedding_batch(TEXTS))
    finally:
        dispatcher.event_handlers.remove(recorder)
    sizes = [len(_payload(end)["chunks"]) for _, end in handler.get_event_pairs()]
    assert sizes == [100, 100, 100, 20] * 2
    ends = [e for e in recorder.events if e.startswith("end")]
    assert recorder.events.count("start") == 8
    assert ends == ["end:100", "end:100", "end:100", "end:20"] * 2
    assert f"{N}/{N}" in capsys.readouterr().err  # the progress bar reached the end
    assert emu.stats.requests == 2 * N // 32


@pytest.mark.parametrize("mode", ["sync", "async", "images"])
def test_the_progress_bar_moves_as_requests_are_answered(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """The whole batch is one core call, but the bar is not left at 0 until it returns:
    it moves by each request's inputs as the request is answered."""
    bars: list[RecordingBar] = []

    def progress(self: Any, total: int, show: bool, desc: str) -> RecordingBar | None:
        bars.append(RecordingBar(total, when=lambda: emu.stats.requests))  # arrived so far
        return bars[-1] if show else None

    monkeypatch.setattr(OpenSearchMultiModalEmbedding, "_progress", progress)
    adapter = _llamaindex(emu, embed_batch_size=100)
    if mode == "sync":
        adapter.get_text_embedding_batch(TEXTS, show_progress=True)
    elif mode == "async":
        asyncio.run(adapter.aget_text_embedding_batch(TEXTS, show_progress=True))
    else:
        pngs = _distinct_pngs(N)  # bytes: a core image input, beyond LlamaIndex's signature
        adapter.get_image_embedding_batch(pngs, show_progress=True)  # type: ignore[arg-type]
    (bar,) = bars
    assert bar.steps == [32] * (N // 32)  # a step per request, not per chunk of 100
    # Ten requests, 4 in flight, 150 ms each: the first answer comes a whole answer time
    # before the last request is even sent (the server counts requests as they arrive).
    assert bar.seen[0] < N // 32
    assert bar.closed


def test_a_failed_batch_ends_its_callback_events_with_the_error(emu: Emulator) -> None:
    handler = LlamaDebugHandler()
    adapter = _llamaindex(emu, embed_batch_size=100, callback_manager=CallbackManager([handler]))
    texts = [*TEXTS]
    texts[250] = ""
    with pytest.raises(ValueError, match="input 250"):
        adapter.get_text_embedding_batch(texts)
    pairs = handler.get_event_pairs()
    assert len(pairs) == 4
    assert all("exception" in _payload(end) for _, end in pairs)
    assert emu.stats.requests == 0


def test_ingestion_pipeline_with_two_worker_processes(emu: Emulator) -> None:
    adapter = _llamaindex(emu)
    nodes = [TextNode(text=t, id_=f"n{i}") for i, t in enumerate(TEXTS[:64])]
    pipeline = IngestionPipeline(transformations=[adapter])
    out = pipeline.run(nodes=nodes, num_workers=2)
    assert len(out) == 64
    expected = adapter.get_text_embedding_batch([n.get_content() for n in nodes])
    assert {n.node_id: n.embedding for n in out} == {
        n.node_id: v for n, v in zip(nodes, expected, strict=True)
    }
