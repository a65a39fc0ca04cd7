"""One input the service refuses (a URL it cannot download) costs only that input: the
request it was in is sent again in halves until the bad input is alone.

The emulator refuses image URLs whose host ends in ``.invalid`` (a name that never
resolves) with 400 ``InvalidParameter``, as the service refuses a link it cannot fetch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from opensearch_mm import Content, InvalidParameterError, MultiModalEmbeddingClient
from opensearch_mm.emulator import Emulator

KEY = "OS-bad-input-key"
GOOD = "https://example.com/photo-{}.jpg"
BAD = "https://photos.invalid/{}.jpg"


@pytest.fixture
def emu() -> Iterator[Emulator]:
    with Emulator(api_key=KEY, qps=None, latency_ms=0) as e:
        yield e


def client(emu: Emulator) -> MultiModalEmbeddingClient:
    return MultiModalEmbeddingClient(api_key=KEY, endpoint=emu.url, qps=None, max_retries=0)


def images(n: int, bad: set[int]) -> list[Content]:
    return [Content(image=(BAD if i in bad else GOOD).format(i)) for i in range(n)]


@pytest.mark.parametrize("mode", ["sync", "async", "stream"])
def test_one_bad_input_costs_only_itself(emu: Emulator, mode: str) -> None:
    inputs = images(40, {5})  # requests of 32 and 8: the first holds the bad one
    with client(emu) as c, pytest.raises(InvalidParameterError) as ei:
        if mode == "sync":
            c.embed(inputs)
        elif mode == "async":
            asyncio.run(c.aembed(inputs))
        else:
            list(c.embed_iter(inputs))
    partial = ei.value.partial
    assert partial is not None
    if mode == "stream":  # (yielded up to the bad input; the rest are in the partial)
        assert partial.offset == 5 and partial.failed_indices == [5]
        assert all(v is not None for v in partial.embeddings[1:])
    else:
        assert partial.failed_indices == [5]
        assert all(partial.embeddings[i] is not None for i in range(40) if i != 5)
    assert "the refused request held inputs 5 (" in str(ei.value)
    assert "cannot download" in str(ei.value)
    # 2 first requests, then halves of 32 down to the bad one alone: 5 levels of two.
    assert emu.stats.requests == 2 + 2 * 5


def test_vectors_are_those_of_their_inputs(emu: Emulator) -> None:
    inputs = images(32, {3, 17})  # one bad input in each half
    with client(emu) as c:
        with pytest.raises(InvalidParameterError) as ei:
            c.embed(inputs)
        clean = c.embed([x for i, x in enumerate(inputs) if i not in (3, 17)]).embeddings
    partial = ei.value.partial
    assert partial is not None and partial.failed_indices == [3, 17]
    got = [v for i, v in enumerate(partial.embeddings) if i not in (3, 17)]
    assert got == clean


def test_a_request_refused_whatever_it_holds_is_not_halved_on(emu: Emulator) -> None:
    # Every input bad: three levels of halves with every part refused (1 + 2 + 4 + 8
    # requests), then no more, not down to each input alone (63 requests).
    with client(emu) as c, pytest.raises(InvalidParameterError) as ei:
        c.embed(images(32, set(range(32))))
    assert emu.stats.requests == 15
    assert ei.value.partial is not None and len(ei.value.partial.failed_indices) == 32


class QuotaGoneAt(httpx.HTTPTransport):
    """The quota runs out just before the n-th request (1-based) goes out."""

    def __init__(self, emu: Emulator, n: int) -> None:
        super().__init__()
        self.emu, self.n, self.sent = emu, n, 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent += 1
        if self.sent == self.n:
            self.emu.inject("quota", 100)
        return super().handle_request(request)


@pytest.mark.parametrize("mode", ["stream", "sync"])
def test_a_halving_cut_by_a_fatal_answer_raises_that_answer(emu: Emulator, mode: str) -> None:
    # The request is refused for its bad link; its first half (with the link) too, and
    # the second finds the quota gone: the first half's halves are never sent, and the
    # stream stopped there said so ("input 0 was never sent") instead of why.
    from opensearch_mm import QuotaExceededError

    http = httpx.Client(transport=QuotaGoneAt(emu, 3))
    with (
        MultiModalEmbeddingClient(
            api_key=KEY, endpoint=emu.url, qps=None, max_retries=0, http_client=http
        ) as c,
        pytest.raises(QuotaExceededError),
    ):
        if mode == "stream":
            list(c.embed_iter(images(32, {5})))
        else:
            c.embed(images(32, {5}))
    http.close()
