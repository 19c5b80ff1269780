"""The gateway's own threads, named for the operating system too.

CPython before 3.14 gives ``threading`` names to Python only, so ``top -H``,
``/proc/PID/task/TID/comm`` and the bench see every thread as the process
("python"). Each of our threads writes its name to its own ``comm`` file
(proc(5), ``/proc/[pid]/task/[tid]/comm``: at most 15 bytes), with no extra
import. Not Linux, or no /proc: nothing happens.
"""

from __future__ import annotations

import threading

COMM_MAX_BYTES = 15


def name_os_thread(name: str) -> None:
    """Give the calling thread ``name`` (cut to 15 bytes) as its OS thread name."""
    try:
        with open(f"/proc/self/task/{threading.get_native_id()}/comm", "wb") as f:
            f.write(name.encode("ascii", "replace")[:COMM_MAX_BYTES])
    except OSError:
        pass
