"""The life of one request, without I/O: one state machine for both drivers.

Every transition of a request lives here (h11's rule: all state changes in one place)::

    BOOK  --slot confirmed-->  SEND  --answer ok-------------------> DONE
      ^                          |----failure, retry left---------> BOOK (after Retry.delay)
      |__________________________|----failure, no retry / fatal---> FAILED
                                     |----cancelled while sending------> FAILED

A driver interprets the steps, and does only the sleeping and the sending::

    request = Request(batch, ...)
    while True:
        for wait in request.slot():        # book; sleep each wait; confirm or re-book
            sleep(wait)
        step = request.answered(response)  # or request.transport_failed(exc)
        if isinstance(step, Done): return step.response
        if isinstance(step, GiveUp): raise step.error
        sleep(step.delay)                  # Retry

The rate limiter sees exactly one ``observe(error_or_None, ticket)`` per request sent,
whatever its outcome (success, error status, transport error, or the task cancelled
while the request was out), and none for a request that was never sent.
"""

from __future__ import annotations

import enum
import logging
import random
import socket
import ssl
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

import httpx

from .errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    OpenSearchMMError,
    RateLimitError,
    is_throttling,
)
from .protocol import BatchResponse, parse_response
from .ratelimit import RateLimiter, Ticket
from .retry import RetryPolicy

__all__ = [
    "Done",
    "GiveUp",
    "Request",
    "Retry",
    "Step",
    "describe",
    "map_transport_error",
]

logger = logging.getLogger("opensearch_mm")

# A request refused this many times over (its budget spent) while the account let no one
# through has seen the account shut for seconds: 2, so that one quick repeat is not it.
_SHUT_RETRIES = 2

State = Literal["BOOK", "SEND", "DONE", "FAILED"]
Event = Literal["confirmed", "answered", "retry", "give_up", "abandoned"]

# Every legal transition; anything else is a bug in a driver and raises.
_TRANSITIONS: dict[tuple[State, Event], State] = {
    ("BOOK", "confirmed"): "SEND",
    ("SEND", "answered"): "DONE",
    ("SEND", "retry"): "BOOK",
    ("SEND", "give_up"): "FAILED",
    ("SEND", "abandoned"): "FAILED",
}


@dataclass(frozen=True)
class Done:
    """The request succeeded: ``response`` is its checked answer."""

    response: BatchResponse


@dataclass(frozen=True)
class Retry:
    """The request failed but may succeed again: sleep ``delay`` seconds, then book again."""

    delay: float
    error: OpenSearchMMError


@dataclass(frozen=True)
class GiveUp:
    """The request failed for good: the driver raises ``error``."""

    error: OpenSearchMMError


Step = Done | Retry | GiveUp

# OpenSSL's reasons when an https client reads a plain-http answer as a TLS record.
_PLAIN_HTTP_REASONS = ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "HTTP_REQUEST")


def _causes(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _plain_http(exc: BaseException) -> bool:
    for cause in _causes(exc):
        if isinstance(cause, ssl.SSLError):
            reason = str(getattr(cause, "reason", None) or "").upper()
            text = str(cause).upper().replace(" ", "_")
            if reason in _PLAIN_HTTP_REASONS or any(r in text for r in _PLAIN_HTTP_REASONS):
                return True
    return False


def map_transport_error(exc: httpx.HTTPError, origin: str) -> APIConnectionError:
    """An httpx failure as one of ours, naming the endpoint (``scheme://host:port``).

    The message holds the endpoint and the failure, never a header (so never the key).
    """
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(
            f"request to {origin} timed out ({type(exc).__name__})", endpoint=origin
        )
    if isinstance(exc, httpx.ConnectError):
        if any(isinstance(e, ConnectionRefusedError) for e in _causes(exc)):
            return APIConnectionError(
                f"connection to {origin} refused: nothing is listening there "
                "(check the endpoint's host and port, and that the service is up)",
                endpoint=origin,
                kind="refused",
            )
        if any(isinstance(e, socket.gaierror) for e in _causes(exc)):
            host = origin.split("://", 1)[-1].rsplit(":", 1)[0]
            return APIConnectionError(
                f"the endpoint's host {host} cannot be found (check the endpoint's spelling, "
                "and the network's name service)",
                endpoint=origin,
                kind="unresolved",
            )
        if _plain_http(exc):
            plain = "http://" + origin.removeprefix("https://")
            return APIConnectionError(
                f"{origin} answered in plain http, not https: if the endpoint really "
                f"serves plain http, write it as {plain!r}",
                endpoint=origin,
                kind="tls_mismatch",
            )
    detail = str(exc)
    if "bearer" in detail.lower():
        # (h11 names an illegal header value in full: the Authorization header is the key.)
        detail = "a request header was refused"
    return APIConnectionError(
        f"connection to {origin} failed ({type(exc).__name__}: {detail})", endpoint=origin
    )


def describe(error: OpenSearchMMError) -> str:
    """A short, key-free account of a failure for logs: status, code and request id."""
    if isinstance(error, APIStatusError):
        text = f"HTTP {error.status_code}" + (f" {error.code}" if error.code else "")
    elif isinstance(error, APIConnectionError):
        text = f"{type(error).__name__} ({error.kind}) to {error.endpoint}"
    else:
        text = type(error).__name__
    if error.request_id:
        text += f" (request_id={error.request_id})"
    return text


class NotSent(enum.Enum):
    """The outcome of a batch that was never sent because its call stopped first."""

    NOT_SENT = "NOT_SENT"

    def __repr__(self) -> str:
        return "NOT_SENT"


NOT_SENT = NotSent.NOT_SENT


class Request:
    """One request's state machine: booking, checking, feedback and the retry decision.

    Pure: it calls the (sans-I/O) rate limiter and the response parser, and returns
    what to do next; it never sleeps or sends. Methods called out of order raise
    ``RuntimeError`` (a driver bug), and ``DONE``/``FAILED`` are terminal.
    """

    def __init__(
        self,
        body: bytes,
        *,
        expected: int,
        dimensions: int | None,
        limiter: RateLimiter,
        retry: RetryPolicy,
        rng: random.Random,
        secrets: tuple[str, ...],
        origin: str,
        target: str = "",
        at_once: bool = False,
    ) -> None:
        self.body = body
        self._at_once = at_once  # one request of its call out at a time: book at once
        self.state: State = "BOOK"
        self.retries = 0  # retries used up
        self.waits = 0  # retries that waited out a shut throttle, using none up
        self._expected = expected
        self._dimensions = dimensions
        self._limiter = limiter
        self._retry = retry
        self._rng = rng
        self._secrets = secrets
        self._origin = origin
        self._target = target
        self._ticket: Ticket | None = None
        self._heard_at_start: int | None = None  # the limiter's accepted count at first send
        self._sent = False
        self._retrying: OpenSearchMMError | None = None  # the failure being retried

    def _move(self, event: Event) -> None:
        target = _TRANSITIONS.get((self.state, event))
        if target is None:
            raise RuntimeError(f"request: {event!r} is not allowed in state {self.state}")
        self.state = target

    def slot(self) -> Generator[float, None, None]:
        """Book a send slot. Yields each wait (seconds) for the driver to sleep; ends once
        the limiter confirms the slot, and the request may be sent. Closed before that
        (the driver stopped waiting), it gives the slot back to the limiter."""
        if self.state != "BOOK":
            raise RuntimeError(f"request: cannot book in state {self.state}")
        limiter = self._limiter
        ticket = limiter.acquire_now() if self._at_once else limiter.acquire()
        confirmed = False
        try:
            while True:
                if ticket.wait > 0:
                    yield ticket.wait
                if limiter.confirm(ticket):
                    confirmed = True
                    break
                if self._at_once and ticket.epoch >= 0:
                    ticket = limiter.acquire_now()  # a cut since: book again, at once
                else:
                    ticket = limiter.rebook(ticket)  # cut, or no free slot yet: book again
        finally:
            if not confirmed:  # (the driver stopped waiting: closed, or interrupted)
                limiter.release(ticket)
        self._ticket = ticket
        if not self._sent:
            self._sent = True
            self._heard_at_start = self._limiter.accepted_count()
        self._move("confirmed")

    def given_up(self) -> NotSent:
        """The call stopped while this request waited for its slot or a retry: ``NOT_SENT``
        if it never went out, else its last failure is raised (it ends in it)."""
        if self._retrying is not None:
            raise self._retrying
        return NOT_SENT

    def answered(self, status_code: int, headers: Mapping[str, str], content: bytes) -> Step:
        """The service answered: check the answer and decide.

        Returns:
            ``Done`` with the checked answer, ``Retry`` or ``GiveUp`` with the error.
        """
        self._expect_answer()
        try:
            result = parse_response(
                status_code,
                headers,
                content,
                expected=self._expected,
                dimensions=self._dimensions,
                secrets=self._secrets,
                target=self._target or None,
            )
        except OpenSearchMMError as exc:
            return self._failed(exc)
        self._observe(None)
        self._move("answered")
        return Done(result)

    def transport_failed(self, exc: httpx.HTTPError) -> Step:
        """Sending failed (connection, TLS, timeout): decide."""
        self._expect_answer()
        return self._failed(map_transport_error(exc, self._origin))

    def abandoned(self, exc: BaseException) -> None:
        """Sending was interrupted (task cancelled, ``KeyboardInterrupt``, a broken HTTP
        client): the limiter still hears of the request, which may have gone out, so it
        does not count it as in flight for ever. The driver then re-raises ``exc``."""
        self._expect_answer()
        self._observe(exc)
        self._move("abandoned")

    def _expect_answer(self) -> None:
        if self.state != "SEND":
            raise RuntimeError(f"request: no answer expected in state {self.state}")

    def _observe(self, error: BaseException | None) -> None:
        self._limiter.observe(error, self._ticket)

    def _check_shut(self, error: OpenSearchMMError) -> None:
        """Mark a throttle's 429 that ends a request the account let no one through the
        whole time it was retried: its call then starts no new request."""
        if (
            is_throttling(error)
            and self.retries >= _SHUT_RETRIES
            and self._heard_at_start is not None
            and self._limiter.accepted_count() == self._heard_at_start
        ):
            error.account_shut = True  # (the call says so once: CallControl.note)

    def _failed(self, error: OpenSearchMMError) -> Step:
        self._observe(error)
        if not self._retry.should_retry(error, self.retries):
            self._move("give_up")
            self._check_shut(error)
            return GiveUp(error)
        delay = self._retry.delay(error, self.retries, self._rng)
        # (Asked only after a throttle's answer: the limiter takes its lock to tell.)
        shut = self._limiter.shut_for(self._ticket) if isinstance(error, RateLimitError) else 0.0
        self._move("retry")
        if not self._retry.counts(error, shut):
            # The account has let nothing through for seconds (a full window): the limiter
            # paces the sends that find it open again, and this one waits its turn.
            self.waits += 1
            logger.info(
                "Retrying request in %.2f seconds after %s: the account has let nothing "
                "through for %.1f seconds (a throttle's window is full; no retry used)",
                delay,
                describe(error),
                shut,
                extra={"retry_delay": delay, "retry_error": error, "shut_for": shut},
            )
            self._retrying = error
            return Retry(delay, error)
        budget = self._retry.budget(error)
        self.retries += 1
        logger.debug("retrying after %s: %s", type(error).__name__, error)
        logger.info(
            "Retrying request in %.2f seconds (retry %d of %d) after %s",
            delay,
            self.retries,
            budget,
            describe(error),
            extra={
                "retry_delay": delay,
                "retry_number": self.retries,
                "max_retries": budget,
                "retry_error": error,
            },
        )
        self._retrying = error
        return Retry(delay, error)
