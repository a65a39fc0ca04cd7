"""``OpenSearchMultiModalEmbedding``: the LlamaIndex adapter over the core client.

It translates LlamaIndex's embedding calls into :class:`opensearch_mm.MultiModalEmbeddingClient`
calls and holds no API logic of its own: validation, packing into requests, rate limiting
and retries all happen in the core.
"""

from __future__ import annotations

import os
from io import BytesIO
from typing import Any, Literal

from llama_index.core.base.embeddings.base import Embedding
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.callbacks.base import CallbackManager
from llama_index.core.embeddings import MultiModalEmbedding
from llama_index.core.schema import ImageType

from opensearch_mm import DEFAULT_MODEL, ConfigurationError, MultiModalEmbeddingClient
from opensearch_mm.client import DEFAULT_WORKSPACE, ENV_ENDPOINT, ENV_WORKSPACE
from opensearch_mm.images import ImageInput
from opensearch_mm.inputs import require_many

__all__ = ["MAX_BATCH_SIZE", "OpenSearchMultiModalEmbedding"]

MAX_BATCH_SIZE = 32
"""Inputs per request the API accepts; LlamaIndex hands us at most this many per call."""


def _image_input(image: ImageType | ImageInput) -> ImageInput:
    """LlamaIndex image -> core image input.

    A ``BytesIO`` is passed as its whole buffer (``getvalue()``), so embedding does not
    depend on, or move, the stream position of a buffer LlamaIndex may reuse. Everything
    else (path, URL, data URI, other core inputs) is passed through for the core to check.
    """
    if isinstance(image, BytesIO):
        return image.getvalue()
    return image


class OpenSearchMultiModalEmbedding(MultiModalEmbedding):
    """Text and image embeddings from Alibaba Cloud AI Search Open Platform for LlamaIndex.

    Not Amazon OpenSearch. One core :class:`~opensearch_mm.MultiModalEmbeddingClient` is
    built at construction and shared by every call (sync and async), so its rate limiter
    and connection pools are shared too. Each batch LlamaIndex hands over
    (``embed_batch_size`` <= 32 inputs) is one API request.

    Example::

        embed_model = OpenSearchMultiModalEmbedding(
            api_key="OS-...", endpoint="ops-cn-hangzhou.opensearch.aliyuncs.com"
        )
        vector = embed_model.get_text_embedding("a red bicycle")
        image_vector = embed_model.get_image_embedding("bike.jpg")

    ``api_key``, ``endpoint`` and ``workspace`` default to the environment variables
    ``OPENSEARCH_MM_API_KEY``, ``OPENSEARCH_MM_ENDPOINT`` and ``OPENSEARCH_MM_WORKSPACE``.
    The API key is kept only inside the core client: it is not a field, so it never appears
    in ``repr``, ``to_dict``, ``to_json`` or callback/instrumentation payloads.
    """

    model_name: str = Field(default=DEFAULT_MODEL, description="Service id of the embedding model.")
    embed_batch_size: int = Field(
        default=MAX_BATCH_SIZE,
        gt=0,
        le=MAX_BATCH_SIZE,
        description="Inputs per request (the API takes at most 32).",
    )
    endpoint: str | None = Field(
        default=None,
        description="Service endpoint (host or URL); defaults to $OPENSEARCH_MM_ENDPOINT.",
    )
    workspace: str = Field(
        default=DEFAULT_WORKSPACE,
        description="Workspace name; defaults to $OPENSEARCH_MM_WORKSPACE, else 'default'.",
    )
    max_retries: int = Field(default=6, ge=0, description="Retries per request.")
    timeout: float = Field(default=60.0, gt=0, description="Seconds per request attempt.")
    max_concurrency: int = Field(
        default=8, ge=1, description="Requests in flight per call of the core client."
    )
    qps: float | Literal["adaptive"] | None = Field(
        default="adaptive",
        description="Client-side rate limit: 'adaptive', a fixed number, or None (off).",
    )

    _client: MultiModalEmbeddingClient = PrivateAttr()

    def __init__(
        self,
        model_name: str = DEFAULT_MODEL,
        *,
        api_key: str | Any | None = None,
        endpoint: str | None = None,
        workspace: str | None = None,
        embed_batch_size: int = MAX_BATCH_SIZE,
        max_retries: int = 6,
        timeout: float = 60.0,
        max_concurrency: int = 8,
        qps: float | Literal["adaptive"] | None = "adaptive",
        callback_manager: CallbackManager | None = None,
        client: MultiModalEmbeddingClient | None = None,
        model: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Configure the adapter and build its core client.

        ``client`` injects a ready core client instead (its own configuration then wins
        for the connection settings). Raises :class:`opensearch_mm.ConfigurationError`
        when no API key or endpoint is given or found in the environment.
        """
        if model is not None:
            # ``model`` is LangChain's (and the core's) name for the same setting.
            if model_name not in (DEFAULT_MODEL, model):
                raise ConfigurationError(
                    f"model={model!r} and model_name={model_name!r} disagree; pass one of them"
                )
            model_name = model
        fields: dict[str, Any] = {
            "model_name": model_name,
            "endpoint": endpoint or os.environ.get(ENV_ENDPOINT) or None,
            "workspace": workspace or os.environ.get(ENV_WORKSPACE) or DEFAULT_WORKSPACE,
            "embed_batch_size": embed_batch_size,
            "max_retries": max_retries,
            "timeout": timeout,
            "max_concurrency": max_concurrency,
            "qps": qps,
            **kwargs,
        }
        if callback_manager is not None:
            fields["callback_manager"] = callback_manager
        super().__init__(**fields)
        self._client = client or MultiModalEmbeddingClient(
            api_key=api_key,
            endpoint=self.endpoint,
            workspace=self.workspace,
            model=self.model_name,
            timeout=self.timeout,
            max_retries=self.max_retries,
            max_concurrency=self.max_concurrency,
            qps=self.qps,
        )

    @classmethod
    def class_name(cls) -> str:
        """Serialization id of this component."""
        return "OpenSearchMultiModalEmbedding"

    @property
    def client(self) -> MultiModalEmbeddingClient:
        """The core client every call goes through."""
        return self._client

    def close(self) -> None:
        """Close the core client's connection pools."""
        self._client.close()

    async def aclose(self) -> None:
        """Close the core client's async and sync connection pools."""
        await self._client.aclose()

    # -- batch entry points: refuse a non-list before LlamaIndex iterates it ------------

    def get_text_embedding_batch(
        self, texts: list[str], show_progress: bool = False, **kwargs: Any
    ) -> list[Embedding]:
        """One vector per text (in batches of ``embed_batch_size``)."""
        require_many(texts, "get_text_embedding_batch", "strings")
        return super().get_text_embedding_batch(texts, show_progress, **kwargs)

    async def aget_text_embedding_batch(
        self, texts: list[str], show_progress: bool = False, **kwargs: Any
    ) -> list[Embedding]:
        """Async :meth:`get_text_embedding_batch`."""
        require_many(texts, "aget_text_embedding_batch", "strings")
        return await super().aget_text_embedding_batch(texts, show_progress, **kwargs)

    def get_image_embedding_batch(
        self, img_file_paths: list[ImageType], show_progress: bool = False
    ) -> list[Embedding]:
        """One vector per image (in batches of ``embed_batch_size``)."""
        require_many(img_file_paths, "get_image_embedding_batch", "images")
        return super().get_image_embedding_batch(img_file_paths, show_progress)

    async def aget_image_embedding_batch(
        self, img_file_paths: list[ImageType], show_progress: bool = False
    ) -> list[Embedding]:
        """Async :meth:`get_image_embedding_batch`."""
        require_many(img_file_paths, "aget_image_embedding_batch", "images")
        return await super().aget_image_embedding_batch(img_file_paths, show_progress)

    # -- texts (the service has no query/document distinction) ------------------------

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._client.embed_texts([query])[0]

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return (await self._client.aembed_texts([query]))[0]

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._client.embed_texts([text])[0]

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return (await self._client.aembed_texts([text]))[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return self._client.embed_texts(texts)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await self._client.aembed_texts(texts)

    # -- images: str path, http(s) URL, data URI, or BytesIO -----------------------------

    def _get_image_embedding(self, img_file_path: ImageType) -> Embedding:
        return self._client.embed_images([_image_input(img_file_path)])[0]

    async def _aget_image_embedding(self, img_file_path: ImageType) -> Embedding:
        return (await self._client.aembed_images([_image_input(img_file_path)]))[0]

    def _get_image_embeddings(self, img_file_paths: list[ImageType]) -> list[Embedding]:
        return self._client.embed_images([_image_input(p) for p in img_file_paths])

    async def _aget_image_embeddings(self, img_file_paths: list[ImageType]) -> list[Embedding]:
        return await self._client.aembed_images([_image_input(p) for p in img_file_paths])
