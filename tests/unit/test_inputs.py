"""Input normalisation and validation (``opensearch_mm.inputs``): nothing invalid is sent."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from opensearch_mm import Content
from opensearch_mm.batching import BODY_OVERHEAD, MAX_BODY_BYTES
from opensearch_mm.emulator import Emulator
from opensearch_mm.errors import InputError
from opensearch_mm.inputs import (
    EncodeOptions,
    encode_content,
    encode_image_only,
    encode_text_only,
)
from opensearch_mm.models import model_info

PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)
PNG_URI = "data:image/png;base64," + base64.b64encode(PNG).decode()
URL = "https://example.com/cat.jpg"


def opts(
    model: str = "ops-m2-encoder", max_item_bytes: int = MAX_BODY_BYTES - BODY_OVERHEAD
) -> EncodeOptions:
    return EncodeOptions(model=model_info(model), max_item_bytes=max_item_bytes)


M2 = opts()
GME = opts("ops-gme-qwen2-vl-2b-instruct")


def decoded(item: Any) -> dict[str, str]:
    data = orjson.loads(item.data)
    assert isinstance(data, dict)
    return data


# -- accepted shapes ------------------------------------------------------------------


def test_str_is_text() -> None:
    item = encode_content("hello", 3, M2)
    assert item.index == 3
    assert decoded(item) == {"text": "hello"}
    assert item.has_image is False
    assert item.size == len(item.data)


def test_content_text_and_content_image() -> None:
    assert decoded(encode_content(Content(text="a cat"), 0, M2)) == {"text": "a cat"}
    item = encode_content(Content(image=URL), 1, M2)
    assert decoded(item) == {"image": URL}
    assert item.has_image is True


def test_dict_inputs() -> None:
    assert decoded(encode_content({"text": "t"}, 0, M2)) == {"text": "t"}
    assert decoded(encode_content({"image": PNG_URI}, 0, M2)) == {"image": PNG_URI}
    # explicit None for the other field is fine
    assert decoded(encode_content({"text": "t", "image": None}, 0, M2)) == {"text": "t"}


def test_image_bytes_become_data_uri() -> None:
    item = encode_image_only(PNG, 0, M2)
    image = decoded(item)["image"]
    assert image.startswith("data:image/png;base64,")
    assert base64.b64decode(image.split(",", 1)[1]) == PNG


def test_unicode_text_roundtrips_exactly() -> None:
    text = '猫 café 🐱 "quoted" \\ back\nslash'
    assert decoded(encode_text_only(text, 0, M2)) == {"text": text}


# -- refused shapes -------------------------------------------------------------------


def test_unknown_key_refused_with_index() -> None:
    with pytest.raises(InputError) as ei:
        encode_content({"text": "t", "img": URL}, 7, M2)
    assert ei.value.index == 7
    assert "img" in str(ei.value) and "input 7" in str(ei.value)


@pytest.mark.parametrize("value", [None, 42, 3.5, b"x", ["a"], object()])
def test_wrong_types_refused_by_embed(value: object) -> None:
    with pytest.raises(InputError) as ei:
        encode_content(value, 5, M2)
    assert ei.value.index == 5
    assert "input 5" in str(ei.value)


def test_empty_content_and_empty_dict_refused() -> None:
    for value in (Content(), {}, {"text": None, "image": None}):
        with pytest.raises(InputError, match="neither text nor image") as ei:
            encode_content(value, 2, M2)
        assert ei.value.index == 2


@pytest.mark.parametrize("value", [None, 1, 2.0, b"bytes", ["x"]])
def test_non_str_text_refused(value: object) -> None:
    with pytest.raises(InputError) as ei:
        encode_text_only(value, 4, M2)
    assert ei.value.index == 4 and ei.value.field == "text"
    assert "input 4 (text)" in str(ei.value)


def test_non_str_text_in_dict_refused() -> None:
    with pytest.raises(InputError) as ei:
        encode_content({"text": 12}, 1, GME)
    assert ei.value.index == 1 and ei.value.field == "text"


@pytest.mark.parametrize("text", ["", " ", "\n\t  ", "\u3000"])
def test_empty_and_whitespace_text_refused(text: str) -> None:
    with pytest.raises(InputError, match="empty") as ei:
        encode_text_only(text, 9, M2)
    assert ei.value.index == 9 and ei.value.field == "text"
    with pytest.raises(InputError):
        encode_content(Content(text=text), 9, M2)


def test_lone_surrogate_refused() -> None:
    with pytest.raises(InputError, match="surrogate") as ei:
        encode_text_only("abc\ud800def", 6, M2)
    assert ei.value.index == 6 and ei.value.field == "text"
    with pytest.raises(InputError):
        encode_content({"text": "\udfff"}, 0, GME)


def test_none_image_refused() -> None:
    with pytest.raises(InputError) as ei:
        encode_image_only(None, 3, M2)
    assert ei.value.index == 3 and ei.value.field == "image"


# -- text + image in one input --------------------------------------------------------


@pytest.mark.parametrize("model", ["ops-m2-encoder", "ops-m2-encoder-large"])
def test_m2_text_plus_image_refused(model: str) -> None:
    for value in (Content(text="t", image=URL), {"text": "t", "image": PNG_URI}):
        with pytest.raises(InputError) as ei:
            encode_content(value, 11, opts(model))
        assert ei.value.index == 11 and ei.value.field == "image"
        assert "input 11 (image)" in str(ei.value)
        assert model in str(ei.value)


@pytest.mark.parametrize(
    "model", ["ops-gme-qwen2-vl-2b-instruct", "ops-mm-embedding-v1-2b", "my-custom-model"]
)
def test_combining_models_allow_text_plus_image(model: str) -> None:
    item = encode_content(Content(text="t", image=URL), 0, opts(model))
    assert decoded(item) == {"text": "t", "image": URL}
    assert item.has_image


def test_m2_combined_refused_before_any_request() -> None:
    from opensearch_mm import MultiModalEmbeddingClient

    with Emulator(api_key="k") as emu:
        client = MultiModalEmbeddingClient(api_key="k", endpoint=emu.url, qps=None)
        with client, pytest.raises(InputError) as ei:
            client.embed(["ok", "fine", Content(text="t", image=URL)])
        assert ei.value.index == 2 and ei.value.field == "image"
        assert emu.stats.requests == 0


# -- size ----------------------------------------------------------------------------


def test_item_over_body_budget_refused() -> None:
    small = opts(max_item_bytes=100)
    with pytest.raises(InputError, match="bytes") as ei:
        encode_text_only("x" * 200, 8, small)
    assert ei.value.index == 8 and ei.value.field == "text"
    # exactly at the budget is fine: {"text":"..."} is 11 bytes of overhead
    assert encode_text_only("x" * 89, 0, small).size == 100
    with pytest.raises(InputError):
        encode_text_only("x" * 90, 0, small)


def test_content_repr_is_short() -> None:
    r = repr(Content(text="y" * 100, image=b"\x00" * 5000))
    assert "<5000 bytes>" in r and len(r) < 120


@pytest.mark.parametrize("downscale", [False, True])
def test_a_text_over_the_budget_beside_an_image_is_the_texts_fault(downscale: bool) -> None:
    """Not the image's (whose advice cannot help), and no shrinking to a budget the text
    has already spent."""
    small = EncodeOptions(
        model=model_info("ops-gme-qwen2-vl-2b-instruct"),
        max_item_bytes=100,
        downscale_oversized=downscale,
    )
    for image in (URL, PNG_URI):
        with pytest.raises(InputError, match="bytes") as ei:
            encode_content({"text": "x" * 200, "image": image}, 4, small)
        assert ei.value.index == 4 and ei.value.field == "text"
        assert "downscale" not in str(ei.value)
