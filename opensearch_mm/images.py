"""Image inputs -> the string the API takes in ``ContentObject.image``.

The service accepts an ``http(s)://`` URL or ``data:image/{format};base64,{payload}``.
:func:`encode_image` turns every accepted :data:`ImageInput` into one of those, validating
on the way so that a broken image fails locally (as :class:`~opensearch_mm.errors.InputError`)
instead of costing a request:

* the format always comes from the bytes (magic numbers), never from a file name;
* truncation is detected from raw bytes: a JPEG must reach its EOI marker, a PNG its
  ``IEND`` chunk, a WebP its RIFF size, a BMP its pixel array, a TIFF its first IFD
  (GIF is not checked: many valid GIFs lack the trailer byte);
* Pillow is optional (extra ``images``) and imported lazily; it is needed only for
  ``max_side`` downscaling, :func:`shrink_data_uri`, ``PIL.Image.Image`` inputs and the
  opt-in :data:`VERIFY_WITH_PILLOW` check.

Error messages name the input index, the path (cut to ~80 characters), the limit or the
format, and never contain image bytes or a data URI's payload.
"""

from __future__ import annotations

import io
import math
import os
import re
import sys
import urllib.parse
from typing import TYPE_CHECKING, Any, BinaryIO, TypeAlias, Union, cast

import pybase64

from .errors import ConfigurationError, InputError

if TYPE_CHECKING:
    import PIL.Image

__all__ = [
    "SUPPORTED_FORMATS",
    "VERIFY_WITH_PILLOW",
    "ImageInput",
    "encode_image",
    "is_image_input",
    "pillow_available",
    "require_pillow",
    "shrink_data_uri",
    "sniff_format",
]

ImageInput: TypeAlias = Union[
    str,
    "os.PathLike[str]",
    bytes,
    bytearray,
    memoryview,
    BinaryIO,
    "PIL.Image.Image",
]
"""Everything :func:`encode_image` accepts: a local path (``str`` / ``os.PathLike``),
``bytes``-like data, a binary file object, a ``PIL.Image.Image``, an ``http(s)://`` URL or a
``data:image/...;base64,...`` URI."""

SUPPORTED_FORMATS: frozenset[str] = frozenset({"jpeg", "png", "gif", "webp", "bmp", "tiff"})
"""Formats sent as ``data:image/{format}``. A guess: the API page only names ``jpeg`` and
``png``; the others are what the Qwen2-VL / M2 image loaders (PIL-based) commonly decode."""

VERIFY_WITH_PILLOW: bool = False
"""Opt-in: when true and Pillow is installed, also run ``Image.open(...).verify()`` on every
local image. Off by default: the raw-byte checks already catch truncated JPEG/PNG/WebP and,
measured, ``verify()`` costs more than reading + base64-encoding a typical photo."""

_PILLOW_HINT = "Pillow is required for this; install it with: pip install 'opensearch-mm[images]'"
_FORMATS_TEXT = ", ".join(sorted(SUPPORTED_FORMATS))
_MAX_SHOWN = 80

_DATA_URI_RE = re.compile(r"data:image/([A-Za-z0-9.+-]{1,40});base64,", re.IGNORECASE)
_SCHEME_RE = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]+:")
_BAD_URL_CHARS_RE = re.compile(r"[\x00-\x20\x7f-\x9f\s]")  # (\s: any Unicode space, a pasted NBSP)
_BASE64_TEXT_RE = re.compile(r"[A-Za-z0-9+/=\r\n]+")
_BMP_DIB_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})
_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_PIL_FORMATS = {
    "jpeg": "JPEG",
    "png": "PNG",
    "gif": "GIF",
    "webp": "WEBP",
    "bmp": "BMP",
    "tiff": "TIFF",
}
_SHRINK_STEPS = 12
_SIXTEEN_BIT = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})

_b64encode_str: Any = getattr(pybase64, "b64encode_as_string", None)


# --------------------------------------------------------------------------- helpers


def _cut(text: str) -> str:
    """``text`` cut to about 80 characters for messages, keeping both ends (a path's
    file name and a URL's last segment are what tell inputs apart)."""
    if len(text) <= _MAX_SHOWN:
        return text
    tail = (_MAX_SHOWN - 3) // 2
    return text[: _MAX_SHOWN - 3 - tail] + "..." + text[-tail:]


def _short(text: str) -> str:
    """:func:`_cut`, quoted when it has edge spaces or unprintable characters (a path
    read with its line break would look like one that exists)."""
    text = _cut(text)
    return text if text.isprintable() and text == text.strip() else repr(text)


def _fail(message: str, index: int) -> InputError:
    return InputError(message, index=index, field="image")


def _to_data_uri(data: bytes, fmt: str) -> str:
    if _b64encode_str is not None:
        payload: str = _b64encode_str(data)
    else:  # pragma: no cover - pybase64 < 1.4
        payload = pybase64.b64encode(data).decode("ascii")
    return f"data:image/{fmt};base64,{payload}"


def pillow_available() -> bool:
    """Whether Pillow can be imported (imports it on first call)."""
    try:
        import PIL.Image  # noqa: F401
    except ImportError:
        return False
    return True


def require_pillow(feature: str = "this feature") -> None:
    """Raise :class:`ConfigurationError` with the install hint if Pillow is missing.

    The client can call it when an option that needs Pillow (``image_max_side``,
    ``downscale_oversized``) is set, to fail at construction instead of at the first image.
    """
    if not pillow_available():
        raise ConfigurationError(f"{feature}: {_PILLOW_HINT}")


def _pil_image_module(feature: str) -> Any:
    try:
        from PIL import Image
    except ImportError as exc:
        raise ConfigurationError(f"{feature}: {_PILLOW_HINT}") from exc
    return Image


def _pil_image_class() -> type | None:
    """``PIL.Image.Image`` if Pillow is already imported (no import is triggered)."""
    module = sys.modules.get("PIL.Image")
    cls = getattr(module, "Image", None) if module is not None else None
    return cls if isinstance(cls, type) else None


# --------------------------------------------------------------------------- sniffing


def sniff_format(data: bytes | bytearray | memoryview) -> str | None:
    """The image format from magic bytes only: one of :data:`SUPPORTED_FORMATS`, or ``None``."""
    if isinstance(data, memoryview):
        view = data if data.format in ("B", "b", "c") and data.ndim == 1 else None
        head = bytes(view[:32]) if view is not None else data.tobytes()[:32]
    else:
        head = bytes(data[:32])
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if head[:8] == _PNG_SIG:
        return "png"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if (
        head[:2] == b"BM"
        and len(head) >= 26
        and int.from_bytes(head[14:18], "little") in _BMP_DIB_SIZES
    ):
        return "bmp"
    return None


def _jpeg_complete(data: bytes) -> bool:
    """Whether the JPEG marker stream reaches EOI (trailing bytes after it are allowed)."""
    if data.rstrip(b"\x00\r\n\t ").endswith(b"\xff\xd9"):
        return True  # fast path: the common, complete file
    n = len(data)
    pos = 2
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= n:
            return False
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:
            return True
        if marker == 0x00 or marker == 0x01 or 0xD0 <= marker <= 0xD7:
            pos += 2  # stuffed byte / standalone marker
            continue
        if pos + 4 > n:
            return False
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if pos > n:
            return False
        if marker == 0xDA:  # start of scan: skip entropy-coded data
            while True:
                ff = data.find(b"\xff", pos)
                if ff < 0 or ff + 1 >= n:
                    return False
                nxt = data[ff + 1]
                if nxt == 0x00 or 0xD0 <= nxt <= 0xD7:
                    pos = ff + 2
                elif nxt == 0xFF:
                    pos = ff + 1
                else:
                    pos = ff
                    break


def _png_complete(data: bytes) -> bool:
    """Whether the PNG chunk list starts with IHDR and reaches IEND within the data."""
    if data[12:16] != b"IHDR":
        return False
    if data.endswith(_PNG_IEND):
        return True
    n = len(data)
    pos = 8
    while pos + 12 <= n:
        end = pos + 12 + int.from_bytes(data[pos : pos + 4], "big")
        if end > n:
            return False
        if data[pos + 4 : pos + 8] == b"IEND":
            return True
        pos = end
    return False


def _complete(data: bytes, fmt: str) -> bool:
    """Cheap raw-byte check that the image is not cut off."""
    if fmt == "jpeg":
        return _jpeg_complete(data)
    if fmt == "png":
        return _png_complete(data)
    if fmt == "webp":
        return len(data) >= 8 + int.from_bytes(data[4:8], "little")
    if fmt == "tiff":
        ifd = int.from_bytes(data[4:8], "little" if data[:2] == b"II" else "big")
        return 8 <= ifd < len(data)
    if fmt == "bmp":
        offset = int.from_bytes(data[10:14], "little")
        if offset >= len(data):
            return False
        if int.from_bytes(data[14:18], "little") >= 40 and len(data) >= 34:
            width = int.from_bytes(data[18:22], "little", signed=True)
            height = int.from_bytes(data[22:26], "little", signed=True)
            bpp = int.from_bytes(data[28:30], "little")
            compression = int.from_bytes(data[30:34], "little")
            if compression == 0 and width > 0 and bpp:
                row = ((bpp * width + 31) // 32) * 4
                return offset + row * abs(height) <= len(data)
        return True
    return True


def _check_bytes(data: bytes, what: str, index: int) -> str:
    """Validate raw image bytes; return the sniffed format. ``what`` names the source."""
    if not data:
        raise _fail(f"{what} is empty", index)
    fmt = sniff_format(data)
    if fmt is None:
        raise _fail(f"{what} is not a supported image ({_FORMATS_TEXT})", index)
    if not _complete(data, fmt):
        raise _fail(f"{what} is a truncated or corrupt {fmt} image", index)
    if VERIFY_WITH_PILLOW and pillow_available():
        _pillow_verify(data, fmt, what, index)
    return fmt


def _pillow_verify(data: bytes, fmt: str, what: str, index: int) -> None:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.verify()
    except Exception as exc:
        raise _fail(
            f"{what} is not a decodable {fmt} image ({type(exc).__name__})", index
        ) from None


# --------------------------------------------------------------------------- Pillow work


def _has_alpha(img: PIL.Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info


def _save(img: PIL.Image.Image, fmt: str, *, quality: int = 90) -> bytes:
    """Encode ``img`` as ``fmt`` (converting the mode when the format needs it)."""
    out = io.BytesIO()
    icc = img.info.get("icc_profile")
    extra: dict[str, Any] = {"icc_profile": icc} if icc else {}
    if fmt == "jpeg":
        if img.mode not in ("RGB", "L", "CMYK"):
            img = img.convert("RGB")
        img.save(out, "JPEG", quality=quality, optimize=True, **extra)
    elif fmt == "png":
        if img.mode not in ("1", "L", "LA", "P", "RGB", "RGBA", "I;16"):
            img = img.convert("RGBA" if _has_alpha(img) else "RGB")
        img.save(out, "PNG", optimize=True, **extra)
    elif fmt == "webp":
        if img.mode not in ("RGB", "RGBA"):
            img = img.convert("RGBA" if _has_alpha(img) else "RGB")
        img.save(out, "WEBP", quality=quality, **extra)
    elif fmt == "bmp":
        if img.mode not in ("1", "L", "P", "RGB", "RGBA"):
            img = img.convert("RGB")
        img.save(out, "BMP")
    elif fmt == "tiff":
        img.save(out, "TIFF", compression="tiff_deflate")
    else:
        img.save(out, _PIL_FORMATS[fmt])
    return out.getvalue()


def _eight_bit(img: PIL.Image.Image) -> PIL.Image.Image:
    """A 16- or 32-bit grayscale image scaled into 8 bits (``L``): converted or saved as
    8-bit as it is, its values are clipped at 255 (a photo comes out white), and Pillow
    cannot reduce 16-bit ones. Float images (``F``) have no scale to read: refused."""
    if img.mode in _SIXTEEN_BIT:
        img = img.convert("I")
    if img.mode == "I":
        low, high = cast("tuple[int, int]", img.getextrema())
        if low < 0 or high > 65535:
            raise ValueError(
                f"mode 'I' values {low}..{high} are outside 16 bits (0..65535); "
                "scale the image to 'L' or 'RGB' first"
            )
        return img.point(lambda value: value / 257).convert("L")
    if img.mode == "F":
        raise ValueError(
            "mode 'F' (floating point) has no range to read as light and dark; "
            "convert the image to 'L' or 'RGB' first"
        )
    return img


def _for_resize(img: PIL.Image.Image) -> PIL.Image.Image:
    """Palette / bilevel images resize badly (nearest only): expand them first; deeper
    than 8 bits: scaled into 8 (see :func:`_eight_bit`)."""
    if img.mode in ("P", "1"):
        return img.convert("RGBA" if _has_alpha(img) else "RGB")
    return _eight_bit(img)


def _scaled_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _downscale_bytes(data: bytes, fmt: str, max_side: int, what: str, index: int) -> bytes:
    """``data`` re-encoded with its longer side <= ``max_side``; unchanged if already small."""
    image_mod = _pil_image_module("max_side")
    from PIL import ImageOps

    try:
        img = image_mod.open(io.BytesIO(data))
        width, height = img.size
        if max(width, height) <= max_side:
            return data  # header-only look: no decode, no re-encode
        img = _for_resize(img)
        img.thumbnail((max_side, max_side), image_mod.Resampling.LANCZOS)
        img = ImageOps.exif_transpose(img)
        return _save(img, fmt, quality=90)
    except (ConfigurationError, InputError):
        raise
    except Exception as exc:
        raise _fail(f"cannot downscale {what} ({type(exc).__name__}: {exc})", index) from None


def _encode_pil(img: PIL.Image.Image, max_side: int | None, index: int) -> str:
    """A PIL image as lossless PNG (downscaled first if ``max_side`` asks for it)."""
    try:
        if max_side is not None and max(img.size) > max_side:
            image_mod = _pil_image_module("max_side")
            img = _for_resize(img).resize(
                _scaled_size(img.width, img.height, max_side), image_mod.Resampling.LANCZOS
            )
        if img.width == 0 or img.height == 0:
            raise _fail("PIL image is empty (0 pixels)", index)
        if img.mode in ("I", "F"):
            img = _eight_bit(img)  # (16-bit 'I;16' is saved as a 16-bit PNG, losslessly)
        return _to_data_uri(_save(img, "png"), "png")
    except InputError:
        raise
    except Exception as exc:
        raise _fail(f"cannot encode PIL image ({type(exc).__name__}: {exc})", index) from None


# --------------------------------------------------------------------------- sources


def _read_path(path: str | os.PathLike[str], index: int) -> tuple[bytes, str]:
    """File content in one read; returns (data, shortened path for messages)."""
    try:
        shown = _short(os.fsdecode(path))
    except (TypeError, ValueError):
        shown = "<path>"
    try:
        with open(path, "rb") as fh:
            return fh.read(), shown
    except FileNotFoundError:
        raise _fail(f"no such file: {shown}", index) from None
    except IsADirectoryError:
        raise _fail(f"is a directory: {shown}", index) from None
    except PermissionError:
        if os.path.isdir(path):  # Windows reports directories this way
            raise _fail(f"is a directory: {shown}", index) from None
        raise _fail(f"cannot read {shown}: permission denied", index) from None
    except OSError as exc:
        raise _fail(f"cannot read {shown}: {exc.strerror or type(exc).__name__}", index) from None
    except (TypeError, ValueError) as exc:  # embedded NUL, bad path type
        raise _fail(f"invalid path {shown} ({exc})", index) from None


def _read_file_object(fobj: Any, index: int) -> tuple[bytes, str]:
    name = getattr(fobj, "name", None)
    what = f"file object {_short(name)}" if isinstance(name, str) else "file object"
    if isinstance(fobj, io.TextIOBase):
        raise _fail(f"{what} is open in text mode; open it with 'rb'", index)
    try:
        start = fobj.tell() if fobj.seekable() else None
    except Exception:
        start = None
    try:
        data = fobj.read()
        if start is not None:
            fobj.seek(start)  # (read again the same, by a repeat of it or by a retry)
    except Exception as exc:
        raise _fail(f"cannot read {what} ({type(exc).__name__}: {exc})", index) from None
    if isinstance(data, str):
        raise _fail(f"{what} is open in text mode; open it with 'rb'", index)
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    if not isinstance(data, bytes):
        raise _fail(f"{what}.read() returned {type(data).__name__}, expected bytes", index)
    return data, what


def _check_url(url: str, index: int) -> str:
    shown = _short(url)
    if _BAD_URL_CHARS_RE.search(url):
        raise _fail(f"URL contains whitespace or control characters: {_cut(url)!r}", index)
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise _fail(f"malformed URL: {shown}", index) from None
    if not host:
        raise _fail(f"URL has no host: {shown}", index)
    return url


def _check_data_uri(uri: str, max_side: int | None, index: int) -> str:
    match = _DATA_URI_RE.match(uri)
    if match is None:
        raise _fail("malformed data URI: expected data:image/<format>;base64,<payload>", index)
    declared = match.group(1)
    payload = uri[match.end() :]
    if not payload:
        raise _fail("data URI has an empty payload", index)
    try:
        data = pybase64.b64decode(payload, validate=True)
    except ValueError:
        raise _fail(
            "data URI payload is not valid base64 (standard alphabet, padded, no line breaks)",
            index,
        ) from None
    fmt = _check_bytes(data, "data URI payload", index)
    if max_side is not None:
        smaller = _downscale_bytes(data, fmt, max_side, "data URI image", index)
        if smaller is not data:
            return _to_data_uri(smaller, fmt)
    accepted = ("jpeg", "jpg") if fmt == "jpeg" else (fmt,)
    if declared in accepted and uri.startswith(f"data:image/{declared};base64,"):
        return uri  # the common case: no copy
    return f"data:image/{fmt};base64,{payload}"


def _looks_like_base64(text: str) -> bool:
    return (
        len(text) >= 256
        and _BASE64_TEXT_RE.fullmatch(text) is not None
        and (
            text.startswith(("/9j/", "iVBORw0KGgo", "R0lGOD", "UklGR", "Qk", "SUkq", "TU0A"))
            or len(text) > 4096
        )
    )


def _encode_str(value: str, max_side: int | None, index: int) -> str:
    stripped = value.strip()
    if not stripped:
        raise _fail("empty string is not an image", index)
    lower = value[:8].lower()
    if lower.startswith(("http://", "https://")):
        return _check_url(value, index)
    if lower.startswith("data:"):
        return _check_data_uri(value, max_side, index)
    scheme = _SCHEME_RE.match(value)
    if scheme is not None and not os.path.exists(value):  # ("img:1.png" may be a file)
        name = scheme.group(0).lower()
        hint = "; pass the local path itself" if name == "file:" else ""
        raise _fail(
            f"unsupported URI scheme {name!r}: only http://, https:// URLs and "
            f"data:image/<format>;base64 URIs are accepted{hint}",
            index,
        )
    if _looks_like_base64(value):
        raise _fail(
            "string looks like raw base64 data, not a path; pass bytes or a "
            "data:image/<format>;base64,<payload> URI",
            index,
        )
    return _encode_local(*_read_path(value, index), max_side, index)


def _encode_local(data: bytes, what: str, max_side: int | None, index: int) -> str:
    fmt = _check_bytes(data, what, index)
    if max_side is not None:
        data = _downscale_bytes(data, fmt, max_side, what, index)
    return _to_data_uri(data, fmt)


# --------------------------------------------------------------------------- public API


def encode_image(image: object, *, index: int, max_side: int | None = None) -> str:
    """Turn one :data:`ImageInput` into the API's image string.

    ``http(s)`` URLs come back unchanged (after a host / whitespace check). ``data:`` URIs are
    validated and come back unchanged, except that a header that disagrees with the bytes
    (``data:image/png`` holding JPEG, upper-case ``DATA:``) is rewritten with the sniffed format
    (``jpg`` is accepted as ``jpeg`` and kept). Paths, bytes, file objects and PIL images become
    ``data:image/{format};base64,...`` with the format sniffed from the bytes; PIL images are
    encoded as lossless PNG.

    ``max_side`` (needs Pillow) downscales local images and data URIs whose longer side exceeds
    it, keeping the aspect ratio (LANCZOS, EXIF orientation applied, re-encoded in the same
    format: JPEG/WebP quality 90, optimised PNG); smaller images are sent byte-for-byte.

    Raises :class:`InputError` (``index``, ``field="image"``) for any bad input and
    :class:`ConfigurationError` when ``max_side`` is set, Pillow is needed and missing.
    """
    if max_side is not None and (
        isinstance(max_side, bool) or not isinstance(max_side, int) or max_side < 1
    ):
        raise ConfigurationError(f"max_side must be a positive int or None, got {max_side!r}")
    if isinstance(image, str):
        return _encode_str(image, max_side, index)
    if isinstance(image, os.PathLike):
        return _encode_local(*_read_path(image, index), max_side, index)
    if isinstance(image, bytes):
        return _encode_local(image, "image data", max_side, index)
    if isinstance(image, (bytearray, memoryview)):
        return _encode_local(bytes(image), "image data", max_side, index)
    pil_class = _pil_image_class()
    if pil_class is not None and isinstance(image, pil_class):
        return _encode_pil(image, max_side, index)  # type: ignore[arg-type]
    if callable(getattr(image, "read", None)):
        return _encode_local(*_read_file_object(image, index), max_side, index)
    raise _fail(
        f"unsupported image type {type(image).__name__}: pass a path, bytes, a binary file "
        "object, a PIL image, an http(s) URL or a data:image URI",
        index,
    )


def is_image_input(value: object) -> bool:
    """Cheap type check: could ``value`` be an image (no I/O, no decoding)?

    True for ``os.PathLike``, bytes-like objects, binary file objects, ``PIL.Image.Image`` and
    strings that start with ``http://``, ``https://`` or ``data:image/``. Other strings are
    False because a bare string is ambiguous with text: wrap local paths in ``pathlib.Path``
    (``encode_image`` itself still accepts path strings).
    """
    if isinstance(value, str):
        return value[:11].lower().startswith(("http://", "https://", "data:image/"))
    if isinstance(value, (os.PathLike, bytes, bytearray, memoryview)):
        return True
    pil_class = _pil_image_class()
    if pil_class is not None and isinstance(value, pil_class):
        return True
    return not isinstance(value, io.TextIOBase) and callable(getattr(value, "read", None))


def shrink_data_uri(uri: str, *, max_bytes: int, index: int) -> str:
    """Re-encode a data URI until the whole URI is at most ``max_bytes`` long (needs Pillow).

    Returned unchanged if it already fits. Otherwise images without alpha become JPEG
    (quality 85) and images with alpha stay PNG; each further step shrinks the sides by 0.75
    or more (estimated from how far off the last attempt was). Raises :class:`InputError`
    after 12 steps without fitting and :class:`ConfigurationError` if Pillow is missing.
    """
    if len(uri) <= max_bytes:
        return uri
    image_mod = _pil_image_module("shrinking an oversized image")
    from PIL import ImageOps

    match = _DATA_URI_RE.match(uri)
    if match is None:
        raise _fail("cannot shrink: not a data:image/<format>;base64 URI", index)
    try:
        data = pybase64.b64decode(uri[match.end() :], validate=True)
    except ValueError:
        raise _fail("cannot shrink: data URI payload is not valid base64", index) from None
    if max_bytes < len("data:image/jpeg;base64,") + 4:
        raise _fail(f"cannot shrink image to fit {max_bytes} bytes", index)
    try:
        img = image_mod.open(io.BytesIO(data))
        img.load()
        img = _for_resize(ImageOps.exif_transpose(img))
        fmt = "png" if _has_alpha(img) else "jpeg"
        if fmt == "jpeg" and img.mode not in ("RGB", "L"):
            img = img.convert("RGB")
        width, height = img.size
        scale = 1.0
        for _ in range(_SHRINK_STEPS):
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            frame = img if scale == 1.0 else img.resize(size, image_mod.Resampling.LANCZOS)
            result = _to_data_uri(_save(frame, fmt, quality=85), fmt)
            if len(result) <= max_bytes:
                return result
            if size == (1, 1):
                break
            scale *= min(0.75, max(0.1, 0.95 * math.sqrt(max_bytes / len(result))))
    except (ConfigurationError, InputError):
        raise
    except Exception as exc:
        raise _fail(f"cannot shrink image ({type(exc).__name__}: {exc})", index) from None
    raise _fail(f"cannot shrink image to fit {max_bytes} bytes", index)
