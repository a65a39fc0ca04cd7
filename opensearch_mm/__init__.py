"""opensearch-mm: multimodal embeddings from Alibaba Cloud AI Search Open Platform.

Not Amazon OpenSearch: this is the client of Alibaba Cloud's AI Search Open Platform
multimodal embedding API (``/v3/openapi/workspaces/{workspace}/multi-modal-embedding/...``).
"""

from ._version import __version__
from .client import InsecureTransportWarning, MultiModalEmbeddingClient
from .errors import (
    APIConnectionError,
    APIError,
    APIResponseError,
    APITimeoutError,
    AuthenticationError,
    ConfigurationError,
    InputError,
    InternalServerError,
    InvalidParameterError,
    OpenSearchMMError,
    QuotaExceededError,
    RateLimitError,
    ServiceNotFoundError,
)
from .inputs import Content
from .models import DEFAULT_MODEL, MODELS, ModelInfo, model_info
from .ratelimit import AdaptiveRateLimiter, FixedRateLimiter, RateLimiter, UnlimitedRateLimiter
from .results import EmbeddingResult, PartialResult, StreamStats, Usage
from .retry import RetryPolicy

__all__ = [
    "DEFAULT_MODEL",
    "MODELS",
    "APIConnectionError",
    "APIError",
    "APIResponseError",
    "APITimeoutError",
    "AdaptiveRateLimiter",
    "AuthenticationError",
    "ConfigurationError",
    "Content",
    "EmbeddingResult",
    "FixedRateLimiter",
    "InputError",
    "InsecureTransportWarning",
    "InternalServerError",
    "InvalidParameterError",
    "ModelInfo",
    "MultiModalEmbeddingClient",
    "OpenSearchMMError",
    "PartialResult",
    "QuotaExceededError",
    "RateLimitError",
    "RateLimiter",
    "RetryPolicy",
    "ServiceNotFoundError",
    "StreamStats",
    "UnlimitedRateLimiter",
    "Usage",
    "__version__",
    "model_info",
]
