"""opensearch-mm: multimodal embeddings from Alibaba Cloud AI Search Open Platform.

Not Amazon OpenSearch: this is the client of Alibaba Cloud's AI Search Open Platform
multimodal embedding API (``/v3/openapi/workspaces/{workspace}/multi-modal-embedding/...``).

The public surface is the names in ``__all__`` below, plus the modules ``errors``,
``results``, ``models``, ``ratelimit``, ``retry``, ``emulator`` and ``bulk``/``cli``
(the command). Everything else is internal and may change in any release.
"""

from ._config import (
    DEFAULT_WORKSPACE,
    ENV_API_KEY,
    ENV_ENDPOINT,
    ENV_SHARE_RATE_LIMIT,
    ENV_WORKSPACE,
    ClientConfig,
    InsecureTransportWarning,
    SupportsSecretValue,
    mirror_policy_fields,
)
from ._version import __version__
from .client import MultiModalEmbeddingClient, ProgressCallback
from .errors import (
    APIConnectionError,
    APIError,
    APIResponseError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    ClientClosedError,
    ConfigurationError,
    InputError,
    InternalServerError,
    InvalidParameterError,
    OpenSearchMMError,
    QuotaExceededError,
    RateLimitError,
    ServiceNotFoundError,
)
from .images import ImageInput
from .inputs import Content, ContentLike, require_many
from .models import DEFAULT_MODEL, MODELS, ModelInfo, model_info
from .ratelimit import AdaptiveRateLimiter, FixedRateLimiter, RateLimiter, UnlimitedRateLimiter
from .results import EmbeddingResult, PartialResult, StreamStats, Usage
from .retry import RetryPolicy

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_WORKSPACE",
    "ENV_API_KEY",
    "ENV_ENDPOINT",
    "ENV_SHARE_RATE_LIMIT",
    "ENV_WORKSPACE",
    "MODELS",
    "APIConnectionError",
    "APIError",
    "APIResponseError",
    "APIStatusError",
    "APITimeoutError",
    "AdaptiveRateLimiter",
    "AuthenticationError",
    "ClientClosedError",
    "ClientConfig",
    "ConfigurationError",
    "Content",
    "ContentLike",
    "EmbeddingResult",
    "FixedRateLimiter",
    "ImageInput",
    "InputError",
    "InsecureTransportWarning",
    "InternalServerError",
    "InvalidParameterError",
    "ModelInfo",
    "MultiModalEmbeddingClient",
    "OpenSearchMMError",
    "PartialResult",
    "ProgressCallback",
    "QuotaExceededError",
    "RateLimitError",
    "RateLimiter",
    "RetryPolicy",
    "ServiceNotFoundError",
    "StreamStats",
    "SupportsSecretValue",
    "UnlimitedRateLimiter",
    "Usage",
    "__version__",
    "mirror_policy_fields",
    "model_info",
    "require_many",
]
