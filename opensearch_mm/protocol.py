"""The wire protocol, without I/O: URLs, headers, and checking what the service answers.

Both drivers (sync and async) call these functions; nothing here touches the network.
"""

from __future__ import annotations

import datetime
import email.utils
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import quote, urlsplit

import orjson

from ._version import __version__
from .errors import (
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
from .results import Usage

__all__ = [
    "BatchResponse",
    "RetryHint",
    "build_url",
    "error_from_response",
    "normalize_endpoint",
    "parse_response",
    "parse_retry_after",
    "parse_retry_hint",
    "parse_usage",
    "request_headers",
]


def normalize_endpoint(endpoint: str) -> str:
    """``host``, ``host:port`` or ``scheme://host[:port][/prefix]`` -> a base URL.

    No scheme means https, as the official SDK's default. Only http and https are allowed.
    """
    value = endpoint.strip()
    if not value:
        raise ConfigurationError("endpoint is empty")
    if "://" not in value:
        value = "https://" + value
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https"):
        raise ConfigurationError(f"endpoint scheme must be http or https, got {parts.scheme!r}")
    if not parts.hostname:
        raise ConfigurationError(f"endpoint {endpoint!r} has no host")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigurationError("endpoint must not carry a query, fragment or credentials")
    return f"{parts.scheme.lower()}://{parts.netloc}{parts.path.rstrip('/')}"


def build_url(base_url: str, workspace: str, service_id: str) -> str:
    """The embedding URL for one workspace and service id (path segments escaped)."""
    for name, value in (("workspace", workspace), ("model", service_id)):
        if not value or not value.strip():
            raise ConfigurationError(f"{name} is empty")
    return (
        f"{base_url}/v3/openapi/workspaces/{quote(workspace, safe='')}"
        f"/multi-modal-embedding/{quote(service_id, safe='')}"
    )


def request_headers(api_key: str) -> dict[str, str]:
    """Headers of every request. The key goes in ``Authorization`` and nowhere else."""
    return {
        "Authorization": f"Bearer {api_key}",
        "Content-Type": "application/json",
        "Accept": "application/json",
        "User-Agent": f"opensearch-mm/{__version__}",
    }


@dataclass(frozen=True)
class BatchResponse:
    """A checked successful answer: one vector per input of the request, in order."""

    embeddings: list[list[float]]
    usage: Usage
    request_id: str | None


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, "****")
    return text


class RetryHint(NamedTuple):
    """When a server said a request may be retried: ``seconds`` from now, to within one
    ``unit`` of its header (rounded up to whole units, so it may mean up to one less)."""

    seconds: float
    unit: float  # 0.001 for the millisecond headers, 1.0 for whole seconds or an HTTP date


def parse_retry_hint(headers: Mapping[str, str], now: float | None = None) -> RetryHint | None:
    """The hint of the first of these headers that holds a valid value:

    * ``retry-after-ms``: milliseconds;
    * ``x-acs-retry-after``: milliseconds. Alibaba Cloud's OpenAPI gateway sends it on
      throttled answers, and the official SDK runtime reads it as milliseconds
      (``alibabacloud_tea_openapi`` ``Utils.get_throttling_time_left`` hands the integer
      to darabonba's ``sleep(millisecond)``, capped at 120,000). As there, a value that is
      not a positive number counts as absent;
    * ``Retry-After``: seconds (whole seconds have a unit of one; a fraction, none), or an
      HTTP date (RFC 9110, to the second).

    Returns ``None`` when none holds a valid value.
    """
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            value = float(raw_ms) / 1000.0
            if math.isfinite(value) and value >= 0:
                return RetryHint(value, 0.001)
        except ValueError:
            pass
    raw_acs = headers.get("x-acs-retry-after")
    if raw_acs:
        try:
            value = float(raw_acs) / 1000.0
            if math.isfinite(value) and value > 0:
                return RetryHint(value, 0.001)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        value = float(raw)
        if not (math.isfinite(value) and value >= 0):
            return None
        return RetryHint(value, 1.0 if value.is_integer() else 0.0)
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None  # neither seconds nor an HTTP date: ignore it, as if absent
    if parsed.tzinfo is None:  # "-0000": an HTTP date is always UTC
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return RetryHint(max(parsed.timestamp() - (time.time() if now is None else now), 0.0), 1.0)


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait, as :func:`parse_retry_hint` reads them (``None``: no hint)."""
    hint = parse_retry_hint(headers, now)
    return None if hint is None else hint.seconds


def _load_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def _field(data: dict[str, Any], *names: str) -> Any:
    """The first of ``names`` that ``data`` holds a value for (``None``: none)."""
    for name in names:
        value = data.get(name)
        if value:
            return value
    return None


def _is_throttling(code: str | None) -> bool:
    return code is not None and code.startswith("Throttling")


def error_from_response(
    status_code: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    secrets: tuple[str, ...] = (),
    target: str | None = None,
) -> APIError:
    """Map an error answer to the matching :class:`APIError` subclass.

    The body's ``code``, ``message`` and ``request_id`` are read as the platform writes
    them, or capitalised (``Code``, ``Message``, ``RequestId``) as Alibaba Cloud's gateways
    write their own errors (the official SDK's runtime reads both). A ``Throttling`` code
    is a throttle whatever the status (such gateways refuse with 400 or 503 too).
    """
    data = _load_json(body)
    code: str | None = None
    message = ""
    request_id: str | None = None
    if isinstance(data, dict):
        raw_code = _field(data, "code", "Code")
        code = raw_code if isinstance(raw_code, str) else None
        message = str(_field(data, "message", "Message") or "")
        rid = _field(data, "request_id", "requestId", "RequestId")
        request_id = str(rid) if rid else None
    if not message:
        # (Scrubbed whole, then cut: a key across the cut would leave its start.)
        text = _scrub(body.decode("utf-8", "replace"), secrets)
        message = text[:200].strip() or "(empty body)"
    message = _scrub(message, secrets)
    request_id = request_id or headers.get("x-acs-request-id") or headers.get("x-request-id")
    if request_id:
        request_id = _scrub(request_id, secrets)
    hint = parse_retry_hint(headers)
    cls: type[APIError]
    if _is_throttling(code):
        cls = QuotaExceededError if code == "Throttling.AllocationQuota" else RateLimitError
    elif status_code in (401, 403):
        cls = AuthenticationError
    elif status_code == 404 or code == "ServiceIdNotExist":
        cls = ServiceNotFoundError
    elif status_code == 429:
        cls = QuotaExceededError if code == "Throttling.AllocationQuota" else RateLimitError
    elif status_code == 400:
        cls = InvalidParameterError
    elif status_code >= 500:
        cls = InternalServerError
    else:
        cls = APIError
    error = cls(
        message,
        status_code=status_code,
        code=code,
        request_id=request_id,
        retry_after=None if hint is None else hint.seconds,
        retry_after_unit=None if hint is None else hint.unit,
    )
    if cls is ServiceNotFoundError and target:
        # (The service's message names neither model nor workspace: said after it.)
        error.args = (f"{error.args[0]} ({target})", *error.args[1:])
    return error


def _status_for_code(code: str) -> int:
    """The HTTP status the platform uses with ``code`` (for error bodies sent with a 2xx)."""
    if _is_throttling(code):
        return 429
    if code in ("InvalidParameter", "ServiceIdNotExist"):
        return 400
    if code in ("Unauthorized", "Forbidden") or code.startswith(("InvalidApiKey", "Forbidden.")):
        return 401
    return 500


def parse_response(
    status_code: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    expected: int,
    dimensions: int | None,
    secrets: tuple[str, ...] = (),
    target: str | None = None,
) -> BatchResponse:
    """Check an answer to a request of ``expected`` inputs; raise on any error or defect.

    Every index ``0..expected-1`` must be answered exactly once with a finite vector of
    ``dimensions`` numbers (or, for an unknown model, all vectors of one length).
    ``target`` says which model and workspace were asked for, in an unknown one's error.
    """
    if not 200 <= status_code < 300:
        raise error_from_response(status_code, headers, body, secrets=secrets, target=target)
    data = _load_json(body)
    # orjson builds only exact dict/list/int/bool/str/float/None objects, so exact type
    # checks below are the isinstance checks they replace (``type(x) is int`` also rules
    # out bool), at a fraction of the cost per vector.
    if type(data) is not dict:
        raise APIResponseError(
            "response body is not a JSON object", request_id=headers.get("x-acs-request-id")
        )
    request_id = data.get("request_id")
    # The header lookup costs more than the rest of a small answer's checks: only when
    # the body carries no id.
    request_id = str(request_id) if request_id else headers.get("x-acs-request-id")
    code = data.get("code") or data.get("Code")
    if code and data.get("result") is None:
        # An error body with a 2xx status: treat it as the error its code describes.
        status = _status_for_code(str(code))
        raise error_from_response(status, headers, body, secrets=secrets, target=target)
    result = data.get("result")
    items = result.get("embeddings") if type(result) is dict else None
    if type(items) is not list:
        raise APIResponseError("response has no result.embeddings list", request_id=request_id)
    vectors: list[list[float] | None] = [None] * expected
    width = dimensions
    isfinite = math.isfinite
    for item in items:
        index = item.get("index") if type(item) is dict else None
        if type(index) is not int or not 0 <= index < expected:
            raise APIResponseError(
                f"response has an embedding with index {index!r} for a request of "
                f"{expected} inputs",
                request_id=request_id,
            )
        if vectors[index] is not None:
            raise APIResponseError(
                f"response answers request position {index} twice",
                request_id=request_id,
                position=index,
            )
        vector = item.get("embedding")
        if type(vector) is not list or not vector:
            raise APIResponseError(
                f"the embedding of request position {index} is not a non-empty list",
                request_id=request_id,
                position=index,
            )
        if width is None:
            width = len(vector)
        if len(vector) != width:
            want = "model dimension" if dimensions is not None else "other vectors"
            raise APIResponseError(
                f"the embedding of request position {index} has {len(vector)} numbers, "
                f"{want} is {width}",
                request_id=request_id,
                position=index,
            )
        try:
            # sum() runs in C: a cheap check that every element is a number.
            total = sum(vector)
            # (sum() takes true and false for 1 and 0. A vector's ends are looked at, and
            # every element of one that sums to no float; reading each element of every
            # vector, or the body for "true", cost a quarter of the parsing.)
            if type(vector[0]) is bool or type(vector[-1]) is bool:
                raise TypeError
            if type(total) is not float and any(type(x) is bool for x in vector):
                raise TypeError
        except TypeError:
            raise APIResponseError(
                f"the embedding of request position {index} holds a non-number",
                request_id=request_id,
                position=index,
            ) from None
        if not isfinite(total):
            raise APIResponseError(
                f"the embedding of request position {index} is not finite",
                request_id=request_id,
                position=index,
            )
        vectors[index] = vector
    if None in vectors:
        missing = [i for i, v in enumerate(vectors) if v is None]
        raise APIResponseError(
            f"response lacks embeddings for {len(missing)} of {expected} inputs "
            f"(request positions {missing[:10]})",
            request_id=request_id,
        )
    usage = parse_usage(data.get("usage"))
    return BatchResponse(vectors, usage, request_id)  # type: ignore[arg-type]


def parse_usage(data: object) -> Usage:
    """The answer's ``usage`` object; a missing or malformed field counts 0."""
    if not isinstance(data, dict):
        return Usage()
    fields: dict[str, Any] = data

    def count(name: str) -> int:
        value = fields.get(name)
        return value if type(value) is int and value >= 0 else 0

    return Usage(count("token_count"), count("image"), count("image_token"), count("text_token"))
