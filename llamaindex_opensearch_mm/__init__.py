"""LlamaIndex integration of opensearch-mm (Alibaba Cloud AI Search Open Platform).

>>> from llamaindex_opensearch_mm import OpenSearchMultiModalEmbedding  # doctest: +SKIP
"""

from .embeddings import MAX_BATCH_SIZE, OpenSearchMultiModalEmbedding

__all__ = ["MAX_BATCH_SIZE", "OpenSearchMultiModalEmbedding"]
