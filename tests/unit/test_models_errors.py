"""The model table, the result types and the exception hierarchy."""

from __future__ import annotations

import pytest

from opensearch_mm import errors
from opensearch_mm.errors import (
    APIConnectionError,
    APIError,
    APIResponseError,
    APITimeoutError,
    AuthenticationError,
    ConfigurationError,
    InputError,
    InternalServerError,
    InvalidParameterError,
    OpenSearchMMError,
    QuotaExceededError,
    RateLimitError,
    ServiceNotFoundError,
)
from opensearch_mm.models import DEFAULT_MODEL, MODELS, model_info
from opensearch_mm.results import EmbeddingResult, PartialResult, Usage


@pytest.mark.parametrize(
    ("service_id", "dims", "combined"),
    [
        ("ops-m2-encoder", 768, False),
        ("ops-m2-encoder-large", 1024, False),
        ("ops-gme-qwen2-vl-2b-instruct", 1536, True),
        ("ops-mm-embedding-v1-2b", 1536, True),
    ],
)
def test_model_table(service_id: str, dims: int, combined: bool) -> None:
    info = model_info(service_id)
    assert info.dimensions == dims
    assert info.combined_input is combined
    assert info.known
    assert MODELS[service_id] is info


def test_model_table_has_exactly_the_reference_models() -> None:
    assert set(MODELS) == {
        "ops-m2-encoder",
        "ops-m2-encoder-large",
        "ops-gme-qwen2-vl-2b-instruct",
        "ops-mm-embedding-v1-2b",
    }
    assert DEFAULT_MODEL == "ops-m2-encoder"


def test_unknown_model_is_permissive() -> None:
    info = model_info("ops-future-model")
    assert info.dimensions is None and info.combined_input and not info.known
    assert info.service_id == "ops-future-model"


def test_every_error_derives_from_base() -> None:
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), OpenSearchMMError)


def test_hierarchy() -> None:
    for cls in (
        AuthenticationError,
        InvalidParameterError,
        ServiceNotFoundError,
        RateLimitError,
        InternalServerError,
    ):
        assert issubclass(cls, APIError)
    assert issubclass(QuotaExceededError, RateLimitError)
    assert issubclass(APITimeoutError, APIConnectionError)
    assert issubclass(ConfigurationError, ValueError)
    assert issubclass(InputError, ValueError)
    assert not issubclass(APIResponseError, APIError)


def test_input_error_message() -> None:
    e = InputError("text is empty", index=3, field="text")
    assert str(e) == "input 3 (text): text is empty"
    assert (e.index, e.field, e.reason) == (3, "text", "text is empty")
    assert str(InputError("bad", index=0)) == "input 0: bad"
    assert str(InputError("bad")) == "bad"
    assert InputError("bad").partial is None


def test_api_error_fields_and_message() -> None:
    e = RateLimitError(
        "slow down", status_code=429, code="Throttling", request_id="R", retry_after=1.5
    )
    assert (e.status_code, e.code, e.message, e.request_id, e.retry_after) == (
        429,
        "Throttling",
        "slow down",
        "R",
        1.5,
    )
    assert str(e) == "HTTP 429 Throttling: slow down (request_id=R)"
    assert str(APIError("m", status_code=502)) == "HTTP 502: m"


def test_response_error_message() -> None:
    assert str(APIResponseError("bad", request_id="R")) == "bad (request_id=R)"
    assert APIResponseError("bad").request_id is None


def test_usage_adds() -> None:
    assert Usage(1, 2) + Usage(10, 20) == Usage(11, 22)
    assert Usage() == Usage(0, 0)


def test_results() -> None:
    r = EmbeddingResult([[1.0], [2.0]], Usage(3, 0), ["a"], "m")
    assert len(r) == 2
    p = PartialResult([[1.0], None, [3.0], None], [1, 3])
    assert p.succeeded_indices == [0, 2]
    assert p.errors == {} and p.usage == Usage() and p.request_ids == []


@pytest.mark.parametrize(
    "error",
    [
        APIConnectionError("reset"),
        APITimeoutError("slow"),
        ConfigurationError("bad"),
        InputError("bad", index=1),
        OpenSearchMMError("x"),
    ],
)
def test_request_id_readable_on_every_error(error: OpenSearchMMError) -> None:
    # ``except OpenSearchMMError as err: log(err.request_id)`` never raises AttributeError
    assert error.request_id is None
    assert error.partial is None


def test_client_closed_error_has_request_id() -> None:
    assert errors.ClientClosedError("closed").request_id is None


def test_attributes_declared_on_the_base_classes() -> None:
    assert "request_id" in OpenSearchMMError.__annotations__
    assert "partial" in OpenSearchMMError.__annotations__
    assert "status_code" in errors.APIStatusError.__annotations__
    assert errors.APIStatusError.code is None and errors.APIStatusError.retry_after is None
    assert APIConnectionError("x").endpoint is None
    assert APITimeoutError("x").kind == "timeout" and APIConnectionError("x").kind == "other"


def test_api_error_is_the_status_error_alias() -> None:
    assert APIError is errors.APIStatusError
    assert not issubclass(APIConnectionError, APIError)  # unlike openai's APIError
    assert "APIStatusError" in (errors.__doc__ or "") and "openai" in (errors.__doc__ or "")


def test_docstring_tree_names_every_error() -> None:
    tree = errors.__doc__ or ""
    for name in errors.__all__:
        if name != "APIError":
            assert f" {name} " in tree or f"── {name}" in tree, name
    assert "retried" in tree and "stops the call" in tree
