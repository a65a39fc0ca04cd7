"""``Embedder`` called directly on batches (no cluster), and ``embed_dataset``'s checks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from opensearch_mm import MultiModalEmbeddingClient
from opensearch_mm.emulator import Emulator
from opensearch_mm.errors import ConfigurationError, InputError, InvalidParameterError

from .conftest import RAY_MISSING

pytest.importorskip("ray", reason=RAY_MISSING)
pytest.importorskip("ray.data", reason=RAY_MISSING)
pa = pytest.importorskip("pyarrow")

from opensearch_mm.ray import AccountRateLimit, Embedder, embed_dataset  # noqa: E402

KEY = "embedder-key"


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(api_key=KEY) as server:
        yield server


def _embedder(emu: Emulator, **kwargs: Any) -> Embedder:
    return Embedder(api_key=KEY, endpoint=emu.url, qps=None, **kwargs)


def _expected(emu: Emulator, texts: list[str]) -> list[list[float]]:
    with MultiModalEmbeddingClient(api_key=KEY, endpoint=emu.url, qps=None) as client:
        return client.embed_texts(texts)


def test_batches_in_every_format_keep_their_columns_and_order(emu: Emulator) -> None:
    import pandas as pd  # type: ignore[import-untyped]

    texts = [f"text {i}" for i in range(40)]
    expected = np.asarray(_expected(emu, texts), dtype=np.float32)
    embedder = _embedder(emu, text_column="t")
    for batch in (
        pa.table({"id": list(range(40)), "t": texts}),
        {"id": np.arange(40), "t": np.asarray(texts, dtype=object)},
        pd.DataFrame({"id": range(40), "t": texts}),
    ):
        out = embedder(batch)
        assert out.column_names == ["id", "t", "embedding"]
        assert out.schema.field("embedding").type == pa.list_(pa.float32(), 768)
        assert out.column("id").to_pylist() == list(range(40))
        got = np.asarray(out.column("embedding").to_pylist(), dtype=np.float32)
        np.testing.assert_array_equal(got, expected)


def test_a_bad_row_names_the_column_and_the_value(emu: Emulator) -> None:
    embedder = _embedder(emu, text_column="t", image_column="img")
    batch = pa.table({"t": ["fine", None], "img": [None, b"definitely not an image"]})
    with pytest.raises(InputError) as info:
        embedder(batch)
    message = str(info.value)
    assert "column 'img'" in message and "not a supported image" in message
    assert "<23 bytes>" in message and "on_error='null'" in message
    assert info.value.field == "image"


def test_a_column_all_null_in_a_batch_is_null_not_nan(emu: Emulator) -> None:
    # Arrow types a column with no value in the batch as null; read as numbers, its cells
    # were NaN: an image column of nulls beside texts failed every row (m2-encoder takes
    # no image beside a text), and a text column of nulls beside images was embedded as
    # the text "nan".
    texts = ["a red bicycle", "a cat"]
    embedder = _embedder(emu, text_column="t", image_column="img", on_error="null")
    out = embedder(pa.table({"t": texts, "img": pa.nulls(2)}))
    assert out.column("embedding_error").to_pylist() == [None, None]
    got = np.asarray(out.column("embedding").to_pylist(), dtype=np.float32)
    np.testing.assert_array_equal(got, np.asarray(_expected(emu, texts), dtype=np.float32))
    gme = "ops-gme-qwen2-vl-2b-instruct"
    embedder = _embedder(emu, text_column="t", image_column="img", model=gme)
    png = _png()
    out = embedder(pa.table({"t": pa.nulls(1, pa.string()), "img": [png]}))
    with MultiModalEmbeddingClient(api_key=KEY, endpoint=emu.url, qps=None, model=gme) as c:
        assert out.column("embedding").to_pylist() == [
            pytest.approx(c.embed_images([png])[0], rel=1e-6)
        ]


@pytest.mark.parametrize("cell", [b"hello", 5, ["a", "b"]], ids=["bytes", "int", "list"])
def test_a_text_cell_that_is_not_a_str_is_a_bad_row_not_its_repr(emu: Emulator, cell: Any) -> None:
    embedder = _embedder(emu, text_column="t", on_error="null")
    out = embedder(pa.table({"t": pa.array([cell], type=pa.infer_type([cell]))}))
    assert out.column("embedding").to_pylist() == [None]
    assert "text must be a str" in out.column("embedding_error").to_pylist()[0]


def test_an_array_that_is_no_image_is_a_bad_row(emu: Emulator) -> None:
    # (A job of arrays Pillow has no mode for, 3 planes of floats, aborted whatever on_error.)
    embedder = _embedder(emu, image_column="img", on_error="null")
    bad = np.zeros((2, 8, 8, 3), dtype=np.float32)
    out = embedder({"id": np.arange(2), "img": bad})
    assert out.column("embedding").to_pylist() == [None, None]
    for reason in out.column("embedding_error").to_pylist():
        assert "not an image" in reason and "float32" in reason
    good = embedder({"id": np.arange(2), "img": bad.astype(np.uint8)})
    assert None not in good.column("embedding").to_pylist()
    with pytest.raises(InputError, match=r"column 'img'.*not an image"):
        _embedder(emu, image_column="img")({"img": bad})


def _png() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 10, 10)).save(buf, "PNG")
    return buf.getvalue()


def test_a_refused_request_is_split_to_find_the_bad_input(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    embedder = _embedder(emu, text_column="t", on_error="null")
    real_run = embedder.client._run
    calls = []

    def run(items: list[Any]) -> Any:
        calls.append(len(items))
        if any(b"poison" in item.data for item in items):
            exc = InvalidParameterError("bad input", status_code=400, code="InvalidParameter")
            from opensearch_mm.results import PartialResult

            # what the client raises for a failed call: the partial result attached

            exc.partial = PartialResult(
                embeddings=[None] * len(items),
                failed_indices=list(range(len(items))),
                errors=dict.fromkeys(range(len(items)), exc),
            )
            raise exc
        return real_run(items)

    monkeypatch.setattr(embedder.client, "_run", run)
    texts = ["a", "b", "poison", "d"]
    out = embedder(pa.table({"t": texts}))
    vectors = out.column("embedding").to_pylist()
    reasons = out.column("embedding_error").to_pylist()
    assert calls == [4, 1, 1, 1, 1]  # the call, then each refused input alone
    assert vectors[2] is None and "InvalidParameterError: HTTP 400" in reasons[2]
    expected = _expected(emu, ["a", "b", "d"])
    for i, j in ((0, 0), (1, 1), (3, 2)):
        np.testing.assert_array_equal(
            np.asarray(vectors[i], dtype=np.float32), np.asarray(expected[j], dtype=np.float32)
        )
        assert reasons[i] is None


def test_column_mistakes_are_clear(emu: Emulator) -> None:
    with pytest.raises(ConfigurationError, match="text_column='title': no such column"):
        _embedder(emu, text_column="title")(pa.table({"name": ["x"]}))
    with pytest.raises(ConfigurationError, match="already exists"):
        _embedder(emu, text_column="t")(pa.table({"t": ["x"], "embedding": [1]}))
    with pytest.raises(ConfigurationError, match="text_column"):
        Embedder(api_key=KEY, endpoint=emu.url)
    with pytest.raises(ConfigurationError, match="on_error"):
        _embedder(emu, text_column="t", on_error="skip")


def test_embed_dataset_checks_its_settings_on_the_driver(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opensearch_mm.ratelimit import FixedRateLimiter

    for name in ("OPENSEARCH_MM_API_KEY", "OPENSEARCH_MM_ENDPOINT", "OPENSEARCH_MM_WORKSPACE"):
        monkeypatch.delenv(name, raising=False)
    ds: Any = object()  # never reached: the settings fail first (and no Ray starts)
    with pytest.raises(ConfigurationError, match="no API key"):
        embed_dataset(ds, text_column="id", endpoint=emu.url, qps=None)
    with pytest.raises(ConfigurationError, match="rate_limiter= cannot be shipped"):
        embed_dataset(
            ds, text_column="id", api_key=KEY, endpoint=emu.url, rate_limiter=FixedRateLimiter(5)
        )
    with pytest.raises(ConfigurationError, match="give text_column"):
        embed_dataset(ds, api_key=KEY, endpoint=emu.url)
    # (Each of these passed the call and failed in every actor, or was ignored.)
    not_limits: list[Any] = [5, FixedRateLimiter(5)]
    for bad in not_limits:
        with pytest.raises(ConfigurationError, match="rate_limit must be an AccountRateLimit"):
            embed_dataset(ds, text_column="id", api_key=KEY, endpoint=emu.url, rate_limit=bad)
    for qps in (float("inf"), True, "fast"):
        with pytest.raises(ConfigurationError, match="qps must be"):
            embed_dataset(ds, text_column="id", api_key=KEY, endpoint=emu.url, qps=qps)
    limit = object.__new__(AccountRateLimit)  # (no coordinator: nothing may reach it)
    with pytest.raises(ConfigurationError, match="qps=None"):
        embed_dataset(
            ds, text_column="id", api_key=KEY, endpoint=emu.url, rate_limit=limit, qps=None
        )
    with pytest.raises(ConfigurationError, match="qps=None"):
        Embedder(text_column="id", api_key=KEY, endpoint=emu.url, rate_limit=limit, qps=None)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"qps": float("inf")}, "qps must be"),
        ({"qps": True}, "qps must be"),
        ({"horizon": 0}, "horizon must be"),
        ({"horizon": float("nan")}, "horizon must be"),
    ],
)
def test_account_rate_limit_checks_its_settings_before_starting_a_coordinator(
    options: dict[str, Any], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # (horizon=0 was accepted; the coordinator then died starting, and the job hung.)
    from opensearch_mm import ray as ray_module

    def no_coordinator() -> Any:
        raise AssertionError("a coordinator was started")

    monkeypatch.setattr(ray_module, "_coordinator_actor", no_coordinator)
    with pytest.raises(ConfigurationError, match=message):
        AccountRateLimit(**options)


@pytest.mark.filterwarnings("ignore:async_http_client= is deprecated")
@pytest.mark.parametrize("name", ["http_client", "http_async_client", "async_http_client"])
def test_embed_dataset_refuses_a_connection_pool_by_either_name(emu: Emulator, name: str) -> None:
    # A pool holds sockets and locks: it cannot travel to the actors, under the current
    # name or the deprecated one.
    import httpx

    pool: Any = httpx.Client() if name == "http_client" else httpx.AsyncClient()
    ds: Any = object()
    try:
        with pytest.raises(ConfigurationError, match=f"{name}= cannot be shipped"):
            embed_dataset(ds, text_column="id", api_key=KEY, endpoint=emu.url, **{name: pool})
    finally:
        if isinstance(pool, httpx.Client):
            pool.close()


def test_the_key_travels_hidden(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    from opensearch_mm import ray as ray_module

    monkeypatch.setenv("OPENSEARCH_MM_API_KEY", "env-secret-key-123")
    kwargs = ray_module._driver_kwargs({"endpoint": emu.url, "qps": None})
    assert "env-secret-key-123" not in repr(kwargs) and "env-secret-key-123" not in str(kwargs)
    assert kwargs["api_key"].get_secret_value() == "env-secret-key-123"
    assert kwargs["endpoint"] == emu.url


def test_a_dead_link_costs_only_its_row_and_is_named_when_raised() -> None:
    # The client halves the refused request down to the dead link alone: its row alone
    # is null (each refused input was then sent alone once more); raised, the error
    # names the row's link, not a position in a batch.
    urls = [f"https://example.com/{i}.jpg" for i in range(40)]
    urls[13] = "https://photos.invalid/13.jpg"
    with Emulator(api_key=KEY, qps=None, latency_ms=0) as emu:
        out = _embedder(emu, image_column="url", on_error="null")(pa.table({"url": urls}))
        vectors = out.column("embedding").to_pylist()
        assert [i for i, v in enumerate(vectors) if v is None] == [13]
        assert "cannot download" in out.column("embedding_error").to_pylist()[13]
        assert emu.stats.requests == 2 + 10  # requests of 32 and 8, then the halving
        with pytest.raises(InvalidParameterError) as info:
            _embedder(emu, image_column="url")(pa.table({"url": urls}))
    message = str(info.value)
    assert "photos.invalid/13.jpg" in message and "on_error='null'" in message
    assert "input 13" not in message  # (a position in the batch means nothing here)
