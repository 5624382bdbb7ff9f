"""A capability replica lowers its CPU priority (serving/deployment.py `lower_cpu_priority`), so that
Ray's proxy and the ingress run first when inference takes every core. Checked in a child process:
nice values only go up, and the test process must keep its own."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

CHILD = """
import json, os, sys, threading
os.setpriority(os.PRIO_PROCESS, 0, int(sys.argv[1]))  # where the process starts (threads inherit it)
from serving.deployment import lower_cpu_priority  # noqa: E402 - its imports start threads too
started = threading.Event()
stop = threading.Event()
def before():  # a thread that runs before the call (Ray's own threads in a replica)
    started.set(); stop.wait()
early = threading.Thread(target=before); early.start(); started.wait()
lower_cpu_priority(int(sys.argv[2]))
later = []
def after():  # a thread started afterwards (a model's thread pool)
    later.append(os.getpriority(os.PRIO_PROCESS, 0))
t = threading.Thread(target=after); t.start(); t.join()
values = [os.getpriority(os.PRIO_PROCESS, int(tid)) for tid in os.listdir("/proc/self/task")]
stop.set(); early.join()
print(json.dumps({"threads": values, "later": later[0]}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")
@pytest.mark.parametrize(("start", "asked", "expected"), [
    (0, 10, 10),  # raised on every thread, and inherited by threads started later
    (0, 0, 0),  # 0: left as it is
    (15, 10, 15),  # never lowered: a hub started under `nice -n 15` keeps it
])
def test_the_replica_renices_every_thread_and_never_lowers_it(start, asked, expected):
    out = subprocess.run([sys.executable, "-c", CHILD, str(start), str(asked)], capture_output=True, text=True,
                         check=True, timeout=60)
    seen = json.loads(out.stdout)
    assert set(seen["threads"]) == {expected}
    assert seen["later"] == expected
