"""LangChain ``Embeddings`` backed by :class:`opensearch_mm.MultiModalEmbeddingClient`.

The adapter only translates LangChain calls into core calls: batching, validation,
retries and rate limiting all happen in the core client it owns.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, ClassVar, Literal, TypeAlias

import httpx
from langchain_core.embeddings import Embeddings
from langchain_core.utils import from_env, secret_from_env
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic.json_schema import SkipJsonSchema
from typing_extensions import Self

from opensearch_mm import (
    DEFAULT_MODEL,
    DEFAULT_WORKSPACE,
    ENV_API_KEY,
    ENV_ENDPOINT,
    ENV_WORKSPACE,
    ConfigurationError,
    Content,
    MultiModalEmbeddingClient,
    ProgressCallback,
    RateLimiter,
    RetryPolicy,
    Usage,
    mirror_policy_fields,
    require_many,
)
from opensearch_mm._adapter import CoreClientAdapter
from opensearch_mm._stream import progress_bar

__all__ = ["MultiModalInput", "OpenSearchMultiModalEmbeddings"]

MultiModalInput: TypeAlias = Content | Mapping[str, Any] | str
"""One input of :meth:`OpenSearchMultiModalEmbeddings.embed_multimodal`: a
:class:`~opensearch_mm.Content`, a ``{"text": ..., "image": ...}`` dict, or a text."""

MASKED_KEY = "**********"
"""What pydantic prints for a ``SecretStr``: never a real key."""

# Settings the core client is built from (an injected client= carries its own).
_CLIENT_FIELDS = (
    "model",
    "api_key",
    "endpoint",
    "workspace",
    "max_retries",
    "retry_policy",
    "timeout",
    "max_concurrency",
    "qps",
    "rate_limiter",
    "share_rate_limit",
    "image_max_side",
    "downscale_oversized",
    "http_client",
    "http_async_client",
)

# The core client handed to ``__init__(client=...)`` while the model validates.
_INJECTED: ContextVar[MultiModalEmbeddingClient | None] = ContextVar(
    "opensearch_mm_injected_client", default=None
)


@contextmanager
def _injecting(client: MultiModalEmbeddingClient | None) -> Iterator[None]:
    token = _INJECTED.set(client)
    try:
        yield
    finally:
        _INJECTED.reset(token)


class OpenSearchMultiModalEmbeddings(CoreClientAdapter, BaseModel, Embeddings):
    """Alibaba Cloud AI Search Open Platform multimodal embeddings for LangChain.

    Not Amazon OpenSearch. Texts go through ``embed_documents`` / ``embed_query``; images
    (local paths, http(s) URLs, ``data:image/...;base64,`` URIs) through ``embed_image``,
    which is what ``langchain_chroma.Chroma.add_images`` calls. Every call is handled by
    one :class:`~opensearch_mm.MultiModalEmbeddingClient` (``.client``): inputs are
    validated before anything is sent, packed 32 per request, sent concurrently under a
    shared rate limiter and retried.

    Setup:
        Install ``opensearch-mm`` with the LangChain extra and set the key and endpoint.

        ```bash
        pip install "opensearch-mm[langchain]"
        export OPENSEARCH_MM_API_KEY="OS-..."
        export OPENSEARCH_MM_ENDPOINT="ops-cn-hangzhou.opensearch.aliyuncs.com"
        ```

    Key init args — embedding params:
        model: str
            Service id of the model (``model_name`` is accepted too).
        image_max_side: int | None
            Downscale local images whose longer side is larger (needs Pillow).
        downscale_oversized: bool
            Re-encode an image too large for one request instead of failing.

    Key init args — client params:
        api_key: SecretStr | None
            API key; ``OPENSEARCH_MM_API_KEY`` when not given.
        endpoint: str | None
            Service endpoint; ``OPENSEARCH_MM_ENDPOINT`` when not given.
        workspace: str
            Workspace; ``OPENSEARCH_MM_WORKSPACE`` or ``"default"``.
        max_retries: int
            Retries per request (throttling, 5xx, connection errors).
        timeout: float
            Seconds to wait for one answer.
        max_concurrency: int
            Requests in flight per call.
        qps: float | "adaptive" | None
            Client-side rate limit.
        share_rate_limit: bool | str | None
            Pace with every client of this account on this machine (default), alone
            (``False``) or with a named group; ``None``: ``OPENSEARCH_MM_SHARE_RATE_LIMIT``.
        http_client / http_async_client: httpx.Client / httpx.AsyncClient | None
            Your own connection pools (left open).
        client: MultiModalEmbeddingClient | None
            A ready core client to use instead (the fields then describe it).

    Instantiate:
        ```python
        from langchain_opensearch_mm import OpenSearchMultiModalEmbeddings

        embeddings = OpenSearchMultiModalEmbeddings(model="ops-m2-encoder")
        ```

    Embed single text:
        ```python
        vector = embeddings.embed_query("a red bicycle")
        print(len(vector))  # 768
        ```

    Embed multiple texts:
        ```python
        vectors = embeddings.embed_documents(["a red bicycle", "a cat on a sofa"])
        print(embeddings.last_usage)  # what the service counted for that call
        ```

    Embed images:
        ```python
        image_vectors = embeddings.embed_image(["photos/bike.jpg"])
        ```

    Async:
        ```python
        vector = await embeddings.aembed_query("a red bicycle")
        await embeddings.aclose()
        ```

    Errors are the core's exceptions (:mod:`opensearch_mm.errors`), configuration errors
    included (``ConfigurationError``, a ``ValueError``). Fields are frozen; ``model_copy``,
    ``copy`` and ``pickle`` give independent adapters with their own connection pools (a
    pickle carries the key, as other embedding integrations do, so worker processes can
    call the service); ``model_dump``/``model_dump_json`` never contain it.
    """

    model: str = DEFAULT_MODEL
    """Service id of the embedding model, e.g. ``ops-m2-encoder``."""
    api_key: SecretStr | None = Field(
        default_factory=secret_from_env(ENV_API_KEY, default=None), exclude=True
    )
    """API key; read from ``OPENSEARCH_MM_API_KEY`` when not given. Never serialized."""
    endpoint: str | None = Field(default_factory=from_env(ENV_ENDPOINT, default=None))
    """Service endpoint (``host``, ``https://host`` or ``http://host:port``); read from
    ``OPENSEARCH_MM_ENDPOINT`` when not given."""
    workspace: str = Field(
        default_factory=lambda: os.environ.get(ENV_WORKSPACE) or DEFAULT_WORKSPACE
    )
    """Workspace name; ``OPENSEARCH_MM_WORKSPACE`` or ``"default"``."""
    max_retries: int = 6
    """Retries per request for throttling, 5xx and connection errors."""
    retry_policy: RetryPolicy | None = None
    """Backoff delays and caps (``max_retries`` then mirrors its ``max_retries``)."""
    timeout: float = 60.0
    """Seconds to wait for one answer."""
    max_concurrency: int = 8
    """Requests in flight per call."""
    qps: float | Literal["adaptive"] | None = "adaptive"
    """Client-side rate limit: ``"adaptive"``, a fixed number per second, or ``None``."""
    rate_limiter: SkipJsonSchema[RateLimiter | None] = Field(default=None, exclude=True)
    """A :class:`~opensearch_mm.RateLimiter` to share (copies share it too); ``qps`` then
    describes it."""
    share_rate_limit: bool | str | None = None
    """With ``qps="adaptive"``: ``True`` paces with every client of this account on this
    machine (all processes of this user), ``False`` alone, a str with every client passing
    that group name; ``None``: ``OPENSEARCH_MM_SHARE_RATE_LIMIT``, else ``True``."""
    image_max_side: int | None = None
    """Downscale local images whose longer side exceeds this many pixels (needs Pillow)."""
    downscale_oversized: bool = False
    """Re-encode an image too large for one request instead of failing (needs Pillow)."""
    http_client: SkipJsonSchema[httpx.Client | None] = Field(default=None, exclude=True)
    """An ``httpx.Client`` to send sync requests with (not closed by the adapter)."""
    http_async_client: SkipJsonSchema[httpx.AsyncClient | None] = Field(default=None, exclude=True)
    """An ``httpx.AsyncClient`` to send async requests with (not closed by the adapter)."""
    show_progress_bar: bool = False
    """Show a tqdm bar for each call of several inputs, moving as each request is answered
    (as ``langchain-openai``'s field of that name; needs ``opensearch-mm[progress]``)."""

    _client: MultiModalEmbeddingClient = PrivateAttr()
    _injected: bool = PrivateAttr(default=False)
    _usage_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _last_usage: Usage | None = PrivateAttr(default=None)
    _total_usage: Usage = PrivateAttr(default_factory=Usage)
    _client_fields: ClassVar[tuple[str, ...]] = _CLIENT_FIELDS
    _aliases: ClassVar[Mapping[str, str]] = {"model_name": "model"}

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        populate_by_name=True,
        arbitrary_types_allowed=True,
        protected_namespaces=(),
        hide_input_in_errors=True,  # (the input refused can be every setting, key included)
    )

    def __init__(self, *, client: MultiModalEmbeddingClient | None = None, **data: Any) -> None:
        """Validate the fields and build the core client; core errors surface as-is.

        Args:
            client: A ready core client to use instead of building one; the connection
                fields then describe it and may not be passed too.
            **data: The fields (``model``, ``api_key``, ``endpoint``, ...).

        Raises:
            TypeError: An unknown keyword argument (the message names the nearest one).
            ConfigurationError: A setting the core refuses, no key or endpoint, a masked
                placeholder key, or settings passed together with ``client``.
        """
        valid = set(type(self).model_fields) | {"model_name", "client"}
        for name in data:
            if name not in valid:
                near = difflib.get_close_matches(name, sorted(valid), n=1, cutoff=0.5)
                hint = f"; did you mean {near[0]!r}?" if near else ""
                raise TypeError(
                    f"{type(self).__name__} got an unexpected keyword argument {name!r}{hint}"
                )
        if client is not None:
            given = sorted(set(data) & {*_CLIENT_FIELDS, "model_name"})
            if given:
                raise ConfigurationError(
                    f"client= carries its own configuration; do not also pass {', '.join(given)}"
                )
            data.update({**client.settings(), "api_key": None})
        try:
            with _injecting(client):
                super().__init__(**data)
        except ValidationError as exc:
            raise self._settings_error(exc.errors()) from None

    @model_validator(mode="before")
    @classmethod
    def _aliases_and_policies(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for name in ("api_key", "endpoint", "workspace"):
            if name in data and data[name] is None and _INJECTED.get() is None:
                del data[name]  # (None is "not given": the environment or the default)
        if data.get("workspace") == "" and _INJECTED.get() is None:
            del data["workspace"]  # (as for the core: the environment or the default)
        mirror_policy_fields(data)
        if "model_name" in data:
            name = data.pop("model_name")
            if "model" in data and data["model"] != name:
                raise ConfigurationError(
                    f"model={data['model']!r} and model_name={name!r} disagree; pass one of them"
                )
            data["model"] = name
        return data

    @model_validator(mode="after")
    def validate_environment(self) -> Self:
        """Build the core client from the fields (or take the injected one).

        The core checks every setting and raises ``ConfigurationError`` naming it;
        ``__init__`` re-raises that error as-is instead of pydantic's ``ValidationError``
        wrapper, so ``except ConfigurationError`` works the same for the core client and
        the adapter.
        """
        if self.show_progress_bar and importlib.util.find_spec("tqdm") is None:
            raise ConfigurationError(
                "show_progress_bar=True needs tqdm: pip install 'opensearch-mm[progress]'"
            )
        injected = _INJECTED.get()
        if injected is not None:
            self._client, self._injected = injected, True
            return self
        if self.api_key is not None and self.api_key.get_secret_value().strip() == MASKED_KEY:
            raise ConfigurationError(
                f"api_key is the masked placeholder {MASKED_KEY!r} from a serialized copy, "
                f"not a key: pass the real key or set {ENV_API_KEY}"
            )
        self._client = MultiModalEmbeddingClient(
            api_key=self.api_key,
            endpoint=self.endpoint,
            workspace=self.workspace,
            model=self.model,
            timeout=self.timeout,
            max_retries=self.max_retries,
            retry_policy=self.retry_policy,
            max_concurrency=self.max_concurrency,
            qps=self.qps,
            rate_limiter=self.rate_limiter,
            share_rate_limit=self.share_rate_limit,
            image_max_side=self.image_max_side,
            downscale_oversized=self.downscale_oversized,
            http_client=self.http_client,
            http_async_client=self.http_async_client,
        )
        return self

    # -- copies that are independent and match their fields ---------------------------

    def __setattr__(self, name: str, value: Any) -> None:
        """Fields are frozen (the core client was built from them): pydantic's error,
        without the value (``hide_input_in_errors`` does not reach its frozen check, and
        the value assigned can be a new key)."""
        if name in type(self).model_fields:
            raise ValidationError.from_exception_data(
                type(self).__name__,
                [{"type": "frozen_instance", "loc": (name,), "input": value}],
                hide_input=True,
            )
        super().__setattr__(name, value)

    def __getstate__(self) -> dict[Any, Any]:
        """Pickle the settings (API key included) but not the connection pools.

        Injected ``http_client``/``http_async_client`` are left out: the copy makes its own.
        """
        return self._pickled(self._init_kwargs())

    def __setstate__(self, state: dict[Any, Any]) -> None:
        self.__init__(**state["init_kwargs"])  # type: ignore[misc]

    # -- names (the core client, usage counts and lifecycle: CoreClientAdapter) ------

    @property
    def model_name(self) -> str:
        """Another name for ``model`` (LlamaIndex's)."""
        return self.model

    # -- the core calls, with the progress bar ----------------------------------------------

    @contextmanager
    def _bar(self, inputs: object, progress: bool) -> Iterator[ProgressCallback | None]:
        if not (progress and self.show_progress_bar):
            yield None
            return
        bar = progress_bar(inputs, "show_progress_bar=True")
        try:
            yield bar.update
        finally:
            bar.close()

    def _embed(self, inputs: Sequence[MultiModalInput], progress: bool = True) -> list[list[float]]:
        with self._bar(inputs, progress) as on_progress, self._counting_failures():
            return self._count(self._client.embed(inputs, on_progress=on_progress))

    async def _aembed(
        self, inputs: Sequence[MultiModalInput], progress: bool = True
    ) -> list[list[float]]:
        with self._bar(inputs, progress) as on_progress, self._counting_failures():
            return self._count(await self._client.aembed(inputs, on_progress=on_progress))

    # -- texts ----------------------------------------------------------------------------

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed texts; all go to the core in one call (32 per request, concurrently).

        Args:
            texts: The texts, each a non-empty ``str``.

        Returns:
            One vector per text, in input order.

        Raises:
            InputError: A text is invalid (``err.index`` is its position); nothing is sent.
            OpenSearchMMError: A request failed for good (``err.partial`` holds the rest).
        """
        require_many(texts, "embed_documents", "strings")
        return self._embed([Content(text=t) for t in texts])

    def embed_query(self, text: str) -> list[float]:
        """Embed one text.

        Args:
            text: The text.

        Returns:
            Its vector.
        """
        return self._embed([Content(text=text)], progress=False)[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Async :meth:`embed_documents`."""
        require_many(texts, "aembed_documents", "strings")
        return await self._aembed([Content(text=t) for t in texts])

    async def aembed_query(self, text: str) -> list[float]:
        """Async :meth:`embed_query`."""
        return (await self._aembed([Content(text=text)], progress=False))[0]

    # -- images ---------------------------------------------------------------------------

    def embed_image(self, uris: list[str]) -> list[list[float]]:
        """Embed images (what ``langchain_chroma.Chroma.add_images`` calls).

        Args:
            uris: Local paths, http(s) URLs (fetched by the service) or
                ``data:image/...;base64,`` URIs.

        Returns:
            One vector per image, in input order.

        Raises:
            InputError: An image is missing, unreadable or too large; nothing is sent.
        """
        require_many(uris, "embed_image", "images")
        return self._embed([Content(image=u) for u in uris])

    async def aembed_image(self, uris: list[str]) -> list[list[float]]:
        """Async :meth:`embed_image`."""
        require_many(uris, "aembed_image", "images")
        return await self._aembed([Content(image=u) for u in uris])

    # -- text + image -----------------------------------------------------------------------

    def embed_multimodal(self, inputs: Sequence[MultiModalInput]) -> list[list[float]]:
        """Embed inputs that may each carry a text, an image, or both.

        Args:
            inputs: ``Content`` objects, ``{"text": ..., "image": ...}`` dicts or texts.
                Text and image in one input need a model that combines them (e.g.
                ``ops-gme-qwen2-vl-2b-instruct``); the m2-encoder models raise
                ``InputError``.

        Returns:
            One vector per input, in input order.
        """
        return self._embed(inputs)

    async def aembed_multimodal(self, inputs: Sequence[MultiModalInput]) -> list[list[float]]:
        """Async :meth:`embed_multimodal`."""
        return await self._aembed(inputs)
