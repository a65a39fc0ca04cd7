"""LangChain ``Embeddings`` backed by :class:`opensearch_mm.MultiModalEmbeddingClient`.

The adapter only translates LangChain calls into core calls: batching, validation,
retries and rate limiting all happen in the core client it owns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeAlias

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
from typing_extensions import Self

from opensearch_mm import Content, MultiModalEmbeddingClient
from opensearch_mm.client import DEFAULT_WORKSPACE, ENV_API_KEY, ENV_ENDPOINT, ENV_WORKSPACE
from opensearch_mm.errors import ConfigurationError, OpenSearchMMError
from opensearch_mm.models import DEFAULT_MODEL

__all__ = ["MultiModalInput", "OpenSearchMultiModalEmbeddings"]

MultiModalInput: TypeAlias = Content | Mapping[str, Any] | str
"""One input of :meth:`OpenSearchMultiModalEmbeddings.embed_multimodal`: a
:class:`~opensearch_mm.Content`, a ``{"text": ..., "image": ...}`` dict, or a text."""


def _api_key_from_env() -> SecretStr:
    key = secret_from_env(ENV_API_KEY, default=None)()
    if key is None:
        raise ConfigurationError(
            f"no API key: pass api_key=... or set the {ENV_API_KEY} environment variable"
        )
    return key


def _core_error(exc: ValidationError) -> OpenSearchMMError | None:
    """The core exception a model validator raised, if that is what failed."""
    for error in exc.errors():
        original = (error.get("ctx") or {}).get("error")
        if isinstance(original, OpenSearchMMError):
            return original
    return None


class OpenSearchMultiModalEmbeddings(BaseModel, Embeddings):
    """Alibaba Cloud AI Search Open Platform multimodal embeddings for LangChain.

    Texts go through ``embed_documents`` / ``embed_query``; images (local paths, http(s)
    URLs, ``data:image/...;base64,`` URIs) through ``embed_image``, which is what
    ``langchain_chroma.Chroma.add_images`` calls. Every call is handled by one
    :class:`~opensearch_mm.MultiModalEmbeddingClient` (``.client``): inputs are
    packed 32 per request, sent concurrently under a shared rate limiter and retried.

    Setup::

        pip install "opensearch-mm[langchain]"
        export OPENSEARCH_MM_API_KEY=...        # or api_key=...
        export OPENSEARCH_MM_ENDPOINT=...       # or endpoint=...

    Example::

        from langchain_opensearch_mm import OpenSearchMultiModalEmbeddings

        embeddings = OpenSearchMultiModalEmbeddings(model="ops-m2-encoder")
        vectors = embeddings.embed_documents(["a red bicycle", "a cat on a sofa"])
        image_vectors = embeddings.embed_image(["photos/bike.jpg"])

    Errors are the core's exceptions (:mod:`opensearch_mm.errors`), configuration
    errors included (``ConfigurationError``, a ``ValueError``).
    """

    model: str = DEFAULT_MODEL
    """Service id of the embedding model, e.g. ``ops-m2-encoder``."""
    api_key: SecretStr = Field(default_factory=_api_key_from_env)
    """API key; read from ``OPENSEARCH_MM_API_KEY`` when not given."""
    endpoint: str | None = Field(default_factory=from_env(ENV_ENDPOINT, default=None))
    """Service endpoint (``host``, ``https://host`` or ``http://host:port``); read from
    ``OPENSEARCH_MM_ENDPOINT`` when not given."""
    workspace: str = Field(default_factory=from_env(ENV_WORKSPACE, default=DEFAULT_WORKSPACE))
    """Workspace name; ``OPENSEARCH_MM_WORKSPACE`` or ``"default"``."""
    max_retries: int = 6
    """Retries per request for throttling, 5xx and connection errors."""
    timeout: float = 60.0
    """Seconds to wait for one answer."""
    max_concurrency: int = 8
    """Requests in flight per call."""
    qps: float | Literal["adaptive"] | None = "adaptive"
    """Client-side rate limit: ``"adaptive"``, a fixed number per second, or ``None``."""
    image_max_side: int | None = None
    """Downscale local images whose longer side exceeds this many pixels (needs Pillow)."""
    downscale_oversized: bool = False
    """Re-encode an image too large for one request instead of failing (needs Pillow)."""
    http_client: httpx.Client | None = Field(default=None, exclude=True)
    """An ``httpx.Client`` to send sync requests with (not closed by the adapter)."""
    http_async_client: httpx.AsyncClient | None = Field(default=None, exclude=True)
    """An ``httpx.AsyncClient`` to send async requests with (not closed by the adapter)."""

    _client: MultiModalEmbeddingClient = PrivateAttr()

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        populate_by_name=True,
        arbitrary_types_allowed=True,
        protected_namespaces=(),
    )

    def __init__(self, **data: Any) -> None:
        """Validate the fields and build the core client; core errors surface as-is."""
        try:
            super().__init__(**data)
        except ValidationError as exc:
            core = _core_error(exc)
            if core is None:
                raise
            raise core from None

    @model_validator(mode="after")
    def _build_client(self) -> Self:
        self._client = MultiModalEmbeddingClient(
            api_key=self.api_key,
            endpoint=self.endpoint,
            workspace=self.workspace,
            model=self.model,
            timeout=self.timeout,
            max_retries=self.max_retries,
            max_concurrency=self.max_concurrency,
            qps=self.qps,
            image_max_side=self.image_max_side,
            downscale_oversized=self.downscale_oversized,
            http_client=self.http_client,
            async_http_client=self.http_async_client,
        )
        return self

    @property
    def client(self) -> MultiModalEmbeddingClient:
        """The core client doing the work (for ``embed_iter`` and other core calls)."""
        return self._client

    @property
    def dimensions(self) -> int | None:
        """Vector length of the model; ``None`` for an unknown model before its first call."""
        return self._client.dimensions

    # -- texts ----------------------------------------------------------------------------

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """One vector per text, in order."""
        return self._client.embed_texts(texts)

    def embed_query(self, text: str) -> list[float]:
        """The vector of one text."""
        return self._client.embed_texts([text])[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Async :meth:`embed_documents`."""
        return await self._client.aembed_texts(texts)

    async def aembed_query(self, text: str) -> list[float]:
        """Async :meth:`embed_query`."""
        return (await self._client.aembed_texts([text]))[0]

    # -- images ---------------------------------------------------------------------------

    def embed_image(self, uris: list[str]) -> list[list[float]]:
        """One vector per image: local paths, http(s) URLs or ``data:image/...`` URIs."""
        return self._client.embed_images(uris)

    async def aembed_image(self, uris: list[str]) -> list[list[float]]:
        """Async :meth:`embed_image`."""
        return await self._client.aembed_images(uris)

    # -- text + image -----------------------------------------------------------------------

    def embed_multimodal(self, inputs: Sequence[MultiModalInput]) -> list[list[float]]:
        """One vector per input; an input may carry a text, an image, or both.

        Text and image in one input need a model that combines them (e.g.
        ``ops-gme-qwen2-vl-2b-instruct``); the m2-encoder models raise ``InputError``.
        """
        return self._client.embed(inputs).embeddings

    async def aembed_multimodal(self, inputs: Sequence[MultiModalInput]) -> list[list[float]]:
        """Async :meth:`embed_multimodal`."""
        return (await self._client.aembed(inputs)).embeddings

    # -- lifecycle --------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection pools the core client created."""
        self._client.close()

    async def aclose(self) -> None:
        """Close the async and sync connection pools the core client created."""
        await self._client.aclose()
