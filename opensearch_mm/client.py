"""``MultiModalEmbeddingClient``: the public embedding calls."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Generator, Iterable
from typing import TYPE_CHECKING, Any, Literal, overload

import httpx

from ._call import CallState, Deduplicated, StreamState
from ._config import (
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_RETRIES,
    DEFAULT_QPS_MODE,
    DEFAULT_TIMEOUT,
    DEFAULT_WORKSPACE,
    ENV_API_KEY,
    ENV_ENDPOINT,
    ENV_SHARE_RATE_LIMIT,
    ENV_WORKSPACE,
    ClientConfig,
    InsecureTransportWarning,
    SupportsSecretValue,
)
from ._driver import ReadAhead
from ._pools import Pools
from ._stream import StreamRun
from .batching import Batch, apack, pack
from .inputs import (
    ContentLike,
    EncodeOptions,
    WireItem,
    encode_content,
    encode_image_only,
    encode_text_only,
    require_many,
)
from .models import DEFAULT_MODEL
from .ratelimit import AdaptiveRateLimiter, InFlightBound, RateLimiter, describe_qps
from .results import EmbeddingResult, StreamStats
from .retry import RetryPolicy

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from .images import ImageInput

__all__ = [
    "DEFAULT_WORKSPACE",
    "ENV_API_KEY",
    "ENV_ENDPOINT",
    "ENV_SHARE_RATE_LIMIT",
    "ENV_WORKSPACE",
    "InsecureTransportWarning",
    "MultiModalEmbeddingClient",
    "ProgressCallback",
]

logger = logging.getLogger("opensearch_mm")

Encoder = Callable[[object, int, EncodeOptions], WireItem]
ProgressCallback = Callable[[int], object]
"""Called with how many more inputs are embedded, as each request succeeds (a tqdm
bar's ``update`` fits)."""
_UNSET: Any = object()
_RENAMED = "async_http_client= is deprecated; pass http_async_client= (as LangChain does)"


class MultiModalEmbeddingClient:
    """A client for the multimodal embedding API of Alibaba Cloud AI Search Open Platform.

    Any number of inputs in, one vector per input out, in input order. Inputs are
    validated and encoded before anything is sent, packed into requests of at most 32
    inputs and 8 MB, sent concurrently (``max_concurrency``) under a rate limiter shared
    by every call of this client (and, by default, paced with every client of the same
    account on this machine: ``share_rate_limit``), and retried with jittered backoff
    where that can help.
    Use it as a context manager, or call :meth:`close` / :meth:`aclose` when done.
    """

    def __init__(
        self,
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
        share_rate_limit: bool | str | None = None,
        image_max_side: int | None = None,
        downscale_oversized: bool = False,
        http_client: httpx.Client | None = None,
        http_async_client: httpx.AsyncClient | None = None,
        async_http_client: httpx.AsyncClient | None = _UNSET,
    ) -> None:
        """Resolve and check the configuration; no request is sent.

        Args:
            api_key: The API key (``str`` or pydantic ``SecretStr``). Defaults to the
                ``OPENSEARCH_MM_API_KEY`` environment variable.
            endpoint: The service host: ``"host"`` (https), ``"https://host"`` or
                ``"http://host:port"``. Defaults to ``OPENSEARCH_MM_ENDPOINT``.
            workspace: The workspace name. Defaults to ``OPENSEARCH_MM_WORKSPACE``,
                else ``"default"``.
            model: The service id, e.g. ``"ops-m2-encoder"`` (see ``MODELS``).
            timeout: Seconds to wait for one answer (> 0); connecting gets at most 10.
            max_retries: Retries per request (>= 0; 0 disables). Ignored when
                ``retry_policy`` is given.
            retry_policy: Backoff settings (delays, caps); wins over ``max_retries``.
            max_concurrency: Requests in flight per call (>= 1). When answers are so
                slow that these, not the rate limit, bound the rate, the client logs a
                WARNING once, naming the value that would reach the limit.
            qps: Client-side rate: ``"adaptive"`` (finds the account's limit from
                429s), a pinned number of requests per second, or ``None`` (off).
            rate_limiter: A ready :class:`RateLimiter`, e.g. one shared by several
                clients; wins over ``qps``.
            share_rate_limit: With ``qps="adaptive"``, whom the limiter paces with:
                ``True`` every client of this account (endpoint, workspace and key) on
                this machine, in any process of this user, so they share the account's
                limit fairly; ``False`` no one (this client alone); a str, every client
                passing that group name (``"0"``/``"false"``/``"off"`` and
                ``"1"``/``"true"``/``"on"`` read as switches). Defaults to
                ``OPENSEARCH_MM_SHARE_RATE_LIMIT`` (read the same way), else ``True``.
                Where sharing cannot work (no ``fcntl``, no private temp folder) the
                client paces alone.
            image_max_side: Downscale local images whose longer side exceeds this many
                pixels (>= 16; needs Pillow).
            downscale_oversized: Re-encode an image that cannot fit in one request
                (needs Pillow).
            http_client: An ``httpx.Client`` to send sync requests with; this client
                then neither configures nor closes it.
            http_async_client: An ``httpx.AsyncClient`` for the async calls, likewise.
            async_http_client: Deprecated spelling of ``http_async_client``.

        Raises:
            ConfigurationError: An option is missing or invalid (the message names it).
        """
        if async_http_client is not _UNSET:
            warnings.warn(_RENAMED, DeprecationWarning, stacklevel=2)
            http_async_client = http_async_client or async_http_client
        self.config = config = ClientConfig.resolve(
            api_key=api_key,
            endpoint=endpoint,
            workspace=workspace,
            model=model,
            timeout=timeout,
            max_retries=max_retries,
            retry_policy=retry_policy,
            max_concurrency=max_concurrency,
            qps=qps,
            rate_limiter=rate_limiter,
            image_max_side=image_max_side,
            downscale_oversized=downscale_oversized,
            share_rate_limit=share_rate_limit,
        )
        config.warn_if_insecure(stacklevel=2)
        self.base_url, self.workspace, self.url = config.base_url, config.workspace, config.url
        self.model, self.model_info = config.model, config.model_info
        self.timeout, self.max_concurrency = config.timeout, config.max_concurrency
        self.retry_policy = config.retry_policy
        self.rate_limiter = config.make_rate_limiter()
        self.encode_options = config.encode_options()
        self._headers = config.headers()
        self._learned_dimensions: int | None = None
        self._told_in_flight_bound = False
        self._pools = Pools(
            config,
            self.rate_limiter,
            http_client=http_client,
            http_async_client=http_async_client,
        )
        self._http, self._sync = self._pools.http, self._pools.sync
        self._stream_limits = ReadAhead.stream(config.max_concurrency)

    @property
    def dimensions(self) -> int | None:
        """Vector length of the model (learned from the first answer for unknown ids)."""
        return self.model_info.dimensions or self._learned_dimensions

    def settings(self) -> dict[str, Any]:
        """The options this client resolved, as keyword arguments (never the key)."""
        return {
            "model": self.model,
            "endpoint": self.base_url,
            "workspace": self.workspace,
            "max_retries": self.retry_policy.max_retries,
            "retry_policy": self.retry_policy,
            "timeout": self.timeout,
            "max_concurrency": self.max_concurrency,
            "qps": describe_qps(self.rate_limiter),
            "rate_limiter": self.rate_limiter,
            "share_rate_limit": self.config.describe_share(self.rate_limiter),
            "image_max_side": self.encode_options.image_max_side,
            "downscale_oversized": self.encode_options.downscale_oversized,
        }

    def __repr__(self) -> str:
        config: ClientConfig | None = getattr(self, "config", None)  # None while resolving
        if config is None:
            return f"{type(self).__name__}(<not configured>)"
        return (
            f"{type(self).__name__}(endpoint={config.base_url!r}, "
            f"workspace={config.workspace!r}, model={config.model!r}, api_key='****')"
        )

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def is_closed(self) -> bool:
        """Whether :meth:`close` or :meth:`aclose` has run (no call works afterwards)."""
        return self._pools.closed

    def close(self) -> None:
        """Close the connection pools this client created (not injected ones), each
        event loop's async pool in its loop (or at that loop's end, when it cannot run
        now). Idempotent. Afterwards every call raises :class:`ClientClosedError`.
        """
        self._pools.close()

    async def aclose(self) -> None:
        """Close the connection pools this client created, as :meth:`close` does, without
        blocking the event loop (idempotent)."""
        await self._pools.aclose()

    def __enter__(self) -> MultiModalEmbeddingClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> MultiModalEmbeddingClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- one call -----------------------------------------------------------------------

    def _encode_all(
        self, values: Iterable[object], encoder: Encoder, method: str, what: str
    ) -> list[WireItem]:
        self._pools.ensure_open()
        require_many(values, method, what)
        return [encoder(value, i, self.encode_options) for i, value in enumerate(values)]

    def _learn(self, state: CallState | StreamState) -> None:
        if self.model_info.dimensions is None and state.dimensions is not None:
            self._learned_dimensions = state.dimensions
        self._tell_in_flight_bound()

    def in_flight_bound(self) -> InFlightBound | None:
        """Whether ``max_concurrency``, not the rate limit, has held this client's rate
        (slow answers); ``None`` when not, or when the limiter cannot tell (not adaptive)."""
        limiter = self.rate_limiter
        if not isinstance(limiter, AdaptiveRateLimiter):
            return None
        return limiter.in_flight_bound(self.max_concurrency)

    def _tell_in_flight_bound(self) -> None:
        """Log once (WARNING) when ``max_concurrency``, not the rate limit, held the rate."""
        if self._told_in_flight_bound:
            return
        bound = self.in_flight_bound()
        if bound is not None:
            self._told_in_flight_bound = True
            logger.warning(
                "max_concurrency=%d held this client to about %.1f requests/s (answers "
                "take %.2f s); the rate limiter allows %.1f/s: max_concurrency=%d would "
                "reach it",
                bound.max_in_flight,
                bound.reachable,
                bound.answer_time,
                bound.allowed,
                bound.needed,
            )

    def _whole_call(self, batches: list[Batch]) -> ReadAhead:
        return ReadAhead.whole_call(len(batches), self.max_concurrency)

    def _plan(self, items: list[WireItem]) -> tuple[CallState, list[Batch]]:
        # Identical inputs are sent once; the state copies the vector to the repeats.
        plan = Deduplicated(items)
        state = CallState(plan.total, self.model, self.dimensions, plan.copies)
        return state, list(pack(plan.unique))

    def _run(
        self, items: list[WireItem], on_progress: ProgressCallback | None = None
    ) -> EmbeddingResult:
        state, batches = self._plan(items)
        driver, limits = self._pools.sync_driver(), self._whole_call(batches)
        # (Closed on the way out, an exception's too: its requests waiting end now, not
        # when the traceback holding it goes.)
        with contextlib.closing(driver.run(batches, state, limits=limits)) as run:
            for batch, outcome in run:
                done = state.record(batch, outcome)
                if done and on_progress is not None:
                    on_progress(done)
        self._learn(state)
        return state.finish()

    async def _arun(
        self, items: list[WireItem], on_progress: ProgressCallback | None = None
    ) -> EmbeddingResult:
        state, batches = self._plan(items)
        driver, limits = await self._pools.async_driver(), self._whole_call(batches)
        async with contextlib.aclosing(driver.run(batches, state, limits=limits)) as run:
            async for batch, outcome in run:
                done = state.record(batch, outcome)
                if done and on_progress is not None:
                    on_progress(done)
        self._learn(state)
        return state.finish()

    def embed(
        self, contents: Iterable[ContentLike], *, on_progress: ProgressCallback | None = None
    ) -> EmbeddingResult:
        """Embed ``Content`` objects, plain strings (texts) or ``{"text", "image"}`` dicts.

        Args:
            contents: A list (or other sized iterable) of inputs; not a single value.
            on_progress: Called with how many more inputs are embedded as each request
                succeeds (``tqdm(total=len(contents)).update`` fits), in the calling
                thread and in input order; it adds up to ``len(contents)`` when the call
                succeeds. An exception it raises ends the call with that exception.

        Returns:
            An :class:`EmbeddingResult`: ``embeddings`` in input order, the summed
            ``usage`` and the ``request_ids``.

        Raises:
            InputError: An input is invalid (``err.index`` says which); nothing was sent.
            OpenSearchMMError: A request failed for good; ``err.partial`` holds the
                vectors computed so far and the failed indices.
            ClientClosedError: The client has been closed.
        """
        items = self._encode_all(contents, encode_content, "embed", "inputs")
        return self._run(items, on_progress)

    def embed_texts(
        self, texts: Iterable[str], *, on_progress: ProgressCallback | None = None
    ) -> list[list[float]]:
        """Embed texts.

        Args:
            texts: A list (or other sized iterable) of non-empty strings.
            on_progress: As for :meth:`embed`.

        Returns:
            One vector per text, in order. Raises as :meth:`embed`.
        """
        items = self._encode_all(texts, encode_text_only, "embed_texts", "strings")
        return self._run(items, on_progress).embeddings

    def embed_images(
        self, images: Iterable[ImageInput], *, on_progress: ProgressCallback | None = None
    ) -> list[list[float]]:
        """Embed images.

        Args:
            images: Paths, bytes, binary file objects, PIL images, ``http(s)`` URLs or
                ``data:image/...`` URIs.
            on_progress: As for :meth:`embed`.

        Returns:
            One vector per image, in order. Raises as :meth:`embed`.
        """
        items = self._encode_all(images, encode_image_only, "embed_images", "images")
        return self._run(items, on_progress).embeddings

    async def aembed(
        self, contents: Iterable[ContentLike], *, on_progress: ProgressCallback | None = None
    ) -> EmbeddingResult:
        """Async :meth:`embed` (``on_progress`` is called in the event loop)."""
        items = self._encode_all(contents, encode_content, "aembed", "inputs")
        return await self._arun(items, on_progress)

    async def aembed_texts(
        self, texts: Iterable[str], *, on_progress: ProgressCallback | None = None
    ) -> list[list[float]]:
        """Async :meth:`embed_texts`."""
        items = self._encode_all(texts, encode_text_only, "aembed_texts", "strings")
        return (await self._arun(items, on_progress)).embeddings

    async def aembed_images(
        self, images: Iterable[ImageInput], *, on_progress: ProgressCallback | None = None
    ) -> list[list[float]]:
        """Async :meth:`embed_images`."""
        items = self._encode_all(images, encode_image_only, "aembed_images", "images")
        return (await self._arun(items, on_progress)).embeddings

    # -- streaming ----------------------------------------------------------------------

    def _stream(
        self,
        inputs: object,
        method: str,
        progress: bool,
        as_numpy: bool,
        stats: StreamStats | None = None,
    ) -> StreamRun:
        self._pools.ensure_open()
        require_many(inputs, method, "inputs")
        dims = self.dimensions
        return StreamRun(
            self.encode_options, inputs, dims, progress=progress, as_numpy=as_numpy, stats=stats
        )

    @overload
    def embed_iter(
        self,
        inputs: Iterable[ContentLike],
        *,
        progress: bool = ...,
        as_numpy: Literal[False] = ...,
        stats: StreamStats | None = ...,
    ) -> Generator[list[float], None, None]: ...

    @overload
    def embed_iter(
        self,
        inputs: Iterable[ContentLike],
        *,
        progress: bool = ...,
        as_numpy: Literal[True],
        stats: StreamStats | None = ...,
    ) -> Generator[npt.NDArray[np.float32], None, None]: ...

    def embed_iter(
        self,
        inputs: Iterable[ContentLike],
        *,
        progress: bool = False,
        as_numpy: bool = False,
        stats: StreamStats | None = None,
    ) -> Generator[Any, None, None]:
        """Embed a stream of inputs lazily, yielding one vector per input in order.

        Memory stays bounded: at most ``max_concurrency + 1`` batches unanswered (holding
        their encoded inputs), and answered ones waiting behind a slower head of line (only
        their vectors) up to four times that.

        Args:
            inputs: Any iterable of inputs (read lazily, once).
            progress: Show a tqdm bar (needs the ``progress`` extra).
            as_numpy: Yield float32 numpy arrays (needs the ``numpy`` extra).
            stats: A :class:`StreamStats` counting the requests answered and their usage.

        Yields:
            One vector per input, in input order.

        Raises:
            OpenSearchMMError: A request failed for good. The stream stops reading
                inputs and sending requests, lets the requests in flight finish, and
                raises with ``err.partial``: the vectors of every input before
                ``partial.offset`` have been yielded; ``partial.embeddings`` holds the
                vectors of the inputs read after it (``None`` for
                ``partial.failed_indices``); later inputs were never read.
            InputError: An input is invalid (``err.index``), raised after the vectors
                before it.
        """
        stream = self._stream(inputs, "embed_iter", progress, as_numpy, stats)
        driver, batches = self._pools.sync_driver(), pack(stream.items(inputs))
        run = driver.run(batches, stream.state, limits=self._stream_limits)
        try:
            for batch, outcome in run:
                yield from stream.deliver(batch, outcome)
        finally:
            stream.close()  # also when the consumer stops early: queued batches stay unsent
            run.close()
        self._learn(stream.state)
        stream.end()

    @overload
    def aembed_iter(
        self,
        inputs: Iterable[ContentLike] | AsyncIterable[ContentLike],
        *,
        progress: bool = ...,
        as_numpy: Literal[False] = ...,
        stats: StreamStats | None = ...,
    ) -> AsyncGenerator[list[float], None]: ...

    @overload
    def aembed_iter(
        self,
        inputs: Iterable[ContentLike] | AsyncIterable[ContentLike],
        *,
        progress: bool = ...,
        as_numpy: Literal[True],
        stats: StreamStats | None = ...,
    ) -> AsyncGenerator[npt.NDArray[np.float32], None]: ...

    async def aembed_iter(
        self,
        inputs: Iterable[ContentLike] | AsyncIterable[ContentLike],
        *,
        progress: bool = False,
        as_numpy: bool = False,
        stats: StreamStats | None = None,
    ) -> AsyncGenerator[Any, None]:
        """Async :meth:`embed_iter` (same failure contract); ``inputs`` may be a sync or
        an async iterable. Stopping early: ``await stream.aclose()`` (an ``async for``
        left by ``break`` closes the stream only when it is garbage-collected)."""
        stream = self._stream(inputs, "aembed_iter", progress, as_numpy, stats)
        driver, batches = await self._pools.async_driver(), apack(stream.aitems(inputs))
        run = driver.run(batches, stream.state, limits=self._stream_limits)
        try:
            async for batch, outcome in run:
                for vector in stream.deliver(batch, outcome):
                    yield vector
        finally:
            stream.close()
            await run.aclose()  # (its requests waiting for slots end now, not when collected)
        self._learn(stream.state)
        stream.end()
