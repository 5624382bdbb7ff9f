"""serving.launch.init_local_ray: a node that misses Ray's fixed 30 s registration window is started once more.

ray.init is replaced by a fake that starts a real child process (as Ray's half-started GCS and raylet
are) and then raises what Ray raises, so the test checks that those processes are stopped before the
second start, and that other failures are not retried.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from serving import launch

TIMEOUT = Exception("The current node timed out during startup. This could happen because some of the raylet "
                    "failed to startup or the GCS has become overloaded.")


class FakeInit:
    def __init__(self, outcomes: list[Exception | None]) -> None:
        self.outcomes = outcomes
        self.calls: list[dict] = []
        self.children: list[subprocess.Popen] = []

    def __call__(self, **options) -> None:
        self.calls.append(options)
        self.children.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]))
        outcome = self.outcomes[len(self.calls) - 1]
        if outcome is not None:
            raise outcome

    def reap(self) -> None:
        for child in self.children:
            child.kill()
            child.wait()


@pytest.mark.parametrize("outcomes, error, calls", [
    ([None], None, 1),                                    # started: nothing else happens
    ([TIMEOUT, None], None, 2),                           # missed the window once: stopped, restarted
    ([TIMEOUT, TIMEOUT], "The raylet's log ends", 2),     # twice: stopped; the error carries the log
    ([ValueError("bad option"), None], "bad option", 1),  # any other failure is not retried
])
def test_a_node_that_misses_the_registration_window_is_started_once_more(
        monkeypatch, outcomes, error, calls):
    import ray

    fake = FakeInit(outcomes)
    monkeypatch.setattr(ray, "init", fake)
    try:
        if error is None:
            launch.init_local_ray(num_cpus=1)
        else:
            with pytest.raises(Exception, match=error):
                launch.init_local_ray(num_cpus=1)
        assert len(fake.calls) == calls
        assert all(c == {"num_cpus": 1} for c in fake.calls)  # the same options every time
        # every attempt that timed out had its processes stopped; one that started keeps them
        for child, outcome in zip(fake.children, outcomes[:calls], strict=True):
            assert (child.poll() is not None) == (outcome is TIMEOUT), outcome
    finally:
        fake.reap()
