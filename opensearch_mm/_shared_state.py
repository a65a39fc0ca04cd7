"""The state processes on one machine share to pace as one client: a small mapped file.

:class:`~opensearch_mm.ratelimit.AdaptiveRateLimiter` keeps its state here when given
``share=``: the fields below, the send/429 counts per bin of send time, and each process's
requests in flight. The layout is this module's; what the fields mean is the limiter's.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import mmap
import os
import stat
import struct
import tempfile
import time
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path

from ._in_flight import InFlightCap

__all__ = ["SharedState"]

_BIN = 0.05  # sends and 429s are counted per 50 ms of send time (a twentieth of a window)
_MAX_BINS = 4096  # 200 s of bins: the longest span (10 sends at the slowest rate) fits
_MAX_PROCESSES = 32  # processes one shared state counts requests in flight for
_STALE_SECONDS = 120.0  # an entry this old (and 20 answer times) was cancelled, not slow

# What clients sharing one state (processes on one machine) share: every field of the
# rate, the send schedule and the counts (see :class:`SharedState`). Concurrency caps and
# answer times are learned per process.
_SHARED_FIELDS = (
    "_rate",
    "_next",
    "_epoch",
    "slow_start",
    "cuts",
    "_ceiling",
    "_floor",
    "_busy",
    "_last_book",
    "_cut_busy",
    "_ok_since_cut",
    "_cut_epoch",
    "_cut_sent",
    "_shut_sent",
    "_open_sent",
    "_open_cuts",
    "_long_shut",
    "_long_at",
    "_lowered_at",
    "_settled",
    "_pause",
    "_held_at",
    "_hinted",
    "_held_ceiling",
    "_raised",
    "_unsure",
    "_return_requests",
    "_started",
    "_limit_set",
)
_RATE_SLOT = _SHARED_FIELDS.index("_rate")  # where the rate is in the shared values

logger = logging.getLogger("opensearch_mm")


class _Unshareable(OSError):
    """Why a limiter cannot share its state here (it then paces this process alone)."""


def _private_folder(directory: str | os.PathLike[str] | None, uid: int) -> Path:
    """The folder for state files: this user's, writable by no one else (created 0700)."""
    if directory is not None:
        folder = Path(directory)
    else:
        folder = Path(tempfile.gettempdir()) / f"opensearch-mm-{uid}"
    with contextlib.suppress(FileExistsError):
        os.mkdir(folder, 0o700)
    status = os.lstat(folder)
    if not stat.S_ISDIR(status.st_mode) or status.st_uid != uid:
        raise _Unshareable(f"{folder} is not a directory of this user")
    if status.st_mode & 0o022:
        raise _Unshareable(f"{folder} is writable by other users")
    return folder


class SharedState:
    """A limiter's state in a small file that processes on one machine map and lock.

    The file holds the rate, the next send slot, the last minutes of send/429 counts and
    each process's requests in flight. Each limiter call locks it (``fcntl.flock``), reads
    the state, updates it and writes it back: the processes pace as one client, so the
    account sees one evenly paced stream and each process gets slots in turn.

    Where it lives: ``<temp dir>/opensearch-mm-<uid>/`` (mode 0700, this user's only),
    named from a hash of ``key``, the user id and the file layout (``key`` itself appears
    nowhere). The file is checked before use (this user's, of this layout) and written
    in full when created (no sparse pages to fault on a full disk). State nobody touched
    for :attr:`IDLE_SECONDS` (and :attr:`IDLE_INTERVALS` send intervals) is not trusted:
    the first limiter to come back starts afresh.
    A process that forks gets its own handle on its first call. POSIX only (``fcntl``).

    Args:
        key: Who shares: every limiter passing the same key uses one state.
        directory: Where the file goes instead of the temp directory's folder (tests).

    Raises:
        ImportError: No ``fcntl`` (Windows).
        OSError: The folder or file cannot be used (another user's, another layout, not
            writable).
    """

    FORMAT = 5  # the layout's version: part of the file name, so two layouts never meet
    # Untouched for 3 s and 5 send intervals at its rate: the run that wrote it has ended (a
    # working process writes it with each request), and the next may meet another quota (a
    # test account reconfigured, a quota raised): slow start finds it again in seconds.
    IDLE_SECONDS = 3.0
    IDLE_INTERVALS = 5.0
    CLEANUP_SECONDS = 86_400.0  # files untouched for a day go when a new file is made
    TOUCH_SECONDS = 60.0  # a file in use has its mtime refreshed this often (cleanup reads it)
    LOCK_PATIENCE = 5.0  # a lock held this long: a process stopped mid-call; pace alone
    _MAGIC = 0x4F534D4D52415432  # "OSMMRAT2"

    def __init__(self, key: str, directory: str | os.PathLike[str] | None = None) -> None:
        import fcntl  # noqa: F401  (POSIX only: fail here, where the caller falls back)

        self._uid = os.getuid()
        # magic, layout size, writes so far, last write (limiter clock, wall clock), state
        self._top = struct.Struct("<QQQdd")
        self._head = struct.Struct(f"<QQQdd{len(_SHARED_FIELDS) + len(InFlightCap.FIELDS)}d")
        self._saved = -1  # the write count after this limiter's last write (-1: reload)
        self._bin = struct.Struct("<qii")
        self._proc = struct.Struct("<qqd")  # limiter id, requests in flight, when written
        self._procs = struct.Struct("<" + "qqd" * _MAX_PROCESSES)
        self._table = self._head.size + _MAX_BINS * self._bin.size
        self._kinds_of: object = None
        self._kinds: list[type] = []
        self.size = self._table + _MAX_PROCESSES * self._proc.size
        name = "\0".join([key, str(self._uid), str(self.FORMAT), str(self.size)])
        digest = hashlib.blake2b(name.encode(), digest_size=16, person=b"osmm-rate-file")
        self.folder = _private_folder(directory, self._uid)
        self.path = self.folder / f"rate-{digest.hexdigest()}"
        self._open()

    # -- the file ---------------------------------------------------------------------
    def _open(self) -> None:
        import fcntl

        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        for _ in range(5):
            fd = os.open(self.path, flags, 0o600)
            try:
                self._take_lock(fd)
                status = os.fstat(fd)
                if not _same_file(self.path, status):
                    os.close(fd)  # removed by a cleanup after the open: open the new one
                    continue
                created = self._prepare(fd, status)
                self._map = mmap.mmap(fd, self.size)
                magic, size = struct.unpack_from("<QQ", self._map, 0)
                if created or (magic, size) == (0, 0):
                    struct.pack_into("<QQQd", self._map, 0, self._MAGIC, self.size, 0, math.nan)
                elif (magic, size) != (self._MAGIC, self.size):
                    self._map.close()
                    raise _Unshareable(f"{self.path} is not a state file of this version")
                fcntl.flock(fd, fcntl.LOCK_UN)
            except BaseException:
                os.close(fd)
                raise
            break
        else:
            raise _Unshareable(f"{self.path} keeps being replaced")
        self._fd = fd
        self._owner = os.getpid()
        self._pid = int.from_bytes(os.urandom(7), "big") | 1  # this limiter, among all sharing
        self._mine: int | None = None  # where its entry is in the table of processes
        self._touched = time.time()
        self._closer = weakref.finalize(self, _close, self._map, fd)
        if created:
            self._cleanup()

    def _prepare(self, fd: int, status: os.stat_result) -> bool:
        """Check the opened file (lock held); write a new, empty one in full. Returns
        whether it was new."""
        if not stat.S_ISREG(status.st_mode) or status.st_uid != self._uid:
            raise _Unshareable(f"{self.path} is not a file of this user")
        if status.st_size == self.size:
            return False
        if status.st_size:
            raise _Unshareable(f"{self.path} has {status.st_size} bytes, not {self.size}")
        try:
            zeros = memoryview(bytes(self.size))
            while zeros:
                zeros = zeros[os.write(fd, zeros) :]
        except OSError:
            os.ftruncate(fd, 0)  # a full disk: leave it empty for a later try
            raise
        return True

    def _cleanup(self) -> None:
        """Remove this user's state files that nobody touched for a day (a test suite
        makes one per emulator port)."""
        import fcntl

        old = time.time() - self.CLEANUP_SECONDS
        with contextlib.suppress(OSError), os.scandir(self.folder) as entries:
            for entry in entries:
                if not entry.name.startswith("rate-") or entry.name == self.path.name:
                    continue
                with contextlib.suppress(OSError):
                    status = entry.stat(follow_symlinks=False)
                    if status.st_mtime > old or status.st_uid != self._uid:
                        continue
                    fd = os.open(entry.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # in use: keep it
                        again = os.fstat(fd)
                        if again.st_mtime <= old and _same_file(Path(entry.path), again):
                            os.unlink(entry.path)
                    finally:
                        os.close(fd)

    def close(self) -> None:
        """Unmap and close the file (the state stays for the others)."""
        self._closer()

    # -- one limiter call ---------------------------------------------------------------
    def lock(self) -> None:
        """Take the file's lock (in a forked child, on a handle of its own first).

        Raises:
            OSError: The lock cannot be taken (the caller stops sharing).
        """

        if not self._closer.alive:
            raise _Unshareable("the shared state was closed")
        if os.getpid() != self._owner:
            self._closer()  # the parent's handle: its lock would be the parent's too
            self._open()
        self._take_lock(self._fd)

    def _take_lock(self, fd: int) -> None:
        """``flock`` ``fd``. Another limiter holds it for microseconds, normally: poll for
        it, but give up after :attr:`LOCK_PATIENCE` (a process stopped while holding it)."""
        import fcntl

        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        deadline = time.monotonic() + self.LOCK_PATIENCE
        pause = 0.0001
        while True:
            time.sleep(pause)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise _Unshareable(
                        f"the state file stayed locked for {self.LOCK_PATIENCE:g} s"
                    ) from None
                pause = min(2 * pause, 0.01)

    def unlock(self) -> None:
        import fcntl

        fcntl.flock(self._fd, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the file's lock."""
        self.lock()
        try:
            yield
        finally:
            self.unlock()

    def load(
        self,
        slots: Sequence[tuple[object, str]],
        now: float,
        fresh: Sequence[float] | None = None,
    ) -> int:
        """Set each ``(object, attribute)`` from the file; return the requests in flight
        in the other processes. State nobody wrote for :attr:`IDLE_SECONDS` (or from
        before a reboot) is not trusted: the slots are set to ``fresh`` (when given) and
        the counts cleared."""
        _, _, writes, touched, wall, *values = self._head.unpack_from(self._map, 0)
        saved, self._saved = self._saved, -1
        rate = values[_RATE_SLOT]
        idle = max(self.IDLE_SECONDS, self.IDLE_INTERVALS / rate if rate > 0 else 0.0)
        if not (
            now - idle <= touched <= now + 1.0
            and abs(time.time() - wall) <= idle
            and values[1] <= now + _STALE_SECONDS  # the next send slot
        ):
            if fresh is not None:
                for (owner, name), value in zip(slots, fresh, strict=True):
                    setattr(owner, name, value)
            self._map[self._head.size : self.size] = bytes(self.size - self._head.size)
            return 0
        if writes != saved:  # another limiter wrote since this one did: read its state
            if slots is not self._kinds_of:  # (the types of the attributes, read once)
                self._kinds_of, self._kinds = slots, [type(getattr(o, n)) for o, n in slots]
            for (owner, name), kind, value in zip(slots, self._kinds, values, strict=True):
                setattr(owner, name, value if kind is float else kind(value))
        table = self._procs.unpack_from(self._map, self._table)
        others, stale = 0, now - _STALE_SECONDS
        for pid, count, stamp in zip(table[0::3], table[1::3], table[2::3], strict=True):
            if pid and pid != self._pid and count > 0 and stamp > stale:
                others += count  # (a process gone for minutes no longer counts)
        return others

    def save(self, slots: Sequence[tuple[object, str]], in_flight: int, now: float) -> None:
        """Write each ``(object, attribute)`` and this process's requests in flight."""
        values = [getattr(owner, name) for owner, name in slots]
        wall = time.time()
        writes = (self._top.unpack_from(self._map, 0)[2] + 1) & 0xFFFFFFFFFFFFFFFF
        self._head.pack_into(self._map, 0, self._MAGIC, self.size, writes, now, wall, *values)
        self._saved = writes
        if wall - self._touched > self.TOUCH_SECONDS:
            self._touched = wall
            with contextlib.suppress(OSError, NotImplementedError):
                os.utime(self._fd if os.utime in os.supports_fd else self.path)
        mine = self._mine
        if mine is not None and self._proc.unpack_from(self._map, mine)[0] == self._pid:
            self._proc.pack_into(self._map, mine, self._pid, in_flight, now)
            return
        self._mine = None
        free = None
        for i in range(_MAX_PROCESSES):
            offset = self._table + i * self._proc.size
            pid, count, stamp = self._proc.unpack_from(self._map, offset)
            if pid == self._pid:
                free = offset
                break
            if free is None and (not pid or count <= 0 or stamp <= now - _STALE_SECONDS):
                free = offset
        if free is not None and in_flight:
            self._proc.pack_into(self._map, free, self._pid, in_flight, now)
            self._mine = free

    def add(self, key: int, kind: int) -> None:
        offset = self._head.size + (key % _MAX_BINS) * self._bin.size
        stamp, sent, refused = self._bin.unpack_from(self._map, offset)
        if stamp != key:
            stamp, sent, refused = key, 0, 0
        if kind:
            refused += 1
        else:
            sent += 1
        self._bin.pack_into(self._map, offset, stamp, sent, refused)

    def sums(self, first: int, last: int) -> tuple[int, int]:
        sent = refused = 0
        for key in range(first, last):
            offset = self._head.size + (key % _MAX_BINS) * self._bin.size
            stamp, s, r = self._bin.unpack_from(self._map, offset)
            if stamp == key:
                sent += s
                refused += r
        return sent, refused


def _same_file(path: Path, status: os.stat_result) -> bool:
    """Whether ``path`` still names the file ``status`` describes."""
    try:
        current = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return (current.st_ino, current.st_dev) == (status.st_ino, status.st_dev)


def _close(mapped: mmap.mmap, fd: int) -> None:
    with contextlib.suppress(OSError, ValueError):
        mapped.close()
    with contextlib.suppress(OSError):
        os.close(fd)


def _open_shared(share: str) -> SharedState | None:
    """The shared state for ``share``, or ``None`` (logged at DEBUG) where sharing cannot
    work: no ``fcntl`` (Windows), a temp directory that is not writable, a file of another
    user or layout. The limiter then paces this process alone."""
    try:
        return SharedState(share)
    except (ImportError, OSError, ValueError) as exc:
        logger.debug("rate limit not shared with other processes, pacing alone: %s", exc)
        return None
