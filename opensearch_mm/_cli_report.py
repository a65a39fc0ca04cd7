"""What ``opensearch-mm embed`` tells the user while and after it works: a line on stderr
for every retry that waits, a progress bar with a total, and a summary line at the end."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import (
    APIConnectionError,
    APIError,
    APIResponseError,
    APITimeoutError,
    RateLimitError,
)
from .ratelimit import InFlightBound
from .results import Usage

__all__ = ["JobReport", "Progress", "RetryNotices", "count_lines", "in_flight_note", "say"]

LOGGER = "opensearch_mm"


def say(message: str, command: str = "embed") -> None:
    """One line on stderr, prefixed with the command (above a progress bar, if any)."""
    Progress.write(f"opensearch-mm {command}: {message}")


def _what_failed(error: object) -> str:
    if isinstance(error, RateLimitError):
        return "throttled"
    if isinstance(error, APIError):
        return f"server error (HTTP {error.status_code})"
    if isinstance(error, APITimeoutError):
        return "no answer in time"
    if isinstance(error, APIConnectionError):
        return "connection failed"
    if isinstance(error, APIResponseError):
        return "malformed answer"
    return type(error).__name__


@dataclass
class JobReport:
    """Counts for the summary line of a job."""

    inputs: int = 0
    requests: int = 0
    usage: Usage = field(default_factory=Usage)
    retries: int = 0
    throttled: int = 0
    started: float = field(default_factory=time.monotonic)

    def line(self) -> str:
        """``summary: 3,000 inputs, 94 requests, ...`` (counts of this run only)."""
        u = self.usage
        tokens = _count(u.token_count, "token")
        if u.text_token or u.image_token:
            tokens += f" ({u.text_token:,} text, {u.image_token:,} image)"
        return (
            f"summary: {_count(self.inputs, 'input')}, {_count(self.requests, 'request')}, "
            f"{tokens}, {_count(u.image, 'image')}, {_count(self.retries, 'retry', 'retries')} "
            f"({self.throttled:,} throttled), {time.monotonic() - self.started:.1f} s"
        )


def in_flight_note(bound: InFlightBound) -> str:
    """``note: 8 requests in flight held this job to ...``: raise ``--max-concurrency``."""
    return (
        f"note: {bound.max_in_flight} requests in flight held this job to about "
        f"{bound.reachable:.1f} requests/s (answers took {bound.answer_time:.2f} s); the rate "
        f"limit allows {bound.allowed:.1f}/s: --max-concurrency {bound.needed} would reach it"
    )


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


class RetryNotices(logging.Handler):
    """Turns the core's retry log records into ``throttled, retrying in 2.0 s (3/6)``.

    The core logs every retry at INFO on the ``opensearch_mm`` logger with the extras
    ``retry_delay``, ``retry_number``, ``max_retries`` and ``retry_error`` (``shut_for``
    instead of the two counts for a retry that waits out a shut throttle and uses none up);
    other records are left alone.
    """

    def __init__(self, report: JobReport, write: Callable[[str], None]) -> None:
        super().__init__(logging.INFO)
        self.report = report
        self._write = write

    def emit(self, record: logging.LogRecord) -> None:
        delay = getattr(record, "retry_delay", None)
        if not isinstance(delay, (int, float)):
            return
        error = getattr(record, "retry_error", None)
        number = getattr(record, "retry_number", "?")
        limit = getattr(record, "max_retries", "?")
        self.report.retries += 1
        if isinstance(error, RateLimitError):
            self.report.throttled += 1
        shut = getattr(record, "shut_for", None)
        count = f"{number}/{limit}"
        if isinstance(shut, (int, float)):
            count = f"nothing let through for {shut:.0f} s: waiting, no retry used"
        try:
            self._write(f"{_what_failed(error)}, retrying in {delay:.1f} s ({count})")
        except Exception:  # pragma: no cover - never let a notice break the job
            self.handleError(record)


@contextmanager
def retry_notices(report: JobReport, command: str = "embed") -> Iterator[RetryNotices]:
    """Attach a :class:`RetryNotices` handler to the core's logger for the job's duration."""
    logger = logging.getLogger(LOGGER)
    handler = RetryNotices(report, lambda text: say(text, command))
    previous = logger.level
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def count_lines(path: Path) -> int:
    """Lines in a file, counted in 1 MB blocks (about 1 GB/s; a last line without a
    newline counts)."""
    lines = 0
    last = b"\n"
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            lines += block.count(b"\n")
            last = block[-1:]
    return lines + (last != b"\n")


class Progress:
    """A tqdm bar over manifest lines (``total`` known when the manifest is a file)."""

    _active: Any = None

    def __init__(self, total: int | None, *, start: int = 0) -> None:
        try:
            from tqdm.auto import tqdm
        except ImportError:
            raise ImportError(
                "--progress needs tqdm: pip install 'opensearch-mm[progress]'"
            ) from None
        self._bar = tqdm(total=total, unit="line", desc="embedding", dynamic_ncols=True)
        self._start = start
        Progress._active = self._bar

    def at(self, line: int) -> None:
        """Manifest line ``line`` is done."""
        done = line - self._start
        if done > self._bar.n:
            self._bar.update(done - self._bar.n)

    def close(self) -> None:
        Progress._active = None
        self._bar.close()

    @classmethod
    def write(cls, text: str) -> None:
        """Print ``text`` on stderr without tearing an active bar."""
        if cls._active is not None:
            cls._active.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)
