"""Errors in the command line's terms: what went wrong, and what to do about it.

The core's messages speak to Python callers (``err.partial``, ``image_max_side=...``,
0-based input indices); the command names options, environment variables, 1-based
input numbers and manifest lines instead, and advises ``--resume`` only when resuming
can help.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import httpx

from .client import ENV_API_KEY, ENV_ENDPOINT, ENV_WORKSPACE
from .errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    InputError,
    InvalidParameterError,
    OpenSearchMMError,
    QuotaExceededError,
    RateLimitError,
    ServiceNotFoundError,
)

__all__ = [
    "Explained",
    "core_message",
    "explain",
    "input_reason",
    "missing_credentials",
    "refused_reason",
]

_TLS_MISMATCH = ("WRONG_VERSION_NUMBER", "wrong version number", "record layer failure")


def core_message(exc: BaseException) -> str:
    """The core's message without the summary it appends for Python callers
    (``[... vectors and failed indices are in err.partial]``)."""
    text = str(exc.args[0]) if exc.args else str(exc)
    summary = getattr(exc, "partial_summary", None)
    return text.removesuffix(f" [{summary}]") if summary else text


def input_reason(exc: InputError) -> str:
    """An input's problem, with the command's option where the core names a parameter."""
    reason = exc.reason
    if "downscale_oversized=True" in reason:
        # Not --image-max-side: an image at or under the side given is sent as it is, so no
        # fixed side is sure to help; --downscale-oversized re-encodes until the image fits.
        reason = reason.split("; pass ", 1)[0] + "; pass --downscale-oversized to shrink it"
    return reason


def refused_reason(exc: APIError) -> str:
    """Why the service refused one input as invalid (a dead link, an unreadable image)."""
    return f"the service refused it as invalid ({_service_text(exc)})"


def missing_credentials(endpoint: str | None, api_key: str | None) -> str | None:
    """The message for a missing endpoint and/or key (naming both when both are missing)."""
    missing = [
        (what, variable, option)
        for what, variable, option, value in (
            ("endpoint", ENV_ENDPOINT, "--endpoint", endpoint),
            ("API key", ENV_API_KEY, "--api-key", api_key),
        )
        if not (value or os.environ.get(variable, "").strip())
    ]
    if not missing:
        return None
    return (
        f"no {' and no '.join(m[0] for m in missing)}: set "
        f"{' and '.join(m[1] for m in missing)} (or pass {' and '.join(m[2] for m in missing)})"
    )


@dataclass(frozen=True)
class Explained:
    """A failure as the command reports it."""

    message: str
    fix: str  # what the user should do ("" when the message says it all)
    transient: bool  # running again (``--resume``) may succeed as it is


def _service_text(exc: APIError) -> str:
    text = f"HTTP {exc.status_code}"
    if exc.code:
        text += f" {exc.code}"
    if exc.message:
        text += f": {exc.message}"
    if exc.request_id:
        text += f", request_id {exc.request_id}"
    return text


def _hostport(base_url: str) -> str:
    url = httpx.URL(base_url)
    return f"{url.host}:{url.port}" if url.port else url.host


def _account_shut(exc: OpenSearchMMError) -> bool:
    """Whether the call stopped because the account let no request through: the error
    raised is the first failed input's, and the request that stopped the call may be
    another's (see ``err.partial.errors``)."""
    if getattr(exc, "account_shut", False):
        return True
    errors = exc.partial.errors.values() if exc.partial is not None else ()
    return any(getattr(e, "account_shut", False) for e in errors)


def explain(
    exc: OpenSearchMMError, *, endpoint: str, workspace: str, model: str, retries: int
) -> Explained:
    """Say what ``exc`` means for this job: the problem, the fix, and whether it is
    worth running again unchanged."""
    if isinstance(exc, AuthenticationError):
        return Explained(
            f"the service refused the API key ({_service_text(exc)})",
            f"check {ENV_API_KEY} (or --api-key), and that the key may use workspace "
            f"{workspace!r} ({ENV_WORKSPACE} or --workspace)",
            transient=False,
        )
    if isinstance(exc, ServiceNotFoundError):
        return Explained(
            f"no service {model!r} in workspace {workspace!r} at {endpoint} ({_service_text(exc)})",
            f"check --model and --workspace ({ENV_WORKSPACE}), and {ENV_ENDPOINT}",
            transient=False,
        )
    if isinstance(exc, QuotaExceededError):
        return Explained(
            f"the account's quota is used up ({_service_text(exc)})",
            "raise the quota in the console or wait for it to reset",
            transient=False,
        )
    if isinstance(exc, RateLimitError) and _account_shut(exc):
        return Explained(
            f"the account let no request through while one was retried ({_service_text(exc)})",
            "its rate quota may be spent for a while (a quota per minute or hour): wait, "
            "then run again with --resume, or check the quota in the console",
            transient=True,
        )
    if isinstance(exc, RateLimitError):
        return Explained(
            f"still throttled after {retries} retries ({_service_text(exc)})",
            "lower --qps or raise --max-retries",
            transient=True,
        )
    if isinstance(exc, InvalidParameterError):
        return Explained(
            f"the service refused a request ({_service_text(exc)})",
            "fix the inputs it names",
            transient=False,
        )
    if isinstance(exc, APIError):
        return Explained(f"the service failed ({_service_text(exc)})", "", transient=True)
    if isinstance(exc, APITimeoutError):
        return Explained(
            f"no answer from {endpoint} in time ({core_message(exc)})",
            "raise --timeout if the service is slow",
            transient=True,
        )
    if isinstance(exc, APIConnectionError):
        text = core_message(exc)
        kind = getattr(exc, "kind", "other")
        tls = endpoint.startswith("https://") and any(m in text for m in _TLS_MISMATCH)
        if kind == "tls_mismatch" or tls:
            plain = "http://" + endpoint[len("https://") :]
            return Explained(
                f"cannot connect to {endpoint}: the server answers in plain http, not https",
                f"if it really serves plain http, use --endpoint {plain} (or set {ENV_ENDPOINT})",
                transient=False,
            )
        if kind == "refused":
            return Explained(
                f"cannot connect to {endpoint}: connection refused, nothing is listening there",
                f"check the host and port in {ENV_ENDPOINT} (or --endpoint), and that the "
                "service is up",
                transient=True,
            )
        if endpoint not in text and _hostport(endpoint) not in text:
            text = f"cannot connect to {endpoint} ({text})"
        return Explained(text, f"check {ENV_ENDPOINT} (or --endpoint)", transient=True)
    return Explained(core_message(exc), "", transient=True)
