"""OpenSearchMultiModalEmbedding's main methods replayed from cassettes/llamaindex/.

Replay needs no network and no server. Re-record with
``OPENSEARCH_MM_RECORD=1 python -m pytest -m cassette tests/adapters/test_llamaindex_cassettes.py``
(against the real service when OPENSEARCH_MM_API_KEY / OPENSEARCH_MM_ENDPOINT are set).
The assertions hold for any faithful service: shapes, one request per 32 inputs, and
agreement between single and batched calls on the same input.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from llamaindex_opensearch_mm import OpenSearchMultiModalEmbedding
from tests.support.images import tiny_png, tiny_png_file
from tests.support.recording import use_cassette

pytestmark = pytest.mark.cassette

DIM = 768  # ops-m2-encoder
# 34 = 32 + 2: a batch of two requests.
TEXTS = [f"cassette text {i}: a short sentence about item {i}" for i in range(34)]


@contextmanager
def _model(name: str) -> Iterator[OpenSearchMultiModalEmbedding]:
    with use_cassette(f"llamaindex/{name}") as ep:
        model = OpenSearchMultiModalEmbedding(
            api_key=ep.api_key, endpoint=ep.url, workspace=ep.workspace, qps=None
        )
        try:
            yield model
        finally:
            model.close()


def _close(a: list[float], b: list[float]) -> bool:
    """Same vector up to the service's float noise between single and batched calls."""
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm > 0.999


def test_text_and_query_embedding() -> None:
    with _model("text_and_query") as model:
        text_vec = model.get_text_embedding("a red bicycle leaning on a wall")
        query_vec = model.get_query_embedding("a red bicycle leaning on a wall")
        other = model.get_query_embedding("a bowl of noodles")
    assert len(text_vec) == len(query_vec) == len(other) == DIM
    assert _close(text_vec, query_vec)  # the service has no query/document distinction
    assert not _close(text_vec, other)


def test_text_batch_is_one_request_per_32() -> None:
    with _model("text_batch") as model:
        vectors = model.get_text_embedding_batch(TEXTS)
        first, last = model.get_text_embedding(TEXTS[0]), model.get_text_embedding(TEXTS[-1])
    assert len(vectors) == len(TEXTS)
    assert all(len(v) == DIM for v in vectors)
    assert _close(vectors[0], first) and _close(vectors[-1], last)
    assert not _close(vectors[0], vectors[-1])


async def test_async_text_batch_and_query() -> None:
    with _model("text_batch_async") as model:
        vectors = await model.aget_text_embedding_batch(TEXTS)
        query = await model.aget_query_embedding(TEXTS[5])
        single = await model.aget_text_embedding(TEXTS[6])
        await model.aclose()
    assert len(vectors) == len(TEXTS)
    assert _close(vectors[5], query) and _close(vectors[6], single)


def test_image_path_and_bytesio(tmp_path: Path) -> None:
    red = tiny_png_file(tmp_path, "red.png", "red")
    with _model("image_path_and_bytesio") as model:
        from_path = model.get_image_embedding(str(red))
        from_bytes = model.get_image_embedding(io.BytesIO(tiny_png("red")))
        blue = model.get_image_embedding(io.BytesIO(tiny_png("blue")))
    assert len(from_path) == len(blue) == DIM
    assert _close(from_path, from_bytes)  # same bytes, same vector
    assert not _close(from_path, blue)


async def test_image_batch_sync_and_async(tmp_path: Path) -> None:
    colors = ["red", "green", "blue", "yellow", "black", "white"]
    paths: list[str | io.BytesIO] = [str(tiny_png_file(tmp_path, f"{c}.png", c)) for c in colors]
    with _model("image_batch") as model:
        sync_vectors = model.get_image_embedding_batch(paths)
        async_vectors = await model.aget_image_embedding_batch(
            [io.BytesIO(tiny_png(c)) for c in colors]
        )
        single = await model.aget_image_embedding(paths[2])
        await model.aclose()
    assert len(sync_vectors) == len(async_vectors) == len(colors)
    for a, b in zip(sync_vectors, async_vectors, strict=True):
        assert _close(a, b)
    assert _close(sync_vectors[2], single)
