"""The pure bookkeeping of one multi-request call, shared by both drivers.

It collects the outcome of each batch, checks that vectors agree in length across
batches, and ends either in an :class:`EmbeddingResult` in input order or in the first
error with a :class:`PartialResult` attached (nothing lost, nothing reordered).
"""

from __future__ import annotations

from .batching import Batch
from .errors import APIResponseError, OpenSearchMMError
from .protocol import BatchResponse
from .results import EmbeddingResult, PartialResult, Usage
from .retry import is_fatal_for_call

__all__ = ["CallState"]


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
            self._fail(
                batch,
                APIResponseError(
                    f"vectors of {width} numbers where the call expects {self.dimensions}",
                    request_id=outcome.request_id,
                ),
            )
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
        if isinstance(error, OpenSearchMMError):
            error.partial = partial
            raise error
        raise error
