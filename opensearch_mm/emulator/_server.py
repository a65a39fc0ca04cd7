"""The emulator: a local HTTP server speaking the multimodal embedding API.

Order of checks for each request (the real service's order is not documented):

1. the path (404 ``NotFound``; 405 ``MethodNotAllowed`` for a non-POST on the API path);
2. the request body is read (or drained, when over the 8 MiB limit);
3. ``Authorization: Bearer <key>`` (401 ``Unauthorized``);
4. a scripted fault (:meth:`Emulator.inject`) or a random one (:meth:`Emulator.set_random_faults`);
   "slow", "trickle" and "incomplete" take effect at the answer, the others answer at once;
5. the throttle (429 ``Throttling.RateQuota``; a refused request takes nothing): by default a
   token bucket of ``qps`` tokens per second holding one second's worth; ``throttle=`` picks
   another model (fixed or sliding window, concurrency cap: see ``_throttle``), and
   ``retry_after_header=`` adds a retry hint to each of these 429s;
6. the body size (400 ``InvalidParameter``), the service id (400 ``ServiceIdNotExist``), the body
   (400 ``InvalidParameter``);
7. the ``latency_ms`` sleep (lognormal around it with ``latency_jitter``), then 200 with the
   embeddings.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import math
import random
import socket
import sys
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import orjson

from opensearch_mm.models import MODELS

from ._throttle import THROTTLE_KINDS, Latency, Throttle, make_throttle
from ._validate import MAX_BODY_BYTES, InputItem, RequestError, parse_body
from ._vectors import IMAGE_TOKENS, VectorCache, estimate_tokens

__all__ = [
    "FAULT_KINDS",
    "RETRY_AFTER_HEADERS",
    "THROTTLE_KINDS",
    "Emulator",
    "EmulatorStats",
    "RequestRecord",
]

logger = logging.getLogger("opensearch_mm.emulator")

API_PREFIX = "/v3/openapi/workspaces/"
API_SEGMENT = "multi-modal-embedding"

FAULT_KINDS: tuple[str, ...] = (
    "throttle",
    "throttling",
    "quota",
    "server_error",
    "drop",
    "malformed",
    "incomplete",
    "slow",
    "trickle",
    "bad_gateway",
)

# Retry hints a throttled answer can carry: ``Retry-After`` in seconds (RFC 9110), or
# ``x-acs-retry-after`` in milliseconds, as Alibaba Cloud's OpenAPI gateway sends it (the
# official SDK runtime reads it as such: alibabacloud_tea_openapi ``get_throttling_time_left``
# and darabonba ``sleep(millisecond)``).
RETRY_AFTER_HEADERS: tuple[str, ...] = ("retry-after", "x-acs-retry-after")

# kind -> (status, code, message) for the faults answered with an error body.
_ERROR_FAULTS: dict[str, tuple[int, str, str]] = {
    "throttle": (
        429,
        "Throttling.RateQuota",
        "Requests rate limit exceeded, please try again later.",
    ),
    "throttling": (429, "Throttling", "Requests throttling triggered."),
    "quota": (
        429,
        "Throttling.AllocationQuota",
        "Allocated quota exceeded, please increase your quota limit.",
    ),
    "server_error": (
        500,
        "InternalServerError",
        "An internal error has occured, please try again later or contact service support.",
    ),
}

_BAD_GATEWAY_HTML = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)

# Bodies up to this size are drained when refused, so the connection can be kept.
_DRAIN_LIMIT = 64 * 1024 * 1024
_IDLE_TIMEOUT = 120.0
_DISCONNECT_ERRORS = (ConnectionError, TimeoutError, socket.timeout, OSError)


@dataclass(frozen=True)
class EmulatorStats:
    """A snapshot of the emulator's counters (see :attr:`Emulator.stats`)."""

    requests: int = 0
    """HTTP requests received (any path, any outcome)."""
    by_status: dict[int, int] = field(default_factory=dict)
    """Responses sent, by HTTP status (dropped requests are not here)."""
    throttled: int = 0
    """429 responses (the throttle and scripted throttling faults)."""
    inputs_embedded: int = 0
    """Inputs answered with an embedding in 200 responses."""
    max_in_flight: int = 0
    """Most requests being handled at the same time."""
    connections: int = 0
    """TCP connections accepted."""
    dropped: int = 0
    """Requests whose connection was closed without an answer ("drop" faults)."""
    faults: int = 0
    """Scripted or random faults applied."""


@dataclass(frozen=True)
class RequestRecord:
    """A summary of one request (see :attr:`Emulator.requests_log`); never holds the API key."""

    method: str
    path: str
    status: int | None
    """HTTP status answered; ``None`` when the connection was dropped."""
    n_inputs: int | None
    """Number of items in ``input`` when the body parsed, else ``None``."""
    body_bytes: int
    headers: dict[str, str]
    """Request headers (lower-case names) without ``Authorization`` and without any header
    carrying the bearer token."""
    fault: str | None = None


@dataclass(frozen=True)
class _Fault:
    kind: str
    retry_after: float | None = None
    delay: float = 0.0


def _request_id() -> str:
    return str(uuid.uuid4()).upper()


def _error_body(request_id: str, code: str, message: str) -> bytes:
    return orjson.dumps({"request_id": request_id, "latency": 0, "code": code, "message": message})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 1024  # listen backlog: benchmarks open many connections at once

    def __init__(self, address: tuple[str, int], emulator: Emulator) -> None:
        self.emulator = emulator
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, _DISCONNECT_ERRORS):
            return  # a client went away: not worth a traceback
        logger.exception("emulator: unexpected error serving %s", client_address)

    def close_open_connections(self) -> None:
        with self.sockets_lock:
            socks = list(self.open_sockets)
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = _IDLE_TIMEOUT
    server: _Server
    # per-request summary for the log (set at the start of each request)
    _rec_path: str = ""
    _rec_n_inputs: int | None = None
    _rec_size: int = 0
    _rec_fault: str | None = None
    _recorded: bool = False
    _admitted: Throttle | None = None

    # -- connection lifecycle -------------------------------------------------------------
    def setup(self) -> None:
        super().setup()
        srv = self.server
        with srv.sockets_lock:
            srv.open_sockets.add(self.connection)
        srv.emulator._count_connection()

    def finish(self) -> None:
        with self.server.sockets_lock:
            self.server.open_sockets.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def handle(self) -> None:
        with contextlib.suppress(*_DISCONNECT_ERRORS):
            super().handle()

    def version_string(self) -> str:
        return "opensearch-mm-emulator"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # default request logging is off; see Emulator(verbose=True)

    # -- dispatch -------------------------------------------------------------------------
    def do_POST(self) -> None:
        self._handle()

    do_GET = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_POST

    def _handle(self) -> None:
        emu = self.server.emulator
        emu._begin_request()
        try:
            self._process(emu)
        finally:
            emu._end_request()

    # -- helpers --------------------------------------------------------------------------
    def _read_body(self) -> tuple[bytes, int, bool]:
        """(body, size, oversized). An oversized body is drained (or the connection closed)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        raw_len = self.headers.get("Content-Length")
        if raw_len is None:
            return b"", 0, False
        try:
            length = int(raw_len)
            if length < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            raise RequestError("invalid Content-Length header") from None
        if length > MAX_BODY_BYTES:
            if length > _DRAIN_LIMIT:
                self.close_connection = True
            else:
                remaining = length
                while remaining > 0:
                    chunk = self.rfile.read(min(remaining, 1 << 16))
                    if not chunk:
                        break
                    remaining -= len(chunk)
            return b"", length, True
        body = self.rfile.read(length)
        return body, len(body), False

    def _read_chunked(self) -> tuple[bytes, int, bool]:
        parts: list[bytes] = []
        size = 0
        while True:
            line = self.rfile.readline(1024)
            try:
                n = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                n = -1
            if not 0 <= n <= _DRAIN_LIMIT:
                # (Read as it is, a negative size reads to the end of the connection and
                # one past an index fails the read: the sender gets no answer.)
                self.close_connection = True
                raise RequestError("malformed chunked request body")
            if n == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                break
            data = self.rfile.read(n)
            self.rfile.readline(16)
            size += len(data)
            if size <= MAX_BODY_BYTES:
                parts.append(data)
            elif size > _DRAIN_LIMIT:
                self.close_connection = True
                return b"", size, True
        if size > MAX_BODY_BYTES:
            return b"", size, True
        return b"".join(parts), size, False

    def _send(
        self,
        status: int,
        body: bytes,
        *,
        request_id: str | None = None,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
        trickle: float = 0.0,
    ) -> None:
        self._record(status)  # before the answer leaves, so stats are current for the client
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if request_id is not None:
            self.send_header("x-acs-request-id", request_id)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command == "HEAD":
            return
        if trickle <= 0:
            self.wfile.write(body)
            return
        # The headers at once, then the body in ten pieces over ``trickle`` seconds (a slow
        # proxy, a congested link): each read is quick, the whole answer is not.
        self.wfile.flush()
        step = max(1, -(-len(body) // 10))
        for start in range(0, len(body), step):
            time.sleep(trickle / 10)
            self.wfile.write(body[start : start + step])
            self.wfile.flush()

    def _send_error(
        self,
        status: int,
        code: str,
        message: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        rid = _request_id()
        self._send(status, _error_body(rid, code, message), request_id=rid, headers=headers)

    def _record(self, status: int | None) -> None:
        if self._recorded:
            return
        self._recorded = True
        emu = self.server.emulator
        emu._record(
            RequestRecord(
                method=self.command,
                path=self._rec_path,
                status=status,
                n_inputs=self._rec_n_inputs,
                body_bytes=self._rec_size,
                headers=self._safe_headers(),
                fault=self._rec_fault,
            )
        )
        if emu.verbose:
            shown = status if status is not None else "dropped"
            print(
                f"emulator: {self.command} {self._rec_path} -> {shown}", file=sys.stderr, flush=True
            )

    def _safe_headers(self) -> dict[str, str]:
        token = self.server.emulator.api_key
        out: dict[str, str] = {}
        for k, v in self.headers.items():
            name = k.lower()
            if name == "authorization" or (token and token in v):
                continue
            out[name] = v
        return out

    # -- the request ----------------------------------------------------------------------
    def _process(self, emu: Emulator) -> None:
        t0 = time.monotonic()
        path = self.path.split("?", 1)[0]
        parts = path.split("/")
        # "", "v3", "openapi", "workspaces", ws, "multi-modal-embedding", service_id
        on_api = (
            path.startswith(API_PREFIX)
            and len(parts) == 7
            and parts[4] != ""
            and parts[5] == API_SEGMENT
            and parts[6] != ""
        )
        service_id = parts[6] if on_api else None
        self._rec_path = path
        self._rec_n_inputs = None
        self._rec_size = 0
        self._rec_fault = None
        self._recorded = False
        try:
            try:
                body, self._rec_size, oversized = self._read_body()
            except RequestError as exc:
                self._send_error(400, "InvalidParameter", str(exc))
                return
            if not on_api:
                self._send_error(404, "NotFound", f"The requested path {path} is not found.")
                return
            if self.command != "POST":
                self._send_error(
                    405, "MethodNotAllowed", f"Method {self.command} is not allowed; use POST."
                )
                return
            if not emu._authorized(self.headers.get("Authorization")):
                self._send_error(401, "Unauthorized", "Invalid or missing API key.")
                return

            fault = emu._next_fault()
            if fault is not None:
                self._rec_fault = fault.kind
                if self._apply_early_fault(fault):
                    return

            throttle = emu._throttle
            queued = 0.0
            if throttle is not None:
                wait = throttle.admit_after(time.monotonic())
                if wait is None:
                    self._send_error(*_ERROR_FAULTS["throttle"], headers=emu._hint(throttle))
                    return
                self._admitted, queued = throttle, wait
            if oversized:
                self._send_error(400, "InvalidParameter", "request body exceeds 8 MB")
                return
            assert service_id is not None
            info = MODELS.get(service_id)
            if info is None or info.dimensions is None:
                self._send_error(400, "ServiceIdNotExist", "service_id is not exist.")
                return
            try:
                items = parse_body(body)
            except RequestError as exc:
                self._send_error(400, "InvalidParameter", str(exc))
                return
            self._rec_n_inputs = len(items)

            delay = queued + emu._service_time()  # (a queue's line, then the work)
            if fault is not None and fault.kind == "slow":
                delay += fault.delay
            if delay > 0:
                time.sleep(delay)
            self._answer(emu, service_id, info.dimensions, info.combined_input, items, t0, fault)
        finally:
            if self._admitted is not None:
                self._admitted.release(time.monotonic())  # a concurrency slot frees up
                self._admitted = None
            if not self._recorded:
                self._record(None)

    def _apply_early_fault(self, fault: _Fault) -> bool:
        """Answer a fault that answers at once; ``False`` for those that act on the answer."""
        headers: dict[str, str] = {}
        if fault.retry_after is not None:
            ra = fault.retry_after
            headers["Retry-After"] = str(int(ra)) if float(ra).is_integer() else f"{ra:g}"
        if fault.kind in _ERROR_FAULTS:
            st, code, message = _ERROR_FAULTS[fault.kind]
            self._send_error(st, code, message, headers=headers)
            return True
        if fault.kind == "bad_gateway":
            self._send(502, _BAD_GATEWAY_HTML, content_type="text/html", headers=headers)
            return True
        if fault.kind == "drop":
            self._record(None)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return True
        if fault.kind == "malformed":
            rid = _request_id()
            body = (
                b'{"request_id": "' + rid.encode() + b'", "latency": 3, "usage": {"image": 0, '
                b'"token_count": 1}, "result": {"embeddings": [{"index": 0, "embedding": [0.01'
            )
            self._send(200, body, request_id=rid)
            return True
        return False  # "slow", "trickle" and "incomplete" act on the answer

    def _answer(
        self,
        emu: Emulator,
        service_id: str,
        dim: int,
        combined: bool,
        items: list[InputItem],
        t0: float,
        fault: _Fault | None,
    ) -> None:
        embeddings: list[dict[str, Any]] = []
        n_images = 0
        tokens = 0
        for i, item in enumerate(items):
            text, image = item.text, item.image
            if text is not None and image is not None and not combined:
                image = None  # m2-encoder: the image beside a text is silently ignored
            if image is not None:
                n_images += 1
            if text is not None:
                tokens += estimate_tokens(text)
            vec = emu._vectors.vector(service_id, dim, text, image)
            embeddings.append({"index": i, "embedding": vec})
        if fault is not None and fault.kind == "incomplete":
            embeddings.pop()
        rid = _request_id()
        latency = max(1, round((time.monotonic() - t0) * 1000))
        doc = {
            "request_id": rid,
            "latency": latency,
            # As the official SDK's response model: token_count, image, and the tokens
            # split by kind. token_count counts images too (the API page's sample: an
            # image alone, 28 tokens); image tokens are a fixed count per image.
            "usage": {
                "image": n_images,
                "image_token": n_images * IMAGE_TOKENS,
                "text_token": tokens,
                "token_count": tokens + n_images * IMAGE_TOKENS,
            },
            "result": {"embeddings": embeddings},
        }
        body = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
        emu._count_embedded(len(embeddings))
        trickle = fault.delay if fault is not None and fault.kind == "trickle" else 0.0
        self._send(200, body, request_id=rid, trickle=trickle)


class Emulator:
    """A local server speaking the multimodal embedding API, for tests and offline work.

    ``with Emulator() as emu:`` starts it on a free port; point a client at ``emu.url``
    (or the official SDK at ``emu.endpoint`` with ``protocol="http"``). Every service id of
    :data:`opensearch_mm.models.MODELS` is served; vectors are deterministic per
    ``(seed, service_id, text, image)`` and L2-normalised.

    The service's throttle is not documented, so the emulator models several shapes of it
    (the default is a token bucket of ``qps`` tokens/s holding one second's worth)::

        Emulator(qps=10)                                 # token bucket, burst 10
        Emulator(qps=10, burst=2)                        # a bucket that saves little
        Emulator(qps=10, charge_refusals=True)           # a 429 costs a token too
        Emulator(qps=10, throttle="fixed")               # <= 10 per clock second
        Emulator(qps=10, throttle="sliding", window=60)  # <= 600 in any minute
        Emulator(qps=10, throttle="queue", window=0.5)   # held in line up to 0.5 s
        Emulator(qps=30, throttle="warmup", window=10)   # 10/s when idle, 30/s after ~10 s
        Emulator(throttle="concurrency", max_in_flight=4, latency_ms=200)
        Emulator(qps=10, latency_ms=40, latency_jitter=0.5)      # lognormal latency
        Emulator(qps=10, retry_after_header="x-acs-retry-after")  # a hint on each 429

    Args:
        api_key: The accepted bearer key.
        host: Address to bind.
        port: Port (0: any free one).
        qps: The account's rate cap (``None``: none).
        latency_ms: The median service time of a request.
        seed: Mixed into every vector.
        verbose: Log method, path and status of each request to stderr.
        log_size: Requests kept in :attr:`requests_log`.
        throttle: The throttle model: see :meth:`set_throttle`.
        burst: A token bucket's capacity (default ``qps``).
        charge_refusals: 429s count too, as a gateway that charges every arrival does: a
            bucket's take a token (down to a debt of a full bucket), a sliding window's a
            place in it.
        window: A fixed or sliding window's length in seconds, the longest a request
            waits in a queue's line, or how long a warm-up takes.
        max_in_flight: A concurrency cap (alone, or on top of the rate cap).
        latency_jitter: Lognormal sigma of the service time around ``latency_ms``.
        retry_after_header: ``"retry-after"`` (seconds) or ``"x-acs-retry-after"``
            (milliseconds) on each 429 of the throttle; ``None``: no hint.
    """

    def __init__(
        self,
        api_key: str = "test-key",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        qps: float | None = None,
        latency_ms: float = 0.0,
        seed: int = 0,
        verbose: bool = False,
        log_size: int = 1000,
        throttle: str = "bucket",
        burst: float | None = None,
        charge_refusals: bool = False,
        window: float = 1.0,
        max_in_flight: int | None = None,
        latency_jitter: float = 0.0,
        retry_after_header: str | None = None,
    ) -> None:
        self.api_key = api_key
        self.host = host
        self._requested_port = port
        self.latency_ms = latency_ms
        self.seed = seed
        self.verbose = verbose
        self._vectors = VectorCache(seed)
        self._lock = threading.Lock()
        self._throttle: Throttle | None = None
        self._qps: float | None = None
        self._throttle_kind = "bucket"
        self._burst: float | None = None
        self._window = 1.0
        self._cap_in_flight: int | None = None
        self._charge_refusals = False
        self.set_throttle(
            throttle,
            qps,
            burst=burst,
            window=window,
            max_in_flight=max_in_flight,
            charge_refusals=charge_refusals,
        )
        if not latency_jitter >= 0:
            raise ValueError("latency_jitter must be >= 0")
        self.latency_jitter = latency_jitter
        if retry_after_header is not None and retry_after_header.lower() not in RETRY_AFTER_HEADERS:
            raise ValueError(
                f"retry_after_header must be one of {RETRY_AFTER_HEADERS} or None, "
                f"got {retry_after_header!r}"
            )
        self.retry_after_header = retry_after_header.lower() if retry_after_header else None
        self._latency_rng = random.Random(seed)
        self._faults: deque[_Fault] = deque()
        self._random_rate = 0.0
        self._random_kinds: tuple[str, ...] = ()
        self._random_rng = random.Random(0)
        self._random_slow_delay = 0.2
        self._log: deque[RequestRecord] = deque(maxlen=log_size)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._requests = 0
        self._by_status: Counter[int] = Counter()
        self._inputs_embedded = 0
        self._in_flight = 0
        self._max_in_flight = 0
        self._connections = 0
        self._dropped = 0
        self._faults_applied = 0

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> Emulator:
        """Bind and serve in a background daemon thread; returns ``self``."""
        if self._server is not None:
            return self
        server = _Server((self.host, self._requested_port), self)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"opensearch-mm-emulator:{server.server_address[1]}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.close_open_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the emulator is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """``http://host:port`` (IPv6 hosts in brackets)."""
        return f"http://{self.endpoint}"

    @property
    def endpoint(self) -> str:
        """``host:port`` without scheme, as the official SDK's ``Config(endpoint=...)`` wants."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __repr__(self) -> str:
        where = self.url if self.running else "stopped"
        return (
            f"Emulator({where}, throttle={self._throttle_kind}, qps={self.qps}, "
            f"latency_ms={self.latency_ms})"
        )

    # -- runtime knobs ----------------------------------------------------------------------
    @property
    def qps(self) -> float | None:
        """Requests per second allowed (token bucket, burst = qps); ``None`` for no limit."""
        return self._qps

    @qps.setter
    def qps(self, value: float | None) -> None:
        self.set_throttle(
            self._throttle_kind,
            value,
            burst=self._burst,
            window=self._window,
            max_in_flight=self._cap_in_flight,
            charge_refusals=self._charge_refusals,
        )

    @property
    def throttle(self) -> str:
        """The throttle model (see :data:`THROTTLE_KINDS`)."""
        return self._throttle_kind

    def set_throttle(
        self,
        kind: str = "bucket",
        qps: float | None = None,
        *,
        burst: float | None = None,
        window: float = 1.0,
        max_in_flight: int | None = None,
        charge_refusals: bool = False,
    ) -> None:
        """Replace the throttle with a fresh one (a full bucket, empty windows).

        Args:
            kind: ``"bucket"`` (``qps`` tokens/s holding ``burst``, default one second's
                worth), ``"fixed"`` (at most ``qps * window`` requests per window of
                ``window`` seconds on the clock), ``"anchored"`` (the same per window
                starting at the first request after the last one ended), ``"sliding"``
                (at most ``qps * window`` in any ``window`` seconds), ``"sliced"`` (the
                same, counted in two clock-aligned halves of the window), ``"weighted"``
                (a sliding-window counter: the last window's count, weighted by how much
                of it a sliding window still covers, plus the current one's, below
                ``qps * window``), ``"queue"`` (requests held
                in line and let through at ``qps``, refused when they would wait over
                ``window`` seconds),
                ``"warmup"`` (a sliced window letting a third of ``qps`` through when the
                account is idle, climbing to ``qps`` over ``window`` seconds of traffic) or
                ``"concurrency"`` (at most ``max_in_flight`` requests being served; ``qps``
                unused).
            qps: Requests per second; ``None``: no rate limit.
            burst: A bucket's capacity.
            window: A window's length in seconds (a queue's longest wait, a warm-up's
                period).
            max_in_flight: A concurrency cap, alone or on top of a rate model.
            charge_refusals: 429s take a bucket's token or a sliding window's place too.

        Raises:
            ValueError: An unknown kind or a value out of range.
        """
        if qps is not None and not qps > 0:
            raise ValueError("qps must be > 0")
        throttle = make_throttle(
            kind,
            None if qps is None else float(qps),
            burst=burst,
            window=window,
            max_in_flight=max_in_flight,
            penalty=charge_refusals,
            now=time.monotonic(),
        )
        with self._lock:
            self._throttle_kind = kind
            self._qps = None if qps is None else float(qps)
            self._burst = burst
            self._window = window
            self._cap_in_flight = max_in_flight
            self._charge_refusals = charge_refusals
            self._throttle = throttle

    def inject(
        self,
        kind: str,
        count: int = 1,
        *,
        retry_after: float | None = None,
        delay: float = 0.0,
    ) -> None:
        """Apply fault ``kind`` to the next ``count`` authorised API requests.

        The fault is taken after the path and auth checks and before throttling and body
        validation. Kinds: see :data:`FAULT_KINDS`. ``retry_after`` (seconds) adds a
        ``Retry-After`` header to 429/5xx answers; ``delay`` is the extra wait of "slow", and
        the time "trickle" takes to send the answer's body (its headers come at once).
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {FAULT_KINDS}")
        if count < 0:
            raise ValueError("count must be >= 0")
        f = _Fault(kind, retry_after, delay)
        with self._lock:
            self._faults.extend([f] * count)

    def set_random_faults(
        self,
        rate: float,
        kinds: list[str] | tuple[str, ...] | None = None,
        seed: int | None = None,
        slow_delay: float = 0.2,
        *,
        retry_after: float | None = None,
    ) -> None:
        """Fail each request with probability ``rate`` with a kind drawn from ``kinds``.

        ``rate=0`` turns random faults off. Scripted faults (:meth:`inject`) come first.
        """
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be within [0, 1]")
        chosen = tuple(kinds) if kinds is not None else ("throttle", "server_error")
        for k in chosen:
            if k not in FAULT_KINDS:
                raise ValueError(f"unknown fault kind {k!r}; expected one of {FAULT_KINDS}")
        if rate > 0 and not chosen:
            raise ValueError("kinds must not be empty")
        with self._lock:
            self._random_rate = rate
            self._random_kinds = chosen
            self._random_rng = random.Random(seed)
            self._random_slow_delay = slow_delay
            self._random_retry_after = retry_after

    def clear_faults(self) -> None:
        """Forget scripted faults and turn random faults off."""
        with self._lock:
            self._faults.clear()
            self._random_rate = 0.0

    @property
    def pending_faults(self) -> int:
        with self._lock:
            return len(self._faults)

    # -- stats ----------------------------------------------------------------------------
    @property
    def stats(self) -> EmulatorStats:
        """A consistent snapshot of the counters."""
        with self._lock:
            return EmulatorStats(
                requests=self._requests,
                by_status=dict(self._by_status),
                throttled=self._by_status.get(429, 0),
                inputs_embedded=self._inputs_embedded,
                max_in_flight=self._max_in_flight,
                connections=self._connections,
                dropped=self._dropped,
                faults=self._faults_applied,
            )

    @property
    def requests_log(self) -> list[RequestRecord]:
        """The last ``log_size`` requests, oldest first."""
        with self._lock:
            return list(self._log)

    def reset_stats(self) -> None:
        """Zero the counters and clear the request log (in-flight requests still finish)."""
        with self._lock:
            in_flight = self._in_flight
            self._reset_counters()
            self._in_flight = in_flight
            self._max_in_flight = in_flight
            self._log.clear()

    # -- internals used by the handler --------------------------------------------------
    def _reset_counters(self) -> None:
        self._requests = 0
        self._by_status = Counter()
        self._inputs_embedded = 0
        self._in_flight = 0
        self._max_in_flight = 0
        self._connections = 0
        self._dropped = 0
        self._faults_applied = 0

    def _count_connection(self) -> None:
        with self._lock:
            self._connections += 1

    def _begin_request(self) -> None:
        with self._lock:
            self._requests += 1
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)

    def _end_request(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _count_embedded(self, n: int) -> None:
        with self._lock:
            self._inputs_embedded += n

    def _record(self, rec: RequestRecord) -> None:
        with self._lock:
            if rec.status is None:
                self._dropped += 1
            else:
                self._by_status[rec.status] += 1
            self._log.append(rec)

    def _authorized(self, header: str | None) -> bool:
        if not header:
            return False
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(token.strip().encode(), self.api_key.encode())

    def _next_fault(self) -> _Fault | None:
        with self._lock:
            if self._faults:
                self._faults_applied += 1
                return self._faults.popleft()
            if self._random_rate > 0 and self._random_rng.random() < self._random_rate:
                kind = self._random_rng.choice(self._random_kinds)
                self._faults_applied += 1
                return _Fault(kind, self._random_retry_after, self._random_slow_delay)
        return None

    def _hint(self, throttle: Throttle) -> dict[str, str]:
        """The retry hint header of a throttled answer (none unless asked for)."""
        header = self.retry_after_header
        if header is None:
            return {}
        wait = throttle.retry_after(time.monotonic())
        if header == "x-acs-retry-after":
            return {"x-acs-retry-after": str(max(1, math.ceil(wait * 1000.0)))}
        return {"Retry-After": str(max(1, math.ceil(wait)))}

    def _service_time(self) -> float:
        """This request's latency in seconds: the median, or lognormal around it."""
        median = self.latency_ms / 1000.0
        if self.latency_jitter <= 0 or median <= 0:
            return median
        with self._lock:
            return Latency(median, self.latency_jitter).sample(self._latency_rng)

    _random_retry_after: float | None = None
