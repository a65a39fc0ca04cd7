"""``python -m opensearch_mm.emulator``: run the emulator until Ctrl-C (or SIGTERM)."""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
import threading
from types import FrameType


def build_parser() -> argparse.ArgumentParser:
    """The command's options (imports the emulator, so it needs numpy)."""
    from . import RETRY_AFTER_HEADERS, THROTTLE_KINDS

    p = argparse.ArgumentParser(
        prog="python -m opensearch_mm.emulator",
        description="A local server speaking the AI Search Open Platform multimodal "
        "embedding API. Prints its URL on the first line of stdout.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (0 = any free port; default 8080)")
    p.add_argument(
        "--api-key",
        default=None,
        help="the accepted API key (default: $OPENSEARCH_MM_API_KEY, else 'test-key')",
    )
    p.add_argument("--qps", type=float, default=None, help="requests per second before 429")
    p.add_argument(
        "--throttle",
        choices=THROTTLE_KINDS,
        default="bucket",
        help="how the cap is enforced: token bucket (default), fixed window on the clock, "
        "sliding window, sliced window, a sliding-window counter (the last window's count "
        "weighted), a queue that holds requests in line (up to --window "
        "seconds), a sliced window that warms up from a third of --qps over --window seconds "
        "of traffic, or a cap on requests in flight (--max-in-flight)",
    )
    p.add_argument("--burst", type=float, default=None, help="bucket capacity (default: qps)")
    p.add_argument(
        "--charge-refusals",
        action="store_true",
        help=(
            "429s take a bucket's token or a sliding window's place too "
            "(a gateway that charges every arrival)"
        ),
    )
    p.add_argument(
        "--window",
        type=float,
        default=1.0,
        help="window length in seconds, a queue's longest wait, or a warm-up's period (default 1)",
    )
    p.add_argument("--max-in-flight", type=int, default=None, help="requests in flight before 429")
    p.add_argument("--latency-ms", type=float, default=0.0, help="delay of each answer (ms)")
    p.add_argument(
        "--latency-jitter",
        type=float,
        default=0.0,
        help="lognormal sigma of the delay around --latency-ms (default 0: constant)",
    )
    p.add_argument(
        "--retry-after-header",
        choices=RETRY_AFTER_HEADERS,
        default=None,
        help="send this retry hint with each throttled answer (x-acs-retry-after: in ms)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed mixed into every vector")
    p.add_argument("--verbose", action="store_true", help="log method, path and status")
    return p


def _say(message: str) -> None:
    print(f"opensearch-mm emulator: {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
        from . import Emulator
    except ModuleNotFoundError as exc:
        if exc.name != "numpy":
            raise
        _say(str(exc))  # names the extra to install, in one line
        return 2
    args = parser.parse_args(argv)
    api_key = args.api_key or os.environ.get("OPENSEARCH_MM_API_KEY") or "test-key"
    emu = Emulator(
        api_key,
        host=args.host,
        port=args.port,
        qps=args.qps,
        latency_ms=args.latency_ms,
        seed=args.seed,
        verbose=args.verbose,
        throttle=args.throttle,
        burst=args.burst,
        charge_refusals=args.charge_refusals,
        window=args.window,
        max_in_flight=args.max_in_flight,
        latency_jitter=args.latency_jitter,
        retry_after_header=args.retry_after_header,
    )
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    try:
        emu.start()
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            _say(f"port {args.port} is in use on {args.host}; pick another with --port (0: any)")
        else:
            _say(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}")
        return 1
    try:
        print(emu.url, flush=True)
        print(
            f"opensearch-mm emulator serving {emu.url} (Ctrl-C to stop)",
            file=sys.stderr,
            flush=True,
        )
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
