"""Ray Data: read images, embed them on the cluster's actors, write vectors to Parquet.

    pip install 'opensearch-mm[ray]'
    python examples/ray_images.py [OUTPUT_DIR]

Uses the real service when OPENSEARCH_MM_ENDPOINT and OPENSEARCH_MM_API_KEY are set,
otherwise a local emulator (its vectors are deterministic but NOT semantic). Starts a
local Ray unless one is running (``RAY_ADDRESS`` or an earlier ``ray.init()``).
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import ray

from opensearch_mm.ray import embed_dataset

IMAGES = Path(__file__).resolve().parent / "images"


@contextmanager
def account() -> Iterator[dict[str, Any]]:
    """Client settings: none for the environment's credentials, else a local emulator's."""
    if os.environ.get("OPENSEARCH_MM_ENDPOINT") and os.environ.get("OPENSEARCH_MM_API_KEY"):
        yield {}  # embed_dataset reads OPENSEARCH_MM_* on the driver, like the client
        return
    from opensearch_mm.emulator import Emulator

    print("no credentials: using the local emulator (vectors are NOT semantic)")
    with Emulator(api_key="local-demo-key") as emulator:
        yield {"endpoint": emulator.url, "api_key": emulator.api_key}


def main(output: Path) -> None:
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    with account() as settings:
        # pixels as HxWx3 arrays, one row per file; any column is kept
        ds = ray.data.read_images(str(IMAGES), include_paths=True, mode="RGB")
        ds = embed_dataset(
            ds,
            image_column="image",
            image_max_side=512,  # downscale on the actors' CPUs, not the service's
            model="ops-m2-encoder",
            concurrency=2,  # actors; they share one rate limit for the account
            on_error="null",  # a bad image gets a null vector and a reason, not a crash
            num_cpus=0.5,
            **settings,
        )
        ds.drop_columns(["image"]).write_parquet(str(output))

    table = pq.read_table(str(output))
    vector_type = table.schema.field("embedding").type
    print(f"wrote {table.num_rows} rows to {output}: embedding is {vector_type}")
    failed = table.column("embedding_error").drop_null().to_pylist()
    print(f"{len(failed)} rows failed")
    for path, vector in sorted(
        zip(table.column("path").to_pylist(), table.column("embedding").to_pylist(), strict=True)
    ):
        print(f"  {Path(path).name:20} {len(vector)} floats, first {vector[0]:+.4f}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(Path(tmp) / "vectors")
