"""Manifests carry metadata; outputs scale (Parquet, resumable); progress has a total;
a summary line ends every job; retries that wait say so."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from opensearch_mm._cli_report import JobReport, RetryNotices, count_lines
from opensearch_mm.emulator import Emulator
from opensearch_mm.errors import InternalServerError, RateLimitError

from .conftest import DATA, ROOT, records, run_cli, service_env, write_manifest

pq = pytest.importorskip("pyarrow.parquet")

META_LINES: list[dict[str, Any]] = [
    {"id": "a", "text": "first", "source": "web", "lang": "en", "tags": ["x", {"y": 1}]},
    {"id": 2, "text": "second", "score": 0.5, "source": None},
    {"text": "third", "nested": {"k": [1, 2]}, "flag": True},
    {"id": "d", "image": "images/red.png", "caption": "a red square", "source": "cam"},
]


def _job(tmp_path: Path, lines: list[dict[str, Any]] = META_LINES) -> Path:
    (tmp_path / "images").mkdir(exist_ok=True)
    shutil.copy(DATA / "red.png", tmp_path / "images" / "red.png")
    return write_manifest(tmp_path / "m.jsonl", lines)


def _embed(server: Emulator, *args: str, cwd: Path | None = None) -> Any:
    ran = run_cli("embed", *args, "--qps", "off", env=service_env(server), cwd=cwd)
    assert ran.code == 0, ran.err
    return ran


def test_unknown_keys_pass_through_unchanged(server: Emulator, tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    _embed(server, str(_job(tmp_path)), "-o", str(out))
    got = records(out)
    assert [r["line"] for r in got] == [1, 2, 3, 4]
    for record, line in zip(got, META_LINES, strict=True):
        expected = {k: v for k, v in line.items() if k not in ("text", "image")}
        assert {k: v for k, v in record.items() if k not in ("line", "embedding")} == expected
        keys = list(record)
        assert keys[0] == "line" and keys[-1] == "embedding"


def test_the_shipped_captions_file_is_a_valid_manifest(server: Emulator, tmp_path: Path) -> None:
    captions = ROOT / "examples" / "captions.jsonl"
    lines = [orjson.loads(raw) for raw in captions.read_bytes().splitlines()]
    images = tmp_path / "images.jsonl"
    _embed(server, str(captions), "-o", str(images))
    got = records(images)
    assert [r["caption"] for r in got] == [x["caption"] for x in lines]  # image embedded
    texts = tmp_path / "captions.jsonl"
    _embed(server, str(captions), "-o", str(texts), "--text-field", "caption")
    got = records(texts)
    assert [r["image"] for r in got] == [x["image"] for x in lines]  # caption embedded
    assert got[0]["embedding"] != records(images)[0]["embedding"]


def test_id_field(server: Emulator, tmp_path: Path) -> None:
    manifest = write_manifest(
        tmp_path / "m.jsonl", [{"uid": "u1", "body": "hello", "n": 1}, {"uid": 7, "body": "x"}]
    )
    out = tmp_path / "o.jsonl"
    _embed(server, str(manifest), "-o", str(out), "--text-field", "body", "--id-field", "uid")
    assert [(r["id"], r.get("n")) for r in records(out)] == [("u1", 1), (7, None)]
    assert "uid" not in records(out)[0] and "body" not in records(out)[0]


def test_keys_that_clash_with_the_output_are_refused(server: Emulator, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "m.jsonl", [{"text": "a", "embedding": [1, 2]}])
    ran = run_cli("embed", str(manifest), "-o", str(tmp_path / "o"), env=service_env(server))
    assert ran.code == 2 and "line 1: key(s) ['embedding'] would clash" in ran.err


def test_parquet_output(server: Emulator, tmp_path: Path) -> None:
    manifest = _job(tmp_path)
    jsonl, parquet = tmp_path / "o.jsonl", tmp_path / "o.parquet"
    _embed(server, str(manifest), "-o", str(jsonl))
    ran = _embed(server, str(manifest), "-o", str(parquet), "--npy", str(tmp_path / "v.npy"))
    assert "done: 4 vectors in" in ran.err
    table = pq.read_table(parquet)
    assert table.column_names == [
        "line", "id", "source", "lang", "tags", "score", "nested", "flag", "caption",
        "embedding",
    ]  # fmt: skip
    assert str(table.schema.field("embedding").type) == "fixed_size_list<element: float>[768]"
    rows = table.to_pylist()
    assert [r["id"] for r in rows] == ["a", "2", None, "d"]  # mixed str/int ids: text
    assert [r["source"] for r in rows] == ["web", None, None, "cam"]
    assert rows[0]["tags"] == '["x",{"y":1}]' and rows[2]["nested"] == '{"k":[1,2]}'
    assert rows[1]["score"] == 0.5 and rows[2]["flag"] is True
    expected = np.asarray([r["embedding"] for r in records(jsonl)], dtype=np.float32)
    got = np.asarray([r["embedding"] for r in rows], dtype=np.float32)
    assert np.array_equal(got, expected)
    assert np.array_equal(np.load(tmp_path / "v.npy"), expected)
    assert not (tmp_path / "o.parquet.partial").exists()


def test_parquet_resumes_like_json_lines(server: Emulator, tmp_path: Path) -> None:
    lines = [{"id": f"doc-{i}", "text": f"text {i}", "n": i} for i in range(300)]
    manifest = write_manifest(tmp_path / "m.jsonl", lines)
    parquet = tmp_path / "o.parquet"
    env = service_env(server)
    server.inject("slow", 2, delay=0.0)
    server.inject("quota", 1)
    ran = run_cli("embed", str(manifest), "-o", str(parquet), "--max-concurrency", "1", env=env)
    assert ran.code == 1
    journal = tmp_path / "o.parquet.partial"
    assert not parquet.exists() and journal.exists()
    with journal.open("ab") as fh:  # a line torn by a crash
        fh.write(b'{"line": 65, "meta": {"id": "doc-64"}, "v": "AAAA')
    again = run_cli("embed", str(manifest), "-o", str(parquet), env=env)
    assert again.code == 2 and "--resume to continue it" in again.err
    before = server.stats.inputs_embedded
    ran = run_cli("embed", str(manifest), "-o", str(parquet), "--resume", env=env)
    assert ran.code == 0, ran.err
    assert "resuming after manifest line 64 (64 vectors already written)" in ran.err
    assert server.stats.inputs_embedded - before == 300 - 64
    table = pq.read_table(parquet).to_pylist()
    assert [r["line"] for r in table] == list(range(1, 301))
    assert [r["id"] for r in table] == [x["id"] for x in lines]
    assert [r["n"] for r in table] == list(range(300))
    assert not journal.exists()
    # resuming a finished job sends nothing and keeps the file
    before = server.stats.requests
    ran = run_cli("embed", str(manifest), "-o", str(parquet), "--resume", env=env)
    assert ran.code == 0 and "already complete" in ran.err
    assert server.stats.requests == before


def test_progress_has_a_total(server: Emulator, tmp_path: Path) -> None:
    manifest = write_manifest(tmp_path / "m.jsonl", [{"text": f"t{i}"} for i in range(250)])
    ran = _embed(server, str(manifest), "-o", str(tmp_path / "o.jsonl"), "--progress")
    assert "250/250" in ran.err and "100%" in ran.err


def test_count_lines(tmp_path: Path) -> None:
    path = tmp_path / "f"
    for data, n in [
        (b"", 0),
        (b"a\n", 1),
        (b"a\nb", 2),
        (b"\n\n\n", 3),
        (b"x\n" * 700_000, 700_000),
    ]:
        path.write_bytes(data)
        assert count_lines(path) == n


def test_summary_line(server: Emulator, tmp_path: Path) -> None:
    out = tmp_path / "o.jsonl"
    ran = _embed(server, str(_job(tmp_path)), "-o", str(out))
    summary = ran.err_lines[-1]
    assert summary.startswith("opensearch-mm embed: summary: 4 inputs, 1 request, ")
    assert "1 image, 0 retries (0 throttled), " in summary and summary.endswith(" s")
    assert "31 tokens (3 text, 28 image)" in summary


def _record(error: Exception, number: int) -> logging.LogRecord:
    record = logging.LogRecord("opensearch_mm", logging.INFO, "x", 1, "retrying", None, None)
    record.__dict__.update(retry_delay=2.0, retry_number=number, max_retries=6, retry_error=error)
    return record


def test_retry_records_become_one_line_each() -> None:
    lines: list[str] = []
    report = JobReport()
    handler = RetryNotices(report, lines.append)
    handler.handle(_record(RateLimitError("slow down", status_code=429, code="Throttling"), 3))
    handler.handle(_record(InternalServerError("oops", status_code=503), 1))
    handler.handle(logging.LogRecord("opensearch_mm", logging.INFO, "x", 1, "other", None, None))
    assert lines == [
        "throttled, retrying in 2.0 s (3/6)",
        "server error (HTTP 503), retrying in 2.0 s (1/6)",
    ]
    assert (report.retries, report.throttled) == (2, 1)


def test_a_wait_through_a_shut_throttle_says_it_uses_no_retry() -> None:
    lines: list[str] = []
    report = JobReport()
    record = logging.LogRecord("opensearch_mm", logging.INFO, "x", 1, "retrying", None, None)
    error = RateLimitError("slow down", status_code=429, code="Throttling.RateQuota")
    record.__dict__.update(retry_delay=0.4, retry_error=error, shut_for=21.6)
    RetryNotices(report, lines.append).handle(record)
    assert lines == [
        "throttled, retrying in 0.4 s (nothing let through for 22 s: waiting, no retry used)"
    ]
    assert (report.retries, report.throttled) == (1, 1)
