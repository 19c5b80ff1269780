"""CPU time, RSS and CPU affinity of process trees (and CPU time of single threads),
read from /proc (Linux only).

CPU time of a tree is the sum over the root and its live descendants of
utime + stime + cutime + cstime (/proc/PID/stat fields 14-17, proc(5)). A child that
exits and is reaped moves its time into its parent's cutime/cstime, so the sum stays
continuous across a sample and nothing is counted twice. Resolution is one clock tick
(normally 10 ms), which is why every load run lasts at least a second or two.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass

CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def _stat_fields(pid: int) -> list[str] | None:
    raw = _read(f"/proc/{pid}/stat")
    if raw is None:
        return None
    # comm (field 2) may hold spaces and parentheses: split after the last ')'.
    rest = raw[raw.rfind(")") + 2:].split()
    return rest  # rest[0] is field 3 (state)


def ppid_of(pid: int) -> int | None:
    f = _stat_fields(pid)
    return int(f[1]) if f else None


def children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        f = _stat_fields(int(name))
        if f:
            kids.setdefault(int(f[1]), []).append(int(name))
    return kids


def tree(pid: int) -> list[int]:
    """`pid` and all its live descendants (empty if `pid` is gone)."""
    if not os.path.exists(f"/proc/{pid}"):
        return []
    kids = children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, ()))
    return out


def cpu_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        f = _stat_fields(pid)
        if f:
            # fields 14-17 are rest[11:15]
            total += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    return total


def rusage_cpu_s(who: int) -> float:
    """User + system CPU seconds of this process (RUSAGE_SELF) or of its reaped
    children (RUSAGE_CHILDREN: the load drivers once they exited)."""
    ru = resource.getrusage(who)
    return ru.ru_utime + ru.ru_stime


def cpu_seconds_tree(pid: int) -> float:
    return cpu_ticks(tree(pid)) / CLK_TCK


def rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        raw = _read(f"/proc/{pid}/status")
        if not raw:
            continue
        for line in raw.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
                break
    return total


def rss_kib_tree(pid: int) -> int:
    return rss_kib(tree(pid))


def set_affinity_tree(pid: int, cpus: set[int] | None) -> None:
    """Pin every thread of `pid` and its descendants to `cpus` (None: no-op)."""
    if not cpus:
        return
    for p in tree(pid):
        try:
            tids = [int(t) for t in os.listdir(f"/proc/{p}/task")]
        except OSError:
            continue
        for tid in tids:
            try:
                os.sched_setaffinity(tid, cpus)
            except OSError:
                pass


@dataclass(slots=True)
class MachineCpu:
    """Jiffies from the first line of /proc/stat."""

    busy: int
    total: int
    steal: int

    @classmethod
    def read(cls) -> MachineCpu:
        raw = _read("/proc/stat") or "cpu 0 0 0 0 0 0 0 0"
        vals = [int(v) for v in raw.splitlines()[0].split()[1:]]
        vals += [0] * (8 - len(vals))
        user, nice, system, idle, iowait, irq, softirq, steal = vals[:8]
        # Steal is time the hypervisor gave to other guests: not ours, not idle.
        busy = user + nice + system + irq + softirq
        return cls(busy, busy + idle + iowait + steal, steal)


def online_cpus() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def online_cpus_all() -> list[int]:
    """Every online CPU of the machine, whatever this process's own affinity is."""
    raw = _read("/sys/devices/system/cpu/online")
    out: list[int] = []
    if raw:
        for item in raw.strip().split(","):
            if "-" in item:
                a, b = item.split("-", 1)
                out.extend(range(int(a), int(b) + 1))
            elif item:
                out.append(int(item))
    return out or list(range(os.cpu_count() or 1))


def fd_count(pids: list[int]) -> int:
    """Open file descriptors of these processes (sockets included)."""
    total = 0
    for pid in pids:
        try:
            total += len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            pass
    return total


def major_faults(pids: list[int]) -> int:
    """Major page faults (pages read back from disk) of these processes, field 12 of
    /proc/PID/stat. They rise when the machine reclaims memory under pressure, and then
    CPU figures are inflated by fault handling: such cells are flagged."""
    total = 0
    for pid in pids:
        f = _stat_fields(pid)
        if f:
            total += int(f[9])  # field 12 is rest[9]
    return total


def memory_pressure_full_us() -> int | None:
    """Cumulative microseconds all non-idle tasks were stalled on memory (PSI
    /proc/pressure/memory "full total"), or None without PSI."""
    raw = _read("/proc/pressure/memory")
    if not raw:
        return None
    for line in raw.splitlines():
        if line.startswith("full"):
            for item in line.split():
                if item.startswith("total="):
                    return int(item[6:])
    return None


def thread_ids(pid: int) -> list[int]:
    try:
        return sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return []


def thread_comm(pid: int, tid: int) -> str | None:
    raw = _read(f"/proc/{pid}/task/{tid}/comm")
    return raw.strip() if raw is not None else None


# Linux keeps 15 bytes of a thread's name (TASK_COMM_LEN 16, with the NUL).
COMM_LEN = 15


def find_thread(pid: int, name: str) -> tuple[int | None, str]:
    """The thread of `pid` that its program calls `name`, and how it was found.

    CPython before 3.14 does not give the OS its `threading` names, so a thread the
    program did not name itself keeps the process's comm. A thread whose comm is `name`
    (cut to 15 bytes) wins; failing that, when exactly one thread besides the main one
    still carries the process's comm, that is the one (threads of C libraries name
    themselves: uvloop's getaddrinfo pool is `libuv-worker`). Otherwise (None, why)."""
    tids = thread_ids(pid)
    if not tids:
        return None, f"no /proc/{pid}/task"
    want = name[:COMM_LEN]
    for tid in tids:
        if thread_comm(pid, tid) == want:
            return tid, f"comm {want!r}"
    main = thread_comm(pid, pid)
    rest = [t for t in tids if t != pid and thread_comm(pid, t) == main]
    if len(rest) == 1:
        return rest[0], f"the only thread besides the main one still named {main!r}"
    return None, (f"{len(rest)} threads besides the main one are named {main!r}: cannot "
                  f"tell which is {name!r}")


def thread_cpu_ns(pid: int, tid: int) -> int | None:
    """CPU time of one thread in ns: /proc/PID/task/TID/schedstat (time on CPU, ns
    resolution) where the kernel has it, else utime + stime of its stat (ticks)."""
    raw = _read(f"/proc/{pid}/task/{tid}/schedstat")
    if raw:
        try:
            return int(raw.split()[0])
        except (ValueError, IndexError):
            pass
    raw = _read(f"/proc/{pid}/task/{tid}/stat")
    if raw is None:
        return None
    rest = raw[raw.rfind(")") + 2:].split()
    return (int(rest[11]) + int(rest[12])) * 1_000_000_000 // CLK_TCK
