"""Result types returned by the client."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["EmbeddingResult", "PartialResult", "StreamStats", "Usage"]


@dataclass(frozen=True)
class Usage:
    """What the service counted, as its answer's ``usage`` object says.

    ``token_count`` is the total of tokens billed, ``image`` the number of images;
    ``text_token`` and ``image_token`` split the tokens by kind (the official SDK's
    response model has them; an answer without them leaves them 0).
    """

    token_count: int = 0
    image: int = 0
    image_token: int = 0
    text_token: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.token_count + other.token_count,
            self.image + other.image,
            self.image_token + other.image_token,
            self.text_token + other.text_token,
        )


@dataclass
class StreamStats:
    """Running totals of a streaming call (``embed_iter(..., stats=StreamStats())``),
    updated as each request's answer is accepted: requests answered, summed usage."""

    requests: int = 0
    usage: Usage = field(default_factory=Usage)

    def add(self, usage: Usage) -> None:
        """Count one answered request."""
        self.requests += 1
        self.usage = self.usage + usage


@dataclass
class EmbeddingResult:
    """Vectors for one call, in input order, with summed usage and the request ids."""

    embeddings: list[list[float]]
    usage: Usage = field(default_factory=Usage)
    request_ids: list[str] = field(default_factory=list)
    model: str = ""
    reused: int = 0
    """Inputs identical to an earlier one in the same call: sent once, vector copied."""

    def __len__(self) -> int:
        return len(self.embeddings)


@dataclass
class PartialResult:
    """What a failed multi-request call had already done.

    ``embeddings[j]`` is the vector of input ``offset + j`` or ``None`` if it has none;
    ``failed_indices`` lists, in order, every input of that range without a vector;
    ``errors`` maps a failed input index to the error that stopped its request (``None``
    when the input was never sent because the call stopped first). All indices are
    positions in the call's input.

    ``offset`` is 0 for ``embed``/``aembed`` (``embeddings`` covers every input). For
    ``embed_iter``/``aembed_iter`` it is the first input whose vector was not yielded:
    inputs before it were delivered, and ``embeddings`` covers the inputs read from the
    source after it; inputs not covered were never read from the source.
    """

    embeddings: list[list[float] | None]
    failed_indices: list[int]
    errors: dict[int, BaseException | None] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)
    request_ids: list[str] = field(default_factory=list)
    offset: int = 0

    @property
    def succeeded_indices(self) -> list[int]:
        """Input positions that have a vector in ``embeddings``."""
        return [self.offset + j for j, v in enumerate(self.embeddings) if v is not None]

    def vector(self, index: int) -> list[float] | None:
        """The vector of input ``index`` (a position in the call), ``None`` if absent."""
        j = index - self.offset
        return self.embeddings[j] if 0 <= j < len(self.embeddings) else None
