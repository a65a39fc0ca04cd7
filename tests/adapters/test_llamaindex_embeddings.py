"""OpenSearchMultiModalEmbedding against the emulator: configuration, secrets, batching, order."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pybase64
import pytest
from llama_index.core.embeddings import MultiModalEmbedding
from PIL import Image

from llamaindex_opensearch_mm import MAX_BATCH_SIZE, OpenSearchMultiModalEmbedding
from opensearch_mm import (
    ConfigurationError,
    InputError,
    MultiModalEmbeddingClient,
    QuotaExceededError,
)
from opensearch_mm.emulator import Emulator
from tests.support.images import tiny_png, tiny_png_file

SECRET = "OS-llamaindex-secret-0123456789"


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(api_key=SECRET, qps=None, latency_ms=0) as server:
        yield server


@pytest.fixture
def embed(emu: Emulator) -> Iterator[OpenSearchMultiModalEmbedding]:
    emu.reset_stats()
    model = OpenSearchMultiModalEmbedding(api_key=SECRET, endpoint=emu.url, qps=None)
    yield model
    model.close()


@pytest.fixture
def core(emu: Emulator) -> Iterator[MultiModalEmbeddingClient]:
    with MultiModalEmbeddingClient(api_key=SECRET, endpoint=emu.url, qps=None) as client:
        yield client


def _distinct_pngs(n: int) -> list[bytes]:
    """``n`` different 4x4 PNGs (distinct colours), so every input has its own vector."""
    images = []
    for i in range(n):
        buf = io.BytesIO()
        Image.new("RGB", (4, 4), (i % 256, (i * 7) % 256, (i * 13) % 256)).save(buf, "PNG")
        images.append(buf.getvalue())
    return images


def _batch_sizes(emu: Emulator) -> list[int | None]:
    return [rec.n_inputs for rec in emu.requests_log]


# -- configuration ------------------------------------------------------------------------


def test_is_a_llamaindex_multimodal_embedding(embed: OpenSearchMultiModalEmbedding) -> None:
    assert isinstance(embed, MultiModalEmbedding)
    assert OpenSearchMultiModalEmbedding.class_name() == "OpenSearchMultiModalEmbedding"
    assert embed.model_name == "ops-m2-encoder"
    assert embed.embed_batch_size == MAX_BATCH_SIZE == 32
    assert embed.workspace == "default"
    assert embed.client.url.endswith(
        "/v3/openapi/workspaces/default/multi-modal-embedding/ops-m2-encoder"
    )


def test_options_reach_the_core_client(emu: Emulator) -> None:
    model = OpenSearchMultiModalEmbedding(
        "ops-m2-encoder-large",
        api_key=SECRET,
        endpoint=emu.url,
        workspace="ws1",
        max_retries=2,
        timeout=5.0,
        max_concurrency=3,
        qps=4.0,
        embed_batch_size=10,
    )
    client = model.client
    assert client.model == "ops-m2-encoder-large"
    assert client.workspace == "ws1"
    assert client.retry_policy.max_retries == 2
    assert client.timeout == 5.0
    assert client.max_concurrency == 3
    assert client.dimensions == 1024
    assert model.embed_batch_size == 10
    model.close()


def test_environment_defaults(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENSEARCH_MM_API_KEY", SECRET)
    monkeypatch.setenv("OPENSEARCH_MM_ENDPOINT", emu.url)
    monkeypatch.setenv("OPENSEARCH_MM_WORKSPACE", "envspace")
    emu.reset_stats()
    model = OpenSearchMultiModalEmbedding(qps=None)
    assert model.endpoint == emu.url
    assert model.workspace == "envspace"
    assert len(model.get_text_embedding("hello")) == 768
    assert emu.requests_log[-1].path.startswith("/v3/openapi/workspaces/envspace/")
    model.close()


def test_missing_key_or_endpoint_fails_at_construction(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENSEARCH_MM_API_KEY", raising=False)
    monkeypatch.delenv("OPENSEARCH_MM_ENDPOINT", raising=False)
    with pytest.raises(ConfigurationError, match="OPENSEARCH_MM_API_KEY"):
        OpenSearchMultiModalEmbedding(endpoint=emu.url)
    with pytest.raises(ConfigurationError, match="OPENSEARCH_MM_ENDPOINT"):
        OpenSearchMultiModalEmbedding(api_key=SECRET)


@pytest.mark.parametrize("size", [0, -1, 4096])
def test_embed_batch_size_is_checked_at_construction_and_assignment(
    embed: OpenSearchMultiModalEmbedding, emu: Emulator, size: int
) -> None:
    with pytest.raises(ValueError, match="embed_batch_size"):
        OpenSearchMultiModalEmbedding(api_key=SECRET, endpoint=emu.url, embed_batch_size=size)
    with pytest.raises(ValueError, match="embed_batch_size"):
        embed.embed_batch_size = size
    assert embed.embed_batch_size == MAX_BATCH_SIZE


def test_api_key_is_never_shown(
    embed: OpenSearchMultiModalEmbedding, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    embed.get_text_embedding("hello")
    shown = [
        repr(embed),
        str(embed),
        str(embed.to_dict()),
        embed.to_json(),
        str(embed.model_dump()),
        embed.model_dump_json(),
        str(embed.to_payload()),
        repr(embed.client),
        caplog.text,
    ]
    for text in shown:
        assert SECRET not in text
    assert "api_key" not in embed.to_dict()


def test_serialization_round_trip_takes_the_key_from_the_environment(
    embed: OpenSearchMultiModalEmbedding, emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = embed.to_json()
    monkeypatch.setenv("OPENSEARCH_MM_API_KEY", SECRET)
    again = OpenSearchMultiModalEmbedding.from_json(data)
    assert again.endpoint == emu.url
    assert again.get_text_embedding("hello") == embed.get_text_embedding("hello")
    again.close()


# -- texts ----------------------------------------------------------------------------------


def test_single_text_and_query(
    embed: OpenSearchMultiModalEmbedding, core: MultiModalEmbeddingClient, emu: Emulator
) -> None:
    text_vec = embed.get_text_embedding("a red bicycle")
    query_vec = embed.get_query_embedding("a red bicycle")
    assert _batch_sizes(emu) == [1, 1]
    assert len(text_vec) == 768
    assert text_vec == query_vec == core.embed_texts(["a red bicycle"])[0]


def test_text_batch_is_one_request_per_32_inputs_in_order(
    embed: OpenSearchMultiModalEmbedding, core: MultiModalEmbeddingClient, emu: Emulator
) -> None:
    texts = [f"text number {i}" for i in range(70)]
    vectors = embed.get_text_embedding_batch(texts)
    assert sorted(_batch_sizes(emu), key=lambda n: n or 0) == [6, 32, 32]
    assert emu.stats.requests == 3
    assert vectors == core.embed_texts(texts)
    assert len({tuple(v) for v in vectors}) == 70


def test_embed_batch_size_sets_event_steps_not_request_sizes(emu: Emulator) -> None:
    from llama_index.core.callbacks import CallbackManager, LlamaDebugHandler

    emu.reset_stats()
    handler = LlamaDebugHandler()
    model = OpenSearchMultiModalEmbedding(
        api_key=SECRET,
        endpoint=emu.url,
        qps=None,
        embed_batch_size=10,
        callback_manager=CallbackManager([handler]),
    )
    model.get_text_embedding_batch([f"t{i}" for i in range(25)])
    # One core call: the core packs requests (up to 32 inputs each).
    assert _batch_sizes(emu) == [25]
    sizes = []
    for _, end in handler.get_event_pairs():
        assert end.payload is not None
        sizes.append(len(end.payload["chunks"]))
    assert sizes == [10, 10, 5]
    model.close()


async def test_async_text_batch_is_one_request_per_32_inputs_in_order(
    embed: OpenSearchMultiModalEmbedding, core: MultiModalEmbeddingClient, emu: Emulator
) -> None:
    texts = [f"async text {i}" for i in range(70)]
    vectors = await embed.aget_text_embedding_batch(texts)
    assert sorted(_batch_sizes(emu), key=lambda n: n or 0) == [6, 32, 32]
    assert vectors == core.embed_texts(texts)
    await embed.aclose()


async def test_async_single_text_and_query(
    embed: OpenSearchMultiModalEmbedding, core: MultiModalEmbeddingClient
) -> None:
    expected = core.embed_texts(["hello world"])[0]
    assert await embed.aget_text_embedding("hello world") == expected
    assert await embed.aget_query_embedding("hello world") == expected
    await embed.aclose()


def test_invalid_text_is_refused_by_the_core_before_sending(
    embed: OpenSearchMultiModalEmbedding, emu: Emulator
) -> None:
    with pytest.raises(InputError, match="input 1"):
        embed.get_text_embedding_batch(["fine", "   "])
    assert emu.stats.requests == 0


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("framework", ["embeddings_cache", "rate_limiter"])
def test_an_invalid_text_is_named_by_its_place_in_the_list_with_llamaindex_per_chunk_loop(
    emu: Emulator, framework: str, mode: str
) -> None:
    # LlamaIndex's cache and rate limiter keep its own loop over chunks (or over the texts
    # not cached): the bad text is still named by its place in the whole list, and no
    # chunk before it is sent.
    from llama_index.core.rate_limiter import TokenBucketRateLimiter
    from llama_index.core.storage.kvstore import SimpleKVStore

    helper: Any = (
        SimpleKVStore()
        if framework == "embeddings_cache"
        else TokenBucketRateLimiter(requests_per_minute=6000)
    )
    emu.reset_stats()
    texts = [f"text {i}" for i in range(25)] + [""]
    with OpenSearchMultiModalEmbedding(
        api_key=SECRET, endpoint=emu.url, qps=None, embed_batch_size=10, **{framework: helper}
    ) as model:
        if framework == "embeddings_cache":
            model.get_text_embedding_batch(texts[:3])  # (cached: the loop skips them)
            emu.reset_stats()
        with pytest.raises(InputError) as info:
            if mode == "sync":
                model.get_text_embedding_batch(texts)
            else:
                asyncio.run(model.aget_text_embedding_batch(texts))
    assert (info.value.index, info.value.field) == (25, "text")
    assert emu.stats.requests == 0


def test_a_llamaindex_rate_limiter_assigned_beside_a_core_one_keeps_its_meaning(
    emu: Emulator,
) -> None:
    from llama_index.core.rate_limiter import TokenBucketRateLimiter

    from opensearch_mm import FixedRateLimiter

    core_limiter = FixedRateLimiter(500)
    llama_limiter = TokenBucketRateLimiter(requests_per_minute=6000)
    with OpenSearchMultiModalEmbedding(
        api_key=SECRET, endpoint=emu.url, rate_limiter=core_limiter
    ) as model:
        model.rate_limiter = llama_limiter
        assert model.rate_limiter is llama_limiter  # LlamaIndex's, per chunk
        assert model.client.rate_limiter is core_limiter  # the core's, per request
        assert len(model.get_text_embedding_batch(["one", "two"])) == 2
        model.rate_limiter = None  # (None: no LlamaIndex limiter; the core's stays)
        assert model.rate_limiter is None and model.client.rate_limiter is core_limiter


# -- images ---------------------------------------------------------------------------------


def test_image_forms(
    embed: OpenSearchMultiModalEmbedding,
    core: MultiModalEmbeddingClient,
    emu: Emulator,
    tmp_path: Path,
) -> None:
    png = tiny_png("red")
    path = tiny_png_file(tmp_path, "red.png", "red")
    data_uri = "data:image/png;base64," + pybase64.b64encode(png).decode()
    url = "https://example.com/photo.jpg"
    expected_local = core.embed_images([png])[0]
    emu.reset_stats()

    assert embed.get_image_embedding(str(path)) == expected_local
    assert embed.get_image_embedding(io.BytesIO(png)) == expected_local
    assert embed.get_image_embedding(data_uri) == expected_local
    assert embed.get_image_embedding(url) == core.embed_images([url])[0]
    assert _batch_sizes(emu)[:4] == [1, 1, 1, 1]


def test_bytesio_is_read_whole_and_its_position_kept(
    embed: OpenSearchMultiModalEmbedding, core: MultiModalEmbeddingClient
) -> None:
    png = tiny_png("blue")
    buf = io.BytesIO(png)
    buf.seek(0, io.SEEK_END)  # already consumed once, e.g. by an earlier embedding
    assert embed.get_image_embedding(buf) == core.embed_images([png])[0]
    assert buf.tell() == len(png)
    assert embed.get_image_embedding(buf) == core.embed_images([png])[0]


def test_image_batch_is_one_request_per_32_inputs_in_order(
    embed: OpenSearchMultiModalEmbedding,
    core: MultiModalEmbeddingClient,
    emu: Emulator,
    tmp_path: Path,
) -> None:
    pngs = _distinct_pngs(70)
    paths = []
    for i, data in enumerate(pngs[:35]):
        p = tmp_path / f"img{i}.png"
        p.write_bytes(data)
        paths.append(str(p))
    images: list[str | io.BytesIO] = [*paths, *(io.BytesIO(b) for b in pngs[35:])]
    vectors = embed.get_image_embedding_batch(images)
    assert sorted(_batch_sizes(emu), key=lambda n: n or 0) == [6, 32, 32]
    assert vectors == core.embed_images(pngs)
    assert len({tuple(v) for v in vectors}) == 70


async def test_async_image_batch_is_one_request_per_32_inputs_in_order(
    embed: OpenSearchMultiModalEmbedding, core: MultiModalEmbeddingClient, emu: Emulator
) -> None:
    pngs = _distinct_pngs(70)
    vectors = await embed.aget_image_embedding_batch([io.BytesIO(b) for b in pngs])
    assert sorted(_batch_sizes(emu), key=lambda n: n or 0) == [6, 32, 32]
    assert vectors == core.embed_images(pngs)
    await embed.aclose()


async def test_async_single_image(
    embed: OpenSearchMultiModalEmbedding, core: MultiModalEmbeddingClient, tmp_path: Path
) -> None:
    path = tiny_png_file(tmp_path, "green.png", "green")
    expected = core.embed_images([path])[0]
    assert await embed.aget_image_embedding(str(path)) == expected
    assert await embed.aget_image_embedding(io.BytesIO(tiny_png("green"))) == expected
    await embed.aclose()


def test_broken_image_is_refused_by_the_core_before_sending(
    embed: OpenSearchMultiModalEmbedding, emu: Emulator, tmp_path: Path
) -> None:
    missing = str(tmp_path / "missing.png")
    with pytest.raises(InputError, match="input 0"):
        embed.get_image_embedding(missing)
    with pytest.raises(InputError):
        embed.get_image_embedding(io.BytesIO(tiny_png("red")[:40]))  # truncated PNG
    assert emu.stats.requests == 0


# -- the core does the work ---------------------------------------------------------------


def test_injected_core_client_is_used(emu: Emulator) -> None:
    with MultiModalEmbeddingClient(api_key=SECRET, endpoint=emu.url, qps=None) as client:
        model = OpenSearchMultiModalEmbedding(client=client)
        assert model.client is client
        assert model.get_text_embedding("hi") == client.embed_texts(["hi"])[0]


def test_throttling_is_retried_by_the_core(
    embed: OpenSearchMultiModalEmbedding, core: MultiModalEmbeddingClient, emu: Emulator
) -> None:
    emu.inject("throttle", 2, retry_after=0.01)
    vector = embed.get_text_embedding("retry me")
    assert [rec.status for rec in emu.requests_log] == [429, 429, 200]
    assert vector == core.embed_texts(["retry me"])[0]


def test_quota_error_surfaces_as_the_core_exception(
    embed: OpenSearchMultiModalEmbedding, emu: Emulator
) -> None:
    emu.inject("quota", 1)
    with pytest.raises(QuotaExceededError) as info:
        embed.get_text_embedding_batch(["a", "b"])
    assert SECRET not in str(info.value)
    assert emu.stats.requests == 1


# -- the model the requests go to ---------------------------------------------------------


def test_model_keyword_selects_the_model_the_requests_use(emu: Emulator) -> None:
    emu.reset_stats()
    model = OpenSearchMultiModalEmbedding(
        model="ops-gme-qwen2-vl-2b-instruct", api_key=SECRET, endpoint=emu.url, qps=None
    )
    assert model.model_name == "ops-gme-qwen2-vl-2b-instruct"
    vector = model.get_text_embedding("a red bicycle")
    assert emu.requests_log[-1].path.endswith("/ops-gme-qwen2-vl-2b-instruct")
    assert len(vector) == 1536
    model.close()
