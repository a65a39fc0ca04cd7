"""Embed a Ray Dataset on a cluster, under one rate limit for the whole account.

>>> import ray.data
>>> from opensearch_mm.ray import embed_dataset
>>> ds = ray.data.read_images("s3://bucket/photos/", include_paths=True)  # doctest: +SKIP
>>> ds = embed_dataset(ds, image_column="image", image_max_side=1024)     # doctest: +SKIP
>>> ds.write_parquet("s3://bucket/vectors/")                              # doctest: +SKIP

:func:`embed_dataset` adds a fixed-size ``float32`` list column of vectors to every row;
:class:`Embedder` is the callable class behind it, for your own ``map_batches``. The
account's ``qps`` is shared by every actor on every node through one small coordinator
actor (:class:`AccountRateLimit`) that hands out send slots in blocks.

Needs the ``ray`` extra: ``pip install 'opensearch-mm[ray]'``.
"""

from __future__ import annotations

import hashlib
import inspect
import os
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import orjson

from ._config import _check_qps, _positive_number
from ._ray_limit import (
    CoordinatorLink,
    Load,
    Observation,
    RateCoordinator,
    Reply,
    SharedRateLimiter,
)
from .client import ENV_API_KEY, ENV_ENDPOINT, ENV_WORKSPACE, MultiModalEmbeddingClient
from .errors import ConfigurationError, InputError, InvalidParameterError, OpenSearchMMError
from .inputs import Content, WireItem, encode_content
from .protocol import normalize_endpoint
from .retry import is_fatal_for_call

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pyarrow as pa
    import ray.data

__all__ = ["AccountRateLimit", "Embedder", "embed_dataset"]

OnError = Literal["raise", "null"]
ERROR_COLUMN = "embedding_error"
_NAMESPACE = "opensearch_mm"


def _require_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError:  # pragma: no cover - depends on the install
        raise ConfigurationError(
            "opensearch_mm.ray needs Ray Data: pip install 'opensearch-mm[ray]'"
        ) from None
    return ray


class _Secret:
    """The API key on its way to the actors: never shown by ``repr`` or ``str``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "'****'"

    __str__ = __repr__

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Secret, (self._value,))


# -- the shared limit -------------------------------------------------------------------

_ACTOR_CLASS: Any = None
_WATCH_GROUP = "watch"  # the coordinator's threads for open watch calls (one per actor) ...
_WATCHERS = 256  # ... as many as actors that learn a rate cut at once (more wait their turn)


def _coordinator_actor() -> Any:
    global _ACTOR_CLASS
    if _ACTOR_CLASS is None:
        ray = _require_ray()
        _ACTOR_CLASS = ray.remote(
            num_cpus=0,
            max_restarts=-1,
            max_task_retries=-1,
            concurrency_groups={_WATCH_GROUP: _WATCHERS},
        )(RateCoordinator)
    return _ACTOR_CLASS


class _RayLink(CoordinatorLink[Any]):
    """Calls on the coordinator actor; handles are ``ObjectRef``s."""

    def __init__(self, actor: Any) -> None:
        self._actor = actor
        self._ray = _require_ray()

    def lease(self, client: str, observations: list[Observation], want: int, load: Load) -> Any:
        return self._actor.lease.remote(client, observations, want, load)

    def observe(self, client: str, observations: list[Observation], load: Load) -> Any:
        return self._actor.observe.remote(client, observations, load)

    def watch(self, client: str, generation: int, permits: int | None) -> Any:
        # Its own concurrency group: open watches never hold up leases. Not retried: a
        # failed watch (the coordinator restarted) is simply opened again.
        method = self._actor.watch.options(concurrency_group=_WATCH_GROUP, max_task_retries=0)
        return method.remote(client, generation, permits)

    def ready(self, handles: list[Any]) -> list[Any]:
        done, _ = self._ray.wait(handles, num_returns=len(handles), timeout=0)
        return list(done)

    def result(self, handle: Any, timeout: float) -> Reply:
        reply: Reply = self._ray.get(handle, timeout=timeout)
        return reply


class AccountRateLimit:
    """The account's rate limit, shared by every process that uses it.

    Creating one starts a coordinator actor (no CPU reserved) that runs the same limiter
    as a single client (``qps="adaptive"`` learns the account's limit from throttling;
    a number pins it). The object is small and picklable: pass it to every
    :class:`Embedder` (``rate_limit=...``); each builds its local side with
    :meth:`limiter`. Needs a running Ray (``ray.init()``).

    Args:
        qps: The whole account's requests per second: ``"adaptive"`` or a number.
        name: Register the coordinator under this name in the ``opensearch_mm``
            namespace; every ``AccountRateLimit`` created with the same name, from any
            job on the cluster, then shares it. Named coordinators outlive the job
            (``lifetime="detached"``); :meth:`shutdown` ends one.
        horizon: Seconds of sending one lease of slots covers (split between the
            active processes): the most capacity a stalled or killed process can waste.
    """

    def __init__(
        self, qps: float | str = "adaptive", *, name: str | None = None, horizon: float = 0.25
    ) -> None:
        checked = _check_qps(qps)
        if checked is None:
            raise ConfigurationError("AccountRateLimit needs a limit: 'adaptive' or a number")
        qps = checked
        if _positive_number(horizon) is None:
            raise ConfigurationError(f"horizon must be a number of seconds > 0, got {horizon!r}")
        options: dict[str, Any] = {}
        if name is not None:
            options = {
                "name": name,
                "namespace": _NAMESPACE,
                "lifetime": "detached",
                "get_if_exists": True,
            }
        self.qps = qps
        self.name = name
        self._actor = _coordinator_actor().options(**options).remote(qps, horizon=horizon)

    @classmethod
    def for_account(
        cls,
        qps: float | str,
        *,
        endpoint: str,
        workspace: str,
        api_key: str,
    ) -> AccountRateLimit:
        """The cluster's coordinator for this endpoint, workspace, key and ``qps``
        (created on first use, shared by every job after)."""
        digest = hashlib.sha256(
            "\0".join(
                [
                    normalize_endpoint(endpoint),
                    workspace,
                    hashlib.sha256(api_key.encode()).hexdigest(),
                    str(qps),
                ]
            ).encode()
        ).hexdigest()[:20]
        return cls(qps, name=f"opensearch-mm-rate-{digest}")

    def limiter(self) -> SharedRateLimiter[Any]:
        """A new local side: a :class:`~opensearch_mm.ratelimit.RateLimiter` to pass as
        ``MultiModalEmbeddingClient(rate_limiter=...)`` in this process."""
        return SharedRateLimiter(_RayLink(self._actor))

    def status(self) -> dict[str, Any]:
        """The coordinator's counters: current ``rate``, remote ``calls`` it served
        (leases and flushes; ``watches``: open calls that wait for a rate cut),
        slots ``booked``, requests ``sent`` in them (answered), slots handed back
        ``unused``, ``throttles`` (of which ``explained`` by a cap on requests in
        flight), the cap learned (``max_in_flight``, ``None`` if none), the times a
        learned cap was dropped to be learned again (``relearned``) and the
        ``permits`` each process holds under it."""
        ray = _require_ray()
        status: dict[str, Any] = ray.get(self._actor.status.remote())
        return status

    def shutdown(self) -> None:
        """End the coordinator actor."""
        _require_ray().kill(self._actor, no_restart=True)

    def __repr__(self) -> str:
        return f"AccountRateLimit(qps={self.qps!r}, name={self.name!r})"


# -- the batch transform ------------------------------------------------------------------


def _as_table(batch: Any) -> pa.Table:
    import pyarrow as pa

    if isinstance(batch, pa.Table):
        return batch
    from ray.data.block import BlockAccessor

    table: pa.Table = BlockAccessor.for_block(BlockAccessor.batch_to_block(batch)).to_arrow()
    return table


def _column(table: pa.Table, name: str, role: str) -> list[Any]:
    """The column's cells, ``None`` where Arrow holds a null (a column with no value in
    the batch is typed null, and read as numbers its cells would be NaN)."""
    if name not in table.column_names:
        raise ConfigurationError(
            f"{role}={name!r}: no such column; the dataset has {table.column_names}"
        )
    import pyarrow.compute as pc
    from ray.data.block import BlockAccessor

    values: npt.NDArray[Any] = BlockAccessor.for_block(table.select([name])).to_numpy()[name]
    nulls = pc.is_null(table.column(name)).to_numpy(zero_copy_only=False)
    cells = zip(values, nulls, strict=True)
    return [None if null or _is_nan(value) else value for value, null in cells]


def _is_nan(value: object) -> bool:
    """A NaN cell: pandas' null in a column of objects."""
    import numpy as np

    return isinstance(value, (float, np.floating)) and value != value


def _text_value(value: object) -> object:
    """A cell of the text column as the client takes it: a numpy str as a str, anything
    else as it is (the client refuses what is not a str, rather than embedding its repr)."""
    import numpy as np

    return str(value) if isinstance(value, np.str_) else value


def _image_value(value: object) -> object:
    """A cell of the image column as the client takes it (numpy arrays become images).

    Raises:
        InputError: An array Pillow makes no image of (its shape and dtype named).
    """
    import numpy as np

    if isinstance(value, np.ndarray):
        from PIL import Image

        try:
            return Image.fromarray(value)
        except (TypeError, ValueError) as exc:
            raise InputError(
                f"not an image: an array of shape {value.shape} and dtype {value.dtype} ({exc})",
                field="image",
            ) from None
    if isinstance(value, np.str_):
        return str(value)
    if isinstance(value, np.bytes_):
        return bytes(value)
    return value


def _shown_image(value: object) -> object:
    """A cell of the image column for a message: as the client takes it, or as an array."""
    try:
        return _image_value(value)
    except InputError:
        return f"<array {getattr(value, 'shape', '?')} {getattr(value, 'dtype', '?')}>"


def _shown_item(data: bytes) -> str:
    """An encoded input for a message: its text and image, an inline image by its size."""
    item = orjson.loads(data)
    parts = []
    if "text" in item:
        text = item["text"]
        parts.append(f"text {text[:60] + '...' if len(text) > 60 else text!r}")
    if "image" in item:
        image = item["image"]
        if image.startswith("data:"):
            kind = image[len("data:image/") : image.index(";")]
            parts.append(f"image <{kind}, {len(image):,} bytes as a data URI>")
        else:
            parts.append(f"image {image[:100]!r}")
    return " and ".join(parts)


def _row_error(exc: BaseException) -> str:
    """A short, readable reason for the error column (no batch-level summary)."""
    if isinstance(exc, InputError):
        where = f"{exc.field}: " if exc.field else ""
        return f"InputError: {where}{exc.reason}"
    message = getattr(exc, "message", None)
    if isinstance(message, str):  # APIError: rebuilt from its fields
        status = getattr(exc, "status_code", None)
        code = getattr(exc, "code", None)
        text = f"HTTP {status}" + (f" {code}" if code else "") + f": {message}"
        request_id = getattr(exc, "request_id", None)
        return f"{type(exc).__name__}: {text}" + (
            f" (request_id={request_id})" if request_id else ""
        )
    text = str(exc.args[0]) if exc.args else str(exc)
    if getattr(exc, "partial", None) is not None and " [" in text:
        text = text[: text.rindex(" [")]
    return f"{type(exc).__name__}: {text}"


class Embedder:
    """Adds an embedding column to each batch: the callable class for ``map_batches``.

    Use it through :func:`embed_dataset`, or compose your own::

        limit = AccountRateLimit("adaptive")
        ds = ds.map_batches(
            Embedder,
            fn_constructor_kwargs={"image_column": "image", "rate_limit": limit},
            batch_format="pyarrow",
            concurrency=4,
        )

    Each instance holds one :class:`~opensearch_mm.MultiModalEmbeddingClient`. A batch
    may be a ``pyarrow.Table``, a dict of numpy arrays or a pandas ``DataFrame``; the
    result is a ``pyarrow.Table`` with every input column kept, in the same row order,
    plus ``output_column`` (``fixed_size_list<float32>[dimensions]``) and, with
    ``on_error="null"``, ``embedding_error`` (``string``, null where the row succeeded).

    Args:
        text_column: Column of texts (``None`` in a row: no text).
        image_column: Column of images: paths, URLs, data URIs, bytes (as
            ``read_binary_files`` gives) or ``HxW[xC]`` uint8 arrays (as ``read_images``
            gives). ``None`` in a row: no image.
        output_column: Name of the added vector column.
        on_error: ``"raise"`` fails the batch (and the job) on the first failed row;
            ``"null"`` gives a row that is a bad input, or whose request ran out of
            retries, a null vector and the reason in ``embedding_error``. Errors that no
            row can escape (wrong key, unknown model or workspace, exhausted quota)
            always raise.
        rate_limit: The shared account limit. Default: the cluster's coordinator for
            this endpoint, workspace, key and ``qps`` (:meth:`AccountRateLimit.for_account`);
            with ``qps=None`` there is none.
        **client_kwargs: :class:`~opensearch_mm.MultiModalEmbeddingClient` arguments
            (``api_key``, ``endpoint``, ``workspace``, ``model``, ``qps``,
            ``image_max_side``, ...); the client's environment variables fill the gaps
            in the process where the instance is created.

    Raises:
        ConfigurationError: No column given, a bad ``on_error``, or a client setting
            the client refuses.
    """

    def __init__(
        self,
        *,
        text_column: str | None = None,
        image_column: str | None = None,
        output_column: str = "embedding",
        on_error: OnError = "raise",
        rate_limit: AccountRateLimit | None = None,
        **client_kwargs: Any,
    ) -> None:
        _check_options(text_column, image_column, output_column, on_error)
        self.text_column = text_column
        self.image_column = image_column
        self.output_column = output_column
        self.on_error: OnError = on_error
        kwargs = dict(client_kwargs)
        qps = kwargs.get("qps", "adaptive")
        _check_rate_limit(rate_limit, qps)
        if kwargs.get("rate_limiter") is None and qps is not None:
            ray = _require_ray()
            if rate_limit is None and ray.is_initialized():
                key, endpoint, workspace = _account(kwargs)
                rate_limit = AccountRateLimit.for_account(
                    qps, endpoint=endpoint, workspace=workspace, api_key=key
                )
            if rate_limit is not None:
                kwargs["rate_limiter"] = rate_limit.limiter()
        self.client = MultiModalEmbeddingClient(**kwargs)

    def __call__(self, batch: Any) -> pa.Table:
        """Embed one batch; see the class docstring for the columns."""
        table = _as_table(batch)
        if self.output_column in table.column_names:
            raise ConfigurationError(
                f"output_column={self.output_column!r} already exists in the dataset; "
                "pick another name"
            )
        if self.on_error == "null" and ERROR_COLUMN in table.column_names:
            raise ConfigurationError(f"the dataset already has a column {ERROR_COLUMN!r}")
        n = table.num_rows
        texts = _column(table, self.text_column, "text_column") if self.text_column else None
        images = _column(table, self.image_column, "image_column") if self.image_column else None
        rows: list[int] = []
        items: list[WireItem] = []
        failures: dict[int, BaseException] = {}
        for i in range(n):
            text = None if texts is None else texts[i]
            image = None if images is None else images[i]
            try:
                item = self._encode(text, image, len(items))
            except InputError as exc:
                if self.on_error == "raise":
                    raise self._row_input_error(exc, text, image) from None
                failures[i] = exc
                continue
            rows.append(i)
            items.append(item)
        vectors = self._send(items, rows, failures)
        return self._finish(table, vectors, failures)

    # -- steps ---------------------------------------------------------------------------

    def _row_input_error(self, exc: InputError, text: object, image: object) -> InputError:
        """``exc`` restated for a dataset row: the column and the value, not a position
        in a batch (which means nothing to the caller)."""
        column = {"text": self.text_column, "image": self.image_column}.get(exc.field or "")
        row = Content(
            text=None if text is None else _text_value(text),  # type: ignore[arg-type]
            image=None if image is None else _shown_image(image),  # type: ignore[arg-type]
        )
        where = f"column {column!r}" if column else "a row"
        return InputError(
            f"{where}: {exc.reason} (row {row!r}); on_error='null' gives such rows a null "
            "vector and the reason instead",
            field=exc.field,
        )

    @staticmethod
    def _refused_rows(exc: InvalidParameterError, items: list[WireItem]) -> OpenSearchMMError:
        """``exc`` (``on_error='raise'``) restated by the rows the service refused, not
        their positions in a batch (which mean nothing to the caller)."""
        failed = exc.partial.failed_indices if exc.partial is not None else []
        shown = [_shown_item(items[j].data) for j in failed[:3]]
        more = f" and {len(failed) - 3} more" if len(failed) > 3 else ""
        return InvalidParameterError(
            f"the service refused the row {'; the row '.join(shown)}{more}: {exc.message}; "
            "on_error='null' gives such rows a null vector and the reason instead",
            status_code=exc.status_code,
            code=exc.code,
            request_id=exc.request_id,
        )

    def _encode(self, text: object, image: object, index: int) -> WireItem:
        if text is None and image is None:
            columns = [c for c in (self.text_column, self.image_column) if c]
            raise InputError(f"the row has no text and no image (null in {columns})")
        content = Content(
            text=None if text is None else _text_value(text),  # type: ignore[arg-type]
            image=None if image is None else _image_value(image),  # type: ignore[arg-type]
        )
        return encode_content(content, index, self.client.encode_options)

    def _run(
        self, items: list[WireItem]
    ) -> tuple[list[list[float] | None], dict[int, BaseException | None]]:
        """Vectors of ``items`` (indices 0..n-1) and the errors of the missing ones.

        A failure is raised unless rows may take a null and it is not fatal for all.
        """
        try:
            return list(self.client._run(items).embeddings), {}
        except OpenSearchMMError as exc:
            if self.on_error == "raise" or exc.partial is None or is_fatal_for_call(exc):
                raise
            return list(exc.partial.embeddings), dict(exc.partial.errors)

    def _send(
        self, items: list[WireItem], rows: list[int], failures: dict[int, BaseException]
    ) -> dict[int, list[float]]:
        out: dict[int, list[float]] = {}
        if not items:
            return out
        try:
            try:
                vectors, errors = self._run(items)
            except InvalidParameterError as exc:
                raise self._refused_rows(exc, items) from None
            # The client halves a request the service refuses until its bad inputs are
            # alone, but stops where every part is refused three levels running: inputs
            # refused together with others (one error for several) are sent alone.
            refused = [j for j, v in enumerate(vectors) if v is None]
            shared = Counter(id(errors.get(j)) for j in refused)
            for j in refused:
                why = errors.get(j)
                if isinstance(why, InvalidParameterError) and shared[id(why)] > 1:
                    alone, again = self._run([WireItem(0, items[j].data, items[j].has_image)])
                    vectors[j] = alone[0]
                    errors[j] = again.get(0)
        finally:
            # The answers reach the coordinator with the next lease, or within half a
            # second if this actor goes idle: not one remote call per batch.
            flush = getattr(self.client.rate_limiter, "flush_soon", None)
            if callable(flush):
                flush()
        for j, vector in enumerate(vectors):
            if vector is None:
                failures[rows[j]] = errors.get(j) or OpenSearchMMError(
                    "not sent: the batch stopped after another request failed"
                )
            else:
                out[rows[j]] = vector
        return out

    def _dimensions(self, vectors: dict[int, list[float]]) -> int:
        if vectors:
            return len(next(iter(vectors.values())))
        if self.client.dimensions is None:
            self.client.embed_texts(["dimension probe"])  # an unknown model: ask once
        dimensions = self.client.dimensions
        assert dimensions is not None
        return dimensions

    def _finish(
        self, table: pa.Table, vectors: dict[int, list[float]], failures: dict[int, BaseException]
    ) -> pa.Table:
        import numpy as np
        import pyarrow as pa

        n = table.num_rows
        dims = self._dimensions(vectors)
        flat: npt.NDArray[np.float32] = np.zeros((n, dims), dtype=np.float32)
        if vectors:
            flat[list(vectors)] = np.asarray(list(vectors.values()), dtype=np.float32)
        mask = None
        if failures:
            nulls = np.zeros(n, dtype=bool)
            nulls[list(failures)] = True
            mask = pa.array(nulls)
        column = pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), dims, mask=mask)
        table = table.append_column(self.output_column, column)
        if self.on_error == "null":
            reasons = [_row_error(failures[i]) if i in failures else None for i in range(n)]
            table = table.append_column(ERROR_COLUMN, pa.array(reasons, type=pa.string()))
        return table


# -- the one-call API ---------------------------------------------------------------------


def _check_options(
    text_column: str | None, image_column: str | None, output_column: str, on_error: str
) -> None:
    if text_column is None and image_column is None:
        raise ConfigurationError("give text_column=..., image_column=... or both")
    if on_error not in ("raise", "null"):
        raise ConfigurationError(f"on_error must be 'raise' or 'null', got {on_error!r}")
    if not output_column or output_column in (text_column, image_column, ERROR_COLUMN):
        raise ConfigurationError(f"output_column={output_column!r} would overwrite a column")


def _account(kwargs: Mapping[str, Any]) -> tuple[str, str, str]:
    """(api key, endpoint, workspace) from the arguments, else the environment."""
    raw = kwargs.get("api_key")
    getter = getattr(raw, "get_secret_value", None)
    key = (getter() if callable(getter) else raw) or os.environ.get(ENV_API_KEY) or ""
    endpoint = kwargs.get("endpoint") or os.environ.get(ENV_ENDPOINT) or ""
    workspace = kwargs.get("workspace") or os.environ.get(ENV_WORKSPACE) or "default"
    return str(key), str(endpoint), str(workspace)


def _check_rate_limit(rate_limit: object, qps: object) -> None:
    """Refuse a ``rate_limit`` that is no :class:`AccountRateLimit`, or one that
    ``qps=None`` (no pacing) would leave unused."""
    if rate_limit is None:
        return
    if not isinstance(rate_limit, AccountRateLimit):
        raise ConfigurationError(
            f"rate_limit must be an AccountRateLimit, got {type(rate_limit).__name__}: "
            "for a fixed rate pass qps=..., to share one pass AccountRateLimit(...)"
        )
    if qps is None:
        raise ConfigurationError(
            "rate_limit= paces the account and qps=None turns pacing off: pass one of them"
        )


def _driver_kwargs(client_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Client arguments for the actors: the driver's environment resolved (an actor on
    another node does not see it), the key wrapped so no repr shows it, and the whole
    set checked once here so a mistake fails now rather than in every actor."""
    kwargs = dict(client_kwargs)
    for name in ("http_client", "http_async_client", "async_http_client", "rate_limiter"):
        if kwargs.get(name) is not None:
            hint = (
                "pass qps=... or rate_limit=AccountRateLimit(...)"
                if name == "rate_limiter"
                else "each actor makes its own connection pool"
            )
            raise ConfigurationError(f"{name}= cannot be shipped to Ray actors; {hint}")
    key, endpoint, workspace = _account(kwargs)
    if key:
        kwargs["api_key"] = _Secret(key)
    if endpoint:
        kwargs["endpoint"] = endpoint
    kwargs["workspace"] = workspace
    _check_qps(kwargs.get("qps", "adaptive"))  # (the check below leaves the rate out)
    MultiModalEmbeddingClient(**{**kwargs, "qps": None}).close()
    return kwargs


def embed_dataset(
    ds: ray.data.Dataset,
    *,
    text_column: str | None = None,
    image_column: str | None = None,
    output_column: str = "embedding",
    concurrency: int | tuple[int, int] = 2,
    batch_size: int = 256,
    on_error: OnError = "raise",
    rate_limit: AccountRateLimit | None = None,
    num_cpus: float | None = None,
    **client_kwargs: Any,
) -> ray.data.Dataset:
    """Add an embedding column to every row of ``ds`` (lazily, like any Ray transform).

    Every input row comes out exactly once with its columns kept (Ray may reorder rows).
    Actors that die are restarted and their batches redone, so a killed worker loses
    and duplicates no row. All actors share the account's ``qps``.

    Args:
        ds: The dataset.
        text_column: Column of texts; a null means the row has no text.
        image_column: Column of images (paths, URLs, data URIs, bytes, or numpy arrays
            as ``ray.data.read_images`` gives); a null means no image. A row may fill
            both columns, for the models that combine text and image.
        output_column: The added vector column: ``fixed_size_list<float32>[dimensions]``,
            stored compactly by ``write_parquet``.
        concurrency: Number of embedding actors (or a ``(min, max)`` autoscaling range).
        batch_size: Rows per batch handed to an actor (sent as requests of <= 32 inputs).
        on_error: ``"raise"`` fails the job on the first failed row; ``"null"`` gives a
            row that is a bad input or ran out of retries a null vector and a reason in
            an ``embedding_error`` column. Authentication, unknown model/workspace and
            exhausted quota always raise.
        rate_limit: Share this :class:`AccountRateLimit` (default: the cluster's
            coordinator for this account and ``qps``; none with ``qps=None``).
        num_cpus: CPUs reserved per actor (Ray's default: 1). Encoding and downscaling
            images is the CPU work here; the requests themselves need little.
        **client_kwargs: :class:`~opensearch_mm.MultiModalEmbeddingClient` arguments:
            ``api_key``, ``endpoint``, ``workspace``, ``model``, ``qps`` (the whole
            account's, ``"adaptive"`` by default), ``image_max_side``, ``max_retries``,
            ... Environment variables are read here, on the driver, as the client
            reads them.

    Returns:
        The lazy transformed dataset.

    Raises:
        ConfigurationError: Ray missing, no column, a bad option, or client settings the
            client refuses (missing key or endpoint, ...), before anything runs.
    """
    _check_options(text_column, image_column, output_column, on_error)
    kwargs = _driver_kwargs(client_kwargs)
    qps = kwargs.get("qps", "adaptive")
    _check_rate_limit(rate_limit, qps)
    if rate_limit is None and qps is not None:
        key, endpoint, workspace = _account(kwargs)
        rate_limit = AccountRateLimit.for_account(
            qps, endpoint=endpoint, workspace=workspace, api_key=key
        )
    ray = _require_ray()
    size = (
        {"min_size": concurrency[0], "max_size": concurrency[1]}
        if isinstance(concurrency, tuple)
        else {"size": concurrency}
    )
    extra: dict[str, Any] = {}
    if "udf_modifying_row_count" in inspect.signature(ds.map_batches).parameters:
        extra["udf_modifying_row_count"] = False  # one row out per row in
    if "enable_true_multi_threading" in inspect.signature(ray.data.ActorPoolStrategy).parameters:
        # Two batches at once in each actor (Ray >= 2.47): the requests of the next batch
        # go out while the last ones of a batch are in flight, where one batch at a time
        # would leave its share of the account's permits and slots idle at each batch's end.
        size.update(max_concurrent_calls_per_actor=2, enable_true_multi_threading=True)
    # Ray Data restarts a dead actor and redoes its batch (max_restarts and
    # max_task_retries default to -1 for actor pools): no row is lost or doubled.
    return ds.map_batches(
        Embedder,
        fn_constructor_kwargs={
            "text_column": text_column,
            "image_column": image_column,
            "output_column": output_column,
            "on_error": on_error,
            "rate_limit": rate_limit,
            **kwargs,
        },
        batch_size=batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(**size),
        num_cpus=num_cpus,
        **extra,
    )
