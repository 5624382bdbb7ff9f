"""The `hub` CLI's own behaviour: finding a running hub, reading its answers, flags, log parsing.
(The commands against a real hub run in tests/serving/test_readme_examples.py.)"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from cli.commands._client import Reply, RunningHub, clear_state, running_hub, state_path, write_state
from cli.main import app

runner = CliRunner()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_reply_reads_like_the_response_model():
    r = Reply({"detections": [{"class_name": "bus", "xyxy": [1, 2, 3, 4]}],
               "fields": {"name": {"value": "x", "status": "ok"}}, "model": {"name": "m", "version": "1"}})
    assert r.detections[0].class_name == "bus" and r.detections[0].xyxy == [1, 2, 3, 4]
    assert [(k, f.status) for k, f in r.fields.items()] == [("name", "ok")]
    assert r.model.version == "1" and r.model_dump(mode="json")["model"] == {"name": "m", "version": "1"}
    with pytest.raises(AttributeError):
        _ = r.missing


@pytest.mark.parametrize(("pid_alive", "found"), [(True, True), (False, False)])
def test_running_hub_needs_a_live_process(hub_home, pid_alive, found):
    if pid_alive:
        pid = os.getpid()
    else:  # a process that has exited
        child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
        pid = int(child.stdout)
    write_state(RunningHub(url="http://127.0.0.1:9", pid=pid))
    assert (running_hub() is not None) is found


def test_clear_state_leaves_a_newer_hubs_file(hub_home):
    write_state(RunningHub(url="http://127.0.0.1:9", pid=os.getpid()))
    clear_state(pid=1)
    assert state_path().exists()
    clear_state(pid=os.getpid())
    assert not state_path().exists()


@pytest.mark.parametrize("argv", [
    ["see", "IMG"], ["read", "IMG"], ["listen", "IMG"], ["reason", "路灯不亮"], ["hotline", "IMG"],
])
def test_a_named_hub_that_does_not_answer_is_an_error_not_a_fallback(hub_home, tmp_path, argv):
    image = tmp_path / "x.jpg"
    image.write_bytes(b"\xff\xd8 not really")
    argv = [str(image) if a == "IMG" else a for a in argv]
    result = runner.invoke(app, [*argv, "--url", f"http://127.0.0.1:{_closed_port()}"])
    assert result.exit_code == 2
    assert "cannot reach the hub" in result.output


def test_flags_read_naturally():
    help_text = runner.invoke(app, ["serve", "--help"], terminal_width=200).output
    assert "--no-bootstrap" in help_text and "--no-no-bootstrap" not in help_text
    assert "--detach" in help_text


def test_detached_start_shows_only_the_step_lines(tmp_path):
    from cli.commands.serve import STEP_LOGGER, new_steps

    log = tmp_path / "serve.log"
    log.write_text(f"2026-01-01 10:00:01,123 INFO {STEP_LOGGER}: starting Ray (local, on 127.0.0.1)\n"
                   "2026-01-01 10:00:02,000 INFO ray.serve: some replica detail\n"
                   f"2026-01-01 10:00:03,000 INFO {STEP_LOGGER}: half a li")
    lines, offset = new_steps(log, 0, f" {STEP_LOGGER}: ")
    assert lines == ["  10:00:01  starting Ray (local, on 127.0.0.1)"]
    assert offset == log.read_bytes().rfind(b"\n") + 1  # the unfinished line is read on the next poll
    with log.open("a") as f:
        f.write("ne\n")
    assert new_steps(log, offset, f" {STEP_LOGGER}: ")[0] == ["  10:00:03  half a line"]


def test_mlflow_ui_command_points_at_the_hubs_store(hub_home):
    from cli.commands.models import mlflow_ui_command
    from hub.settings import get_settings

    s = get_settings()
    cmd = mlflow_ui_command(s.tracking_uri, s.artifact_root, "127.0.0.1", 5000)
    assert cmd[1:4] == ["ui", "--backend-store-uri", f"sqlite:///{hub_home.resolve() / 'mlflow.db'}"]
    assert s.artifact_root.as_uri() in cmd
