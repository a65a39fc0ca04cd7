"""The exception hierarchy.

Everything raised on purpose by this package derives from :class:`OpenSearchMMError`.
No message built here ever contains the API key: messages are built from the service's
``code``/``message``, the request id and the input index only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .results import PartialResult

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIResponseError",
    "APITimeoutError",
    "AuthenticationError",
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


class APIError(OpenSearchMMError):
    """The service answered with an error status."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        code: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.status_code = status_code
        self.code = code
        self.message = message
        self.request_id = request_id
        self.retry_after = retry_after
        text = f"HTTP {status_code}"
        if code:
            text += f" {code}"
        text += f": {message}"
        if request_id:
            text += f" (request_id={request_id})"
        super().__init__(text)


class AuthenticationError(APIError):
    """401/403: the API key is missing, wrong, or lacks access to this workspace."""


class InvalidParameterError(APIError):
    """400 ``InvalidParameter``: the service refused the request body."""


class ServiceNotFoundError(APIError):
    """400 ``ServiceIdNotExist`` or 404: unknown service id (model) or workspace."""


class RateLimitError(APIError):
    """429 ``Throttling`` / ``Throttling.RateQuota``: too many requests per second."""


class QuotaExceededError(RateLimitError):
    """429 ``Throttling.AllocationQuota``: the quota is used up; retrying cannot help."""


class InternalServerError(APIError):
    """5xx from the service."""


class APIConnectionError(OpenSearchMMError):
    """The request could not be sent or the answer was cut off."""


class APITimeoutError(APIConnectionError):
    """The service did not answer within the timeout."""


class APIResponseError(OpenSearchMMError):
    """A 2xx answer whose body is malformed, incomplete or inconsistent."""

    def __init__(self, message: str, *, request_id: str | None = None) -> None:
        self.request_id = request_id
        if request_id:
            message = f"{message} (request_id={request_id})"
        super().__init__(message)
