"""End to end with real LangChain components: vector stores, a retriever in an LCEL chain.

The HTTP side replays cassettes/langchain/e2e/*.yaml (recorded from the emulator, or from
the service with OPENSEARCH_MM_RECORD=1 and credentials). Emulator vectors are not semantic,
so every query is exactly a stored text or image: its vector equals the stored one and must
rank first.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import chromadb
import pytest
from chromadb.config import Settings
from chromadb.utils.embedding_functions import ONNXMiniLM_L6_V2
from langchain_chroma import Chroma
from langchain_core.documents import Document
from langchain_core.runnables import RunnableLambda
from langchain_core.vectorstores import InMemoryVectorStore

from langchain_opensearch_mm import OpenSearchMultiModalEmbeddings
from tests.support.images import tiny_png, tiny_png_file
from tests.support.recording import use_cassette

pytestmark = pytest.mark.cassette

TEXTS = [
    "A red bicycle leaning against a brick wall.",
    "A cat sleeping on a green sofa.",
    "Fresh bread on a wooden table.",
    "Snow on the mountains at sunrise.",
    "A blue boat in a small harbour.",
]
COLORS = ("red", "green", "blue")


@pytest.fixture
def embeddings(request: pytest.FixtureRequest) -> Iterator[OpenSearchMultiModalEmbeddings]:
    """An adapter pointed at this test's cassette (``langchain/e2e/<test name>``)."""
    with use_cassette(f"langchain/e2e/{request.node.name}") as endpoint:
        emb = OpenSearchMultiModalEmbeddings(
            api_key=endpoint.api_key,
            endpoint=endpoint.url,
            workspace=endpoint.workspace,
            qps="adaptive" if endpoint.recording else None,
            max_retries=6 if endpoint.recording else 0,
        )
        yield emb
        emb.close()


@pytest.fixture(scope="module")
def chroma_client() -> Any:
    """An in-memory chroma client, telemetry off."""
    return chromadb.EphemeralClient(Settings(anonymized_telemetry=False))


@pytest.fixture
def no_chroma_default_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if chroma ever reaches for its default ONNX model (a download)."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("chroma tried to use its default embedding model")

    monkeypatch.setattr(ONNXMiniLM_L6_V2, "__call__", refuse)
    monkeypatch.setattr(ONNXMiniLM_L6_V2, "_download_model_if_not_exists", refuse)


def format_docs(docs: list[Document]) -> str:
    return "\n\n".join(doc.page_content for doc in docs)


# -- InMemoryVectorStore ---------------------------------------------------------------------


def test_in_memory_store_ranks_the_identical_text_first(
    embeddings: OpenSearchMultiModalEmbeddings,
) -> None:
    store = InMemoryVectorStore.from_texts(
        TEXTS, embedding=embeddings, metadatas=[{"i": i} for i in range(len(TEXTS))]
    )
    for i, text in enumerate(TEXTS):
        hits = store.similarity_search_with_score(text, k=2)
        assert hits[0][0].page_content == text
        assert hits[0][0].metadata == {"i": i}
        assert hits[0][1] == pytest.approx(1.0, abs=1e-5)  # cosine of a vector with itself
        assert hits[1][1] < hits[0][1]


async def test_in_memory_store_async(embeddings: OpenSearchMultiModalEmbeddings) -> None:
    store = await InMemoryVectorStore.afrom_texts(TEXTS, embedding=embeddings)
    hits = await store.asimilarity_search(TEXTS[3], k=1)
    assert [d.page_content for d in hits] == [TEXTS[3]]
    await embeddings.aclose()


# -- a retriever in an LCEL chain ------------------------------------------------------------


def test_retriever_in_lcel_chain(embeddings: OpenSearchMultiModalEmbeddings) -> None:
    store = InMemoryVectorStore.from_texts(TEXTS, embedding=embeddings)
    chain = store.as_retriever(search_kwargs={"k": 1}) | RunnableLambda(format_docs)
    assert chain.invoke(TEXTS[2]) == TEXTS[2]
    assert chain.batch([TEXTS[0], TEXTS[4]]) == [TEXTS[0], TEXTS[4]]


async def test_retriever_in_lcel_chain_async(embeddings: OpenSearchMultiModalEmbeddings) -> None:
    store = await InMemoryVectorStore.afrom_texts(TEXTS, embedding=embeddings)
    chain = store.as_retriever(search_kwargs={"k": 2}) | RunnableLambda(format_docs)
    answer = await chain.ainvoke(TEXTS[1])
    assert answer.split("\n\n")[0] == TEXTS[1]
    await embeddings.aclose()


# -- Chroma with images ----------------------------------------------------------------------


@pytest.mark.usefixtures("no_chroma_default_model")
def test_chroma_add_images_then_search_by_image_and_text(
    embeddings: OpenSearchMultiModalEmbeddings, chroma_client: Any, tmp_path: Path
) -> None:
    store = Chroma(
        collection_name=f"lc-{uuid.uuid4().hex}",
        embedding_function=embeddings,
        client=chroma_client,
    )
    try:
        paths = [str(tiny_png_file(tmp_path, f"{c}.png", c)) for c in COLORS]
        store.add_images(uris=paths, metadatas=[{"color": c} for c in COLORS])
        store.add_texts(TEXTS[:2], metadatas=[{"kind": "text"}, {"kind": "text"}])

        for color, path in zip(COLORS, paths, strict=True):
            vector = embeddings.embed_image([path])[0]
            hit = store.similarity_search_by_vector(vector, k=1)[0]
            assert hit.metadata == {"color": color}
            # Chroma stores the image itself (base64) as the document text
            assert hit.page_content == base64.b64encode(tiny_png(color)).decode()

        assert store.similarity_search_by_image(uri=paths[1], k=1)[0].metadata == {"color": "green"}
        text_hit = store.similarity_search(TEXTS[1], k=1)[0]
        assert text_hit.page_content == TEXTS[1] and text_hit.metadata == {"kind": "text"}
    finally:
        store.delete_collection()
