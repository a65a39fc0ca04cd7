"""Request-body validation for the emulator (the documented contract, checked strictly)."""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson
import pybase64

__all__ = ["MAX_BODY_BYTES", "MAX_INPUTS", "InputItem", "RequestError", "parse_body"]

MAX_INPUTS = 32
MAX_BODY_BYTES = 8 * 1024 * 1024

_DATA_URI_RE = re.compile(r"data:image/([A-Za-z0-9.+-]+);base64,(.*)", re.DOTALL)


class RequestError(Exception):
    """An ``InvalidParameter`` problem with the request body."""


@dataclass(frozen=True)
class InputItem:
    text: str | None
    image: str | None


def sniff_image(data: bytes) -> str | None:
    """The image format named by ``data``'s magic bytes, or ``None``."""
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data.startswith(b"BM"):
        return "bmp"
    if data.startswith((b"II*\x00", b"MM\x00*")):
        return "tiff"
    return None


def _check_image(value: str, where: str) -> None:
    lowered = value[:8].lower()
    if lowered.startswith(("http://", "https://")):
        try:
            parts = urlsplit(value)
        except ValueError:
            parts = None
        if parts is None or not parts.netloc or any(c.isspace() for c in value):
            raise RequestError(f"{where}: not a valid http(s) URL")
        host = (parts.hostname or "").rstrip(".")
        if host == "invalid" or host.endswith(".invalid"):
            # The service downloads URL images; the emulator fetches nothing, but a host
            # under ".invalid" never resolves anywhere (RFC 6761): a link that fails.
            raise RequestError(f"{where}: cannot download the image at {host}")
        return
    m = _DATA_URI_RE.fullmatch(value)
    if m is None:
        raise RequestError(f"{where}: not a URL or a data:image base64 URI")
    try:
        data = pybase64.b64decode(m.group(2), validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(f"{where}: invalid base64 image data") from None
    if not data:
        raise RequestError(f"{where}: empty image data")
    if sniff_image(data) is None:
        raise RequestError(f"{where}: data is not a supported image (jpeg/png/gif/webp/bmp/tiff)")


def _check_item(obj: Any, i: int) -> InputItem:
    where = f"input[{i}]"
    if not isinstance(obj, dict):
        raise RequestError(f"{where}: must be an object with 'text' and/or 'image'")
    text = obj.get("text")
    image = obj.get("image")
    if text is not None and not isinstance(text, str):
        raise RequestError(f"{where}.text: must be a string")
    if image is not None and not isinstance(image, str):
        raise RequestError(f"{where}.image: must be a string")
    if text is None and image is None:
        raise RequestError(f"{where}: needs 'text' or 'image'")
    if text is not None and text == "":
        raise RequestError(f"{where}.text: must not be empty")
    if image is not None:
        if image == "":
            raise RequestError(f"{where}.image: must not be empty")
        _check_image(image, f"{where}.image")
    return InputItem(text, image)


def parse_body(body: bytes) -> list[InputItem]:
    """Parse and validate one request body; raise :class:`RequestError` on any problem."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise RequestError(f"JSON parse error: {exc}") from None
    if not isinstance(doc, dict):
        raise RequestError("JSON parse error: the request body must be a JSON object")
    options = doc.get("options")
    if options is not None and not isinstance(options, dict):
        raise RequestError("options: must be an object")
    if "input" not in doc or doc["input"] is None:
        raise RequestError("input: required parameter missing")
    raw = doc["input"]
    if not isinstance(raw, list):
        raise RequestError("input: must be a list of content objects")
    if not raw:
        raise RequestError("input: must contain at least 1 item")
    if len(raw) > MAX_INPUTS:
        raise RequestError(f"input: at most {MAX_INPUTS} items per request, got {len(raw)}")
    return [_check_item(obj, i) for i, obj in enumerate(raw)]
