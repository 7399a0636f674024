"""``pyrt doctor``: verdicts from fake /proc + /sys trees, and a real-host run that never crashes.

Each fake tree lives in ``tmp_path`` and is passed as ``root``; only the files a case needs
exist, so every other probe must fall back to ``unknown`` without raising.
"""
from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import pytest

from tools import doctor

ROOT = Path(__file__).resolve().parents[2]
ITEM_NAMES = [n for n, _ in doctor.ITEMS]
StatVfs = namedtuple("StatVfs", "f_blocks f_frsize f_bavail")


def tree(root: Path, files: dict) -> str:
    for rel, content in files.items():
        p = root / rel.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content)
    return str(root)


def verdicts(root: str, statvfs=None) -> dict:
    return {i.name: i for i in doctor.run_checks(root, statvfs)}


def limits(memlock="8388608", rtprio="0") -> str:
    return ("Limit                     Soft Limit           Hard Limit           Units     \n"
            "Max cpu time              unlimited            unlimited            seconds   \n"
            f"Max locked memory         {memlock:<20} {memlock:<20} bytes     \n"
            f"Max realtime priority     {rtprio:<20} {rtprio:<20}\n")


def status(capeff: int) -> str:
    return f"Name:\tpython\nCapInh:\t0000000000000000\nCapEff:\t{capeff:016x}\n"


# ---------------------------------------------------------------------------------------

def test_empty_tree_gives_unknown_everywhere(tmp_path):
    items = doctor.run_checks(str(tmp_path))
    assert [i.name for i in items] == ITEM_NAMES
    assert {i.name: i.verdict for i in items} == {n: doctor.UNKNOWN for n in ITEM_NAMES}


def test_garbage_files_never_raise(tmp_path):
    junk = "\x00garbage [[ ( -1-x ,,\n"
    files = {p: junk for p in [
        "/proc/sys/kernel/version", "/proc/sys/kernel/osrelease", "/proc/cmdline", "/proc/self/status",
        "/proc/self/limits", "/proc/stat", "/proc/cpuinfo", "/proc/mounts", "/proc/sys/kernel/sched_rt_runtime_us",
        "/sys/devices/system/cpu/online", "/sys/devices/system/cpu/isolated", "/sys/devices/system/cpu/nohz_full",
        "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor",
        "/sys/devices/system/cpu/cpu0/topology/thread_siblings_list",
        "/sys/kernel/mm/transparent_hugepage/enabled",
        "/sys/devices/system/clocksource/clocksource0/current_clocksource"]}
    files["/proc/config.gz"] = b"not gzip"
    root = tree(tmp_path, files)
    items = doctor.run_checks(root)
    assert [i.name for i in items] == ITEM_NAMES
    assert all(i.verdict in doctor.VERDICTS for i in items)
    assert all("probe failed" not in i.detail for i in items), [i.detail for i in items]


@pytest.mark.parametrize("files", [
    {"/proc/sys/kernel/version": "#1 SMP PREEMPT_RT Tue Jan 7 2025"},
    {"/sys/kernel/realtime": "1\n", "/proc/sys/kernel/version": "#1 SMP PREEMPT_DYNAMIC"},
    {"/proc/sys/kernel/osrelease": "6.12.0-rt\n", "/boot/config-6.12.0-rt": "CONFIG_PREEMPT_RT=y\n",
     "/proc/sys/kernel/version": "#1 SMP"},
    {"/proc/config.gz": gzip.compress(b"CONFIG_PREEMPT_RT=y\n")},
], ids=["uname", "sys-kernel-realtime", "boot-config", "proc-config-gz"])
def test_preempt_rt_detected(tmp_path, files):
    item = verdicts(tree(tmp_path, files))["kernel_preempt"]
    assert item.verdict == doctor.OK and "PREEMPT_RT" in item.detail


def test_non_rt_kernels_warn(tmp_path):
    root = tree(tmp_path / "dyn", {"/proc/sys/kernel/version": "#1 SMP PREEMPT_DYNAMIC @0",
                                   "/proc/config.gz": gzip.compress(b"CONFIG_PREEMPT_DYNAMIC=y\n"
                                                                    b"CONFIG_PREEMPT_NONE=y\n"
                                                                    b"# CONFIG_PREEMPT_RT is not set\n")})
    item = verdicts(root)["kernel_preempt"]
    assert item.verdict == doctor.WARN
    assert item.data["dynamic"] and item.data["model"] == "none" and "preempt=full" in item.fix
    root = tree(tmp_path / "full", {"/proc/sys/kernel/version": "#1 SMP PREEMPT Mon"})
    item = verdicts(root)["kernel_preempt"]
    assert item.verdict == doctor.WARN and item.data["model"] == "full"


ISOLATED_HOST = {
    "/sys/devices/system/cpu/online": "0-3\n",
    "/sys/devices/system/cpu/isolated": "2-3\n",
    "/sys/devices/system/cpu/nohz_full": "2-3\n",
    "/proc/cmdline": "BOOT_IMAGE=/vmlinuz ro isolcpus=managed_irq,domain,2-3 nohz_full=2-3 rcu_nocbs=2-3\n",
}


def test_isolated_host_is_ok(tmp_path):
    v = verdicts(tree(tmp_path, ISOLATED_HOST))
    assert v["isolated_cpus"].verdict == doctor.OK and v["isolated_cpus"].data["isolated"] == [2, 3]
    assert v["nohz_full"].verdict == doctor.OK and v["nohz_full"].data["cpus"] == [2, 3]
    assert v["rcu_nocbs"].verdict == doctor.OK


def test_no_isolation_warns(tmp_path):
    v = verdicts(tree(tmp_path, {"/sys/devices/system/cpu/online": "0-1\n",
                                 "/sys/devices/system/cpu/isolated": "\n",
                                 "/proc/cmdline": "console=ttyS0 quiet\n"}))
    for name in ("isolated_cpus", "nohz_full", "rcu_nocbs"):
        assert v[name].verdict == doctor.WARN, name
        assert v[name].fix


def test_partial_isolation_warns(tmp_path):
    # every CPU isolated: nothing left for the OS
    v = verdicts(tree(tmp_path / "all", {"/sys/devices/system/cpu/online": "0-1\n",
                                         "/sys/devices/system/cpu/isolated": "0-1\n",
                                         "/proc/cmdline": "isolcpus=0-1\n"}))
    assert v["isolated_cpus"].verdict == doctor.WARN
    # nohz_full reads "(null)" when unset; isolated CPUs not tickless, rcu_nocbs implied by nohz_full only
    v = verdicts(tree(tmp_path / "null", {"/sys/devices/system/cpu/online": "0-3\n",
                                          "/sys/devices/system/cpu/isolated": "2-3\n",
                                          "/sys/devices/system/cpu/nohz_full": "(null)\n",
                                          "/proc/cmdline": "isolcpus=2-3\n"}))
    assert v["isolated_cpus"].verdict == doctor.OK
    assert v["nohz_full"].verdict == doctor.WARN
    v = verdicts(tree(tmp_path / "implied", {"/sys/devices/system/cpu/isolated": "3\n",
                                             "/proc/cmdline": "isolcpus=3 nohz_full=3\n"}))
    assert v["rcu_nocbs"].verdict == doctor.OK and "implied" in v["rcu_nocbs"].detail
    v = verdicts(tree(tmp_path / "short", {"/sys/devices/system/cpu/isolated": "2-3\n",
                                           "/proc/cmdline": "isolcpus=2-3 nohz_full=3\n"}))
    assert v["nohz_full"].verdict == doctor.WARN and "2" in v["nohz_full"].detail


@pytest.mark.parametrize("govs,expected", [
    ({}, doctor.UNKNOWN),
    ({0: "performance", 1: "performance"}, doctor.OK),
    ({0: "performance", 1: "powersave"}, doctor.WARN),
    ({0: "schedutil"}, doctor.WARN),
])
def test_cpu_governor(tmp_path, govs, expected):
    files = {f"/sys/devices/system/cpu/cpu{c}/cpufreq/scaling_governor": g + "\n" for c, g in govs.items()}
    files["/sys/devices/system/cpu/online"] = "0-1\n"
    assert verdicts(tree(tmp_path, files))["cpu_governor"].verdict == expected


@pytest.mark.parametrize("siblings,isolated,expected", [
    (["0", "1", "2", "3"], "", doctor.OK),          # no SMT
    (["0,2", "1,3", "0,2", "1,3"], "", doctor.WARN),  # SMT, nothing isolated
    (["0,2", "1,3", "0,2", "1,3"], "1,3", doctor.OK),  # isolated CPUs are a whole core
    (["0,2", "1,3", "0,2", "1,3"], "2-3", doctor.WARN),  # isolated CPUs share cores with the OS
    (["0-1", "0-1"], "", doctor.WARN),
])
def test_smt(tmp_path, siblings, isolated, expected):
    files = {f"/sys/devices/system/cpu/cpu{c}/topology/thread_siblings_list": s + "\n"
             for c, s in enumerate(siblings)}
    files["/sys/devices/system/cpu/online"] = f"0-{len(siblings) - 1}\n"
    files["/sys/devices/system/cpu/isolated"] = isolated + "\n"
    assert verdicts(tree(tmp_path, files))["smt"].verdict == expected


@pytest.mark.parametrize("enabled,defrag,expected", [
    ("[always] madvise never", "always defer defer+madvise [madvise] never", doctor.WARN),
    ("always [madvise] never", "always defer defer+madvise [madvise] never", doctor.OK),
    ("always madvise [never]", None, doctor.OK),
    ("always madvise [never]", "[always] defer defer+madvise madvise never", doctor.WARN),
])
def test_transparent_hugepages(tmp_path, enabled, defrag, expected):
    files = {"/sys/kernel/mm/transparent_hugepage/enabled": enabled + "\n"}
    if defrag:
        files["/sys/kernel/mm/transparent_hugepage/defrag"] = defrag + "\n"
    assert verdicts(tree(tmp_path, files))["transparent_hugepages"].verdict == expected


@pytest.mark.parametrize("runtime,expected", [("950000", doctor.WARN), ("-1", doctor.OK),
                                              ("1000000", doctor.OK)])
def test_rt_throttling(tmp_path, runtime, expected):
    v = verdicts(tree(tmp_path, {"/proc/sys/kernel/sched_rt_runtime_us": runtime + "\n",
                                 "/proc/sys/kernel/sched_rt_period_us": "1000000\n"}))
    assert v["rt_throttling"].verdict == expected
    if expected == doctor.WARN:
        assert "50 ms" in v["rt_throttling"].detail and "sched_rt_runtime_us" in v["rt_throttling"].fix


def test_unprivileged_process_warns_on_memlock_and_realtime(tmp_path):
    v = verdicts(tree(tmp_path, {"/proc/self/limits": limits("8388608", "0"),
                                 "/proc/self/status": status(0)}))
    for name in ("memlock", "cap_ipc_lock", "cap_sys_nice", "rtprio"):
        assert v[name].verdict == doctor.WARN, (name, v[name].detail)
        assert v[name].fix
    assert v["memlock"].data["soft"] == 8388608 and v["memlock"].data["cap_ipc_lock"] is False


def test_capabilities_make_limits_irrelevant(tmp_path):
    caps = (1 << doctor.CAP_IPC_LOCK) | (1 << doctor.CAP_SYS_NICE)
    v = verdicts(tree(tmp_path, {"/proc/self/limits": limits("8388608", "0"),
                                 "/proc/self/status": status(caps)}))
    for name in ("memlock", "cap_ipc_lock", "cap_sys_nice", "rtprio"):
        assert v[name].verdict == doctor.OK, (name, v[name].detail)


def test_limits_make_capabilities_irrelevant(tmp_path):
    v = verdicts(tree(tmp_path, {"/proc/self/limits": limits("unlimited", "99"),
                                 "/proc/self/status": status(0)}))
    for name in ("memlock", "cap_ipc_lock", "cap_sys_nice", "rtprio"):
        assert v[name].verdict == doctor.OK, (name, v[name].detail)
    assert v["memlock"].data["soft"] is None


@pytest.mark.parametrize("free_mib,fstype,expected", [
    (8192, "tmpfs", doctor.OK), (128, "tmpfs", doctor.WARN), (16, "tmpfs", doctor.BAD),
    (8192, "ext4", doctor.WARN),
])
def test_dev_shm(tmp_path, free_mib, fstype, expected):
    root = tree(tmp_path, {"/dev/shm/.keep": "", "/proc/mounts": f"{fstype} /dev/shm {fstype} rw 0 0\n"})
    seen = []

    def fake_statvfs(path):
        seen.append(path)
        return StatVfs(f_blocks=(16 << 30) // 4096, f_frsize=4096, f_bavail=(free_mib << 20) // 4096)

    item = verdicts(root, fake_statvfs)["dev_shm"]
    assert item.verdict == expected, item.detail
    assert seen == [os.path.join(root, "dev/shm")]
    assert item.data["free_bytes"] == free_mib << 20


def test_dev_shm_missing_is_bad_when_host_is_known(tmp_path):
    root = tree(tmp_path, {"/proc/mounts": "proc /proc proc rw 0 0\n"})
    assert verdicts(root)["dev_shm"].verdict == doctor.BAD


@pytest.mark.parametrize("current,available,cpuinfo_flags,expected", [
    ("tsc", "tsc hpet acpi_pm", "fpu tsc", doctor.OK),
    ("kvm-clock", "kvm-clock", "fpu tsc hypervisor", doctor.OK),
    ("kvm-clock", "tsc kvm-clock", "fpu tsc hypervisor", doctor.WARN),
    ("hpet", "hpet acpi_pm", "fpu", doctor.BAD),
    ("acpi_pm", "acpi_pm", "fpu", doctor.BAD),
    ("arch_sys_counter", "arch_sys_counter", None, doctor.OK),
])
def test_clocksource(tmp_path, current, available, cpuinfo_flags, expected):
    base = "/sys/devices/system/clocksource/clocksource0/"
    files = {base + "current_clocksource": current + "\n", base + "available_clocksource": available + " \n"}
    if cpuinfo_flags is not None:
        files["/proc/cpuinfo"] = f"processor\t: 0\nflags\t\t: {cpuinfo_flags}\n"
    item = verdicts(tree(tmp_path, files))["clocksource"]
    assert item.verdict == expected, item.detail
    assert (item.fix is None) == (expected == doctor.OK)


def test_virtualization_and_cpus(tmp_path):
    v = verdicts(tree(tmp_path / "vm", {"/proc/cpuinfo": "flags\t\t: fpu tsc hypervisor\n",
                                        "/proc/stat": "cpu  100 0 100 700 0 0 0 100 0 0\n",
                                        "/sys/devices/system/cpu/online": "0-1\n"}))
    assert v["virtualization"].verdict == doctor.WARN and v["virtualization"].data["steal_pct_since_boot"] == 10.0
    assert v["cpus"].verdict == doctor.WARN
    v = verdicts(tree(tmp_path / "metal", {"/proc/cpuinfo": "flags\t\t: fpu tsc\n",
                                           "/sys/devices/system/cpu/online": "0-7\n"}))
    assert v["virtualization"].verdict == doctor.OK and v["cpus"].verdict == doctor.OK


def test_parse_cpu_list():
    assert doctor.parse_cpu_list("0-2,5\n") == [0, 1, 2, 5]
    assert doctor.parse_cpu_list("(null)\n") == []
    assert doctor.parse_cpu_list("nohz,domain,2-3") == [2, 3]
    assert doctor.parse_cpu_list("0-7/2") == [0, 2, 4, 6]
    assert doctor.parse_cpu_list("x-y") is None
    assert doctor.fmt_cpus([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"


def _run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "pyrt_shm.cli", "doctor", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_real_host_json_lists_every_item():
    p = _run("--json")
    assert p.returncode == 0, p.stderr
    rep = json.loads(p.stdout)
    assert [i["name"] for i in rep["items"]] == ITEM_NAMES
    for i in rep["items"]:
        assert i["verdict"] in doctor.VERDICTS and i["detail"], i
        assert "probe failed" not in i["detail"], i
        assert i["verdict"] == doctor.OK or i["fix"], i
    assert sum(rep["counts"].values()) == len(ITEM_NAMES)
    assert rep["host"]["online_cpus"]


def test_real_host_table_and_bad_args():
    p = _run()
    assert p.returncode == 0, p.stderr
    for _, title in doctor.ITEMS:
        assert title in p.stdout
    assert _run("--bogus").returncode == 2


def test_doctor_imports_no_numba():
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    code = "import sys, tools.doctor, tools.hist; print('numba' in sys.modules)"
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "False"
