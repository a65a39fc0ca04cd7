"""``opensearch-mm embed``: texts and images from the command line, or a resumable bulk
job from a JSON-lines manifest.

Direct mode: ``--text TEXT`` and ``--image PATH_OR_URL`` (each repeatable, embedded in
command-line order) write one record ``{"input": n, "text" | "image": ..., "embedding":
[...]}`` per input to stdout (or ``-o PATH``). Every input is checked before anything is
sent.

Manifest mode: each manifest line is a JSON object with ``text`` and/or ``image`` (a
local path, relative to the manifest's directory, or an http(s) URL / data URI), an
optional ``id`` and any other keys (metadata, passed through unchanged). Vectors are
written as records ``{"line": n, "id": ..., <metadata>, "embedding": [...]}`` in manifest
order, as the requests complete: JSON lines, or Parquet for ``-o *.parquet``.
``--resume`` continues after a crash or Ctrl-C: it keeps the complete records, skips the
manifest lines they cover, and appends; no input is ever written twice.

Every output path is checked before the first request, so no answer is paid for and
then lost to an unwritable path.
"""

from __future__ import annotations

import argparse
import errno
import itertools
import os
import re
import stat
import sys
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, closing, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from ._cli_errors import explain, input_reason, missing_credentials, refused_reason
from ._cli_report import (
    JobReport,
    Progress,
    count_lines,
    in_flight_note,
    retry_notices,
    say,
)
from ._memory import return_large_buffers
from ._sinks import (
    JsonLinesWriter,
    ParquetWriter,
    Sink,
    SinkError,
    StdoutWriter,
    check_writable,
    is_parquet,
    is_stream,
    journal_path,
    parquet_progress,
    read_progress,
    require_numpy,
    require_pyarrow,
    save_npy,
    write_npy,
)
from .client import ENV_API_KEY, ENV_ENDPOINT, ENV_WORKSPACE, MultiModalEmbeddingClient
from .errors import ConfigurationError, InputError, InvalidParameterError, OpenSearchMMError
from .inputs import encode_content
from .models import DEFAULT_MODEL
from .results import PartialResult, StreamStats

__all__ = ["BulkError", "add_parser", "read_progress", "run"]

_SCHEME_RE = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]+:")
_OUTPUT_KEYS = ("line", "embedding")

EXIT_OK = 0
EXIT_API = 1
EXIT_INVALID = 2
EXIT_INTERRUPTED = 130
EXIT_PIPE = 141  # the reader of stdout has gone: see _quiet_broken_pipe


class BulkError(Exception):
    """A problem with the manifest, the output or the options (exit status 2)."""


@dataclass(frozen=True)
class Fields:
    """Which manifest keys hold the text, the image and the id (``None``: not read)."""

    text: str | None = "text"
    image: str | None = "image"
    id: str = "id"

    @property
    def inputs(self) -> list[tuple[str, str]]:
        """``(API field, manifest key)`` of the keys read as inputs."""
        pairs = (("text", self.text), ("image", self.image))
        return [(kind, key) for kind, key in pairs if key is not None]

    def describe(self) -> str:
        return " nor ".join(repr(key) for _, key in self.inputs)


@dataclass(frozen=True)
class Entry:
    line: int
    id: Any
    content: dict[str, str]
    meta: dict[str, Any]

    def record(self, embedding: Any) -> dict[str, Any]:
        record: dict[str, Any] = {"line": self.line}
        if self.id is not None:
            record["id"] = self.id
        record.update(self.meta)
        record["embedding"] = embedding
        return record


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


def _at_least(minimum: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, got {text}")
    return value


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``embed`` subcommand."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "embed",
        help="embed texts and images given on the command line, or a JSON-lines manifest",
        description=(
            "Embed --text/--image inputs in command-line order (JSON lines to stdout or -o), "
            'or every line of a JSON-lines manifest ({"id": ..., "text": ...} and/or '
            '{"image": "path or URL"}, other keys passed through; resumable, -o required) '
            'writing one record per input ({"line": n, "id": ..., "embedding": [...]}) as '
            "requests complete: JSON lines, or Parquet for -o NAME.parquet. "
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
        help="output file: JSON lines, or Parquet if it ends in .parquet; '-' for stdout "
        "(direct mode default: stdout)",
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
    p.add_argument(
        "--text-field",
        metavar="KEY",
        help="manifest key holding the text (default 'text'); with --text-field or "
        "--image-field only the keys given are embedded, the others pass through",
    )
    p.add_argument(
        "--image-field", metavar="KEY", help="manifest key holding the image (default 'image')"
    )
    p.add_argument(
        "--id-field",
        metavar="KEY",
        default="id",
        help="manifest key holding the id, written as 'id' (default 'id')",
    )
    p.add_argument("--endpoint", help=f"service endpoint (default ${ENV_ENDPOINT})")
    p.add_argument(
        "--api-key", help=f"API key (default ${ENV_API_KEY}; the variable keeps it out of ps)"
    )
    p.add_argument("--workspace", help=f"workspace (default ${ENV_WORKSPACE} or 'default')")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"service id (default {DEFAULT_MODEL})")
    p.add_argument("--qps", default="adaptive", help="'adaptive' (default), a number, or 'off'")
    p.add_argument("--max-concurrency", type=_at_least(1), default=8, help="requests in flight (8)")
    p.add_argument("--timeout", type=_seconds, default=60.0, help="seconds per request (60)")
    p.add_argument("--max-retries", type=_at_least(0), default=6, help="retries per request (6)")
    p.add_argument(
        "--image-max-side", type=_at_least(16), help="downscale larger local images (pixels)"
    )
    p.add_argument(
        "--downscale-oversized",
        action="store_true",
        help="re-encode an image too big for one request until it fits (needs Pillow)",
    )
    p.add_argument("--progress", action="store_true", help="show a progress bar")
    p.set_defaults(run=run)
    return p


# -- the manifest ---------------------------------------------------------------------------


def _fields(args: argparse.Namespace) -> Fields:
    if args.text_field is None and args.image_field is None:
        return Fields(id=args.id_field)
    return Fields(args.text_field, args.image_field, args.id_field)


def _entry(raw: bytes, line: int, base: Path, fields: Fields) -> Entry:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BulkError(f"line {line}: not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise BulkError(f"line {line}: expected a JSON object, got {type(obj).__name__}")
    consumed = {key for _, key in fields.inputs} | {fields.id}
    reserved = set(_OUTPUT_KEYS) | ({"id"} if fields.id != "id" else set())
    clash = sorted(k for k in obj if k in reserved and k not in consumed)
    if clash:
        raise BulkError(
            f"line {line}: key(s) {clash} would clash with the output's own "
            f"{'/'.join(sorted(reserved))}; rename them"
        )
    content: dict[str, str] = {}
    for kind, key in fields.inputs:
        value = obj.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise BulkError(f"line {line}: {key} must be a string, got {type(value).__name__}")
        content[kind] = value
    if not content:
        raise BulkError(
            f"line {line}: has neither {fields.describe()} (its keys: {', '.join(map(str, obj))})"
        )
    image = content.get("image")
    if image is not None and image.strip() and not _has_scheme(image):
        content["image"] = os.fspath(base / image)
    ident = obj.get(fields.id)
    if ident is not None and not isinstance(ident, (str, int)):
        raise BulkError(f"line {line}: {fields.id} must be a string or an integer")
    meta = {k: v for k, v in obj.items() if k not in consumed}
    return Entry(line, ident, content, meta)


def _has_scheme(value: str) -> bool:
    match = _SCHEME_RE.match(value)
    return match is not None and len(match.group(0)) > 2  # not a drive letter ("C:")


def _is_stdout(output: str | None) -> bool:
    return output is None or output == "-"


def _is_stdin(manifest: Path) -> bool:
    return str(manifest) == "-"


class _Manifest:
    """The manifest's entries after ``skip`` lines; invalid lines end it or are recorded."""

    def __init__(
        self, path: Path, skip: int, errors: JsonLinesWriter | None, fields: Fields
    ) -> None:
        self.path = path
        self.skip = skip
        self.errors = errors
        self.fields = fields
        self.error: BulkError | None = None

    def entries(self) -> Iterator[Entry]:
        base = Path.cwd() if _is_stdin(self.path) else self.path.parent
        with _open_manifest(self.path) as fh:
            for number, raw in enumerate(fh, start=1):
                if number <= self.skip or not raw.strip():
                    continue
                try:
                    yield _entry(raw, number, base, self.fields)
                except BulkError as exc:
                    if self.errors is None:
                        self.error = exc
                        return
                    self.errors.write({"line": number, "error": str(exc)})


def _open_manifest(path: Path) -> AbstractContextManager[IO[bytes]]:
    """The manifest's bytes: the file, or stdin for ``-`` (left open)."""
    return nullcontext(sys.stdin.buffer) if _is_stdin(path) else path.open("rb")


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


# -- the client -------------------------------------------------------------------------------


def _qps(value: str) -> float | str | None:
    if value in ("off", "none", "None"):
        return None
    if value == "adaptive":
        return value
    try:
        rate = float(value)
    except ValueError:
        rate = 0.0
    if not rate > 0:
        raise BulkError(f"--qps must be 'adaptive', a number above 0 or 'off', got {value!r}")
    return rate


def _make_client(args: argparse.Namespace) -> MultiModalEmbeddingClient:
    problem = missing_credentials(args.endpoint, args.api_key)
    if problem is not None:
        raise BulkError(problem)
    try:
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
            downscale_oversized=args.downscale_oversized,
        )
    except ConfigurationError as exc:
        text = str(exc)
        if "endpoint" in text:
            text = f"--endpoint / ${ENV_ENDPOINT}: {text}"
        elif "Pillow" in text:
            wanted = [
                option
                for option, given in (
                    ("--image-max-side", args.image_max_side is not None),
                    ("--downscale-oversized", args.downscale_oversized),
                )
                if given
            ] or ["shrinking images"]
            needs = "need" if len(wanted) > 1 else "needs"
            text = f"{' and '.join(wanted)} {needs} Pillow: pip install 'opensearch-mm[images]'"
        raise BulkError(text) from None


def _summarize(report: JobReport, client: MultiModalEmbeddingClient) -> None:
    """The summary line, after a note if requests in flight held the job back."""
    bound = client.in_flight_bound()
    if bound is not None:
        say(in_flight_note(bound))
    say(report.line())


def _failure(
    exc: OpenSearchMMError, client: MultiModalEmbeddingClient, args: argparse.Namespace
) -> tuple[str, str, bool]:
    """``(problem, fix, transient)`` of a failed job, in the command's terms."""
    found = explain(
        exc,
        endpoint=client.base_url,
        workspace=client.workspace,
        model=client.model,
        retries=args.max_retries,
    )
    return found.message, found.fix, found.transient


# -- running ----------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    """Run the job; returns the exit status."""
    return_large_buffers()  # keeps an image job's RSS flat whatever its length
    try:
        return _run(args)
    except (BulkError, SinkError) as exc:
        say(f"error: {exc}")
        return EXIT_INVALID


def _run(args: argparse.Namespace) -> int:
    inputs: list[tuple[str, str]] = args.inputs or []
    if args.manifest is not None and inputs:
        raise BulkError("give either a manifest or --text/--image inputs, not both")
    if args.manifest is None and not inputs:
        raise BulkError("nothing to embed: give --text/--image, or a manifest ('-' for stdin)")
    if args.resume and (args.manifest is None or _is_stdout(args.output)):
        raise BulkError("--resume needs a manifest and an output file (-o PATH)")
    if args.resume and args.overwrite:
        raise BulkError("give --resume or --overwrite, not both")
    if args.manifest is None:
        return _run_direct(args, inputs)
    if args.output is None:
        raise BulkError("a manifest job needs -o PATH (or -o - for stdout)")
    return _run_manifest(args)


def _check_extras(args: argparse.Namespace) -> None:
    if args.npy is not None:
        require_numpy("--npy")
    if not _is_stdout(args.output) and is_parquet(Path(args.output)):
        require_pyarrow(f"-o {args.output}")
    if args.progress:
        try:
            import tqdm  # noqa: F401
        except ImportError:
            raise BulkError(
                "--progress needs tqdm: pip install 'opensearch-mm[progress]'"
            ) from None


def _check_npy(args: argparse.Namespace) -> None:
    if args.npy is not None:
        check_writable(args.npy, "--npy")


@dataclass(frozen=True)
class _File:
    """A file a job reads or writes, as the messages name it."""

    label: str  # "-o out.jsonl", "the manifest (stdin)"...
    option: str  # the option that names it ("" for the manifest: it is what it is)
    path: Path | None = None
    fd: int | None = None  # a standard stream (0 or 1) when there is no path


_Identity = tuple[int, int] | Path


def _identity(file: _File) -> _Identity | None:
    """What makes two names one file: device and inode of an existing regular file (so hard
    links and symlinks count), else the resolved path of a file still to be created. A pipe
    or a device has none: nothing stored there can be destroyed (``/dev/null`` twice is
    fine)."""
    try:
        if file.path is None:
            info = os.fstat(file.fd) if file.fd is not None else None
        elif file.path.exists():
            info = os.stat(file.path)  # follows symlinks
        else:
            try:
                return file.path.resolve()
            except RuntimeError:  # a symlink loop: compare the names as given
                return Path(os.path.abspath(file.path))
    except OSError:  # a closed standard stream, a path that vanished: nothing to clash with
        return None
    if info is None or not stat.S_ISREG(info.st_mode):
        return None
    return info.st_dev, info.st_ino


def _check_distinct(files: list[_File]) -> None:
    """Refuse a job whose files are one file under two names: writing one would destroy the
    other (an output truncating the manifest, the errors file replacing it...)."""
    seen: list[tuple[_Identity, _File]] = []
    for file in files:
        identity = _identity(file)
        if identity is None:
            continue
        for other_identity, other in seen:
            if identity == other_identity:
                raise BulkError(
                    f"{file.label} and {other.label} are the same file: give {file.option} "
                    "a path of its own"
                )
        seen.append((identity, file))


def _output_files(output: Path | None) -> list[_File]:
    """The files ``-o`` stands for: stdout, a JSON-lines file, or Parquet with its journal
    and the temporary file it is written to."""
    if output is None:
        return [_File("-o - (stdout)", "-o", fd=1)]
    files = [_File(f"-o {output}", "-o", output)]
    if is_parquet(output):
        journal, tmp = journal_path(output), output.with_name(output.name + ".tmp")
        files.append(_File(f"the journal {journal} of -o", "-o", journal))
        files.append(_File(f"the temporary file {tmp} of -o", "-o", tmp))
    return files


def _npy_files(args: argparse.Namespace) -> list[_File]:
    return [] if args.npy is None else [_File(f"--npy {args.npy}", "--npy", args.npy)]


def _run_direct(args: argparse.Namespace, inputs: list[tuple[str, str]]) -> int:
    """Embed the --text/--image inputs: all are checked before anything is sent."""
    if args.skip_invalid:
        raise BulkError("--skip-invalid needs a manifest (--text/--image inputs are all checked)")
    labels: list[str] = []
    seen: dict[str, int] = {}
    for kind, _ in inputs:
        seen[kind] = seen.get(kind, 0) + 1
        labels.append(f"--{kind} #{seen[kind]}")
    _check_extras(args)
    output = None if _is_stdout(args.output) else Path(args.output)
    _check_distinct(_output_files(output) + _npy_files(args))
    if output is not None:
        _check_existing(args, output, resumable=False)
        check_writable(output, "-o")
    _check_npy(args)
    client = _make_client(args)
    report = JobReport(inputs=len(inputs))
    contents = [{kind: value} for kind, value in inputs]
    vectors: list[list[float] | None] = [None] * len(inputs)
    failure: OpenSearchMMError | OSError | None = None
    interrupted = False
    stats = StreamStats()
    with retry_notices(report), closing(client):
        try:
            # Every input is checked before anything is sent; then they are streamed, so
            # that the vectors that arrived before a Ctrl-C are there to be written.
            for index, content in enumerate(contents):
                encode_content(content, index, client.encode_options)
            stream = client.embed_iter(contents, stats=stats)
            try:
                for index, vector in enumerate(stream):
                    vectors[index] = vector
            finally:  # stop the requests in flight
                stream.close()
        except InputError as exc:
            label = labels[exc.index] if exc.index is not None else "input"
            raise BulkError(f"{label}: {input_reason(exc)}") from None
        except KeyboardInterrupt:
            interrupted = True
        except OpenSearchMMError as exc:
            failure = exc
            partial = exc.partial
            if partial is not None:
                for j, got in enumerate(partial.embeddings):
                    if 0 <= partial.offset + j < len(vectors):
                        vectors[partial.offset + j] = got
        finally:
            report.usage, report.requests = stats.usage, stats.requests
    records = [
        {"input": number, kind: value, "embedding": vector}
        for number, ((kind, value), vector) in enumerate(zip(inputs, vectors, strict=True), 1)
        if vector is not None
    ]
    where = "stdout" if output is None else str(output)
    try:
        sink = _write_direct(records, output)
    except OSError as exc:
        if output is None and _reader_gone(exc):
            return _quiet_broken_pipe()
        if output is None:  # stdout itself: nowhere else to put them
            say(f"failed: cannot write stdout ({exc.strerror or exc})")
            _summarize(report, client)
            return EXIT_API
        # The vectors are paid for: rather than lose them, put them on stdout.
        say(f"failed: cannot write {output} ({exc.strerror or exc}); the vectors follow on stdout")
        sink = _write_direct(records, None)
        failure = failure or exc
        where = "stdout"
    if isinstance(failure, OSError):
        _summarize(report, client)
        return EXIT_API
    if interrupted:
        if sink.count:
            say(f"interrupted: {sink.count} of {len(inputs)} inputs embedded, written to {where}")
        else:
            say("interrupted: nothing written")
        report.inputs = sink.count
        _summarize(report, client)
        return EXIT_INTERRUPTED
    if failure is not None:
        problem, fix, _ = _failure(failure, client, args)
        say(f"failed: {problem}")
        if fix:
            say(f"to fix: {fix}")
        missing = [label for label, v in zip(labels, vectors, strict=True) if v is None]
        if sink.count:
            shown = ", ".join(missing[:10]) + (
                f" and {len(missing) - 10} more" if missing[10:] else ""
            )
            say(
                f"{sink.count} of {len(inputs)} inputs embedded, written to {where}; "
                f"not embedded: {shown}"
            )
        else:
            say("no input was embedded")
        _summarize(report, client)
        return EXIT_API
    if output is not None:
        say(f"done: {sink.count} vectors in {output}")
    if args.npy is not None:
        rows = save_npy([v for v in vectors if v is not None], args.npy)
        say(f"wrote {rows} vectors to {args.npy}")
    _summarize(report, client)
    return EXIT_OK


def _reader_gone(exc: OSError) -> bool:
    """Whether writing stdout failed because its reader closed the pipe (``| head``)."""
    return isinstance(exc, BrokenPipeError) or exc.errno == errno.EPIPE


def _quiet_broken_pipe() -> int:
    """Stop as a Unix tool does when the reader of its stdout has gone: nothing on stderr,
    exit status 141 (what a shell reports for a process killed by SIGPIPE, 128 + 13).

    Python ignores SIGPIPE, so the write raises EPIPE instead of ending the process. The
    status is 141 rather than 0 because the job did not finish: ``yes | head`` reports
    the same, and a script under ``set -o pipefail`` can tell (and accept 141 as it does
    for other tools). stdout is pointed at /dev/null so that the interpreter's last flush
    of what is still buffered does not complain on stderr either.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # pragma: no cover - no file descriptor behind stdout
        pass
    return EXIT_PIPE


def _write_direct(records: list[dict[str, Any]], output: Path | None) -> Sink:
    """Write the records of a direct-mode call to ``output`` (``None``: stdout)."""
    sink: Sink = StdoutWriter(keep=False)
    if output is not None:
        sink = (
            ParquetWriter(output, 0, key="input")
            if is_parquet(output)
            else (JsonLinesWriter(output, 0))
        )
    try:
        for record in records:
            sink.write(record)
    finally:
        sink.close()
    if isinstance(sink, ParquetWriter) and sink.count:
        sink.finish()
    return sink


def _check_existing(args: argparse.Namespace, output: Path, *, resumable: bool) -> None:
    """Refuse to touch an existing output unless --resume or --overwrite says how."""
    journal = journal_path(output) if is_parquet(output) else None
    exists = output.exists() and (output.is_dir() or output.stat().st_size > 0)
    name = str(output)
    # An empty journal holds nothing to resume (a job that failed before its first vector).
    if journal is not None and journal.is_file() and journal.stat().st_size > 0:
        if not exists:  # only the journal: name it as what it is
            name = f"{journal} (the journal of {output})"
        exists = True
    if output.is_dir():
        raise BulkError(f"-o {output} is a directory; give a file name")
    if exists and not (args.resume or args.overwrite):
        hint = (
            "--resume to continue it, --overwrite to start over"
            if resumable
            else ("--overwrite to replace it")
        )
        raise BulkError(f"{name} exists: pass {hint}")


@dataclass
class _Plan:
    """Where a manifest job writes and where it starts."""

    output: Path | None  # None: stdout
    errors: Path
    skip: int = 0
    kept: int = 0
    start: int = 0
    finished: bool = False  # a complete Parquet output (resume: nothing left to write)


def _plan(args: argparse.Namespace) -> _Plan:
    """Check every path before anything is sent; read where a resumed job starts."""
    manifest: Path = args.manifest
    if not _is_stdin(manifest):
        if not manifest.is_file():
            raise BulkError(f"manifest {manifest} is not a file")
        if not os.access(manifest, os.R_OK):
            raise BulkError(f"manifest {manifest} cannot be read")
    to_stdout = _is_stdout(args.output)
    if to_stdout and args.skip_invalid and args.errors is None:
        raise BulkError("--skip-invalid with the output on stdout needs --errors PATH")
    _check_extras(args)
    output = None if to_stdout else Path(args.output)
    errors = args.errors or Path(f"{output}.errors.jsonl")
    plan = _Plan(output, errors)
    files = [
        _File("the manifest (stdin)", "", fd=0)
        if _is_stdin(manifest)
        else _File(f"the manifest {manifest}", "", manifest),
        *_output_files(output),
    ]
    if args.skip_invalid:
        errors_label = (
            f"--errors {errors}" if args.errors is not None else f"the errors file {errors}"
        )
        files.append(_File(errors_label, "--errors", errors))
    _check_distinct(files + _npy_files(args))
    if output is not None:
        _check_existing(args, output, resumable=True)
        if args.resume and is_stream(output):
            raise BulkError(
                f"--resume needs -o to be a file: {output} is a pipe or a device, which keeps "
                "no record of what it was given; run without --resume, or give -o a file"
            )
        check_writable(output, "-o")
        if is_parquet(output):
            check_writable(journal_path(output), "-o (its journal)")
    if args.skip_invalid:
        check_writable(errors, "--errors" if args.errors is not None else "the errors file")
    _check_npy(args)
    if output is not None and args.resume:
        if is_parquet(output):
            journal = journal_path(output)
            if journal.exists():
                plan.skip, plan.kept, plan.start = read_progress(journal)
            elif output.exists():
                plan.skip, plan.kept = parquet_progress(output)
                plan.finished = True
        else:
            plan.skip, plan.kept, plan.start = read_progress(output)
    return plan


def _lines_after(manifest: Path, skip: int) -> bool:
    """Whether ``manifest`` has a non-blank line after line ``skip``."""
    # From stdin too: a resumed job reads the manifest as the first run did (the same
    # lines piped again), and a finished Parquet file is only complete if they end where
    # it does; refusing stdin would make a piped job the one kind that cannot resume.
    with _open_manifest(manifest) as fh:
        return any(raw.strip() for number, raw in enumerate(fh, 1) if number > skip)


def _run_manifest(args: argparse.Namespace) -> int:
    manifest: Path = args.manifest
    plan = _plan(args)
    output = plan.output
    where = "stdout" if output is None else str(output)
    if plan.finished:
        if _lines_after(manifest, plan.skip):
            raise BulkError(
                f"{output} is a finished Parquet file ({plan.kept} vectors up to manifest "
                f"line {plan.skip}) and the manifest has more lines; a Parquet file cannot be "
                "extended: pass --overwrite to redo the job"
            )
        say(f"done: {plan.kept} vectors in {where} (already complete)")
        return _finish_npy(args, output)
    client = _make_client(args)
    # Only a file is trimmed or replaced: a pipe or a device (--errors /dev/null) is written
    # as it is, and unlinking one would remove the device node itself.
    if args.skip_invalid and plan.errors.is_file():
        if args.resume:
            _trim_errors(plan.errors, plan.skip)
        else:
            plan.errors.unlink()
    if plan.kept:
        say(f"resuming after manifest line {plan.skip} ({plan.kept} vectors already written)")
    sink: Sink
    if output is None:
        sink = StdoutWriter(keep=args.npy is not None)
    elif is_parquet(output):
        sink = ParquetWriter(output, plan.start)
    else:
        # A pipe or a device cannot be read back for the .npy: keep the vectors, as stdout does.
        sink = JsonLinesWriter(output, plan.start, keep=args.npy is not None and is_stream(output))
    errors: JsonLinesWriter | None = None
    recorded = 0  # invalid lines already in the errors file (those a resumed job keeps)
    if args.skip_invalid:
        size = plan.errors.stat().st_size if plan.errors.is_file() else 0
        if size:
            recorded = count_lines(plan.errors)
        errors = JsonLinesWriter(plan.errors, size)
    progress: Progress | None = None
    if args.progress:
        total = None if _is_stdin(manifest) else max(count_lines(manifest) - plan.skip, 0)
        progress = Progress(total, start=plan.skip)
    job = _Job(client, sink, errors, progress)
    source = _Manifest(manifest, plan.skip, errors, _fields(args))
    status = EXIT_OK
    # Until the job ends, a Parquet job's vectors are in its journal: name it as what it is.
    held = where
    if output is not None and is_parquet(output):
        held = f"{journal_path(output)} (the journal of {output})"
    resume = "run the same command with --resume" if output is not None else ""
    again = "run the same command again" if output is not None else ""

    def kept() -> int:
        return plan.kept + sink.count

    def say_left(after: str, kept_in: str = "in") -> None:
        """What the job leaves, and how to go on ``after`` the problem is mended."""
        if not kept():
            say(f"nothing written to {where}" + (f"; {after}, then {again}" if again else ""))
        else:
            then = f"; {after}, then {resume} to continue" if resume else ""
            say(f"{kept()} vectors {kept_in} {held}{then}")

    with retry_notices(job.report), closing(client):
        try:
            job.run(source.entries())
            if source.error is not None:
                raise source.error
        except KeyboardInterrupt:
            status = EXIT_INTERRUPTED
            job.close()
            if not kept():
                say(f"interrupted: nothing written to {where}")
            else:
                then = f"; {resume} to continue" if resume else ""
                say(f"interrupted: {kept()} vectors in {held}{then}")
        except BulkError as exc:
            job.close()
            say(f"error: {exc}")
            say_left("fix it")
            _summarize(job.report, client)
            return EXIT_INVALID
        except OpenSearchMMError as exc:
            status = EXIT_API
            job.close()
            problem, fix, transient = _failure(exc, client, args)
            if isinstance(exc, InvalidParameterError) and job.pending:
                problem += f"; the request started at manifest line {job.pending[0].line}"
                if not args.skip_invalid:
                    fix += ", or add --skip-invalid to record such inputs and go on"
            say(f"failed: {problem}")
            if fix:
                say(f"to fix: {fix}")
            if not resume:
                say(f"{kept()} vectors written to {where}")
            elif not kept():  # --resume would keep nothing: the command as it is will do
                say(f"nothing written to {where}" + (f"; {again}" if transient else ""))
            elif transient:
                say(f"{kept()} vectors in {held}; {resume} to continue")
            else:
                say(f"{kept()} vectors in {held}; once fixed, {resume} to keep them")
        except OSError as exc:
            if output is None and _reader_gone(exc):
                quiet = _quiet_broken_pipe()
                job.close()
                return quiet
            status = EXIT_API
            job.close()
            name = getattr(exc, "filename", None) or where
            say(f"failed: cannot write {name} ({exc.strerror or exc})")
            say_left("once it can be written", kept_in="kept in")
        finally:
            job.close()
    if status != EXIT_OK:
        _summarize(job.report, client)
        return status
    if isinstance(sink, ParquetWriter):
        sink.finish()
    invalid = recorded + errors.count if errors is not None else 0
    skipped = f", {invalid} invalid lines in {plan.errors}" if invalid else ""
    say(f"done: {kept()} vectors in {where}{skipped}")
    kept_rows = sink.rows if isinstance(sink, (StdoutWriter, JsonLinesWriter)) else None
    if kept_rows is not None and args.npy is not None:
        rows = save_npy(kept_rows, args.npy)
        say(f"wrote {rows} vectors to {args.npy}")
        _summarize(job.report, client)
        return EXIT_OK
    status = _finish_npy(args, output)
    _summarize(job.report, client)
    return status


def _finish_npy(args: argparse.Namespace, output: Path | None) -> int:
    if args.npy is None or output is None:
        return EXIT_OK
    try:
        rows = write_npy(output, args.npy)
    except OSError as exc:
        say(
            f"failed: cannot write --npy {args.npy} ({exc.strerror or exc}); the vectors are "
            f"in {output}: run the same command with --resume to write the .npy again"
        )
        return EXIT_API
    say(f"wrote {rows} vectors to {args.npy}")
    return EXIT_OK


class _Job:
    """Streams entries through the client, writing each vector as it comes, in order."""

    def __init__(
        self,
        client: MultiModalEmbeddingClient,
        sink: Sink,
        errors: JsonLinesWriter | None,
        progress: Progress | None,
    ) -> None:
        self.client = client
        self.sink = sink
        self.errors = errors
        self.progress = progress
        self.pending: deque[Entry] = deque()
        self.report = JobReport()
        self.stats = StreamStats()
        self._closed = False

    def _write(self, embedding: list[float]) -> None:
        entry = self.pending.popleft()
        self.sink.write(entry.record(embedding))
        self.report.inputs += 1
        if self.progress is not None:
            self.progress.at(entry.line)

    def _contents(self, source: Iterator[Entry]) -> Iterator[dict[str, str]]:
        for entry in source:
            self.pending.append(entry)
            yield entry.content

    def run(self, source: Iterator[Entry]) -> None:
        try:
            while True:
                try:
                    stream = self.client.embed_iter(self._contents(source), stats=self.stats)
                    try:
                        for vector in stream:
                            self._write(vector)
                    finally:  # stop the requests in flight when we stop reading
                        close = getattr(stream, "close", None)
                        if close is not None:
                            close()
                    return
                except InputError as exc:
                    bad = self.pending.popleft()  # the vectors before it were written
                    field = f" ({exc.field})" if exc.field else ""
                    message = f"line {bad.line}{field}: {input_reason(exc)}"
                    if self.errors is None:
                        raise BulkError(message) from None
                    self.errors.write({"line": bad.line, "error": message})
                    self.pending.clear()
                except InvalidParameterError as exc:
                    if self.errors is None or exc.partial is None:
                        self._keep_arrived(exc)
                        raise
                    source = self._skip_refused(exc, exc.partial, source)
                except OpenSearchMMError as exc:
                    self._keep_arrived(exc)
                    raise
        finally:
            self.report.requests = self.stats.requests
            self.report.usage = self.stats.usage

    def _keep_arrived(self, exc: OpenSearchMMError) -> None:
        """Write the vectors that arrived in order after the last write."""
        if exc.partial is None:
            return
        for got in exc.partial.embeddings:
            if got is None:
                break
            self._write(got)

    def _skip_refused(
        self, exc: InvalidParameterError, partial: PartialResult, source: Iterator[Entry]
    ) -> Iterator[Entry]:
        """Under ``--skip-invalid``: write what arrived, record each input the service
        refused as invalid on its own in the errors file, and return the entries to go on
        with (those read but not answered, sent again, then the rest of the manifest).

        An input is skipped only when the service refused it alone (the client halves a
        refused request until its bad inputs are alone; a repeat of the same input shares
        its refusal): a request refused whatever it holds, or an input that failed for
        another reason, stops the job as without ``--skip-invalid``.
        """
        assert self.errors is not None
        read = list(self.pending)  # pending[j] is input partial.offset + j of this call
        held: dict[int, list[int]] = {}  # id(error) -> the inputs it refused
        for index, error in partial.errors.items():
            if isinstance(error, InvalidParameterError):
                held.setdefault(id(error), []).append(index)

        def alone(index: int) -> bool:
            error = partial.errors.get(index)
            if not isinstance(error, InvalidParameterError):
                return False
            contents = {
                orjson.dumps(read[i - partial.offset].content, option=orjson.OPT_SORT_KEYS)
                for i in held[id(error)]
                if 0 <= i - partial.offset < len(read)
            }
            return len(contents) == 1

        skipped = 0
        for j, vector in enumerate(partial.embeddings[: len(read)]):
            if vector is not None:
                self._write(vector)
                continue
            if not alone(partial.offset + j):
                break
            bad = self.pending.popleft()
            error = partial.errors[partial.offset + j]
            assert isinstance(error, InvalidParameterError)
            field = f" ({next(iter(bad.content))})" if len(bad.content) == 1 else ""
            self.errors.write(
                {"line": bad.line, "error": f"line {bad.line}{field}: {refused_reason(error)}"}
            )
            skipped += 1
            if self.progress is not None:
                self.progress.at(bad.line)
        if not skipped:  # the first input without a vector was not refused on its own
            raise exc
        again = list(self.pending)  # read, not answered: sent again, in order
        self.pending.clear()
        return itertools.chain(again, source)

    def close(self) -> None:
        """Close the outputs (what is complete stays), once."""
        if self._closed:
            return
        self._closed = True
        try:
            self.sink.close()
        finally:
            if self.errors is not None:
                self.errors.close()
            if self.progress is not None:
                self.progress.close()
