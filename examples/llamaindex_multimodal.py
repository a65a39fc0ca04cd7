"""LlamaIndex: a ``MultiModalVectorStoreIndex`` over images and captions.

    pip install -e ".[llamaindex]"
    python examples/llamaindex_multimodal.py

Uses the real service when OPENSEARCH_MM_ENDPOINT and OPENSEARCH_MM_API_KEY are set,
otherwise a local emulator (its vectors are deterministic but NOT semantic, so rankings are
arbitrary; the image -> image query still finds the image itself).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from llama_index.core.indices import MultiModalVectorStoreIndex
from llama_index.core.schema import BaseNode, ImageNode, QueryBundle, TextNode

from llamaindex_opensearch_mm import OpenSearchMultiModalEmbedding

HERE = Path(__file__).resolve().parent


@contextmanager
def embed_model() -> Iterator[OpenSearchMultiModalEmbedding]:
    """The environment's credentials, or a local emulator."""
    if os.environ.get("OPENSEARCH_MM_ENDPOINT") and os.environ.get("OPENSEARCH_MM_API_KEY"):
        yield OpenSearchMultiModalEmbedding(model_name="ops-m2-encoder")  # reads the environment
        return
    from opensearch_mm.emulator import Emulator

    print("no credentials: using the local emulator (vectors are NOT semantic)")
    with Emulator(api_key="local-demo-key") as emulator:
        yield OpenSearchMultiModalEmbedding(
            model_name="ops-m2-encoder", endpoint=emulator.url, api_key=emulator.api_key
        )


def main() -> None:
    records = [json.loads(line) for line in (HERE / "captions.jsonl").read_text().splitlines()]
    images: list[BaseNode] = [
        ImageNode(image_path=str(HERE / r["image"]), metadata={"file": Path(r["image"]).name})
        for r in records
    ]
    captions: list[BaseNode] = [
        TextNode(
            text=r["caption"],
            metadata={"file": Path(r["image"]).name},
            excluded_embed_metadata_keys=["file"],  # embed the caption only
        )
        for r in records
    ]

    with embed_model() as model:
        # one model embeds both the captions (text) and the images
        index = MultiModalVectorStoreIndex(
            images + captions, embed_model=model, image_embed_model=model
        )
        retriever = index.as_retriever(similarity_top_k=3, image_similarity_top_k=3)
        print(f"indexed {len(images)} images and {len(captions)} captions")

        query = "a yellow star"
        print(f"text -> image: {query!r}")
        for hit in retriever.text_to_image_retrieve(query):
            print(f"  {hit.score:+.4f}  {hit.node.metadata['file']}")

        print(f"text -> text: {query!r}")
        for hit in retriever.text_retrieve(query):
            print(f"  {hit.score:+.4f}  {hit.node.get_content()!r}")

        star = str(HERE / "images" / "yellow_star.png")
        print("image -> image: yellow_star.png")
        for hit in retriever.image_to_image_retrieve(QueryBundle(query_str="", image_path=star)):
            print(f"  {hit.score:+.4f}  {hit.node.metadata['file']}")

        print("image -> text: yellow_star.png")
        vector = model.get_image_embedding(star)
        for hit in retriever.text_retrieve(QueryBundle(query_str="", embedding=vector)):
            print(f"  {hit.score:+.4f}  {hit.node.get_content()!r}")
        model.close()


if __name__ == "__main__":
    main()
