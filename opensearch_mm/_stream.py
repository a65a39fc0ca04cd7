"""The bookkeeping of one ``embed_iter``/``aembed_iter`` call, and its optional extras.

:class:`StreamRun` is shared by the sync and async streams: it encodes inputs lazily,
feeds each batch's outcome to the pure :class:`~opensearch_mm._call.StreamState`, turns
vectors into numpy arrays and moves the progress bar. numpy and tqdm are optional
dependencies, loaded only when asked for.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from typing import Any

from ._async import as_async_iter
from ._call import Outcome, StreamState, answers
from .batching import Batch
from .errors import ConfigurationError, InputError
from .inputs import EncodeOptions, WireItem, encode_content
from .results import StreamStats

__all__ = ["StreamRun", "numpy_converter", "progress_bar"]


class StreamRun:
    """One streaming call, for both drivers.

    Inputs are encoded lazily: an invalid one ends the stream and is raised by
    :meth:`end` after the batches before it have been delivered; nothing more is read
    once the state stops.
    """

    def __init__(
        self,
        options: EncodeOptions,
        inputs: object,
        dimensions: int | None,
        *,
        progress: bool,
        as_numpy: bool,
        stats: StreamStats | None = None,
    ) -> None:
        self.options = options
        self.stats = stats
        self.state = StreamState(dimensions=dimensions)
        self.failure: InputError | None = None
        self.convert = numpy_converter() if as_numpy else None
        self.bar = progress_bar(inputs) if progress else None

    def encode(self, value: object, index: int) -> WireItem | None:
        """The wire item of input ``index``, or ``None`` if it is invalid (the stream
        then ends and the error is raised by :meth:`end`)."""
        try:
            return encode_content(value, index, self.options)
        except InputError as exc:
            self.failure = exc
            return None

    def items(self, inputs: Iterable[object]) -> Iterator[WireItem]:
        """Encode ``inputs`` lazily, until an invalid one or until the stream stops."""
        for i, value in enumerate(inputs):
            item = self.encode(value, i)
            if item is None:
                return
            yield item
            if self.state.stopped:  # read nothing more from the caller's iterator
                return

    async def aitems(
        self, inputs: Iterable[object] | AsyncIterable[object]
    ) -> AsyncIterator[WireItem]:
        """:meth:`items` over a sync or an async iterable."""
        i = 0
        async for value in as_async_iter(inputs):
            item = self.encode(value, i)
            if item is None:
                return
            yield item
            if self.state.stopped:
                return
            i += 1

    def deliver(self, batch: Batch, outcome: Outcome) -> list[Any]:
        """The vectors to yield for ``batch`` (none once the stream has failed)."""
        vectors = self.state.accept(batch, outcome)
        if self.stats is not None:
            for answer in answers(outcome):
                self.stats.add(answer.usage)
        if vectors is None:
            return []
        if self.convert is not None:
            vectors = self.convert(vectors)
        if self.bar is not None:
            self.bar.update(len(vectors))
        return vectors

    def close(self) -> None:
        """Stop sending (also when the consumer stops early) and close the bar."""
        self.state.stop()
        if self.bar is not None:
            self.bar.close()

    def end(self) -> None:
        """After the last batch: raise the stream's error, else a deferred input error."""
        self.state.finish()
        if self.failure is not None:
            raise self.failure


def numpy_converter() -> Callable[[list[list[float]]], list[Any]]:
    """A function turning vectors into float32 arrays (needs the ``numpy`` extra)."""
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - depends on the install
        raise ConfigurationError(
            "as_numpy=True needs numpy: pip install 'opensearch-mm[numpy]'"
        ) from None

    def convert(vectors: list[list[float]]) -> list[Any]:
        return list(np.asarray(vectors, dtype=np.float32))

    return convert


def progress_bar(inputs: object, option: str = "progress=True") -> Any:
    """A tqdm bar sized to ``inputs`` when it has a length (needs the ``progress`` extra;
    without it, a ``ConfigurationError`` naming ``option``)."""
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - depends on the install
        raise ConfigurationError(
            f"{option} needs tqdm: pip install 'opensearch-mm[progress]'"
        ) from None
    total = len(inputs) if hasattr(inputs, "__len__") else None
    return tqdm(total=total, unit="input", desc="embedding")
