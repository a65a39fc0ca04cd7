"""The LangChain standard integration suite, replaying cassettes/langchain/standard/*.yaml.

Record again with ``OPENSEARCH_MM_RECORD=1 python -m pytest -m cassette <this file>``
(against the real service when OPENSEARCH_MM_API_KEY / OPENSEARCH_MM_ENDPOINT are set).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langchain_tests.integration_tests import EmbeddingsIntegrationTests

from langchain_opensearch_mm import OpenSearchMultiModalEmbeddings
from tests.support.recording import Endpoint, use_cassette

# the one standard test that makes no request, hence has no cassette
_NO_HTTP = {"test_no_overrides_DO_NOT_OVERRIDE"}


@pytest.mark.cassette
class TestStandardIntegration(EmbeddingsIntegrationTests):
    _endpoint: Endpoint

    @pytest.fixture(autouse=True)
    def _cassette(
        self, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
    ) -> Iterator[None]:
        name = request.node.name
        if name in _NO_HTTP:
            yield
            return
        with use_cassette(f"langchain/standard/{name}") as endpoint:
            self._endpoint = endpoint
            monkeypatch.setenv("OPENSEARCH_MM_API_KEY", endpoint.api_key)
            monkeypatch.setenv("OPENSEARCH_MM_ENDPOINT", endpoint.url)
            monkeypatch.setenv("OPENSEARCH_MM_WORKSPACE", endpoint.workspace)
            yield

    @property
    def embeddings_class(self) -> type[OpenSearchMultiModalEmbeddings]:
        return OpenSearchMultiModalEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        endpoint = getattr(self, "_endpoint", None)
        if endpoint is None:  # a test without HTTP: any placeholder will do
            return {"api_key": "unused-key", "endpoint": "https://replay.invalid"}
        return {
            "api_key": endpoint.api_key,
            "endpoint": endpoint.url,
            "workspace": endpoint.workspace,
            "model": "ops-m2-encoder",
            # replay: no client-side pacing or retries, a mismatch must fail at once
            "qps": "adaptive" if endpoint.recording else None,
            "max_retries": 6 if endpoint.recording else 0,
        }
