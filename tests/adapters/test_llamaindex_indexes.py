"""End to end with real LlamaIndex indexes: VectorStoreIndex and MultiModalVectorStoreIndex.

The emulator's vectors are deterministic but not semantic, so retrieval is checked
against rankings computed independently with the core client (or, for exact matches,
a stored text/image must come first with similarity 1). A guard makes any non-loopback
connection and any use of LlamaIndex's default (OpenAI) embedding model fail the test.
"""

from __future__ import annotations

import math
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from llama_index.core import Settings, VectorStoreIndex
from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.indices import MultiModalVectorStoreIndex
from llama_index.core.llms import MockLLM
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.schema import Document, ImageDocument, ImageNode, TextNode

from llamaindex_opensearch_mm import OpenSearchMultiModalEmbedding
from opensearch_mm import MultiModalEmbeddingClient
from opensearch_mm.emulator import Emulator
from tests.support.images import COLORS, tiny_png_file

KEY = "index-test-key"
TEXTS = [f"document {i}: a note about topic {i * 7 % 11}" for i in range(40)]


class _ForbiddenEmbedding(BaseEmbedding):
    """Stands in for Settings.embed_model: any use means the index ignored ours."""

    def _fail(self) -> Embedding:
        raise AssertionError("LlamaIndex fell back to Settings.embed_model")

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._fail()

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return self._fail()

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._fail()


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No default model, no LLM, and no connection other than to loopback."""
    monkeypatch.setattr(Settings, "_embed_model", _ForbiddenEmbedding())
    monkeypatch.setattr(Settings, "_llm", MockLLM())
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def allowed(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0]
            if host not in ("127.0.0.1", "::1", "localhost"):
                raise AssertionError(f"network access to {host!r} during an offline test")

    def connect(sock: socket.socket, address: Any) -> None:
        allowed(sock, address)
        real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> int:
        allowed(sock, address)
        return real_connect_ex(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(api_key=KEY, qps=None, latency_ms=0) as server:
        yield server


@pytest.fixture
def embed(emu: Emulator) -> Iterator[OpenSearchMultiModalEmbedding]:
    emu.reset_stats()
    model = OpenSearchMultiModalEmbedding(api_key=KEY, endpoint=emu.url, qps=None)
    yield model
    model.close()


@pytest.fixture
def core(emu: Emulator) -> Iterator[MultiModalEmbeddingClient]:
    with MultiModalEmbeddingClient(api_key=KEY, endpoint=emu.url, qps=None) as client:
        yield client


@pytest.fixture
def image_docs(tmp_path: Path) -> list[ImageDocument]:
    return [
        ImageDocument(
            image_path=str(tiny_png_file(tmp_path, f"{color}.png", color)),
            metadata={"color": color},
        )
        for color in COLORS
    ]


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def _batch_sizes(emu: Emulator) -> list[int | None]:
    return sorted((rec.n_inputs for rec in emu.requests_log), key=lambda n: n or 0)


def test_guard_catches_the_default_embedding() -> None:
    with pytest.raises(AssertionError, match=r"Settings\.embed_model"):
        VectorStoreIndex(nodes=[TextNode(text="x")])
    with pytest.raises(AssertionError, match="network access"):
        socket.create_connection(("192.0.2.1", 443), timeout=0.1)  # TEST-NET-1


# -- VectorStoreIndex over text nodes --------------------------------------------------------


@pytest.mark.parametrize("use_async", [False, True])
def test_vector_store_index_text_retrieval(
    embed: OpenSearchMultiModalEmbedding, emu: Emulator, use_async: bool
) -> None:
    nodes = [TextNode(text=t, id_=f"n{i}") for i, t in enumerate(TEXTS)]
    index = VectorStoreIndex(nodes=nodes, embed_model=embed, use_async=use_async)
    assert _batch_sizes(emu) == [8, 32]  # 40 nodes: one request per 32

    retriever = index.as_retriever(similarity_top_k=3)
    for i in (0, 17, 39):
        results = retriever.retrieve(TEXTS[i])
        assert len(results) == 3
        assert results[0].node.node_id == f"n{i}"
        assert results[0].score == pytest.approx(1.0, abs=1e-5)
        assert results[1].score is not None and results[1].score < 0.5


async def test_vector_store_index_async_retrieval(
    embed: OpenSearchMultiModalEmbedding,
) -> None:
    nodes = [TextNode(text=t, id_=f"n{i}") for i, t in enumerate(TEXTS[:10])]
    index = VectorStoreIndex(nodes=nodes, embed_model=embed)
    results = await index.as_retriever(similarity_top_k=2).aretrieve(TEXTS[4])
    assert results[0].node.node_id == "n4"
    assert results[0].score == pytest.approx(1.0, abs=1e-5)
    await embed.aclose()


# -- MultiModalVectorStoreIndex with image documents -----------------------------------------


def _multimodal_index(
    docs: list[Document], embed: OpenSearchMultiModalEmbedding, *, use_async: bool = False
) -> MultiModalVectorStoreIndex:
    return MultiModalVectorStoreIndex.from_documents(
        docs,
        embed_model=embed,
        image_embed_model=embed,
        transformations=[SentenceSplitter()],
        use_async=use_async,
    )


@pytest.mark.parametrize("use_async", [False, True])
def test_multimodal_index_text_to_image(
    embed: OpenSearchMultiModalEmbedding,
    core: MultiModalEmbeddingClient,
    emu: Emulator,
    image_docs: list[ImageDocument],
    use_async: bool,
) -> None:
    index = _multimodal_index(list(image_docs), embed, use_async=use_async)
    assert _batch_sizes(emu) == [len(COLORS)]  # all images in one request
    assert index.is_text_vector_store_empty

    query = "a small red square"
    paths = [str(doc.image_path) for doc in image_docs]
    query_vec = core.embed_texts([query])[0]
    image_vecs = core.embed_images(paths)
    scores = {p: _cosine(query_vec, v) for p, v in zip(paths, image_vecs, strict=True)}
    expected = sorted(paths, key=lambda p: scores[p], reverse=True)[:3]

    retriever = index.as_retriever(image_similarity_top_k=3)
    results = retriever.text_to_image_retrieve(query)
    assert all(isinstance(r.node, ImageNode) for r in results)
    assert [r.node.image_path for r in results] == expected  # type: ignore[attr-defined]
    for r in results:
        assert r.score == pytest.approx(scores[r.node.image_path], abs=1e-5)  # type: ignore[attr-defined]


def test_multimodal_index_image_to_image(
    embed: OpenSearchMultiModalEmbedding, image_docs: list[ImageDocument]
) -> None:
    index = _multimodal_index(list(image_docs), embed)
    retriever = index.as_retriever(image_similarity_top_k=2)
    blue = next(d.image_path for d in image_docs if d.metadata["color"] == "blue")
    assert blue is not None
    results = retriever.image_to_image_retrieve(blue)
    assert results[0].node.metadata["color"] == "blue"
    assert results[0].score == pytest.approx(1.0, abs=1e-5)


def test_multimodal_index_mixed_texts_and_images(
    embed: OpenSearchMultiModalEmbedding, emu: Emulator, image_docs: list[ImageDocument]
) -> None:
    # No metadata on the texts: LlamaIndex would embed it with the text.
    text_docs = [Document(text=t) for t in TEXTS[:5]]
    index = _multimodal_index([*text_docs, *image_docs], embed)
    assert _batch_sizes(emu) == [5, len(COLORS)]  # one text request, one image request

    retriever = index.as_retriever(similarity_top_k=2, image_similarity_top_k=2)
    results = retriever.retrieve(TEXTS[3])
    texts = [r for r in results if not isinstance(r.node, ImageNode)]
    images = [r for r in results if isinstance(r.node, ImageNode)]
    assert len(texts) == 2 and len(images) == 2
    assert texts[0].node.get_content() == TEXTS[3]
    assert texts[0].score == pytest.approx(1.0, abs=1e-5)


async def test_multimodal_index_async_text_to_image(
    embed: OpenSearchMultiModalEmbedding,
    core: MultiModalEmbeddingClient,
    image_docs: list[ImageDocument],
) -> None:
    index = _multimodal_index(list(image_docs), embed)
    query = "yellow"
    paths = [str(doc.image_path) for doc in image_docs]
    query_vec = core.embed_texts([query])[0]
    best = max(
        zip(paths, core.embed_images(paths), strict=True), key=lambda pv: _cosine(query_vec, pv[1])
    )
    results = await index.as_retriever(image_similarity_top_k=1).atext_to_image_retrieve(query)
    assert [r.node.image_path for r in results] == [best[0]]  # type: ignore[attr-defined]
    await embed.aclose()
