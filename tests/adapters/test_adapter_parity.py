"""Both adapters, side by side: settings honoured or refused, copies, pickles, JSON, usage.

Each test runs against the LangChain and the LlamaIndex adapter alike, against the emulator.
"""

from __future__ import annotations

import asyncio
import copy
import io
import json
import multiprocessing
import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from PIL import Image

from langchain_opensearch_mm import OpenSearchMultiModalEmbeddings
from llamaindex_opensearch_mm import OpenSearchMultiModalEmbedding
from opensearch_mm import (
    ConfigurationError,
    FixedRateLimiter,
    MultiModalEmbeddingClient,
    OpenSearchMMError,
    RetryPolicy,
    Usage,
)
from opensearch_mm.emulator import Emulator

KEY = "sk-parity-SECRET-0123456789"
GME = "ops-gme-qwen2-vl-2b-instruct"
ENV_VARS = ("OPENSEARCH_MM_API_KEY", "OPENSEARCH_MM_ENDPOINT", "OPENSEARCH_MM_WORKSPACE")


@dataclass(frozen=True)
class Kind:
    """How to drive one adapter: its class, its name for the model field, its calls."""

    name: str
    cls: type[Any]
    model_field: str

    def texts(self, adapter: Any, texts: list[str]) -> list[list[float]]:
        if isinstance(adapter, OpenSearchMultiModalEmbeddings):
            return adapter.embed_documents(texts)
        return adapter.get_text_embedding_batch(texts)  # type: ignore[no-any-return]

    async def atexts(self, adapter: Any, texts: list[str]) -> list[list[float]]:
        if isinstance(adapter, OpenSearchMultiModalEmbeddings):
            return await adapter.aembed_documents(texts)
        return await adapter.aget_text_embedding_batch(texts)  # type: ignore[no-any-return]

    def images(self, adapter: Any, images: list[Any]) -> list[list[float]]:
        if isinstance(adapter, OpenSearchMultiModalEmbeddings):
            return adapter.embed_image(images)
        return adapter.get_image_embedding_batch(images)  # type: ignore[no-any-return]


LANGCHAIN = Kind("langchain", OpenSearchMultiModalEmbeddings, "model")
LLAMAINDEX = Kind("llamaindex", OpenSearchMultiModalEmbedding, "model_name")


@pytest.fixture(params=[LANGCHAIN, LLAMAINDEX], ids=lambda k: k.name)
def kind(request: pytest.FixtureRequest) -> Kind:
    return request.param  # type: ignore[no-any-return]


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
    emu.clear_faults()
    emu.reset_stats()
    return emu


def build(kind: Kind, emu: Emulator, **options: Any) -> Any:
    settings: dict[str, Any] = {"api_key": KEY, "endpoint": emu.url, "qps": None}
    settings.update(options)
    return kind.cls(**settings)


def models_requested(emu: Emulator) -> list[str]:
    return [rec.path.rsplit("/", 1)[-1] for rec in emu.requests_log]


def big_png(side: int = 256) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (side, side), (200, 30, 60)).save(buf, "PNG")
    return buf.getvalue()


# -- 1. every setting is honoured or refused ------------------------------------------------


@pytest.mark.parametrize("keyword", ["model", "model_name"])
def test_both_names_of_the_model_select_the_model_requests_go_to(
    kind: Kind, fresh: Emulator, keyword: str
) -> None:
    adapter = build(kind, fresh, **{keyword: GME})
    assert getattr(adapter, kind.model_field) == GME
    assert adapter.dimensions == 1536
    [vector] = kind.texts(adapter, ["a red bicycle"])
    assert len(vector) == 1536
    assert models_requested(fresh) == [GME]


def test_model_and_model_name_that_disagree_are_refused(kind: Kind, fresh: Emulator) -> None:
    with pytest.raises(ConfigurationError, match="disagree"):
        build(kind, fresh, model=GME, model_name="ops-m2-encoder")


@pytest.mark.parametrize(
    ("wrong", "nearest"),
    [("modelname", "model"), ("image_max_sid", "image_max_side"), ("downscale", "downscale")],
)
def test_unknown_keywords_raise_naming_the_nearest_valid_one(
    kind: Kind, fresh: Emulator, wrong: str, nearest: str
) -> None:
    with pytest.raises(TypeError, match=rf"unexpected keyword argument '{wrong}'.*'{nearest}"):
        build(kind, fresh, **{wrong: 1})
    assert fresh.stats.requests == 0


def test_image_options_are_honoured(kind: Kind, fresh: Emulator) -> None:
    png = big_png()
    adapter = build(kind, fresh, image_max_side=32, downscale_oversized=True)
    assert adapter.image_max_side == 32 and adapter.downscale_oversized is True
    options = adapter.client.encode_options
    assert (options.image_max_side, options.downscale_oversized) == (32, True)
    with (
        MultiModalEmbeddingClient(
            api_key=KEY, endpoint=fresh.url, qps=None, image_max_side=32
        ) as small,
        MultiModalEmbeddingClient(api_key=KEY, endpoint=fresh.url, qps=None) as full,
    ):
        shrunk, original = small.embed_images([png])[0], full.embed_images([png])[0]
    assert shrunk != original
    assert kind.images(adapter, [png]) == [shrunk]


def test_assignment_after_construction_never_disagrees_with_requests(
    kind: Kind, fresh: Emulator
) -> None:
    adapter = build(kind, fresh)
    if kind is LANGCHAIN:
        with pytest.raises(ValueError, match="frozen"):
            adapter.model = GME
        with pytest.raises(ValueError, match="frozen"):
            adapter.endpoint = "https://elsewhere.invalid"
    else:
        adapter.model_name = GME
        assert adapter.client.model == GME and adapter.dimensions == 1536
        with pytest.raises(ConfigurationError, match="timeout"):
            adapter.timeout = 0
        assert adapter.timeout == 60.0 and adapter.client.timeout == 60.0
    kind.texts(adapter, ["hello"])
    assert models_requested(fresh) == [getattr(adapter, kind.model_field)]


def test_assigning_the_endpoint_moves_the_requests(fresh: Emulator) -> None:
    adapter = build(LLAMAINDEX, fresh)
    with Emulator(api_key=KEY, qps=None) as other:
        adapter.endpoint = other.url
        adapter.get_text_embedding("hello")
        assert other.stats.requests == 1
    assert fresh.stats.requests == 0


def test_an_assignment_leaves_a_call_running_in_another_thread_to_finish() -> None:
    # An index built in one thread while another changes a setting: the call goes on
    # over the client it started on (closing that client at once failed it part-way),
    # which closes with the adapter.
    import threading

    with Emulator(api_key=KEY, qps=None, latency_ms=50) as slow:
        adapter = build(LLAMAINDEX, slow, max_concurrency=1)
        first = adapter.client
        texts = [f"text {i}" for i in range(320)]  # ten requests one after the other
        result: list[Any] = []
        worker = threading.Thread(target=lambda: result.append(kind_texts(adapter, texts)))
        worker.start()
        while slow.stats.requests < 2:
            threading.Event().wait(0.01)
        adapter.timeout = 30.0
        worker.join(30)
        assert len(result) == 1 and len(result[0]) == 320
        assert adapter.client is not first and not first.is_closed
        adapter.close()
        assert first.is_closed and adapter.client.is_closed


def kind_texts(adapter: Any, texts: list[str]) -> list[list[float]]:
    return LLAMAINDEX.texts(adapter, texts)


def test_model_copy_update_rebuilds_the_core_client(kind: Kind, fresh: Emulator) -> None:
    adapter = build(kind, fresh)
    other = adapter.model_copy(update={kind.model_field: GME})
    assert other.client is not adapter.client
    assert getattr(other, kind.model_field) == other.client.model == GME
    kind.texts(other, ["one"])
    kind.texts(adapter, ["two"])
    assert models_requested(fresh) == [GME, "ops-m2-encoder"]


@pytest.mark.parametrize(
    ("built", "update", "expect"),
    [
        ({}, {"retry_policy": RetryPolicy(max_retries=2)}, {"max_retries": 2}),
        ({"retry_policy": RetryPolicy(max_retries=2)}, {"max_retries": 0}, {"max_retries": 0}),
        ({}, {"rate_limiter": FixedRateLimiter(5)}, {"qps": 5.0}),
        ({"rate_limiter": FixedRateLimiter(5)}, {"qps": 7.0}, {"qps": 7.0}),
        ({"rate_limiter": FixedRateLimiter(5)}, {"qps": None}, {"qps": None}),
    ],
    ids=["policy", "retries-of-a-policy", "limiter", "qps-for-a-limiter", "no-qps-for-a-limiter"],
)
def test_model_copy_takes_a_policy_or_limiter_and_the_fields_mirroring_it_follow(
    kind: Kind,
    fresh: Emulator,
    built: dict[str, Any],
    update: dict[str, Any],
    expect: dict[str, Any],
) -> None:
    # The copy's other fields mirror the old policy or limiter: the update replaces them,
    # as assigning does, rather than being refused as passed together with them.
    settings: dict[str, Any] = {"api_key": KEY, "endpoint": fresh.url, **built}
    settings.setdefault("rate_limiter", None)
    if settings["rate_limiter"] is None:
        settings["qps"] = None
    adapter = kind.cls(**settings)
    other = adapter.model_copy(update=update)
    resolved = other.client.settings()
    for name, value in expect.items():
        assert getattr(other, name) == resolved[name] == value, name
    if "max_retries" in update and "retry_policy" in built:
        # (The policy's other settings stay; only its retries change.)
        assert resolved["retry_policy"].max_retries == update["max_retries"]
    if "qps" in update:
        assert resolved["rate_limiter"] is not built["rate_limiter"]
    kind.texts(other, ["still works"])
    other.close()
    adapter.close()


# -- 2. copies and pickles are independent working adapters --------------------------------


@pytest.mark.parametrize(
    "duplicate",
    [copy.copy, copy.deepcopy, lambda a: pickle.loads(pickle.dumps(a))],
    ids=["copy", "deepcopy", "pickle"],
)
def test_copies_work_on_their_own_with_the_full_configuration(
    kind: Kind, fresh: Emulator, duplicate: Callable[[Any], Any]
) -> None:
    adapter = build(kind, fresh, model=GME, workspace="ws9", max_retries=2, image_max_side=64)
    twin = duplicate(adapter)
    assert twin.client is not adapter.client
    for name in ("endpoint", "workspace", "max_retries", "image_max_side", kind.model_field):
        assert getattr(twin, name) == getattr(adapter, name), name
    adapter.close()  # closing the original leaves the copy working
    vector = kind.texts(twin, ["still works"])[0]
    assert len(vector) == 1536
    assert fresh.requests_log[-1].path.endswith(f"/workspaces/ws9/multi-modal-embedding/{GME}")
    twin.close()


@pytest.mark.parametrize("bad", [{"endpoint": "ftp://h"}, {"timeout": 0}, {"max_retries": "x"}])
def test_no_validation_error_shows_the_key_whatever_the_entry_point(
    kind: Kind, fresh: Emulator, bad: dict[str, Any]
) -> None:
    # pydantic quotes the input it refused: through model_validate, that input is the
    # whole settings dict, key included.
    from pydantic import ValidationError

    data = {"api_key": KEY, "endpoint": fresh.url, **bad}
    attempts: list[Callable[[], Any]] = [
        lambda: kind.cls.model_validate(data),
        lambda: kind.cls.model_validate_json(json.dumps(data)),
        lambda: kind.cls(**data),
    ]
    for attempt in attempts:
        with pytest.raises((ValidationError, ConfigurationError)) as info:
            attempt()
        error = info.value
        texts = [str(error), repr(error)]
        if isinstance(error, ValidationError):
            texts += [error.json(), repr(error.errors())]
        for text in texts:
            assert KEY[10:] not in text, text


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_retries", None),
        ("timeout", "abc"),
        ("max_concurrency", None),
        ("downscale_oversized", None),
        ("image_max_side", "big"),
    ],
)
def test_a_setting_of_the_wrong_type_is_a_configuration_error_naming_it(
    kind: Kind, fresh: Emulator, field: str, value: Any
) -> None:
    # (What the core client raises for the same mistakes: one except clause for both.)
    with pytest.raises(ConfigurationError, match=f"^{field}: ") as info:
        build(kind, fresh, **{field: value})
    assert KEY not in str(info.value)


def test_workspace_none_means_the_environment_or_the_default(
    kind: Kind, fresh: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As for the core client: None is "not given", not a workspace.
    for env, expected in ((None, "default"), ("ws-from-env", "ws-from-env")):
        if env is None:
            monkeypatch.delenv("OPENSEARCH_MM_WORKSPACE", raising=False)
        else:
            monkeypatch.setenv("OPENSEARCH_MM_WORKSPACE", env)
        with build(kind, fresh, workspace=None) as adapter:
            assert adapter.workspace == adapter.client.workspace == expected


def test_a_pickle_carries_the_key_but_no_dump_does(kind: Kind, fresh: Emulator) -> None:
    adapter = build(kind, fresh)
    assert KEY.encode() in pickle.dumps(adapter)
    assert KEY not in repr(adapter) and KEY not in adapter.model_dump_json()


def _embed_in_worker(adapter: Any, text: str) -> list[float]:
    if isinstance(adapter, OpenSearchMultiModalEmbeddings):
        return adapter.embed_query(text)
    return adapter.get_text_embedding(text)  # type: ignore[no-any-return]


def test_a_spawned_process_pool_runs_end_to_end(kind: Kind, fresh: Emulator) -> None:
    adapter = build(kind, fresh)
    texts = ["alpha", "beta", "gamma", "delta"]
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        vectors = pool.starmap(_embed_in_worker, [(adapter, t) for t in texts])
    assert vectors == kind.texts(adapter, texts)
    assert fresh.stats.requests == len(texts) + 1


def test_a_joblib_pool_runs_end_to_end(kind: Kind, fresh: Emulator) -> None:
    joblib = pytest.importorskip("joblib")
    adapter = build(kind, fresh)
    texts = ["one", "two", "three"]
    vectors = joblib.Parallel(n_jobs=2, backend="loky")(
        joblib.delayed(_embed_in_worker)(adapter, t) for t in texts
    )
    assert vectors == kind.texts(adapter, texts)


def test_an_adapter_around_an_injected_client_refuses_to_pickle(
    kind: Kind, fresh: Emulator
) -> None:
    with MultiModalEmbeddingClient(api_key=KEY, endpoint=fresh.url, qps=None) as client:
        adapter = kind.cls(client=client)
        with pytest.raises(TypeError, match="client="):
            pickle.dumps(adapter)


# -- 3. JSON round trip ---------------------------------------------------------------------


def _json_round_trip(kind: Kind, adapter: Any) -> Any:
    if kind is LANGCHAIN:
        return kind.cls.model_validate_json(adapter.model_dump_json())
    return kind.cls.from_json(adapter.to_json())


def test_json_round_trip_takes_the_key_from_the_environment(
    kind: Kind, fresh: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    adapter = build(kind, fresh, model=GME, workspace="ws2")
    monkeypatch.setenv("OPENSEARCH_MM_API_KEY", KEY)
    again = _json_round_trip(kind, adapter)
    assert getattr(again, kind.model_field) == GME and again.workspace == "ws2"
    assert kind.texts(again, ["hi"]) == kind.texts(adapter, ["hi"])


def test_json_round_trip_without_a_key_fails_at_construction(kind: Kind, fresh: Emulator) -> None:
    adapter = build(kind, fresh)
    with pytest.raises(ValueError, match="OPENSEARCH_MM_API_KEY"):
        _json_round_trip(kind, adapter)
    assert fresh.stats.requests == 0


def test_the_masked_placeholder_key_is_refused_and_never_sent(kind: Kind, fresh: Emulator) -> None:
    with pytest.raises(ConfigurationError, match="placeholder"):
        build(kind, fresh, api_key="**********")
    if kind is LANGCHAIN:
        data = build(kind, fresh).model_dump(mode="json")
        data["api_key"] = "**********"
        with pytest.raises(ValueError, match="placeholder"):
            kind.cls.model_validate(data)
    else:
        data = build(kind, fresh).to_dict()
        with pytest.raises(ConfigurationError, match="placeholder"):
            kind.cls.from_dict({**data, "api_key": "**********"})
    assert fresh.stats.requests == 0


# -- 5. both adapters are equal -------------------------------------------------------------


def test_usage_of_the_last_call_and_in_total(kind: Kind, fresh: Emulator) -> None:
    adapter = build(kind, fresh)
    assert adapter.last_usage is None and adapter.total_usage == Usage()
    kind.texts(adapter, ["a red bicycle", "a cat"])
    first = adapter.last_usage
    assert first is not None and first.token_count > 0 and first.image == 0
    kind.images(adapter, [big_png(8)])
    image = adapter.last_usage
    assert image is not None and image.image == 1
    asyncio.run(kind.atexts(adapter, ["more text"]))
    assert adapter.total_usage.image == 1
    assert adapter.last_usage is not None
    calls = (first, image, adapter.last_usage)
    assert adapter.total_usage.token_count == sum(u.token_count for u in calls)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_call_failing_part_way_counts_what_the_service_counted(
    kind: Kind, fresh: Emulator, mode: str
) -> None:
    adapter = build(kind, fresh, max_retries=0, max_concurrency=1)
    texts = [f"text {i}" for i in range(40)]  # two requests: the first fails, not the second
    fresh.inject("server_error", 1)
    with pytest.raises(OpenSearchMMError) as info:
        if mode == "sync":
            kind.texts(adapter, texts)
        else:
            asyncio.run(kind.atexts(adapter, texts))
    partial = info.value.partial
    assert partial is not None and partial.usage.token_count > 0
    assert adapter.last_usage == adapter.total_usage == partial.usage


def test_context_managers_close_the_pools(
    kind: Kind, fresh: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[str] = []
    with build(kind, fresh) as adapter:
        kind.texts(adapter, ["x"])
        monkeypatch.setattr(adapter.client, "close", lambda: closed.append("close"))

    async def use() -> None:
        async with build(kind, fresh) as other:
            await kind.atexts(other, ["y"])

            async def aclose() -> None:
                closed.append("aclose")

            monkeypatch.setattr(other.client, "aclose", aclose)

    asyncio.run(use())
    assert closed == ["close", "aclose"]


def test_an_injected_core_client_is_described_by_the_fields_and_left_open(
    kind: Kind, fresh: Emulator
) -> None:
    with MultiModalEmbeddingClient(
        api_key=KEY, endpoint=fresh.url, qps=3.0, model=GME, workspace="ws3", timeout=7
    ) as client:
        adapter = kind.cls(client=client)
        assert adapter.client is client
        assert getattr(adapter, kind.model_field) == GME
        assert (adapter.workspace, adapter.timeout, adapter.qps) == ("ws3", 7.0, 3.0)
        with pytest.raises(ConfigurationError, match="client="):
            kind.cls(client=client, model="ops-m2-encoder")
        adapter.close()
        assert len(client.embed_texts(["still open"])[0]) == 1536


def test_injected_httpx_clients_use_the_same_names(kind: Kind, fresh: Emulator) -> None:
    sent: list[str] = []

    def hook(request: httpx.Request) -> None:
        sent.append("sync")

    async def ahook(request: httpx.Request) -> None:
        sent.append("async")

    async def run() -> None:
        async with httpx.AsyncClient(event_hooks={"request": [ahook]}) as http_async:
            with httpx.Client(event_hooks={"request": [hook]}) as http:
                adapter = build(kind, fresh, http_client=http, http_async_client=http_async)
                kind.texts(adapter, ["s"])
                await kind.atexts(adapter, ["a"])

    asyncio.run(run())
    assert sent == ["sync", "async"]


def test_assigning_the_masked_placeholder_key_is_refused(fresh: Emulator) -> None:
    adapter = build(LLAMAINDEX, fresh)
    with pytest.raises(ConfigurationError, match="placeholder"):
        adapter.api_key = "**********"
    adapter.get_text_embedding("the real key is still used")
    assert fresh.requests_log[-1].status == 200


def test_both_names_of_the_model_read_the_same(kind: Kind, fresh: Emulator) -> None:
    adapter = build(kind, fresh, model=GME)
    assert adapter.model == adapter.model_name == adapter.client.model == GME


def test_a_retry_policy_and_a_shared_rate_limiter_reach_the_core(
    kind: Kind, fresh: Emulator
) -> None:
    policy = RetryPolicy(max_retries=3, initial_delay=0.001, max_delay=0.01)
    limiter = FixedRateLimiter(500.0)
    adapter = build(kind, fresh, retry_policy=policy, rate_limiter=limiter, qps=500.0)
    assert adapter.client.retry_policy is policy and adapter.client.rate_limiter is limiter
    assert (adapter.max_retries, adapter.qps) == (3, 500.0)  # the fields describe them
    assert adapter.model_copy().client.rate_limiter is limiter  # copies share the limiter
    if kind is LLAMAINDEX:  # LlamaIndex's single-text paths leave a core limiter alone
        adapter.get_query_embedding("q")
        asyncio.run(adapter.aget_query_embedding("q"))
        fresh.reset_stats()
    fresh.inject("server_error", 2)
    kind.texts(adapter, ["retried by the policy"])
    assert [r.status for r in fresh.requests_log] == [500, 500, 200]
    with pytest.raises(ConfigurationError, match="disagrees"):
        build(kind, fresh, retry_policy=policy, max_retries=5)
    with pytest.raises(ConfigurationError, match="not both"):
        build(kind, fresh, rate_limiter=limiter, qps="adaptive")
    with pytest.raises(TypeError, match="rate_limiter"):
        pickle.dumps(adapter)


def test_assigning_retries_or_qps_keeps_policy_and_limiter_in_step(fresh: Emulator) -> None:
    policy = RetryPolicy(max_retries=3, initial_delay=0.001)
    limiter = FixedRateLimiter(50.0)
    adapter = build(LLAMAINDEX, fresh, retry_policy=policy, rate_limiter=limiter, qps=50.0)
    adapter.max_retries = 1
    assert adapter.retry_policy is not None and adapter.retry_policy.max_retries == 1
    assert adapter.client.retry_policy.max_retries == 1
    assert adapter.client.retry_policy.initial_delay == 0.001
    adapter.qps = None
    assert adapter.rate_limiter is None and adapter.client.rate_limiter.rate is None
    adapter.retry_policy = RetryPolicy(max_retries=4)
    assert adapter.max_retries == adapter.client.retry_policy.max_retries == 4


# -- 6. sharing the account's rate limit between processes --------------------------------


@pytest.fixture
def private_temp(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.delenv("OPENSEARCH_MM_SHARE_RATE_LIMIT", raising=False)
    return tmp_path


def _state_file(adapter: Any) -> Any:
    shared = getattr(adapter.client.rate_limiter, "_shared", None)
    return None if shared is None else shared.path


def test_default_adapters_share_the_account_limit_with_default_clients(
    kind: Kind, fresh: Emulator, private_temp: Any
) -> None:
    adapter = build(kind, fresh, qps="adaptive")
    assert adapter.share_rate_limit is None  # the default: the environment's, else on
    assert adapter.client.settings()["share_rate_limit"] is True
    with MultiModalEmbeddingClient(api_key=KEY, endpoint=fresh.url) as core:
        assert _state_file(adapter) is not None
        assert _state_file(adapter) == core.rate_limiter._shared.path  # type: ignore[attr-defined]
    for twin in (copy.copy(adapter), pickle.loads(pickle.dumps(adapter))):
        assert _state_file(twin) == _state_file(adapter)
    kind.texts(adapter, ["paced with the others"])


@pytest.mark.parametrize("value", [False, "team-parity"])
def test_share_rate_limit_is_honoured_by_both(
    kind: Kind, fresh: Emulator, private_temp: Any, value: bool | str
) -> None:
    adapter = build(kind, fresh, qps="adaptive", share_rate_limit=value)
    assert adapter.share_rate_limit == value
    assert adapter.client.settings()["share_rate_limit"] == value
    assert adapter.client.rate_limiter.shared is bool(value)
    twin = pickle.loads(pickle.dumps(adapter))
    assert twin.share_rate_limit == value and _state_file(twin) == _state_file(adapter)
    assert kind.texts(twin, ["x"]) == kind.texts(adapter, ["x"])
    with pytest.raises(ConfigurationError, match="share_rate_limit"):
        build(kind, fresh, qps=5.0, share_rate_limit="team-parity")


def test_the_environment_variable_reaches_both(
    kind: Kind, fresh: Emulator, private_temp: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENSEARCH_MM_SHARE_RATE_LIMIT", "off")
    assert not build(kind, fresh, qps="adaptive").client.rate_limiter.shared


def test_a_shared_limiter_given_pickles_and_reopens_its_file(
    kind: Kind, fresh: Emulator, private_temp: Any
) -> None:
    from opensearch_mm import AdaptiveRateLimiter

    limiter = AdaptiveRateLimiter(share="team-pickled")
    adapter = build(kind, fresh, rate_limiter=limiter, qps="adaptive")
    assert adapter.share_rate_limit is True  # the field describes the limiter
    twin = pickle.loads(pickle.dumps(adapter))
    assert twin.client.rate_limiter is not limiter
    assert twin.client.rate_limiter.shared and _state_file(twin) == _state_file(adapter)
    texts = ["alpha", "beta"]
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        vectors = pool.starmap(_embed_in_worker, [(adapter, t) for t in texts])
    assert vectors == kind.texts(adapter, texts)
    with pytest.raises(ConfigurationError, match="share_rate_limit"):
        build(kind, fresh, rate_limiter=limiter, qps="adaptive", share_rate_limit=False)


def test_an_injected_client_describes_its_sharing(kind: Kind, fresh: Emulator) -> None:
    with MultiModalEmbeddingClient(
        api_key=KEY, endpoint=fresh.url, share_rate_limit="team-injected"
    ) as client:
        assert kind.cls(client=client).share_rate_limit == "team-injected"
        with pytest.raises(ConfigurationError, match="client="):
            kind.cls(client=client, share_rate_limit=False)


def test_assigning_share_rate_limit_rebuilds_the_llamaindex_client(
    fresh: Emulator, private_temp: Any
) -> None:
    adapter = build(LLAMAINDEX, fresh, qps="adaptive")
    assert adapter.client.rate_limiter.shared
    adapter.share_rate_limit = False
    assert not adapter.client.rate_limiter.shared
    adapter.get_text_embedding("alone now")


def test_assigning_a_setting_never_shows_the_value(kind: Kind, fresh: Emulator) -> None:
    # LangChain's adapter is frozen: pydantic's refusal quoted the value (a new key).
    # LlamaIndex's rebuilds its client, and refuses a bad value with ConfigurationError.
    from pydantic import ValidationError

    new_key = "sk-rotated-SECRET-9876543210"
    adapter = build(kind, fresh)
    attempts: list[tuple[str, Any]] = [("api_key", new_key), ("timeout", "abc"), ("workspace", 5)]
    attempts.append(("api_key", 12345))
    for name, value in attempts:
        if kind is LLAMAINDEX and name == "api_key" and value == new_key:
            continue  # (a good key: taken)
        with pytest.raises((ValidationError, ConfigurationError)) as info:
            setattr(adapter, name, value)
        if kind is LLAMAINDEX:
            assert isinstance(info.value, ConfigurationError), (name, info.value)
        assert name in str(info.value)
        assert new_key[10:] not in str(info.value) + repr(info.value)
    assert len(kind.texts(adapter, ["still works"])[0]) == 768
    adapter.close()


def test_an_empty_workspace_is_the_default_as_for_the_core(
    kind: Kind, fresh: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    for given in ({"workspace": ""}, {}):
        monkeypatch.setenv("OPENSEARCH_MM_WORKSPACE", "")
        adapter = build(kind, fresh, **given)
        assert adapter.workspace == adapter.client.settings()["workspace"] == "default"
        adapter.close()
    monkeypatch.setenv("OPENSEARCH_MM_WORKSPACE", "ws7")
    adapter = build(kind, fresh, workspace="")
    assert adapter.workspace == adapter.client.settings()["workspace"] == "ws7"
    adapter.close()


def test_the_settings_have_a_json_schema(kind: Kind) -> None:
    # (Tools that describe a component's settings ask for it; pools and limiters are
    # objects, not settings, and are left out of it.)
    schema = kind.cls.model_json_schema()
    assert kind.model_field in schema["properties"]
    assert "http_client" not in schema["properties"]
