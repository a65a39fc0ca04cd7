"""The async client against the emulator: the same answers as the sync one."""

from __future__ import annotations

import asyncio
import base64
import io
import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from PIL import Image

from opensearch_mm import Content, MultiModalEmbeddingClient
from opensearch_mm.emulator import Emulator

KEY = "OS-async-test-key"
MODELS = [
    ("ops-m2-encoder", 768),
    ("ops-m2-encoder-large", 1024),
    ("ops-gme-qwen2-vl-2b-instruct", 1536),
    ("ops-mm-embedding-v1-2b", 1536),
]


def png(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, "PNG")
    return buf.getvalue()


def noise_png(n_bytes: int, seed: int) -> bytes:
    side = int((n_bytes / 3) ** 0.5) + 1
    img = Image.frombytes("RGB", (side, side), random.Random(seed).randbytes(side * side * 3))
    buf = io.BytesIO()
    img.save(buf, "PNG", compress_level=0)
    return buf.getvalue()


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(api_key=KEY, qps=None, latency_ms=0) as e:
        yield e


def make(emu: Emulator, **kw: object) -> MultiModalEmbeddingClient:
    kw.setdefault("qps", None)
    return MultiModalEmbeddingClient(api_key=KEY, endpoint=emu.url, **kw)  # type: ignore[arg-type]


@pytest.fixture
async def client(emu: Emulator) -> AsyncIterator[MultiModalEmbeddingClient]:
    emu.reset_stats()
    emu.clear_faults()
    async with make(emu) as c:
        yield c


async def test_aembed_texts_order_matches_single_and_sync(
    client: MultiModalEmbeddingClient,
) -> None:
    texts = [f"async text {i}" for i in range(12)]
    vectors = await client.aembed_texts(texts)
    singles = [(await client.aembed_texts([t]))[0] for t in texts]
    assert vectors == singles
    assert vectors == client.embed_texts(texts)
    assert len({tuple(v) for v in vectors}) == 12


@pytest.mark.parametrize(("model", "dims"), MODELS)
async def test_dims_per_model(emu: Emulator, model: str, dims: int) -> None:
    async with make(emu, model=model) as c:
        result = await c.aembed(["t", Content(image=png((3, 3, 3)))])
    assert [len(v) for v in result.embeddings] == [dims, dims]


async def test_aembed_images_all_kinds(client: MultiModalEmbeddingClient, tmp_path: Path) -> None:
    data = png((10, 200, 10))
    path = tmp_path / "g.png"
    path.write_bytes(data)
    uri = "data:image/png;base64," + base64.b64encode(data).decode()
    url = "https://example.com/g.png"

    def inputs() -> list[object]:
        return [path, str(path), data, io.BytesIO(data), Image.open(io.BytesIO(data)), uri, url]

    vectors = await client.aembed_images(inputs())  # type: ignore[arg-type]
    assert len(vectors) == 7
    assert vectors[0] == vectors[1] == vectors[2] == vectors[3] == vectors[5]
    assert vectors == client.embed_images(inputs())  # type: ignore[arg-type]
    assert (await client.aembed_images([url]))[0] == vectors[6]


async def test_aembed_mixed_usage_and_request_ids(
    emu: Emulator, client: MultiModalEmbeddingClient
) -> None:
    img = png((1, 1, 1))
    inputs: list[object] = [f"t{i}" for i in range(40)] + [Content(image=img), {"image": img}]
    result = await client.aembed(inputs)  # type: ignore[arg-type]
    assert len(result) == 42
    assert result.embeddings[40] == result.embeddings[41]
    assert result.usage.image == 1 and result.reused == 1  # the same image is sent once
    assert len(result.request_ids) == 2
    assert sorted(r.n_inputs or 0 for r in emu.requests_log) == [9, 32]
    sync = client.embed(inputs)  # type: ignore[arg-type]
    assert sync.embeddings == result.embeddings and sync.usage == result.usage


async def test_many_inputs_many_requests(emu: Emulator, client: MultiModalEmbeddingClient) -> None:
    texts = [f"x{i}" for i in range(300)]
    vectors = await client.aembed_texts(texts)
    assert len(vectors) == 300
    assert [r.n_inputs for r in emu.requests_log].count(32) == 9
    assert vectors[137] == (await client.aembed_texts([texts[137]]))[0]


async def test_large_images_split(emu: Emulator, client: MultiModalEmbeddingClient) -> None:
    images = [noise_png(3_000_000, seed) for seed in range(10, 14)]
    vectors = await client.aembed_images(images)
    log = emu.requests_log
    assert len(log) >= 2 and all(r.body_bytes <= 8_000_000 for r in log)
    assert sum(r.n_inputs or 0 for r in log) == 4
    assert vectors[2] == (await client.aembed_images([images[2]]))[0]


async def test_connections_reused(emu: Emulator, client: MultiModalEmbeddingClient) -> None:
    for i in range(25):
        await client.aembed_texts([f"y{i}"])
    await client.aembed_texts([f"z{i}" for i in range(32 * 10)])
    assert emu.stats.requests == 35
    assert emu.stats.connections <= client.max_concurrency * 2


async def test_concurrency_bounded(emu: Emulator) -> None:
    emu.reset_stats()
    emu.latency_ms = 30
    try:
        async with make(emu, max_concurrency=3) as c:
            await c.aembed_texts([f"t{i}" for i in range(32 * 9)])
    finally:
        emu.latency_ms = 0
    assert 1 <= emu.stats.max_in_flight <= 3
    assert emu.stats.requests == 9


async def test_concurrent_calls_share_client(client: MultiModalEmbeddingClient) -> None:
    groups = [[f"g{g}-{i}" for i in range(40)] for g in range(5)]
    results = await asyncio.gather(*(client.aembed_texts(g) for g in groups))
    for g, vectors in zip(groups, results, strict=True):
        assert vectors == client.embed_texts(g)


def test_second_asyncio_run_same_client(emu: Emulator) -> None:
    client = make(emu)
    try:
        first = asyncio.run(client.aembed_texts(["one", "two"]))
        second = asyncio.run(client.aembed_texts(["one", "two"]))
        third = asyncio.run(client.aembed(["three"]))
    finally:
        asyncio.run(client.aclose())
    assert first == second
    assert len(third.embeddings[0]) == 768


async def test_aembed_iter_sync_and_async_sources(client: MultiModalEmbeddingClient) -> None:
    texts = [f"s{i}" for i in range(70)]

    async def source() -> AsyncIterator[str]:
        for t in texts:
            yield t

    from_list = [v async for v in client.aembed_iter(texts)]
    from_async = [v async for v in client.aembed_iter(source())]
    assert from_list == from_async == client.embed_texts(texts)


async def test_async_reports_in_the_event_loop(client: MultiModalEmbeddingClient) -> None:
    steps: list[int] = []
    await client.aembed_texts([f"a{i}" for i in range(70)], on_progress=steps.append)
    assert steps == [32, 32, 6]  # in input order, as the sync call's
