"""Errors of the engine core. Each names the thing at fault."""


class ShmError(RuntimeError):
    """Base class for shared-memory segment errors."""


class SegmentNotFound(ShmError):
    """No segment of that name exists (engine not running, or wrong engine name)."""


class SegmentExists(ShmError):
    """A segment of that name already exists (another engine of that name is running?)."""


class LayoutMismatch(ShmError):
    """The segment was built from another layout (version, kind or hash differ)."""


class EngineRunning(ShmError):
    """An engine of the same name is alive: refuse to start a second one."""
