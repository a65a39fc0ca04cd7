"""The synchronous driver: one request with retries, many with bounded concurrency."""

from __future__ import annotations

import threading
import time
from collections.abc import Generator, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_any

import httpx

from ._call import NOT_SENT, CallControl, NotSent, Outcome, Split, halving, split_first
from ._driver import DriverBase, DriverConfig, Pending, ReadAhead
from ._request import Done, GiveUp
from .batching import Batch
from .errors import ClientClosedError, OpenSearchMMError
from .protocol import BatchResponse

__all__ = ["SyncDriver"]


def _stopped_within(seconds: float, control: CallControl | None) -> bool:
    """Sleep ``seconds`` (less once ``control`` stops: it wakes this thread); whether it
    stopped."""
    if control is None:
        time.sleep(seconds)
        return False
    return control.wait(seconds)


class SyncDriver(DriverBase):
    """Sends batches over one shared ``httpx.Client`` (thread-safe, pooled)."""

    def __init__(self, http: httpx.Client, config: DriverConfig) -> None:
        super().__init__(config)
        self.http = http
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._closed = False

    def send(
        self,
        batch: Batch,
        dimensions: int | None,
        *,
        at_once: bool = False,
        control: CallControl | None = None,
    ) -> BatchResponse | NotSent:
        """Send one batch, retrying what is retryable; raise the final error otherwise
        (``at_once``: the only request of its call out: see ``DriverBase.request``).
        Once ``control`` stops, a request waiting for its slot is not sent (``NOT_SENT``)
        and one waiting to retry raises its last error."""
        request = self.request(batch, dimensions, at_once=at_once)
        while True:
            slots = request.slot()
            for wait in slots:
                if _stopped_within(wait, control):
                    slots.close()  # (its slot goes back to the limiter)
                    return request.given_up()
            try:
                status, headers, content = self._post(request.body)
            except httpx.HTTPError as exc:
                step = request.transport_failed(exc)
            except BaseException as exc:  # cancelled or interrupted while the request was out
                request.abandoned(exc)
                if isinstance(exc, RuntimeError) and self.http.is_closed:
                    # (httpx: "the client has been closed": close() from another thread)
                    raise ClientClosedError("this client was closed while the call ran") from exc
                raise
            else:
                step = request.answered(status, headers, content)
            if isinstance(step, Done):
                return step.response
            if isinstance(step, GiveUp):
                raise step.error
            if _stopped_within(step.delay, control):
                return request.given_up()

    def _post(self, body: bytes) -> tuple[int, httpx.Headers, bytes]:
        """POST ``body``; the answer's status, headers and body, read within the timeout
        (httpx times each read: a body sent a little at a time could take for ever)."""
        with self.http.stream("POST", self.url, content=body, headers=self.headers) as response:
            deadline = self.answer_deadline(self.http.timeout)
            parts = []
            for part in response.iter_bytes():
                parts.append(part)
                self.check_deadline(deadline)
            return response.status_code, response.headers, b"".join(parts)

    def _outcome(self, batch: Batch, control: CallControl, at_once: bool = False) -> Outcome:
        outcome = self._attempt(batch, control, at_once)
        if split_first(batch, outcome):
            return self._split(batch, control, at_once)
        return outcome

    def _attempt(self, batch: Batch, control: CallControl, at_once: bool) -> Outcome:
        if control.stopped:
            return NOT_SENT
        try:
            return self.send(batch, control.dimensions, at_once=at_once, control=control)
        except OpenSearchMMError as exc:
            control.note(exc)
            return exc

    def _split(self, batch: Batch, control: CallControl, at_once: bool) -> Split:
        """Send a batch refused as invalid again in parts (see ``halving``)."""
        plan = halving(batch)
        try:
            part = next(plan)
            while True:
                part = plan.send(self._attempt(part, control, at_once))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._closed:
                raise ClientClosedError("this client has been closed; create a new one")
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    self.max_concurrency, thread_name_prefix="opensearch-mm"
                )
            return self._executor

    def run(
        self, batches: Iterable[Batch], control: CallControl, *, limits: ReadAhead
    ) -> Generator[tuple[Batch, Outcome], None, None]:
        """Yield each batch with its outcome, in order, reading ahead within ``limits``.

        Requests run concurrently in the client's pool (``max_concurrency`` threads), one
        batch alone in the calling thread; once ``control.stopped`` no further batch is
        sent (its outcome is ``NOT_SENT``).
        """
        # The pool is the client's, shared by the calls of every thread, and runs what is
        # submitted in order: a call submits no more than the pool runs at once plus one
        # ready for the next free thread, so the calls of other threads (a query while a
        # bulk call runs) are not queued behind all of its batches. (Its answered batches
        # may still wait behind a slow head of line, within ``limits``.)
        limits = ReadAhead(min(limits.in_flight, self.max_concurrency + 1), limits.queued)
        pending: Pending[Future[Outcome]] = Pending(limits)
        source = iter(batches)
        exhausted = False
        try:
            while True:
                while not exhausted and pending.room():
                    batch = next(source, None)
                    if batch is None:
                        exhausted = True
                        break
                    if self.one_at_a_time(limits):
                        done: Future[Outcome] = Future()
                        done.set_result(self._outcome(batch, control, at_once=True))
                        pending.add(batch, done)
                    else:
                        pending.add(batch, self._pool().submit(self._outcome, batch, control))
                if not pending:
                    return
                if pending.wait_for_any(not exhausted):
                    wait_any(pending.unanswered(), return_when=FIRST_COMPLETED)
                    continue
                batch, future = pending.pop()
                yield batch, future.result()
        finally:
            if pending:
                # Ended early (an exception here or in the caller, Ctrl-C, a stream closed):
                # the batches not started are dropped, and the ones waiting for a slot or
                # a retry give up, so nothing more is sent (and billed) for the call and
                # the pool is free for the next one.
                control.stop()
                for future in pending.handles():
                    future.cancel()
                # (Those waiting wake at once and give their booked slots back: a moment
                # lets them, before the caller's next call books behind the slots.)
                wait_any(pending.unanswered(), timeout=self.give_back_seconds)

    def close(self) -> None:
        """Shut the thread pool down (after the requests in flight); it is never rebuilt."""
        with self._lock:
            self._closed = True
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None
