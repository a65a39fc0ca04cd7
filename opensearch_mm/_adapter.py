"""What both framework adapters do around their core client, framework-free.

The LangChain and LlamaIndex adapters are pydantic models that hold one
:class:`~opensearch_mm.MultiModalEmbeddingClient`. :class:`CoreClientAdapter` gives them
the same lifecycle, usage counts and copy/pickle rules. It declares no fields: each
adapter declares the private attributes it reads (``_client``, ``_injected``,
``_usage_lock``, ``_last_usage``, ``_total_usage``), the fields its core client is built
from (``_client_fields``) and the other names of its fields (``_aliases``).
"""

from __future__ import annotations

import contextlib
import json
import pickle
import threading
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from ._config import setting_changes
from .client import MultiModalEmbeddingClient
from .errors import ConfigurationError, OpenSearchMMError
from .results import EmbeddingResult, Usage

__all__ = ["CoreClientAdapter"]

_A = TypeVar("_A", bound="CoreClientAdapter")


class CoreClientAdapter:
    """Lifecycle, usage counts and copies of an adapter around one core client."""

    # Set by each adapter: the fields that configure its core client (an adapter built
    # around client= has none of its own), and each field's other name (LangChain's
    # ``model``/``model_name``, LlamaIndex's ``model_name``/``model``).
    _client_fields: ClassVar[tuple[str, ...]] = ()
    _aliases: ClassVar[Mapping[str, str]] = {}

    if TYPE_CHECKING:
        _client: MultiModalEmbeddingClient
        _injected: bool  # built around client=: the caller's to close, not ours
        _usage_lock: threading.Lock
        _last_usage: Usage | None
        _total_usage: Usage
        model_fields: ClassVar[dict[str, Any]]

        def __init__(self, **kwargs: Any) -> None: ...

    @property
    def client(self) -> MultiModalEmbeddingClient:
        """The core client every call goes through (for ``embed_iter`` and other core calls)."""
        return self._client

    @property
    def dimensions(self) -> int | None:
        """Vector length of the model; ``None`` for an unknown model before its first call."""
        return self._client.dimensions

    @property
    def last_usage(self) -> Usage | None:
        """What the service counted for the last call (tokens, images; of a call that
        failed part-way, for the requests it answered); ``None`` before."""
        return self._last_usage

    @property
    def total_usage(self) -> Usage:
        """What the service counted for every call of this adapter so far."""
        return self._total_usage

    def _count(self, result: EmbeddingResult) -> list[list[float]]:
        """Add ``result``'s usage to the counts; its vectors."""
        self._add_usage(result.usage)
        return result.embeddings

    def _add_usage(self, usage: Usage) -> None:
        with self._usage_lock:
            self._last_usage = usage
            self._total_usage = self._total_usage + usage

    @contextlib.contextmanager
    def _counting_failures(self) -> Iterator[None]:
        """Around a core call: if it fails part-way, count what the service counted for
        the requests it answered (the error's ``partial``) before the error goes on."""
        try:
            yield
        except OpenSearchMMError as exc:
            if exc.partial is not None:
                self._add_usage(exc.partial.usage)
            raise

    # -- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection pools the core client created (not an injected client)."""
        if not self._injected:
            self._client.close()

    async def aclose(self) -> None:
        """Close the async and sync connection pools the core client created."""
        if not self._injected:
            await self._client.aclose()

    def __enter__(self: _A) -> _A:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self: _A) -> _A:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- validation from data goes through the constructor -------------------------------

    @staticmethod
    def _settings_error(errors: list[Any]) -> OpenSearchMMError:
        """The error for fields pydantic refused (its ``ValidationError.errors()``): the
        core's own, if a validator raised one, else a :class:`ConfigurationError` naming
        each field and why, without the values (the refused input can hold the key)."""
        for error in errors:
            original = (error.get("ctx") or {}).get("error")
            if isinstance(original, OpenSearchMMError):
                return original
        reasons = [
            f"{'.'.join(str(part) for part in error.get('loc', ())) or 'settings'}: "
            f"{error.get('msg', 'invalid')}"
            for error in errors
        ]
        return ConfigurationError("; ".join(reasons))

    @classmethod
    def model_validate(cls: type[_A], obj: Any, **options: Any) -> _A:
        """Build from a mapping of settings as the constructor does (the core's errors
        raised as they are: pydantic's would quote the whole mapping, key included);
        anything else, or with pydantic's options, as pydantic validates it."""
        if isinstance(obj, Mapping) and not options:
            return cls(**obj)
        return super().model_validate(obj, **options)  # type: ignore[misc,no-any-return]

    @classmethod
    def model_validate_json(
        cls: type[_A], json_data: str | bytes | bytearray, **options: Any
    ) -> _A:
        """Like :meth:`model_validate`, from JSON."""
        if not options:
            data = json.loads(json_data)
            if isinstance(data, dict):
                return cls(**data)
        return super().model_validate_json(json_data, **options)  # type: ignore[misc,no-any-return]

    # -- copies that are independent and match their fields -----------------------------

    def _init_kwargs(self) -> dict[str, Any]:
        """Keyword arguments that rebuild this adapter (key and injected objects included)."""
        values = {name: getattr(self, name) for name in type(self).model_fields}
        if self._injected:
            for name in self._client_fields:
                values.pop(name, None)
            values["client"] = self._client
        return values

    def model_copy(self: _A, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> _A:
        """A new adapter with these settings, ``update`` applied, and its own core client."""
        values = self._init_kwargs()
        update = dict(update or {})
        for name in update:
            if name in self._aliases:
                values.pop(self._aliases[name], None)
        values.update(setting_changes(values, update))
        return type(self)(**values)

    def __copy__(self: _A) -> _A:
        return self.model_copy()

    def __deepcopy__(self: _A, memo: dict[int, Any] | None = None) -> _A:
        return self.model_copy()

    def _pickled(self, values: dict[str, Any]) -> dict[str, Any]:
        """The pickled state of an adapter rebuilt from ``values`` (its keyword arguments):
        the settings, API key included, but not the connection pools (injected
        ``http_client``/``http_async_client`` are left out: the copy makes its own).

        Raises:
            TypeError: The adapter was built around ``client=``, or its ``rate_limiter``
                cannot be pickled.
        """
        name = type(self).__name__
        if self._injected:
            raise TypeError(
                f"{name} built around client= cannot be pickled (the core client holds "
                "connection pools); build it from settings instead"
            )
        values = dict(values)
        values.pop("http_client", None)
        values.pop("http_async_client", None)
        limiter = values.get("rate_limiter")
        if limiter is not None:
            try:
                pickle.dumps(limiter)
            except Exception:
                raise TypeError(
                    f"{name} with rate_limiter={type(limiter).__name__}(...) cannot be pickled "
                    "(the limiter is shared in this process); give worker processes qps=... "
                    "or a limiter that pickles"
                ) from None
        return {"init_kwargs": values}
