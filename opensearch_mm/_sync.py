"""The synchronous driver: one request with retries, many with bounded concurrency."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import httpx

from .batching import Batch
from .errors import APIConnectionError, APITimeoutError, OpenSearchMMError
from .protocol import BatchResponse, parse_response
from .ratelimit import RateLimiter
from .retry import RetryPolicy

__all__ = ["NOT_SENT", "NotSent", "Outcome", "SyncDriver", "map_transport_error"]

logger = logging.getLogger("opensearch_mm")


class NotSent:
    """Outcome of a batch that was never sent because its call stopped first."""


NOT_SENT = NotSent()
Outcome = BatchResponse | BaseException | NotSent


def map_transport_error(exc: httpx.HTTPError) -> OpenSearchMMError:
    """An httpx failure as one of ours (the message never holds headers)."""
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(f"request timed out ({type(exc).__name__})")
    return APIConnectionError(f"connection failed ({type(exc).__name__}: {exc})")


class SyncDriver:
    """Sends batches over one shared ``httpx.Client`` (thread-safe, pooled)."""

    def __init__(
        self,
        http: httpx.Client,
        *,
        url: str,
        headers: dict[str, str],
        retry: RetryPolicy,
        limiter: RateLimiter,
        secrets: tuple[str, ...],
        max_concurrency: int,
    ) -> None:
        self.http = http
        self.url = url
        self.headers = headers
        self.retry = retry
        self.limiter = limiter
        self.secrets = secrets
        self.max_concurrency = max_concurrency
        self._rng = random.Random()
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def send(self, batch: Batch, dimensions: int | None) -> BatchResponse:
        """Send one batch, retrying what is retryable; raise the last error otherwise."""
        body = batch.body()
        retries = 0
        while True:
            ticket = self.limiter.acquire()
            while True:
                if ticket.wait > 0:
                    time.sleep(ticket.wait)
                if self.limiter.confirm(ticket):
                    break
                ticket = self.limiter.acquire()  # the rate was cut while waiting: re-book
            error: OpenSearchMMError
            try:
                response = self.http.post(self.url, content=body, headers=self.headers)
                result = parse_response(
                    response.status_code,
                    response.headers,
                    response.content,
                    expected=len(batch),
                    dimensions=dimensions,
                    secrets=self.secrets,
                )
            except httpx.HTTPError as exc:
                error = map_transport_error(exc)
            except OpenSearchMMError as exc:
                error = exc
            else:
                self.limiter.observe(None, ticket)
                return result
            self.limiter.observe(error, ticket)
            if not self.retry.should_retry(error, retries):
                raise error
            delay = self.retry.delay(error, retries, self._rng)
            logger.debug("retrying in %.2fs after %s", delay, type(error).__name__)
            time.sleep(delay)
            retries += 1

    def _outcome(
        self, batch: Batch, dimensions: int | None, stop: Callable[[], bool]
    ) -> Outcome:
        if stop():
            return NOT_SENT
        try:
            return self.send(batch, dimensions)
        except OpenSearchMMError as exc:
            return exc

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    self.max_concurrency, thread_name_prefix="opensearch-mm"
                )
            return self._executor

    def run(
        self,
        batches: Iterable[Batch],
        *,
        dimensions: Callable[[], int | None],
        window: int,
        stop: Callable[[], bool],
    ) -> Iterator[tuple[Batch, Outcome]]:
        """Yield each batch with its outcome, in order, with at most ``window`` queued.

        Requests run concurrently in the client's pool (``max_concurrency`` threads);
        once ``stop()`` is true no further batch is sent.
        """
        pending: deque[tuple[Batch, Future[Outcome]]] = deque()
        source = iter(batches)
        exhausted = False
        while True:
            while not exhausted and len(pending) < window:
                batch = next(source, None)
                if batch is None:
                    exhausted = True
                    break
                if self.max_concurrency == 1:
                    done: Future[Outcome] = Future()
                    done.set_result(self._outcome(batch, dimensions(), stop))
                    pending.append((batch, done))
                else:
                    future = self._pool().submit(self._outcome, batch, dimensions(), stop)
                    pending.append((batch, future))
            if not pending:
                return
            batch, future = pending.popleft()
            yield batch, future.result()

    def close(self) -> None:
        with self._lock:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None
