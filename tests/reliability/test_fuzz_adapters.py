"""Hostile inputs on every public entry point of the LangChain and LlamaIndex adapters.

Each call embeds or raises InputError naming the input; no other exception type escapes,
and no request is sent for an invalid input.
"""

from __future__ import annotations

import asyncio
import copy
import io
import pickle
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from langchain_opensearch_mm import OpenSearchMultiModalEmbeddings
from llamaindex_opensearch_mm import OpenSearchMultiModalEmbedding
from opensearch_mm import Content, InputError
from opensearch_mm.emulator import Emulator
from tests.support.images import tiny_png

from .conftest import API_KEY, make_client
from .test_fuzz import _contents, _image_values, non_strings, texts

DATA = Path(__file__).resolve().parents[1] / "support" / "data"

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def server() -> Iterator[Emulator]:
    with Emulator(api_key=API_KEY, qps=None, latency_ms=0, log_size=10) as emu:
        yield emu


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Any]:
    """The core fuzz suite's valid and hostile image values (same files)."""
    d = tmp_path_factory.mktemp("fuzz_adapters")
    shutil.copy(DATA / "red.png", d / "good.png")
    png = (d / "good.png").read_bytes()
    jpg = (DATA / "red.jpg").read_bytes()
    (d / "truncated.png").write_bytes(png[: len(png) // 2])
    (d / "truncated.jpg").write_bytes(jpg[:-40])
    (d / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 20)
    (d / "empty.png").write_bytes(b"")
    (d / "text.png").write_text("not an image at all")
    (d / "a_directory").mkdir()
    return _image_values({"dir": d, "png": png, "jpg": jpg})


@pytest.fixture(scope="module")
def langchain(server: Emulator) -> Iterator[OpenSearchMultiModalEmbeddings]:
    emb = OpenSearchMultiModalEmbeddings(
        api_key=API_KEY, endpoint=server.url, qps=None, timeout=5.0, max_retries=2
    )
    yield emb
    emb.close()


@pytest.fixture(scope="module")
def llamaindex(server: Emulator) -> Iterator[OpenSearchMultiModalEmbedding]:
    client = make_client(server.url)
    emb = OpenSearchMultiModalEmbedding(client=client)
    yield emb
    client.close()


def _rewind(values: list[Any]) -> None:
    for value in values:
        if isinstance(value, io.IOBase):
            value.seek(0)


def _check(server: Emulator, values: list[Any], call: Callable[[list[Any]], list[Any]]) -> None:
    """``call(values)`` embeds all of them, or raises InputError naming one, sending nothing."""
    _rewind(values)
    before = server.stats.requests
    try:
        vectors = call(values)
    except InputError as exc:
        assert exc.index is not None and 0 <= exc.index < len(values), exc
        assert str(exc).startswith(f"input {exc.index}")
        assert server.stats.requests == before, "a request was sent for an invalid input"
        return
    assert len(vectors) == len(values)
    assert all(len(v) == 768 for v in vectors)


def _one(call: Callable[[Any], list[float]]) -> Callable[[list[Any]], list[Any]]:
    """A single-input entry point as a list call of one input."""
    return lambda values: [call(values[0])]


text_lists = st.lists(st.one_of(texts, non_strings), max_size=6)
one_text = st.lists(st.one_of(texts, non_strings), min_size=1, max_size=1)


# -- LangChain ------------------------------------------------------------------------------


def test_langchain_texts(server: Emulator, langchain: OpenSearchMultiModalEmbeddings) -> None:
    @SETTINGS
    @given(text_lists, one_text)
    def run(values: list[Any], single: list[Any]) -> None:
        _check(server, values, langchain.embed_documents)
        _check(server, values, lambda v: asyncio.run(langchain.aembed_documents(v)))
        _check(server, single, _one(langchain.embed_query))
        _check(server, single, _one(lambda q: asyncio.run(langchain.aembed_query(q))))

    run()


def test_langchain_images(
    server: Emulator, langchain: OpenSearchMultiModalEmbeddings, images: list[Any]
) -> None:
    @SETTINGS
    @given(st.lists(st.sampled_from(images), max_size=5))
    def run(values: list[Any]) -> None:
        _check(server, values, langchain.embed_image)
        _check(server, values, lambda v: asyncio.run(langchain.aembed_image(v)))

    run()


def test_langchain_multimodal(
    server: Emulator, langchain: OpenSearchMultiModalEmbeddings, images: list[Any]
) -> None:
    @SETTINGS
    @given(st.lists(_contents(st.sampled_from(images)), max_size=6))
    def run(values: list[Any]) -> None:
        _check(server, values, langchain.embed_multimodal)
        _check(server, values, lambda v: asyncio.run(langchain.aembed_multimodal(v)))

    run()


# -- LlamaIndex -----------------------------------------------------------------------------


def test_llamaindex_texts(server: Emulator, llamaindex: OpenSearchMultiModalEmbedding) -> None:
    @SETTINGS
    @given(text_lists, one_text)
    def run(values: list[Any], single: list[Any]) -> None:
        _check(server, values, llamaindex.get_text_embedding_batch)
        _check(server, values, lambda v: asyncio.run(llamaindex.aget_text_embedding_batch(v)))
        _check(server, single, _one(llamaindex.get_query_embedding))
        _check(server, single, _one(lambda q: asyncio.run(llamaindex.aget_query_embedding(q))))
        _check(server, single, _one(llamaindex.get_text_embedding))

    run()


def test_llamaindex_images(
    server: Emulator, llamaindex: OpenSearchMultiModalEmbedding, images: list[Any]
) -> None:
    # ImageType is str | BytesIO; paths as str, BytesIO, and every other hostile value.
    as_str = [str(v) if isinstance(v, Path) else v for v in images]

    @SETTINGS
    @given(st.lists(st.sampled_from(as_str), max_size=5))
    def run(values: list[Any]) -> None:
        _check(server, values, llamaindex.get_image_embedding_batch)
        _check(server, values, lambda v: asyncio.run(llamaindex.aget_image_embedding_batch(v)))
        if values:
            _check(server, values[:1], _one(llamaindex.get_image_embedding))

    run()


def test_llamaindex_bytesio_position_does_not_matter(
    server: Emulator, llamaindex: OpenSearchMultiModalEmbedding
) -> None:
    png = (DATA / "red.png").read_bytes()
    read = io.BytesIO(png)
    read.read()  # at the end: a core file object would read nothing from here
    fresh = io.BytesIO(png)
    a, b = llamaindex.get_image_embedding_batch([read, fresh])
    assert a == b and read.tell() == len(png)
    with pytest.raises(InputError, match=r"^input 1 \(image\)"):
        llamaindex.get_image_embedding_batch([fresh, io.BytesIO(png[:30])])
    closed = io.BytesIO(png)
    closed.close()
    with pytest.raises(InputError, match=r"^input 2 \(image\)"):
        llamaindex.get_image_embedding_batch([fresh, fresh, closed])


# -- a single value where a list is expected ------------------------------------------------

NOT_A_LIST: list[Any] = [
    "a string",
    b"bytes",
    Content(text="x"),
    {"text": "x"},
    None,
    42,
    io.BytesIO(b"an open file\nof two lines"),  # (iterable: its lines were taken for inputs)
]


@pytest.mark.parametrize("not_a_list", NOT_A_LIST, ids=repr)
def test_a_single_value_instead_of_a_list(
    server: Emulator,
    langchain: OpenSearchMultiModalEmbeddings,
    llamaindex: OpenSearchMultiModalEmbedding,
    not_a_list: Any,
) -> None:
    before = server.stats.requests
    calls: list[Callable[[], Any]] = [
        lambda: langchain.embed_documents(not_a_list),
        lambda: asyncio.run(langchain.aembed_documents(not_a_list)),
        lambda: langchain.embed_image(not_a_list),
        lambda: asyncio.run(langchain.aembed_image(not_a_list)),
        lambda: langchain.embed_multimodal(not_a_list),
        lambda: asyncio.run(langchain.aembed_multimodal(not_a_list)),
        # LlamaIndex iterates a batch argument before the adapter sees it ("abc" would be
        # three one-character texts, None a TypeError): the adapter refuses non-lists first.
        lambda: llamaindex.get_text_embedding_batch(not_a_list),
        lambda: asyncio.run(llamaindex.aget_text_embedding_batch(not_a_list)),
        lambda: llamaindex.get_image_embedding_batch(not_a_list),
        lambda: asyncio.run(llamaindex.aget_image_embedding_batch(not_a_list)),
    ]
    for call in calls:
        with pytest.raises(InputError, match="takes a list of"):
            call()
    assert server.stats.requests == before


@pytest.mark.parametrize("bad", [None, 42, "   "], ids=repr)
def test_llamaindex_batch_names_the_position_in_the_whole_batch_and_sends_nothing(
    server: Emulator, llamaindex: OpenSearchMultiModalEmbedding, bad: Any
) -> None:
    """The whole batch goes to the core at once: an invalid text at position 40 is
    reported as input 40, before any request (sync and async, texts and images)."""
    values: list[Any] = [f"text {i}" for i in range(45)]
    values[40] = bad
    before = server.stats.requests
    with pytest.raises(InputError, match=r"^input 40\b") as info:
        llamaindex.get_text_embedding_batch(values)
    assert info.value.index == 40
    with pytest.raises(InputError, match=r"^input 40\b"):
        asyncio.run(llamaindex.aget_text_embedding_batch(values))
    images: list[Any] = [io.BytesIO(tiny_png("red")) for _ in range(45)]
    images[40] = io.BytesIO(b"not an image")
    with pytest.raises(InputError, match=r"^input 40\b"):
        llamaindex.get_image_embedding_batch(images)
    with pytest.raises(InputError, match=r"^input 40\b"):
        asyncio.run(llamaindex.aget_image_embedding_batch(images))
    assert server.stats.requests == before


# -- settings: a field never disagrees with the core client ---------------------------------

_MODELS = ["ops-m2-encoder", "ops-m2-encoder-large", "ops-gme-qwen2-vl-2b-instruct"]
_SETTING_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "model": st.sampled_from(_MODELS),
    "workspace": st.sampled_from(["default", "ws1", "team-b"]),
    "timeout": st.floats(min_value=0.5, max_value=120),
    "max_retries": st.integers(min_value=0, max_value=10),
    "max_concurrency": st.integers(min_value=1, max_value=32),
    "qps": st.one_of(st.none(), st.just("adaptive"), st.floats(min_value=0.5, max_value=500)),
    "image_max_side": st.one_of(st.none(), st.integers(min_value=16, max_value=4096)),
    "downscale_oversized": st.booleans(),
}
_settings = st.fixed_dictionaries({}, optional=_SETTING_VALUES)


def _agrees(adapter: Any) -> None:
    client = adapter.client
    model = getattr(adapter, "model", None) or adapter.model_name
    assert client.model == model
    assert client.url.endswith(f"/workspaces/{adapter.workspace}/multi-modal-embedding/{model}")
    assert client.timeout == adapter.timeout
    assert client.retry_policy.max_retries == adapter.max_retries
    assert client.max_concurrency == adapter.max_concurrency
    assert client.encode_options.image_max_side == adapter.image_max_side
    assert client.encode_options.downscale_oversized == adapter.downscale_oversized
    rate = client.rate_limiter.rate
    if adapter.qps is None:
        assert rate is None
    elif adapter.qps != "adaptive":
        assert rate == adapter.qps


@SETTINGS
@given(first=_settings, second=_settings)
def test_fields_and_core_client_agree_after_any_construction_copy_or_change(
    first: dict[str, Any], second: dict[str, Any]
) -> None:
    base: dict[str, Any] = {"api_key": API_KEY, "endpoint": "https://fuzz.invalid"}
    lc = OpenSearchMultiModalEmbeddings(**base, **first)
    li = OpenSearchMultiModalEmbedding(**base, **first)
    for adapter in (lc, li):
        _agrees(adapter)
        _agrees(adapter.model_copy(update=second))
        _agrees(pickle.loads(pickle.dumps(adapter)))
        _agrees(copy.deepcopy(adapter))
    for name, value in second.items():  # LlamaIndex fields are assignable
        setattr(li, name, value)
        _agrees(li)
