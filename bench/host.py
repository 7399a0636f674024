"""The host block every benchmark's JSON carries: what machine the figures come from."""
from __future__ import annotations

import os
import platform


def read(path: str) -> str | None:
    """A small kernel file's text, or None if it cannot be read."""
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def cpu_model() -> str | None:
    for line in (read("/proc/cpuinfo") or "").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or None


def preempt_rt() -> bool:
    """PREEMPT_RT kernel: uname, the RT patch set's /sys/kernel/realtime, or the kernel config."""
    if "PREEMPT_RT" in platform.uname().version:
        return True
    if (read("/sys/kernel/realtime") or "").strip() == "1":
        return True
    return "CONFIG_PREEMPT_RT=y" in (read(f"/boot/config-{platform.release()}") or "")


def isolated_cpus() -> list[int]:
    from pyrt_shm.config import read_isolated_cpus

    return sorted(read_isolated_cpus())


def host_info(**extra) -> dict:
    """CPUs, CPU model, kernel, Python/numba/numpy versions and the load average now."""
    import numba
    import numpy as np

    info = {"cpus": os.cpu_count(), "cpu_model": cpu_model(), "machine": platform.machine(),
            "kernel": platform.release(), "python": platform.python_version(),
            "numba": numba.__version__, "numpy": np.__version__,
            "loadavg_start": round(os.getloadavg()[0], 2)}
    info.update(extra)
    return info
