"""Client configuration: env vars, endpoint handling, key masking, transport warnings."""

from __future__ import annotations

import logging
import warnings

import pytest
from pydantic import SecretStr

from opensearch_mm import Content, MultiModalEmbeddingClient
from opensearch_mm.client import (
    ENV_API_KEY,
    ENV_ENDPOINT,
    ENV_WORKSPACE,
    InsecureTransportWarning,
)
from opensearch_mm.errors import ConfigurationError, InputError

KEY = "OS-very-secret-key-0123456789"
HOST = "ops-cn-hangzhou.opensearch.aliyuncs.com"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (ENV_API_KEY, ENV_ENDPOINT, ENV_WORKSPACE):
        monkeypatch.delenv(name, raising=False)


def make(**kw: object) -> MultiModalEmbeddingClient:
    kw.setdefault("qps", None)
    return MultiModalEmbeddingClient(**kw)  # type: ignore[arg-type]


def test_env_var_names() -> None:
    assert (ENV_API_KEY, ENV_ENDPOINT, ENV_WORKSPACE) == (
        "OPENSEARCH_MM_API_KEY",
        "OPENSEARCH_MM_ENDPOINT",
        "OPENSEARCH_MM_WORKSPACE",
    )


def test_env_fallbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_API_KEY, KEY)
    monkeypatch.setenv(ENV_ENDPOINT, HOST)
    monkeypatch.setenv(ENV_WORKSPACE, "ws1")
    with make() as c:
        assert c.base_url == f"https://{HOST}"
        assert c.workspace == "ws1"
        assert (
            c.url
            == f"https://{HOST}/v3/openapi/workspaces/ws1/multi-modal-embedding/ops-m2-encoder"
        )
        assert c._headers["Authorization"] == f"Bearer {KEY}"


def test_arguments_win_over_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_API_KEY, "env-key")
    monkeypatch.setenv(ENV_ENDPOINT, "env-host")
    monkeypatch.setenv(ENV_WORKSPACE, "env-ws")
    with make(api_key=KEY, endpoint="https://arg-host", workspace="arg-ws") as c:
        assert c.base_url == "https://arg-host"
        assert c.workspace == "arg-ws"
        assert c._headers["Authorization"] == f"Bearer {KEY}"


def test_default_workspace() -> None:
    with make(api_key=KEY, endpoint=HOST) as c:
        assert c.workspace == "default"
        assert c.model == "ops-m2-encoder"


def test_missing_key_names_env_var() -> None:
    with pytest.raises(ConfigurationError, match=ENV_API_KEY):
        make(endpoint=HOST)
    with pytest.raises(ConfigurationError, match=ENV_API_KEY):
        make(api_key="   ", endpoint=HOST)


def test_missing_endpoint_names_env_var() -> None:
    with pytest.raises(ConfigurationError, match=ENV_ENDPOINT):
        make(api_key=KEY)


def test_endpoint_without_scheme_is_https() -> None:
    with make(api_key=KEY, endpoint=HOST) as c:
        assert c.base_url == f"https://{HOST}"
        assert c.url.startswith(f"https://{HOST}/v3/openapi/")


@pytest.mark.parametrize("endpoint", ["ftp://host", "   ", "https://host?q=1"])
def test_bad_endpoint(endpoint: str) -> None:
    with pytest.raises(ConfigurationError):
        make(api_key=KEY, endpoint=endpoint)


def test_repr_masks_key() -> None:
    with make(api_key=KEY, endpoint=HOST) as c:
        r = repr(c)
        assert KEY not in r and "****" in r
        assert HOST in r
        assert KEY not in str(vars(c).get("base_url"))


def test_secretstr_key_accepted() -> None:
    with make(api_key=SecretStr(KEY), endpoint=HOST) as c:
        assert c._headers["Authorization"] == f"Bearer {KEY}"
        assert KEY not in repr(c)


def test_non_str_key_refused_without_echo() -> None:
    with pytest.raises(ConfigurationError) as ei:
        make(api_key=12345678, endpoint=HOST)
    assert "12345678" not in str(ei.value)


def test_plain_http_remote_warns(caplog: pytest.LogCaptureFixture) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="opensearch_mm"),
        pytest.warns(InsecureTransportWarning, match="plain http"),
    ):
        c = make(api_key=KEY, endpoint="http://ops-cn-hangzhou.opensearch.aliyuncs.com")
    c.close()
    assert KEY not in caplog.text


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://127.0.0.1:8080",
        "http://localhost:1",
        "http://[::1]:9",
        "http://127.3.4.5",
        "https://example.com",
        HOST,
    ],
)
def test_loopback_or_https_does_not_warn(endpoint: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", InsecureTransportWarning)
        make(api_key=KEY, endpoint=endpoint).close()


@pytest.mark.parametrize(
    ("model", "dims"),
    [
        ("ops-m2-encoder", 768),
        ("ops-m2-encoder-large", 1024),
        ("ops-gme-qwen2-vl-2b-instruct", 1536),
        ("ops-mm-embedding-v1-2b", 1536),
        ("some-new-model", None),
    ],
)
def test_dimensions(model: str, dims: int | None) -> None:
    with make(api_key=KEY, endpoint=HOST, model=model) as c:
        assert c.dimensions == dims


@pytest.mark.parametrize(
    "kw",
    [
        {"timeout": 0},
        {"timeout": -1},
        {"max_concurrency": 0},
        {"max_concurrency": 1.5},
        {"image_max_side": 4},
        {"max_retries": -1},
        {"qps": -3},
        {"model": ""},
        {"workspace": " "},
    ],
)
def test_bad_options(kw: dict[str, object]) -> None:
    with pytest.raises((ConfigurationError, ValueError)):
        make(api_key=KEY, endpoint=HOST, **kw)


@pytest.mark.parametrize(
    ("method", "value"),
    [
        ("embed_texts", "hello"),
        ("embed_texts", b"hello"),
        ("embed_images", "/tmp/a.png"),
        ("embed_images", b"\x89PNG"),
        ("embed", Content(text="x")),
        ("embed", {"text": "x"}),
        ("embed", "hello"),
        ("embed_texts", 5),
    ],
)
def test_single_value_refused(method: str, value: object) -> None:
    with make(api_key=KEY, endpoint=HOST) as c, pytest.raises(InputError, match="list"):
        getattr(c, method)(value)


async def test_single_value_refused_async() -> None:
    c = make(api_key=KEY, endpoint=HOST)
    with pytest.raises(InputError, match="list"):
        await c.aembed_texts("hello")
    await c.aclose()


def test_invalid_input_error_names_index_and_sends_nothing() -> None:
    with make(api_key=KEY, endpoint="http://127.0.0.1:9") as c:
        with pytest.raises(InputError) as ei:
            c.embed_texts(["ok", "fine", "  "])
        assert ei.value.index == 2 and "input 2" in str(ei.value)
        with pytest.raises(InputError) as ei:
            c.embed_texts(["ok", None])  # type: ignore[list-item]
        assert ei.value.index == 1


def test_empty_list_sends_nothing() -> None:
    with make(api_key=KEY, endpoint="http://127.0.0.1:9") as c:
        assert c.embed_texts([]) == []
        assert c.embed([]).embeddings == []


@pytest.mark.parametrize("option", [{"image_max_side": 512}, {"downscale_oversized": True}])
def test_pillow_options_fail_at_construction_without_pillow(
    monkeypatch: pytest.MonkeyPatch, option: dict[str, object]
) -> None:
    import opensearch_mm.images as images

    monkeypatch.setattr(images, "pillow_available", lambda: False)
    with pytest.raises(ConfigurationError, match=r"opensearch-mm\[images\]"):
        MultiModalEmbeddingClient(api_key="k", endpoint="https://example.invalid", **option)
