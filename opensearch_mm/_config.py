"""Client configuration: arguments and environment variables resolved and checked once.

:meth:`ClientConfig.resolve` is the one place where a client option is read from its
argument or its environment variable, defaulted and checked. Every check raises
:class:`ConfigurationError` naming the argument, so ``except ConfigurationError`` (or
``except ValueError``) catches any bad option, whichever layer (client or adapter) was given it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import logging
import math
import os
import ssl
import urllib.request
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import httpx

from ._redact import Secrets
from .batching import BODY_OVERHEAD, MAX_BODY_BYTES
from .errors import ConfigurationError
from .images import require_pillow
from .inputs import EncodeOptions
from .models import DEFAULT_MODEL, MODELS, ModelInfo, model_info
from .protocol import build_url, normalize_endpoint, request_headers
from .ratelimit import (
    AdaptiveRateLimiter,
    RateLimiter,
    describe_qps,
    describe_share,
    make_rate_limiter,
)
from .retry import RetryPolicy

__all__ = [
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_QPS_MODE",
    "DEFAULT_TIMEOUT",
    "DEFAULT_WORKSPACE",
    "ENV_API_KEY",
    "ENV_ENDPOINT",
    "ENV_SHARE_RATE_LIMIT",
    "ENV_WORKSPACE",
    "ClientConfig",
    "InsecureTransportWarning",
    "SupportsSecretValue",
    "mirror_policy_fields",
    "setting_changes",
]

logger = logging.getLogger("opensearch_mm")

ENV_API_KEY = "OPENSEARCH_MM_API_KEY"
ENV_ENDPOINT = "OPENSEARCH_MM_ENDPOINT"
ENV_WORKSPACE = "OPENSEARCH_MM_WORKSPACE"
ENV_SHARE_RATE_LIMIT = "OPENSEARCH_MM_SHARE_RATE_LIMIT"
DEFAULT_WORKSPACE = "default"
DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_RETRIES = 6
DEFAULT_MAX_CONCURRENCY = 8
DEFAULT_QPS_MODE: Literal["adaptive"] = "adaptive"
MIN_IMAGE_SIDE = 16  # pixels; smaller than any model's useful input
CONNECT_TIMEOUT_CAP = 10.0  # seconds: a host that does not accept in 10 s is not there


@runtime_checkable
class SupportsSecretValue(Protocol):
    """A secret wrapper such as pydantic's ``SecretStr``."""

    def get_secret_value(self) -> str: ...


class InsecureTransportWarning(UserWarning):
    """The API key is about to travel over plain http to a host that is not loopback."""


_SSL_CONTEXT: ssl.SSLContext | None = None


def ssl_context(base_url: str = "https://") -> ssl.SSLContext:
    """The TLS context for a client of ``base_url``.

    For https, one default context per process: loading the CA bundle costs ~0.05-0.1 s
    of CPU, which every client (sync and async pools alike) would otherwise pay again.
    A plain-http endpoint (the local emulator, a VPC endpoint) never does TLS (redirects
    are not followed), so it gets a context with no CA loaded: nothing to pay, and were
    it ever used it would verify nothing as trusted (it fails closed, never open). Unless
    an https proxy is configured for http URLs (``HTTP_PROXY``/``ALL_PROXY``): the
    connection to the proxy needs the default context then.
    """
    global _SSL_CONTEXT
    if base_url.startswith("http://") and not _https_proxy_for_http():
        return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if _SSL_CONTEXT is None:
        _SSL_CONTEXT = httpx.create_ssl_context()
    return _SSL_CONTEXT


def _https_proxy_for_http() -> bool:
    """Whether the environment routes http URLs through a proxy reached over https (as
    httpx reads it, from ``urllib.request.getproxies``)."""
    proxies = urllib.request.getproxies()
    return any(proxies.get(scheme, "").startswith("https://") for scheme in ("http", "all"))


def secret_value(value: object) -> str | None:
    """The key as a stripped str (``None`` when absent or blank); never echoes the value.

    Raises:
        ConfigurationError: Not a str, or it holds a character an HTTP header cannot
            carry (the message gives its position and kind, not the character).
    """
    if value is None:
        return None
    raw = value.get_secret_value() if isinstance(value, SupportsSecretValue) else value
    if not isinstance(raw, str):
        raise ConfigurationError("api_key must be a str (or a SecretStr)")
    key = raw.strip()
    for position, char in enumerate(key, 1):
        if not " " <= char <= "~":
            kind = "control" if char < " " or char == "\x7f" else "non-ASCII"
            raise ConfigurationError(
                f"the API key holds a {kind} character (character {position} of {len(key)}), "
                "which an HTTP header cannot carry: check for a line break or a quote pasted "
                "with it"
            )
    return key or None


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_number(value: object) -> float | None:
    """``value`` as a finite float > 0, or ``None`` if it is not one (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if 0 < number < math.inf else None


def _check_timeout(timeout: object) -> float:
    seconds = _positive_number(timeout)
    if seconds is None:
        raise ConfigurationError(f"timeout must be a number of seconds > 0, got {_show(timeout)}")
    return seconds


def _check_max_retries(max_retries: object) -> int:
    if max_retries is None:
        raise ConfigurationError("max_retries cannot be None; use 0 to disable retries")
    if not isinstance(max_retries, int) or isinstance(max_retries, bool) or max_retries < 0:
        raise ConfigurationError(f"max_retries must be an int >= 0, got {_show(max_retries)}")
    return max_retries


def _check_qps(qps: object) -> float | Literal["adaptive"] | None:
    if qps is None:
        return None
    if qps == "adaptive":
        return "adaptive"
    rate = _positive_number(qps)
    if rate is None:
        raise ConfigurationError(
            f"qps must be 'adaptive', a number of requests per second > 0 or None, got {_show(qps)}"
        )
    return rate


_OFF = frozenset({"0", "false", "no", "off"})
_ON = frozenset({"", "1", "true", "yes", "on"})


def _check_share(value: object) -> bool | str:
    """``share_rate_limit`` (``None``: from ``OPENSEARCH_MM_SHARE_RATE_LIMIT``, else on).
    A str reads as the variable does: ``0``/``false``/``no``/``off`` and
    ``1``/``true``/``yes``/``on`` are switches, anything else a group name."""
    if isinstance(value, bool):
        return value
    if value is None or (isinstance(value, str) and value.strip()):
        raw = (os.environ.get(ENV_SHARE_RATE_LIMIT, "") if value is None else value).strip()
        if raw.lower() in _OFF:
            return False
        return True if raw.lower() in _ON else raw
    raise ConfigurationError(
        f"share_rate_limit must be True, False or a group name (a non-empty str), "
        f"got {_show(value)}"
    )


def _show(value: object) -> str:
    """A short, safe rendering of a bad option value for an error message."""
    text = repr(value)
    return text if len(text) <= 40 else f"{type(value).__name__} value"


@dataclass(frozen=True, repr=False)
class ClientConfig:
    """The resolved, checked configuration of one client (a value: frozen, comparable).

    Build it with :meth:`resolve`; the fields are the final values, after environment
    variables and defaults. The key is held in ``secrets`` and never shown by ``repr``.
    """

    base_url: str
    workspace: str
    model: str
    model_info: ModelInfo
    url: str
    timeout: float
    max_concurrency: int
    retry_policy: RetryPolicy
    qps: float | Literal["adaptive"] | None
    rate_limiter: RateLimiter | None
    image_max_side: int | None
    downscale_oversized: bool
    share_rate_limit: bool | str
    secrets: Secrets = field(compare=True)

    @classmethod
    def resolve(
        cls,
        *,
        api_key: str | SupportsSecretValue | None = None,
        endpoint: str | None = None,
        workspace: str | None = None,
        model: str = DEFAULT_MODEL,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        retry_policy: RetryPolicy | None = None,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        qps: float | Literal["adaptive"] | None = DEFAULT_QPS_MODE,
        rate_limiter: RateLimiter | None = None,
        image_max_side: int | None = None,
        downscale_oversized: bool = False,
        share_rate_limit: bool | str | None = None,
    ) -> ClientConfig:
        """Read each option from its argument, else its environment variable, else the
        default, and check it.

        Args:
            api_key: The key (``str`` or ``SecretStr``); else ``OPENSEARCH_MM_API_KEY``.
            endpoint: ``host``, ``https://host`` or ``http://host:port``; else
                ``OPENSEARCH_MM_ENDPOINT``.
            workspace: Else ``OPENSEARCH_MM_WORKSPACE``, else ``"default"``.
            model: The service id.
            timeout: Seconds per request (> 0).
            max_retries: Retries per request (int >= 0); ignored when ``retry_policy``
                is given.
            retry_policy: Backoff settings; wins over ``max_retries``.
            max_concurrency: Requests in flight (int >= 1).
            qps: ``"adaptive"``, a pinned requests-per-second number, or ``None`` (off).
            rate_limiter: A ready limiter; wins over ``qps``.
            image_max_side: Downscale images whose longer side exceeds this (>= 16).
            downscale_oversized: Re-encode an image too big for one request.
            share_rate_limit: With ``qps="adaptive"``: ``True`` paces with every client of
                this account on this machine, ``False`` alone, a str with every client
                passing that group name; else ``OPENSEARCH_MM_SHARE_RATE_LIMIT``
                (``0``/``false``/``off``, ``1``/``true``/``on`` or a group name), else
                ``True``.

        Returns:
            The checked configuration.

        Raises:
            ConfigurationError: An option is missing or invalid; the message names it.
        """
        # The key goes straight into ``Secrets`` (whose repr hides it), never into a
        # local variable that a traceback with captured locals would print.
        secrets = Secrets(
            (secret_value(api_key) or secret_value(os.environ.get(ENV_API_KEY)) or "",)
        )
        if not secrets[0]:
            raise ConfigurationError(
                f"no API key: pass api_key=... or set the {ENV_API_KEY} environment variable"
            )
        raw_endpoint = endpoint or os.environ.get(ENV_ENDPOINT)
        if not raw_endpoint:
            raise ConfigurationError(
                f"no endpoint: pass endpoint=... (e.g. 'ops-cn-hangzhou.opensearch.aliyuncs.com')"
                f" or set the {ENV_ENDPOINT} environment variable"
            )
        if not isinstance(raw_endpoint, str):
            raise ConfigurationError(f"endpoint must be a str, got {type(raw_endpoint).__name__}")
        base_url = normalize_endpoint(raw_endpoint)
        workspace = workspace or os.environ.get(ENV_WORKSPACE) or DEFAULT_WORKSPACE
        if not isinstance(workspace, str):
            raise ConfigurationError(f"workspace must be a str, got {type(workspace).__name__}")
        if not model or not isinstance(model, str):
            raise ConfigurationError("model must be a non-empty service id")
        if not _is_int(max_concurrency) or max_concurrency < 1:
            raise ConfigurationError(
                f"max_concurrency must be an int >= 1, got {_show(max_concurrency)}"
            )
        if image_max_side is not None:
            if not _is_int(image_max_side) or image_max_side < MIN_IMAGE_SIDE:
                raise ConfigurationError(
                    f"image_max_side must be at least {MIN_IMAGE_SIDE} pixels, "
                    f"got {_show(image_max_side)}"
                )
            require_pillow("image_max_side")
        if not isinstance(downscale_oversized, bool):
            raise ConfigurationError("downscale_oversized must be True or False")
        if downscale_oversized:
            require_pillow("downscale_oversized")
        if retry_policy is None:
            retry_policy = RetryPolicy(max_retries=_check_max_retries(max_retries))
        elif not isinstance(retry_policy, RetryPolicy):
            raise ConfigurationError("retry_policy must be a RetryPolicy")
        if rate_limiter is not None and not isinstance(rate_limiter, RateLimiter):
            raise ConfigurationError(
                "rate_limiter must be an opensearch_mm.RateLimiter (a subclass of it), got "
                f"{type(rate_limiter).__name__}: for a plain rate, pass qps=..."
            )
        checked_qps = _check_qps(qps)
        share = _check_share(share_rate_limit)
        if (
            share_rate_limit is not None
            and isinstance(share, str)
            and (rate_limiter is not None or checked_qps != "adaptive")
        ):
            raise ConfigurationError(
                "share_rate_limit=<group> paces qps='adaptive' limiters together; it cannot "
                "apply with " + ("rate_limiter=..." if rate_limiter is not None else "this qps")
            )
        return cls(
            base_url=base_url,
            workspace=workspace,
            model=model,
            model_info=model_info(model),
            url=build_url(base_url, workspace, model),
            timeout=_check_timeout(timeout),
            max_concurrency=max_concurrency,
            retry_policy=retry_policy,
            qps=checked_qps,
            rate_limiter=rate_limiter,
            image_max_side=image_max_side,
            downscale_oversized=downscale_oversized,
            share_rate_limit=share,
            secrets=secrets,
        )

    def __repr__(self) -> str:
        return (
            f"ClientConfig(endpoint={self.base_url!r}, workspace={self.workspace!r}, "
            f"model={self.model!r}, api_key='****')"
        )

    # -- what the client builds from it ----------------------------------------------

    @property
    def host(self) -> str:
        """The endpoint's host name."""
        return httpx.URL(self.base_url).host

    @property
    def origin(self) -> str:
        """``scheme://host:port`` of the endpoint: what error messages name (never a key)."""
        url = httpx.URL(self.base_url)
        port = url.port or (443 if url.scheme == "https" else 80)
        host = f"[{url.host}]" if ":" in url.host else url.host
        return f"{url.scheme}://{host}:{port}"

    @property
    def target(self) -> str:
        """The model and workspace asked for, as an unknown one's error names them (the
        service's own message names neither)."""
        text = f"asked for service_id {self.model!r} in workspace {self.workspace!r}"
        if self.model not in MODELS:
            text += f"; the models known here: {', '.join(MODELS)}"
        return text

    def headers(self) -> dict[str, str]:
        """The headers of every request (they hold the key: never log them)."""
        return request_headers(self.secrets[0])

    def share_key(self) -> str | None:
        """Who an adaptive limiter paces with: the group name given, else every client of
        this endpoint on this machine (a salted hash of its host and port), or ``None``
        when not sharing. The limit is the account's, shared by all its RAM users' keys
        and all its workspaces, and a key does not say which account it belongs to: so
        neither the key nor the workspace splits the group (two accounts on one machine
        pass group names to pace apart)."""
        if self.share_rate_limit is False:
            return None
        if isinstance(self.share_rate_limit, str):
            return self.share_rate_limit
        url = httpx.URL(self.base_url)
        port = url.port or (443 if url.scheme == "https" else 80)
        endpoint = "\0".join([url.host.lower(), str(port)])
        digest = hashlib.blake2b(endpoint.encode(), digest_size=20, person=b"osmm-account")
        return f"account:{digest.hexdigest()}"

    def make_rate_limiter(self) -> RateLimiter:
        """The injected limiter, or a new one for ``qps`` (shared per :meth:`share_key`)."""
        if self.rate_limiter is not None:
            return self.rate_limiter
        return make_rate_limiter(self.qps, share=self.share_key())

    def describe_share(self, limiter: RateLimiter) -> bool | str:
        """The ``share_rate_limit`` value that describes ``limiter`` (the client's): what
        was resolved for an adaptive limiter made here, else whether it shares."""
        if self.rate_limiter is None and isinstance(limiter, AdaptiveRateLimiter):
            return self.share_rate_limit
        return describe_share(limiter)

    def encode_options(self) -> EncodeOptions:
        """How inputs are checked and encoded for this model."""
        return EncodeOptions(
            model=self.model_info,
            max_item_bytes=MAX_BODY_BYTES - BODY_OVERHEAD,
            image_max_side=self.image_max_side,
            downscale_oversized=self.downscale_oversized,
        )

    def httpx_timeout(self) -> httpx.Timeout:
        """Per-request timeout; connecting gets at most ``CONNECT_TIMEOUT_CAP``."""
        return httpx.Timeout(self.timeout, connect=min(self.timeout, CONNECT_TIMEOUT_CAP))

    def httpx_limits(self) -> httpx.Limits:
        """Pool size: room for every request in flight plus as many kept alive."""
        return httpx.Limits(
            max_connections=self.max_concurrency * 2,
            max_keepalive_connections=self.max_concurrency * 2,
        )

    def http_client(self) -> httpx.Client:
        """A pooled sync client carrying the request headers (merged once, not per request)."""
        return httpx.Client(
            headers=self.headers(),
            timeout=self.httpx_timeout(),
            limits=self.httpx_limits(),
            follow_redirects=False,
            verify=ssl_context(self.base_url),
        )

    def http_async_client(self) -> httpx.AsyncClient:
        """The async twin of :meth:`http_client`."""
        return httpx.AsyncClient(
            headers=self.headers(),
            timeout=self.httpx_timeout(),
            limits=self.httpx_limits(),
            follow_redirects=False,
            verify=ssl_context(self.base_url),
        )

    def warn_if_insecure(self, *, stacklevel: int) -> None:
        """Warn (and log) when the key would travel over plain http to a remote host."""
        if self.base_url.startswith("http://") and not is_loopback(self.host):
            message = (
                f"the API key will be sent over plain http to {self.host}; use https:// "
                "unless this is a trusted private network (VPC endpoint)"
            )
            warnings.warn(message, InsecureTransportWarning, stacklevel=stacklevel + 1)
            logger.warning(message)


def mirror_policy_fields(fields: dict[str, Any]) -> None:
    """Make ``max_retries``/``qps``/``share_rate_limit`` in ``fields`` describe a given
    ``retry_policy`` / ``rate_limiter`` (for framework adapters, whose fields must say what
    is used).

    The client lets a policy or a limiter win over ``max_retries``/``qps``; a field that
    disagrees with it is refused rather than silently ignored.

    Raises:
        ConfigurationError: ``max_retries``, ``qps`` or ``share_rate_limit`` disagrees
            with the object given.
    """
    policy = fields.get("retry_policy")
    if isinstance(policy, Mapping):  # from a JSON dump
        policy = fields["retry_policy"] = RetryPolicy(**policy)
    if isinstance(policy, RetryPolicy):
        if fields.get("max_retries", policy.max_retries) != policy.max_retries:
            raise ConfigurationError(
                f"max_retries={fields['max_retries']!r} disagrees with "
                f"retry_policy.max_retries={policy.max_retries!r}; pass one of them"
            )
        fields["max_retries"] = policy.max_retries
    limiter = fields.get("rate_limiter")
    if isinstance(limiter, RateLimiter):
        described = describe_qps(limiter)
        if fields.get("qps", described) != described:
            raise ConfigurationError("pass qps=... or rate_limiter=..., not both")
        fields["qps"] = described
        shares = describe_share(limiter)
        given = fields.get("share_rate_limit")
        if given is not None and bool(given) != shares:
            raise ConfigurationError("pass share_rate_limit=... or rate_limiter=..., not both")
        if given is None:
            fields["share_rate_limit"] = shares


def setting_changes(values: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """What ``update`` changes in an adapter's settings ``values``, the fields that mirror
    a policy or a limiter following it (as :func:`mirror_policy_fields` would set them).

    A new ``max_retries`` goes into the policy given before (its other settings stay); a
    new ``qps`` or ``share_rate_limit`` replaces a limiter given before; a new
    ``retry_policy`` or ``rate_limiter`` sets the fields that describe it. Without this, a
    copy or an assignment would carry the old mirror beside the new setting and be refused
    as passing both.

    Raises:
        ConfigurationError: ``update`` itself passes a policy or limiter and a field that
            disagrees with it.
    """
    changes = dict(update)
    policy = values.get("retry_policy")
    retries = "max_retries" in changes and "retry_policy" not in changes
    if retries and isinstance(policy, RetryPolicy):
        changes["retry_policy"] = dataclasses.replace(policy, max_retries=changes["max_retries"])
    limiter = values.get("rate_limiter")
    given = {"qps", "share_rate_limit"} & changes.keys()
    if given and "rate_limiter" not in changes and isinstance(limiter, RateLimiter):
        changes["rate_limiter"] = None
    mirror_policy_fields(changes)
    return changes
