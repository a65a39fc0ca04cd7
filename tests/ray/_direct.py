"""The coordinated limit in one process: a coordinator called directly, for the tests and
the benchmark's simulated rows (no Ray, no threads: what a remote call would do, at once)."""

from __future__ import annotations

from collections.abc import Callable

from opensearch_mm._ray_limit import (
    CoordinatorLink,
    Load,
    Observation,
    RateCoordinator,
    Reply,
    SharedRateLimiter,
)
from opensearch_mm.ratelimit import AdaptiveRateLimiter, RateLimiter


class Watch:
    """An open watch call: ready once the coordinator's generation passes ``generation``
    or the permits of ``client`` fall below ``permits``."""

    def __init__(
        self, coordinator: RateCoordinator, client: str, generation: int, permits: int | None
    ) -> None:
        self.coordinator = coordinator
        self.client = client
        self.generation = generation
        self.permits = permits

    def done(self) -> bool:
        return self.coordinator.changed(self.client, self.generation, self.permits)


class Direct(CoordinatorLink["Reply | Watch"]):
    """Calls the coordinator in-process; a reply is ready at once, a watch at the next cut."""

    def __init__(self, coordinator: RateCoordinator) -> None:
        self.coordinator = coordinator
        self.leases = 0
        self.watches = 0
        self.flushes: list[list[Observation]] = []

    def lease(self, client: str, observations: list[Observation], want: int, load: Load) -> Reply:
        self.leases += 1
        return self.coordinator.lease(client, observations, want, load)

    def observe(self, client: str, observations: list[Observation], load: Load) -> Reply:
        self.flushes.append(observations)
        return self.coordinator.observe(client, observations, load)

    def watch(self, client: str, generation: int, permits: int | None) -> Watch:
        self.watches += 1
        return Watch(self.coordinator, client, generation, permits)

    def ready(self, handles: list[Reply | Watch]) -> list[Reply | Watch]:
        return [h for h in handles if not isinstance(h, Watch) or h.done()]

    def result(self, handle: Reply | Watch, timeout: float) -> Reply:
        if isinstance(handle, Watch):
            return handle.coordinator.watch(
                handle.client, handle.generation, handle.permits, timeout=0.0
            )
        return handle


def coordinated(
    made: list[RateCoordinator] | None = None,
) -> Callable[[Callable[[], float]], RateLimiter]:
    """A limiter factory for the simulation: one coordinator (running the client's own
    adaptive limiter, appended to ``made``), and a local side per simulated client."""
    made = [] if made is None else made

    def factory(clock: Callable[[], float]) -> RateLimiter:
        if not made:
            made.append(RateCoordinator(limiter=AdaptiveRateLimiter(clock=clock), clock=clock))
        return SharedRateLimiter(Direct(made[0]), clock=clock)

    return factory
