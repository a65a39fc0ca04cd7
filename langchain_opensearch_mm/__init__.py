"""LangChain integration of opensearch-mm (Alibaba Cloud AI Search Open Platform).

``OpenSearchMultiModalEmbeddings`` embeds texts and images for LangChain vector stores,
retrievers and chains; install with ``pip install "opensearch-mm[langchain]"``.
"""

from .embeddings import MultiModalInput, OpenSearchMultiModalEmbeddings

__all__ = ["MultiModalInput", "OpenSearchMultiModalEmbeddings"]
