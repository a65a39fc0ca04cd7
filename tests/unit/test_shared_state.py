"""Default clients of one account on one machine share one rate limiter state.

The key a state file is found by, the option and environment variable that choose it,
what happens where sharing cannot work (it paces alone, never fails a request), the reset
after a long idle spell, the cleanup of old files, copies, pickles and forks.
"""

from __future__ import annotations

import copy
import logging
import multiprocessing
import os
import pickle
import struct
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import opensearch_mm
from opensearch_mm import (
    AdaptiveRateLimiter,
    ClientConfig,
    ConfigurationError,
    FixedRateLimiter,
    MultiModalEmbeddingClient,
    RateLimitError,
)
from opensearch_mm.ratelimit import SharedState, Ticket

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="sharing needs fcntl (POSIX)")

KEY = "OS-shared-SECRET-key-0123456789"
ENDPOINT = "http://127.0.0.1:8123"
ENV = opensearch_mm.ENV_SHARE_RATE_LIMIT
THROTTLED = RateLimitError("Throttling.RateQuota", status_code=429)


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def private_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own temp directory (state files never meet another test's)."""
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.delenv(ENV, raising=False)
    for name in ("OPENSEARCH_MM_API_KEY", "OPENSEARCH_MM_ENDPOINT", "OPENSEARCH_MM_WORKSPACE"):
        monkeypatch.delenv(name, raising=False)
    yield temp


def client(**options: Any) -> MultiModalEmbeddingClient:
    settings: dict[str, Any] = {"api_key": KEY, "endpoint": ENDPOINT}
    settings.update(options)
    return MultiModalEmbeddingClient(**settings)


def state_path(c: MultiModalEmbeddingClient) -> Path:
    limiter = c.rate_limiter
    assert isinstance(limiter, AdaptiveRateLimiter)
    assert limiter._shared is not None, "the default client's limiter should be shared"
    return limiter._shared.path


def go_through_one_request(limiter: AdaptiveRateLimiter, error: BaseException | None) -> None:
    """What a driver does for one request (acquire, confirm, observe)."""
    ticket = limiter.acquire()
    while not limiter.confirm(ticket):
        ticket = limiter.acquire()
    limiter.observe(error, ticket)


# -- who shares: the key --------------------------------------------------------------


def test_default_clients_of_one_account_share_one_file(private_temp: Path) -> None:
    with (
        client() as one,
        client(endpoint=ENDPOINT + "/", model="ops-gme-qwen2-vl-2b-instruct") as two,
    ):
        assert one.rate_limiter is not two.rate_limiter
        assert state_path(one) == state_path(two)  # the model is not part of the account
        folder = state_path(one).parent
        assert folder.parent == private_temp and folder.name == f"opensearch-mm-{os.getuid()}"
        assert folder.stat().st_mode & 0o777 == 0o700
        assert state_path(one).stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    "other",
    [
        {"api_key": KEY + "x"},
        {"workspace": "another"},
        {"endpoint": "http://127.0.0.1:8124"},
        {"endpoint": "http://localhost:8123"},
        {"share_rate_limit": "a-group"},
    ],
    ids=["key", "workspace", "port", "host", "group"],
)
def test_another_account_or_group_gets_another_file(other: dict[str, Any]) -> None:
    with client() as one, client(**other) as two:
        assert state_path(one) != state_path(two)


def test_the_key_is_in_no_file_name_repr_setting_or_file() -> None:
    with client() as c:
        path = state_path(c)
        key_share = c.config.share_key()
        assert key_share is not None
        c.rate_limiter.acquire()  # write the state once
        for text in (str(path), key_share, repr(c), repr(c.settings()), repr(c.rate_limiter)):
            assert KEY not in text
        assert KEY.encode() not in path.read_bytes()
        assert KEY not in pickle.dumps(c.rate_limiter).decode("latin-1")


def test_other_users_use_other_folders(monkeypatch: pytest.MonkeyPatch, private_temp: Path) -> None:
    with client() as mine:
        path = state_path(mine)
    other = os.getuid() + 4242
    monkeypatch.setattr(os, "getuid", lambda: other)
    with client() as theirs:  # (this process made that folder: not the other user's)
        assert not theirs.rate_limiter.shared  # type: ignore[attr-defined]
    assert sorted(p.name for p in private_temp.iterdir()) == sorted(
        [path.parent.name, f"opensearch-mm-{other}"]
    )
    assert list((private_temp / f"opensearch-mm-{other}").iterdir()) == []


def test_a_group_name_is_the_same_state_as_share_on_a_limiter() -> None:
    limiter = AdaptiveRateLimiter(share="team-a")
    with client(share_rate_limit="team-a") as c:
        assert limiter._shared is not None
        assert state_path(c) == limiter._shared.path


# -- the option and the environment variable -------------------------------------------


def test_opting_out_paces_alone_and_makes_no_file(private_temp: Path) -> None:
    with client(share_rate_limit=False) as c:
        assert isinstance(c.rate_limiter, AdaptiveRateLimiter)
        assert not c.rate_limiter.shared
        assert c.settings()["share_rate_limit"] is False
    assert list(private_temp.iterdir()) == []


@pytest.mark.parametrize(
    ("value", "shared"),
    [
        *[("0", False), ("false", False), ("OFF", False), ("no", False)],
        *[("1", True), ("true", True), ("on", True), ("", True), ("team-b", "team-b")],
    ],
)
def test_the_environment_variable(
    monkeypatch: pytest.MonkeyPatch, value: str, shared: bool | str
) -> None:
    monkeypatch.setenv(ENV, value)
    with client() as c:
        assert c.settings()["share_rate_limit"] == shared
        assert c.rate_limiter.shared is bool(shared)  # type: ignore[attr-defined]
        if shared == "team-b":
            assert c.config.share_key() == "team-b"


@pytest.mark.parametrize(("value", "shared"), [("off", False), (" False ", False), ("on", True)])
def test_a_switch_word_as_the_argument_reads_as_the_variable(value: str, shared: bool) -> None:
    with client(share_rate_limit=value, qps=5 if not shared else "adaptive") as c:
        assert c.config.share_rate_limit is shared


def test_the_argument_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "0")
    with client(share_rate_limit=True) as c:
        assert c.rate_limiter.shared  # type: ignore[attr-defined]
    monkeypatch.setenv(ENV, "1")
    with client(share_rate_limit=False) as c:
        assert not c.rate_limiter.shared  # type: ignore[attr-defined]


@pytest.mark.parametrize("bad", [1, "", "   ", 2.5, b"group"])
def test_a_bad_value_is_refused_naming_the_option(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="share_rate_limit"):
        client(share_rate_limit=bad)


def test_a_group_that_cannot_apply_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="share_rate_limit"):
        client(share_rate_limit="team", qps=5)
    with pytest.raises(ConfigurationError, match="share_rate_limit"):
        client(share_rate_limit="team", rate_limiter=FixedRateLimiter(5))
    with client(qps=5) as pinned, client(qps=None) as off:  # the default: nothing to share
        assert pinned.settings()["share_rate_limit"] is False
        assert off.settings()["share_rate_limit"] is False


def test_settings_describe_sharing_and_rebuild_it() -> None:
    with client(share_rate_limit="team-c") as c:
        settings = c.settings()
        assert settings["share_rate_limit"] == "team-c"
        settings.pop("rate_limiter")
        with MultiModalEmbeddingClient(api_key=KEY, **settings) as twin:
            assert state_path(twin) == state_path(c)
    given = AdaptiveRateLimiter(share="team-d")
    with client(rate_limiter=given) as c:
        assert c.settings()["share_rate_limit"] is True
    fields: dict[str, Any] = {"rate_limiter": AdaptiveRateLimiter()}
    opensearch_mm.mirror_policy_fields(fields)
    assert fields["share_rate_limit"] is False
    with pytest.raises(ConfigurationError, match="share_rate_limit"):
        opensearch_mm.mirror_policy_fields(
            {"rate_limiter": AdaptiveRateLimiter(), "share_rate_limit": "team"}
        )


def test_the_config_resolves_the_option() -> None:
    config = ClientConfig.resolve(api_key=KEY, endpoint=ENDPOINT)
    assert config.share_rate_limit is True
    assert config.share_key() == ClientConfig.resolve(api_key=KEY, endpoint=ENDPOINT).share_key()
    assert (
        ClientConfig.resolve(api_key=KEY, endpoint=ENDPOINT, share_rate_limit=False).share_key()
        is None
    )


# -- where sharing cannot work: alone, logged, never failing ------------------------------


def assert_paces_alone(limiter: AdaptiveRateLimiter) -> None:
    assert not limiter.shared
    go_through_one_request(limiter, None)
    go_through_one_request(limiter, THROTTLED)
    assert limiter.cuts == 1


def test_without_fcntl_it_paces_alone(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "fcntl", None)  # what Windows has
    with caplog.at_level(logging.DEBUG, logger="opensearch_mm"), client() as c:
        assert isinstance(c.rate_limiter, AdaptiveRateLimiter)
        assert_paces_alone(c.rate_limiter)
    [record] = [r for r in caplog.records if "pacing alone" in r.getMessage()]
    assert record.levelno == logging.DEBUG and KEY not in record.getMessage()


def test_a_temp_dir_that_cannot_hold_the_folder(private_temp: Path) -> None:
    (private_temp / f"opensearch-mm-{os.getuid()}").write_text("a file, not a folder")
    with client() as c:
        assert_paces_alone(c.rate_limiter)  # type: ignore[arg-type]


def test_a_missing_temp_dir(monkeypatch: pytest.MonkeyPatch, private_temp: Path) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(private_temp / "gone" / "deeper"))
    with client() as c:
        assert_paces_alone(c.rate_limiter)  # type: ignore[arg-type]


def test_a_folder_others_can_write_or_a_link_is_not_used(private_temp: Path) -> None:
    folder = private_temp / f"opensearch-mm-{os.getuid()}"
    folder.mkdir(mode=0o700)
    folder.chmod(0o777)
    with client() as c:
        assert_paces_alone(c.rate_limiter)  # type: ignore[arg-type]
    folder.rmdir()
    elsewhere = private_temp / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    folder.symlink_to(elsewhere)
    with client() as c:
        assert_paces_alone(c.rate_limiter)  # type: ignore[arg-type]
    assert list(elsewhere.iterdir()) == []


@pytest.mark.skipif(not hasattr(os, "chown") or os.geteuid() != 0, reason="needs root to chown")
def test_files_and_folders_of_another_user_are_not_opened() -> None:
    with client() as c:
        path = state_path(c)
    os.chown(path, 4242, 4242)
    with client() as c:
        assert_paces_alone(c.rate_limiter)  # type: ignore[arg-type]
    path.unlink()
    os.chown(path.parent, 4242, 4242)
    with client() as c:
        assert_paces_alone(c.rate_limiter)  # type: ignore[arg-type]


def test_a_link_in_place_of_the_file_is_not_followed(tmp_path: Path) -> None:
    with client() as c:
        path = state_path(c)
    path.unlink()
    target = tmp_path / "target"
    target.write_bytes(b"")
    path.symlink_to(target)
    with client() as c:
        assert_paces_alone(c.rate_limiter)  # type: ignore[arg-type]
    assert target.read_bytes() == b""


@pytest.mark.parametrize(
    "content",
    ["short", "garbage", "older version"],
)
def test_a_corrupted_or_foreign_file_is_left_alone(content: str) -> None:
    with client() as c:
        path = state_path(c)
        size = path.stat().st_size
    if content == "short":
        data = b"\x01" * 100
    elif content == "garbage":
        data = b"\xab" * size
    else:  # a file of this name and size from another version of the layout
        data = struct.pack("<QQ", 0x4F534D4D52415431, size) + bytes(size - 16)
    path.write_bytes(data)
    with client() as c:
        assert_paces_alone(c.rate_limiter)  # type: ignore[arg-type]
    assert path.read_bytes() == data


def test_an_empty_file_left_by_a_crash_is_set_up() -> None:
    with client() as c:
        path = state_path(c)
    path.write_bytes(b"")
    with client() as c:
        assert c.rate_limiter.shared  # type: ignore[attr-defined]
        c.rate_limiter.acquire()


def test_a_full_disk_while_creating_the_file(
    monkeypatch: pytest.MonkeyPatch, private_temp: Path
) -> None:
    def full(fd: int, data: Any) -> int:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(os, "write", full)
        with client() as c:
            assert_paces_alone(c.rate_limiter)  # type: ignore[arg-type]
    [leftover] = private_temp.glob("opensearch-mm-*/rate-*")
    assert leftover.stat().st_size == 0  # emptied: the next client sets it up
    with client() as c:
        assert state_path(c) == leftover and leftover.stat().st_size > 0


def test_a_lock_that_fails_later_makes_it_pace_alone(caplog: pytest.LogCaptureFixture) -> None:
    limiter = AdaptiveRateLimiter(share="team-e")
    go_through_one_request(limiter, None)
    assert limiter._shared is not None
    limiter._shared.close()  # as if the file could not be locked any more
    with caplog.at_level(logging.DEBUG, logger="opensearch_mm"):
        go_through_one_request(limiter, None)
        assert_paces_alone(limiter)
    assert any("no longer shared" in r.getMessage() for r in caplog.records)


# -- state from long ago is not trusted ----------------------------------------------------


def learned(limiter: AdaptiveRateLimiter) -> tuple[bool, int]:
    return limiter.slow_start, limiter.cuts


def test_state_idle_for_long_starts_afresh() -> None:
    clock = FakeClock()
    a = AdaptiveRateLimiter(clock=clock, share="team-f")
    for _ in range(5):
        go_through_one_request(a, None)
        clock.now += 0.1
    go_through_one_request(a, THROTTLED)
    assert learned(a) == (False, 1)
    clock.now += SharedState.IDLE_SECONDS / 2
    b = AdaptiveRateLimiter(clock=clock, share="team-f")
    b.acquire()
    assert learned(b) == (False, 1) and b.ceiling == a.ceiling  # a pause: still trusted
    clock.now += SharedState.IDLE_SECONDS + SharedState.IDLE_INTERVALS / a.rate + 1
    a.acquire()  # a comes back after a long idle spell: what it knew may be wrong now
    assert learned(a) == (True, 0) and a.ceiling is None and a.rate == a._initial
    b.acquire()
    assert learned(b) == (True, 0)


def test_state_from_before_a_reboot_is_not_trusted() -> None:
    clock = FakeClock(5000.0)
    a = AdaptiveRateLimiter(clock=clock, share="team-g")
    go_through_one_request(a, THROTTLED)
    assert a.cuts == 1
    b = AdaptiveRateLimiter(clock=FakeClock(20.0), share="team-g")  # the clock began again
    b.acquire()
    assert learned(b) == (True, 0)


# -- old files are removed ----------------------------------------------------------------


def test_files_untouched_for_a_day_go_when_a_new_one_is_made() -> None:
    import fcntl

    first = SharedState("team-h")
    folder = first.folder
    old, held, recent = folder / "rate-old", folder / "rate-held", folder / "rate-recent"
    unrelated = folder / "notes.txt"
    for path in (old, held, recent, unrelated):
        path.write_bytes(b"x")
    day_ago = time.time() - SharedState.CLEANUP_SECONDS - 60
    for path in (old, held, unrelated):
        os.utime(path, (day_ago, day_ago))
    with open(held, "rb") as in_use:  # locked right now: some process is using it
        fcntl.flock(in_use, fcntl.LOCK_EX)
        SharedState("team-h").close()  # opens the existing file: no cleanup
        assert old.exists()
        SharedState("team-i").close()  # makes a new file: cleans up
    assert not old.exists()
    assert held.exists() and recent.exists() and unrelated.exists() and first.path.exists()
    first.close()


def test_a_file_in_use_has_its_time_refreshed() -> None:
    limiter = AdaptiveRateLimiter(share="team-j")
    assert limiter._shared is not None
    path = limiter._shared.path
    day_ago = time.time() - SharedState.CLEANUP_SECONDS - 60
    os.utime(path, (day_ago, day_ago))
    limiter._shared._touched = 0.0  # as if the last refresh were long ago
    limiter.acquire()
    assert path.stat().st_mtime > time.time() - 60


# -- copies, pickles and forks reopen the file ---------------------------------------------


def test_a_shared_limiter_copies_and_pickles_as_the_same_state() -> None:
    limiter = AdaptiveRateLimiter(2.0, min_qps=1.0, max_qps=50.0, share="team-k")
    go_through_one_request(limiter, THROTTLED)
    for twin in (copy.copy(limiter), copy.deepcopy(limiter), pickle.loads(pickle.dumps(limiter))):
        assert twin is not limiter and twin.shared
        assert twin._shared is not None and limiter._shared is not None
        assert twin._shared.path == limiter._shared.path
        assert twin._shared._map is not limiter._shared._map
        assert twin._shared._pid != limiter._shared._pid  # its own in-flight count
        assert (twin._min, twin._max, twin._initial) == (1.0, 50.0, 2.0)
        twin.acquire()
        assert twin.cuts == 1  # what the file knows


def test_an_unshared_limiter_refuses_to_be_copied() -> None:
    with pytest.raises(TypeError, match="share="):
        pickle.dumps(AdaptiveRateLimiter())
    with pytest.raises(TypeError, match="share="):
        copy.deepcopy(AdaptiveRateLimiter())


def _book_after_fork(limiter: AdaptiveRateLimiter, queue: Any) -> None:
    ticket = limiter.acquire()
    shared = limiter._shared
    queue.put((ticket.sent, shared is not None and shared._owner == os.getpid()))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_a_forked_child_opens_its_own_handle() -> None:
    limiter = AdaptiveRateLimiter(share="team-l", max_qps=20.0)
    parent_slot = limiter.acquire().sent
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_book_after_fork, args=(limiter, queue))
    child.start()
    child_slot, reopened = queue.get(timeout=30)
    child.join(30)
    assert child.exitcode == 0 and reopened
    assert child_slot > parent_slot  # one schedule: the child booked after the parent
    assert limiter.acquire().sent > child_slot


def test_a_ticket_api_is_unchanged() -> None:
    limiter = AdaptiveRateLimiter(share="team-m")
    ticket = limiter.acquire()
    assert isinstance(ticket, Ticket) and limiter.confirm(ticket)
    limiter.observe(None, ticket)


def test_a_lock_held_for_long_makes_it_pace_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    import fcntl

    limiter = AdaptiveRateLimiter(share="team-n")
    assert limiter._shared is not None
    monkeypatch.setattr(SharedState, "LOCK_PATIENCE", 0.05)
    with open(limiter._shared.path, "rb") as stuck:  # a process stopped while holding it
        fcntl.flock(stuck, fcntl.LOCK_EX)
        go_through_one_request(limiter, None)  # not stuck: it goes on alone
        assert not limiter.shared
        with client(share_rate_limit="team-n") as c:  # a new client does not hang either
            assert not c.rate_limiter.shared  # type: ignore[attr-defined]
