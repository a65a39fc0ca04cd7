"""Quickstart: the core client, texts and images in, one vector per input out.

    python examples/quickstart.py

Uses the real service when OPENSEARCH_MM_ENDPOINT and OPENSEARCH_MM_API_KEY are set,
otherwise a local emulator (its vectors are deterministic but NOT semantic).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from opensearch_mm import Content, MultiModalEmbeddingClient

IMAGES = Path(__file__).resolve().parent / "images"


@contextmanager
def connect() -> Iterator[MultiModalEmbeddingClient]:
    """A client for the environment's credentials, or for a local emulator."""
    if os.environ.get("OPENSEARCH_MM_ENDPOINT") and os.environ.get("OPENSEARCH_MM_API_KEY"):
        # the client reads OPENSEARCH_MM_ENDPOINT / OPENSEARCH_MM_API_KEY itself
        with MultiModalEmbeddingClient(model="ops-m2-encoder") as client:
            yield client
        return
    from opensearch_mm.emulator import Emulator

    print("no credentials: using the local emulator (vectors are NOT semantic)")
    with (
        Emulator(api_key="local-demo-key") as emulator,
        MultiModalEmbeddingClient(
            endpoint=emulator.url, api_key=emulator.api_key, model="ops-m2-encoder"
        ) as client,
    ):
        yield client


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.hypot(*a) * math.hypot(*b))


def main() -> None:
    with connect() as client:
        print(f"model {client.model}: {client.dimensions} dimensions")

        texts = ["a red circle", "a cartoon cat"]
        text_vectors = client.embed_texts(texts)
        print(f"embed_texts: {len(text_vectors)} vectors of {len(text_vectors[0])} floats")

        # images: local paths, bytes, file objects, PIL images, http(s) URLs or data URIs
        cat = IMAGES / "cat.png"
        image_vectors = client.embed_images([IMAGES / "red_circle.png", cat.read_bytes()])
        print(f"embed_images: {len(image_vectors)} vectors")

        # mixed inputs in one call, with usage and request ids
        result = client.embed(["a red circle", Content(image=cat), {"image": str(cat)}])
        # (the same image twice in one call is sent once: result.reused counts the copies)
        print(
            f"embed: {len(result.embeddings)} vectors, usage: {result.usage.token_count} "
            f"tokens + {result.usage.image} image(s), {len(result.request_ids)} request(s), "
            f"{result.reused} reused"
        )

        # the same image sent as a path or as bytes gets the same vector
        same = cosine(image_vectors[1], result.embeddings[1])
        print(f"cat.png as bytes vs as a path: {same:.4f}")
        for text, vector in zip(texts, text_vectors, strict=True):
            print(f"cosine({text!r}, cat.png) = {cosine(vector, image_vectors[1]):+.4f}")


if __name__ == "__main__":
    main()
