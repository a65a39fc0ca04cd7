"""One local Ray (2 CPUs) for the whole directory, and the emulator in a process of its own."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ._emulator import EmulatorProcess

KEY = "ray-test-key"
RAY_MISSING = "ray is not installed (the 'ray' extra): pip install -e '.[dev]'"


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    """``ray.init(num_cpus=2)`` once for every test here; shut down at the end."""
    ray = pytest.importorskip("ray", reason=RAY_MISSING)
    pytest.importorskip("ray.data", reason=RAY_MISSING)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=300 * 1024 * 1024,
        configure_logging=False,
    )
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def service() -> Iterator[EmulatorProcess]:
    """The emulator in its own process (not sharing a GIL with the driver)."""
    with EmulatorProcess(api_key=KEY) as emu:
        yield emu


@pytest.fixture
def emulator(service: EmulatorProcess) -> Iterator[EmulatorProcess]:
    """The shared emulator, uncapped, faults off and counters zeroed for this test."""
    service.call("clear_faults")
    service.call("__setattr__", "qps", None)
    service.call("reset_stats")
    yield service
    service.call("clear_faults")
    service.call("__setattr__", "qps", None)
