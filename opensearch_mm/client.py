"""``MultiModalEmbeddingClient``: configuration and the public embedding calls."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import ssl
import warnings
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Literal, overload

import httpx

from ._async import AsyncDriver, as_async_iter
from ._call import CallState, StreamState
from ._driver import DriverConfig, NotSent, Outcome
from ._redact import Secrets
from ._sync import SyncDriver
from .batching import BODY_OVERHEAD, MAX_BODY_BYTES, Batch, Packer, pack
from .errors import ConfigurationError, InputError
from .images import require_pillow
from .inputs import (
    ContentLike,
    EncodeOptions,
    WireItem,
    encode_content,
    encode_image_only,
    encode_text_only,
    require_many,
)
from .models import DEFAULT_MODEL, ModelInfo, model_info
from .protocol import BatchResponse, build_url, normalize_endpoint, request_headers
from .ratelimit import RateLimiter, make_rate_limiter
from .results import EmbeddingResult, StreamStats
from .retry import RetryPolicy

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from .images import ImageInput

__all__ = [
    "ENV_API_KEY",
    "ENV_ENDPOINT",
    "ENV_WORKSPACE",
    "InsecureTransportWarning",
    "MultiModalEmbeddingClient",
]

logger = logging.getLogger("opensearch_mm")

ENV_API_KEY = "OPENSEARCH_MM_API_KEY"
ENV_ENDPOINT = "OPENSEARCH_MM_ENDPOINT"
ENV_WORKSPACE = "OPENSEARCH_MM_WORKSPACE"
DEFAULT_WORKSPACE = "default"

Encoder = Callable[[object, int, EncodeOptions], WireItem]


_SSL_CONTEXT: ssl.SSLContext | None = None


def _ssl_context() -> ssl.SSLContext:
    """One default TLS context per process: loading the CA bundle costs ~0.1 s of CPU,
    which every client (sync and async pools alike) would otherwise pay again."""
    global _SSL_CONTEXT
    if _SSL_CONTEXT is None:
        _SSL_CONTEXT = httpx.create_ssl_context()
    return _SSL_CONTEXT


class InsecureTransportWarning(UserWarning):
    """The API key is about to travel over plain http to a host that is not loopback."""


def _secret_value(value: object) -> str | None:
    if value is None:
        return None
    getter = getattr(value, "get_secret_value", None)  # pydantic SecretStr
    raw = getter() if callable(getter) else value
    if not isinstance(raw, str):
        raise ConfigurationError("api_key must be a str")
    return raw.strip() or None


def _is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class MultiModalEmbeddingClient:
    """A client for the multimodal embedding API of Alibaba Cloud AI Search Open Platform.

    Any number of inputs in, one vector per input out, in input order. Inputs are
    validated and encoded before anything is sent, packed into requests of at most 32
    inputs and 8 MB, sent concurrently (``max_concurrency``) under a rate limiter shared
    by every call of this client, and retried with jittered backoff where that can help.
    """

    def __init__(
        self,
        *,
        api_key: str | Any | None = None,
        endpoint: str | None = None,
        workspace: str | None = None,
        model: str = DEFAULT_MODEL,
        timeout: float = 60.0,
        max_retries: int = 6,
        retry_policy: RetryPolicy | None = None,
        max_concurrency: int = 8,
        qps: float | Literal["adaptive"] | None = "adaptive",
        rate_limiter: RateLimiter | None = None,
        image_max_side: int | None = None,
        downscale_oversized: bool = False,
        http_client: httpx.Client | None = None,
        async_http_client: httpx.AsyncClient | None = None,
    ) -> None:
        # The key lives only in ``self`` (whose repr hides it) and in ``Secrets``, never in
        # a local variable a traceback with captured locals would print.
        self._secrets = Secrets(
            (_secret_value(api_key) or _secret_value(os.environ.get(ENV_API_KEY)) or "",)
        )
        if not self._secrets[0]:
            raise ConfigurationError(
                f"no API key: pass api_key=... or set the {ENV_API_KEY} environment variable"
            )
        raw_endpoint = endpoint or os.environ.get(ENV_ENDPOINT)
        if not raw_endpoint:
            raise ConfigurationError(
                f"no endpoint: pass endpoint=... (e.g. 'ops-cn-hangzhou.opensearch.aliyuncs.com')"
                f" or set the {ENV_ENDPOINT} environment variable"
            )
        self._api_key = self._secrets[0]
        self.base_url = normalize_endpoint(raw_endpoint)
        self.workspace = workspace or os.environ.get(ENV_WORKSPACE) or DEFAULT_WORKSPACE
        if not model or not isinstance(model, str):
            raise ConfigurationError("model must be a non-empty service id")
        self.model = model
        self.model_info: ModelInfo = model_info(model)
        self.url = build_url(self.base_url, self.workspace, model)
        if not timeout > 0:
            raise ConfigurationError("timeout must be > 0")
        if not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise ConfigurationError("max_concurrency must be an int >= 1")
        if image_max_side is not None and image_max_side < 16:
            raise ConfigurationError("image_max_side must be at least 16 pixels")
        if image_max_side is not None:
            require_pillow("image_max_side")
        if downscale_oversized:
            require_pillow("downscale_oversized")
        self.timeout = float(timeout)
        self.max_concurrency = max_concurrency
        # ``retry_policy`` (backoff delays, caps) wins over ``max_retries`` when given.
        self.retry_policy = retry_policy or RetryPolicy(max_retries=max_retries)
        try:
            self.rate_limiter = rate_limiter or make_rate_limiter(qps)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        self.encode_options = EncodeOptions(
            model=self.model_info,
            max_item_bytes=MAX_BODY_BYTES - BODY_OVERHEAD,
            image_max_side=image_max_side,
            downscale_oversized=downscale_oversized,
        )
        self._learned_dimensions: int | None = None
        host = httpx.URL(self.base_url).host
        if self.base_url.startswith("http://") and not _is_loopback(host):
            message = (
                f"the API key will be sent over plain http to {host}; use https:// unless "
                "this is a trusted private network (VPC endpoint)"
            )
            warnings.warn(message, InsecureTransportWarning, stacklevel=2)
            logger.warning(message)
        self._headers = request_headers(self._api_key)
        self._own_http = http_client is None
        # A pool this client creates carries the request headers itself (merged once, not
        # per request: the same headers on the wire); an injected one gets them per request.
        self._http = http_client or httpx.Client(
            headers=self._headers,
            timeout=self._httpx_timeout(),
            limits=self._httpx_limits(),
            follow_redirects=False,
            verify=_ssl_context(),
        )
        self._sync = self._make_sync_driver(self._http)
        self._own_async_http = async_http_client is None
        self._async_http = async_http_client
        self._async_loop: asyncio.AbstractEventLoop | None = None
        self._async: AsyncDriver | None = (
            self._make_async_driver(async_http_client) if async_http_client else None
        )

    # -- configuration ----------------------------------------------------------------

    def _httpx_timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0))

    def _httpx_limits(self) -> httpx.Limits:
        return httpx.Limits(
            max_connections=self.max_concurrency * 2,
            max_keepalive_connections=self.max_concurrency * 2,
        )

    def _driver_config(self, *, own_http: bool) -> DriverConfig:
        return DriverConfig(
            url=self.url,
            headers=None if own_http else self._headers,
            retry=self.retry_policy,
            limiter=self.rate_limiter,
            secrets=self._secrets,
            max_concurrency=self.max_concurrency,
        )

    def _make_sync_driver(self, http: httpx.Client) -> SyncDriver:
        return SyncDriver(http, self._driver_config(own_http=self._own_http))

    def _make_async_driver(self, http: httpx.AsyncClient) -> AsyncDriver:
        return AsyncDriver(http, self._driver_config(own_http=self._own_async_http))

    def _async_driver(self) -> AsyncDriver:
        """The async driver for the running loop (one pooled AsyncClient per loop)."""
        if not self._own_async_http:
            assert self._async is not None
            return self._async
        loop = asyncio.get_running_loop()
        if self._async is None or self._async_loop is not loop:
            # A pooled AsyncClient belongs to the loop it first ran on: a new loop
            # (a second asyncio.run) gets its own.
            self._async_http = httpx.AsyncClient(
                headers=self._headers,
                timeout=self._httpx_timeout(),
                limits=self._httpx_limits(),
                follow_redirects=False,
                verify=_ssl_context(),
            )
            self._async = self._make_async_driver(self._async_http)
            self._async_loop = loop
        return self._async

    @property
    def dimensions(self) -> int | None:
        """Vector length of the model (learned from the first answer for unknown ids)."""
        return self.model_info.dimensions or self._learned_dimensions

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(endpoint={self.base_url!r}, workspace={self.workspace!r}, "
            f"model={self.model!r}, api_key='****')"
        )

    # -- lifecycle ----------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection pools this client created (not injected ones)."""
        self._sync.close()
        if self._own_http:
            self._http.close()

    async def aclose(self) -> None:
        """Close the async pool this client created, then the sync one."""
        if self._own_async_http and self._async_http is not None:
            # A pool made on an earlier event loop (an earlier asyncio.run) cannot be
            # closed from this one: its loop is gone, so its sockets are just dropped.
            if self._async_loop is asyncio.get_running_loop():
                await self._async_http.aclose()
            self._async_http = None
            self._async = None
            self._async_loop = None
        self.close()

    def __enter__(self) -> MultiModalEmbeddingClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> MultiModalEmbeddingClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- encoding ---------------------------------------------------------------------

    def _encode_all(
        self, values: Iterable[object], encoder: Encoder, method: str, what: str
    ) -> list[WireItem]:
        require_many(values, method, what)
        return [encoder(value, i, self.encode_options) for i, value in enumerate(values)]

    def _new_state(self, total: int) -> CallState:
        return CallState(total, model=self.model, dimensions=self.dimensions)

    def _learn(self, state: CallState | StreamState) -> None:
        if self.model_info.dimensions is None and state.dimensions is not None:
            self._learned_dimensions = state.dimensions

    def _call_window(self, n_batches: int) -> int:
        # Every batch may be queued at once (idle workers never wait for a slow head of
        # line), except one at a time: a failure that stops the call is then seen before
        # the next request goes out.
        return max(n_batches, 1) if self.max_concurrency > 1 else 1

    @staticmethod
    def _record(state: CallState, batch: Batch, outcome: Outcome) -> None:
        if not isinstance(outcome, NotSent):
            state.record(batch, outcome)

    # -- sync calls -------------------------------------------------------------------

    def _run(self, items: list[WireItem]) -> EmbeddingResult:
        state = self._new_state(len(items))
        batches = list(pack(items))
        for batch, outcome in self._sync.run(
            batches,
            dimensions=lambda: state.dimensions,
            window=self._call_window(len(batches)),
            stop=lambda: state.stopped,
        ):
            self._record(state, batch, outcome)
        self._learn(state)
        return state.finish()

    def embed(self, contents: Iterable[ContentLike]) -> EmbeddingResult:
        """Embed ``Content`` objects, plain strings (texts) or ``{"text", "image"}`` dicts.

        Returns an :class:`EmbeddingResult` with ``embeddings`` in input order, the summed
        ``usage`` and the ``request_ids``.
        """
        return self._run(self._encode_all(contents, encode_content, "embed", "inputs"))

    def embed_texts(self, texts: Iterable[str]) -> list[list[float]]:
        """One vector per text, in order."""
        items = self._encode_all(texts, encode_text_only, "embed_texts", "strings")
        return self._run(items).embeddings

    def embed_images(self, images: Iterable[ImageInput]) -> list[list[float]]:
        """One vector per image (path, bytes, file object, PIL image, URL or data URI)."""
        items = self._encode_all(images, encode_image_only, "embed_images", "images")
        return self._run(items).embeddings

    # -- async calls ------------------------------------------------------------------

    async def _arun(self, items: list[WireItem]) -> EmbeddingResult:
        state = self._new_state(len(items))
        batches = list(pack(items))
        async for batch, outcome in self._async_driver().run(
            batches,
            dimensions=lambda: state.dimensions,
            window=self._call_window(len(batches)),
            stop=lambda: state.stopped,
        ):
            self._record(state, batch, outcome)
        self._learn(state)
        return state.finish()

    async def aembed(self, contents: Iterable[ContentLike]) -> EmbeddingResult:
        """Async :meth:`embed`."""
        return await self._arun(self._encode_all(contents, encode_content, "aembed", "inputs"))

    async def aembed_texts(self, texts: Iterable[str]) -> list[list[float]]:
        """Async :meth:`embed_texts`."""
        items = self._encode_all(texts, encode_text_only, "aembed_texts", "strings")
        return (await self._arun(items)).embeddings

    async def aembed_images(self, images: Iterable[ImageInput]) -> list[list[float]]:
        """Async :meth:`embed_images`."""
        items = self._encode_all(images, encode_image_only, "aembed_images", "images")
        return (await self._arun(items)).embeddings

    # -- streaming --------------------------------------------------------------------

    def _stream_window(self) -> int:
        # Read ahead only what can be in flight (plus one batch ready for the next free
        # slot): every batch read is encoded, and an image batch holds megabytes.
        return self.max_concurrency + 1

    @overload
    def embed_iter(
        self,
        inputs: Iterable[ContentLike],
        *,
        progress: bool = ...,
        as_numpy: Literal[False] = ...,
        stats: StreamStats | None = ...,
    ) -> Iterator[list[float]]: ...

    @overload
    def embed_iter(
        self,
        inputs: Iterable[ContentLike],
        *,
        progress: bool = ...,
        as_numpy: Literal[True],
        stats: StreamStats | None = ...,
    ) -> Iterator[npt.NDArray[np.float32]]: ...

    def embed_iter(
        self,
        inputs: Iterable[ContentLike],
        *,
        progress: bool = False,
        as_numpy: bool = False,
        stats: StreamStats | None = None,
    ) -> Iterator[Any]:
        """Embed a stream of inputs lazily, yielding one vector per input in order.

        Memory stays bounded: at most ``max_concurrency + 1`` batches are read ahead.
        ``progress=True`` shows a tqdm bar; ``as_numpy=True`` yields float32 arrays;
        ``stats`` (a :class:`StreamStats`) counts the requests answered and their usage.

        If a request fails for good, the stream stops reading inputs and sending
        requests, lets the requests in flight finish, and raises the error with
        ``err.partial`` (a :class:`PartialResult`): the vectors of every input before
        ``partial.offset`` have been yielded; ``partial.embeddings`` holds the vectors of
        the inputs read after it (``None`` for ``partial.failed_indices``); inputs past
        those were never read from ``inputs``. An invalid input raises
        :class:`InputError` (its ``index`` says which) after the vectors before it.
        """
        require_many(inputs, "embed_iter", "inputs")
        stream = _Stream(self, inputs, progress=progress, as_numpy=as_numpy, stats=stats)

        def items() -> Iterator[WireItem]:
            for i, value in enumerate(inputs):
                item = stream.encode(value, i)
                if item is None:
                    return
                yield item
                if stream.state.stopped:  # read nothing more from the caller's iterator
                    return

        try:
            for batch, outcome in self._sync.run(
                pack(items()),
                dimensions=lambda: stream.state.dimensions,
                window=self._stream_window(),
                stop=lambda: stream.state.stopped,
            ):
                yield from stream.deliver(batch, outcome)
        finally:
            # Also when the consumer stops early: queued batches are then never sent.
            stream.close()
        stream.end()

    async def aembed_iter(
        self,
        inputs: Iterable[ContentLike] | AsyncIterable[ContentLike],
        *,
        progress: bool = False,
        as_numpy: bool = False,
        stats: StreamStats | None = None,
    ) -> AsyncIterator[Any]:
        """Async :meth:`embed_iter` (same failure contract); ``inputs`` may be a sync or
        an async iterable."""
        require_many(inputs, "aembed_iter", "inputs")
        stream = _Stream(self, inputs, progress=progress, as_numpy=as_numpy, stats=stats)

        async def items() -> AsyncIterator[WireItem]:
            i = 0
            async for value in as_async_iter(inputs):
                item = stream.encode(value, i)
                if item is None:
                    return
                yield item
                if stream.state.stopped:  # read nothing more from the caller's iterator
                    return
                i += 1

        try:
            async for batch, outcome in self._async_driver().run(
                _apack(items()),
                dimensions=lambda: stream.state.dimensions,
                window=self._stream_window(),
                stop=lambda: stream.state.stopped,
            ):
                for vector in stream.deliver(batch, outcome):
                    yield vector
        finally:
            stream.close()
        stream.end()


class _Stream:
    """The bookkeeping of one ``embed_iter``/``aembed_iter`` call, for both drivers.

    Inputs are encoded lazily: an invalid one ends the stream and is raised after the
    batches before it have been delivered; nothing more is read once the state stops.
    """

    def __init__(
        self,
        client: MultiModalEmbeddingClient,
        inputs: object,
        *,
        progress: bool,
        as_numpy: bool,
        stats: StreamStats | None = None,
    ) -> None:
        self.client = client
        self.stats = stats
        self.state = StreamState(dimensions=client.dimensions)
        self.failure: InputError | None = None
        self.convert = _numpy_converter() if as_numpy else None
        self.bar = _progress_bar(inputs) if progress else None

    def encode(self, value: object, index: int) -> WireItem | None:
        """The wire item of input ``index``, or ``None`` if it is invalid (the stream
        then ends and the error is raised by :meth:`end`)."""
        try:
            return encode_content(value, index, self.client.encode_options)
        except InputError as exc:
            self.failure = exc
            return None

    def deliver(self, batch: Batch, outcome: Outcome) -> list[Any]:
        """The vectors to yield for ``batch`` (raises the error that ends the stream)."""
        vectors = self.state.accept(batch, None if isinstance(outcome, NotSent) else outcome)
        if self.stats is not None and isinstance(outcome, BatchResponse):
            self.stats.add(outcome.usage)
        if vectors is None:
            return []
        if self.convert is not None:
            vectors = self.convert(vectors)
        if self.bar is not None:
            self.bar.update(len(vectors))
        return vectors

    def close(self) -> None:
        self.state.stopped = True
        if self.bar is not None:
            self.bar.close()

    def end(self) -> None:
        """After the last batch: learn the dimension, then raise a deferred error."""
        self.client._learn(self.state)
        self.state.finish()
        if self.failure is not None:
            raise self.failure


async def _apack(items: AsyncIterator[WireItem]) -> AsyncIterator[Batch]:
    """:func:`pack` over an async stream."""
    packer = Packer()
    async for item in items:
        batch = packer.add(item)
        if batch is not None:
            yield batch
    last = packer.flush()
    if last is not None:
        yield last


def _numpy_converter() -> Callable[[list[list[float]]], list[Any]]:
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - depends on the install
        raise ConfigurationError(
            "as_numpy=True needs numpy: pip install 'opensearch-mm[numpy]'"
        ) from None

    def convert(vectors: list[list[float]]) -> list[Any]:
        return list(np.asarray(vectors, dtype=np.float32))

    return convert


def _progress_bar(inputs: object) -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - depends on the install
        raise ConfigurationError(
            "progress=True needs tqdm: pip install 'opensearch-mm[progress]'"
        ) from None
    total = len(inputs) if hasattr(inputs, "__len__") else None
    return tqdm(total=total, unit="input", desc="embedding")
