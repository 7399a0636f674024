"""POSIX shared-memory segments: create, attach (read-write or read-only), verify, unlink.

Every segment starts with ``layouts.segment.SEGMENT_HEADER`` and carries its payload at
``payload_offset``. Names are ``/pyrt-<engine>.<segment>``; the engine name admits
``[a-z0-9-]`` only, so one engine's prefix is never a prefix of another's.

Ownership: the creator (the supervisor, or a test) owns the name and is the only one
that calls ``unlink()``; attachers only ``close()``. Objects are kernel-persistent until
unlinked (a SIGKILLed creator leaves them), so ``remove_stale`` cleans up names whose
creator is dead before an engine starts. posix_ipc has no resource tracker, so lifetime is
explicit (unlike ``multiprocessing.shared_memory`` before 3.13).

A read-only attach maps the pages with ``PROT_READ``: every numpy view of it is
non-writeable (assignment raises ``ValueError``) and even a raw store would fault.
"""
from __future__ import annotations

import mmap
import os
import re
import time

import numpy as np
import posix_ipc

from layouts.common import align_up
from layouts.segment import HEADER_SIZE, HEADER_VERSION, KIND_NAMES, MAGIC, SEGMENT_HEADER

from .errors import EngineRunning, LayoutMismatch, SegmentExists, SegmentNotFound

SHM_DIR = "/dev/shm"
_ENGINE_RE = re.compile(r"^[a-z0-9-]{1,32}$")
_SEGMENT_RE = re.compile(r"^[a-z0-9_-]{1,64}$")


def check_engine_name(engine: str) -> str:
    if not isinstance(engine, str) or not _ENGINE_RE.match(engine):
        raise ValueError(f"engine name {engine!r} must match [a-z0-9-]{{1,32}}")
    return engine


def engine_prefix(engine: str) -> str:
    """File-name prefix of every segment of ``engine`` (as seen in /dev/shm)."""
    return f"pyrt-{check_engine_name(engine)}."


def segment_name(engine: str, name: str) -> str:
    """POSIX name (leading slash) of segment ``name`` of ``engine``."""
    if not _SEGMENT_RE.match(name):
        raise ValueError(f"segment name {name!r} must match [a-z0-9_-]{{1,64}}")
    return "/" + engine_prefix(engine) + name


class Segment:
    """A mapped segment. Views returned by ``array()`` stay valid until the last one dies."""

    def __init__(self, posix_name: str, mm: mmap.mmap, readonly: bool, owner: bool):
        self.posix_name = posix_name
        self.mm = mm
        self.readonly = readonly
        self.owner = owner
        self.header = np.ndarray((1,), SEGMENT_HEADER, buffer=mm)
        self.size = len(mm)

    @property
    def name(self) -> str:
        return self.posix_name.rsplit(".", 1)[-1]

    @property
    def payload_offset(self) -> int:
        return int(self.header["payload_offset"][0])

    @property
    def kind(self) -> int:
        return int(self.header["kind"][0])

    @property
    def creator_pid(self) -> int:
        return int(self.header["creator_pid"][0])

    @property
    def start_mono_ns(self) -> int:
        return int(self.header["start_mono_ns"][0])

    def array(self, dtype, shape, offset: int = 0) -> np.ndarray:
        """A numpy view of the payload at ``offset`` bytes from its start."""
        return np.ndarray(shape, np.dtype(dtype), buffer=self.mm, offset=self.payload_offset + offset)

    def payload(self) -> memoryview:
        return memoryview(self.mm)[self.payload_offset:]

    def beat(self, now_ns: int | None = None) -> None:
        self.header["heartbeat_ns"][0] = time.monotonic_ns() if now_ns is None else now_ns

    def close(self) -> None:
        """Drop this process's mapping once no view uses it (never unlinks).

        Only references are dropped: every numpy view keeps the mmap alive through its
        ``base`` and CPython unmaps it when the last one goes. ``mmap.close()`` is not safe
        here: a view made with ``np.ndarray(buffer=mm, offset=k)`` holds no buffer export,
        so ``close()`` would succeed and unmap pages the view still points at (segfault).
        """
        self.header = None
        self.mm = None

    def unlink(self) -> None:
        """Remove the name (owner only). Existing mappings stay valid."""
        unlink_segment(self.posix_name)

    def __repr__(self) -> str:
        mode = "ro" if self.readonly else "rw"
        return f"Segment({self.posix_name!r}, {KIND_NAMES.get(self.kind, '?')}, {self.size} B, {mode})"


def create_segment(engine: str, name: str, kind: int, layout_hash: int, payload_size: int) -> Segment:
    """Create a new segment exclusively (mode 0600) and write its header."""
    posix_name = segment_name(engine, name)
    payload_offset = align_up(HEADER_SIZE)
    size = align_up(payload_offset + payload_size, mmap.PAGESIZE)
    try:
        shm = posix_ipc.SharedMemory(posix_name, posix_ipc.O_CREX, mode=0o600, size=size)
    except posix_ipc.ExistentialError:
        raise SegmentExists(f"segment {posix_name} already exists (is engine {engine!r} running? "
                            f"stale segments are removed by `pyrt clean {engine}`)") from None
    try:
        mm = mmap.mmap(shm.fd, size)
    except BaseException:
        shm.unlink()
        raise
    finally:
        shm.close_fd()
    seg = Segment(posix_name, mm, readonly=False, owner=True)
    h = seg.header
    h["magic"] = MAGIC
    h["version"] = HEADER_VERSION
    h["kind"] = kind
    h["layout_hash"] = layout_hash
    h["creator_pid"] = os.getpid()
    h["start_mono_ns"] = time.monotonic_ns()
    h["start_unix_ns"] = time.time_ns()
    h["payload_offset"] = payload_offset
    h["payload_size"] = payload_size
    h["heartbeat_ns"] = 0
    return seg


def mark_ready(seg: Segment) -> None:
    """Creator: the payload is initialised; attachers may use it."""
    seg.header["ready"] = 1


def attach_segment(engine: str, name: str, kind: int | None = None, layout_hash: int | None = None,
                   readonly: bool = False) -> Segment:
    """Map an existing segment and verify its header; read-only maps refuse every write."""
    posix_name = segment_name(engine, name)
    try:
        shm = posix_ipc.SharedMemory(posix_name, 0, read_only=readonly)
    except posix_ipc.ExistentialError:
        raise SegmentNotFound(f"no segment {posix_name}: engine {engine!r} is not running "
                              f"or has no segment {name!r}") from None
    try:
        if shm.size < HEADER_SIZE:
            raise LayoutMismatch(f"{posix_name}: {shm.size} B is too small for a segment header")
        prot = mmap.PROT_READ if readonly else mmap.PROT_READ | mmap.PROT_WRITE
        mm = mmap.mmap(shm.fd, shm.size, prot=prot)
    finally:
        shm.close_fd()
    seg = Segment(posix_name, mm, readonly=readonly, owner=False)
    try:
        verify_header(seg, kind, layout_hash)
    except BaseException:
        seg.close()
        raise
    return seg


def verify_header(seg: Segment, kind: int | None, layout_hash: int | None) -> None:
    h = seg.header[0]
    where = seg.posix_name
    if int(h["magic"]) != MAGIC:
        raise LayoutMismatch(f"{where}: not a pyrt-shm segment (magic {int(h['magic']):#x})")
    if int(h["version"]) != HEADER_VERSION:
        raise LayoutMismatch(f"{where}: header version {int(h['version'])}, this build reads "
                             f"version {HEADER_VERSION}")
    if kind is not None and int(h["kind"]) != kind:
        raise LayoutMismatch(f"{where}: segment is a {KIND_NAMES.get(int(h['kind']), h['kind'])}, "
                             f"expected a {KIND_NAMES.get(kind, kind)}")
    if layout_hash is not None and int(h["layout_hash"]) != layout_hash:
        raise LayoutMismatch(f"{where}: layout hash {int(h['layout_hash']):#x} differs from this "
                             f"build's {layout_hash:#x} (engine and reader built from different layouts)")
    if int(h["payload_offset"]) + int(h["payload_size"]) > seg.size:
        raise LayoutMismatch(f"{where}: payload runs past the end of the segment")


def unlink_segment(posix_name: str) -> bool:
    """Unlink a segment by POSIX name; False if it was already gone."""
    try:
        posix_ipc.unlink_shared_memory(posix_name)
        return True
    except posix_ipc.ExistentialError:
        return False


def list_segments(engine: str) -> list[str]:
    """POSIX names of every segment of ``engine`` present in /dev/shm."""
    prefix = engine_prefix(engine)
    try:
        entries = os.listdir(SHM_DIR)
    except FileNotFoundError:
        return []
    return sorted("/" + e for e in entries if e.startswith(prefix))


def _creator_alive(posix_name: str) -> tuple[bool, int]:
    """(alive, pid) of the creator of a segment, from its header."""
    import psutil

    try:
        shm = posix_ipc.SharedMemory(posix_name, 0, read_only=True)
    except posix_ipc.ExistentialError:
        return False, 0
    try:
        if shm.size < HEADER_SIZE:
            return False, 0
        mm = mmap.mmap(shm.fd, HEADER_SIZE, prot=mmap.PROT_READ)
    finally:
        shm.close_fd()
    try:
        h = np.frombuffer(mm, SEGMENT_HEADER, count=1)[0]
        pid, start_unix = int(h["creator_pid"]), int(h["start_unix_ns"])
        magic = int(h["magic"])
        del h
    finally:
        mm.close()
    if magic != MAGIC or pid <= 0:
        return False, pid
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False, pid          # exited, not yet reaped by its parent: dead
        # A recycled pid belongs to a process started after the segment was made.
        return proc.create_time() * 1e9 <= start_unix + 1e9, pid
    except psutil.NoSuchProcess:
        return False, pid


def remove_stale(engine: str) -> list[str]:
    """Unlink every segment (and semaphore) of ``engine`` whose creator is dead; return the names.

    Raises ``EngineRunning`` if a creator is alive: a second engine of that name must not
    start (and must not delete a live engine's memory).
    """
    names = list_segments(engine)
    for n in names:
        alive, pid = _creator_alive(n)
        if alive:
            raise EngineRunning(f"engine {engine!r} is running (pid {pid} owns {n}); stop it first "
                                f"or choose another engine name")
    removed = [n for n in names if unlink_segment(n)]
    prefix = "sem." + engine_prefix(engine)
    for e in os.listdir(SHM_DIR) if os.path.isdir(SHM_DIR) else []:
        if e.startswith(prefix):
            try:
                posix_ipc.unlink_semaphore("/" + e[4:])
                removed.append("/" + e)
            except posix_ipc.ExistentialError:
                pass
    return removed
