"""The life of one request (``opensearch_mm._request.Request``), without I/O."""

from __future__ import annotations

import logging
import random

import httpx
import orjson
import pytest

from opensearch_mm._call import NOT_SENT, CallControl, CallState, StreamState
from opensearch_mm._request import Done, GiveUp, Request, Retry, map_transport_error
from opensearch_mm.batching import Batch, pack
from opensearch_mm.errors import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    InternalServerError,
    RateLimitError,
)
from opensearch_mm.inputs import WireItem
from opensearch_mm.protocol import BatchResponse
from opensearch_mm.ratelimit import RateLimiter, Ticket
from opensearch_mm.results import Usage
from opensearch_mm.retry import RetryPolicy, is_fatal_for_call

KEY = "OS-request-test-key-0123456789"
ORIGIN = "https://h.example:443"


class Recorder(RateLimiter):
    """A limiter that books the waits it is given and records every call."""

    def __init__(self, waits: list[float] | None = None, refuse: int = 0) -> None:
        self.waits = list(waits or [])
        self.refuse = refuse  # how many confirms say "re-book"
        self.calls: list[str] = []
        self.observed: list[tuple[str, Ticket | None]] = []
        self._n = 0

    def reserve(self) -> float:
        return 0.0

    def acquire(self) -> Ticket:
        self.calls.append("acquire")
        self._n += 1
        return Ticket(self.waits.pop(0) if self.waits else 0.0, self._n)

    def confirm(self, ticket: Ticket) -> bool:
        self.calls.append("confirm")
        if self.refuse:
            self.refuse -= 1
            return False
        return True

    def observe(self, error: BaseException | None, ticket: Ticket | None = None) -> None:
        self.calls.append("observe")
        self.observed.append((type(error).__name__ if error else "ok", ticket))


def make(limiter: RateLimiter, max_retries: int = 3) -> Request:
    return Request(
        b"{}",
        expected=1,
        dimensions=None,
        limiter=limiter,
        retry=RetryPolicy(max_retries=max_retries, initial_delay=0.1, max_delay=0.1),
        rng=random.Random(0),
        secrets=(KEY,),
        origin=ORIGIN,
    )


def ok() -> tuple[int, dict[str, str], bytes]:
    body = {"request_id": "r", "result": {"embeddings": [{"index": 0, "embedding": [1.0]}]}}
    return 200, {}, orjson.dumps(body)


def status(code: int, err: str) -> tuple[int, dict[str, str], bytes]:
    return code, {}, orjson.dumps({"request_id": f"rid-{code}", "code": err, "message": "m"})


def drain(request: Request) -> list[float]:
    return list(request.slot())


def test_success_observed_once_with_the_confirmed_ticket() -> None:
    limiter = Recorder(waits=[0.25])
    request = make(limiter)
    assert drain(request) == [0.25]
    step = request.answered(*ok())
    assert isinstance(step, Done) and step.response.embeddings == [[1.0]]
    assert limiter.calls == ["acquire", "confirm", "observe"]
    assert limiter.observed == [("ok", Ticket(0.25, 1))]
    assert request.state == "DONE"


def test_refused_confirm_rebooks_before_sending() -> None:
    limiter = Recorder(waits=[0.5, 0.2, 0.0], refuse=2)
    request = make(limiter)
    assert drain(request) == [0.5, 0.2]  # a zero wait is not slept
    assert limiter.calls == ["acquire", "confirm"] * 3
    request.answered(*ok())
    assert limiter.observed == [("ok", Ticket(0.0, 3))]  # the ticket actually used


def test_retry_then_give_up_observes_every_sent_attempt() -> None:
    limiter = Recorder()
    request = make(limiter, max_retries=2)
    steps = []
    for _ in range(3):
        drain(request)
        steps.append(request.answered(*status(500, "InternalServerError")))
    assert [type(s) for s in steps] == [Retry, Retry, GiveUp]
    assert all(0 <= s.delay <= 0.1 for s in steps[:2] if isinstance(s, Retry))
    assert isinstance(steps[-1], GiveUp) and isinstance(steps[-1].error, InternalServerError)
    assert [name for name, _ in limiter.observed] == ["InternalServerError"] * 3
    assert request.state == "FAILED"


class Shut(Recorder):
    """A limiter that says the account has let nothing through for ``shut`` seconds."""

    def __init__(self, shut: float) -> None:
        super().__init__()
        self.shut = shut
        self.asked: list[Ticket | None] = []

    def shut_for(self, ticket: Ticket | None) -> float:
        self.asked.append(ticket)
        return self.shut


def test_a_shut_throttle_is_waited_out_without_using_retries() -> None:
    limiter = Shut(30.0)  # a window of a minute, full: nothing through for 30 s
    request = make(limiter, max_retries=2)
    for _ in range(8):
        drain(request)
        step = request.answered(*status(429, "Throttling.RateQuota"))
        assert isinstance(step, Retry) and 0 <= step.delay <= 0.1
    assert (request.retries, request.waits) == (0, 8)
    assert limiter.asked == [Ticket(0.0, n) for n in range(1, 9)]  # each attempt's own
    limiter.shut = 0.0  # something got through meanwhile: a 429 of a busy throttle
    steps = []
    for _ in range(3):
        drain(request)
        steps.append(request.answered(*status(429, "Throttling.RateQuota")))
    assert [type(s) for s in steps] == [Retry, Retry, GiveUp]
    assert request.retries == 2 and request.state == "FAILED"


@pytest.mark.parametrize(
    ("shut", "answer"),
    [
        (121.0, (429, "Throttling.RateQuota")),  # shut longer than max_shut_wait (120 s)
        (0.5, (429, "Throttling.RateQuota")),  # under a second: a busy window, not a shut
        (30.0, (500, "InternalServerError")),  # not a throttle's answer
    ],
)
def test_other_failures_use_up_retries_as_before(shut: float, answer: tuple[int, str]) -> None:
    request = make(Shut(shut), max_retries=2)
    steps = []
    for _ in range(3):
        drain(request)
        steps.append(request.answered(*status(*answer)))
    assert [type(s) for s in steps] == [Retry, Retry, GiveUp]
    assert request.waits == 0


def test_no_retries_means_none_even_for_a_shut_throttle() -> None:
    request = make(Shut(30.0), max_retries=0)
    drain(request)
    assert isinstance(request.answered(*status(429, "Throttling.RateQuota")), GiveUp)


def test_non_retryable_error_observed_once_then_given_up() -> None:
    limiter = Recorder()
    request = make(limiter)
    drain(request)
    step = request.answered(*status(401, "InvalidAccessKeyId"))
    assert isinstance(step, GiveUp) and isinstance(step.error, AuthenticationError)
    assert limiter.observed == [("AuthenticationError", Ticket(0.0, 1))]


def test_transport_error_is_observed_and_retried() -> None:
    limiter = Recorder()
    request = make(limiter)
    drain(request)
    step = request.transport_failed(httpx.ReadError("reset by peer"))
    assert isinstance(step, Retry) and isinstance(step.error, APIConnectionError)
    assert ORIGIN in str(step.error)
    assert limiter.observed == [("APIConnectionError", Ticket(0.0, 1))]


def test_nothing_is_observed_for_a_request_never_sent() -> None:
    limiter = Recorder()
    request = make(limiter)
    assert limiter.observed == [] and limiter.calls == []
    drain(request)
    assert limiter.observed == []


def test_steps_out_of_order_are_refused_and_done_is_terminal() -> None:
    request = make(Recorder())
    with pytest.raises(RuntimeError):
        request.answered(*ok())  # not booked yet
    drain(request)
    with pytest.raises(RuntimeError):
        drain(request)  # booked twice
    request.answered(*ok())
    for again in (lambda: request.answered(*ok()), lambda: drain(request)):
        with pytest.raises(RuntimeError):
            again()


def test_retry_logged_at_info_with_n_of_m_and_extras(caplog: pytest.LogCaptureFixture) -> None:
    request = make(Recorder(), max_retries=4)
    drain(request)
    with caplog.at_level(logging.INFO, logger="opensearch_mm"):
        step = request.answered(*status(503, "ServiceUnavailable"))
    assert isinstance(step, Retry)
    (record,) = [r for r in caplog.records if r.levelno == logging.INFO]
    message = record.getMessage()
    assert message.startswith(f"Retrying request in {step.delay:.2f} seconds (retry 1 of 4)")
    assert "HTTP 503 ServiceUnavailable" in message and "request_id=rid-503" in message
    assert record.__dict__["retry_delay"] == step.delay
    assert record.__dict__["retry_number"] == 1
    assert record.__dict__["max_retries"] == 4
    assert record.__dict__["retry_error"] is step.error
    assert KEY not in caplog.text


def _refused() -> httpx.ConnectError:
    """What anyio raises for a refused connection: the refusal is two causes down."""
    exc = httpx.ConnectError("All connection attempts failed")
    inner = OSError("All connection attempts failed")
    inner.__cause__ = ConnectionRefusedError(111, "Connection refused")
    exc.__cause__ = inner
    return exc


def test_refused_connection_gets_a_short_retry_budget(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="opensearch_mm")
    limiter = Recorder()
    request = make(limiter, max_retries=6)
    steps = []
    for _ in range(7):
        drain(request)
        step = request.transport_failed(_refused())
        steps.append(step)
        if isinstance(step, GiveUp):
            break
    assert [type(s) for s in steps] == [Retry, Retry, GiveUp]
    assert sum(s.delay for s in steps if isinstance(s, Retry)) <= 1.0
    assert "(retry 2 of 2)" in caplog.records[-1].getMessage()
    last = steps[-1]
    assert isinstance(last, GiveUp)
    error = last.error
    assert isinstance(error, APIConnectionError) and error.kind == "refused"
    assert error.endpoint == ORIGIN and ORIGIN in str(error)


def _ssl_mismatch() -> httpx.ConnectError:
    import ssl

    exc = httpx.ConnectError("[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)")
    exc.__cause__ = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")
    return exc


def test_https_to_plain_http_is_not_retried_and_hints_http() -> None:
    limiter = Recorder()
    request = make(limiter)
    drain(request)
    step = request.transport_failed(_ssl_mismatch())
    assert isinstance(step, GiveUp)
    assert step.error.kind == "tls_mismatch"  # type: ignore[attr-defined]
    assert "'http://h.example:443'" in str(step.error)
    assert len(limiter.observed) == 1


def test_timeout_names_the_endpoint() -> None:
    error = map_transport_error(httpx.ReadTimeout("timed out"), ORIGIN)
    assert isinstance(error, APITimeoutError) and ORIGIN in str(error)
    assert error.request_id is None


def test_a_header_h11_refuses_is_not_echoed() -> None:
    # h11 quotes an illegal header value whole, and the Authorization header is the key.
    exc = httpx.LocalProtocolError("Illegal header value b'Bearer OS-abc\\ndef-secret'")
    error = map_transport_error(exc, ORIGIN)
    assert "secret" not in str(error) and "OS-abc" not in str(error)
    assert ORIGIN in str(error) and "LocalProtocolError" in str(error)


# -- the call's side: one "not sent" sentinel, terminal states -------------------------


def batches(n: int, size: int) -> list[Batch]:
    items = [WireItem(i, orjson.dumps({"text": f"t{i}"}), False) for i in range(n)]
    return list(pack(items, max_inputs=size))


def vectors(batch: Batch) -> BatchResponse:
    return BatchResponse([[float(i)] for i in batch.indices], Usage(), None)


def test_not_sent_has_a_readable_repr() -> None:
    assert repr(NOT_SENT) == "NOT_SENT"


def test_call_state_takes_not_sent_and_finishes_once() -> None:
    bs = batches(4, 2)
    state = CallState(4, model="m", dimensions=1)
    state.record(bs[0], vectors(bs[0]))
    state.record(bs[1], NOT_SENT)
    with pytest.raises(Exception) as ei:
        state.finish()
    assert ei.value.partial is not None  # type: ignore[attr-defined]
    assert ei.value.partial.failed_indices == [2, 3]  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError, match="finished"):
        state.record(bs[1], vectors(bs[1]))
    with pytest.raises(RuntimeError, match="finished"):
        state.finish()


def test_stream_state_takes_not_sent_and_finishes_once() -> None:
    bs = batches(4, 2)
    state = StreamState(dimensions=1)
    assert state.accept(bs[0], vectors(bs[0])) == [[0.0], [1.0]]
    assert state.accept(bs[1], NOT_SENT) is None
    assert state.stopped
    with pytest.raises(Exception, match="never sent"):
        state.finish()
    with pytest.raises(RuntimeError, match="finished"):
        state.accept(bs[1], vectors(bs[1]))


def test_fatal_is_decided_once_for_driver_and_bookkeeping() -> None:
    state = CallState(2, model="m", dimensions=1)
    state.note(InternalServerError("x", status_code=500))
    assert not state.stopped
    state.note(AuthenticationError("no", status_code=401))  # what a driver reports early
    assert state.stopped


def test_abandoned_request_is_observed_once_and_terminal() -> None:
    limiter = Recorder()
    request = make(limiter)
    drain(request)
    request.abandoned(KeyboardInterrupt())
    assert limiter.observed == [("KeyboardInterrupt", Ticket(0.0, 1))]
    assert request.state == "FAILED"
    with pytest.raises(RuntimeError):
        request.answered(*ok())


async def test_a_call_cancelled_mid_request_still_observes_it() -> None:
    import asyncio

    from opensearch_mm import MultiModalEmbeddingClient

    sent = asyncio.Event()

    async def hang(request: httpx.Request) -> httpx.Response:
        sent.set()
        await asyncio.sleep(3600)
        raise AssertionError("not reached")

    limiter = Recorder()
    http = httpx.AsyncClient(transport=httpx.MockTransport(hang))
    client = MultiModalEmbeddingClient(
        api_key=KEY, endpoint="https://h.example", rate_limiter=limiter, http_async_client=http
    )
    task = asyncio.ensure_future(client.aembed_texts(["a"]))
    await asyncio.wait_for(sent.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # the limiter does not count the request as in flight for ever
    assert [name for name, _ in limiter.observed] == ["CancelledError"]
    await client.aclose()
    await http.aclose()


class Counting(Recorder):
    """A limiter that tells how many requests it has heard let through (``heard``)."""

    def __init__(self, heard: int | None) -> None:
        super().__init__()
        self.heard = heard

    def accepted_count(self) -> int | None:
        return self.heard


def _give_up(limiter: Recorder, answer: tuple[int, str], max_retries: int = 2) -> GiveUp:
    request = make(limiter, max_retries=max_retries)
    for _ in range(max_retries + 1):
        drain(request)
        step = request.answered(*status(*answer))
    assert isinstance(step, GiveUp)
    return step


def test_a_request_refused_throughout_while_no_one_got_through_stops_its_call(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="opensearch_mm")
    step = _give_up(Counting(5), (429, "Throttling.RateQuota"))
    assert isinstance(step.error, RateLimitError) and step.error.account_shut
    assert is_fatal_for_call(step.error)
    # The call says why it stops, once, however many of its requests end so.
    control = CallControl()
    for _ in range(3):
        control.note(step.error)
    assert control.stopped
    said = [r for r in caplog.records if "let no request through" in r.getMessage()]
    assert len(said) == 1 and "429 Throttling.RateQuota" in said[0].getMessage()


class Busy(Counting):
    def confirm(self, ticket: Ticket) -> bool:
        self.heard = (self.heard or 0) + 1  # someone's request got through meanwhile
        return super().confirm(ticket)


@pytest.mark.parametrize(
    ("limiter", "answer", "max_retries"),
    [
        (Busy(5), (429, "Throttling.RateQuota"), 2),  # others got through: a busy throttle
        (Counting(None), (429, "Throttling.RateQuota"), 2),  # a limiter that cannot tell
        (Counting(5), (429, "Throttling.RateQuota"), 1),  # one quick repeat is no shut
        (Counting(5), (500, "InternalServerError"), 2),  # not a throttle
    ],
)
def test_other_requests_that_run_out_of_retries_only_lose_their_batch(
    limiter: Recorder, answer: tuple[int, str], max_retries: int
) -> None:
    step = _give_up(limiter, answer, max_retries)
    assert not getattr(step.error, "account_shut", False)
    assert not is_fatal_for_call(step.error)
