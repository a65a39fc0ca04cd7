"""``opensearch-mm embed``: texts and images from the command line, or a resumable bulk
job from a JSON-lines manifest.

Direct mode: ``--text TEXT`` and ``--image PATH_OR_URL`` (each repeatable, embedded in
command-line order) write one JSON line ``{"input": n, "text" | "image": ..., "embedding":
[...]}`` per input to stdout (or ``-o PATH``). Every input is checked before anything is
sent.

Manifest mode:
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
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
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


class _Ordered(argparse.Action):
    """Appends ``(kind, value)`` to a list shared by ``--text`` and ``--image``, so the
    inputs keep their command-line order across the two options."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        items = list(getattr(namespace, self.dest, None) or [])
        items.append((self.const, values))
        setattr(namespace, self.dest, items)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``embed`` subcommand."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "embed",
        help="embed texts and images given on the command line, or a JSON-lines manifest",
        description=(
            "Embed --text/--image inputs in command-line order (JSON lines to stdout or -o), "
            'or every line of a JSON-lines manifest ({"id": ..., "text": ...} and/or '
            '{"image": "path or URL"}; resumable, -o required) writing one JSON line per input '
            '({"line": n, "id": ..., "embedding": [...]}) as requests complete. '
            f"Endpoint and key come from the flags or ${ENV_ENDPOINT} / ${ENV_API_KEY}."
        ),
    )
    p.add_argument(
        "manifest",
        type=Path,
        nargs="?",
        help="JSON-lines manifest ('-' reads stdin); or use --text/--image instead",
    )
    p.add_argument(
        "--text",
        dest="inputs",
        action=_Ordered,
        const="text",
        metavar="TEXT",
        help="a text to embed (repeatable; --text=-x for a text starting with '-')",
    )
    p.add_argument(
        "--image",
        dest="inputs",
        action=_Ordered,
        const="image",
        metavar="PATH_OR_URL",
        help="an image to embed: local path, http(s) URL or data URI (repeatable)",
    )
    p.add_argument(
        "-o",
        "--output",
        help="JSON-lines output file, '-' for stdout (direct mode default: stdout)",
    )
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


class _StreamWriter:
    """Writes JSON lines to stdout; keeps the vectors when a ``.npy`` is wanted too."""

    def __init__(self, keep: bool) -> None:
        self.count = 0
        self.rows: list[list[float]] | None = [] if keep else None

    def write(self, record: dict[str, Any]) -> None:
        data = orjson.dumps(record) + b"\n"
        sys.stdout.flush()
        buffer = getattr(sys.stdout, "buffer", None)
        if buffer is not None:
            buffer.write(data)
            buffer.flush()
        else:  # pragma: no cover - a text-only stdout replacement
            sys.stdout.write(data.decode())
            sys.stdout.flush()
        self.count += 1
        if self.rows is not None:
            self.rows.append(record["embedding"])

    def close(self) -> None:
        sys.stdout.flush()


def _is_stdout(output: str | None) -> bool:
    return output is None or output == "-"


def _is_stdin(manifest: Path) -> bool:
    return str(manifest) == "-"


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
        stdin = _is_stdin(self.path)
        base = Path.cwd() if stdin else self.path.parent
        opened = nullcontext(sys.stdin.buffer) if stdin else self.path.open("rb")
        with opened as fh:
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
    out: _Writer | _StreamWriter,
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


def _numpy() -> Any:
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - depends on the install
        raise BulkError("--npy needs numpy: pip install 'opensearch-mm[numpy]'") from None
    return np


def _write_npy(output: Path, npy: Path) -> int:
    np = _numpy()
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


def _save_npy(vectors: list[list[float]], npy: Path) -> int:
    np = _numpy()
    dim = len(vectors[0]) if vectors else 0
    array = np.asarray(vectors, dtype=np.float32).reshape(len(vectors), dim)
    with npy.open("wb") as fh:
        np.save(fh, array)
    return len(vectors)


def run(args: argparse.Namespace) -> int:
    """Run the job; returns the exit status."""
    try:
        return _run(args)
    except BulkError as exc:
        _say(f"error: {exc}")
        return EXIT_INVALID


def _run(args: argparse.Namespace) -> int:
    inputs: list[tuple[str, str]] = args.inputs or []
    if args.manifest is not None and inputs:
        raise BulkError("give either a manifest or --text/--image inputs, not both")
    if args.manifest is None and not inputs:
        raise BulkError("nothing to embed: give --text/--image, or a manifest ('-' for stdin)")
    if args.resume and (args.manifest is None or _is_stdout(args.output)):
        raise BulkError("--resume needs a manifest and an output file (-o PATH)")
    if args.manifest is None:
        return _run_direct(args, inputs)
    if args.output is None:
        raise BulkError("a manifest job needs -o PATH (or -o - for stdout)")
    return _run_manifest(args)


def _check_output(args: argparse.Namespace) -> None:
    output = Path(args.output)
    if output.exists() and output.stat().st_size > 0 and not (args.resume or args.overwrite):
        hint = "pass --resume to continue it or --overwrite" if args.manifest else "--overwrite"
        raise BulkError(f"{output} exists: {hint}")


def _make_client(args: argparse.Namespace) -> MultiModalEmbeddingClient:
    try:
        return _client(args)
    except OpenSearchMMError as exc:
        raise BulkError(str(exc)) from None


def _run_direct(args: argparse.Namespace, inputs: list[tuple[str, str]]) -> int:
    """Embed the --text/--image inputs: all are checked before anything is sent."""
    if args.skip_invalid:
        raise BulkError("--skip-invalid needs a manifest (--text/--image inputs are all checked)")
    labels: list[str] = []
    seen: dict[str, int] = {}
    for kind, _ in inputs:
        seen[kind] = seen.get(kind, 0) + 1
        labels.append(f"--{kind} #{seen[kind]}")
    to_stdout = _is_stdout(args.output)
    if not to_stdout:
        _check_output(args)
    client = _make_client(args)
    try:
        vectors = client.embed([{kind: value} for kind, value in inputs]).embeddings
    except InputError as exc:
        label = labels[exc.index] if exc.index is not None else "input"
        raise BulkError(f"{label}: {exc.reason}") from None
    except OpenSearchMMError as exc:
        _say(f"failed: {exc}")
        return EXIT_API
    except KeyboardInterrupt:
        _say("interrupted: nothing written")
        return EXIT_INTERRUPTED
    finally:
        client.close()
    out: _Writer | _StreamWriter = (
        _StreamWriter(keep=False) if to_stdout else _Writer(Path(args.output), 0)
    )
    try:
        for number, (kind, value) in enumerate(inputs, start=1):
            out.write({"input": number, kind: value, "embedding": vectors[number - 1]})
    finally:
        out.close()
    if not to_stdout:
        _say(f"done: {out.count} vectors in {args.output}")
    if args.npy is not None:
        rows = _save_npy(vectors, args.npy)
        _say(f"wrote {rows} vectors to {args.npy}")
    return EXIT_OK


def _run_manifest(args: argparse.Namespace) -> int:
    manifest: Path = args.manifest
    to_stdout = _is_stdout(args.output)
    if not _is_stdin(manifest) and not manifest.is_file():
        raise BulkError(f"manifest {manifest} is not a file")
    if to_stdout and args.skip_invalid and args.errors is None:
        raise BulkError("--skip-invalid with the output on stdout needs --errors PATH")
    output = Path("-") if to_stdout else Path(args.output)
    where = "stdout" if to_stdout else str(output)
    errors_path: Path = args.errors or output.with_name(output.name + ".errors.jsonl")
    if not to_stdout:
        _check_output(args)
    skip = kept = start = 0
    if args.resume and not args.overwrite:
        skip, kept, start = read_progress(output)
        if args.skip_invalid:
            _trim_errors(errors_path, skip)
        if kept:
            _say(f"resuming after manifest line {skip} ({kept} vectors already written)")
    elif args.skip_invalid and errors_path.exists():
        errors_path.unlink()
    client = _make_client(args)
    out: _Writer | _StreamWriter = (
        _StreamWriter(keep=args.npy is not None) if to_stdout else _Writer(output, start)
    )
    errors: _Writer | None = None
    if args.skip_invalid:
        errors = _Writer(errors_path, errors_path.stat().st_size if errors_path.exists() else 0)
    source = _Manifest(manifest, skip, errors)
    status = EXIT_OK
    then = "" if to_stdout else "; run the same command with --resume to continue"
    try:
        _embed_all(client, source.entries(), out, errors, args.progress)
        if source.error is not None:
            raise source.error
    except KeyboardInterrupt:
        status = EXIT_INTERRUPTED
        _say(f"interrupted: {kept + out.count} vectors in {where}{then}")
    except OpenSearchMMError as exc:
        status = EXIT_API
        _say(f"failed: {exc}\n{kept + out.count} vectors in {where}{then}")
    finally:
        out.close()
        if errors is not None:
            errors.close()
        client.close()
    if status != EXIT_OK:
        return status
    total = kept + out.count
    skipped = f", {errors.count} invalid lines in {errors_path}" if errors and errors.count else ""
    _say(f"done: {total} vectors in {where}{skipped}")
    if args.npy is not None:
        if isinstance(out, _StreamWriter):
            rows = _save_npy(out.rows or [], args.npy)
        else:
            rows = _write_npy(output, args.npy)
        _say(f"wrote {rows} vectors to {args.npy}")
    return EXIT_OK
