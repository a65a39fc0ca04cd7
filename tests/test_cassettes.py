"""The cassettes: replayable, honest about their source, and free of secrets."""

from __future__ import annotations

import re

import pytest
import yaml  # type: ignore[import-untyped]
from vcr.errors import CannotOverwriteExistingCassetteException

from opensearch_mm import Content, MultiModalEmbeddingClient
from tests.support.images import tiny_png
from tests.support.recording import CASSETTES, use_cassette

ALL_CASSETTES = sorted(CASSETTES.rglob("*.yaml"))


@pytest.mark.cassette
def test_core_client_replays_a_cassette() -> None:
    with use_cassette("core/embed_mixed") as ep:
        client = MultiModalEmbeddingClient(
            api_key=ep.api_key, endpoint=ep.url, workspace=ep.workspace, qps=None
        )
        result = client.embed(["a red square", Content(image=tiny_png("red"))])
        client.close()
    assert len(result.embeddings) == 2
    assert all(len(v) == 768 for v in result.embeddings)
    assert result.usage.image == 1
    assert result.request_ids


@pytest.mark.cassette
def test_replay_fails_when_the_client_sends_something_else() -> None:
    with use_cassette("core/embed_mixed") as ep:
        if ep.recording:
            pytest.skip("only meaningful in replay")
        client = MultiModalEmbeddingClient(
            api_key=ep.api_key, endpoint=ep.url, qps=None, max_retries=0
        )
        with pytest.raises(CannotOverwriteExistingCassetteException):
            client.embed(["a different text", Content(image=tiny_png("red"))])
        client.close()


def test_there_are_cassettes() -> None:
    assert len(ALL_CASSETTES) >= 1


@pytest.mark.parametrize("path", ALL_CASSETTES, ids=lambda p: str(p.relative_to(CASSETTES)))
def test_cassette_states_its_source_and_holds_no_secret(path) -> None:  # type: ignore[no-untyped-def]
    text = path.read_text()
    data = yaml.safe_load(text)
    assert str(data["source"]).startswith(("emulator:", "service:"))
    assert not re.search(r"(?i)authorization|bearer|x-acs-", text)
    for interaction in data["interactions"]:
        assert interaction["request"]["uri"].startswith("https://replay.invalid/v3/openapi/")
