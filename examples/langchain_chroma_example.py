"""LangChain + Chroma: index images with ``Chroma.add_images``, search them with text.

    pip install -e ".[chroma]"      # langchain-core and langchain-chroma
    python examples/langchain_chroma_example.py

(Not named langchain_chroma.py: a script of that name would shadow the package.)

Uses the real service when OPENSEARCH_MM_ENDPOINT and OPENSEARCH_MM_API_KEY are set,
otherwise a local emulator (its vectors are deterministic but NOT semantic, so the
text -> image ranking is arbitrary; the image -> image query still finds the image itself).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from langchain_opensearch_mm import OpenSearchMultiModalEmbeddings

HERE = Path(__file__).resolve().parent


@contextmanager
def embeddings() -> Iterator[OpenSearchMultiModalEmbeddings]:
    """The environment's credentials, or a local emulator."""
    if os.environ.get("OPENSEARCH_MM_ENDPOINT") and os.environ.get("OPENSEARCH_MM_API_KEY"):
        yield OpenSearchMultiModalEmbeddings(model="ops-m2-encoder")  # reads the environment
        return
    from opensearch_mm.emulator import Emulator

    print("no credentials: using the local emulator (vectors are NOT semantic)")
    with Emulator(api_key="local-demo-key") as emulator:
        yield OpenSearchMultiModalEmbeddings(
            model="ops-m2-encoder", endpoint=emulator.url, api_key=emulator.api_key
        )


def main() -> None:
    try:
        import chromadb
        from langchain_chroma import Chroma
    except ImportError:
        raise SystemExit(
            "this example needs langchain-chroma: pip install 'opensearch-mm[chroma]'"
        ) from None

    records = [json.loads(line) for line in (HERE / "captions.jsonl").read_text().splitlines()]
    paths = [str(HERE / r["image"]) for r in records]

    with embeddings() as embedding:
        try:
            store = Chroma(
                collection_name="opensearch-mm-example-images",
                embedding_function=embedding,
                client=chromadb.EphemeralClient(
                    settings=chromadb.config.Settings(anonymized_telemetry=False)
                ),
                collection_metadata={"hnsw:space": "cosine"},
            )
            store.add_images(uris=paths, metadatas=[{"file": Path(p).name} for p in paths])
            print(f"indexed {len(paths)} images with Chroma.add_images (embed_image)")

            query = "a cartoon cat"
            print(f"text -> image: {query!r}")
            for doc, distance in store.similarity_search_with_score(query, k=3):
                print(f"  {doc.metadata['file']:<20} cosine distance {distance:.4f}")

            print("image -> image: cat.png")
            for doc in store.similarity_search_by_image(uri=str(HERE / "images" / "cat.png"), k=3):
                print(f"  {doc.metadata['file']}")
        finally:
            embedding.close()


if __name__ == "__main__":
    main()
