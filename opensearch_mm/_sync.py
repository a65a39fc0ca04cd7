"""The synchronous driver: one request with retries, many with bounded concurrency."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import httpx

from ._driver import NOT_SENT, DriverBase, DriverConfig, Halt, Outcome, map_transport_error
from .batching import Batch
from .errors import OpenSearchMMError
from .protocol import BatchResponse

__all__ = ["SyncDriver"]


class SyncDriver(DriverBase):
    """Sends batches over one shared ``httpx.Client`` (thread-safe, pooled)."""

    def __init__(self, http: httpx.Client, config: DriverConfig) -> None:
        super().__init__(config)
        self.http = http
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
                result = self.check(response, batch, dimensions)
            except httpx.HTTPError as exc:
                error = map_transport_error(exc)
            except OpenSearchMMError as exc:
                error = exc
            else:
                self.succeeded(ticket)
                return result
            time.sleep(self.retry_delay(error, ticket, retries))
            retries += 1

    def _outcome(self, batch: Batch, dimensions: int | None, halt: Halt) -> Outcome:
        if halt():
            return NOT_SENT
        try:
            return self.send(batch, dimensions)
        except OpenSearchMMError as exc:
            halt.note(exc)
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
        halt = Halt(stop)
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
                    done.set_result(self._outcome(batch, dimensions(), halt))
                    pending.append((batch, done))
                else:
                    future = self._pool().submit(self._outcome, batch, dimensions(), halt)
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
