"""The pure bookkeeping of one multi-request call, shared by both drivers.

It collects the outcome of each batch, checks that vectors agree in length across
batches, and ends either in an :class:`EmbeddingResult` in input order or in the first
error with a :class:`PartialResult` attached (nothing lost, nothing reordered).

:class:`CallState` serves ``embed``/``aembed`` (every input known up front);
:class:`StreamState` serves ``embed_iter``/``aembed_iter``, which yield in order and stop
at the first batch that fails for good. Both end once: after :meth:`CallState.finish`
(or :meth:`StreamState.finish`) they refuse further outcomes.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Generator, Iterator
from dataclasses import dataclass

from ._request import NOT_SENT, NotSent, describe
from .batching import Batch
from .errors import APIResponseError, InvalidParameterError, OpenSearchMMError, RateLimitError
from .inputs import WireItem
from .protocol import BatchResponse
from .results import EmbeddingResult, PartialResult, Usage
from .retry import is_fatal_for_call

logger = logging.getLogger("opensearch_mm")

__all__ = [
    "NOT_SENT",
    "CallControl",
    "CallState",
    "Deduplicated",
    "NotSent",
    "Outcome",
    "Split",
    "StreamState",
    "answers",
    "attach_partial",
    "halving",
    "split_first",
]


@dataclass(frozen=True)
class Split:
    """The outcome of a batch the service refused as invalid, sent again in parts to
    tell its good inputs from the bad: each part with its own outcome, in input order."""

    parts: tuple[tuple[Batch, Outcome], ...]

    def responses(self) -> Iterator[BatchResponse]:
        """The answers of the parts that were answered."""
        for _, outcome in self.parts:
            yield from answers(outcome)


Outcome = BatchResponse | BaseException | NotSent | Split
"""What became of one batch: its checked answer, the error it ended in, ``NOT_SENT``, or
its parts' outcomes (:class:`Split`)."""


def split_first(batch: Batch, outcome: Outcome) -> bool:
    """Whether to send ``batch`` again in halves: the service refused it as invalid, and
    one bad input (a URL it could not download, an image it could not read) must not
    cost the other inputs of its request their vectors."""
    return isinstance(outcome, InvalidParameterError) and len(batch) > 1


_FRUITLESS_LEVELS = 3  # halving stops after three levels in a row with every part refused:
# a request refused whatever it holds, or inputs nearly all bad, cost 1 + 2 + 4 + 8 = 15
# requests, not 63 for 32 inputs; as long as a bad input leaves any eighth clean, each bad
# one is found alone.


def _refused(outcome: Outcome) -> bool:
    return isinstance(outcome, InvalidParameterError)


class _Part:
    """One part of a batch being halved: its outcome, or its own parts'."""

    def __init__(self, batch: Batch) -> None:
        self.batch = batch
        self.outcome: Outcome = NOT_SENT
        self.parts: list[_Part] = []

    def result(self) -> Outcome:
        if not self.parts:
            return self.outcome
        return Split(tuple((part.batch, part.result()) for part in self.parts))


def halving(batch: Batch) -> Generator[Batch, Outcome, Split]:
    """Send ``batch``, refused as invalid, again in halves, level by level, each part
    refused halved again until its bad inputs are alone (see ``_FRUITLESS_LEVELS``).
    Yields each part to send and takes its outcome; returns the parts' outcomes. (Sans
    I/O: both drivers run it.)"""
    whole = _Part(batch)
    splitting, fruitless = [whole], 0
    while splitting:
        level: list[_Part] = []
        for part in splitting:
            part.parts = [_Part(half) for half in part.batch.halves()]
            level += part.parts
        for part in level:
            part.outcome = yield part.batch
        fruitless = fruitless + 1 if all(_refused(p.outcome) for p in level) else 0
        if fruitless >= _FRUITLESS_LEVELS:
            break
        splitting = [p for p in level if _refused(p.outcome) and len(p.batch) > 1]
    result = whole.result()
    assert isinstance(result, Split)
    return result


def answers(outcome: Outcome) -> Iterator[BatchResponse]:
    """The service's answers in ``outcome`` (one, none, or a split batch's parts')."""
    if isinstance(outcome, BatchResponse):
        yield outcome
    elif isinstance(outcome, Split):
        yield from outcome.responses()


class Deduplicated:
    """The distinct inputs of one call, and which inputs repeat an earlier one.

    Two inputs are the same when their wire encoding is byte for byte the same (the same
    text, the same image bytes, or the same text+image pair): the service would answer
    both with the same vector, so only the first is sent and its vector is copied.
    """

    def __init__(self, items: list[WireItem]) -> None:
        first: dict[bytes, int] = {}
        self.total = len(items)
        self.unique: list[WireItem] = []
        self.copies: dict[int, int] = {}  # input index -> index of its first occurrence
        for item in items:
            original = first.setdefault(item.data, item.index)
            if original == item.index:
                self.unique.append(item)
            else:
                self.copies[item.index] = original


_SHOWN_SPANS = 8  # runs of inputs named in a message; a request holds at most 32 inputs


def attach_partial(error: BaseException, partial: PartialResult, summary: str) -> None:
    """Set ``error.partial`` and append ``summary`` to its message (once)."""
    if not isinstance(error, OpenSearchMMError):
        return
    first_time = error.partial is None
    error.partial = partial
    if first_time and error.args and isinstance(error.args[0], str):
        error.args = (f"{error.args[0]} [{summary}]", *error.args[1:])
        error.partial_summary = summary


def refused_request(error: BaseException, batch: Batch | None) -> str:
    """Which inputs of the call a request held, where its error names a place in the
    request: the service names an input so when it refuses one as invalid, and a wrong
    answer is found at one. After batching (and inputs sent once for their repeats) that
    is not its place in the call. Empty for other errors."""
    if batch is None:
        return ""
    position = getattr(error, "position", None)
    if isinstance(error, APIResponseError) and position is not None:
        if 0 <= position < len(batch.items):
            return f"; request position {position} is input {batch.items[position].index}"
        return ""
    if not isinstance(error, InvalidParameterError):
        return ""
    spans: list[list[int]] = []
    for index in (item.index for item in batch.items):
        if spans and index == spans[-1][1] + 1:
            spans[-1][1] = index
        else:
            spans.append([index, index])
    shown = [str(a) if a == b else f"{a}-{b}" for a, b in spans[:_SHOWN_SPANS]]
    more = ", ..." if len(spans) > _SHOWN_SPANS else ""
    return (
        f"; the refused request held inputs {', '.join(shown)}{more} (in that order: "
        "a position the service names counts within the request)"
    )


def check_width(expected: int | None, outcome: BatchResponse) -> APIResponseError | None:
    """The error if ``outcome``'s vectors are not ``expected`` numbers long."""
    width = len(outcome.embeddings[0]) if outcome.embeddings else None
    if expected is None or width is None or width == expected:
        return None
    return APIResponseError(
        f"vectors of {width} numbers where the call expects {expected}",
        request_id=outcome.request_id,
    )


class CallControl:
    """Whether a call still starts requests: the one place that decides "this error is
    fatal, so stop the call" (bad key, unknown model or workspace, quota gone).

    Drivers read :attr:`stopped` before each send, while a request waits for its slot
    and before a retry, and report a request's final error through :meth:`note` as soon
    as it happens, before its result comes up in order.
    """

    dimensions: int | None  # vector length, once known: checked on every answer

    def __init__(self) -> None:
        self._stop = threading.Event()  # (threads waiting for a slot wake when it is set)
        self.finished = False
        # The fatal error that stopped the call: what the call raises (the requests it
        # cut short end in their own last failures, a 429 being retried, say).
        self.cause: BaseException | None = None

    @property
    def stopped(self) -> bool:
        """Whether the call starts no new request (nor retries one)."""
        return self._stop.is_set()

    def wait(self, seconds: float) -> bool:
        """Block for ``seconds`` or until the call stops; whether it stopped."""
        return self._stop.wait(seconds)

    def note(self, error: BaseException) -> None:
        """A request of this call failed for good; stop the call if it is fatal."""
        if not is_fatal_for_call(error):
            return
        if not self.stopped and isinstance(error, RateLimitError) and error.account_shut:
            # (Every request in flight then ends in the same refusal: said once a call.)
            logger.warning(
                "The account let no request through while a request was retried (%s): "
                "no new request of this call is started",
                describe(error),
            )
        if self.cause is None:
            self.cause = error
        self._stop.set()

    def stop(self) -> None:
        """Send nothing more (the consumer went away, or the call failed)."""
        self._stop.set()

    def _guard(self) -> None:
        if self.finished:
            raise RuntimeError(f"{type(self).__name__} already finished")

    def _learn_width(self, outcome: BatchResponse) -> APIResponseError | None:
        problem = check_width(self.dimensions, outcome)
        if problem is None and self.dimensions is None and outcome.embeddings:
            self.dimensions = len(outcome.embeddings[0])
        return problem


class CallState(CallControl):
    """Outcomes of the batches of one call over ``total`` inputs."""

    def __init__(
        self, total: int, model: str, dimensions: int | None, copies: dict[int, int] | None = None
    ) -> None:
        super().__init__()
        self.total = total
        self.copies = copies or {}
        self._repeats = Counter(self.copies.values())  # original index -> its repeats
        self.model = model
        self.dimensions = dimensions
        self.vectors: list[list[float] | None] = [None] * total
        self.usage = Usage()
        self.request_ids: list[str] = []
        self.errors: dict[int, BaseException | None] = {}
        self.first_error: tuple[int, BaseException, Batch] | None = None

    def record(self, batch: Batch, outcome: Outcome) -> int:
        """Store one batch's answer or error (nothing for a batch ``NOT_SENT``); return
        how many of the call's inputs it embedded (repeats of its inputs included)."""
        self._guard()
        if outcome is NOT_SENT:
            return 0
        if isinstance(outcome, Split):
            return sum(self.record(part, result) for part, result in outcome.parts)
        if isinstance(outcome, BaseException):
            self._fail(batch, outcome)
            return 0
        problem = self._learn_width(outcome)
        if problem is not None:
            self._fail(batch, problem)
            return 0
        for item, vector in zip(batch.items, outcome.embeddings, strict=True):
            self.vectors[item.index] = vector
        self.usage = self.usage + outcome.usage
        if outcome.request_id:
            self.request_ids.append(outcome.request_id)
        return len(batch.items) + sum(self._repeats[item.index] for item in batch.items)

    def _fail(self, batch: Batch, exc: BaseException) -> None:
        for item in batch.items:
            self.errors[item.index] = exc
        first = batch.items[0].index
        if self.first_error is None or first < self.first_error[0]:
            self.first_error = (first, exc, batch)
        self.note(exc)

    def finish(self) -> EmbeddingResult:
        """The result, or the error that stopped the call (else the first failed input's)
        with ``partial`` attached.

        Raises:
            BaseException: The first failed batch's error (by input position), with
                ``err.partial`` set. The state is finished either way.
        """
        self._guard()
        self.finished = True
        for index, original in self.copies.items():
            vector = self.vectors[original]
            if vector is not None:
                self.vectors[index] = list(vector)  # its own list: callers may mutate one
            elif original in self.errors:
                self.errors[index] = self.errors[original]
        if self.first_error is None and all(v is not None for v in self.vectors):
            return EmbeddingResult(
                self.vectors,  # type: ignore[arg-type]
                self.usage,
                self.request_ids,
                self.model,
                reused=len(self.copies),
            )
        failed = [i for i, v in enumerate(self.vectors) if v is None]
        partial = PartialResult(
            embeddings=self.vectors,
            failed_indices=failed,
            errors={i: self.errors.get(i) for i in failed},
            usage=self.usage,
            request_ids=self.request_ids,
        )
        batch: Batch | None = None
        if self.first_error is None:  # pragma: no cover - a batch was never recorded
            error: BaseException = APIResponseError(f"{len(failed)} inputs got no vector")
        else:
            _, error, batch = self.first_error
        if self.cause is not None:
            error, batch = self.cause, None
        attach_partial(
            error,
            partial,
            f"{self.total - len(failed):,} of {self.total:,} inputs embedded, "
            f"{len(failed):,} failed (first: input {failed[0]}); vectors and failed "
            f"indices are in err.partial{refused_request(error, batch)}",
        )
        raise error


class StreamState(CallControl):
    """Bookkeeping of a streaming call.

    Batches arrive in input order. Until one fails, :meth:`accept` hands back its vectors
    to yield. The first failure stops the stream (``stopped``: no new request, no new
    input read); the batches already read after it are still collected (the requests in
    flight finish, the queued ones are not sent), so :meth:`finish` can raise the error
    with a :class:`PartialResult` whose ``offset`` is the first input not yielded.
    """

    def __init__(self, *, dimensions: int | None) -> None:
        super().__init__()
        self.dimensions = dimensions
        self.yielded = 0
        self.usage = Usage()
        self.request_ids: list[str] = []
        self.error: BaseException | None = None
        self._error_batch: Batch | None = None
        self._tail: dict[int, list[float]] = {}
        self._tail_errors: dict[int, BaseException | None] = {}
        self._end = 0

    def _check(self, outcome: BatchResponse) -> BaseException | None:
        problem = self._learn_width(outcome)
        if problem is not None:
            return problem
        self.usage = self.usage + outcome.usage
        if outcome.request_id:
            self.request_ids.append(outcome.request_id)
        return None

    def accept(self, batch: Batch, outcome: Outcome) -> list[list[float]] | None:
        """The vectors to yield for ``batch``, or ``None`` once the stream has failed (a
        split batch's parts before its first failed one are yielded)."""
        self._guard()
        if isinstance(outcome, Split):
            vectors: list[list[float]] = []
            for part, result in outcome.parts:
                got = self.accept(part, result)
                if got is not None:
                    vectors += got
            return vectors or None
        self._end = max(self._end, batch.items[-1].index + 1)
        if isinstance(outcome, BatchResponse):
            problem = self._check(outcome)
            if problem is None and self.error is None:
                self.yielded = batch.items[-1].index + 1
                return outcome.embeddings
            if problem is None:
                for item, vector in zip(batch.items, outcome.embeddings, strict=True):
                    self._tail[item.index] = vector
                return None
            outcome = problem
        error = None if outcome is NOT_SENT else outcome
        if self.error is None:
            self.error = error or APIResponseError(f"input {batch.items[0].index} was never sent")
            self._error_batch = batch
            self.stop()
        for item in batch.items:
            self._tail_errors[item.index] = error
        return None

    def finish(self) -> None:
        """Raise the stream's error, if any, with ``partial`` attached.

        Raises:
            BaseException: The error that stopped the stream, with ``err.partial`` set
                (``partial.offset`` is the first input not yielded).
        """
        self._guard()
        self.finished = True
        error = self.cause or self.error  # (the stop's cause, not a request it cut short)
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
            f"err.partial{refused_request(error, self._error_batch)}",
        )
        raise error
