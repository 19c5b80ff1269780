"""A real ``gatewayd`` process for the tests that need one: started from this checkout
in a folder of its own, with no ``TOKENWAY_*`` variable from the environment, its
stderr audited (tests/log_audit.py), its address read from its "listening on" line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.log_audit import AUDIT, AuditedPopen

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 30.0


def start(module: str, args: list[str], cwd: Path, **popen: Any) -> tuple[Any, str, int]:
    """``python -m module *args`` (stderr piped, text mode) once it listens: the
    process, its host and port. Raises AssertionError if it exits or stays silent."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENWAY_")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    p = AuditedPopen([sys.executable, "-m", module, *args], stderr=subprocess.PIPE,
                     text=True, env=env, cwd=cwd, **popen)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        line = p.stderr.readline()
        AUDIT.text("gatewayd stderr", line)
        m = re.search(r"listening on http://([\d.]+):(\d+)", line)
        if m:
            return p, m.group(1), int(m.group(2))
        if not line and p.poll() is not None:
            break
    p.kill()
    raise AssertionError("gatewayd did not start")
