"""``Usage`` as the service returns it: all four fields of the SDK's response model."""

from __future__ import annotations

import orjson
import pytest

from opensearch_mm import MultiModalEmbeddingClient, StreamStats, Usage
from opensearch_mm.emulator import Emulator
from opensearch_mm.protocol import parse_response, parse_usage

KEY = "usage-test-key"


def test_all_four_fields_are_read() -> None:
    data = {"token_count": 300, "image": 1, "image_token": 256, "text_token": 44}
    assert parse_usage(data) == Usage(token_count=300, image=1, image_token=256, text_token=44)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (None, Usage()),
        ([], Usage()),
        ({"token_count": 7, "image": 1}, Usage(7, 1)),  # the API page's two fields only
        ({"token_count": "7", "image_token": None, "text_token": -3}, Usage()),
        ({"image_token": 5, "text_token": True}, Usage(image_token=5)),
    ],
)
def test_missing_or_malformed_fields_count_zero(data: object, expected: Usage) -> None:
    assert parse_usage(data) == expected


def test_usage_adds_every_field() -> None:
    total = Usage(1, 2, 3, 4) + Usage(10, 20, 30, 40)
    assert total == Usage(token_count=11, image=22, image_token=33, text_token=44)


def test_parse_response_carries_the_split() -> None:
    body = orjson.dumps(
        {
            "request_id": "r",
            "usage": {"token_count": 9, "image": 1, "image_token": 6, "text_token": 3},
            "result": {"embeddings": [{"index": 0, "embedding": [0.5, 0.5]}]},
        }
    )
    answer = parse_response(200, {}, body, expected=1, dimensions=2)
    assert answer.usage == Usage(9, 1, 6, 3)


def test_the_sdk_response_model_has_the_same_fields() -> None:
    models = pytest.importorskip("alibabacloud_searchplat20240529.models")
    usage = models.GetMultiModalEmbeddingResponseBodyUsage().from_map(
        {"token_count": 1, "image": 2, "image_token": 3, "text_token": 4}
    )
    ours = parse_usage(usage.to_map())
    assert ours == Usage(token_count=1, image=2, image_token=3, text_token=4)


def test_the_emulator_reports_them_and_stream_stats_sum_them() -> None:
    with (
        Emulator(api_key=KEY) as emu,
        MultiModalEmbeddingClient(api_key=KEY, endpoint=emu.url, qps=None) as client,
    ):
        pixel = (
            "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4"
            "nGNgYGBgAAAABQABpfZFQAAAAABJRU5ErkJggg=="
        )
        result = client.embed(["one two", {"image": pixel}, "three"])
        assert result.usage.image == 1 and result.usage.image_token > 0
        assert result.usage.text_token == 3
        assert result.usage.token_count == 3 + result.usage.image_token
        stats = StreamStats()
        inputs = [f"text {i}" for i in range(70)]
        assert len(list(client.embed_iter(inputs, stats=stats))) == 70
        assert stats.requests == 3  # 32 + 32 + 6
        assert stats.usage.text_token == 140 and stats.usage.image == 0
