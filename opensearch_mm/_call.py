"""The pure bookkeeping of one multi-request call, shared by both drivers.

It collects the outcome of each batch, checks that vectors agree in length across
batches, and ends either in an :class:`EmbeddingResult` in input order or in the first
error with a :class:`PartialResult` attached (nothing lost, nothing reordered).

:class:`CallState` serves ``embed``/``aembed`` (every input known up front);
:class:`StreamState` serves ``embed_iter``/``aembed_iter``, which yield in order and stop
at the first batch that fails for good.
"""

from __future__ import annotations

from .batching import Batch
from .errors import APIResponseError, OpenSearchMMError
from .protocol import BatchResponse
from .results import EmbeddingResult, PartialResult, Usage
from .retry import is_fatal_for_call

__all__ = ["CallState", "StreamState", "attach_partial"]


def attach_partial(error: BaseException, partial: PartialResult, summary: str) -> None:
    """Set ``error.partial`` and append ``summary`` to its message (once)."""
    if not isinstance(error, OpenSearchMMError):
        return
    first_time = error.partial is None
    error.partial = partial
    if first_time and error.args and isinstance(error.args[0], str):
        error.args = (f"{error.args[0]} [{summary}]", *error.args[1:])


def _dimension_error(width: int, expected: int, outcome: BatchResponse) -> APIResponseError:
    return APIResponseError(
        f"vectors of {width} numbers where the call expects {expected}",
        request_id=outcome.request_id,
    )


class CallState:
    """Outcomes of the batches of one call over ``total`` inputs."""

    def __init__(self, total: int, *, model: str, dimensions: int | None) -> None:
        self.total = total
        self.model = model
        self.dimensions = dimensions
        self.vectors: list[list[float] | None] = [None] * total
        self.usage = Usage()
        self.request_ids: list[str] = []
        self.errors: dict[int, BaseException | None] = {}
        self.first_error: tuple[int, BaseException] | None = None
        self.stopped = False

    def record(self, batch: Batch, outcome: BatchResponse | BaseException) -> None:
        """Store one batch's answer or error."""
        if isinstance(outcome, BaseException):
            self._fail(batch, outcome)
            return
        width = len(outcome.embeddings[0]) if outcome.embeddings else None
        if self.dimensions is None:
            self.dimensions = width
        elif width is not None and width != self.dimensions:
            self._fail(batch, _dimension_error(width, self.dimensions, outcome))
            return
        for item, vector in zip(batch.items, outcome.embeddings, strict=True):
            self.vectors[item.index] = vector
        self.usage = self.usage + outcome.usage
        if outcome.request_id:
            self.request_ids.append(outcome.request_id)

    def _fail(self, batch: Batch, exc: BaseException) -> None:
        for item in batch.items:
            self.errors[item.index] = exc
        first = batch.items[0].index
        if self.first_error is None or first < self.first_error[0]:
            self.first_error = (first, exc)
        if is_fatal_for_call(exc):
            self.stopped = True

    def finish(self) -> EmbeddingResult:
        """The result, or the first error (by input position) with ``partial`` attached."""
        if self.first_error is None and all(v is not None for v in self.vectors):
            return EmbeddingResult(
                self.vectors,  # type: ignore[arg-type]
                self.usage,
                self.request_ids,
                self.model,
            )
        failed = [i for i, v in enumerate(self.vectors) if v is None]
        partial = PartialResult(
            embeddings=self.vectors,
            failed_indices=failed,
            errors={i: self.errors.get(i) for i in failed},
            usage=self.usage,
            request_ids=self.request_ids,
        )
        if self.first_error is None:  # pragma: no cover - a batch was never recorded
            error: BaseException = APIResponseError(f"{len(failed)} inputs got no vector")
        else:
            error = self.first_error[1]
        attach_partial(
            error,
            partial,
            f"{self.total - len(failed):,} of {self.total:,} inputs embedded, "
            f"{len(failed):,} failed (first: input {failed[0]}); vectors and failed "
            "indices are in err.partial",
        )
        raise error


class StreamState:
    """Bookkeeping of a streaming call.

    Batches arrive in input order. Until one fails, :meth:`accept` hands back its vectors
    to yield. The first failure stops the stream (``stopped``: no new request, no new
    input read); the batches already read after it are still collected (the requests in
    flight finish, the queued ones are not sent), so :meth:`finish` can raise the error
    with a :class:`PartialResult` whose ``offset`` is the first input not yielded.
    """

    def __init__(self, *, dimensions: int | None) -> None:
        self.dimensions = dimensions
        self.stopped = False
        self.yielded = 0
        self.usage = Usage()
        self.request_ids: list[str] = []
        self.error: BaseException | None = None
        self._tail: dict[int, list[float]] = {}
        self._tail_errors: dict[int, BaseException | None] = {}
        self._end = 0

    def _check(self, batch: Batch, outcome: BatchResponse) -> BaseException | None:
        width = len(outcome.embeddings[0]) if outcome.embeddings else None
        if self.dimensions is None:
            self.dimensions = width
        elif width is not None and width != self.dimensions:
            return _dimension_error(width, self.dimensions, outcome)
        self.usage = self.usage + outcome.usage
        if outcome.request_id:
            self.request_ids.append(outcome.request_id)
        return None

    def accept(
        self, batch: Batch, outcome: BatchResponse | BaseException | None
    ) -> list[list[float]] | None:
        """The vectors to yield for ``batch``, or ``None`` once the stream has failed.

        ``outcome`` is ``None`` for a batch that was never sent.
        """
        self._end = max(self._end, batch.items[-1].index + 1)
        if isinstance(outcome, BatchResponse):
            problem = self._check(batch, outcome)
            if problem is None and self.error is None:
                self.yielded = batch.items[-1].index + 1
                return outcome.embeddings
            if problem is None:
                for item, vector in zip(batch.items, outcome.embeddings, strict=True):
                    self._tail[item.index] = vector
                return None
            outcome = problem
        if self.error is None:
            self.error = (
                outcome
                if outcome is not None
                else APIResponseError(f"input {batch.items[0].index} was never sent")
            )
            self.stopped = True
        for item in batch.items:
            self._tail_errors[item.index] = outcome
        return None

    def finish(self) -> None:
        """Raise the stream's error, if any, with ``partial`` attached."""
        error = self.error
        if error is None:
            return
        start = self.yielded
        embeddings = [self._tail.get(i) for i in range(start, self._end)]
        failed = [i for i in range(start, self._end) if i not in self._tail]
        partial = PartialResult(
            embeddings=embeddings,
            failed_indices=failed,
            errors={i: self._tail_errors.get(i) for i in failed},
            usage=self.usage,
            request_ids=self.request_ids,
            offset=start,
        )
        attach_partial(
            error,
            partial,
            f"stream stopped at input {start}: inputs before it were yielded; "
            f"{len(self._tail):,} later vectors and {len(failed):,} failed inputs are in "
            "err.partial",
        )
        raise error
