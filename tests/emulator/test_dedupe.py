"""Identical inputs in one call are sent once and their vector reused, in order."""

from __future__ import annotations

import io
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image

from opensearch_mm import Content, MultiModalEmbeddingClient, OpenSearchMMError, RetryPolicy
from opensearch_mm.emulator import Emulator
from tests.support.doubles import FailSecond

KEY = "OS-dedupe-test-key"


def png(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(api_key=KEY, qps=None, latency_ms=0) as e:
        yield e


@pytest.fixture
def client(emu: Emulator) -> Iterator[MultiModalEmbeddingClient]:
    emu.reset_stats()
    emu.clear_faults()
    with MultiModalEmbeddingClient(
        api_key=KEY, endpoint=emu.url, qps=None, model="ops-gme-qwen2-vl-2b-instruct"
    ) as c:
        yield c


def test_repeated_texts_are_sent_once(emu: Emulator, client: MultiModalEmbeddingClient) -> None:
    texts = [f"caption {i % 10}" for i in range(100)]  # 10 distinct, each 10 times
    result = client.embed(texts)
    assert emu.stats.inputs_embedded == 10
    assert emu.stats.requests == 1
    assert result.reused == 90
    distinct = client.embed([f"caption {i}" for i in range(10)]).embeddings
    assert result.embeddings == [distinct[i % 10] for i in range(100)]
    # each repeat owns its list: changing one vector leaves the others alone
    result.embeddings[10][0] += 1.0
    assert result.embeddings[0] == distinct[0]


def test_same_image_bytes_and_pairs_are_sent_once(
    emu: Emulator, client: MultiModalEmbeddingClient
) -> None:
    red, blue = png((255, 0, 0)), png((0, 0, 255))
    inputs = [
        Content(image=red),
        Content(image=blue),
        Content(image=red),
        Content(text="a red square", image=red),
        Content(text="a red square", image=red),
        Content(text="a red square"),
    ]
    result = client.embed(inputs)
    assert emu.stats.inputs_embedded == 4
    assert result.reused == 2
    e = result.embeddings
    assert e[0] == e[2] and e[3] == e[4]
    assert len({tuple(v) for v in (e[0], e[1], e[3], e[5])}) == 4
    # usage is what the service counted for the distinct inputs only
    distinct = client.embed([inputs[0], inputs[1], inputs[3], inputs[5]])
    assert result.usage == distinct.usage


def test_texts_and_async_reuse_too(emu: Emulator, client: MultiModalEmbeddingClient) -> None:
    vectors = client.embed_texts(["same", "same", "other", "same"])
    assert vectors[0] == vectors[1] == vectors[3] != vectors[2]
    assert emu.stats.inputs_embedded == 2


async def test_async_reuses(emu: Emulator, client: MultiModalEmbeddingClient) -> None:
    result = await client.aembed(["x", "y", "x"])
    assert emu.stats.inputs_embedded == 2
    assert result.embeddings[0] == result.embeddings[2]
    assert result.reused == 1


def test_a_failed_original_fails_its_repeats(emu: Emulator) -> None:
    emu.reset_stats()
    emu.clear_faults()
    # 40 distinct texts -> requests of 32 and 8; the second fails for good.
    inputs = [f"t{i}" for i in range(40)] + ["t0", "t35"]  # a repeat from each request
    steps: list[int] = []  # what on_progress was told
    http = httpx.Client(transport=FailSecond(emu))
    with (
        MultiModalEmbeddingClient(
            api_key=KEY,
            endpoint=emu.url,
            qps=None,
            max_concurrency=1,
            retry_policy=RetryPolicy(max_retries=0),
            http_client=http,
        ) as client,
        pytest.raises(OpenSearchMMError) as info,
    ):
        client.embed(inputs, on_progress=steps.append)
    http.close()
    emu.clear_faults()
    partial = info.value.partial
    assert partial is not None
    assert partial.failed_indices == [*range(32, 40), 41]
    assert partial.embeddings[40] is not None
    assert partial.embeddings[40] == partial.embeddings[0]
    assert partial.errors[41] is partial.errors[35] is info.value
    assert steps == [33]  # the first request's 32 and the repeat of t0: only what was embedded
