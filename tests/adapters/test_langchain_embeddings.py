"""``OpenSearchMultiModalEmbeddings``: configuration, secrets, behaviour against the emulator."""

from __future__ import annotations

import base64
import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langchain_tests.unit_tests import EmbeddingsUnitTests

from langchain_opensearch_mm import OpenSearchMultiModalEmbeddings
from opensearch_mm import (
    AuthenticationError,
    ConfigurationError,
    Content,
    InputError,
    MultiModalEmbeddingClient,
    QuotaExceededError,
)
from opensearch_mm.emulator import Emulator
from tests.support.doubles import RecordingBar
from tests.support.images import tiny_png, tiny_png_file

KEY = "sk-lc-test-0123456789"
ENV_VARS = ("OPENSEARCH_MM_API_KEY", "OPENSEARCH_MM_ENDPOINT", "OPENSEARCH_MM_WORKSPACE")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(api_key=KEY, qps=None, latency_ms=0) as server:
        yield server


@pytest.fixture
def fresh(emu: Emulator) -> Emulator:
    """The shared emulator with its counters zeroed and no pending faults."""
    emu.clear_faults()
    emu.reset_stats()
    return emu


def make(emu: Emulator, **kwargs: Any) -> OpenSearchMultiModalEmbeddings:
    options: dict[str, Any] = {"api_key": KEY, "endpoint": emu.url, "qps": None}
    options.update(kwargs)
    return OpenSearchMultiModalEmbeddings(**options)


def core(emu: Emulator, model: str = "ops-m2-encoder") -> MultiModalEmbeddingClient:
    return MultiModalEmbeddingClient(api_key=KEY, endpoint=emu.url, qps=None, model=model)


def api_inputs(emu: Emulator) -> list[int]:
    """``n_inputs`` of the API requests the emulator saw, sorted."""
    return sorted(r.n_inputs or 0 for r in emu.requests_log)


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


# -- the LangChain standard unit suite -------------------------------------------------------


class TestStandardUnit(EmbeddingsUnitTests):
    @property
    def embeddings_class(self) -> type[OpenSearchMultiModalEmbeddings]:
        return OpenSearchMultiModalEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"api_key": KEY, "endpoint": "https://unit.invalid"}

    @property
    def init_from_env_params(self) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
        return (
            {
                "OPENSEARCH_MM_API_KEY": "env-key",
                "OPENSEARCH_MM_ENDPOINT": "https://env.invalid",
                "OPENSEARCH_MM_WORKSPACE": "ws-env",
            },
            {"model": "ops-m2-encoder-large"},
            {
                "api_key": "env-key",
                "endpoint": "https://env.invalid",
                "workspace": "ws-env",
                "model": "ops-m2-encoder-large",
                "dimensions": 1024,
            },
        )


# -- configuration ---------------------------------------------------------------------------


def test_defaults_match_the_core_client() -> None:
    emb = OpenSearchMultiModalEmbeddings(api_key=KEY, endpoint="https://h.invalid")
    params = inspect.signature(MultiModalEmbeddingClient.__init__).parameters
    for name in (
        "model",
        "timeout",
        "max_retries",
        "max_concurrency",
        "qps",
        "image_max_side",
        "downscale_oversized",
    ):
        assert getattr(emb, name) == params[name].default, name
    assert emb.workspace == "default"
    assert emb.dimensions == 768


def test_fields_reach_the_core_client() -> None:
    emb = OpenSearchMultiModalEmbeddings(
        api_key=KEY,
        endpoint="https://h.invalid",
        workspace="ws1",
        model="ops-m2-encoder-large",
        timeout=5,
        max_retries=2,
        max_concurrency=3,
        qps=4.0,
    )
    client = emb.client
    assert client.url == (
        "https://h.invalid/v3/openapi/workspaces/ws1/multi-modal-embedding/ops-m2-encoder-large"
    )
    assert (client.timeout, client.max_concurrency) == (5.0, 3)
    assert client.retry_policy.max_retries == 2
    assert type(client.rate_limiter).__name__ == "FixedRateLimiter"
    assert emb.dimensions == 1024


def test_missing_api_key_names_the_env_var() -> None:
    with pytest.raises(ConfigurationError, match="OPENSEARCH_MM_API_KEY"):
        OpenSearchMultiModalEmbeddings(endpoint="https://h.invalid")


def test_missing_endpoint_names_the_env_var() -> None:
    with pytest.raises(ConfigurationError, match="OPENSEARCH_MM_ENDPOINT"):
        OpenSearchMultiModalEmbeddings(api_key=KEY)


def test_core_configuration_errors_surface_unwrapped() -> None:
    with pytest.raises(ConfigurationError, match="timeout"):
        OpenSearchMultiModalEmbeddings(api_key=KEY, endpoint="https://h.invalid", timeout=0)
    with pytest.raises(ConfigurationError, match="qps"):
        OpenSearchMultiModalEmbeddings(api_key=KEY, endpoint="https://h.invalid", qps=-1)


def test_unknown_field_is_refused_naming_the_nearest_one() -> None:
    with pytest.raises(TypeError, match=r"'modelname'; did you mean 'model(_name)?'"):
        OpenSearchMultiModalEmbeddings(api_key=KEY, endpoint="https://h.invalid", modelname="x")
    with pytest.raises(TypeError, match="'batch_size'"):
        OpenSearchMultiModalEmbeddings(api_key=KEY, endpoint="https://h.invalid", batch_size=5)


def test_fields_are_frozen_so_the_client_cannot_drift() -> None:
    emb = OpenSearchMultiModalEmbeddings(api_key=KEY, endpoint="https://h.invalid")
    with pytest.raises(ValueError, match="frozen"):
        emb.model = "ops-m2-encoder-large"
    assert emb.client.model == "ops-m2-encoder"


def test_api_key_never_shown() -> None:
    emb = OpenSearchMultiModalEmbeddings(api_key=KEY, endpoint="https://h.invalid")
    shown = [
        repr(emb),
        str(emb),
        str(emb.model_dump()),
        emb.model_dump_json(),
        repr(emb.client),
        str(emb.model_fields_set),
    ]
    for text in shown:
        assert KEY not in text
    assert emb.api_key is not None
    assert emb.api_key.get_secret_value() == KEY
    assert "api_key" not in emb.model_dump(mode="json")


def test_api_key_from_env_is_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENSEARCH_MM_API_KEY", KEY)
    emb = OpenSearchMultiModalEmbeddings(endpoint="https://h.invalid")
    assert emb.api_key is not None
    assert emb.api_key.get_secret_value() == KEY
    assert KEY not in repr(emb) and KEY not in emb.model_dump_json()


def test_wrong_key_raises_authentication_error_without_the_key(fresh: Emulator) -> None:
    emb = make(fresh, api_key="sk-wrong-key-987654", max_retries=0)
    with pytest.raises(AuthenticationError) as info:
        emb.embed_query("hello")
    assert "sk-wrong-key-987654" not in str(info.value)
    assert "sk-wrong-key-987654" not in repr(info.value)


# -- texts -----------------------------------------------------------------------------------


def test_embed_documents_sends_one_request_per_32_inputs_in_order(fresh: Emulator) -> None:
    texts = [f"document number {i}" for i in range(70)]
    vectors = make(fresh).embed_documents(texts)
    assert fresh.stats.requests == 3
    assert api_inputs(fresh) == [6, 32, 32]
    with core(fresh) as reference:
        expected = [reference.embed_texts([t])[0] for t in texts]
    assert vectors == expected
    assert len({tuple(v) for v in vectors}) == 70


async def test_aembed_documents_sends_one_request_per_32_inputs_in_order(
    fresh: Emulator,
) -> None:
    texts = [f"async document {i}" for i in range(70)]
    emb = make(fresh)
    vectors = await emb.aembed_documents(texts)
    await emb.aclose()
    assert fresh.stats.requests == 3
    assert api_inputs(fresh) == [6, 32, 32]
    with core(fresh) as reference:
        assert vectors == [reference.embed_texts([t])[0] for t in texts]


def test_embed_query_equals_the_matching_document_vector(fresh: Emulator) -> None:
    emb = make(fresh)
    docs = emb.embed_documents(["alpha", "beta"])
    query = emb.embed_query("beta")
    assert query == docs[1]
    assert len(query) == 768 and all(isinstance(x, float) for x in query)
    assert fresh.stats.requests == 2


async def test_aembed_query_matches_sync(fresh: Emulator) -> None:
    emb = make(fresh)
    assert await emb.aembed_query("gamma") == emb.embed_query("gamma")
    await emb.aclose()


def test_empty_document_list_sends_nothing(fresh: Emulator) -> None:
    assert make(fresh).embed_documents([]) == []
    assert fresh.stats.requests == 0


def test_invalid_text_is_an_input_error_and_sends_nothing(fresh: Emulator) -> None:
    with pytest.raises(InputError) as info:
        make(fresh).embed_documents(["fine", "   "])
    assert info.value.index == 1
    assert fresh.stats.requests == 0


def test_quota_error_surfaces_as_core_exception(fresh: Emulator) -> None:
    fresh.inject("quota")
    with pytest.raises(QuotaExceededError):
        make(fresh).embed_query("hello")


async def test_async_errors_surface_as_core_exceptions(fresh: Emulator) -> None:
    fresh.inject("quota")
    emb = make(fresh)
    with pytest.raises(QuotaExceededError):
        await emb.aembed_documents(["hello"])
    await emb.aclose()


def test_transient_errors_are_retried_by_the_core(fresh: Emulator) -> None:
    fresh.inject("server_error", 2, retry_after=0)
    vector = make(fresh).embed_query("retry me")
    assert len(vector) == 768
    assert fresh.stats.by_status.get(500) == 2 and fresh.stats.by_status.get(200) == 1


def test_injected_http_client_is_used_and_left_open(fresh: Emulator) -> None:
    seen: list[str] = []
    http = httpx.Client(event_hooks={"request": [lambda r: seen.append(r.url.path)]})
    emb = make(fresh, http_client=http)
    emb.embed_documents(["one", "two"])
    emb.close()
    assert seen == ["/v3/openapi/workspaces/default/multi-modal-embedding/ops-m2-encoder"]
    assert not http.is_closed
    http.close()


async def test_injected_async_http_client_is_used(fresh: Emulator) -> None:
    seen: list[str] = []

    async def hook(request: httpx.Request) -> None:
        seen.append(request.method)

    http = httpx.AsyncClient(event_hooks={"request": [hook]})
    emb = make(fresh, http_async_client=http)
    await emb.aembed_query("one")
    await emb.aclose()
    assert seen == ["POST"]
    assert not http.is_closed
    await http.aclose()


# -- images ----------------------------------------------------------------------------------


def test_embed_image_path_data_uri_and_url(fresh: Emulator, tmp_path: Path) -> None:
    path = tiny_png_file(tmp_path, "red.png", "red")
    url = "https://example.com/cat.png"
    vectors = make(fresh).embed_image([str(path), data_uri(tiny_png("red")), url])
    # the path and the data URI carry the same bytes: sent once, vector reused
    assert fresh.stats.requests == 1 and api_inputs(fresh) == [2]
    with core(fresh) as reference:
        assert vectors == [
            reference.embed_images([x])[0] for x in (str(path), data_uri(tiny_png("red")), url)
        ]
    # a path is sent as the data URI of its bytes: same image, same vector
    assert vectors[0] == vectors[1]
    assert vectors[2] != vectors[0]


async def test_aembed_image_matches_sync(fresh: Emulator, tmp_path: Path) -> None:
    paths = [str(tiny_png_file(tmp_path, f"{c}.png", c)) for c in ("red", "green", "blue")]
    emb = make(fresh)
    vectors = await emb.aembed_image(paths)
    assert vectors == emb.embed_image(paths)
    await emb.aclose()
    assert len({tuple(v) for v in vectors}) == 3


def test_embed_image_batches_like_texts(fresh: Emulator, tmp_path: Path) -> None:
    from PIL import Image

    paths = []
    for i in range(33):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.new("RGB", (8, 8), (i, 2 * i, 255 - i)).save(paths[-1])
    vectors = make(fresh).embed_image(paths)
    assert len(vectors) == 33
    assert api_inputs(fresh) == [1, 32]


def test_embed_image_sends_repeated_images_once(fresh: Emulator, tmp_path: Path) -> None:
    paths = [str(tiny_png_file(tmp_path, f"{i}.png", "blue")) for i in range(33)]
    vectors = make(fresh).embed_image(paths)
    assert len(vectors) == 33 and all(v == vectors[0] for v in vectors)
    assert api_inputs(fresh) == [1]


def test_missing_image_file_is_an_input_error(fresh: Emulator, tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        make(fresh).embed_image([str(tmp_path / "nope.png")])
    assert info.value.index == 0 and info.value.field == "image"
    assert fresh.stats.requests == 0


# -- text + image ----------------------------------------------------------------------------


def test_embed_multimodal_mixed_single_inputs(fresh: Emulator, tmp_path: Path) -> None:
    path = tiny_png_file(tmp_path, "g.png", "green")
    emb = make(fresh)
    vectors = emb.embed_multimodal(["a caption", {"image": str(path)}, Content(text="other")])
    assert fresh.stats.requests == 1
    assert vectors[0] == emb.embed_query("a caption")
    assert vectors[1] == emb.embed_image([str(path)])[0]
    assert vectors[2] == emb.embed_query("other")


def test_combined_input_refused_on_m2_encoder(fresh: Emulator, tmp_path: Path) -> None:
    path = tiny_png_file(tmp_path, "g.png", "green")
    with pytest.raises(InputError, match="ignores the image"):
        make(fresh).embed_multimodal([{"text": "caption", "image": str(path)}])
    assert fresh.stats.requests == 0


async def test_combined_input_on_gme_model(fresh: Emulator, tmp_path: Path) -> None:
    path = str(tiny_png_file(tmp_path, "g.png", "green"))
    emb = make(fresh, model="ops-gme-qwen2-vl-2b-instruct")
    combined = emb.embed_multimodal([Content(text="caption", image=path)])[0]
    assert len(combined) == 1536 == emb.dimensions
    assert combined not in (emb.embed_query("caption"), emb.embed_image([path])[0])
    assert await emb.aembed_multimodal([{"text": "caption", "image": path}]) == [combined]
    await emb.aclose()


# -- show_progress_bar -------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["embed_documents", "aembed_documents", "embed_image"])
def test_show_progress_bar_moves_per_request_answered(
    fresh: Emulator, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    """As langchain-openai's field of that name: a bar per call of several inputs, moved
    by each request's inputs as it is answered (not once, when the call returns)."""
    import asyncio

    import langchain_opensearch_mm.embeddings as module

    bars: list[RecordingBar] = []

    def progress_bar(inputs: Any, option: str) -> RecordingBar:
        assert option == "show_progress_bar=True"
        bars.append(RecordingBar(len(inputs)))
        return bars[-1]

    monkeypatch.setattr(module, "progress_bar", progress_bar)
    emb = make(fresh, show_progress_bar=True, max_concurrency=2)
    texts = [f"text {i}" for i in range(70)]
    if method == "embed_image":
        emb.embed_image([data_uri(tiny_png())] * 40)
        expected = [40]  # one image, sent once: its 40 inputs done by one request
    elif method == "embed_documents":
        emb.embed_documents(texts)
        expected = [6, 32, 32]
    else:
        asyncio.run(emb.aembed_documents(texts))
        expected = [6, 32, 32]
    (bar,) = bars
    assert sorted(bar.steps) == expected and bar.total == sum(expected) and bar.closed
    emb.embed_query("one question")  # a single query draws no bar
    assert len(bars) == 1
    assert make(fresh).show_progress_bar is False
    assert emb.model_copy().show_progress_bar is True


def test_show_progress_bar_without_tqdm_fails_at_construction(
    fresh: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "tqdm" else real(name, *a)
    )
    with pytest.raises(
        ConfigurationError, match=r"show_progress_bar=True needs tqdm.*\[progress\]"
    ):
        make(fresh, show_progress_bar=True)
    make(fresh).embed_documents(["without a bar, no tqdm needed"])
