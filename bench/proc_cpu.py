"""Where the CPU goes while the hub serves: CPU seconds per process role over a window (issue 11).

Reads every process's user + system time (psutil, i.e. /proc/<pid>/stat) before and after a load
level, groups the processes by role (Ray's HTTP proxy, the ingress replica, each capability
replica, the load generator itself, raylet, gcs, ...) and divides by the requests answered, so a
table says how many ms of CPU each role spends per request. The machine's busy time (/proc/stat)
is measured over the same window; "other" is whatever ran on the box that is not the hub.

    before = snapshot(); ...run the level...; after = snapshot()
    print_split({"see c=32": (cpu_by_role(before, after), ok_requests)})
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import psutil

# (substring of the command line, role), first match wins. Ray workers retitle themselves
# "ray::ServeReplica:<app>:<deployment>", "ray::ProxyActor", ...
_ROLES = (
    ("ServeReplica:hub:ingress", "ingress replica"),
    ("ServeReplica:hub:capability-", "replica "),  # + capability name
    ("ServeReplica:hub:", "replica "),  # streams and other deployments
    ("ProxyActor", "Ray HTTP proxy"),
    ("ServeController", "Serve controller"),
    ("raylet", "raylet"),
    ("gcs_server", "gcs_server"),
    ("ray::IDLE", "Ray idle workers"),
    ("dashboard", "Ray dashboard/agents"),
    ("runtime_env", "Ray dashboard/agents"),
    ("log_monitor", "Ray dashboard/agents"),
    ("ray/_private", "Ray dashboard/agents"),
    ("cli.main serve", "hub serve driver"),
    ("py-spy", "py-spy (profiler)"),
)
LOAD_GENERATOR = "load generator (this process)"
OTHER = "other: "  # + the process name: whatever else ran on the box meanwhile


@dataclass(frozen=True)
class Snapshot:
    taken_s: float
    cpu_s: dict[int, tuple[str, float]]  # pid -> (role, user + system seconds so far)
    machine_busy_s: float  # all CPUs, non-idle time since boot


def role_of(cmdline: str, pid: int, self_pid: int, name: str = "") -> str:
    if pid == self_pid:
        return LOAD_GENERATOR
    for needle, role in _ROLES:
        if needle in cmdline:
            if role == "replica ":
                return role + cmdline.split(needle, 1)[1].split()[0]
            return role
    return OTHER + (name or cmdline.split(" ", 1)[0].rsplit("/", 1)[-1] or "?")


def machine_busy_s() -> float:
    """Non-idle CPU seconds of all cores since boot (/proc/stat's first line)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def snapshot() -> Snapshot:
    me = os.getpid()
    cpu: dict[int, tuple[str, float]] = {}
    for proc in psutil.process_iter(["pid", "cmdline", "name", "cpu_times"]):
        info = proc.info
        times = info.get("cpu_times")
        if times is None:
            continue
        cmdline = " ".join(info.get("cmdline") or ()) or (info.get("name") or "")
        cpu[info["pid"]] = (role_of(cmdline, info["pid"], me, info.get("name") or ""), times.user + times.system)
    return Snapshot(time.monotonic(), cpu, machine_busy_s())


def cpu_by_role(before: Snapshot, after: Snapshot) -> dict[str, float]:
    """CPU seconds each role used between the snapshots (a process born meanwhile counts whole)."""
    out: dict[str, float] = {}
    for pid, (role, cpu_s) in after.cpu_s.items():
        start = before.cpu_s.get(pid, (role, 0.0))[1]
        out[role] = out.get(role, 0.0) + max(0.0, cpu_s - start)
    busy = after.machine_busy_s - before.machine_busy_s
    for role in [r for r in out if r.startswith(OTHER)]:  # small outsiders in one row
        if out[role] < 0.02 * busy:
            out[OTHER + "the rest"] = out.get(OTHER + "the rest", 0.0) + out.pop(role)
    out["(machine busy, all processes)"] = busy
    out["(window, wall seconds)"] = after.taken_s - before.taken_s
    return out


def print_split(levels: dict[str, tuple[dict[str, float], int]]) -> None:
    """One table: role -> CPU ms per OK request, per level (`label -> (cpu_by_role, ok_requests)`)."""
    if not levels:
        return
    roles = sorted({r for split, _ in levels.values() for r in split if not r.startswith("(")},
                   key=lambda r: -max(split.get(r, 0.0) for split, _ in levels.values()))
    labels = list(levels)
    print("\nCPU per OK request by process, ms (user + system over the level's window; % = share of "
          "the machine's busy time)\n")
    print("| process | " + " | ".join(labels) + " |")
    print("|---" * (len(labels) + 1) + "|")

    def cell(label: str, seconds: float) -> str:
        split, ok = levels[label]
        busy = split.get("(machine busy, all processes)", 0.0)
        share = f" ({100 * seconds / busy:.0f} %)" if busy > 0 else ""
        return f"{1000 * seconds / ok:.1f}{share}" if ok else "-"

    for role in roles:
        if max(levels[label][0].get(role, 0.0) for label in labels) < 0.005:
            continue
        print(f"| {role} | " + " | ".join(cell(label, levels[label][0].get(role, 0.0)) for label in labels) + " |")
    print("| **machine busy** | " + " | ".join(
        cell(label, levels[label][0].get("(machine busy, all processes)", 0.0)) for label in labels) + " |")
    print("| OK requests / window s | " + " | ".join(
        f"{levels[label][1]} / {levels[label][0].get('(window, wall seconds)', 0.0):.1f}" for label in labels) + " |")


def print_idle(split: dict[str, float]) -> None:
    """The hub at rest: CPU ms per second of each process (its background: control loops, metrics)."""
    window_s = split.get("(window, wall seconds)", 0.0)
    if window_s <= 0:
        return
    print(f"\nCPU at rest (no requests, {window_s:.0f} s), ms per second (1000 = one core)\n")
    print("| process | ms/s |")
    print("|---|---|")
    for role, seconds in sorted(split.items(), key=lambda kv: -kv[1]):
        if not role.startswith("(") and seconds / window_s >= 0.001:
            print(f"| {role} | {1000 * seconds / window_s:.1f} |")
    print(f"| **machine busy** | {1000 * split.get('(machine busy, all processes)', 0.0) / window_s:.1f} |")
    sys.stdout.flush()


def pids_of(roles: tuple[str, ...]) -> dict[str, int]:
    """The pid of each named role (the first process found with it)."""
    found: dict[str, int] = {}
    me = os.getpid()
    for proc in psutil.process_iter(["pid", "cmdline"]):
        role = role_of(" ".join(proc.info.get("cmdline") or ()), proc.info["pid"], me)
        if role in roles and role not in found:
            found[role] = proc.info["pid"]
    return found


def start_profilers(out_dir: Path, roles: tuple[str, ...], duration_s: float, label: str) -> list[subprocess.Popen]:
    """`py-spy record` (a dev tool, not a hub dependency) on each role's process for the level,
    as collapsed stacks (one `frames count` line per stack) for `summarise_profile`."""
    spy = Path(sys.executable).parent / "py-spy"
    if not spy.is_file():
        raise SystemExit(f"--py-spy needs py-spy beside {sys.executable}: pip install py-spy==0.4.3 (a dev tool)")
    out_dir.mkdir(parents=True, exist_ok=True)
    procs = []
    for role, pid in pids_of(roles).items():
        path = out_dir / f"{label}-{role.replace(' ', '_')}.txt"
        procs.append(subprocess.Popen(
            [str(spy), "record", "--pid", str(pid), "--rate", "50", "--duration", str(int(duration_s)),
             "--format", "raw", "--nonblocking", "--output", str(path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return procs


_FRAME = re.compile(r"^(?P<func>.*?) \((?P<path>[^()]*?)(?::\d+)?\)$")


def frame_name(frame: str) -> str:
    """`func (path/to/file.py:123)` -> `func (file.py)`: lines of one function count together."""
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    return f"{match['func']} ({match['path'].rsplit('/', 1)[-1]})"


def summarise_profile(path: Path, top: int = 15) -> list[tuple[str, float]]:
    """(function, share of samples) of the `top` functions by inclusive samples in a collapsed-stack
    file; a function counts once per stack, so recursion does not inflate it."""
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        total += int(count)
        for name in {frame_name(f) for f in stack.split(";")}:
            inclusive[name] += int(count)
    return [(name, n / total) for name, n in inclusive.most_common(top)] if total else []
