"""Tests for opensearch_mm.images."""

from __future__ import annotations

import io
import os
import pathlib
import subprocess
import sys
from typing import Any

import pybase64
import pytest

PIL_Image = pytest.importorskip("PIL.Image")
from PIL import Image  # noqa: E402

from opensearch_mm import images  # noqa: E402
from opensearch_mm.errors import ConfigurationError, InputError  # noqa: E402
from opensearch_mm.images import (  # noqa: E402
    SUPPORTED_FORMATS,
    encode_image,
    is_image_input,
    shrink_data_uri,
    sniff_format,
)

FORMATS = ["jpeg", "png", "gif", "webp", "bmp", "tiff"]


def make_image(fmt: str, size: tuple[int, int] = (40, 20), mode: str = "RGB", **kw: Any) -> bytes:
    img = Image.new(mode, size, (200, 30, 60) if mode == "RGB" else None)
    for x in range(0, size[0], 3):  # a little structure so encoders do real work
        img.putpixel((x, x % size[1]), (10, 220, 40) if mode == "RGB" else 128)
    out = io.BytesIO()
    img.save(out, images._PIL_FORMATS[fmt], **kw)
    return out.getvalue()


def noisy_jpeg(size: tuple[int, int] = (600, 400)) -> bytes:
    img = Image.effect_noise(size, 80).convert("RGB")
    out = io.BytesIO()
    img.save(out, "JPEG", quality=95)
    return out.getvalue()


def decode_uri(uri: str) -> tuple[str, bytes]:
    header, payload = uri.split(",", 1)
    assert header.startswith("data:image/") and header.endswith(";base64")
    return header[len("data:image/") : -len(";base64")], pybase64.b64decode(payload, validate=True)


def uri_size(uri: str) -> tuple[int, int]:
    return Image.open(io.BytesIO(decode_uri(uri)[1])).size


@pytest.fixture(scope="module")
def samples() -> dict[str, bytes]:
    return {fmt: make_image(fmt) for fmt in FORMATS}


def input_error(image: object, index: int = 7, **kw: Any) -> InputError:
    with pytest.raises(InputError) as info:
        encode_image(image, index=index, **kw)
    err = info.value
    assert err.index == index
    assert err.field == "image"
    assert str(err).startswith(f"input {index} (image): ")
    return err


# --------------------------------------------------------------------------- sniffing


def test_supported_formats() -> None:
    assert frozenset(FORMATS) == SUPPORTED_FORMATS


@pytest.mark.parametrize("fmt", FORMATS)
def test_sniff_each_format(samples: dict[str, bytes], fmt: str) -> None:
    data = samples[fmt]
    assert sniff_format(data) == fmt
    assert sniff_format(memoryview(data)) == fmt
    assert sniff_format(bytearray(data)) == fmt


@pytest.mark.parametrize(
    "data",
    [b"", b"\xff\xd8", b"hello world", b"BM hello not a bitmap at all!!", b"RIFF\0\0\0\0WAVE"],
)
def test_sniff_unknown(data: bytes) -> None:
    assert sniff_format(data) is None


def test_sniff_non_byte_memoryview(samples: dict[str, bytes]) -> None:
    data = samples["png"] + b"\0" * (-len(samples["png"]) % 4)
    assert sniff_format(memoryview(data).cast("I")) == "png"


# --------------------------------------------------------------------------- bytes, paths


@pytest.mark.parametrize("fmt", FORMATS)
def test_bytes_roundtrip(samples: dict[str, bytes], fmt: str) -> None:
    uri = encode_image(samples[fmt], index=0)
    assert uri.startswith(f"data:image/{fmt};base64,")
    assert decode_uri(uri) == (fmt, samples[fmt])


def test_bytearray_and_memoryview(samples: dict[str, bytes]) -> None:
    expected = encode_image(samples["png"], index=0)
    assert encode_image(bytearray(samples["png"]), index=0) == expected
    assert encode_image(memoryview(samples["png"]), index=0) == expected
    padded = b"xx" + samples["png"]
    assert encode_image(memoryview(padded)[2:], index=0) == expected


@pytest.mark.parametrize("fmt", FORMATS)
def test_path_str_and_pathlike(tmp_path: pathlib.Path, samples: dict[str, bytes], fmt: str) -> None:
    path = tmp_path / f"img.{fmt}"
    path.write_bytes(samples[fmt])
    assert encode_image(path, index=0) == encode_image(str(path), index=0)
    assert decode_uri(encode_image(path, index=0)) == (fmt, samples[fmt])


def test_wrong_extension_uses_bytes(tmp_path: pathlib.Path, samples: dict[str, bytes]) -> None:
    path = tmp_path / "actually_png.jpg"
    path.write_bytes(samples["png"])
    assert encode_image(path, index=0).startswith("data:image/png;base64,")
    noext = tmp_path / "noext"
    noext.write_bytes(samples["webp"])
    assert encode_image(str(noext), index=0).startswith("data:image/webp;base64,")


def test_missing_file(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "missing.jpg"
    err = input_error(str(path))
    assert err.reason == f"no such file: {path}"
    assert "no such file" in str(input_error(path))


def test_windows_style_path_is_a_path() -> None:
    assert "no such file: C:\\nope\\x.jpg" in str(input_error("C:\\nope\\x.jpg"))


def test_relative_path(tmp_path: pathlib.Path, samples: dict[str, bytes], monkeypatch: Any) -> None:
    (tmp_path / "a.png").write_bytes(samples["png"])
    monkeypatch.chdir(tmp_path)
    assert encode_image("a.png", index=0).startswith("data:image/png;")


def test_directory(tmp_path: pathlib.Path) -> None:
    assert "is a directory" in str(input_error(tmp_path))
    assert "is a directory" in str(input_error(str(tmp_path)))


def test_empty_file(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    assert "empty" in str(input_error(path))
    assert "empty" in str(input_error(b""))


@pytest.mark.skipif(os.name == "nt" or os.geteuid() == 0, reason="needs POSIX permissions")
def test_unreadable_file(tmp_path: pathlib.Path, samples: dict[str, bytes]) -> None:
    path = tmp_path / "secret.png"
    path.write_bytes(samples["png"])
    path.chmod(0)
    try:
        assert "permission denied" in str(input_error(path))
    finally:
        path.chmod(0o600)


def test_nul_in_path() -> None:
    assert "invalid path" in str(input_error("bad\x00path.png"))


def test_unsupported_bytes(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("just some text, not an image\n")
    err = input_error(path)
    assert "not a supported image (bmp, gif, jpeg, png, tiff, webp)" in str(err)
    assert str(path) in str(err)
    assert "not a supported image" in str(input_error(b"<svg xmlns='http://www.w3.org/2000/svg'/>"))


def test_long_path_is_shortened(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / ("x" * 300))
    err = input_error(path)
    assert len(str(err)) < 140
    assert "..." in str(err)


def test_a_shortened_path_keeps_its_file_name(tmp_path: pathlib.Path) -> None:
    err = input_error(str(tmp_path / ("d" * 120) / "the-missing-one.png"))
    assert "the-missing-one.png" in str(err) and "..." in str(err)
    assert len(str(err)) < 140


# --------------------------------------------------------------------------- truncation


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp", "bmp", "tiff"])
def test_truncated_bytes(fmt: str) -> None:
    data = make_image(fmt, size=(64, 64))
    cut = data[: len(data) * 2 // 3] if fmt != "tiff" else data[:12]
    if fmt == "tiff":  # first IFD offset points past the end
        cut = data[:4] + (len(data) + 100).to_bytes(4, "little" if data[:2] == b"II" else "big")
        cut += data[8:]
    err = input_error(cut)
    assert f"truncated or corrupt {fmt}" in str(err)


def test_truncated_files(tmp_path: pathlib.Path) -> None:
    for fmt in ("jpeg", "png"):
        data = noisy_jpeg() if fmt == "jpeg" else make_image("png", size=(100, 100))
        path = tmp_path / f"cut.{fmt}"
        path.write_bytes(data[: len(data) // 2])
        assert "truncated" in str(input_error(path))


def test_jpeg_marker_walk() -> None:
    data = noisy_jpeg((120, 80))
    # an APP segment whose payload contains an EOI-like pair, like an EXIF thumbnail
    app = b"ab\xff\xd9cd"
    with_app = data[:2] + b"\xff\xe1" + (len(app) + 2).to_bytes(2, "big") + app + data[2:]
    assert encode_image(with_app, index=0)
    assert "truncated" in str(input_error(with_app[: len(with_app) - 300]))
    # data after EOI (e.g. motion photos) is allowed; zero padding too
    assert encode_image(data + b"trailing video bytes", index=0)
    assert encode_image(data + b"\0" * 16, index=0)
    assert "truncated" in str(input_error(data[:200]))


def test_png_trailing_data_and_missing_ihdr(samples: dict[str, bytes]) -> None:
    assert encode_image(samples["png"] + b"junk", index=0)
    broken = samples["png"][:12] + b"XXXX" + samples["png"][16:]
    assert "truncated or corrupt png" in str(input_error(broken))


def test_verify_with_pillow_flag(monkeypatch: Any) -> None:
    data = make_image("png", size=(30, 30))
    idat = data.index(b"IDAT")
    corrupt = data[: idat + 6] + bytes([data[idat + 6] ^ 0xFF]) + data[idat + 7 :]
    assert encode_image(corrupt, index=0)  # structure intact: passes the cheap checks
    monkeypatch.setattr(images, "VERIFY_WITH_PILLOW", True)
    assert "not a decodable png" in str(input_error(corrupt))
    assert encode_image(data, index=0)


# --------------------------------------------------------------------------- file objects


def test_binary_file_object_reads_from_current_position(samples: dict[str, bytes]) -> None:
    buf = io.BytesIO(b"prefix" + samples["gif"])
    buf.seek(6)
    assert decode_uri(encode_image(buf, index=0)) == ("gif", samples["gif"])


def test_real_binary_file(tmp_path: pathlib.Path, samples: dict[str, bytes]) -> None:
    path = tmp_path / "a.bmp"
    path.write_bytes(samples["bmp"])
    with open(path, "rb") as fh:
        assert encode_image(fh, index=0).startswith("data:image/bmp;")
    with open(path, "rb") as fh:
        fh.read()
        assert "empty" in str(input_error(fh))


def test_text_file_objects(tmp_path: pathlib.Path) -> None:
    assert "text mode" in str(input_error(io.StringIO("abc")))
    path = tmp_path / "t.txt"
    path.write_text("hello")
    with open(path) as fh:
        assert "text mode" in str(input_error(fh))

    class StrReader:
        def read(self) -> str:
            return "not bytes"

    assert "text mode" in str(input_error(StrReader()))


def test_file_object_errors() -> None:
    class Broken:
        def read(self) -> bytes:
            raise OSError("disk on fire")

    class Weird:
        def read(self) -> int:
            return 3

    assert "cannot read file object" in str(input_error(Broken()))
    assert "returned int" in str(input_error(Weird()))
    closed = io.BytesIO(b"x")
    closed.close()
    assert "cannot read" in str(input_error(closed))


# --------------------------------------------------------------------------- PIL images


def test_pil_image_is_png() -> None:
    img = Image.new("RGB", (10, 6), (1, 2, 3))
    fmt, data = decode_uri(encode_image(img, index=0))
    assert fmt == "png"
    back = Image.open(io.BytesIO(data))
    assert back.size == (10, 6)
    assert back.convert("RGB").getpixel((0, 0)) == (1, 2, 3)


@pytest.mark.parametrize("mode", ["RGBA", "L", "LA", "P", "1", "CMYK", "YCbCr", "I", "I;16"])
def test_pil_modes(mode: str) -> None:
    img = Image.new(mode, (8, 8))
    fmt, data = decode_uri(encode_image(img, index=0))
    assert fmt == "png"
    assert Image.open(io.BytesIO(data)).size == (8, 8)


def test_pil_max_side_does_not_mutate() -> None:
    img = Image.new("RGB", (300, 100))
    assert uri_size(encode_image(img, index=0, max_side=60)) == (60, 20)
    assert img.size == (300, 100)
    assert uri_size(encode_image(img, index=0, max_side=500)) == (300, 100)


def test_pil_opened_from_file(samples: dict[str, bytes]) -> None:
    img = Image.open(io.BytesIO(samples["jpeg"]))
    assert encode_image(img, index=0).startswith("data:image/png;")


# --------------------------------------------------------------------------- strings


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/photo.jpg",
        "https://example.com/a/b.png?x=1&sig=abc#frag",
        "HTTPS://EXAMPLE.COM/X.JPG",
        "http://127.0.0.1:8080/img",
        "https://user:pw@host.example/p",
    ],
)
def test_url_pass_through(url: str) -> None:
    assert encode_image(url, index=0) is url
    assert encode_image(url, index=0, max_side=10) is url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://", "no host"),
        ("https:///path/only.jpg", "no host"),
        ("http://exa mple.com/a.jpg", "whitespace"),
        ("http://example.com/a.jpg\n", "whitespace"),
        ("https://example.com/\x00.jpg", "control"),
        ("http://example.com:99999/a.jpg", "malformed URL"),
        ("http://[::1/a.jpg", "malformed URL"),
    ],
)
def test_bad_urls(url: str, expected: str) -> None:
    assert expected in str(input_error(url))


@pytest.mark.parametrize(
    ("value", "scheme"),
    [
        ("file:///tmp/a.jpg", "file:"),
        ("ftp://example.com/a.jpg", "ftp:"),
        ("javascript:alert(1)", "javascript:"),
        ("s3://bucket/key.jpg", "s3:"),
        ("oss://bucket/key.jpg", "oss:"),
        ("gs://bucket/key.png", "gs:"),
        ("HTTPX://example.com", "httpx:"),
    ],
)
def test_bad_schemes(value: str, scheme: str) -> None:
    msg = str(input_error(value))
    assert f"unsupported URI scheme '{scheme}'" in msg
    assert "http://, https://" in msg and "data:image" in msg


def test_file_scheme_hint() -> None:
    assert "pass the local path" in str(input_error("file:///tmp/a.jpg"))


@pytest.mark.parametrize("value", ["", "   ", "\n\t"])
def test_empty_strings(value: str) -> None:
    assert "empty string" in str(input_error(value))


def test_raw_base64_string_is_not_echoed(samples: dict[str, bytes]) -> None:
    raw = pybase64.b64encode(noisy_jpeg((60, 60))).decode()
    msg = str(input_error(raw))
    assert "raw base64" in msg
    assert raw[:20] not in msg


# --------------------------------------------------------------------------- data URIs


@pytest.mark.parametrize("fmt", FORMATS)
def test_data_uri_valid_unchanged(samples: dict[str, bytes], fmt: str) -> None:
    uri = f"data:image/{fmt};base64," + pybase64.b64encode(samples[fmt]).decode()
    assert encode_image(uri, index=0) is uri


def test_data_uri_jpg_alias(samples: dict[str, bytes]) -> None:
    uri = "data:image/jpg;base64," + pybase64.b64encode(samples["jpeg"]).decode()
    assert encode_image(uri, index=0) is uri


@pytest.mark.parametrize(
    "header",
    [
        "data:image/png;base64,",
        "data:image/JPEG;base64,",
        "DATA:IMAGE/jpeg;BASE64,",
        "data:image/x-foo;base64,",
    ],
)
def test_data_uri_corrected(samples: dict[str, bytes], header: str) -> None:
    payload = pybase64.b64encode(samples["jpeg"]).decode()
    assert encode_image(header + payload, index=0) == "data:image/jpeg;base64," + payload


def test_data_uri_max_side(samples: dict[str, bytes]) -> None:
    uri = "data:image/png;base64," + pybase64.b64encode(make_image("png", (200, 100))).decode()
    out = encode_image(uri, index=0, max_side=50)
    assert out.startswith("data:image/png;base64,")
    assert uri_size(out) == (50, 25)
    small = "data:image/png;base64," + pybase64.b64encode(samples["png"]).decode()
    assert encode_image(small, index=0, max_side=50) is small


MARK = "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVpa"  # distinctive payload text


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("data:image/png;base64,", "empty payload"),
        ("data:text/plain;base64," + MARK, "malformed data URI"),
        ("data:image/png," + MARK, "malformed data URI"),
        ("data:image/png;charset=utf-8;base64," + MARK, "malformed data URI"),
        ("data:,hello", "malformed data URI"),
        ("data:image/png;base64," + MARK + "!!", "not valid base64"),
        ("data:image/png;base64," + MARK + "\n" + MARK, "not valid base64"),
        ("data:image/png;base64," + MARK + "é", "not valid base64"),
        ("data:image/png;base64," + MARK + "=", "not valid base64"),
        ("data:image/png;base64," + MARK, "not a supported image"),
    ],
)
def test_bad_data_uris(uri: str, expected: str) -> None:
    msg = str(input_error(uri, index=3))
    assert expected in msg
    assert MARK[:12] not in msg
    assert "input 3" in msg


def test_truncated_data_uri_not_echoed() -> None:
    data = noisy_jpeg((80, 80))
    payload = pybase64.b64encode(data[: len(data) // 2]).decode()
    msg = str(input_error("data:image/jpeg;base64," + payload))
    assert "truncated" in msg
    assert payload[:16] not in msg and payload[-16:] not in msg


def test_truncated_data_uri_png() -> None:
    data = make_image("png", (50, 50))
    payload = pybase64.b64encode(data[:-20]).decode()
    assert "truncated" in str(input_error("data:image/png;base64," + payload))


# --------------------------------------------------------------------------- other types


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (3, "int"),
        (None, "NoneType"),
        ({"image": "x"}, "dict"),
        ([b"x"], "list"),
        (1.5, "float"),
        (True, "bool"),
        (object(), "object"),
    ],
)
def test_unsupported_types(value: object, name: str) -> None:
    assert f"unsupported image type {name}" in str(input_error(value))


@pytest.mark.parametrize("bad", [0, -1, 1.5, "100", True])
def test_bad_max_side(samples: dict[str, bytes], bad: Any) -> None:
    with pytest.raises(ConfigurationError):
        encode_image(samples["png"], index=0, max_side=bad)


# --------------------------------------------------------------------------- max_side


@pytest.mark.parametrize("fmt", FORMATS)
def test_max_side_downscales_same_format(fmt: str) -> None:
    data = make_image(fmt, size=(200, 100))
    out = encode_image(data, index=0, max_side=50)
    assert out.startswith(f"data:image/{fmt};base64,")
    assert uri_size(out) == (50, 25)


def test_max_side_portrait_jpeg(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "tall.jpg"
    path.write_bytes(noisy_jpeg((300, 900)))
    out = encode_image(path, index=0, max_side=300)
    assert uri_size(out) == (100, 300)
    assert len(out) < len(encode_image(path, index=0))


def test_max_side_small_image_untouched(samples: dict[str, bytes]) -> None:
    for fmt in FORMATS:
        assert encode_image(samples[fmt], index=0, max_side=40) == encode_image(
            samples[fmt], index=0
        )


def test_max_side_applies_exif_orientation() -> None:
    img = Image.new("RGB", (400, 200), (5, 5, 5))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° on display
    out = io.BytesIO()
    img.save(out, "JPEG", exif=exif.tobytes())
    assert uri_size(encode_image(out.getvalue(), index=0, max_side=100)) == (50, 100)


def test_max_side_rgba_png_and_palette_gif() -> None:
    rgba = make_image("png", size=(120, 60), mode="RGBA")
    fmt, data = decode_uri(encode_image(rgba, index=0, max_side=30))
    back = Image.open(io.BytesIO(data))
    assert (fmt, back.size, back.mode) == ("png", (30, 15), "RGBA")
    pal = make_image("gif", size=(120, 60), mode="P")
    assert uri_size(encode_image(pal, index=0, max_side=30)) == (30, 15)


# --------------------------------------------------------------------------- without Pillow


@pytest.fixture
def no_pillow(monkeypatch: Any) -> None:
    for name in [n for n in sys.modules if n == "PIL" or n.startswith("PIL.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "PIL", None)
    monkeypatch.setitem(sys.modules, "PIL.Image", None)


@pytest.fixture(scope="module")
def cut_jpeg() -> bytes:
    return noisy_jpeg((50, 50))[:300]


def test_without_pillow_basic_inputs_work(
    samples: dict[str, bytes], cut_jpeg: bytes, tmp_path: pathlib.Path, no_pillow: None
) -> None:
    assert not images.pillow_available()
    path = tmp_path / "a.webp"
    path.write_bytes(samples["webp"])
    assert encode_image(path, index=0).startswith("data:image/webp;")
    assert encode_image(samples["png"], index=0).startswith("data:image/png;")
    assert encode_image("https://example.com/a.jpg", index=0, max_side=5)
    assert "truncated" in str(input_error(cut_jpeg))
    assert images.VERIFY_WITH_PILLOW is False
    assert is_image_input(b"x") and not is_image_input(3)


def test_without_pillow_max_side_and_shrink_need_pillow(
    samples: dict[str, bytes], no_pillow: None
) -> None:
    with pytest.raises(ConfigurationError, match=r"pip install 'opensearch-mm\[images\]'"):
        encode_image(samples["png"], index=0, max_side=10)
    uri = encode_image(samples["png"], index=0)
    with pytest.raises(ConfigurationError, match="opensearch-mm"):
        shrink_data_uri(uri, max_bytes=10, index=0)
    with pytest.raises(ConfigurationError, match="image_max_side"):
        images.require_pillow("image_max_side")


def test_verify_flag_without_pillow(
    samples: dict[str, bytes], monkeypatch: Any, no_pillow: None
) -> None:
    monkeypatch.setattr(images, "VERIFY_WITH_PILLOW", True)
    assert encode_image(samples["png"], index=0)


def test_module_import_does_not_import_pillow() -> None:
    code = (
        "import sys; sys.modules['PIL'] = None\n"
        "import opensearch_mm.images as m\n"
        "assert m.sniff_format(b'GIF89a' + b'0' * 10) == 'gif'\n"
        "print('ok')\n"
    )
    root = pathlib.Path(__file__).resolve().parents[2]
    res = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"


# --------------------------------------------------------------------------- shrink_data_uri


def test_shrink_reaches_budget() -> None:
    uri = encode_image(noisy_jpeg((800, 600)), index=0)
    budget = len(uri) // 10
    out = shrink_data_uri(uri, max_bytes=budget, index=0)
    assert len(out) <= budget
    fmt, data = decode_uri(out)
    assert fmt == "jpeg"
    w, h = Image.open(io.BytesIO(data)).size
    assert w < 800 and abs(w / h - 800 / 600) < 0.05


def test_shrink_png_without_alpha_becomes_jpeg() -> None:
    img = Image.effect_noise((300, 300), 60).convert("RGB")
    uri = encode_image(img, index=0)
    out = shrink_data_uri(uri, max_bytes=len(uri) // 2, index=0)
    assert out.startswith("data:image/jpeg;") and len(out) <= len(uri) // 2


def test_shrink_alpha_stays_png() -> None:
    img = Image.effect_noise((300, 300), 60).convert("RGBA")
    uri = encode_image(img, index=0)
    out = shrink_data_uri(uri, max_bytes=len(uri) // 4, index=0)
    assert out.startswith("data:image/png;") and len(out) <= len(uri) // 4


def test_shrink_noop_when_fits(samples: dict[str, bytes]) -> None:
    uri = encode_image(samples["png"], index=0)
    assert shrink_data_uri(uri, max_bytes=len(uri), index=0) is uri


def test_shrink_impossible() -> None:
    uri = encode_image(noisy_jpeg((200, 200)), index=5)
    with pytest.raises(InputError) as info:
        shrink_data_uri(uri, max_bytes=60, index=5)
    assert info.value.index == 5 and info.value.field == "image"
    assert "60 bytes" in str(info.value)
    assert uri[30:60] not in str(info.value)


def test_shrink_bad_input() -> None:
    with pytest.raises(InputError, match="not a data:image"):
        shrink_data_uri("https://example.com/" + "a" * 100, max_bytes=10, index=0)
    with pytest.raises(InputError, match="not valid base64"):
        shrink_data_uri("data:image/png;base64," + "!" * 100, max_bytes=10, index=0)
    with pytest.raises(InputError, match="cannot shrink image"):
        shrink_data_uri("data:image/png;base64," + "QUJD" * 100, max_bytes=10, index=0)


# --------------------------------------------------------------------------- is_image_input


@pytest.mark.parametrize(
    "value",
    [
        b"x",
        bytearray(b"x"),
        memoryview(b"x"),
        pathlib.Path("a.jpg"),
        io.BytesIO(b"x"),
        Image.new("RGB", (1, 1)),
        "http://x/y.png",
        "HTTPS://x/y.png",
        "data:image/png;base64,AAAA",
    ],
)
def test_is_image_input_true(value: object) -> None:
    assert is_image_input(value)


@pytest.mark.parametrize(
    "value",
    [
        "a cat on a mat",
        "photo.jpg",
        "data:text/plain,hi",
        3,
        None,
        {"image": "x"},
        [],
        io.StringIO("x"),
    ],
)
def test_is_image_input_false(value: object) -> None:
    assert not is_image_input(value)


# -- images deeper than 8 bits, and inputs a user gives as they come ---------------------


def gradient16(size: int = 200) -> Any:
    """A 16-bit grayscale ramp from black to white (mean half of 65535)."""
    img = Image.new("I", (size, size))
    img.putdata([round(65535 * k / (size * size - 1)) for k in range(size * size)])
    return img


def mean8(uri: str) -> float:
    img = Image.open(io.BytesIO(decode_uri(uri)[1]))
    assert img.mode in ("L", "RGB"), img.mode
    band = img.convert("L")
    return sum(band.tobytes()) / (band.width * band.height)


def test_a_32_bit_pil_image_is_scaled_into_8_bits_not_clipped_white() -> None:
    assert 120 < mean8(encode_image(gradient16(), index=0)) < 135


@pytest.mark.parametrize("mode", ["F", "I"])
def test_a_pil_image_with_no_readable_range_is_refused_by_name(mode: str) -> None:
    img = Image.new(mode, (8, 8), 0.5 if mode == "F" else 70_000)
    with pytest.raises(InputError, match=f"mode '{mode}'") as ei:
        encode_image(img, index=3)
    assert ei.value.index == 3


def test_a_16_bit_png_downscaled_or_shrunk_keeps_its_light() -> None:
    out = io.BytesIO()
    gradient16().convert("I;16").save(out, "PNG")
    data = out.getvalue()
    small = encode_image(data, index=0, max_side=32)  # (Pillow cannot reduce I;16 itself)
    assert uri_size(small) == (32, 32) and 120 < mean8(small) < 135
    uri = "data:image/png;base64," + pybase64.b64encode(data).decode()
    shrunk = shrink_data_uri(uri, max_bytes=len(uri) // 2, index=0)
    assert 120 < mean8(shrunk) < 135


def test_a_url_with_a_unicode_space_is_refused_before_sending() -> None:
    for url in ("https://example.com/photo\u00a0copy.jpg", "https://example.com/a\u2028b.png"):
        with pytest.raises(InputError, match="whitespace or control") as ei:
            encode_image(url, index=5)
        assert ei.value.index == 5


def test_a_relative_path_with_a_colon_is_a_file_not_a_scheme(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, samples: dict[str, bytes]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "photo-12:30.png").write_bytes(samples["png"])
    assert decode_uri(encode_image("photo-12:30.png", index=0)) == ("png", samples["png"])
    with pytest.raises(InputError, match="unsupported URI scheme"):
        encode_image("other:1.png", index=0)  # (no such file: still a scheme)


def test_a_file_object_is_read_from_where_it_stands_and_put_back(
    samples: dict[str, bytes],
) -> None:
    fobj = io.BytesIO(b"head" + samples["png"])
    fobj.seek(4)
    first = encode_image(fobj, index=0)
    assert fobj.tell() == 4  # a repeat of it in the call, or a retry, reads the same
    assert encode_image(fobj, index=1) == first


def test_a_path_with_invisible_edges_is_shown_quoted(tmp_path: pathlib.Path) -> None:
    path = str(tmp_path / "x.png") + "\n"
    with pytest.raises(InputError) as ei:
        encode_image(path, index=0)
    assert f"no such file: {path!r}" in str(ei.value)
