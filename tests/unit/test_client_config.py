"""Client configuration: env vars, endpoint handling, key masking, transport warnings."""

from __future__ import annotations

import logging
import warnings
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

import opensearch_mm
from opensearch_mm import Content, MultiModalEmbeddingClient, RetryPolicy, errors
from opensearch_mm.client import (
    ENV_API_KEY,
    ENV_ENDPOINT,
    ENV_WORKSPACE,
    InsecureTransportWarning,
)
from opensearch_mm.errors import ConfigurationError, InputError, OpenSearchMMError

# Looked up when a test runs (not at import), so each test fails on its own without them.
ClientConfig: type[opensearch_mm.ClientConfig] | None = getattr(opensearch_mm, "ClientConfig", None)
ClientClosedError = getattr(errors, "ClientClosedError", type(None))
DEFAULT_WORKSPACE = getattr(opensearch_mm, "DEFAULT_WORKSPACE", None)

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


@pytest.mark.parametrize(
    ("key", "kind", "position"),
    [
        (KEY[:6] + "\n" + KEY[6:], "control", 7),
        (KEY[:6] + "\x00" + KEY[6:], "control", 7),
        (KEY + "\u2019", "non-ASCII", len(KEY) + 1),
        ("OS-clé-" + KEY, "non-ASCII", 6),
    ],
    ids=["newline", "nul", "smart-quote", "accent"],
)
def test_a_key_no_http_header_can_carry_is_refused_without_echo(
    key: str, kind: str, position: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Sent as it is, it failed at the connection, the whole header (the key) in the message.
    for how in ("argument", "env") if "\x00" not in key else ("argument",):
        if how == "env":  # (an environment variable cannot hold a NUL)
            monkeypatch.setenv("OPENSEARCH_MM_API_KEY", key)
        with pytest.raises(ConfigurationError) as ei:
            make(api_key=None if how == "env" else key, endpoint=HOST)
        message = str(ei.value)
        assert f"a {kind} character (character {position} of {len(key)})" in message, how
        assert KEY[6:] not in message and KEY[:6] not in message, how


def test_a_key_read_with_its_line_break_is_stripped() -> None:
    with make(api_key=f"  {KEY}\n", endpoint=HOST) as c:
        assert c._headers["Authorization"] == f"Bearer {KEY}"


def test_a_rate_limiter_of_another_library_is_refused_by_name() -> None:
    # LlamaIndex's and others' limiters have an acquire() too; the drivers need the whole
    # opensearch_mm.RateLimiter interface (confirm, observe, ...), and would fail mid-call.
    class TokenBucket:
        def acquire(self) -> None:
            return None

    with pytest.raises(ConfigurationError, match=r"RateLimiter.*got TokenBucket"):
        make(api_key=KEY, endpoint=HOST, rate_limiter=TokenBucket())


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


def test_only_https_endpoints_load_the_ca_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading the CA bundle is the largest part of building a client; a plain-http
    endpoint (the emulator) never does TLS and gets a context that trusts nothing."""
    import ssl

    from opensearch_mm import _config

    made: list[ssl.SSLContext] = []

    def create_ssl_context() -> ssl.SSLContext:
        made.append(ssl.create_default_context())
        return made[-1]

    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(_config, "_SSL_CONTEXT", None)
    monkeypatch.setattr(httpx, "create_ssl_context", create_ssl_context)
    make(api_key=KEY, endpoint="http://127.0.0.1:9").close()
    assert made == []
    plain = _config.ssl_context("http://127.0.0.1:9")
    assert plain.verify_mode == ssl.CERT_REQUIRED and plain.check_hostname
    assert plain.cert_store_stats()["x509_ca"] == 0  # fails closed were it ever used
    for _ in range(2):
        make(api_key=KEY, endpoint=HOST).close()
    assert len(made) == 1  # https: the default context, once per process
    assert _config.ssl_context("https://" + HOST) is made[0]
    # ... and for http through an https proxy: the proxy's connection is TLS
    monkeypatch.setenv("HTTP_PROXY", "https://proxy.example:3128")
    assert _config.ssl_context("http://127.0.0.1:9") is made[0]


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
    monkeypatch: pytest.MonkeyPatch, option: dict[str, Any]
) -> None:
    import opensearch_mm.images as images

    monkeypatch.setattr(images, "pillow_available", lambda: False)
    with pytest.raises(ConfigurationError, match=r"opensearch-mm\[images\]"):
        MultiModalEmbeddingClient(api_key="k", endpoint="https://example.invalid", **option)


# -- every bad option is a ConfigurationError that names the option ------------------


@pytest.mark.parametrize(
    ("kw", "name"),
    [
        ({"max_retries": -1}, "max_retries"),
        ({"max_retries": None}, "max_retries"),
        ({"max_retries": 2.5}, "max_retries"),
        ({"max_retries": True}, "max_retries"),
        ({"timeout": "x"}, "timeout"),
        ({"timeout": None}, "timeout"),
        ({"timeout": float("nan")}, "timeout"),
        ({"timeout": float("inf")}, "timeout"),
        ({"max_concurrency": "8"}, "max_concurrency"),
        ({"max_concurrency": True}, "max_concurrency"),
        ({"qps": "fast"}, "qps"),
        ({"qps": 0}, "qps"),
        ({"qps": True}, "qps"),
        ({"image_max_side": "big"}, "image_max_side"),
        ({"downscale_oversized": "yes"}, "downscale_oversized"),
        ({"retry_policy": 3}, "retry_policy"),
        ({"rate_limiter": "adaptive"}, "rate_limiter"),
        ({"endpoint": 42}, "endpoint"),
        ({"workspace": 7}, "workspace"),
        ({"model": 5}, "model"),
    ],
)
def test_bad_option_is_configuration_error_naming_it(kw: dict[str, object], name: str) -> None:
    kw.setdefault("endpoint", HOST)
    with pytest.raises(ConfigurationError, match=name):
        make(api_key=KEY, **kw)


def test_max_retries_none_hints_at_zero() -> None:
    with pytest.raises(ConfigurationError, match="use 0 to disable retries"):
        make(api_key=KEY, endpoint=HOST, max_retries=None)


def test_retry_policy_fields_checked() -> None:
    with pytest.raises(ConfigurationError, match="max_retries"):
        RetryPolicy(max_retries=None)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="initial_delay"):
        RetryPolicy(initial_delay=-1)


def test_config_is_a_frozen_value_resolved_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_API_KEY, KEY)
    monkeypatch.setenv(ENV_ENDPOINT, HOST)
    assert ClientConfig is not None
    config = ClientConfig.resolve(max_retries=2, qps=5)
    assert config == ClientConfig.resolve(max_retries=2, qps=5)
    assert config.retry_policy.max_retries == 2 and config.qps == 5.0
    assert config.workspace == DEFAULT_WORKSPACE
    assert config.origin == f"https://{HOST}:443"
    assert KEY not in repr(config) and "****" in repr(config)
    with pytest.raises(AttributeError):
        config.timeout = 1.0  # type: ignore[misc]
    with make() as c:
        assert c.config == ClientConfig.resolve(qps=None)


def test_origin_names_scheme_host_and_port() -> None:
    assert ClientConfig is not None
    config = ClientConfig.resolve(api_key=KEY, endpoint="http://[::1]:8080/prefix")
    assert config.origin == "http://[::1]:8080"
    assert ClientConfig.resolve(api_key=KEY, endpoint="http://h").origin == "http://h:80"


# -- one name per knob ----------------------------------------------------------------


async def test_http_async_client_is_used() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        return httpx.Response(200, json=_ok_body(1))

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    c = make(api_key=KEY, endpoint=HOST, model="new-model", http_async_client=http)
    assert await c.aembed_texts(["a"]) == [[0.5, 0.5]]
    assert seen == [f"Bearer {KEY}"]
    await c.aclose()
    assert not http.is_closed  # injected: the caller closes it
    await http.aclose()


async def test_async_http_client_still_accepted_with_deprecation_warning() -> None:
    http = httpx.AsyncClient(
        transport=httpx.MockTransport(lambda r: httpx.Response(200, json=_ok_body(1)))
    )
    with pytest.warns(DeprecationWarning, match="http_async_client"):
        c = make(api_key=KEY, endpoint=HOST, model="new-model", async_http_client=http)
    assert await c.aembed_texts(["a"]) == [[0.5, 0.5]]
    await c.aclose()
    await http.aclose()


def _ok_body(n: int) -> dict[str, object]:
    return {
        "request_id": "rid",
        "result": {"embeddings": [{"index": i, "embedding": [0.5, 0.5]} for i in range(n)]},
        "usage": {"token_count": n},
    }


# -- lifecycle ------------------------------------------------------------------------


def test_calls_after_close_raise_client_closed_error() -> None:
    c = make(api_key=KEY, endpoint="http://127.0.0.1:9")
    assert not c.is_closed
    c.close()
    assert c.is_closed
    for call in (
        lambda: c.embed_texts(["a"]),
        lambda: c.embed([Content(text="a")]),
        lambda: c.embed_images([b"x"]),
        lambda: list(c.embed_iter(["a"])),
    ):
        with pytest.raises(ClientClosedError, match="closed"):
            call()
    c.close()  # idempotent


def test_closed_client_never_rebuilds_its_thread_pool() -> None:
    c = make(api_key=KEY, endpoint="http://127.0.0.1:9")
    c.close()
    with pytest.raises(ClientClosedError):
        c._sync._pool()
    assert c._sync._executor is None


async def test_async_calls_after_aclose_raise_client_closed_error() -> None:
    c = make(api_key=KEY, endpoint="http://127.0.0.1:9")
    await c.aclose()
    assert c.is_closed
    with pytest.raises(ClientClosedError):
        await c.aembed_texts(["a"])
    with pytest.raises(ClientClosedError):
        [v async for v in c.aembed_iter(["a"])]
    with pytest.raises(ClientClosedError):
        c.embed_texts(["a"])


def test_client_closed_error_is_ours_and_a_runtime_error() -> None:
    assert issubclass(ClientClosedError, OpenSearchMMError)
    assert issubclass(ClientClosedError, RuntimeError)


# -- the public surface ---------------------------------------------------------------


def test_what_the_adapters_need_is_exported() -> None:
    import opensearch_mm
    from opensearch_mm.images import ImageInput
    from opensearch_mm.inputs import require_many

    for name in opensearch_mm.__all__:
        assert hasattr(opensearch_mm, name), name
    assert opensearch_mm.DEFAULT_WORKSPACE == "default"
    assert opensearch_mm.ENV_API_KEY == ENV_API_KEY
    assert opensearch_mm.ImageInput is ImageInput
    assert opensearch_mm.require_many is require_many
    assert opensearch_mm.ClientConfig is ClientConfig
    import opensearch_mm.client as client_module

    assert "DEFAULT_WORKSPACE" in client_module.__all__


def test_settings_rebuild_an_equal_client_and_never_hold_the_key() -> None:
    policy = RetryPolicy(max_retries=2)
    with make(api_key=KEY, endpoint=HOST, qps=7, retry_policy=policy, image_max_side=512) as client:
        settings = client.settings()
        assert KEY not in repr(settings)
        assert settings["qps"] == 7.0 and settings["max_retries"] == 2
        assert settings["image_max_side"] == 512
        settings.pop("rate_limiter")
        with make(api_key=KEY, **settings) as twin:
            assert {k: v for k, v in twin.settings().items() if k != "rate_limiter"} == settings


def test_policy_fields_must_describe_the_objects_given() -> None:
    fields: dict[str, object] = {"retry_policy": RetryPolicy(max_retries=3)}
    opensearch_mm.mirror_policy_fields(fields)
    assert fields["max_retries"] == 3
    with pytest.raises(ConfigurationError, match="max_retries=1 disagrees"):
        opensearch_mm.mirror_policy_fields(
            {"retry_policy": RetryPolicy(max_retries=3), "max_retries": 1}
        )
    with pytest.raises(ConfigurationError, match="not both"):
        opensearch_mm.mirror_policy_fields(
            {"rate_limiter": opensearch_mm.AdaptiveRateLimiter(), "qps": 5}
        )
    limited: dict[str, object] = {"rate_limiter": opensearch_mm.FixedRateLimiter(4)}
    opensearch_mm.mirror_policy_fields(limited)
    assert limited["qps"] == 4.0
