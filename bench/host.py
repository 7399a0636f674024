"""The host block every benchmark's JSON carries: what machine the figures come from."""
from __future__ import annotations

import os
import platform


def cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


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
