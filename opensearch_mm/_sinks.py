"""Where ``opensearch-mm embed`` writes vectors: JSON lines, stdout, Parquet and ``.npy``.

Every writer keeps what it has written safe at any moment: JSON lines are flushed line by
line (a torn last line is cut on close and on resume); a Parquet job writes the same kind
of journal next to the output (``OUTPUT.partial``, one line per vector with the vector as
base64 float32) and turns it into the Parquet file only when the job has ended, so a job
killed at any point resumes from the journal.
"""

from __future__ import annotations

import array
import base64
import contextlib
import errno
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Protocol

import orjson

__all__ = [
    "JsonLinesWriter",
    "ParquetWriter",
    "Sink",
    "SinkError",
    "StdoutWriter",
    "check_writable",
    "is_parquet",
    "is_stream",
    "journal_path",
    "parquet_progress",
    "read_progress",
    "require_numpy",
    "require_pyarrow",
    "save_npy",
    "write_npy",
]

_ROWS_PER_GROUP = 8192


class SinkError(Exception):
    """An output cannot be written (the message names it and says why)."""


class Sink(Protocol):
    """A destination for the records of one job."""

    count: int

    def write(self, record: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


def is_parquet(path: Path) -> bool:
    """Whether ``-o PATH`` asks for Parquet (by its suffix)."""
    return path.suffix.lower() in (".parquet", ".pq")


def is_stream(path: Path) -> bool:
    """Whether ``path`` exists and is neither a regular file nor a directory: a pipe, a
    terminal, ``/dev/null``... It is written as it is, never truncated, sought or read back.
    """
    return path.exists() and not path.is_file() and not path.is_dir()


def _probe_stream(path: Path) -> None:
    """Open a pipe or a device for writing and close it again, writing nothing."""
    # Non-blocking, so a named pipe nobody reads yet cannot hang the check: the job then
    # waits for its reader as any writer would.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a named pipe with no reader yet
            return
        raise
    os.close(fd)


def journal_path(path: Path) -> Path:
    """The journal of a Parquet job writing ``path``."""
    return path.with_name(path.name + ".partial")


def require_pyarrow(option: str) -> Any:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise SinkError(
            f"{option} writes Parquet, which needs pyarrow: pip install 'opensearch-mm[parquet]'"
        ) from None
    return pyarrow


def require_numpy(option: str) -> Any:
    try:
        import numpy
    except ImportError:
        raise SinkError(f"{option} needs numpy: pip install 'opensearch-mm[numpy]'") from None
    return numpy


def check_writable(path: Path, option: str) -> None:
    """Make sure ``path`` can be written before any request is paid for.

    Raises:
        SinkError: naming ``option`` and the reason (missing directory, a directory in
            the way, no permission, read-only file system...).
    """
    if path.is_dir():
        raise SinkError(f"{option} {path} is a directory; give a file name")
    parent = path.parent
    if not parent.exists():
        raise SinkError(f"{option} {path}: directory {parent} does not exist")
    if not parent.is_dir():
        raise SinkError(f"{option} {path}: {parent} is not a directory")
    try:
        if is_stream(path):
            _probe_stream(path)
        elif path.exists():
            with path.open("r+b"):  # opens for writing without changing a byte
                pass
        else:
            # The only sure test (permissions, read-only mounts, quotas on inodes...). A
            # hidden sibling is created, never the output itself: whoever watches the output
            # path must not see it appear and vanish before the job starts.
            with tempfile.NamedTemporaryFile(dir=parent, prefix=f".{path.name}.", suffix=".probe"):
                pass
    except OSError as exc:
        raise SinkError(f"{option} {path}: cannot write there ({exc.strerror or exc})") from None


# -- JSON lines -------------------------------------------------------------------------------


def read_progress(output: Path) -> tuple[int, int, int]:
    """``(last manifest line written, records kept, bytes kept)`` of a JSON-lines output.

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


class JsonLinesWriter:
    """Appends JSON lines after ``start`` bytes and remembers the size of the complete ones.

    ``keep`` also keeps the records' vectors in ``rows``, for a ``.npy`` that cannot be
    read back from ``path`` (a pipe or a device).
    """

    def __init__(self, path: Path, start: int, *, keep: bool = False) -> None:
        self.path = path
        self.rows: list[list[float]] | None = [] if keep else None
        # A device or a pipe (/dev/null, /dev/stdout) is written as it is, never cut or
        # sought: it cannot be (a pipe), and whatever it has taken is out of reach.
        self.regular = not is_stream(path)
        self.fh: IO[bytes]
        if self.regular:
            self.fh = path.open("r+b" if path.exists() else "wb")
            self.fh.truncate(start)
            self.fh.seek(start)
        else:
            self.fh = path.open("ab")
        self.good = start
        self.count = 0

    def write(self, record: dict[str, Any]) -> None:
        data = orjson.dumps(record) + b"\n"
        self.fh.write(data)
        self.fh.flush()
        self.good += len(data)
        self.count += 1
        if self.rows is not None:
            self.rows.append(record["embedding"])

    def close(self) -> None:
        """Flush, cut anything after the last complete line (an interrupted write).

        Never raises: after a failed write (a full disk) what is on disk up to the last
        complete line stays, and a resumed job cuts whatever follows it.
        """
        if self.fh.closed:
            return
        for step in (self.fh.flush, self._cut, self.fh.close):
            with contextlib.suppress(OSError):
                step()
        if not self.fh.closed:  # pragma: no cover - close() raised before closing
            self.fh.raw.close()  # type: ignore[attr-defined]

    def _cut(self) -> None:
        if self.regular:
            self.fh.truncate(self.good)


class StdoutWriter:
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


# -- Parquet ----------------------------------------------------------------------------------


class ParquetWriter:
    """Writes a Parquet file through a resumable journal.

    ``key`` names the record's position column (``line`` in a manifest job, ``input`` in
    direct mode). The journal holds one JSON line per record: ``{"line": n, "meta":
    {...}, "v": base64 float32}``; :meth:`finish` turns it into ``path`` (columns: the
    key, then the other keys of the records in first-seen order, then ``embedding`` as a
    fixed-size list of float32) and removes it.
    """

    def __init__(self, path: Path, start: int, *, key: str = "line") -> None:
        self.path = path
        self.key = key
        self.journal = JsonLinesWriter(journal_path(path), start)
        self.count = 0

    def write(self, record: dict[str, Any]) -> None:
        meta = {k: v for k, v in record.items() if k not in (self.key, "embedding")}
        vector = array.array("f", record["embedding"]).tobytes()
        self.journal.write(
            {"line": record[self.key], "meta": meta, "v": base64.b64encode(vector).decode()}
        )
        self.count += 1

    def close(self) -> None:
        self.journal.close()

    def finish(self) -> int:
        """Write the Parquet file from the journal, then remove the journal; returns rows."""
        self.close()
        rows = journal_to_parquet(self.journal.path, self.path, key=self.key)
        self.journal.path.unlink()
        return rows


def _journal(path: Path) -> Iterator[dict[str, Any]]:
    with path.open("rb") as fh:
        for raw in fh:
            if raw.endswith(b"\n"):
                yield orjson.loads(raw)


def _column_type(kinds: set[type]) -> str:
    if kinds <= {str}:
        return "string"
    if kinds == {bool}:
        return "bool"
    if kinds == {int}:
        return "int64"
    if kinds <= {int, float}:
        return "float64"
    return "json"  # nested or mixed values: their JSON text


def _cell(value: Any, kind: str) -> Any:
    if kind != "json" or value is None or isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def journal_to_parquet(journal: Path, output: Path, *, key: str = "line") -> int:
    """Turn a journal into a Parquet file written atomically (temp file, then rename)."""
    pa = require_pyarrow("-o")
    import pyarrow.parquet as pq

    kinds: dict[str, set[type]] = {}
    dim = 0
    for record in _journal(journal):
        if not dim:
            dim = len(base64.b64decode(record["v"])) // 4
        for name, value in record["meta"].items():
            seen = kinds.setdefault(name, set())
            if value is not None:
                seen.add(type(value))
    columns = {name: _column_type(seen) for name, seen in kinds.items()}
    arrow_types = {"string": pa.string(), "bool": pa.bool_(), "int64": pa.int64()}
    arrow_types.update(float64=pa.float64(), json=pa.string())
    fields = [pa.field(key, pa.int64(), nullable=False)]
    fields += [pa.field(name, arrow_types[kind]) for name, kind in columns.items()]
    fields.append(pa.field("embedding", pa.list_(pa.float32(), dim)))
    schema = pa.schema(fields)
    tmp = output.with_name(output.name + ".tmp")
    rows = 0
    with pq.ParquetWriter(tmp, schema) as writer:
        for chunk in _chunks(_journal(journal), _ROWS_PER_GROUP):
            values = pa.array(
                memoryview(b"".join(base64.b64decode(r["v"]) for r in chunk)).cast("f"),
                type=pa.float32(),
            )
            arrays = [pa.array([r["line"] for r in chunk], type=pa.int64())]
            arrays += [
                pa.array([_cell(r["meta"].get(name), kind) for r in chunk], type=arrow_types[kind])
                for name, kind in columns.items()
            ]
            arrays.append(pa.FixedSizeListArray.from_arrays(values, dim))
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
            rows += len(chunk)
    os.replace(tmp, output)
    return rows


def _chunks(records: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for record in records:
        chunk.append(record)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def parquet_progress(path: Path, key: str = "line") -> tuple[int, int]:
    """``(last line, rows)`` of a finished Parquet output."""
    require_pyarrow("-o")
    import pyarrow.parquet as pq

    table = pq.read_table(path, columns=[key])
    lines = table.column(key).to_pylist()
    return (max(lines) if lines else 0), len(lines)


# -- .npy ---------------------------------------------------------------------------------


def write_npy(output: Path, npy: Path) -> int:
    """Write every vector of a finished JSON-lines or Parquet output as a float32 ``.npy``."""
    np = require_numpy("--npy")
    if is_parquet(output):
        require_pyarrow("-o")
        import pyarrow.parquet as pq

        table = pq.read_table(output, columns=["embedding"])
        column = table.column("embedding").combine_chunks()
        dim = column.type.list_size
        flat = column.flatten().to_numpy(zero_copy_only=False)
        matrix = np.asarray(flat, dtype=np.float32).reshape(len(column), dim)
        with npy.open("wb") as fh:
            np.save(fh, matrix)
        return len(column)
    rows = 0
    dim = 0
    with output.open("rb") as fh:
        for raw in fh:
            if rows == 0:
                dim = len(orjson.loads(raw)["embedding"])
            rows += 1
    # Written front to back, a row at a time (no memory map): memory stays flat and a pipe
    # or a device (/dev/stdout, /dev/null) takes it as well as a file.
    header = {"descr": "<f4", "fortran_order": False, "shape": (rows, dim)}
    with npy.open("wb") as out, output.open("rb") as fh:
        np.lib.format.write_array_header_1_0(out, header)
        for raw in fh:
            out.write(np.asarray(orjson.loads(raw)["embedding"], dtype="<f4").tobytes())
    return rows


def save_npy(vectors: list[list[float]], npy: Path) -> int:
    """Write ``vectors`` (all of one length) as a float32 ``.npy``."""
    np = require_numpy("--npy")
    dim = len(vectors[0]) if vectors else 0
    matrix = np.asarray(vectors, dtype=np.float32).reshape(len(vectors), dim)
    with npy.open("wb") as fh:
        np.save(fh, matrix)
    return len(vectors)
