"""``opensearch-mm embed``: a resumable bulk job from a JSON-lines manifest.

Each manifest line is a JSON object with ``text`` and/or ``image`` (a local path, relative
to the manifest's directory, or an http(s) URL / data URI) and an optional ``id``. Vectors
are written as JSON lines ``{"line": n, "id": ..., "embedding": [...]}`` in manifest order,
flushed as the requests complete. ``--resume`` continues after a crash or Ctrl-C: it keeps
the complete lines of the output (a torn last line is cut away), skips the manifest lines
they cover, and appends; no input is ever written twice.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from .client import ENV_API_KEY, ENV_ENDPOINT, ENV_WORKSPACE, MultiModalEmbeddingClient
from .errors import InputError, OpenSearchMMError
from .models import DEFAULT_MODEL

__all__ = ["BulkError", "add_parser", "read_progress", "run"]

_SCHEME_RE = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]+:")
_KEYS = frozenset({"id", "text", "image"})

EXIT_OK = 0
EXIT_API = 1
EXIT_INVALID = 2
EXIT_INTERRUPTED = 130


class BulkError(Exception):
    """A problem with the manifest, the output or the options (exit status 2)."""


@dataclass(frozen=True)
class Entry:
    line: int
    id: Any
    content: dict[str, str]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``embed`` subcommand."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "embed",
        help="embed a JSON-lines manifest of texts and images (resumable)",
        description=(
            'Embed every line of a JSON-lines manifest ({"id": ..., "text": ...} and/or '
            '{"image": "path or URL"}) and write one JSON line per input '
            '({"line": n, "id": ..., "embedding": [...]}) as requests complete. '
            f"Endpoint and key come from the flags or ${ENV_ENDPOINT} / ${ENV_API_KEY}."
        ),
    )
    p.add_argument("manifest", type=Path, help="JSON-lines manifest")
    p.add_argument("-o", "--output", type=Path, required=True, help="JSON-lines output file")
    p.add_argument("--npy", type=Path, help="also write all vectors as a float32 .npy at the end")
    p.add_argument("--resume", action="store_true", help="continue an interrupted job")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument(
        "--skip-invalid",
        action="store_true",
        help="record invalid lines in the errors file and go on (default: stop at the first)",
    )
    p.add_argument(
        "--errors", type=Path, help="where --skip-invalid records bad lines (OUTPUT.errors.jsonl)"
    )
    p.add_argument("--endpoint", help=f"service endpoint (default ${ENV_ENDPOINT})")
    p.add_argument(
        "--api-key", help=f"API key (default ${ENV_API_KEY}; the variable keeps it out of ps)"
    )
    p.add_argument("--workspace", help=f"workspace (default ${ENV_WORKSPACE} or 'default')")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"service id (default {DEFAULT_MODEL})")
    p.add_argument("--qps", default="adaptive", help="'adaptive' (default), a number, or 'off'")
    p.add_argument("--max-concurrency", type=int, default=8, help="requests in flight (8)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per request (60)")
    p.add_argument("--max-retries", type=int, default=6, help="retries per request (6)")
    p.add_argument("--image-max-side", type=int, help="downscale larger local images")
    p.add_argument("--progress", action="store_true", help="show a progress bar")
    p.set_defaults(run=run)
    return p


# -- output and resume --------------------------------------------------------------------


def read_progress(output: Path) -> tuple[int, int, int]:
    """``(last manifest line written, records kept, bytes kept)`` of an output file.

    Only complete, parseable lines count; whatever follows the last of them (a line torn
    by a crash) is to be cut away.
    """
    if not output.exists():
        return 0, 0, 0
    last_line = count = good = 0
    offset = 0
    with output.open("rb") as fh:
        for raw in fh:
            offset += len(raw)
            if not raw.endswith(b"\n"):
                break
            try:
                record = orjson.loads(raw)
                line = record["line"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                break
            if not isinstance(line, int) or line <= last_line:
                break
            last_line, count, good = line, count + 1, offset
    return last_line, count, good


def _trim_errors(path: Path, last_line: int) -> None:
    """Keep the error records of manifest lines already passed (resume regenerates the rest)."""
    if not path.exists():
        return
    kept: list[bytes] = []
    with path.open("rb") as fh:
        for raw in fh:
            try:
                line = orjson.loads(raw)["line"] if raw.endswith(b"\n") else None
            except (orjson.JSONDecodeError, KeyError, TypeError):
                line = None
            if isinstance(line, int) and line <= last_line:
                kept.append(raw)
    path.write_bytes(b"".join(kept))


class _Writer:
    """Appends JSON lines and remembers the size of the complete ones."""

    def __init__(self, path: Path, start: int) -> None:
        self.fh: IO[bytes] = path.open("r+b" if path.exists() else "wb")
        self.fh.truncate(start)
        self.fh.seek(start)
        self.good = start
        self.count = 0

    def write(self, record: dict[str, Any]) -> None:
        data = orjson.dumps(record) + b"\n"
        self.fh.write(data)
        self.fh.flush()
        self.good += len(data)
        self.count += 1

    def close(self) -> None:
        """Flush, cut anything after the last complete line (an interrupted write)."""
        try:
            self.fh.flush()
        finally:
            self.fh.truncate(self.good)
            self.fh.close()


# -- the manifest ---------------------------------------------------------------------------


def _entry(raw: bytes, line: int, base: Path) -> Entry:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BulkError(f"line {line}: not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise BulkError(f"line {line}: expected a JSON object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - _KEYS)
    if unknown:
        raise BulkError(f"line {line}: unknown key(s) {unknown}; a line has id, text, image")
    content: dict[str, str] = {}
    for key in ("text", "image"):
        value = obj.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise BulkError(f"line {line}: {key} must be a string, got {type(value).__name__}")
        content[key] = value
    if not content:
        raise BulkError(f"line {line}: has neither text nor image")
    image = content.get("image")
    if image is not None and image.strip() and not _has_scheme(image):
        content["image"] = os.fspath(base / image)
    ident = obj.get("id")
    if ident is not None and not isinstance(ident, (str, int)):
        raise BulkError(f"line {line}: id must be a string or an integer")
    return Entry(line, ident, content)


def _has_scheme(value: str) -> bool:
    match = _SCHEME_RE.match(value)
    return match is not None and len(match.group(0)) > 2  # not a drive letter ("C:")


class _Manifest:
    """The manifest's entries after ``skip`` lines; invalid lines end it or are recorded."""

    def __init__(self, path: Path, skip: int, errors: _Writer | None) -> None:
        self.path = path
        self.skip = skip
        self.errors = errors
        self.error: BulkError | None = None

    def entries(self) -> Iterator[Entry]:
        base = self.path.parent
        with self.path.open("rb") as fh:
            for number, raw in enumerate(fh, start=1):
                if number <= self.skip or not raw.strip():
                    continue
                try:
                    yield _entry(raw, number, base)
                except BulkError as exc:
                    if self.errors is None:
                        self.error = exc
                        return
                    self.errors.write({"line": number, "error": str(exc)})


# -- the job --------------------------------------------------------------------------------


def _qps(value: str) -> float | str | None:
    if value in ("off", "none", "None"):
        return None
    if value == "adaptive":
        return value
    try:
        return float(value)
    except ValueError:
        raise BulkError(f"--qps must be 'adaptive', a number or 'off', got {value!r}") from None


def _client(args: argparse.Namespace) -> MultiModalEmbeddingClient:
    return MultiModalEmbeddingClient(
        api_key=args.api_key,
        endpoint=args.endpoint,
        workspace=args.workspace,
        model=args.model,
        timeout=args.timeout,
        max_retries=args.max_retries,
        max_concurrency=args.max_concurrency,
        qps=_qps(args.qps),  # type: ignore[arg-type]
        image_max_side=args.image_max_side,
    )


def _say(message: str) -> None:
    print(f"opensearch-mm embed: {message}", file=sys.stderr, flush=True)


def _embed_all(
    client: MultiModalEmbeddingClient,
    source: Iterator[Entry],
    out: _Writer,
    errors: _Writer | None,
    progress: bool,
) -> None:
    """Stream entries through the client, writing each vector as it comes, in order."""
    pending: deque[Entry] = deque()

    def contents() -> Iterator[dict[str, str]]:
        for entry in source:
            pending.append(entry)
            yield entry.content

    def write(embedding: list[float]) -> None:
        entry = pending.popleft()
        record: dict[str, Any] = {"line": entry.line}
        if entry.id is not None:
            record["id"] = entry.id
        record["embedding"] = embedding
        out.write(record)

    while True:
        try:
            for vector in client.embed_iter(contents(), progress=progress):
                write(vector)
            return
        except InputError as exc:
            bad = pending.popleft()  # the vectors before it were written
            field = f" ({exc.field})" if exc.field else ""
            message = f"line {bad.line}{field}: {exc.reason}"
            if errors is None:
                raise BulkError(message) from None
            errors.write({"line": bad.line, "error": message})
            pending.clear()
        except OpenSearchMMError as exc:
            partial = exc.partial
            if partial is not None:  # keep what arrived in order after the last write
                for got in partial.embeddings:
                    if got is None:
                        break
                    write(got)
            raise


def _write_npy(output: Path, npy: Path) -> int:
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - depends on the install
        raise BulkError("--npy needs numpy: pip install 'opensearch-mm[numpy]'") from None
    rows = 0
    dim = 0
    with output.open("rb") as fh:
        for raw in fh:
            if rows == 0:
                dim = len(orjson.loads(raw)["embedding"])
            rows += 1
    array = np.lib.format.open_memmap(npy, mode="w+", dtype=np.float32, shape=(rows, dim))
    with output.open("rb") as fh:
        for i, raw in enumerate(fh):
            array[i] = orjson.loads(raw)["embedding"]
    array.flush()
    del array
    return rows


def run(args: argparse.Namespace) -> int:
    """Run the job; returns the exit status."""
    try:
        return _run(args)
    except BulkError as exc:
        _say(f"error: {exc}")
        return EXIT_INVALID


def _run(args: argparse.Namespace) -> int:
    manifest: Path = args.manifest
    output: Path = args.output
    if not manifest.is_file():
        raise BulkError(f"manifest {manifest} is not a file")
    errors_path: Path = args.errors or output.with_name(output.name + ".errors.jsonl")
    exists = output.exists() and output.stat().st_size > 0
    if exists and not (args.resume or args.overwrite):
        raise BulkError(f"{output} exists: pass --resume to continue it or --overwrite")
    skip = kept = start = 0
    if args.resume and not args.overwrite:
        skip, kept, start = read_progress(output)
        if args.skip_invalid:
            _trim_errors(errors_path, skip)
        if kept:
            _say(f"resuming after manifest line {skip} ({kept} vectors already written)")
    elif args.skip_invalid and errors_path.exists():
        errors_path.unlink()
    try:
        client = _client(args)
    except OpenSearchMMError as exc:
        raise BulkError(str(exc)) from None
    out = _Writer(output, start)
    errors: _Writer | None = None
    if args.skip_invalid:
        errors = _Writer(errors_path, errors_path.stat().st_size if errors_path.exists() else 0)
    source = _Manifest(manifest, skip, errors)
    status = EXIT_OK
    try:
        _embed_all(client, source.entries(), out, errors, args.progress)
        if source.error is not None:
            raise source.error
    except KeyboardInterrupt:
        status = EXIT_INTERRUPTED
        _say(
            f"interrupted: {kept + out.count} vectors in {output}; "
            "run the same command with --resume to continue"
        )
    except OpenSearchMMError as exc:
        status = EXIT_API
        _say(
            f"failed: {exc}\n{kept + out.count} vectors in {output}; "
            "run the same command with --resume to continue"
        )
    finally:
        out.close()
        if errors is not None:
            errors.close()
        client.close()
    if status != EXIT_OK:
        return status
    total = kept + out.count
    skipped = f", {errors.count} invalid lines in {errors_path}" if errors and errors.count else ""
    _say(f"done: {total} vectors in {output}{skipped}")
    if args.npy is not None:
        rows = _write_npy(output, args.npy)
        _say(f"wrote {rows} vectors to {args.npy}")
    return EXIT_OK
