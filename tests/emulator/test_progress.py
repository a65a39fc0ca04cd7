"""``on_progress``: a whole call reports each answered request as it comes, repeats included."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from opensearch_mm import MultiModalEmbeddingClient, OpenSearchMMError, RetryPolicy
from opensearch_mm.emulator import Emulator

KEY = "OS-progress-test-key"


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(api_key=KEY, qps=None, latency_ms=0) as e:
        yield e


@pytest.fixture
def client(emu: Emulator) -> Iterator[MultiModalEmbeddingClient]:
    emu.reset_stats()
    emu.clear_faults()
    with MultiModalEmbeddingClient(api_key=KEY, endpoint=emu.url, qps=None) as c:
        yield c


def test_each_answered_request_moves_progress_by_the_inputs_it_covers(
    emu: Emulator, client: MultiModalEmbeddingClient
) -> None:
    texts = [f"text {i % 100}" for i in range(130)]  # 100 distinct: requests of 32 x3 + 4
    steps: list[int] = []
    result = client.embed(texts, on_progress=steps.append)
    assert emu.stats.requests == 4
    assert len(steps) == 4  # one step per request, as it is answered
    assert sum(steps) == len(result.embeddings) == 130  # the 30 repeats counted too
    assert sorted(steps) == [4 + 0, 32 + 0, 32 + 0, 32 + 30]  # repeats of texts 0-29


def test_the_other_whole_call_methods_report_too(client: MultiModalEmbeddingClient) -> None:
    steps: list[int] = []
    client.embed_texts([f"t{i}" for i in range(40)], on_progress=steps.append)
    assert sorted(steps) == [8, 32]


async def test_async_reports_in_the_event_loop(client: MultiModalEmbeddingClient) -> None:
    steps: list[int] = []
    await client.aembed_texts([f"a{i}" for i in range(70)], on_progress=steps.append)
    assert sorted(steps) == [6, 32, 32]


class FailSecond(httpx.HTTPTransport):
    """Arms a server error (answered for every retry) just before the 2nd request."""

    def __init__(self, emu: Emulator) -> None:
        super().__init__()
        self.emu, self.sent = emu, 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent += 1
        if self.sent == 2:
            self.emu.inject("server_error", 10)
        return super().handle_request(request)


def test_a_failed_call_reports_only_what_was_embedded(emu: Emulator) -> None:
    emu.reset_stats()
    emu.clear_faults()
    inputs = [f"t{i}" for i in range(40)] + ["t0", "t35"]  # one repeat in each request
    steps: list[int] = []
    http = httpx.Client(transport=FailSecond(emu))
    with (
        MultiModalEmbeddingClient(
            api_key=KEY,
            endpoint=emu.url,
            qps=None,
            max_concurrency=1,
            retry_policy=RetryPolicy(max_retries=0),
            http_client=http,
        ) as client,
        pytest.raises(OpenSearchMMError) as info,
    ):
        client.embed(inputs, on_progress=steps.append)
    http.close()
    emu.clear_faults()
    partial = info.value.partial
    assert partial is not None
    assert steps == [33]  # the first request's 32 and the repeat of t0
    assert sum(steps) == len(inputs) - len(partial.failed_indices)
