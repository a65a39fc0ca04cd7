"""The emulator in a child process, driven over a pipe (so its CPU is not the client's).

Run by :class:`benchmarks.common.EmulatorProcess`: prints the URL, then answers one
command per stdin line with one JSON line on stdout:

``stats`` -> the counters; ``reset`` -> zero them; ``qps N|none`` -> a fresh (full)
throttle of the current model at N requests per second; ``latency MS`` -> the service
latency; ``throttle {json}`` -> a fresh throttle (``Emulator.set_throttle`` arguments);
``jitter SIGMA`` -> lognormal latency jitter; ``slow SHARE DELAY SEED`` -> that share of
answers delayed by DELAY more seconds (0: off); ``hint HEADER|none`` -> a retry hint on each
429 (``retry-after`` or ``x-acs-retry-after``).
"""

from __future__ import annotations

import sys
from dataclasses import asdict

import orjson

from opensearch_mm.emulator import Emulator


def main() -> int:
    api_key, qps, latency = sys.argv[1], sys.argv[2], float(sys.argv[3])
    emu = Emulator(api_key, qps=None if qps == "none" else float(qps), latency_ms=latency)
    emu.start()
    print(emu.url, flush=True)
    for line in sys.stdin:
        cmd, _, arg = line.strip().partition(" ")
        if cmd == "stats":
            out = asdict(emu.stats)
            out["by_status"] = {str(k): v for k, v in out["by_status"].items()}
        elif cmd == "reset":
            emu.reset_stats()
            out = {}
        elif cmd == "qps":
            emu.qps = None if arg == "none" else float(arg)
            out = {}
        elif cmd == "latency":
            emu.latency_ms = float(arg)
            out = {}
        elif cmd == "throttle":
            emu.set_throttle(**orjson.loads(arg))
            out = {}
        elif cmd == "jitter":
            emu.latency_jitter = float(arg)
            out = {}
        elif cmd == "slow":
            share, delay, seed = arg.split()
            emu.set_random_faults(float(share), ["slow"], int(seed), float(delay))
            out = {}
        elif cmd == "hint":
            emu.retry_after_header = None if arg == "none" else arg
            out = {}
        elif cmd == "quit":
            break
        else:
            out = {"error": f"unknown command {cmd!r}"}
        sys.stdout.write(orjson.dumps(out).decode() + "\n")
        sys.stdout.flush()
    emu.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
