"""``opensearch-mm demo``: text-to-image and image-to-text search over the shipped examples.

No credentials needed: without ``OPENSEARCH_MM_ENDPOINT`` / ``OPENSEARCH_MM_API_KEY`` (or
``--endpoint`` / ``--api-key``) the demo starts the local emulator in-process. It indexes the
shipped images and captions through both adapters (LangChain and LlamaIndex), runs
text-to-image, image-to-text and image-to-image queries, prints the ranked results and a
summary of every request that was sent (never the API key).

The emulator's vectors are deterministic but not semantic: its rankings are arbitrary,
except that an input identical to an indexed one gets the very same vector. The demo uses
that as a self-check (an image's own bytes must rank that image first) and exits with 1
when it fails.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import mimetypes
import os
import secrets
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TextIO

from ._cli_errors import core_message
from .client import DEFAULT_WORKSPACE, ENV_API_KEY, ENV_ENDPOINT, ENV_WORKSPACE
from .errors import ConfigurationError, OpenSearchMMError
from .models import DEFAULT_MODEL, model_info

if TYPE_CHECKING:
    from .emulator import Emulator, RequestRecord

__all__ = [
    "NOT_SEMANTIC_WARNING",
    "Example",
    "Hit",
    "add_parser",
    "find_examples",
    "load_examples",
    "main",
    "run",
]

NOT_SEMANTIC_WARNING = (
    "vectors from the local emulator are deterministic but NOT semantic: rankings are "
    "arbitrary; set OPENSEARCH_MM_ENDPOINT and OPENSEARCH_MM_API_KEY to use the real service"
)
WARNING_BOX = (
    "!" * 78,
    "!! The local emulator's vectors are deterministic but NOT semantic:",
    "!! the rankings below are arbitrary. To use the real service:",
    f"!!   export {ENV_ENDPOINT}=<host> {ENV_API_KEY}=<key>",
    "!" * 78,
)
ADAPTERS = ("langchain", "llamaindex")
TOP_K = 3


# -- the examples ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    """One shipped example: an image file and its caption."""

    name: str
    path: Path
    caption: str

    def data_uri(self) -> str:
        """The image's own bytes as a ``data:image/...;base64,`` URI."""
        mime = mimetypes.guess_type(self.path.name)[0] or "application/octet-stream"
        payload = base64.b64encode(self.path.read_bytes()).decode("ascii")
        return f"data:{mime};base64,{payload}"


def find_examples(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The examples directory: ``explicit``, else the copy shipped in the package (an
    installed wheel), else ``examples/`` beside the package (a source checkout)."""
    if explicit is not None:
        candidates = [Path(explicit)]
    else:
        here = Path(__file__).resolve().parent
        candidates = [here / "_examples", here.parent / "examples"]
    for candidate in candidates:
        if (candidate / "captions.jsonl").is_file():
            return candidate
    if explicit is not None:
        raise ConfigurationError(f"no examples found: {explicit} holds no captions.jsonl")
    raise ConfigurationError(  # pragma: no cover - a broken install
        "the demo's images are missing from this install (opensearch_mm/_examples); "
        "reinstall opensearch-mm or pass --examples DIR"
    )


def load_examples(root: Path) -> list[Example]:
    """Read ``captions.jsonl`` (``{"image": relative path, "caption": text}`` per line)."""
    examples: list[Example] = []
    lines = (root / "captions.jsonl").read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            path = root / str(record["image"])
            caption = str(record["caption"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigurationError(f"captions.jsonl line {number}: {exc}") from None
        if not path.is_file():
            raise ConfigurationError(f"captions.jsonl line {number}: no file {path}")
        examples.append(Example(path.name, path, caption))
    if not examples:
        raise ConfigurationError(f"{root / 'captions.jsonl'} lists no examples")
    return examples


# -- ranking --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hit:
    """One ranked result: the example's image file name and the similarity score."""

    name: str
    score: float


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


class VectorIndex:
    """A tiny brute-force cosine index (for the vectors a framework store cannot take)."""

    def __init__(self) -> None:
        self._items: list[tuple[str, list[float]]] = []

    def add(self, names: Sequence[str], vectors: Sequence[list[float]]) -> None:
        self._items.extend(zip(names, vectors, strict=True))

    def search(self, query: Sequence[float], k: int) -> list[Hit]:
        hits = [Hit(name, cosine(query, vector)) for name, vector in self._items]
        return sorted(hits, key=lambda h: -h.score)[:k]


class Engine(Protocol):
    """One way of indexing and querying the examples (an adapter, or the core client)."""

    title: str
    how: str

    def index(self, examples: Sequence[Example]) -> None: ...
    def text_to_image(self, text: str, k: int) -> list[Hit]: ...
    def image_to_text(self, example: Example, k: int) -> list[Hit]: ...
    def image_to_image(self, data_uri: str, k: int) -> list[Hit]: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class Service:
    """Where requests go; ``emulator`` is set when the demo started one."""

    endpoint: str
    api_key: str = field(repr=False)
    workspace: str
    model: str
    emulator: Emulator | None

    @property
    def qps(self) -> Literal["adaptive"] | None:
        # The emulator has no rate limit; the real service gets the adaptive limiter.
        return None if self.emulator is not None else "adaptive"


# -- the engines ----------------------------------------------------------------------------


class LangChainEngine:
    """``OpenSearchMultiModalEmbeddings``: captions in an ``InMemoryVectorStore`` (via
    ``embed_documents``), image vectors from ``embed_image`` in a cosine index."""

    title = "LangChain"
    how = (
        "langchain_opensearch_mm.OpenSearchMultiModalEmbeddings: captions -> "
        "InMemoryVectorStore (embed_documents), images -> embed_image"
    )

    def __init__(self, service: Service) -> None:
        from langchain_core.vectorstores import InMemoryVectorStore

        from langchain_opensearch_mm import OpenSearchMultiModalEmbeddings

        self.embeddings = OpenSearchMultiModalEmbeddings(
            model=service.model,
            api_key=service.api_key,
            endpoint=service.endpoint,
            workspace=service.workspace,
            qps=service.qps,
        )
        self.captions = InMemoryVectorStore(embedding=self.embeddings)
        self.images = VectorIndex()

    def index(self, examples: Sequence[Example]) -> None:
        from langchain_core.documents import Document

        self.images.add(
            [e.name for e in examples], self.embeddings.embed_image([str(e.path) for e in examples])
        )
        self.captions.add_documents(
            [Document(page_content=e.caption, metadata={"file": e.name}) for e in examples]
        )

    def text_to_image(self, text: str, k: int) -> list[Hit]:
        return self.images.search(self.embeddings.embed_query(text), k)

    def image_to_text(self, example: Example, k: int) -> list[Hit]:
        vector = self.embeddings.embed_image([str(example.path)])[0]
        found = self.captions.similarity_search_with_score_by_vector(vector, k=k)
        return [Hit(str(doc.metadata["file"]), float(score)) for doc, score in found]

    def image_to_image(self, data_uri: str, k: int) -> list[Hit]:
        return self.images.search(self.embeddings.embed_image([data_uri])[0], k)

    def close(self) -> None:
        self.embeddings.close()


class LlamaIndexEngine:
    """``OpenSearchMultiModalEmbedding`` as both embed models of a
    ``MultiModalVectorStoreIndex`` holding ``ImageNode``s and caption ``TextNode``s."""

    title = "LlamaIndex"
    how = (
        "llamaindex_opensearch_mm.OpenSearchMultiModalEmbedding: ImageNode + TextNode -> "
        "MultiModalVectorStoreIndex, queried through its retriever"
    )

    def __init__(self, service: Service) -> None:
        from llamaindex_opensearch_mm import OpenSearchMultiModalEmbedding

        self.embed_model = OpenSearchMultiModalEmbedding(
            model_name=service.model,
            api_key=service.api_key,
            endpoint=service.endpoint,
            workspace=service.workspace,
            qps=service.qps,
        )
        self.retriever: Any = None

    def index(self, examples: Sequence[Example]) -> None:
        from llama_index.core.indices import MultiModalVectorStoreIndex
        from llama_index.core.schema import BaseNode, ImageNode, TextNode

        nodes: list[BaseNode] = [
            ImageNode(image_path=str(e.path), metadata={"file": e.name}) for e in examples
        ]
        nodes += [
            TextNode(
                text=e.caption, metadata={"file": e.name}, excluded_embed_metadata_keys=["file"]
            )
            for e in examples
        ]
        index = MultiModalVectorStoreIndex(
            nodes, embed_model=self.embed_model, image_embed_model=self.embed_model
        )
        self.retriever = index.as_retriever(similarity_top_k=TOP_K, image_similarity_top_k=TOP_K)

    @staticmethod
    def _hits(found: Sequence[Any], k: int) -> list[Hit]:
        return [Hit(str(n.node.metadata["file"]), float(n.score or 0.0)) for n in found][:k]

    def text_to_image(self, text: str, k: int) -> list[Hit]:
        return self._hits(self.retriever.text_to_image_retrieve(text), k)

    def image_to_text(self, example: Example, k: int) -> list[Hit]:
        from llama_index.core.schema import QueryBundle

        vector = self.embed_model.get_image_embedding(str(example.path))
        found = self.retriever.text_retrieve(QueryBundle(query_str="", embedding=vector))
        return self._hits(found, k)

    def image_to_image(self, data_uri: str, k: int) -> list[Hit]:
        from llama_index.core.schema import QueryBundle

        query = QueryBundle(query_str="", image_path=data_uri)
        return self._hits(self.retriever.image_to_image_retrieve(query), k)

    def close(self) -> None:
        self.embed_model.close()


class CoreEngine:
    """The framework-free core client and a cosine index."""

    title = "core client"
    how = "opensearch_mm.MultiModalEmbeddingClient: embed_images / embed_texts + cosine"

    def __init__(self, service: Service) -> None:
        from .client import MultiModalEmbeddingClient

        self.client = MultiModalEmbeddingClient(
            api_key=service.api_key,
            endpoint=service.endpoint,
            workspace=service.workspace,
            model=service.model,
            qps=service.qps,
        )
        self.images = VectorIndex()
        self.captions = VectorIndex()

    def index(self, examples: Sequence[Example]) -> None:
        names = [e.name for e in examples]
        self.images.add(names, self.client.embed_images([e.path for e in examples]))
        self.captions.add(names, self.client.embed_texts([e.caption for e in examples]))

    def text_to_image(self, text: str, k: int) -> list[Hit]:
        return self.images.search(self.client.embed_texts([text])[0], k)

    def image_to_text(self, example: Example, k: int) -> list[Hit]:
        return self.captions.search(self.client.embed_images([example.path])[0], k)

    def image_to_image(self, data_uri: str, k: int) -> list[Hit]:
        return self.images.search(self.client.embed_images([data_uri])[0], k)

    def close(self) -> None:
        self.client.close()


ENGINES: dict[str, Callable[[Service], Engine]] = {
    "langchain": LangChainEngine,
    "llamaindex": LlamaIndexEngine,
    "core": CoreEngine,
}
INSTALL_HINT = {
    "langchain": "pip install 'opensearch-mm[langchain]'",
    "llamaindex": "pip install 'opensearch-mm[llamaindex]'",
    "core": "pip install 'opensearch-mm'",
}


# -- what was sent --------------------------------------------------------------------------


class RequestTracker:
    """Attributes the emulator's request log to the demo's steps."""

    def __init__(self, emulator: Emulator | None) -> None:
        self.emulator = emulator
        self.steps: list[tuple[str, list[RequestRecord]]] = []
        self._seen = 0

    @contextmanager
    def step(self, label: str) -> Iterator[None]:
        try:
            yield
        finally:
            if self.emulator is not None:
                log = self.emulator.requests_log
                self.steps.append((label, log[self._seen :]))
                self._seen = len(log)

    def last(self) -> list[RequestRecord]:
        return self.steps[-1][1] if self.steps else []


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _describe(records: Sequence[RequestRecord]) -> str:
    inputs = [r.n_inputs or 0 for r in records]
    size = sum(r.body_bytes for r in records)
    statuses = sorted({str(r.status) for r in records})
    return (
        f"{_plural(len(records), 'request')}, inputs per request {inputs}, "
        f"{size:,} body bytes, HTTP {'/'.join(statuses) or '-'}"
    )


# -- the run --------------------------------------------------------------------------------


class Printer:
    def __init__(self, out: TextIO) -> None:
        self.out = out

    def __call__(self, text: str = "") -> None:
        print(text, file=self.out)

    def heading(self, text: str, char: str = "=") -> None:
        self()
        self(text)
        self(char * len(text))

    def hits(self, hits: Sequence[Hit], captions: dict[str, str] | None = None) -> None:
        for rank, hit in enumerate(hits, 1):
            shown = f'"{captions[hit.name]}"' if captions else hit.name
            self(f"    {rank}. {hit.score:+.4f}  {shown}")


@contextmanager
def open_service(args: argparse.Namespace, say: Printer) -> Iterator[Service]:
    """The real service when both endpoint and key are given, else a local emulator."""
    endpoint = args.endpoint or os.environ.get(ENV_ENDPOINT) or None
    api_key = args.api_key or os.environ.get(ENV_API_KEY) or None
    workspace = args.workspace or os.environ.get(ENV_WORKSPACE) or DEFAULT_WORKSPACE
    if endpoint and api_key:
        say(
            f"service:  {endpoint} (workspace {workspace}; API key from "
            f"{'--api-key' if args.api_key else ENV_API_KEY})"
        )
        yield Service(endpoint, api_key, workspace, args.model, None)
        return
    if endpoint or api_key:
        missing = "an API key" if endpoint else "an endpoint"
        raise ConfigurationError(
            f"{missing} is missing: set both {ENV_ENDPOINT} and {ENV_API_KEY} (or --endpoint "
            "and --api-key) to use the real service, or neither to use the local emulator"
        )
    try:
        from .emulator import Emulator
    except ImportError:  # pragma: no cover - numpy missing
        raise ConfigurationError(
            "the local emulator needs numpy: pip install 'opensearch-mm[emulator]'"
        ) from None
    with Emulator(api_key=secrets.token_urlsafe(16), log_size=100_000) as emulator:
        say(f"service:  local emulator at {emulator.url} (no credentials given)")
        say()
        for line in WARNING_BOX:
            say(line)
        say()
        yield Service(emulator.url, emulator.api_key, workspace, args.model, emulator)


def _run_engine(
    engine: Engine,
    examples: Sequence[Example],
    queries: int,
    tracker: RequestTracker,
    say: Printer,
) -> list[str]:
    """Index and query with one engine; returns the failed self-checks."""
    captions = {e.name: e.caption for e in examples}
    say.heading(engine.title)
    say(engine.how)
    t0 = time.perf_counter()
    with tracker.step(f"{engine.title}: index"):
        engine.index(examples)
    say(
        f"indexed {len(examples)} images and {len(examples)} captions "
        f"in {time.perf_counter() - t0:.2f} s"
    )
    if tracker.emulator is not None:
        say(f"  sent: {_describe(tracker.last())}")
    chosen = examples[:queries]

    say()
    say(f"text -> image (a caption as the query, top {TOP_K} images):")
    for e in chosen:
        with tracker.step(f"{engine.title}: text -> image"):
            hits = engine.text_to_image(e.caption, TOP_K)
        say(f'  query: "{e.caption}"  (its image: {e.name})')
        say.hits(hits)

    say()
    say(f"image -> text (an image as the query, top {TOP_K} captions):")
    for e in chosen:
        with tracker.step(f"{engine.title}: image -> text"):
            hits = engine.image_to_text(e, TOP_K)
        say(f'  query: {e.name}  (its caption: "{e.caption}")')
        say.hits(hits, captions)

    say()
    say("image -> image self-check (each image's own bytes as the query; it must rank first):")
    failures: list[str] = []
    for e in examples:
        with tracker.step(f"{engine.title}: image -> image"):
            hits = engine.image_to_image(e.data_uri(), TOP_K)
        ok = bool(hits) and hits[0].name == e.name
        if not ok:
            failures.append(f"{engine.title}: {e.name}")
        top = f"{hits[0].name} {hits[0].score:+.4f}" if hits else "nothing"
        say(f"  {'ok  ' if ok else 'FAIL'} {e.name:<20} -> {top}")
    return failures


def _print_requests(tracker: RequestTracker, say: Printer) -> None:
    say.heading("What was sent")
    emulator = tracker.emulator
    if emulator is None:
        say("(the per-request log is available with the local emulator only)")
        return
    records = emulator.requests_log
    statuses = "/".join(sorted({str(r.status) for r in records})) or "-"
    say(
        f"{_plural(len(records), 'request')} (HTTP {statuses}), "
        f"{sum(r.n_inputs or 0 for r in records)} inputs, "
        f"{sum(r.body_bytes for r in records):,} body bytes; "
        f"the emulator embedded {emulator.stats.inputs_embedded} inputs"
    )
    say("per step (requests, inputs per request, body bytes):")
    merged: dict[str, list[RequestRecord]] = {}
    for label, recs in tracker.steps:
        merged.setdefault(label, []).extend(recs)
    for label, recs in merged.items():
        say(f"  {label:<32} {_describe(recs)}")
    if records:
        first = records[0]
        names = ", ".join(sorted(first.headers))
        say(f"each request: {first.method} {first.path}")
        say(f"  headers: {names} (Authorization: Bearer <API key>, never logged or printed)")
    say('  body: {"input": [{"text": "..."} or {"image": "data:image/png;base64,..."}, ...]}')


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """The ``demo`` subcommand; returns the exit code."""
    say = Printer(out if out is not None else sys.stdout)
    try:
        model_info(args.model)
        root = find_examples(args.examples)
        examples = load_examples(root)
    except ConfigurationError as exc:
        print(f"opensearch-mm demo: {exc}", file=sys.stderr)
        return 2
    names = ["core"] if args.no_adapters else list(ADAPTERS)
    t0 = time.perf_counter()
    say("opensearch-mm demo: multimodal search over the shipped examples")
    failures: list[str] = []
    try:
        with open_service(args, say) as service:
            info = model_info(service.model)
            dims = f"{info.dimensions} dimensions" if info.dimensions else "unknown dimensions"
            say(f"model:    {service.model} ({dims})")
            say(f"examples: {len(examples)} images with captions from {root}")
            tracker = RequestTracker(service.emulator)
            ran = 0
            for name in names:
                try:
                    engine = ENGINES[name](service)
                except ImportError as exc:
                    say.heading(
                        f"{name}: skipped ({exc.name or exc} is not installed: "
                        f"{INSTALL_HINT[name]})"
                    )
                    continue
                try:
                    failures += _run_engine(engine, examples, args.queries, tracker, say)
                    ran += 1
                finally:
                    engine.close()
            if ran == 0:
                engine = CoreEngine(service)
                try:
                    failures += _run_engine(engine, examples, args.queries, tracker, say)
                finally:
                    engine.close()
            _print_requests(tracker, say)
    except OpenSearchMMError as exc:
        print(f"opensearch-mm demo: {type(exc).__name__}: {core_message(exc)}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigurationError) else 1
    say()
    if failures:
        say(f"self-check FAILED for: {', '.join(failures)}")
        return 1
    say(f"done in {time.perf_counter() - t0:.1f} s; self-check passed")
    if service.emulator is not None:
        say(f"reminder: {NOT_SEMANTIC_WARNING}")
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``demo`` on the ``opensearch-mm`` command's subparsers."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "demo",
        help="search the shipped example images and captions (no credentials needed)",
        description=(
            "Index the example images and captions through the LangChain and LlamaIndex "
            "adapters, run text-to-image and image-to-text queries, print ranked results "
            "and what was sent. Without credentials a local emulator is started (its "
            "vectors are NOT semantic); set OPENSEARCH_MM_ENDPOINT and OPENSEARCH_MM_API_KEY "
            "to use the real service."
        ),
    )
    parser.add_argument("--model", default=DEFAULT_MODEL, help="service id (default: %(default)s)")
    parser.add_argument("--endpoint", default=None, help=f"service endpoint (or ${ENV_ENDPOINT})")
    parser.add_argument(
        "--api-key", default=None, help=f"API key (prefer ${ENV_API_KEY}: arguments are visible)"
    )
    parser.add_argument("--workspace", default=None, help=f"workspace (or ${ENV_WORKSPACE})")
    parser.add_argument("--examples", default=None, help="directory holding captions.jsonl")
    parser.add_argument(
        "--queries", type=_positive_int, default=2, help="queries per direction (default: 2)"
    )
    parser.add_argument(
        "--no-adapters", action="store_true", help="use the core client instead of the adapters"
    )
    parser.set_defaults(run=run)
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m opensearch_mm.demo``."""
    parser = argparse.ArgumentParser(prog="opensearch-mm")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["demo", *(argv if argv is not None else sys.argv[1:])])
    result: int = args.run(args)
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
