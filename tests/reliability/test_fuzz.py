"""Hostile inputs on every public entry point: each embeds or raises InputError naming it.

No other exception type escapes, and nothing invalid is ever sent.
"""

from __future__ import annotations

import asyncio
import io
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opensearch_mm import Content, InputError, MultiModalEmbeddingClient
from opensearch_mm.emulator import Emulator

from .conftest import API_KEY, make_client

DATA = Path(__file__).resolve().parents[1] / "support" / "data"


@pytest.fixture(scope="module")
def server() -> Iterator[Emulator]:
    with Emulator(api_key=API_KEY, qps=None, latency_ms=0, log_size=10) as emu:
        yield emu


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("fuzz")
    good = d / "good.png"
    shutil.copy(DATA / "red.png", good)
    png = good.read_bytes()
    (d / "truncated.png").write_bytes(png[: len(png) // 2])
    jpg = (DATA / "red.jpg").read_bytes()
    (d / "truncated.jpg").write_bytes(jpg[:-40])
    (d / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 20)
    (d / "empty.png").write_bytes(b"")
    (d / "text.png").write_text("not an image at all")
    (d / "a_directory").mkdir()
    return {"dir": d, "png": png, "jpg": jpg}


def _image_values(files: dict[str, Any]) -> list[Any]:
    d: Path = files["dir"]
    png: bytes = files["png"]
    big_payload = "A" * 9_000_000
    return [
        # valid
        d / "good.png",
        str(d / "good.png"),
        png,
        bytearray(png),
        io.BytesIO(png),
        "https://example.com/cat.jpg",
        # invalid
        d / "truncated.png",
        d / "truncated.jpg",
        d / "corrupt.png",
        d / "empty.png",
        d / "text.png",
        d / "a_directory",
        str(d / "a_directory"),
        d / "missing.png",
        "file:///etc/passwd",
        "ftp://example.com/x.png",
        "javascript:alert(1)",
        "http://",
        "https:// example.com/x.png",
        "data:image/png;base64,!!!notbase64",
        "data:image/png;base64," + big_payload,
        "data:text/html;base64,PGI+",
        "",
        "   ",
        "\ud800.png",
        "C\x00.png",
        png[:20],
        b"",
        b"GIF89a",
        io.StringIO("text"),
        None,
        42,
        3.5,
        ["nested"],
        {"image": "x"},
        object(),
    ]


HUGE_TEXT = "x" * 9_000_000
ODD_TEXTS = [
    "",
    " ",
    "\n\t",
    "\ud800",
    "a\udfffb",
    "\x00",
    "\u200b",
    "\ufeff",
    "🙂" * 10,
    "e\u0301",
    "\U0010ffff",
    "A" * 100_000,
    HUGE_TEXT,
]
NON_STRINGS: list[Any] = [None, 0, 1.5, b"bytes", ["a"], ("a",), {"text": 1}, object(), True]

texts = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF, categories=None)),
    st.sampled_from(ODD_TEXTS),
)
non_strings = st.sampled_from(NON_STRINGS)


def _contents(images: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        texts,
        non_strings,
        images.map(lambda image: Content(image=image)),
        st.builds(Content, text=st.one_of(st.none(), texts), image=st.one_of(st.none(), images)),
        st.fixed_dictionaries({"text": st.one_of(texts, non_strings)}),
        st.fixed_dictionaries({"image": images}),
        st.dictionaries(st.sampled_from(["text", "image", "txt", "img"]), texts, max_size=3),
    )


def _check(
    server: Emulator,
    values: list[Any],
    call: Callable[[list[Any]], list[Any]],
    streaming: bool = False,
) -> None:
    before = server.stats
    try:
        vectors = call(values)
    except InputError as exc:
        assert exc.index is not None and 0 <= exc.index < len(values)
        assert f"input {exc.index}" in str(exc)
        # Nothing invalid was sent: nothing at all for a list call; for a stream, at most
        # the inputs before the invalid one.
        sent = server.stats.inputs_embedded - before.inputs_embedded
        assert sent <= exc.index if streaming else sent == 0
        return
    assert len(vectors) == len(values)
    assert all(len(v) == 768 for v in vectors)


SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _entry_points(client: MultiModalEmbeddingClient) -> dict[str, Callable[[list[Any]], Any]]:
    async def collect(values: list[Any]) -> list[Any]:
        return [v async for v in client.aembed_iter(values)]

    return {
        "embed": lambda v: client.embed(v).embeddings,
        "embed_iter": lambda v: list(client.embed_iter(iter(v))),
        "aembed": lambda v: asyncio.run(client.aembed(v)).embeddings,
        "aembed_iter": lambda v: asyncio.run(collect(v)),
    }


@pytest.mark.parametrize("entry", ["embed", "embed_iter", "aembed", "aembed_iter"])
def test_mixed_hostile_lists(server: Emulator, files: dict[str, Any], entry: str) -> None:
    images = st.sampled_from(_image_values(files))
    client = make_client(server.url)
    call = _entry_points(client)[entry]

    @SETTINGS
    @given(st.lists(_contents(images), max_size=6))
    def run(values: list[Any]) -> None:
        _check(server, values, call, streaming=entry.endswith("_iter"))

    try:
        run()
    finally:
        client.close()


def test_embed_texts_hostile(server: Emulator) -> None:
    with make_client(server.url) as client:

        @SETTINGS
        @given(st.lists(st.one_of(texts, non_strings), max_size=6))
        def run(values: list[Any]) -> None:
            _check(server, values, client.embed_texts)
            _check(server, values, lambda v: asyncio.run(client.aembed_texts(v)))

        run()


def test_embed_images_hostile(server: Emulator, files: dict[str, Any]) -> None:
    with make_client(server.url) as client:

        @SETTINGS
        @given(st.lists(st.sampled_from(_image_values(files)), max_size=5))
        def run(values: list[Any]) -> None:
            for value in values:
                if isinstance(value, io.IOBase):
                    value.seek(0)
            _check(server, values, client.embed_images)
            for value in values:
                if isinstance(value, io.IOBase):
                    value.seek(0)
            _check(server, values, lambda v: asyncio.run(client.aembed_images(v)))

        run()


@pytest.mark.parametrize(
    "not_a_list", ["a string", b"bytes", Content(text="x"), {"text": "x"}, None, 42, Path("x")]
)
def test_a_single_value_instead_of_a_list(server: Emulator, not_a_list: Any) -> None:
    before = server.stats.requests
    with make_client(server.url) as client:
        calls: list[Callable[[], Any]] = [
            lambda: client.embed(not_a_list),
            lambda: client.embed_texts(not_a_list),
            lambda: client.embed_images(not_a_list),
            lambda: list(client.embed_iter(not_a_list)),
            lambda: asyncio.run(client.aembed(not_a_list)),
            lambda: asyncio.run(client.aembed_texts(not_a_list)),
        ]
        for call in calls:
            with pytest.raises(InputError):
                call()
    assert server.stats.requests == before
