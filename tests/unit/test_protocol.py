"""The sans-I/O protocol (``opensearch_mm.protocol``): URLs, headers, answers, errors."""

from __future__ import annotations

import email.utils
import random
from typing import Any

import httpx
import orjson
import pytest

from opensearch_mm.errors import (
    APIError,
    APIResponseError,
    AuthenticationError,
    ConfigurationError,
    InternalServerError,
    InvalidParameterError,
    QuotaExceededError,
    RateLimitError,
    ServiceNotFoundError,
)
from opensearch_mm.protocol import (
    build_url,
    error_from_response,
    normalize_endpoint,
    parse_response,
    parse_retry_after,
    parse_retry_hint,
    request_headers,
)
from opensearch_mm.results import Usage

KEY = "OS-secret-key-123456"
NO_HEADERS: dict[str, str] = {}


# -- endpoint and URL -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            "ops-cn-hangzhou.opensearch.aliyuncs.com",
            "https://ops-cn-hangzhou.opensearch.aliyuncs.com",
        ),
        ("host:8443", "https://host:8443"),
        ("https://host", "https://host"),
        ("https://host/", "https://host"),
        ("HTTPS://host/", "https://host"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("  https://host/prefix/  ", "https://host/prefix"),
        ("http://[::1]:9000", "http://[::1]:9000"),
    ],
)
def test_normalize_endpoint(raw: str, expected: str) -> None:
    assert normalize_endpoint(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "ftp://host",
        "file:///etc/passwd",
        "https://",
        "https://host?x=1",
        "https://host#frag",
        "https://user:pw@host",
    ],
)
def test_normalize_endpoint_refuses(raw: str) -> None:
    with pytest.raises(ConfigurationError):
        normalize_endpoint(raw)


def test_normalize_endpoint_does_not_echo_credentials() -> None:
    with pytest.raises(ConfigurationError) as ei:
        normalize_endpoint("https://user:hunter2@host")
    assert "hunter2" not in str(ei.value)


def test_build_url() -> None:
    assert build_url("https://h", "default", "ops-m2-encoder") == (
        "https://h/v3/openapi/workspaces/default/multi-modal-embedding/ops-m2-encoder"
    )


def test_build_url_escapes_segments() -> None:
    url = build_url("https://h", "my ws/../x", "a?b#c")
    assert url == "https://h/v3/openapi/workspaces/my%20ws%2F..%2Fx/multi-modal-embedding/a%3Fb%23c"
    assert httpx.URL(url).raw_path.count(b"/") == 6


@pytest.mark.parametrize(("ws", "model"), [("", "m"), ("  ", "m"), ("w", ""), ("w", " ")])
def test_build_url_refuses_empty(ws: str, model: str) -> None:
    with pytest.raises(ConfigurationError):
        build_url("https://h", ws, model)


def test_request_headers() -> None:
    h = request_headers(KEY)
    assert h["Authorization"] == f"Bearer {KEY}"
    assert h["Content-Type"] == "application/json"
    assert h["Accept"] == "application/json"
    assert h["User-Agent"].startswith("opensearch-mm/")
    assert sum(KEY in v for v in h.values()) == 1


# -- successful answers ---------------------------------------------------------------


def answer(n: int, dim: int = 4, *, order: list[int] | None = None, **extra: Any) -> bytes:
    order = list(range(n)) if order is None else order
    doc: dict[str, Any] = {
        "request_id": "RID-1",
        "latency": 3,
        "usage": {"image": 1, "token_count": 7},
        "result": {
            "embeddings": [{"index": i, "embedding": [float(i)] + [0.5] * (dim - 1)} for i in order]
        },
    }
    doc.update(extra)
    return orjson.dumps(doc)


def test_parse_response_success() -> None:
    r = parse_response(200, NO_HEADERS, answer(3), expected=3, dimensions=4)
    assert [v[0] for v in r.embeddings] == [0.0, 1.0, 2.0]
    assert all(len(v) == 4 for v in r.embeddings)
    assert r.usage == Usage(token_count=7, image=1)
    assert r.request_id == "RID-1"


def test_parse_response_shuffled_indices_are_ordered() -> None:
    order = list(range(20))
    random.Random(3).shuffle(order)
    r = parse_response(200, NO_HEADERS, answer(20, order=order), expected=20, dimensions=4)
    assert [v[0] for v in r.embeddings] == [float(i) for i in range(20)]


def test_parse_response_request_id_from_header() -> None:
    body = orjson.dumps({"result": {"embeddings": [{"index": 0, "embedding": [1.0]}]}})
    r = parse_response(200, {"x-acs-request-id": "HDR"}, body, expected=1, dimensions=1)
    assert r.request_id == "HDR"
    assert r.usage == Usage()


def test_parse_response_usage_missing_or_bad() -> None:
    body = answer(1, usage={"token_count": "7", "image": None})
    r = parse_response(200, NO_HEADERS, body, expected=1, dimensions=4)
    assert r.usage == Usage(0, 0)


def test_parse_response_unknown_model_learns_width() -> None:
    r = parse_response(200, NO_HEADERS, answer(2, dim=5), expected=2, dimensions=None)
    assert all(len(v) == 5 for v in r.embeddings)


def test_parse_response_ints_are_numbers() -> None:
    body = orjson.dumps({"result": {"embeddings": [{"index": 0, "embedding": [1, 0, -1]}]}})
    r = parse_response(200, NO_HEADERS, body, expected=1, dimensions=3)
    assert r.embeddings == [[1, 0, -1]]


# -- defective answers ----------------------------------------------------------------


def embeddings_body(items: list[Any]) -> bytes:
    return orjson.dumps({"request_id": "R", "result": {"embeddings": items}})


def vec(index: Any, values: Any = None) -> dict[str, Any]:
    return {"index": index, "embedding": [0.1, 0.2] if values is None else values}


@pytest.mark.parametrize(
    ("items", "match"),
    [
        ([vec(0)], "lacks embeddings"),  # missing index 1
        ([vec(0), vec(0)], "twice"),
        ([vec(0), vec(2)], "index 2"),
        ([vec(0), vec(-1)], "index -1"),
        ([vec(0), vec(True)], "index True"),
        ([vec(0), vec(1.0)], "index 1.0"),
        ([vec(0), vec("1")], "index '1'"),
        ([vec(0), {"embedding": [0.1, 0.2]}], "index None"),
        ([vec(0), "junk"], "index None"),
        ([vec(0), vec(1, [0.1])], "1 numbers"),
        ([vec(0), vec(1, [0.1, 0.2, 0.3])], "3 numbers"),
        ([vec(0), vec(1, [])], "non-empty"),
        ([vec(0), vec(1, "0.1,0.2")], "non-empty list"),
        ([vec(0), vec(1, [0.1, "0.2"])], "non-number"),
        ([vec(0), vec(1, [0.1, None])], "non-number"),
        ([vec(0), vec(1, [0.1, [0.2]])], "non-number"),
        ([vec(0), vec(1, [True, 0.2])], "non-number"),  # (sum() adds bools)
        ([vec(0), vec(1, [0.1, False])], "non-number"),
    ],
)
def test_parse_response_defects(items: list[Any], match: str) -> None:
    with pytest.raises(APIResponseError) as ei:
        parse_response(200, NO_HEADERS, embeddings_body(items), expected=2, dimensions=2)
    assert match in str(ei.value)
    assert ei.value.request_id == "R"


def test_a_wrong_answer_says_its_place_in_the_request() -> None:
    # (The call's error adds which input of the call that place holds.)
    with pytest.raises(APIResponseError) as ei:
        parse_response(
            200, NO_HEADERS, embeddings_body([vec(0), vec(1, [0.1, "x"])]), expected=2, dimensions=2
        )
    assert "request position 1" in str(ei.value) and ei.value.position == 1


def test_vectors_of_ones_and_zeros_are_not_booleans() -> None:
    body = embeddings_body([vec(0, [1.0, 0.0]), vec(1, [0, 1])])
    r = parse_response(200, NO_HEADERS, body, expected=2, dimensions=2)
    assert r.embeddings == [[1.0, 0.0], [0, 1]]


def test_parse_response_non_finite() -> None:
    body = b'{"result":{"embeddings":[{"index":0,"embedding":[1e999,0.0]}]}}'
    with pytest.raises(APIResponseError):
        parse_response(200, NO_HEADERS, body, expected=1, dimensions=2)


def test_parse_response_inconsistent_dims_for_unknown_model() -> None:
    items = [vec(0, [0.1, 0.2]), vec(1, [0.1, 0.2, 0.3])]
    with pytest.raises(APIResponseError, match="other vectors"):
        parse_response(200, NO_HEADERS, embeddings_body(items), expected=2, dimensions=None)


def test_parse_response_wrong_dims_for_known_model() -> None:
    with pytest.raises(APIResponseError, match="model dimension"):
        parse_response(200, NO_HEADERS, answer(1, dim=4), expected=1, dimensions=768)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"<html>oops</html>",
        b"[1,2]",
        b'"str"',
        b"null",
        b'{"request_id":"x","result":{"embeddings":[{"index":0,"embedding":[0.01',
    ],
)
def test_parse_response_non_json_or_not_object(body: bytes) -> None:
    with pytest.raises(APIResponseError):
        parse_response(200, NO_HEADERS, body, expected=1, dimensions=2)


@pytest.mark.parametrize(
    "body", [b"{}", b'{"result":null}', b'{"result":{"embeddings":{}}}', b'{"result":[]}']
)
def test_parse_response_no_embeddings(body: bytes) -> None:
    with pytest.raises(APIResponseError, match=r"result\.embeddings"):
        parse_response(200, NO_HEADERS, body, expected=1, dimensions=2)


@pytest.mark.parametrize("result", [None, "absent"])
def test_an_error_body_with_200_and_a_null_result_is_its_error(result: Any) -> None:
    doc: dict[str, Any] = {"request_id": "E2", "code": "InvalidParameter", "message": "bad url"}
    if result != "absent":
        doc["result"] = result
    with pytest.raises(InvalidParameterError, match="bad url"):
        parse_response(200, NO_HEADERS, orjson.dumps(doc), expected=1, dimensions=2)


def test_error_body_with_200_is_an_error() -> None:
    body = orjson.dumps(
        {"request_id": "E1", "latency": 0, "code": "InternalServerError", "message": "boom"}
    )
    with pytest.raises(APIError) as ei:
        parse_response(200, NO_HEADERS, body, expected=1, dimensions=2)
    assert ei.value.code == "InternalServerError"
    assert ei.value.request_id == "E1"
    assert "boom" in str(ei.value)


def test_parse_response_error_status_raises_mapped_error() -> None:
    body = error_body("Throttling.RateQuota")
    with pytest.raises(RateLimitError):
        parse_response(429, {"retry-after": "2"}, body, expected=1, dimensions=2)


# -- error mapping ------------------------------------------------------------------------


def error_body(code: str, message: str = "msg", rid: str = "RID-E") -> bytes:
    return orjson.dumps({"request_id": rid, "latency": 0, "code": code, "message": message})


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (400, "InvalidParameter", InvalidParameterError),
        (400, "ServiceIdNotExist", ServiceNotFoundError),
        (401, "Unauthorized", AuthenticationError),
        (403, "Forbidden", AuthenticationError),
        (404, "NotFound", ServiceNotFoundError),
        (429, "Throttling", RateLimitError),
        (429, "Throttling.RateQuota", RateLimitError),
        (429, "Throttling.AllocationQuota", QuotaExceededError),
        (500, "InternalServerError", InternalServerError),
        (503, "ServiceUnavailable", InternalServerError),
    ],
)
def test_error_mapping(status: int, code: str, cls: type[APIError]) -> None:
    err = error_from_response(status, NO_HEADERS, error_body(code, "the message"))
    assert type(err) is cls
    assert err.status_code == status
    assert err.code == code
    assert err.message == "the message"
    assert err.request_id == "RID-E"
    assert str(status) in str(err) and code in str(err) and "RID-E" in str(err)


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (400, "Throttling.User", RateLimitError),  # a gateway's flow control
        (503, "Throttling", RateLimitError),
        (400, "Throttling.AllocationQuota", QuotaExceededError),
        (400, "InvalidParameter", InvalidParameterError),
        (403, "Forbidden.RAM", AuthenticationError),
    ],
)
def test_a_gateways_capitalised_error_body_and_throttling_code_whatever_the_status(
    status: int, code: str, cls: type[APIError]
) -> None:
    body = orjson.dumps(
        {"RequestId": "GW-1", "HostId": "h", "Code": code, "Message": "denied by flow control"}
    )
    err = error_from_response(status, NO_HEADERS, body)
    assert type(err) is cls
    assert (err.status_code, err.code, err.request_id) == (status, code, "GW-1")
    assert err.message == "denied by flow control"


def test_a_capitalised_throttling_body_with_status_200_is_a_throttle() -> None:
    body = orjson.dumps({"RequestId": "GW-2", "Code": "Throttling.User", "Message": "m"})
    with pytest.raises(RateLimitError):
        parse_response(200, {}, body, expected=1, dimensions=768)


def test_rate_quota_is_not_quota_exceeded() -> None:
    err = error_from_response(429, NO_HEADERS, error_body("Throttling.RateQuota"))
    assert isinstance(err, RateLimitError) and not isinstance(err, QuotaExceededError)


def test_non_json_502() -> None:
    html = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
    err = error_from_response(502, {"x-acs-request-id": "H1"}, html)
    assert type(err) is InternalServerError
    assert err.status_code == 502 and err.code is None
    assert "502 Bad Gateway" in err.message
    assert err.request_id == "H1"


def test_empty_error_body() -> None:
    err = error_from_response(503, NO_HEADERS, b"")
    assert isinstance(err, InternalServerError)
    assert err.message == "(empty body)"


def test_other_status_is_plain_api_error() -> None:
    err = error_from_response(418, NO_HEADERS, error_body("Teapot"))
    assert type(err) is APIError and err.status_code == 418


def test_request_id_camel_case() -> None:
    body = orjson.dumps({"requestId": "CAMEL", "code": "InvalidParameter", "message": "m"})
    assert error_from_response(400, NO_HEADERS, body).request_id == "CAMEL"


def test_secrets_scrubbed_from_message() -> None:
    body = error_body("InvalidParameter", f"bad token Bearer {KEY} given")
    err = error_from_response(400, NO_HEADERS, body, secrets=(KEY,))
    assert KEY not in str(err) and KEY not in err.message
    assert "****" in err.message


def test_secrets_scrubbed_from_non_json_body() -> None:
    err = error_from_response(502, NO_HEADERS, f"proxy echoed {KEY}".encode(), secrets=(KEY,))
    assert KEY not in str(err)


def test_a_key_across_the_cut_of_a_long_page_leaves_no_part() -> None:
    page = ("x" * 195 + f"{KEY} more").encode()  # (the first 200 bytes are shown)
    err = error_from_response(502, NO_HEADERS, page, secrets=(KEY,))
    assert KEY[:5] not in str(err)


def test_a_request_id_echoing_the_key_is_scrubbed() -> None:
    body = orjson.dumps({"request_id": KEY, "code": "Unauthorized", "message": "x"})
    for headers in (NO_HEADERS, {"x-acs-request-id": KEY}):
        err = error_from_response(
            401, headers, body if headers is NO_HEADERS else b"", secrets=(KEY,)
        )
        assert KEY not in str(err) and KEY not in repr(err) and KEY not in (err.request_id or "")


def test_secrets_scrubbed_through_parse_response() -> None:
    body = error_body("InvalidParameter", KEY)
    with pytest.raises(InvalidParameterError) as ei:
        parse_response(400, NO_HEADERS, body, expected=1, dimensions=2, secrets=(KEY,))
    assert KEY not in str(ei.value) and KEY not in repr(ei.value)


# -- Retry-After ------------------------------------------------------------------------------


def test_retry_after_seconds() -> None:
    assert parse_retry_after(httpx.Headers({"Retry-After": "3"})) == 3.0
    assert parse_retry_after({"retry-after": "0.25"}) == 0.25
    assert parse_retry_after({"retry-after": "0"}) == 0.0


def test_retry_after_ms_wins() -> None:
    h = httpx.Headers({"Retry-After": "5", "retry-after-ms": "1500"})
    assert parse_retry_after(h) == 1.5


def test_retry_after_http_date() -> None:
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 42, usegmt=True)
    assert parse_retry_after({"retry-after": date}, now=now) == pytest.approx(42.0)
    past = email.utils.formatdate(now - 100, usegmt=True)
    assert parse_retry_after({"retry-after": past}, now=now) == 0.0


def test_retry_after_http_date_without_zone_is_utc() -> None:
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 10, usegmt=True).replace("GMT", "-0000")
    assert parse_retry_after({"retry-after": date}, now=now) == pytest.approx(10.0)


@pytest.mark.parametrize("value", ["", "soon", "-1", "nan", "inf", "Mon, 99 Foo"])
def test_retry_after_garbage_is_ignored(value: str) -> None:
    assert parse_retry_after({"retry-after": value}) is None


def test_retry_after_garbage_does_not_break_error_mapping() -> None:
    err = error_from_response(429, {"retry-after": "soon"}, error_body("Throttling"))
    assert isinstance(err, RateLimitError) and err.retry_after is None


def test_retry_after_bad_ms_falls_back() -> None:
    assert parse_retry_after({"retry-after-ms": "x", "retry-after": "2"}) == 2.0
    assert parse_retry_after({}) is None


def test_retry_hint_knows_its_headers_unit() -> None:
    assert parse_retry_hint({"x-acs-retry-after": "1000"}) == (1.0, 0.001)
    assert parse_retry_hint({"retry-after-ms": "250"}) == (0.25, 0.001)
    assert parse_retry_hint({"retry-after": "3"}) == (3.0, 1.0)
    assert parse_retry_hint({"retry-after": "0.25"}) == (0.25, 0.0)
    date = email.utils.formatdate(1_700_000_042.0, usegmt=True)
    assert parse_retry_hint({"retry-after": date}, now=1_700_000_000.0) == (42.0, 1.0)
    assert parse_retry_hint({}) is None
    err = error_from_response(429, {"x-acs-retry-after": "2000"}, b"{}")
    assert (err.retry_after, err.retry_after_unit) == (2.0, 0.001)
    err = error_from_response(429, {}, b"{}")
    assert (err.retry_after, err.retry_after_unit) == (None, None)


def test_retry_after_on_error() -> None:
    err = error_from_response(429, httpx.Headers({"Retry-After": "7"}), error_body("Throttling"))
    assert err.retry_after == 7.0


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("Throttling.AllocationQuota", QuotaExceededError),
        ("Throttling.RateQuota", RateLimitError),
        ("InvalidParameter", InvalidParameterError),
        ("ServiceIdNotExist", ServiceNotFoundError),
        ("Unauthorized", AuthenticationError),
        ("SomethingElse", InternalServerError),
    ],
)
def test_error_body_with_status_200_maps_by_its_code(code: str, expected: type[APIError]) -> None:
    body = orjson.dumps({"request_id": "r", "latency": 0, "code": code, "message": "m"})
    with pytest.raises(expected) as info:
        parse_response(200, {}, body, expected=1, dimensions=768)
    assert info.value.code == code
