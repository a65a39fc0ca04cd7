"""Shared pieces of the benchmarks: the emulator child process and the workload."""

from __future__ import annotations

import contextlib
import io
import os
import random
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson

from opensearch_mm import ClientConfig, Content
from opensearch_mm.ratelimit import SharedState

API_KEY = "bench-key"
MODEL = "ops-m2-encoder"
WORKSPACE = "default"
INPUTS_PER_REQUEST = 32
_ROOT = Path(__file__).resolve().parent.parent

_WORDS = [
    "red",
    "blue",
    "green",
    "small",
    "large",
    "vintage",
    "modern",
    "leather",
    "cotton",
    "wooden",
    "steel",
    "glass",
    "bright",
    "dark",
    "soft",
    "cat",
    "dog",
    "bicycle",
    "lamp",
    "chair",
    "table",
    "mountain",
    "river",
    "city",
    "night",
    "morning",
    "coffee",
    "shoe",
    "jacket",
    "phone",
    "camera",
    "garden",
    "window",
    "street",
    "photo",
    "of",
    "a",
    "the",
    "with",
    "on",
    "in",
    "under",
]


class EmulatorProcess:
    """``python benchmarks/_emuproc.py`` in a child process: its CPU is not ours."""

    def __init__(self, *, qps: float | None = None, latency_ms: float = 0.0) -> None:
        env = {**os.environ, "PYTHONPATH": str(_ROOT)}
        self._proc = subprocess.Popen(
            [
                sys.executable,
                str(_ROOT / "benchmarks" / "_emuproc.py"),
                API_KEY,
                "none" if qps is None else str(qps),
                str(latency_ms),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self._proc.stdout is not None
        self.url = self._proc.stdout.readline().strip()
        if not self.url.startswith("http://"):
            self.close()
            raise RuntimeError("the emulator process did not start")
        self.endpoint = self.url.removeprefix("http://")

    def _command(self, line: str) -> dict[str, Any]:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(line + "\n")
        self._proc.stdin.flush()
        out: dict[str, Any] = orjson.loads(self._proc.stdout.readline())
        return out

    def configure(
        self,
        *,
        qps: float | None,
        latency_ms: float,
        throttle: str = "bucket",
        max_in_flight: int | None = None,
        jitter: float = 0.0,
        window: float = 1.0,
        hint: str | None = None,
    ) -> None:
        """A fresh throttle (a full bucket, empty windows of ``window`` seconds; or none),
        the latency and its jitter, the retry hint header sent on each 429 (``None``: none);
        counters zeroed."""
        config = {"kind": throttle, "qps": qps, "max_in_flight": max_in_flight, "window": window}
        self._command(f"throttle {orjson.dumps(config).decode()}")
        self._command(f"hint {hint or 'none'}")
        self._command(f"latency {latency_ms}")
        self._command(f"jitter {jitter}")
        self._command("reset")

    def slow(self, share: float, delay: float, seed: int = 1) -> None:
        """Delay a random ``share`` of the answers by ``delay`` more seconds (a latency
        tail); ``share=0`` turns it off."""
        self._command(f"slow {share} {delay} {seed}")

    def stats(self) -> dict[str, Any]:
        return self._command("stats")

    def close(self) -> None:
        if self._proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                self._command("quit")
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def __enter__(self) -> EmulatorProcess:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _image(rng: random.Random, fmt: str) -> bytes:
    from PIL import Image

    side = rng.choice((32, 48, 64, 96))
    img = Image.new("RGB", (side, side), tuple(rng.randrange(256) for _ in range(3)))
    for _ in range(8):
        x, y = rng.randrange(side), rng.randrange(side)
        img.putpixel((x, y), tuple(rng.randrange(256) for _ in range(3)))
    out = io.BytesIO()
    img.save(out, fmt)
    return out.getvalue()


class Workload:
    """``n`` mixed inputs: 3 of 4 are texts (5-40 words), 1 of 4 a small PNG/JPEG
    (``images=False``: all texts, which every adapter's batch method takes).

    The same raw inputs feed every contender; each does its own encoding (base64, JSON).
    """

    def __init__(self, n: int, seed: int = 1, *, images: bool = True) -> None:
        rng = random.Random(seed)
        pictures = [_image(rng, "PNG" if k % 2 else "JPEG") for k in range(64)] if images else []
        self.raw: list[str | bytes] = []
        for i in range(n):
            if images and i % 4 == 3:
                self.raw.append(pictures[rng.randrange(len(pictures))])
            else:
                words = rng.choices(_WORDS, k=rng.randint(5, 40))
                self.raw.append(f"item {i}: " + " ".join(words))

    def __len__(self) -> int:
        return len(self.raw)

    def contents(self) -> list[str | Content]:
        """For opensearch-mm: texts as ``str``, images as ``Content(image=bytes)``."""
        return [x if isinstance(x, str) else Content(image=x) for x in self.raw]

    def requests(self) -> int:
        return -(-len(self.raw) // INPUTS_PER_REQUEST)

    def texts(self) -> list[str]:
        """The inputs as texts (for ``images=False`` workloads)."""
        return [x for x in self.raw if isinstance(x, str)]

    def chunks(self) -> list[list[str | bytes]]:
        step = INPUTS_PER_REQUEST
        return [self.raw[i : i + step] for i in range(0, len(self.raw), step)]


def data_uri(data: bytes) -> str:
    """What a hand-written client does: sniff PNG vs JPEG, base64 with pybase64."""
    import pybase64

    fmt = "png" if data.startswith(b"\x89PNG") else "jpeg"
    return f"data:image/{fmt};base64," + pybase64.b64encode(data).decode("ascii")


def wire_input(x: str | bytes) -> dict[str, str]:
    return {"text": x} if isinstance(x, str) else {"image": data_uri(x)}


def forget_shared_limit(endpoint: str, api_key: str = API_KEY) -> None:
    """Remove the rate limiter state that default clients of this account on this machine
    share, so the next run starts as a new account's would (slow start), not from what the
    last run learned about another throttle."""
    key = ClientConfig.resolve(api_key=api_key, endpoint=endpoint).share_key()
    if key is None:
        return
    with contextlib.suppress(ImportError, OSError):
        state = SharedState(key)
        state.close()
        state.path.unlink()
