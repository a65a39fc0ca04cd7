"""User inputs: the accepted shapes, validation, and their wire encoding.

Every input is checked and encoded before anything is sent, so an invalid input never
costs a request and the error names its index.
"""

from __future__ import annotations

import io
import os
from collections.abc import AsyncIterable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

import orjson

from .errors import InputError
from .models import ModelInfo

if TYPE_CHECKING:
    from .images import ImageInput

__all__ = [
    "Content",
    "ContentLike",
    "EncodeOptions",
    "WireItem",
    "encode_content",
    "encode_image_only",
    "encode_text_only",
    "require_many",
]


@dataclass(frozen=True)
class Content:
    """One input: a text, an image, or (on models that allow it) both.

    ``image`` is a local path, ``bytes``, a binary file object, a ``PIL.Image.Image``,
    an http(s) URL or a ``data:image/...;base64,`` URI.
    """

    text: str | None = None
    image: ImageInput | None = None

    def __repr__(self) -> str:
        parts = []
        if self.text is not None:
            text = self.text if len(self.text) <= 40 else self.text[:37] + "..."
            parts.append(f"text={text!r}")
        if self.image is not None:
            parts.append(f"image={_describe_image(self.image)}")
        return f"Content({', '.join(parts)})"


ContentLike: TypeAlias = "Content | str | Mapping[str, Any]"


@dataclass(frozen=True)
class EncodeOptions:
    """How inputs are encoded for one client."""

    model: ModelInfo
    max_item_bytes: int
    image_max_side: int | None = None
    downscale_oversized: bool = False


@dataclass(frozen=True)
class WireItem:
    """One input encoded as the JSON object the API takes (``{"text":..,"image":..}``)."""

    index: int
    data: bytes
    has_image: bool

    @property
    def size(self) -> int:
        return len(self.data)


def _describe_image(image: object) -> str:
    if isinstance(image, str):
        return repr(image if len(image) <= 60 else image[:57] + "...")
    if isinstance(image, os.PathLike):
        return repr(os.fspath(image))
    if isinstance(image, (bytes, bytearray, memoryview)):
        return f"<{len(image)} bytes>"
    return f"<{type(image).__name__}>"


# How the first bytes of an image file look once read as text: decoded as Latin-1 (or
# bytes as code points), with undecodable bytes escaped (surrogateescape), dropped
# (errors="ignore") or replaced (U+FFFD).
_IMAGE_SIGNATURES: tuple[tuple[str, str], ...] = tuple(
    (prefix, kind)
    for kind, variants in (
        (
            "PNG",
            ("\x89PNG\r\n\x1a\n", "\udc89PNG\r\n\x1a\n", "\ufffdPNG\r\n\x1a\n", "PNG\r\n\x1a\n"),
        ),
        ("JPEG", ("\udcff\udcd8\udcff",)),
    )
    for prefix in variants
)


def _unprintable(chars: str) -> bool:
    """Whether ``chars`` hold one that no prose does: a control character other than
    tab and line breaks, or a byte left undecoded (escaped) or replaced."""
    return any(
        (ch < " " and ch not in "\t\n\r")
        or "\x7f" <= ch <= "\x9f"
        or "\udc80" <= ch <= "\udcff"
        or ch == "\ufffd"
        for ch in chars
    )


def _binary_kind(text: str) -> str | None:
    """What makes ``text`` plainly binary data rather than text, if anything."""
    for prefix, kind in _IMAGE_SIGNATURES:
        if text.startswith(prefix):
            return f"starts like a {kind} image file"
    if text.startswith("\xff\xd8\xff") and text[3:4] >= "\xc0":  # a JPEG marker follows
        return "starts like a JPEG image file"
    # GIF and WebP signatures are words prose can start with ("GIF89a is ..."): the file's
    # binary header fields must follow (a GIF's screen size and flags; a WebP's RIFF size,
    # some of whose bytes a decoding that drops undecodable ones may have left out).
    if text.startswith(("GIF87a", "GIF89a")) and _unprintable(text[6:13]):
        return "starts like a GIF image file"
    webp = text.find("WEBP", 4, 16) if text.startswith("RIFF") else -1
    if webp >= 0 and _unprintable(text[4:webp]):
        return "starts like a WebP image file"
    if "\x00" in text:
        return "holds NUL characters, as binary files do"
    return None


def _check_text(text: object, index: int) -> str:
    if not isinstance(text, str):
        raise InputError(
            f"text must be a str, got {type(text).__name__}", index=index, field="text"
        )
    binary = _binary_kind(text)
    if binary is not None:
        raise InputError(
            f"text {binary}: it looks like a file read as text; if it is an image, pass it "
            "as an image (a path, bytes or a URL), not as text",
            index=index,
            field="text",
        )
    if not text.strip():
        raise InputError("text is empty", index=index, field="text")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(
            f"text is not valid Unicode (lone surrogate at position {exc.start})",
            index=index,
            field="text",
        ) from None
    return text


def _encode_image(image: object, index: int, options: EncodeOptions) -> str:
    from .images import encode_image

    return encode_image(image, index=index, max_side=options.image_max_side)


def _finish(obj: dict[str, str], index: int, options: EncodeOptions) -> WireItem:
    data = orjson.dumps(obj)
    if len(data) > options.max_item_bytes:
        image = obj.get("image")
        # (The text alone over the limit is the text's fault, whatever the image.)
        rest = len(data) - len(image) if image is not None else len(data)
        text_over = image is None or rest > options.max_item_bytes
        if image is not None and not text_over and options.downscale_oversized:
            from .images import shrink_data_uri

            if image.startswith("data:"):
                budget = options.max_item_bytes - rest
                obj = {**obj, "image": shrink_data_uri(image, max_bytes=budget, index=index)}
                data = orjson.dumps(obj)
        if len(data) > options.max_item_bytes:
            field = "text" if text_over else "image"
            hint = (
                "; pass downscale_oversized=True or image_max_side=... to shrink images"
                if field == "image"
                else ""
            )
            raise InputError(
                f"encodes to {len(data):,} bytes but one request body holds at most "
                f"{options.max_item_bytes:,} bytes of input{hint}",
                index=index,
                field=field,
            )
    return WireItem(index, data, "image" in obj)


def encode_text_only(value: object, index: int, options: EncodeOptions) -> WireItem:
    """Encode an item of ``embed_texts``."""
    return _finish({"text": _check_text(value, index)}, index, options)


def encode_image_only(value: object, index: int, options: EncodeOptions) -> WireItem:
    """Encode an item of ``embed_images``."""
    if value is None:
        raise InputError("image is None", index=index, field="image")
    return _finish({"image": _encode_image(value, index, options)}, index, options)


def encode_content(value: object, index: int, options: EncodeOptions) -> WireItem:
    """Encode an item of ``embed``: a ``Content``, a ``str`` (text) or a mapping."""
    if isinstance(value, str):
        return encode_text_only(value, index, options)
    if isinstance(value, Content):
        text, image = value.text, value.image
    elif isinstance(value, Mapping):
        unknown = set(value) - {"text", "image"}
        if unknown:
            raise InputError(
                f"unknown key(s) {sorted(map(str, unknown))}; an input has 'text' and/or 'image'",
                index=index,
            )
        text, image = value.get("text"), value.get("image")
    else:
        raise InputError(
            f"expected Content, str or a dict with 'text'/'image', got {type(value).__name__}",
            index=index,
        )
    if text is None and image is None:
        raise InputError("input has neither text nor image", index=index)
    if text is not None and image is not None and not options.model.combined_input:
        raise InputError(
            f"model {options.model.service_id!r} ignores the image when text and image share "
            "one input; send them as separate inputs, or use a model that combines them "
            "(ops-gme-qwen2-vl-2b-instruct, ops-mm-embedding-v1-2b)",
            index=index,
            field="image",
        )
    obj: dict[str, str] = {}
    if text is not None:
        obj["text"] = _check_text(text, index)
    if image is not None:
        obj["image"] = _encode_image(image, index, options)
    return _finish(obj, index, options)


def require_many(values: object, method: str, what: str) -> None:
    """Refuse a single value where a collection of inputs is expected.

    A lone ``str`` would otherwise be embedded character by character, a lone path,
    ``Content`` or open file iterated (a file by its lines) or misread: :class:`InputError`
    naming ``method`` instead.
    """
    single = (str, bytes, bytearray, memoryview, Content, Mapping, os.PathLike, io.IOBase)
    if isinstance(values, single):
        raise InputError(
            f"{method}() takes a list of {what}, not a single {type(values).__name__}; "
            "wrap it in a list"
        )
    if not isinstance(values, (Iterable, AsyncIterable)):
        raise InputError(f"{method}() takes a list of {what}, got {type(values).__name__}")
