"""The official SDK (alibabacloud-searchplat20240529) works unchanged against the emulator."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from opensearch_mm.emulator import Emulator

sdk_models = pytest.importorskip("alibabacloud_searchplat20240529.models")
sdk_client = pytest.importorskip("alibabacloud_searchplat20240529.client")
openapi_models = pytest.importorskip("alibabacloud_tea_openapi.models")

KEY = "OS-emulator-sdk-key"
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)
PNG_URI = "data:image/png;base64," + base64.b64encode(PNG).decode()


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(KEY) as e:
        yield e


def make_client(emu: Emulator, key: str = KEY):  # type: ignore[no-untyped-def]
    config = openapi_models.Config(bearer_token=key, endpoint=emu.endpoint, protocol="http")
    return sdk_client.Client(config)


def request(*items: dict[str, str]):  # type: ignore[no-untyped-def]
    return sdk_models.GetMultiModalEmbeddingRequest(
        input=[sdk_models.GetMultiModalEmbeddingRequestInput(**it) for it in items]
    )


@pytest.mark.parametrize(
    ("service_id", "dim"),
    [
        ("ops-m2-encoder", 768),
        ("ops-m2-encoder-large", 1024),
        ("ops-gme-qwen2-vl-2b-instruct", 1536),
    ],
)
def test_sdk_text_and_image(emu: Emulator, service_id: str, dim: int) -> None:
    client = make_client(emu)
    resp = client.get_multi_modal_embedding(
        "default", service_id, request({"text": "a photo of a cat"}, {"image": PNG_URI})
    )
    assert resp.status_code == 200
    body = resp.body
    assert body.request_id and body.latency >= 0
    # (5 text tokens and the image's 28: the API page's sample counts an image alone as 28.)
    assert body.usage.image == 1 and body.usage.token_count == 5 + 28
    embs = body.result.embeddings
    assert [e.index for e in embs] == [0, 1]
    assert all(len(e.embedding) == dim for e in embs)
    # the SDK sends what the notes say it sends
    rec = emu.requests_log[-1]
    assert rec.n_inputs == 2
    assert rec.headers["content-type"].startswith("application/json")
    assert rec.headers["x-acs-action"] == "GetMultiModalEmbedding"
    assert all(KEY not in v for v in rec.headers.values())


def test_sdk_with_options(emu: Emulator) -> None:
    client = make_client(emu)
    req = request({"text": "x"})
    req.options = {"whatever": True}
    resp = client.get_multi_modal_embedding("ws", "ops-m2-encoder", req)
    assert len(resp.body.result.embeddings[0].embedding) == 768


async def test_sdk_async(emu: Emulator) -> None:
    client = make_client(emu)
    resp = await client.get_multi_modal_embedding_async(
        "default", "ops-m2-encoder", request({"image": "https://example.com/a.jpg"})
    )
    assert len(resp.body.result.embeddings[0].embedding) == 768


def test_sdk_wrong_key(emu: Emulator) -> None:
    from Tea.exceptions import TeaException  # type: ignore[import-untyped]

    client = make_client(emu, "wrong-key")
    with pytest.raises(TeaException) as info:
        client.get_multi_modal_embedding("default", "ops-m2-encoder", request({"text": "x"}))
    assert info.value.code == "Unauthorized"
    assert info.value.data["statusCode"] == 401


def test_sdk_throttled_and_unknown_service(emu: Emulator) -> None:
    from Tea.exceptions import TeaException

    client = make_client(emu)
    emu.inject("throttle")
    with pytest.raises(TeaException) as info:
        client.get_multi_modal_embedding("default", "ops-m2-encoder", request({"text": "x"}))
    assert info.value.code == "Throttling.RateQuota"
    assert emu.stats.requests == 1  # the SDK does not retry a 429
    with pytest.raises(TeaException) as info:
        client.get_multi_modal_embedding("default", "ops-nope", request({"text": "x"}))
    assert info.value.code == "ServiceIdNotExist"
