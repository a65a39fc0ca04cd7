"""Packing encoded inputs into requests, in input order.

A request holds at most ``max_inputs`` inputs and its body at most ``max_body_bytes``
bytes. Packing is greedy and never reorders: a batch closes as soon as the next input
would break either limit.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass

from .inputs import WireItem

__all__ = [
    "BODY_OVERHEAD",
    "MAX_BODY_BYTES",
    "MAX_INPUTS_PER_REQUEST",
    "Batch",
    "Packer",
    "apack",
    "body_size",
    "pack",
]

MAX_INPUTS_PER_REQUEST = 32
# The API page says 8 MB; 8,000,000 bytes is under both readings (10**6 and 2**20).
MAX_BODY_BYTES = 8_000_000
_PREFIX = b'{"input":['
_SUFFIX = b"]}"
BODY_OVERHEAD = len(_PREFIX) + len(_SUFFIX)


@dataclass(frozen=True)
class Batch:
    """Inputs sent in one request; ``items[k].index`` is the input's position in the call."""

    items: tuple[WireItem, ...]

    @property
    def indices(self) -> list[int]:
        return [item.index for item in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def answered(self) -> Batch:
        """This batch once its request is answered: the inputs' positions, not their data
        (an image batch's encoded images are megabytes no longer needed)."""
        return Batch(tuple(WireItem(item.index, b"", item.has_image) for item in self.items))

    def halves(self) -> tuple[Batch, Batch]:
        """The first and second half of this batch's inputs (it holds two or more)."""
        middle = len(self.items) // 2
        return Batch(self.items[:middle]), Batch(self.items[middle:])

    def body(self) -> bytes:
        """The request body: ``{"input":[...]}`` joined from the pre-encoded items."""
        return _PREFIX + b",".join(item.data for item in self.items) + _SUFFIX


def body_size(items: Iterable[WireItem]) -> int:
    """The size in bytes of the body that would carry ``items``."""
    sizes = [item.size for item in items]
    return BODY_OVERHEAD + sum(sizes) + max(len(sizes) - 1, 0)


class Packer:
    """Incremental packing: feed items with :meth:`add`, collect the rest with :meth:`flush`."""

    def __init__(
        self,
        *,
        max_inputs: int = MAX_INPUTS_PER_REQUEST,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        if not 1 <= max_inputs <= MAX_INPUTS_PER_REQUEST:
            raise ValueError(f"max_inputs must be between 1 and {MAX_INPUTS_PER_REQUEST}")
        self.max_inputs = max_inputs
        self.max_body_bytes = max_body_bytes
        self._current: list[WireItem] = []
        self._size = BODY_OVERHEAD

    def add(self, item: WireItem) -> Batch | None:
        """Add one item; return the batch it closed, if any."""
        if BODY_OVERHEAD + item.size > self.max_body_bytes:
            # The encoder refuses such inputs first; this guards the invariant.
            raise ValueError(f"input {item.index} cannot fit in one request")
        closed = None
        extra = item.size + (1 if self._current else 0)
        if self._current and (
            len(self._current) >= self.max_inputs or self._size + extra > self.max_body_bytes
        ):
            closed = self.flush()
            extra = item.size
        self._current.append(item)
        self._size += extra
        return closed

    def flush(self) -> Batch | None:
        """The open batch (if any), closing it."""
        if not self._current:
            return None
        batch = Batch(tuple(self._current))
        self._current, self._size = [], BODY_OVERHEAD
        return batch


def pack(
    items: Iterable[WireItem],
    *,
    max_inputs: int = MAX_INPUTS_PER_REQUEST,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> Iterator[Batch]:
    """Yield batches lazily, so a stream of inputs is packed with bounded memory."""
    packer = Packer(max_inputs=max_inputs, max_body_bytes=max_body_bytes)
    for item in items:
        batch = packer.add(item)
        if batch is not None:
            yield batch
    last = packer.flush()
    if last is not None:
        yield last


async def apack(
    items: AsyncIterable[WireItem],
    *,
    max_inputs: int = MAX_INPUTS_PER_REQUEST,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> AsyncIterator[Batch]:
    """:func:`pack` over an async stream of wire items."""
    packer = Packer(max_inputs=max_inputs, max_body_bytes=max_body_bytes)
    async for item in items:
        batch = packer.add(item)
        if batch is not None:
            yield batch
    last = packer.flush()
    if last is not None:
        yield last
