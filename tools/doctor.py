"""``pyrt doctor``: how fit this host is for low latency, item by item, with a fix for each.

Every item gets a verdict:

* ``ok``: nothing to do;
* ``warn``: works, but costs latency or predictability (the fix says what to change);
* ``bad``: breaks the engine's guarantees (shared memory unusable, a slow clock source);
* ``unknown``: the host does not say (file absent, e.g. cpufreq in a VM, or unreadable).

Items: kernel preemption model, isolated CPUs, nohz_full, rcu_nocbs, CPU frequency
governor, SMT siblings, transparent huge pages, RT throttling, RLIMIT_MEMLOCK,
CAP_IPC_LOCK, CAP_SYS_NICE, RLIMIT_RTPRIO, /dev/shm, clock source, virtualization, CPUs.

Every probe reads files below a root directory (``root="/"``), so tests build a fake
``/proc`` + ``/sys`` tree and check the verdicts. Only with the real root do probes fall
back to the running process (``platform.uname``, ``resource.getrlimit``, CPU affinity).
A probe never raises: a missing or odd file gives ``unknown``. The command exits 0 whatever
it finds (2 only for a bad command line); ``--json`` prints one JSON object.

Imports no numba (and nothing of the engine): it starts fast and runs on any Linux host.
"""
from __future__ import annotations

import argparse
import dataclasses
import glob
import gzip
import json
import os
import platform
import re
import sys

OK, WARN, BAD, UNKNOWN = "ok", "warn", "bad", "unknown"
VERDICTS = (OK, WARN, BAD, UNKNOWN)

CAP_IPC_LOCK = 14
CAP_SYS_NICE = 23
#: mlockall of an engine process locks its whole image (Python, numpy, numba, LLVM, mapped
#: segments): a few hundred MB. Below this RLIMIT_MEMLOCK (without CAP_IPC_LOCK) it fails.
MEMLOCK_NEEDED = 512 << 20
#: /dev/shm free space: below BAD an engine with default rings may not start; below WARN
#: several engines or big rings will not fit.
SHM_BAD_BYTES = 64 << 20
SHM_WARN_BYTES = 256 << 20
#: Fixed SCHED_FIFO priority an engine asks for by default (``engine.fifo_priority``).
DEFAULT_FIFO_PRIORITY = 10

#: Every item, in report order: (name, title).
ITEMS = (
    ("kernel_preempt", "kernel preemption model"),
    ("isolated_cpus", "isolated CPUs"),
    ("nohz_full", "tickless CPUs (nohz_full)"),
    ("rcu_nocbs", "RCU callback offload (rcu_nocbs)"),
    ("cpu_governor", "CPU frequency governor"),
    ("smt", "SMT siblings"),
    ("transparent_hugepages", "transparent huge pages"),
    ("rt_throttling", "RT throttling"),
    ("memlock", "RLIMIT_MEMLOCK"),
    ("cap_ipc_lock", "CAP_IPC_LOCK"),
    ("cap_sys_nice", "CAP_SYS_NICE"),
    ("rtprio", "RLIMIT_RTPRIO"),
    ("dev_shm", "/dev/shm"),
    ("clocksource", "clock source"),
    ("virtualization", "virtualization"),
    ("cpus", "CPUs"),
)
_TITLES = dict(ITEMS)


@dataclasses.dataclass
class Item:
    name: str
    verdict: str
    detail: str
    fix: str | None = None
    data: dict = dataclasses.field(default_factory=dict)

    @property
    def title(self) -> str:
        return _TITLES.get(self.name, self.name)

    def as_dict(self) -> dict:
        return {"name": self.name, "title": self.title, "verdict": self.verdict,
                "detail": self.detail, "fix": self.fix, "data": self.data}


# ---------------------------------------------------------------------------------------
# reading the host

def parse_cpu_list(text: str | None) -> list[int] | None:
    """``"0-2,5"`` -> ``[0, 1, 2, 5]``; ``""``/``"(null)"`` -> ``[]``; unparsable -> None.

    Flags before the list (``isolcpus=nohz,domain,2-3``) and ``/N`` strides are accepted.
    """
    if text is None:
        return None
    text = text.strip()
    if text in ("", "(null)"):
        return []
    out: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if re.fullmatch(r"[a-z_]+", part):
            continue  # isolcpus flags: nohz, domain, managed_irq
        m = re.fullmatch(r"(\d+)(?:-(\d+)(?::(\d+)/(\d+)|/(\d+))?)?", part)
        if not m:
            return None
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) else a
        if m.group(3):                        # a-b:used/group
            used, group = int(m.group(3)), int(m.group(4))
            out.update(c for c in range(a, b + 1) if group and (c - a) % group < used)
        else:
            step = int(m.group(5)) if m.group(5) else 1
            out.update(range(a, b + 1, max(step, 1)))
    return sorted(out)


def fmt_cpus(cpus) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2,5"``."""
    cpus = sorted(cpus)
    if not cpus:
        return "none"
    parts, start, prev = [], cpus[0], cpus[0]
    for c in cpus[1:] + [None]:
        if c is not None and c == prev + 1:
            prev = c
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if c is not None:
            start = prev = c
    return ",".join(parts)


def _fmt_bytes(n: int) -> str:
    for unit, k in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << k:
            return f"{n / (1 << k):.1f} {unit}"
    return f"{n} B"


class Host:
    """Read-only view of a host's ``/proc`` and ``/sys`` below ``root``."""

    def __init__(self, root: str = "/", statvfs=None):
        self.root = root
        self.real = os.path.realpath(root) == "/"
        self.statvfs = statvfs or os.statvfs
        self._cache: dict = {}

    def path(self, rel: str) -> str:
        return os.path.join(self.root, rel.lstrip("/"))

    def read(self, rel: str) -> str | None:
        if rel in self._cache:
            return self._cache[rel]
        try:
            with open(self.path(rel), "rb") as f:
                text = f.read(1 << 20).decode("utf-8", "replace")
        except (OSError, ValueError):
            text = None
        self._cache[rel] = text
        return text

    def glob(self, pattern: str) -> list[str]:
        """Paths (relative to root, with a leading slash) matching ``pattern``."""
        base = self.path("")
        return sorted("/" + os.path.relpath(p, base) for p in glob.glob(self.path(pattern)))

    # -- derived ----------------------------------------------------------------------------
    def cmdline(self) -> dict | None:
        """Kernel command line as ``{key: value-or-True}`` (before ``--``), or None."""
        text = self.read("/proc/cmdline")
        if text is None:
            return None
        out = {}
        for word in text.split():
            if word == "--":
                break
            k, sep, v = word.partition("=")
            out[k] = v if sep else True
        return out

    def kernel_version(self) -> str | None:
        v = self.read("/proc/sys/kernel/version")
        if v is None and self.real:
            return platform.uname().version
        return v.strip() if v is not None else None

    def kernel_release(self) -> str | None:
        r = self.read("/proc/sys/kernel/osrelease")
        if r is None and self.real:
            return platform.release()
        return r.strip() if r is not None else None

    def kernel_config(self) -> tuple[dict | None, str | None]:
        """``({CONFIG_X: value}, where)`` from /boot/config-<release> or /proc/config.gz."""
        if "kconfig" in self._cache:
            return self._cache["kconfig"]
        result: tuple = (None, None)
        release = self.kernel_release()
        text, where = None, None
        if release:
            where = f"/boot/config-{release}"
            text = self.read(where)
        if text is None:
            where = "/proc/config.gz"
            try:
                with gzip.open(self.path(where), "rt", encoding="utf-8", errors="replace") as f:
                    text = f.read()
            except (OSError, EOFError, ValueError):
                text = None
        if text is not None:
            cfg = {}
            for line in text.splitlines():
                m = re.match(r"^(CONFIG_\w+)=(.*)$", line)
                if m:
                    cfg[m.group(1)] = m.group(2)
                else:
                    m = re.match(r"^# (CONFIG_\w+) is not set", line)
                    if m:
                        cfg[m.group(1)] = "n"
            result = (cfg, where)
        self._cache["kconfig"] = result
        return result

    def online_cpus(self) -> list[int] | None:
        cpus = parse_cpu_list(self.read("/sys/devices/system/cpu/online"))
        if cpus is None and self.real:
            cpus = list(range(os.cpu_count() or 1))
        return cpus

    def status_field(self, field: str) -> str | None:
        text = self.read("/proc/self/status")
        if text is None:
            return None
        for line in text.splitlines():
            k, _, v = line.partition(":")
            if k == field:
                return v.strip()
        return None

    def cap_eff(self) -> int | None:
        v = self.status_field("CapEff")
        try:
            return int(v, 16) if v is not None else None
        except ValueError:
            return None

    def has_cap(self, bit: int) -> bool | None:
        caps = self.cap_eff()
        return None if caps is None else bool(caps >> bit & 1)

    def rlimit(self, label: str, resource_name: str) -> tuple[int | None, int | None] | None:
        """(soft, hard) from /proc/self/limits; None for unlimited values; None if unknown."""
        text = self.read("/proc/self/limits")
        if text is not None:
            for line in text.splitlines():
                if line.startswith(label):
                    fields = line[len(label):].split()
                    if len(fields) >= 2:
                        def num(s):
                            return None if s == "unlimited" else int(s)
                        try:
                            return num(fields[0]), num(fields[1])
                        except ValueError:
                            return None
            return None
        if self.real:
            try:
                import resource

                soft, hard = resource.getrlimit(getattr(resource, resource_name))
                inf = resource.RLIM_INFINITY
                return (None if soft == inf else soft), (None if hard == inf else hard)
            except (ImportError, AttributeError, OSError, ValueError):
                return None
        return None

    def hypervisor(self) -> str | None:
        """Hypervisor name/evidence, ``""`` on bare metal, None if it cannot tell."""
        htype = self.read("/sys/hypervisor/type")
        if htype and htype.strip():
            return htype.strip()
        cpuinfo = self.read("/proc/cpuinfo")
        if cpuinfo is None:
            return None
        for line in cpuinfo.splitlines():
            if line.startswith("flags") and re.search(r"\bhypervisor\b", line):
                vendor = (self.read("/sys/class/dmi/id/sys_vendor") or "").strip()
                product = (self.read("/sys/class/dmi/id/product_name") or "").strip()
                return " ".join(x for x in (vendor, product) if x) or "hypervisor flag"
        if re.search(r"^flags\s*:", cpuinfo, re.M):
            return ""
        return None  # not x86 (no flags line): cannot tell from cpuinfo


# ---------------------------------------------------------------------------------------
# checks: each takes a Host and returns an Item

def check_kernel_preempt(h: Host) -> Item:
    version = h.kernel_version()
    cfg, cfg_where = h.kernel_config()
    realtime = (h.read("/sys/kernel/realtime") or "").strip()
    cmd = h.cmdline() or {}
    dyn = h.read("/sys/kernel/debug/sched/preempt")
    data = {"uname_version": version, "sys_kernel_realtime": realtime or None, "config": cfg_where,
            "preempt_cmdline": cmd.get("preempt")}
    fix_rt = ("boot a PREEMPT_RT kernel (mainline >= 6.12 with CONFIG_PREEMPT_RT=y, or your "
              "distribution's -rt kernel package)")
    rt = ((version and "PREEMPT_RT" in version) or realtime == "1"
          or (cfg is not None and cfg.get("CONFIG_PREEMPT_RT") == "y"))
    if rt:
        return Item("kernel_preempt", OK, "PREEMPT_RT (fully preemptible, threaded interrupts)",
                    data={**data, "model": "rt"})
    model, model_from = None, None
    if dyn:
        m = re.search(r"\((\w+)\)", dyn)
        if m:
            model, model_from = m.group(1), "debugfs"
    if model is None and isinstance(cmd.get("preempt"), str):
        model, model_from = cmd["preempt"], "preempt= on the command line"
    dynamic = bool((version and "PREEMPT_DYNAMIC" in version)
                   or (cfg is not None and cfg.get("CONFIG_PREEMPT_DYNAMIC") == "y"))
    if model is None and cfg is not None:
        for key, name in (("CONFIG_PREEMPT_LAZY", "lazy"), ("CONFIG_PREEMPT", "full"),
                          ("CONFIG_PREEMPT_VOLUNTARY", "voluntary"), ("CONFIG_PREEMPT_NONE", "none")):
            if cfg.get(key) == "y":
                model, model_from = name, "kernel config" + (" default" if dynamic else "")
                break
    if model is None and version:
        if re.search(r"\bPREEMPT\b", version) and not dynamic:
            model = "full"
        elif not dynamic:
            model = "none or voluntary"
    if model is None and not dynamic and version is None and cfg is None:
        return Item("kernel_preempt", UNKNOWN, "kernel version and config unreadable", fix_rt, data)
    data["model"] = model
    data["model_from"] = model_from
    data["dynamic"] = dynamic
    desc = ("PREEMPT_DYNAMIC" if dynamic else "static") + (f", mode {model}" if model else "") + (
        f" ({model_from})" if model_from else "")
    fix = fix_rt
    if dynamic and model not in ("full", "lazy"):
        fix += "; meanwhile boot with preempt=full (PREEMPT_DYNAMIC kernels)"
    worse = model in ("none", "voluntary", "none or voluntary")
    detail = f"not real-time: {desc}" + ("; a long kernel path delays a stage's wake-up until it "
                                          "yields" if worse else "")
    return Item("kernel_preempt", WARN, detail, fix, data)


def _isolation(h: Host) -> tuple[list[int] | None, dict]:
    """Isolated CPUs from sysfs, the command line and cgroup v2 isolated partitions."""
    sys_iso = parse_cpu_list(h.read("/sys/devices/system/cpu/isolated"))
    cmd = h.cmdline()
    cmd_iso = parse_cpu_list(cmd.get("isolcpus")) if cmd and isinstance(cmd.get("isolcpus"), str) else None
    cg_iso = parse_cpu_list(h.read("/sys/fs/cgroup/cpuset.cpus.isolated"))
    data = {"sysfs": sys_iso, "cmdline": cmd_iso, "cgroup_isolated": cg_iso}
    if sys_iso is None and cmd is None and cg_iso is None:
        return None, data
    cpus = set(sys_iso or []) | set(cmd_iso or []) | set(cg_iso or [])
    return sorted(cpus), data


def check_isolated_cpus(h: Host) -> Item:
    iso, data = _isolation(h)
    online = h.online_cpus()
    data["online"] = online
    if iso is None:
        return Item("isolated_cpus", UNKNOWN, "/sys/devices/system/cpu/isolated and /proc/cmdline unreadable",
                    "check isolcpus= on the kernel command line", data)
    data["isolated"] = iso
    fix = ("reserve cores for the hot stages: isolcpus=managed_irq,domain,<cpus> nohz_full=<cpus> "
           "rcu_nocbs=<cpus> on the kernel command line (or a cgroup v2 isolated cpuset partition), "
           "then pin stages there (cpu = N in the topology); keep CPU 0 for the OS")
    if not iso:
        return Item("isolated_cpus", WARN, "none: the scheduler puts any task on the engine's cores", fix, data)
    if online and set(online) <= set(iso):
        return Item("isolated_cpus", WARN, f"all online CPUs ({fmt_cpus(iso)}) are isolated: "
                    f"nothing is left for the OS and interrupts", "leave at least one CPU (CPU 0) un-isolated",
                    data)
    return Item("isolated_cpus", OK, f"{fmt_cpus(iso)} isolated" +
                (f" of {fmt_cpus(online)}" if online else ""), data=data)


def check_nohz_full(h: Host) -> Item:
    text = h.read("/sys/devices/system/cpu/nohz_full")
    cmd = h.cmdline()
    cfg, _ = h.kernel_config()
    sys_cpus = parse_cpu_list(text)
    cmd_cpus = parse_cpu_list(cmd["nohz_full"]) if cmd and isinstance(cmd.get("nohz_full"), str) else None
    kconfig = None if cfg is None else cfg.get("CONFIG_NO_HZ_FULL", "n")
    data = {"sysfs": sys_cpus, "cmdline": cmd_cpus, "CONFIG_NO_HZ_FULL": kconfig}
    if text is None and cmd is None:
        return Item("nohz_full", UNKNOWN, "/sys/devices/system/cpu/nohz_full and /proc/cmdline unreadable",
                    "check nohz_full= on the kernel command line", data)
    cpus = sorted(set(sys_cpus or []) | set(cmd_cpus or []))
    data["cpus"] = cpus
    if not cpus:
        fix = "nohz_full=<isolated cpus> on the kernel command line stops the scheduler tick there"
        if kconfig == "n":
            fix += " (this kernel is built without CONFIG_NO_HZ_FULL: it needs another kernel)"
        hz = (cfg or {}).get("CONFIG_HZ", "HZ")
        return Item("nohz_full", WARN, f"none: every CPU takes the scheduler tick ({hz} interrupts a second)",
                    fix, data)
    iso, _ = _isolation(h)
    missing = sorted(set(iso or []) - set(cpus))
    if missing:
        return Item("nohz_full", WARN, f"{fmt_cpus(cpus)}; isolated CPUs {fmt_cpus(missing)} still take the tick",
                    "make nohz_full= cover every isolated CPU", data)
    return Item("nohz_full", OK, f"{fmt_cpus(cpus)} tickless when running one task", data=data)


def check_rcu_nocbs(h: Host) -> Item:
    cmd = h.cmdline()
    if cmd is None:
        return Item("rcu_nocbs", UNKNOWN, "/proc/cmdline unreadable", "check rcu_nocbs= on the kernel command line")
    nocbs = parse_cpu_list(cmd["rcu_nocbs"]) if isinstance(cmd.get("rcu_nocbs"), str) else None
    nohz = parse_cpu_list(cmd["nohz_full"]) if isinstance(cmd.get("nohz_full"), str) else None
    data = {"rcu_nocbs": nocbs, "nohz_full": nohz}
    if nocbs is None and cmd.get("rcu_nocbs") is True:
        return Item("rcu_nocbs", OK, "rcu_nocbs (all CPUs offloaded)", data=data)
    cpus = sorted(set(nocbs or []) | set(nohz or []))
    iso, _ = _isolation(h)
    fix = "rcu_nocbs=<isolated cpus> (nohz_full= implies it) moves RCU callbacks off the engine's cores"
    if not cpus:
        return Item("rcu_nocbs", WARN, "none: RCU callbacks run on every CPU, the engine's included", fix, data)
    missing = sorted(set(iso or []) - set(cpus))
    how = fmt_cpus(cpus) + (" (implied by nohz_full)" if not nocbs else "")
    if missing:
        return Item("rcu_nocbs", WARN, f"{how}; isolated CPUs {fmt_cpus(missing)} still run RCU callbacks",
                    fix, data)
    return Item("rcu_nocbs", OK, how, data=data)


def check_cpu_governor(h: Host) -> Item:
    files = h.glob("/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor")
    govs = {}
    for f in files:
        g = (h.read(f) or "").strip()
        cpu = int(re.search(r"/cpu(\d+)/", f).group(1))
        if g:
            govs[cpu] = g
    data = {"governors": {str(k): v for k, v in sorted(govs.items())}}
    if not govs:
        return Item("cpu_governor", UNKNOWN, "no cpufreq (usual in VMs: the host sets the clock)",
                    "on bare metal, load the cpufreq driver and use the performance governor", data)
    kinds = sorted(set(govs.values()))
    fix = ("cpupower frequency-set -g performance (or echo performance > "
           "/sys/devices/system/cpu/cpu*/cpufreq/scaling_governor); also cap C-states "
           "(intel_idle.max_cstate=1 / processor.max_cstate=1) for the fastest wake-up")
    if kinds == ["performance"]:
        return Item("cpu_governor", OK, f"performance on {len(govs)} CPUs", data=data)
    by = {k: fmt_cpus([c for c, g in govs.items() if g == k]) for k in kinds}
    return Item("cpu_governor", WARN, "; ".join(f"{k} on {v}" for k, v in by.items()) +
                ": the clock ramps after idle, the first ticks after a pause run slow", fix, data)


def check_smt(h: Host) -> Item:
    online = h.online_cpus() or []
    control = (h.read("/sys/devices/system/cpu/smt/control") or "").strip() or None
    siblings = {}
    for f in h.glob("/sys/devices/system/cpu/cpu[0-9]*/topology/thread_siblings_list"):
        cpu = int(re.search(r"/cpu(\d+)/", f).group(1))
        if online and cpu not in online:
            continue
        s = parse_cpu_list(h.read(f))
        if s:
            siblings[cpu] = s
    data = {"smt_control": control, "siblings": {str(k): v for k, v in sorted(siblings.items())}}
    if not siblings:
        if control in ("off", "forceoff", "notsupported", "notimplemented"):
            return Item("smt", OK, f"SMT {control}", data=data)
        return Item("smt", UNKNOWN, "thread_siblings_list unreadable", "check lscpu 'Thread(s) per core'", data)
    shared = {c: s for c, s in siblings.items() if len(s) > 1}
    if not shared:
        return Item("smt", OK, "one hardware thread per core" + (f" (smt/control {control})" if control else ""),
                    data=data)
    iso, _ = _isolation(h)
    iso = set(iso or [])
    pairs = sorted({tuple(s) for s in shared.values()})
    data["pairs"] = [list(p) for p in pairs]
    fix = ("isolate whole cores (every sibling of an engine CPU), or turn SMT off "
           "(nosmt on the command line, or echo off > /sys/devices/system/cpu/smt/control)")
    if iso:
        split = [p for p in pairs if iso & set(p) and not set(p) <= iso]
        if not split:
            return Item("smt", OK, f"SMT on; isolated CPUs are whole cores ({len(pairs)} sibling groups)", data=data)
        return Item("smt", WARN, "SMT on; isolated CPUs share a core with un-isolated siblings: "
                    + ", ".join(fmt_cpus(p) for p in split), fix, data)
    return Item("smt", WARN, f"SMT on ({', '.join(fmt_cpus(p) for p in pairs[:4])}"
                f"{' ...' if len(pairs) > 4 else ''}): a busy sibling slows an engine thread", fix, data)


def _selected(text: str | None) -> str | None:
    if not text:
        return None
    m = re.search(r"\[(\w[\w+-]*)\]", text)
    return m.group(1) if m else text.strip() or None


def check_thp(h: Host) -> Item:
    enabled = _selected(h.read("/sys/kernel/mm/transparent_hugepage/enabled"))
    defrag = _selected(h.read("/sys/kernel/mm/transparent_hugepage/defrag"))
    data = {"enabled": enabled, "defrag": defrag}
    if enabled is None:
        return Item("transparent_hugepages", UNKNOWN, "/sys/kernel/mm/transparent_hugepage/enabled unreadable",
                    "check it is madvise or never", data)
    fix = ("echo madvise > /sys/kernel/mm/transparent_hugepage/enabled and echo defer+madvise > "
           ".../defrag (or transparent_hugepage=madvise on the command line)")
    if enabled == "always":
        return Item("transparent_hugepages", WARN, "always: page faults may stall in compaction and "
                    "khugepaged rewrites memory under running threads", fix, data)
    if defrag == "always":
        return Item("transparent_hugepages", WARN, f"{enabled}, but defrag always: faults stall in "
                    f"direct compaction", fix, data)
    return Item("transparent_hugepages", OK, f"{enabled}" + (f" (defrag {defrag})" if defrag else ""), data=data)


def check_rt_throttling(h: Host) -> Item:
    rt = (h.read("/proc/sys/kernel/sched_rt_runtime_us") or "").strip()
    period = (h.read("/proc/sys/kernel/sched_rt_period_us") or "").strip()
    try:
        runtime_us = int(rt)
    except ValueError:
        return Item("rt_throttling", UNKNOWN, "/proc/sys/kernel/sched_rt_runtime_us unreadable",
                    "check sysctl kernel.sched_rt_runtime_us")
    try:
        period_us = int(period)
    except ValueError:
        period_us = 1_000_000
    data = {"sched_rt_runtime_us": runtime_us, "sched_rt_period_us": period_us}
    if runtime_us < 0:
        return Item("rt_throttling", OK, "disabled (sched_rt_runtime_us = -1): a SCHED_FIFO spinner "
                    "keeps its core; a runaway one can starve it", data=data)
    if runtime_us >= period_us:
        return Item("rt_throttling", OK, f"runtime {runtime_us} us >= period {period_us} us", data=data)
    stall_ms = (period_us - runtime_us) / 1000
    return Item("rt_throttling", WARN, f"SCHED_FIFO tasks get {runtime_us / period_us:.0%} of each "
                f"{period_us / 1000:g} ms: a busy-spinning FIFO stage stalls ~{stall_ms:g} ms every period "
                f"(no effect on SCHED_OTHER stages)",
                "sysctl kernel.sched_rt_runtime_us=-1, only with the FIFO stages on isolated cores "
                "(engine.sched_fifo); or keep SCHED_OTHER", data)


def check_memlock(h: Host) -> Item:
    lim = h.rlimit("Max locked memory", "RLIMIT_MEMLOCK")
    cap = h.has_cap(CAP_IPC_LOCK)
    if lim is None:
        return Item("memlock", UNKNOWN, "RLIMIT_MEMLOCK unknown (/proc/self/limits unreadable)",
                    "check ulimit -l", {"cap_ipc_lock": cap})
    soft, hard = lim
    data = {"soft": soft, "hard": hard, "cap_ipc_lock": cap}
    shown = "unlimited" if soft is None else _fmt_bytes(soft)
    if soft is None:
        return Item("memlock", OK, "unlimited: mlockall can lock the engine's memory", data=data)
    if cap:
        return Item("memlock", OK, f"{shown}, but CAP_IPC_LOCK exempts this process", data=data)
    if soft >= MEMLOCK_NEEDED:
        return Item("memlock", OK, f"{shown}", data=data)
    return Item("memlock", WARN, f"{shown}: mlockall (engine.mlockall) fails and stage memory may page-fault",
                "LimitMEMLOCK=infinity in the systemd unit, `ulimit -l unlimited`, or a memlock line in "
                "/etc/security/limits.conf; or grant CAP_IPC_LOCK", data)


def check_cap_ipc_lock(h: Host) -> Item:
    cap = h.has_cap(CAP_IPC_LOCK)
    if cap is None:
        return Item("cap_ipc_lock", UNKNOWN, "CapEff unreadable (/proc/self/status)", "check with capsh --print")
    if cap:
        return Item("cap_ipc_lock", OK, "present: mlockall ignores RLIMIT_MEMLOCK", data={"present": True})
    lim = h.rlimit("Max locked memory", "RLIMIT_MEMLOCK")
    if lim is not None and (lim[0] is None or lim[0] >= MEMLOCK_NEEDED):
        return Item("cap_ipc_lock", OK, "absent; not needed (RLIMIT_MEMLOCK is large enough)",
                    data={"present": False})
    return Item("cap_ipc_lock", WARN, "absent: mlockall is bounded by RLIMIT_MEMLOCK",
                "AmbientCapabilities=CAP_IPC_LOCK in the systemd unit, or raise RLIMIT_MEMLOCK",
                {"present": False})


def check_cap_sys_nice(h: Host) -> Item:
    cap = h.has_cap(CAP_SYS_NICE)
    if cap is None:
        return Item("cap_sys_nice", UNKNOWN, "CapEff unreadable (/proc/self/status)", "check with capsh --print")
    if cap:
        return Item("cap_sys_nice", OK, "present: SCHED_FIFO, negative nice and any affinity allowed",
                    data={"present": True})
    lim = h.rlimit("Max realtime priority", "RLIMIT_RTPRIO")
    if lim is not None and (lim[0] is None or lim[0] >= DEFAULT_FIFO_PRIORITY):
        return Item("cap_sys_nice", OK, "absent; SCHED_FIFO allowed through RLIMIT_RTPRIO", data={"present": False})
    return Item("cap_sys_nice", WARN, "absent: stages run SCHED_OTHER (engine.sched_fifo is refused)",
                "AmbientCapabilities=CAP_SYS_NICE in the systemd unit (or setcap cap_sys_nice+ep on the "
                "interpreter), or raise RLIMIT_RTPRIO", {"present": False})


def check_rtprio(h: Host) -> Item:
    lim = h.rlimit("Max realtime priority", "RLIMIT_RTPRIO")
    cap = h.has_cap(CAP_SYS_NICE)
    if lim is None:
        return Item("rtprio", UNKNOWN, "RLIMIT_RTPRIO unknown (/proc/self/limits unreadable)",
                    "check ulimit -r", {"cap_sys_nice": cap})
    soft, hard = lim
    data = {"soft": soft, "hard": hard, "cap_sys_nice": cap}
    if soft is None:
        return Item("rtprio", OK, "unlimited", data=data)
    if soft >= DEFAULT_FIFO_PRIORITY:
        return Item("rtprio", OK, f"{soft}: SCHED_FIFO up to priority {soft}", data=data)
    if cap:
        return Item("rtprio", OK, f"{soft}; not needed (CAP_SYS_NICE)", data=data)
    return Item("rtprio", WARN, f"{soft}: SCHED_FIFO at priority {DEFAULT_FIFO_PRIORITY} is refused",
                "LimitRTPRIO=99 in the systemd unit, or an rtprio line in /etc/security/limits.conf "
                "(or grant CAP_SYS_NICE)", data)


def check_dev_shm(h: Host) -> Item:
    path = h.path("/dev/shm")
    fstype = None
    mounts = h.read("/proc/mounts")
    for line in (mounts or "").splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] == "/dev/shm":
            fstype = parts[2]
    try:
        st = h.statvfs(path)
    except (OSError, ValueError) as e:
        if mounts is None and not h.real:
            return Item("dev_shm", UNKNOWN, f"cannot inspect /dev/shm ({getattr(e, 'strerror', None) or e})",
                        "check df /dev/shm", {"fstype": fstype})
        return Item("dev_shm", BAD, "missing or inaccessible: POSIX shared memory (the engine's rings) "
                    "cannot be created", "mount a tmpfs on /dev/shm (mount -t tmpfs -o size=1g tmpfs /dev/shm); "
                    "in a container, give it --shm-size", {"fstype": fstype})
    size = st.f_blocks * st.f_frsize
    free = st.f_bavail * st.f_frsize
    data = {"size_bytes": size, "free_bytes": free, "fstype": fstype}
    detail = f"{_fmt_bytes(free)} free of {_fmt_bytes(size)}" + (f" ({fstype})" if fstype else "")
    fix = "enlarge it: mount -o remount,size=2g /dev/shm (containers: --shm-size=2g)"
    if free < SHM_BAD_BYTES:
        return Item("dev_shm", BAD, detail + ": too little for an engine's segments", fix, data)
    if fstype and fstype != "tmpfs":
        return Item("dev_shm", WARN, detail + ": not a tmpfs, segments may be written back to disk",
                    "mount a tmpfs on /dev/shm", data)
    if free < SHM_WARN_BYTES:
        return Item("dev_shm", WARN, detail + ": room for one small engine only", fix, data)
    return Item("dev_shm", OK, detail, data=data)


_VIRTUAL_CLOCKS = ("kvm-clock", "hyperv_clocksource_tsc_page", "hyperv_clocksource_msr", "xen", "vmware")
_SLOW_CLOCKS = ("hpet", "acpi_pm", "jiffies", "refined-jiffies", "pit")


def check_clocksource(h: Host) -> Item:
    base = "/sys/devices/system/clocksource/clocksource0/"
    cur = (h.read(base + "current_clocksource") or "").strip()
    avail = (h.read(base + "available_clocksource") or "").split()
    data = {"current": cur or None, "available": avail}
    if not cur:
        return Item("clocksource", UNKNOWN, "current_clocksource unreadable",
                    "check /sys/devices/system/clocksource/clocksource0/current_clocksource", data)
    if cur in ("tsc", "arch_sys_counter"):
        return Item("clocksource", OK, f"{cur}: clock reads stay in user space (vDSO, ~20 ns)", data=data)
    if cur in _SLOW_CLOCKS:
        return Item("clocksource", BAD, f"{cur}: every clock read is a slow hardware access (~1 us or a "
                    f"syscall); timestamps dominate latency",
                    "use tsc: clocksource=tsc tsc=reliable on the command line (check dmesg for why the kernel "
                    "marked the TSC unstable)", data)
    if cur.startswith(_VIRTUAL_CLOCKS) or cur in _VIRTUAL_CLOCKS:
        virt = h.hypervisor()
        if "tsc" in avail:
            return Item("clocksource", WARN, f"{cur} (paravirtual) while tsc is available",
                        f"echo tsc > {base}current_clocksource (clocksource=tsc on the command line) "
                        f"if the host gives the guest a stable invariant TSC", data)
        return Item("clocksource", OK if virt else WARN,
                    f"{cur}: paravirtual clock, vDSO-capable; expected in a VM" if virt else
                    f"{cur} but no hypervisor detected", None if virt else "use tsc on bare metal", data)
    return Item("clocksource", WARN, f"{cur}: unusual clock source", "prefer tsc (x86) or arch_sys_counter (arm64)",
                data)


def check_virtualization(h: Host) -> Item:
    virt = h.hypervisor()
    steal = None
    stat = h.read("/proc/stat")
    if stat:
        for line in stat.splitlines():
            if line.startswith("cpu "):
                f = [int(x) for x in line.split()[1:]]
                if len(f) >= 8 and sum(f) > 0:
                    steal = round(100.0 * f[7] / sum(f), 3)
                break
    data = {"hypervisor": virt, "steal_pct_since_boot": steal}
    if virt is None:
        return Item("virtualization", UNKNOWN, "cannot tell (no x86 cpuinfo flags, no /sys/hypervisor)", data=data)
    if virt == "":
        return Item("virtualization", OK, "bare metal", data=data)
    return Item("virtualization", WARN, f"virtual machine ({virt})" +
                (f", steal {steal}% of CPU time since boot" if steal is not None else "") +
                ": vCPU preemption, VM exits and host interrupts add stalls the guest cannot remove",
                "run `pyrt bench jitter` to measure them; for production use bare metal or dedicated, "
                "pinned vCPUs (no overcommit), with the host's CPUs isolated too", data)


def check_cpus(h: Host) -> Item:
    online = h.online_cpus()
    allowed = None
    if h.real:
        try:
            allowed = sorted(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            allowed = None
    data = {"online": online, "allowed": allowed}
    if not online:
        return Item("cpus", UNKNOWN, "/sys/devices/system/cpu/online unreadable", data=data)
    usable = allowed if allowed is not None else online
    detail = f"{len(online)} online ({fmt_cpus(online)})" + (
        f", {len(allowed)} allowed to this process" if allowed is not None and allowed != online else "")
    if len(usable) >= 4:
        return Item("cpus", OK, detail, data=data)
    if len(usable) >= 2:
        return Item("cpus", WARN, detail + ": hot stages share one core with a yield hand-off, the other "
                    "is left to the OS (busy-spin would starve it)",
                    "for busy-spinning stages use a host with >= 4 cores (OS + one per hot process)", data)
    return Item("cpus", BAD, detail + ": stages and the OS share one CPU", "use a host with >= 4 cores", data)


CHECKS = (
    ("kernel_preempt", check_kernel_preempt),
    ("isolated_cpus", check_isolated_cpus),
    ("nohz_full", check_nohz_full),
    ("rcu_nocbs", check_rcu_nocbs),
    ("cpu_governor", check_cpu_governor),
    ("smt", check_smt),
    ("transparent_hugepages", check_thp),
    ("rt_throttling", check_rt_throttling),
    ("memlock", check_memlock),
    ("cap_ipc_lock", check_cap_ipc_lock),
    ("cap_sys_nice", check_cap_sys_nice),
    ("rtprio", check_rtprio),
    ("dev_shm", check_dev_shm),
    ("clocksource", check_clocksource),
    ("virtualization", check_virtualization),
    ("cpus", check_cpus),
)
assert tuple(n for n, _ in CHECKS) == tuple(n for n, _ in ITEMS)


def run_checks(root: str = "/", statvfs=None) -> list[Item]:
    """Every item, in order. Never raises: a failing probe gives ``unknown``."""
    h = Host(root, statvfs)
    items = []
    for name, fn in CHECKS:
        try:
            item = fn(h)
        except Exception as e:  # a probe must never take the report down
            item = Item(name, UNKNOWN, f"probe failed: {type(e).__name__}: {e}")
        if item.verdict not in VERDICTS:
            item = Item(name, UNKNOWN, f"probe returned verdict {item.verdict!r}")
        items.append(item)
    return items


def host_summary(root: str = "/") -> dict:
    h = Host(root)
    iso, _ = _isolation(h)
    return {"kernel_release": h.kernel_release(), "kernel_version": h.kernel_version(),
            "machine": platform.machine() if h.real else None, "online_cpus": h.online_cpus(),
            "isolated_cpus": iso or []}


def report(root: str = "/", statvfs=None) -> dict:
    items = run_checks(root, statvfs)
    counts = {v: sum(1 for i in items if i.verdict == v) for v in VERDICTS}
    return {"host": host_summary(root), "root": root, "items": [i.as_dict() for i in items], "counts": counts}


def format_report(rep: dict) -> str:
    host = rep["host"]
    cpus = host.get("online_cpus")
    lines = [f"pyrt doctor: kernel {host.get('kernel_release') or '?'} "
             f"({host.get('kernel_version') or '?'}), {len(cpus) if cpus else '?'} CPUs", ""]
    tw = max(len(i["title"]) for i in rep["items"])
    for i in rep["items"]:
        lines.append(f"  {i['title']:<{tw}}  {i['verdict'].upper():<7}  {i['detail']}")
    fixes = [i for i in rep["items"] if i["verdict"] != OK and i["fix"]]
    if fixes:
        lines.append("")
        lines.append("fixes:")
        for i in fixes:
            lines.append(f"  {i['title']}: {i['fix']}")
    c = rep["counts"]
    lines.append("")
    lines.append(f"{c[OK]} ok, {c[WARN]} warn, {c[BAD]} bad, {c[UNKNOWN]} unknown")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="pyrt doctor", description="How fit this host is for low "
                                 "latency: each item with a verdict (ok/warn/bad/unknown) and a fix.")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--root", default="/", help=argparse.SUPPRESS)  # tests / inspecting a mounted image
    args = ap.parse_args(argv)
    rep = report(args.root)
    if args.json:
        print(json.dumps(rep))
    else:
        print(format_report(rep))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
