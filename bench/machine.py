"""Facts about the machine and tools a run used, and installing wrk/nginx from apt.

Every result file records these so that two runs can be compared honestly: a ratio is
only meaningful between runs on the same kind of machine with the same tool versions.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

APT_TIMEOUT_S = 300.0
REPO_ROOT = Path(__file__).resolve().parent.parent


def _out(cmd: list[str], timeout_s: float = 10.0) -> str:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.SubprocessError):
        return ""
    return (p.stdout + p.stderr).strip()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def mem_total_mib() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


def loadavg() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        return []


def wrk_version() -> str | None:
    if not shutil.which("wrk"):
        return None
    m = re.search(r"wrk\s+(\S+)", _out(["wrk", "-v"]))
    return m.group(1) if m else "unknown"


def nginx_version() -> str | None:
    if not shutil.which("nginx"):
        return None
    m = re.search(r"nginx/(\S+)", _out(["nginx", "-v"]))
    return m.group(1) if m else "unknown"


def node_version() -> str | None:
    return _out(["node", "-v"]) or None if shutil.which("node") else None


def module_version(name: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return None


def git_info() -> dict:
    commit = _out(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"])
    status = _out(["git", "-C", str(REPO_ROOT), "status", "--porcelain"])
    out = {"commit": commit if re.fullmatch(r"[0-9a-f]{40}", commit) else None,
           "dirty": bool(status)}
    # A run from an exported snapshot (no .git) can say what it was exported from.
    source = os.environ.get("TOKENWAY_BENCH_SOURCE")
    if source:
        out["source"] = source
        if out["commit"] is None:
            out["dirty"] = False
    return out


def describe() -> dict:
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model(),
        "mem_total_mib": mem_total_mib(),
        "kernel": platform.release(),
        "os": _os_release(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
    }


def versions() -> dict:
    return {
        "wrk": wrk_version(),
        "nginx": nginx_version(),
        "uvloop": module_version("uvloop"),
        "httptools": module_version("httptools"),
        "orjson": module_version("orjson"),
        "node": node_version(),
    }


def _os_release() -> str | None:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return None


def apt_install(package: str, say) -> str | None:
    """Install a Debian package when root with apt; return an error or None."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "not root or no apt-get"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for attempt in ("install", "update+install"):
        say(f"apt-get install -y {package}" + (" (after apt-get update)" if attempt != "install"
                                               else ""))
        try:
            if attempt != "install":
                subprocess.run(["apt-get", "update", "-q"], capture_output=True,
                               timeout=APT_TIMEOUT_S, env=env)
            p = subprocess.run(["apt-get", "install", "-y", "-q", package], capture_output=True,
                               text=True, timeout=APT_TIMEOUT_S, env=env)
        except (OSError, subprocess.SubprocessError) as exc:
            return str(exc)
        if p.returncode == 0:
            return None
    return (p.stderr or p.stdout).strip()[-200:]


def ensure_tool(binary: str, package: str, allow_install: bool, say) -> str | None:
    """None when `binary` is on PATH (installing it if allowed), else the reason."""
    if shutil.which(binary):
        return None
    if not allow_install:
        return f"{binary} not installed (--no-install)"
    err = apt_install(package, say)
    if shutil.which(binary):
        return None
    return f"{binary} not installed and apt-get failed: {err}"
