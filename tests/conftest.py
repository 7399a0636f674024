"""Shared fixtures: unique engine names and a /dev/shm leak check around every test.

Nothing may be left in ``/dev/shm``. The autouse fixture ``shm_leak_check`` lists the
entries named ``pyrt-*`` (segments) and ``sem.pyrt-*`` (semaphores) before and after each
test; an entry that appeared during the test and is still there fails the test, and is
removed so that one leak does not fail every later test.

Other test sessions may run at the same time on this machine (each engineer runs their own
pytest). Their entries must be neither blamed on this test nor deleted, so a new entry counts
as this session's unless it provably belongs to another live process:

* an engine name made by ``engine_name`` (``t<pid>-<n>``) belongs to process ``<pid>``;
* any other segment belongs to the ``creator_pid`` written in its header.

An entry owned by a live process other than this one (and not its child) is ignored.
"""
from __future__ import annotations

import itertools
import mmap
import os
import re
import sys

import pytest

try:
    import layouts  # noqa: F401
except ImportError:  # not installed: run from the checkout
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import posix_ipc  # noqa: E402
import psutil  # noqa: E402

from layouts.segment import HEADER_SIZE, MAGIC, SEGMENT_HEADER  # noqa: E402

SHM_DIR = "/dev/shm"
_TAGGED = re.compile(r"^(?:sem\.)?pyrt-t(\d+)-")
_counter = itertools.count()


def _pyrt_entries() -> set[str]:
    try:
        return {e for e in os.listdir(SHM_DIR) if e.startswith(("pyrt-", "sem.pyrt-"))}
    except FileNotFoundError:
        return set()


def _header_pid(entry: str) -> int | None:
    """creator_pid of segment ``entry`` (a /dev/shm file name), or None if unreadable."""
    try:
        with open(os.path.join(SHM_DIR, entry), "rb") as f:
            if os.fstat(f.fileno()).st_size < HEADER_SIZE:
                return None
            with mmap.mmap(f.fileno(), HEADER_SIZE, prot=mmap.PROT_READ) as mm:
                h = np.frombuffer(mm, SEGMENT_HEADER, count=1)
                magic, pid = int(h["magic"][0]), int(h["creator_pid"][0])
                del h
    except (OSError, ValueError):
        return None
    return pid if magic == MAGIC else None


def _owner_pid(entry: str) -> int | None:
    m = _TAGGED.match(entry)
    if m:
        return int(m.group(1))
    if entry.startswith("sem."):
        return None
    return _header_pid(entry)


def _is_foreign(entry: str) -> bool:
    """True if ``entry`` belongs to a live process that is neither us nor our child."""
    pid = _owner_pid(entry)
    me = os.getpid()
    if pid is None or pid == me:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return me not in {p.pid for p in proc.parents()}
    except psutil.Error:
        return False  # owner is dead: nobody else will clean it up


def _remove(entry: str) -> None:
    try:
        if entry.startswith("sem."):
            posix_ipc.unlink_semaphore("/" + entry[len("sem."):])
        else:
            posix_ipc.unlink_shared_memory("/" + entry)
    except posix_ipc.ExistentialError:
        pass


@pytest.fixture(autouse=True)
def shm_leak_check():
    """Fail the test if it left ``pyrt-*`` / ``sem.pyrt-*`` entries in /dev/shm (then remove them)."""
    before = _pyrt_entries()
    yield
    leaked = sorted(e for e in _pyrt_entries() - before if not _is_foreign(e))
    for e in leaked:
        _remove(e)
    if leaked:
        pytest.fail(f"test left {len(leaked)} entries in {SHM_DIR} (now removed): {leaked}",
                    pytrace=False)


@pytest.fixture
def engine_name() -> str:
    """An engine name unique to this test: ``t<pid>-<n>`` (valid for ``pyrt_shm.segment``)."""
    return f"t{os.getpid()}-{next(_counter)}"
