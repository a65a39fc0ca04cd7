"""The exception hierarchy.

Everything this package raises on purpose derives from :class:`OpenSearchMMError`
(invalid options and inputs are also ``ValueError``). No message built here ever contains
the API key: messages are built from the service's ``code``/``message``, the request id,
the endpoint's ``scheme://host:port`` and the input index only. Which failures a request
retries, and which stop the whole call (no further request of it is started)::

    OpenSearchMMError                   .partial, .request_id on every error
    ├── ConfigurationError (ValueError)   bad option, raised by the constructor
    ├── InputError (ValueError)           bad input, nothing sent; .index, .field
    ├── ClientClosedError (RuntimeError)  the client was closed
    ├── APIStatusError                    error status; .status_code, .code, .retry_after
    │   ├── AuthenticationError           401/403                  not retried, stops the call
    │   ├── InvalidParameterError         400 InvalidParameter     not retried
    │   ├── ServiceNotFoundError          404, ServiceIdNotExist   not retried, stops the call
    │   ├── RateLimitError                429 Throttling           retried (Retry-After honoured);
    │   │                                                          .account_shut: stops the call
    │   │   └── QuotaExceededError        429 AllocationQuota      stops the call (retried only
    │   │                                                          when hinted: see the class)
    │   ├── InternalServerError           5xx                      retried (not 501, 505)
    │   └── (APIStatusError itself)       408/409 retried; other codes not retried
    ├── APIConnectionError                no answer; .endpoint     retried (refused: briefly;
    │   │                                                          https to plain http: never)
    │   └── APITimeoutError               no answer in time        retried
    └── APIResponseError                  malformed 2xx body       retried

``APIError`` is an alias of :class:`APIStatusError`, kept for code written against
earlier versions. Unlike openai-python's ``APIError``, it does **not** include
connection errors: catch :class:`OpenSearchMMError` for "any failure of a call".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeGuard

if TYPE_CHECKING:
    from .results import PartialResult

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIResponseError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "ClientClosedError",
    "ConfigurationError",
    "InputError",
    "InternalServerError",
    "InvalidParameterError",
    "OpenSearchMMError",
    "QuotaExceededError",
    "RateLimitError",
    "ServiceNotFoundError",
]


class OpenSearchMMError(Exception):
    """Base class of every error this package raises.

    ``partial`` is set when a multi-request call failed part-way: it holds the vectors
    already computed (in input order, ``None`` where missing) and the failed indices,
    so the caller can finish the rest without redoing the work.
    """

    partial: PartialResult | None = None
    partial_summary: str | None = None
    """What ``partial`` holds, in words, as appended to the message in brackets (a
    caller that reports the error its own way can take it off)."""
    request_id: str | None = None
    """The service's id of the failed request, when it answered (quote it to support)."""


class ConfigurationError(OpenSearchMMError, ValueError):
    """The client was configured wrongly (missing key or endpoint, bad option)."""


class InputError(OpenSearchMMError, ValueError):
    """An input is invalid; nothing was sent for it.

    ``index`` is the position of the input in the call (``None`` when the error is not
    about one input), ``field`` the part at fault (``"text"``, ``"image"`` or ``None``).
    """

    def __init__(self, message: str, *, index: int | None = None, field: str | None = None):
        self.index = index
        self.field = field
        self.reason = message
        if index is not None:
            where = f"input {index}" + (f" ({field})" if field else "")
            message = f"{where}: {message}"
        super().__init__(message)


class ClientClosedError(OpenSearchMMError, RuntimeError):
    """A call was made on a client after :meth:`close`/:meth:`aclose`."""


class APIStatusError(OpenSearchMMError):
    """The service answered with an error status (4xx/5xx).

    Connection failures are :class:`APIConnectionError`, not a subclass of this one.
    """

    status_code: int
    code: str | None = None
    retry_after: float | None = None
    retry_after_unit: float | None = None
    """The hint's resolution (1.0: whole seconds, rounded up, so it may mean up to a second
    less; 0.001: milliseconds). ``None`` where not known."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        code: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        retry_after_unit: float | None = None,
    ) -> None:
        self.status_code = status_code
        self.code = code
        self.message = message
        self.request_id = request_id
        self.retry_after = retry_after
        self.retry_after_unit = retry_after_unit
        text = f"HTTP {status_code}"
        if code:
            text += f" {code}"
        text += f": {message}"
        if request_id:
            text += f" (request_id={request_id})"
        super().__init__(text)


class AuthenticationError(APIStatusError):
    """401/403: the API key is missing, wrong, or lacks access to this workspace."""


class InvalidParameterError(APIStatusError):
    """400 ``InvalidParameter``: the service refused the request body."""


class ServiceNotFoundError(APIStatusError):
    """400 ``ServiceIdNotExist`` or 404: unknown service id (model) or workspace."""


class RateLimitError(APIStatusError):
    """429 ``Throttling`` / ``Throttling.RateQuota``: too many requests per second.

    ``account_shut`` is set on the error a request ends in when the account let no request
    through in all the time it was retried: the call then starts no new request (each
    would wait and fail the same way), as for the errors that stop a call at once.
    """

    account_shut: bool = False


def is_throttling(exc: BaseException) -> TypeGuard[RateLimitError]:
    """Whether ``exc`` is a throttle's 429 asking to slow down (``Throttling``), not a
    used-up quota (:class:`QuotaExceededError`)."""
    return isinstance(exc, RateLimitError) and not isinstance(exc, QuotaExceededError)


class QuotaExceededError(RateLimitError):
    """429 ``Throttling.AllocationQuota``: the quota is used up.

    Not retried: the call stops. Except when the service says when to come back (a
    retry hint, ``x-acs-retry-after`` or ``Retry-After``, within the retry policy's
    ``max_retry_after``) on a quota other than the free one: a quota per period (tokens
    per minute) that refills then, and the request is retried after the hint.
    """

    @property
    def refills(self) -> bool:
        """Whether the service said when this quota is back: a retry hint, not on the
        free quota ("Free allocated quota exceeded": only billing brings it back)."""
        hint = self.retry_after
        free = "free" in (self.message or "").lower()
        return isinstance(hint, (int, float)) and hint >= 0 and not free


class InternalServerError(APIStatusError):
    """5xx from the service."""


APIError = APIStatusError
"""Alias of :class:`APIStatusError` (status errors only, unlike openai's ``APIError``)."""


class APIConnectionError(OpenSearchMMError):
    """The request could not be sent or the answer was cut off.

    ``endpoint`` is the ``scheme://host:port`` that was tried. ``kind`` says why when it
    is known: ``"refused"`` (nothing listens there: retried only briefly),
    ``"unresolved"`` (no such host: retried only briefly), ``"tls_mismatch"`` (an https
    endpoint answered in plain http: never retried), ``"timeout"``, or ``"other"``.
    """

    endpoint: str | None = None
    kind: str = "other"

    def __init__(
        self, message: str, *, endpoint: str | None = None, kind: str | None = None
    ) -> None:
        self.endpoint = endpoint
        if kind is not None:
            self.kind = kind
        super().__init__(message)


class APITimeoutError(APIConnectionError):
    """The service did not answer within the timeout."""

    kind = "timeout"


class APIResponseError(OpenSearchMMError):
    """A 2xx answer whose body is malformed, incomplete or inconsistent.

    ``position`` is the place in its request of the answer found wrong, where one was
    (a call's error message also names that input's place in the call)."""

    def __init__(
        self, message: str, *, request_id: str | None = None, position: int | None = None
    ) -> None:
        self.request_id = request_id
        self.position = position
        if request_id:
            message = f"{message} (request_id={request_id})"
        super().__init__(message)
