"""A text input that is plainly binary data (an image file read as text) is refused,
naming the input and saying to pass it as an image: nothing is sent for it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from opensearch_mm import InputError, MultiModalEmbeddingClient
from opensearch_mm.emulator import Emulator
from opensearch_mm.inputs import EncodeOptions, encode_content, encode_text_only
from opensearch_mm.models import model_info

DATA = Path(__file__).resolve().parents[1] / "support" / "data"
OPTIONS = EncodeOptions(model=model_info("ops-m2-encoder"), max_item_bytes=8_000_000)
KEY = "binary-text-key"


def _as_text(raw: bytes) -> dict[str, str]:
    """The ways a program turns a file's bytes into a str."""
    return {
        "latin-1": raw.decode("latin-1"),
        "surrogateescape": raw.decode("utf-8", "surrogateescape"),
        "ignore": raw.decode("utf-8", "ignore"),
        "replace": raw.decode("utf-8", "replace"),
    }


@pytest.mark.parametrize("name", ["red.png", "blue.jpg"])
def test_image_files_read_as_text_are_refused_whatever_the_decoding(name: str) -> None:
    for how, text in _as_text((DATA / name).read_bytes()).items():
        with pytest.raises(InputError) as info:
            encode_text_only(text, 3, OPTIONS)
        err = info.value
        assert (err.index, err.field) == (3, "text"), how
        assert "pass it as an image" in str(err) and str(err).startswith("input 3 (text)"), how


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("GIF89a\x01\x00\x01\x00\x80", "GIF"),
        ("RIFF\x1a\x00\x00\x00WEBPVP8 ", "WebP"),
        ("\x89PNG\r\n\x1a\n", "PNG"),
        ("\xff\xd8\xff\xe0", "JPEG"),
        ("plain words\x00 with a NUL", "NUL"),
    ],
)
def test_signatures_and_nul(text: str, why: str) -> None:
    with pytest.raises(InputError, match=why):
        encode_content({"text": text}, 0, OPTIONS)


@pytest.mark.parametrize(
    "text",
    [
        "PNG files are images",
        "GIF89 is a format",
        "GIF89a is the GIF version that added animation.",
        "GIF87a\n\tthe first version",
        "RIFF WEBP",
        "RIFFxxxxWEBP names a WebP container",
        "ÿØÿ in Latin-1 prose",
        "日本語",
    ],
)
def test_ordinary_texts_pass(text: str) -> None:
    assert encode_text_only(text, 0, OPTIONS).data


def _gif(width: int, height: int, flags: int) -> bytes:
    """A GIF header: its screen size, flags, background colour and aspect bytes."""
    return b"GIF89a" + bytes([width & 255, width >> 8, height & 255, height >> 8, flags, 0, 0])


def _webp(size: int) -> bytes:
    return b"RIFF" + size.to_bytes(4, "little") + b"WEBPVP8 "


@pytest.mark.parametrize(
    "raw",
    [
        _gif(16, 16, 0xF7),
        _gif(640, 480, 0xF7),
        _webp(0x1A2),
        _webp(0x2E2E2E),
    ],
)
def test_gif_and_webp_headers_read_as_text_are_refused_whatever_the_decoding(raw: bytes) -> None:
    for text in _as_text(raw).values():
        with pytest.raises(InputError, match=r"starts like a (GIF|WebP) image file"):
            encode_text_only(text, 0, OPTIONS)


def test_nothing_is_sent_for_a_call_holding_one() -> None:
    with (
        Emulator(api_key=KEY) as emu,
        MultiModalEmbeddingClient(api_key=KEY, endpoint=emu.url, qps=None) as client,
    ):
        png = (DATA / "red.png").read_bytes().decode("latin-1")
        with pytest.raises(InputError, match=r"input 1 \(text\)"):
            client.embed_texts(["fine", png, "fine too"])
        assert emu.stats.requests == 0


def test_llamaindex_simple_directory_reader_on_images_is_caught(tmp_path: Path) -> None:
    """Many tutorials start here: with llama-index-core alone, the reader loads a folder
    of PNG/JPEG files as text documents full of binary data."""
    core = pytest.importorskip("llama_index.core")
    from llamaindex_opensearch_mm import OpenSearchMultiModalEmbedding

    for name in ("red.png", "blue.jpg"):
        shutil.copy(DATA / name, tmp_path / name)
    documents = core.SimpleDirectoryReader(str(tmp_path)).load_data()
    texts = [d.get_content() for d in documents]
    assert len(texts) == 2
    with Emulator(api_key=KEY) as emu:
        embedding = OpenSearchMultiModalEmbedding(api_key=KEY, endpoint=emu.url, qps=None)
        try:
            with pytest.raises(InputError, match="pass it as an image"):
                embedding.get_text_embedding_batch(texts)
        finally:
            embedding.close()
        assert emu.stats.requests == 0
