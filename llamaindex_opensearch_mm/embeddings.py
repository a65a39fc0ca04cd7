"""``OpenSearchMultiModalEmbedding``: the LlamaIndex adapter over the core client.

It translates LlamaIndex's embedding calls into :class:`opensearch_mm.MultiModalEmbeddingClient`
calls and holds no API logic of its own: validation, packing into requests, rate limiting
and retries all happen in the core.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import pickle
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from io import BytesIO
from typing import Any, ClassVar, Literal, TypeVar

import httpx
from llama_index.core.base.embeddings.base import Embedding
from llama_index.core.bridge.pydantic import (
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
)
from llama_index.core.callbacks.base import CallbackManager
from llama_index.core.callbacks.schema import CBEventType, EventPayload
from llama_index.core.embeddings import MultiModalEmbedding
from llama_index.core.instrumentation import get_dispatcher  # type: ignore[attr-defined]
from llama_index.core.instrumentation.events.embedding import (
    EmbeddingEndEvent,
    EmbeddingStartEvent,
)
from llama_index.core.schema import ImageType
from pydantic.json_schema import SkipJsonSchema

from opensearch_mm import (
    DEFAULT_MODEL,
    DEFAULT_WORKSPACE,
    ENV_API_KEY,
    ENV_ENDPOINT,
    ENV_WORKSPACE,
    ConfigurationError,
    Content,
    ImageInput,
    MultiModalEmbeddingClient,
    ProgressCallback,
    RateLimiter,
    RetryPolicy,
    Usage,
    mirror_policy_fields,
    require_many,
)
from opensearch_mm._adapter import CoreClientAdapter
from opensearch_mm._config import setting_changes
from opensearch_mm.inputs import encode_text_only

__all__ = ["MAX_BATCH_SIZE", "OpenSearchMultiModalEmbedding"]

dispatcher = get_dispatcher(__name__)

MAX_BATCH_SIZE = 32
"""Inputs per request the API accepts (the core packs requests up to this size)."""

MASKED_KEY = "**********"
"""What pydantic prints for a ``SecretStr``: never a real key."""

# Settings the core client is built from: changing one rebuilds it.
_CLIENT_FIELDS = (
    "model_name",
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
    "api_key",
    "http_client",
    "http_async_client",
)

_T = TypeVar("_T")


def _image_input(image: ImageType | ImageInput) -> ImageInput:
    """LlamaIndex image -> core image input.

    A ``BytesIO`` is passed as its whole buffer (``getvalue()``), so embedding does not
    depend on, or move, the stream position of a buffer LlamaIndex may reuse. Everything
    else (path, URL, data URI, other core inputs), and a closed buffer, is passed through
    for the core to check (and to name by its place in the list if it cannot be read).
    """
    if isinstance(image, BytesIO) and not image.closed:
        return image.getvalue()
    return image


def _settings_as_fields(client: MultiModalEmbeddingClient) -> dict[str, Any]:
    """The adapter fields that describe an injected core client."""
    settings = client.settings()
    settings["model_name"] = settings.pop("model")
    return settings


_RETIRED_KEPT = 4  # replaced core clients kept open for their calls in flight


class OpenSearchMultiModalEmbedding(CoreClientAdapter, MultiModalEmbedding):
    """Text and image embeddings from Alibaba Cloud AI Search Open Platform for LlamaIndex.

    Not Amazon OpenSearch. One core :class:`~opensearch_mm.MultiModalEmbeddingClient` is
    built at construction and shared by every call (sync and async), so its rate limiter
    and connection pools are shared too. A batch call (``get_text_embedding_batch``,
    ``get_image_embedding_batch`` and their async twins) goes to the core at once: it
    validates every input before sending anything and sends requests of up to 32 inputs
    concurrently; the ``show_progress`` bar moves as each request is answered.
    ``embed_batch_size`` only sets how many inputs each LlamaIndex callback event and
    instrumentation event covers.

    Example:
        ```python
        embed_model = OpenSearchMultiModalEmbedding(
            model_name="ops-m2-encoder", endpoint="ops-cn-hangzhou.opensearch.aliyuncs.com"
        )
        vector = embed_model.get_text_embedding("a red bicycle")
        image_vector = embed_model.get_image_embedding("bike.jpg")
        ```

    ``api_key``, ``endpoint`` and ``workspace`` default to the environment variables
    ``OPENSEARCH_MM_API_KEY``, ``OPENSEARCH_MM_ENDPOINT`` and ``OPENSEARCH_MM_WORKSPACE``.
    ``model`` is accepted as another name for ``model_name``. Every field is honoured:
    assigning one after construction rebuilds the core client, ``model_copy``, ``copy``
    and ``pickle`` give independent adapters with their own connection pools. The API key
    is never in ``repr``, ``to_dict``, ``to_json`` or callback/instrumentation payloads;
    a pickle carries it (as other embedding integrations do), so a worker process can call
    the service.
    """

    model_name: str = Field(default=DEFAULT_MODEL, description="Service id of the embedding model.")
    embed_batch_size: int = Field(
        default=MAX_BATCH_SIZE,
        gt=0,
        le=2048,
        description=(
            "Inputs per LlamaIndex callback/instrumentation event; requests are packed by "
            "the core (up to 32 inputs and 8 MB each)."
        ),
    )
    api_key: SecretStr | None = Field(
        default=None,
        exclude=True,
        repr=False,
        description="API key; defaults to $OPENSEARCH_MM_API_KEY. Never serialized.",
    )
    endpoint: str | None = Field(
        default_factory=lambda: os.environ.get(ENV_ENDPOINT) or None,
        description="Service endpoint (host or URL); defaults to $OPENSEARCH_MM_ENDPOINT.",
    )
    workspace: str = Field(
        default_factory=lambda: os.environ.get(ENV_WORKSPACE) or DEFAULT_WORKSPACE,
        description="Workspace name; defaults to $OPENSEARCH_MM_WORKSPACE, else 'default'.",
    )
    max_retries: int = Field(default=6, description="Retries per request.")
    retry_policy: RetryPolicy | None = Field(
        default=None,
        description="Backoff delays and caps (max_retries then mirrors its max_retries).",
    )
    timeout: float = Field(default=60.0, description="Seconds per request attempt.")
    max_concurrency: int = Field(
        default=8, description="Requests in flight per call of the core client."
    )
    qps: float | Literal["adaptive"] | None = Field(
        default="adaptive",
        description="Client-side rate limit: 'adaptive', a fixed number, or None (off).",
    )
    share_rate_limit: bool | str | None = Field(
        default=None,
        description=(
            "With qps='adaptive': True paces with every client of this account on this "
            "machine (all processes of this user), False alone, a str with every client "
            "passing that group name; None: $OPENSEARCH_MM_SHARE_RATE_LIMIT, else True."
        ),
    )
    image_max_side: int | None = Field(
        default=None,
        description="Downscale local images whose longer side exceeds this (needs Pillow).",
    )
    downscale_oversized: bool = Field(
        default=False,
        description="Re-encode an image too large for one request instead of failing.",
    )
    http_client: SkipJsonSchema[httpx.Client | None] = Field(
        default=None,
        exclude=True,
        repr=False,
        description="An httpx.Client to send sync requests with (not closed by the adapter).",
    )
    http_async_client: SkipJsonSchema[httpx.AsyncClient | None] = Field(
        default=None,
        exclude=True,
        repr=False,
        description="An httpx.AsyncClient to send async requests with (not closed by the adapter).",
    )

    model_config = ConfigDict(
        validate_assignment=True,
        protected_namespaces=(),
        hide_input_in_errors=True,  # (the input refused can be every setting, key included)
    )

    _client: MultiModalEmbeddingClient = PrivateAttr()
    _injected: bool = PrivateAttr(default=False)
    # Core clients an assignment replaced: a call of another thread may still run on one.
    _retired: list[MultiModalEmbeddingClient] = PrivateAttr(default_factory=list)
    # An opensearch_mm.RateLimiter passed as rate_limiter=: the core client's. (The
    # rate_limiter field stays LlamaIndex's own, which its base class calls per chunk.)
    _shared_limiter: RateLimiter | None = PrivateAttr(default=None)
    _usage_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _last_usage: Usage | None = PrivateAttr(default=None)
    _total_usage: Usage = PrivateAttr(default_factory=Usage)
    _client_fields: ClassVar[tuple[str, ...]] = _CLIENT_FIELDS
    _aliases: ClassVar[Mapping[str, str]] = {"model": "model_name"}

    def __init__(
        self,
        model_name: str | None = None,
        *,
        model: str | None = None,
        client: MultiModalEmbeddingClient | None = None,
        callback_manager: CallbackManager | None = None,
        **kwargs: Any,
    ) -> None:
        """Configure the adapter and build its core client.

        Args:
            model_name: Service id of the model (``model`` is the same setting).
            model: Another name for ``model_name``.
            client: A ready core client to use instead of building one; the connection
                fields then describe it and may not be passed too.
            callback_manager: LlamaIndex callback manager.
            **kwargs: The other fields (``api_key``, ``endpoint``, ``workspace``,
                ``max_retries``, ``timeout``, ``max_concurrency``, ``qps``,
                ``share_rate_limit``, ``image_max_side``, ``downscale_oversized``, ``http_client``,
                ``http_async_client``, ``embed_batch_size``, ``num_workers``, ...).

        Raises:
            TypeError: An unknown keyword argument (the message names the nearest one).
            ConfigurationError: No API key or endpoint given or in the environment, a
                masked placeholder key, conflicting settings, or a value the core refuses.
        """
        kwargs.pop("class_name", None)  # present in to_dict() output
        self._check_names(kwargs)
        if model is not None:
            if model_name is not None and model_name != model:
                raise ConfigurationError(
                    f"model={model!r} and model_name={model_name!r} disagree; pass one of them"
                )
            model_name = model
        if model_name is not None:
            kwargs["model_name"] = model_name
        if client is not None:
            given = sorted(set(kwargs) & set(_CLIENT_FIELDS))
            if given:
                raise ConfigurationError(
                    f"client= carries its own configuration; do not also pass {', '.join(given)}"
                )
            kwargs.update(_settings_as_fields(client))
        else:
            for name in ("endpoint", "workspace"):
                if name in kwargs and kwargs[name] is None:
                    del kwargs[name]  # (None is "not given": the environment or the default)
            if kwargs.get("workspace") == "":
                del kwargs["workspace"]  # (as for the core: the environment or the default)
            key = kwargs.get("api_key")
            if key is None:
                key = os.environ.get(ENV_API_KEY) or None
            if isinstance(key, SecretStr):
                key = key.get_secret_value()
            if key is not None:
                if not isinstance(key, str):
                    raise ConfigurationError("api_key must be a str")
                kwargs["api_key"] = SecretStr(key)
        mirror_policy_fields(kwargs)
        shared = kwargs.get("rate_limiter")
        if isinstance(shared, RateLimiter):
            del kwargs["rate_limiter"]
        else:
            shared = None
        if callback_manager is not None:
            kwargs["callback_manager"] = callback_manager
        try:
            super().__init__(**kwargs)
        except ValidationError as exc:
            raise self._settings_error(exc.errors()) from None
        self._shared_limiter = shared
        self._injected = client is not None
        self._client = client if client is not None else self._build_client()

    @classmethod
    def _check_names(cls, kwargs: dict[str, Any]) -> None:
        valid = set(cls.model_fields) | {"model", "client"}
        for name in kwargs:
            if name not in valid:
                near = difflib.get_close_matches(name, sorted(valid), n=1, cutoff=0.5)
                hint = f"; did you mean {near[0]!r}?" if near else ""
                raise TypeError(f"{cls.__name__} got an unexpected keyword argument {name!r}{hint}")

    def _build_client(self) -> MultiModalEmbeddingClient:
        if self.api_key is not None and self.api_key.get_secret_value().strip() == MASKED_KEY:
            raise ConfigurationError(
                f"api_key is the masked placeholder {MASKED_KEY!r} from a serialized copy, "
                f"not a key: pass the real key or set {ENV_API_KEY}"
            )
        return MultiModalEmbeddingClient(
            api_key=self.api_key,
            endpoint=self.endpoint,
            workspace=self.workspace,
            model=self.model_name,
            timeout=self.timeout,
            max_retries=self.max_retries,
            retry_policy=self.retry_policy,
            max_concurrency=self.max_concurrency,
            qps=self.qps,
            rate_limiter=self._shared_limiter,
            share_rate_limit=self.share_rate_limit,
            image_max_side=self.image_max_side,
            downscale_oversized=self.downscale_oversized,
            http_client=self.http_client,
            http_async_client=self.http_async_client,
        )

    @classmethod
    def class_name(cls) -> str:
        """Serialization id of this component."""
        return "OpenSearchMultiModalEmbedding"

    # -- settings that always match the requests --------------------------------------

    @property
    def model(self) -> str:
        """Another name for ``model_name`` (LangChain's and the core's)."""
        return self.model_name

    def __setattr__(self, name: str, value: Any) -> None:
        """Assigning a connection setting rebuilds the core client (or is refused)."""
        if name == "model":
            name = "model_name"
        if (
            name not in _CLIENT_FIELDS
            or "_client" not in (self.__pydantic_private__ or {})
            or (name == "rate_limiter" and self._llamaindex_limiter(value))
        ):
            super().__setattr__(name, value)
            return
        if self._injected:
            raise ConfigurationError(
                f"cannot change {name!r} of an adapter built around client=; build a new one"
            )
        if name == "api_key" and value is not None and not isinstance(value, SecretStr):
            if not isinstance(value, str):
                raise ConfigurationError("api_key must be a str (or a SecretStr)")
            value = SecretStr(value)
        current = {"retry_policy": self.retry_policy, "rate_limiter": self._shared_limiter}
        changes = setting_changes(current, {name: value})
        old_values = {key: self._setting(key) for key in changes}
        try:
            for key, new in changes.items():
                self._set_setting(key, new)
            new_client = self._build_client()
        except BaseException as exc:
            for key, old in old_values.items():
                self._set_setting(key, old)
            if isinstance(exc, ValidationError):
                raise self._settings_error(exc.errors()) from None
            raise
        old_client, self._client = self._client, new_client
        # Closed with the adapter, not now: a call of another thread may be running on it
        # (an index build while a setting changes). Past a few, the oldest goes: a call
        # that outlived that many assignments is not to be expected.
        self._retired.append(old_client)
        while len(self._retired) > _RETIRED_KEPT:
            self._retired.pop(0).close()

    def close(self) -> None:
        """Close the connection pools the core client created, and those of the clients
        assignments replaced."""
        while self._retired:
            self._retired.pop().close()
        super().close()

    async def aclose(self) -> None:
        """Async :meth:`close`."""
        while self._retired:
            await self._retired.pop().aclose()
        await super().aclose()

    def _llamaindex_limiter(self, value: object) -> bool:
        """Whether ``value`` assigned to ``rate_limiter`` is for LlamaIndex's field (its
        per-chunk limiter), not the core client's: any limiter not ours, and ``None``
        unless only a core limiter is set (then ``None`` takes that one away)."""
        if isinstance(value, RateLimiter):
            return False
        return value is not None or self.rate_limiter is not None or self._shared_limiter is None

    def _setting(self, key: str) -> Any:
        return self._shared_limiter if key == "rate_limiter" else getattr(self, key)

    def _set_setting(self, key: str, value: Any) -> None:
        if key == "rate_limiter":
            self._shared_limiter = value
        else:
            super().__setattr__(key, value)

    def _init_kwargs(self) -> dict[str, Any]:
        values = super()._init_kwargs()
        if self._shared_limiter is not None and not self._injected:
            values["rate_limiter"] = self._shared_limiter  # (held outside the fields)
        return values

    def __getstate__(self) -> dict[str, Any]:
        """Pickle the settings (API key included) but not the connection pools.

        Injected ``http_client``/``http_async_client`` are left out (the copy makes its
        own pools), as is a callback manager that cannot be pickled.
        """
        state = self._pickled(self._init_kwargs())
        try:
            pickle.dumps(state["init_kwargs"].get("callback_manager"))
        except Exception:
            state["init_kwargs"].pop("callback_manager", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "init_kwargs" not in state:  # pydantic's own state (e.g. an older pickle)
            super().__setstate__(state)
            return
        self.__init__(**state["init_kwargs"])  # type: ignore[misc]

    # -- core calls -----------------------------------------------------------------------

    def _embed_texts(
        self, texts: Sequence[str], on_progress: ProgressCallback | None = None
    ) -> list[list[float]]:
        contents = [Content(text=t) for t in texts]
        with self._counting_failures():
            return self._count(self._client.embed(contents, on_progress=on_progress))

    async def _aembed_texts(
        self, texts: Sequence[str], on_progress: ProgressCallback | None = None
    ) -> list[list[float]]:
        contents = [Content(text=t) for t in texts]
        with self._counting_failures():
            return self._count(await self._client.aembed(contents, on_progress=on_progress))

    def _embed_images(
        self, images: Sequence[ImageType], on_progress: ProgressCallback | None = None
    ) -> list[list[float]]:
        contents = [Content(image=_image_input(i)) for i in images]
        with self._counting_failures():
            return self._count(self._client.embed(contents, on_progress=on_progress))

    async def _aembed_images(
        self, images: Sequence[ImageType], on_progress: ProgressCallback | None = None
    ) -> list[list[float]]:
        contents = [Content(image=_image_input(i)) for i in images]
        with self._counting_failures():
            return self._count(await self._client.aembed(contents, on_progress=on_progress))

    # -- batch entry points: the whole batch in one core call ---------------------------

    def _chunks(self, values: list[_T]) -> list[list[_T]]:
        size = self.embed_batch_size
        return [values[i : i + size] for i in range(0, len(values), size)]

    def _start_events(self, chunks: list[list[Any]], instrument: bool) -> list[str]:
        payload = self.to_payload()
        ids = []
        for _ in chunks:
            if instrument:
                dispatcher.event(EmbeddingStartEvent(model_dict=payload))
            ids.append(
                self.callback_manager.on_event_start(
                    CBEventType.EMBEDDING, payload={EventPayload.SERIALIZED: payload}
                )
            )
        return ids

    def _end_events(
        self,
        chunks: list[list[Any]],
        ids: list[str],
        vectors: list[Embedding] | None,
        error: BaseException | None,
        instrument: bool,
    ) -> None:
        start = 0
        for chunk, event_id in zip(chunks, ids, strict=True):
            if vectors is None:
                self.callback_manager.on_event_end(
                    CBEventType.EMBEDDING,
                    payload={EventPayload.EXCEPTION: error},
                    event_id=event_id,
                )
                continue
            part = vectors[start : start + len(chunk)]
            start += len(chunk)
            if instrument:
                dispatcher.event(EmbeddingEndEvent(chunks=chunk, embeddings=part))
            self.callback_manager.on_event_end(
                CBEventType.EMBEDDING,
                payload={EventPayload.CHUNKS: chunk, EventPayload.EMBEDDINGS: part},
                event_id=event_id,
            )

    def _progress(self, total: int, show: bool, desc: str) -> Any:
        if not show:
            return None
        try:
            from tqdm.auto import tqdm
        except ImportError:  # pragma: no cover - depends on the install
            return None
        return tqdm(total=total, desc=desc)

    @contextlib.contextmanager
    def _batch_events(
        self, values: list[Any], *, show_progress: bool, desc: str, instrument: bool
    ) -> Iterator[tuple[list[list[Embedding]], ProgressCallback | None]]:
        """LlamaIndex's events and progress bar around one whole-batch call: the caller
        appends the vectors to the yielded list and passes the yielded callback to the
        core, which moves the bar as each request is answered; an error ends the events
        with it."""
        chunks = self._chunks(values)
        bar = self._progress(len(values), show_progress, desc)
        ids = self._start_events(chunks, instrument)
        out: list[list[Embedding]] = []
        try:
            try:
                yield out, (bar.update if bar is not None else None)
            except BaseException as exc:
                self._end_events(chunks, ids, None, exc, instrument)
                raise
            self._end_events(chunks, ids, out[0], None, instrument)
        finally:
            if bar is not None:
                bar.close()

    def _whole_batch(
        self,
        values: list[Any],
        embed: Callable[[list[Any], ProgressCallback | None], list[Embedding]],
        *,
        show_progress: bool,
        desc: str,
        instrument: bool,
    ) -> list[Embedding]:
        with self._batch_events(
            values, show_progress=show_progress, desc=desc, instrument=instrument
        ) as (out, on_progress):
            out.append(embed(values, on_progress) if values else [])
        return out[0]

    async def _awhole_batch(
        self,
        values: list[Any],
        embed: Callable[[list[Any], ProgressCallback | None], Awaitable[list[Embedding]]],
        *,
        show_progress: bool,
        desc: str,
        instrument: bool,
    ) -> list[Embedding]:
        with self._batch_events(
            values, show_progress=show_progress, desc=desc, instrument=instrument
        ) as (out, on_progress):
            out.append(await embed(values, on_progress) if values else [])
        return out[0]

    def _uses_framework_batching(self) -> bool:
        # LlamaIndex's embeddings cache and rate limiter work per chunk: keep its loop then.
        return self.embeddings_cache is not None or self.rate_limiter is not None

    def _check_texts(self, texts: list[str]) -> None:
        """Check every text as the core would before LlamaIndex's loop sends a chunk: a
        bad one is named by its place in ``texts`` (not in a chunk, nor among the texts
        not cached), and nothing is sent."""
        options = self._client.encode_options
        for index, text in enumerate(texts):
            encode_text_only(text, index, options)

    @dispatcher.span
    def get_text_embedding_batch(
        self, texts: list[str], show_progress: bool = False, **kwargs: Any
    ) -> list[Embedding]:
        """One vector per text, in order; the whole list goes to the core in one call.

        An invalid text raises :class:`~opensearch_mm.InputError` naming its position in
        ``texts`` before anything is sent.
        """
        require_many(texts, "get_text_embedding_batch", "strings")
        if self._uses_framework_batching():
            self._check_texts(texts)
            return super().get_text_embedding_batch(texts, show_progress, **kwargs)
        return self._whole_batch(
            list(texts),
            self._embed_texts,
            show_progress=show_progress,
            desc="Generating embeddings",
            instrument=True,
        )

    @dispatcher.span
    async def aget_text_embedding_batch(
        self, texts: list[str], show_progress: bool = False, **kwargs: Any
    ) -> list[Embedding]:
        """Async :meth:`get_text_embedding_batch`."""
        require_many(texts, "aget_text_embedding_batch", "strings")
        if self._uses_framework_batching():
            self._check_texts(texts)
            return await super().aget_text_embedding_batch(texts, show_progress, **kwargs)
        return await self._awhole_batch(
            list(texts),
            self._aembed_texts,
            show_progress=show_progress,
            desc="Generating embeddings",
            instrument=True,
        )

    def get_image_embedding_batch(
        self, img_file_paths: list[ImageType], show_progress: bool = False
    ) -> list[Embedding]:
        """One vector per image, in order; the whole list goes to the core in one call."""
        require_many(img_file_paths, "get_image_embedding_batch", "images")
        return self._whole_batch(
            list(img_file_paths),
            self._embed_images,
            show_progress=show_progress,
            desc="Generating image embeddings",
            instrument=False,
        )

    async def aget_image_embedding_batch(
        self, img_file_paths: list[ImageType], show_progress: bool = False
    ) -> list[Embedding]:
        """Async :meth:`get_image_embedding_batch`."""
        require_many(img_file_paths, "aget_image_embedding_batch", "images")
        return await self._awhole_batch(
            list(img_file_paths),
            self._aembed_images,
            show_progress=show_progress,
            desc="Generating image embeddings",
            instrument=False,
        )

    # -- single inputs and LlamaIndex's per-chunk hooks -----------------------------------

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._embed_texts([query])[0]

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return (await self._aembed_texts([query]))[0]

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._embed_texts([text])[0]

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return (await self._aembed_texts([text]))[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return self._embed_texts(texts)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await self._aembed_texts(texts)

    def _get_image_embedding(self, img_file_path: ImageType) -> Embedding:
        return self._embed_images([img_file_path])[0]

    async def _aget_image_embedding(self, img_file_path: ImageType) -> Embedding:
        return (await self._aembed_images([img_file_path]))[0]

    def _get_image_embeddings(self, img_file_paths: list[ImageType]) -> list[Embedding]:
        return self._embed_images(img_file_paths)

    async def _aget_image_embeddings(self, img_file_paths: list[ImageType]) -> list[Embedding]:
        return await self._aembed_images(img_file_paths)
