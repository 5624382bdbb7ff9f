"""How many CPU cores this process may run on: its affinity mask where the OS has one (a container or
`taskset` can allow fewer than the machine has), else the machine's count. No torch import."""

from __future__ import annotations

import os


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
