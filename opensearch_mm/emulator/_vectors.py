"""Deterministic fake embeddings and token estimates for the emulator."""

from __future__ import annotations

import hashlib
import re
import threading
from collections import OrderedDict

import numpy as np
import numpy.typing as npt

__all__ = ["IMAGE_TOKENS", "VectorCache", "estimate_tokens"]

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f"
_TOKEN_RE = re.compile(f"[{_CJK}]|[^\\s{_CJK}]+")

Vector = npt.NDArray[np.float32]


# Tokens counted per image: the API page's one sample (an image alone, ops-m2-encoder)
# counts 28. Other models and image sizes may count otherwise; it is not documented.
IMAGE_TOKENS = 28


def estimate_tokens(text: str) -> int:
    """A deterministic token estimate: one per CJK character plus one per other word."""
    return len(_TOKEN_RE.findall(text))


class VectorCache:
    """Derives one L2-normalised float32 vector per (seed, service_id, text, image).

    The vector is seeded from a SHA-256 digest of those values (never Python's ``hash``),
    so it is identical across processes. A bounded LRU keeps CPU low under load.
    """

    def __init__(self, seed: int = 0, maxsize: int = 8192) -> None:
        self._seed = seed
        self._maxsize = maxsize
        self._lock = threading.Lock()
        self._cache: OrderedDict[bytes, Vector] = OrderedDict()

    def key(self, service_id: str, text: str | None, image: str | None) -> bytes:
        h = hashlib.sha256()
        h.update(f"opensearch-mm-emulator\0{self._seed}\0{service_id}\0".encode())
        if text is not None:
            h.update(b"t\0")
            h.update(text.encode("utf-8", "surrogatepass"))
            h.update(b"\0")
        if image is not None:
            h.update(b"i\0")
            h.update(image.encode("utf-8", "surrogatepass"))
        return h.digest()

    def vector(self, service_id: str, dim: int, text: str | None, image: str | None) -> Vector:
        k = self.key(service_id, text, image) + dim.to_bytes(4, "big")
        with self._lock:
            v = self._cache.get(k)
            if v is not None:
                self._cache.move_to_end(k)
                return v
        rng = np.random.default_rng(int.from_bytes(k[:16], "big"))
        raw = rng.standard_normal(dim)
        raw /= np.linalg.norm(raw)
        v = raw.astype(np.float32)
        v.flags.writeable = False
        with self._lock:
            self._cache[k] = v
            if len(self._cache) > self._maxsize:
                self._cache.popitem(last=False)
        return v
