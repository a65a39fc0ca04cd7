"""Recorded HTTP for tests: replay by default, record on demand.

Replay (default): vcrpy serves ``cassettes/<name>.yaml``; nothing touches the network and
no server runs. Configure the client with the yielded placeholder :class:`Endpoint`.

Record: ``OPENSEARCH_MM_RECORD=1 python -m pytest -m cassette``. With
``OPENSEARCH_MM_API_KEY`` and ``OPENSEARCH_MM_ENDPOINT`` exported the cassettes come from
the real service; otherwise from an in-process emulator. Each cassette states its source.
Requests are matched on method, path and JSON body; the key and ``x-acs-*`` headers are
never written, and the recorded host is replaced by the placeholder.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import vcr
import yaml  # type: ignore[import-untyped]
from vcr.request import Request

CASSETTES = Path(__file__).resolve().parents[2] / "cassettes"
REPLAY_URL = "https://replay.invalid"
REPLAY_KEY = "replay-key"
_KEPT_REQUEST_HEADERS = {"content-type", "accept"}
_KEPT_RESPONSE_HEADERS = {"content-type", "retry-after"}


@dataclass(frozen=True)
class Endpoint:
    """Where the client under test should point."""

    url: str
    api_key: str
    workspace: str
    recording: bool


def recording() -> bool:
    return os.environ.get("OPENSEARCH_MM_RECORD") == "1"


def _real_service() -> tuple[str, str] | None:
    key = os.environ.get("OPENSEARCH_MM_API_KEY")
    endpoint = os.environ.get("OPENSEARCH_MM_ENDPOINT")
    return (endpoint, key) if key and endpoint else None


class _SourcedYaml:
    """vcrpy's YAML format plus a top-level ``source:`` saying where it was recorded."""

    source = "unknown"

    @classmethod
    def serialize(cls, cassette_dict: dict[str, Any]) -> str:
        data = {"source": cls.source, **cassette_dict}
        return str(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))

    @staticmethod
    def deserialize(cassette_string: str) -> dict[str, Any]:
        data = yaml.safe_load(cassette_string) or {}
        data.pop("source", None)
        return dict(data)


def _json_body(r1: Request, r2: Request) -> None:
    def load(body: Any) -> Any:
        if body in (None, b"", ""):
            return None
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            return body

    assert load(r1.body) == load(r2.body), "request bodies differ"


def _scrub_request(request: Request) -> Request:
    # Keep only what describes the payload: never the key, the host or x-acs-* headers.
    for name in list(request.headers):
        if name.lower() not in _KEPT_REQUEST_HEADERS:
            del request.headers[name]
    # A real workspace name is recorded as the placeholder replay uses.
    path = re.sub(
        r"^/v3/openapi/workspaces/[^/]+/",
        "/v3/openapi/workspaces/default/",
        urlsplit(request.uri).path,
    )
    request.uri = REPLAY_URL + path
    return request


def _scrub_response(response: dict[str, Any]) -> dict[str, Any]:
    headers = response.get("headers", {})
    response["headers"] = {k: v for k, v in headers.items() if k.lower() in _KEPT_RESPONSE_HEADERS}
    return response


def _vcr(record_mode: str) -> vcr.VCR:
    cassette_vcr = vcr.VCR(
        cassette_library_dir=str(CASSETTES),
        serializer="sourced-yaml",
        record_mode=record_mode,
        match_on=["method", "path", "json_body"],
        before_record_request=_scrub_request,
        before_record_response=_scrub_response,
        decode_compressed_response=True,
    )
    cassette_vcr.register_serializer("sourced-yaml", _SourcedYaml)
    cassette_vcr.register_matcher("json_body", _json_body)
    return cassette_vcr


@contextmanager
def use_cassette(name: str, *, workspace: str = "default") -> Iterator[Endpoint]:
    """Replay (or, with ``OPENSEARCH_MM_RECORD=1``, record) ``cassettes/<name>.yaml``."""
    path = f"{name}.yaml"
    with ExitStack() as stack:
        if not recording():
            if not (CASSETTES / path).exists():
                raise FileNotFoundError(
                    f"cassette {path} is missing: record it with "
                    "OPENSEARCH_MM_RECORD=1 python -m pytest -m cassette"
                )
            endpoint = Endpoint(REPLAY_URL, REPLAY_KEY, workspace, recording=False)
            stack.enter_context(_vcr("none").use_cassette(path))
            yield endpoint
            return
        real = _real_service()
        if real is not None:
            _SourcedYaml.source = f"service: recorded from {urlsplit(real[0]).hostname or real[0]}"
            real_workspace = os.environ.get("OPENSEARCH_MM_WORKSPACE", workspace)
            endpoint = Endpoint(real[0], real[1], real_workspace, recording=True)
        else:
            from opensearch_mm.emulator import Emulator

            emu = stack.enter_context(Emulator(api_key="record-key"))
            _SourcedYaml.source = (
                "emulator: recorded from opensearch_mm.emulator (local; vectors are "
                "deterministic, not semantic)"
            )
            endpoint = Endpoint(emu.url, emu.api_key, workspace, recording=True)
        (CASSETTES / path).parent.mkdir(parents=True, exist_ok=True)
        stack.enter_context(_vcr("all").use_cassette(path))
        yield endpoint
