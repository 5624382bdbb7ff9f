"""`hub reason TEXT` and `hub eval reason --data CSV` against a registry whose champion is the default model."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tests.models.test_textcls_support import (
    LABELLED,
    default_artifact,
    register_champion,
    seed_embedding_cache,
)


@pytest.fixture(scope="session")
def artifact(shared_dir):
    return default_artifact(shared_dir)


@pytest.fixture(scope="module")
def cli(tmp_path_factory, artifact):
    """One HUB_HOME for the module (what `hub_home` does per test): a registry whose champion is v1."""
    from cli.main import app
    from hub.settings import reset_settings
    from serving.local import local_server

    home = tmp_path_factory.mktemp("reason-cli") / "hub"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HUB_HOME", str(home))
        mp.delenv("HUB_TRACKING_URI", raising=False)
        mp.delenv("HUB_REGISTRY_URI", raising=False)
        reset_settings()
        seed_embedding_cache(home)
        register_champion(artifact)
        local_server.cache_clear()  # servers are cached per process: never reuse one from another HUB_HOME
        yield lambda *args: CliRunner().invoke(app, list(args))
        local_server.cache_clear()
    reset_settings()


def test_eval_reason_prints_accuracy_and_macro_f1_last(cli, shared_dir):
    result = cli("eval", "reason", "--data", str(shared_dir.joinpath(*LABELLED)), "--text-col", "text",
                 "--label-col", "category")
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[-2].startswith("accuracy: ") and lines[-1].startswith("macro_f1: ")
    assert float(lines[-2].split(": ")[1]) >= 0.9  # 80% of these rows trained the model
    assert "hotline-classifier v1 @champion" in result.stdout


@pytest.mark.parametrize(
    ("subject_args", "inputs", "text_only_line"),
    [
        ([], "inputs: subject + text", True),  # the labelled file has a subject column: both heads reported
        (["--subject-col", "subject"], "inputs: subject + text", True),
        (["--subject-col", ""], "inputs: text", False),  # disabled: text only, as before
        (["--subject-col", "no-such-column"], "inputs: text", False),
    ],
)
def test_eval_reason_says_which_fields_it_read(cli, shared_dir, subject_args, inputs, text_only_line):
    result = cli("eval", "reason", "--data", str(shared_dir.joinpath(*LABELLED)), "--text-col", "text",
                 "--label-col", "category", *subject_args)
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[-3] == inputs and lines[-2].startswith("accuracy: ") and lines[-1].startswith("macro_f1: ")
    assert any(line.startswith("text only: accuracy ") for line in lines) is text_only_line


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        (["小区门口的路灯坏了两个星期，晚上很危险，请尽快派人维修。"], "department:   市住房和城乡建设局"),
        (["请尽快处理", "--subject", "小区路灯坏了无人维修"], "read:         subject + text"),
        (["今天天气怎么样"], "needs review: yes (low_confidence"),
    ],
)
def test_reason_prints_the_answer(cli, args, expect):
    result = cli("reason", *args)
    assert result.exit_code == 0, result.output
    assert expect in result.stdout and "model: hotline-classifier v1 @champion" in result.stdout


def test_reason_json_and_bad_input(cli):
    ok = cli("reason", "医院收费太贵了", "--json", "--cases-k", "2")
    assert ok.exit_code == 0, ok.output
    body = json.loads(ok.stdout)
    assert body["category"] == "卫生计生" and len(body["similar_cases"]) == 2 and body["model"]["version"] == "1"
    empty = cli("reason", "   ")
    assert empty.exit_code == 2 and "error (400)" in empty.output


def test_eval_reason_refuses_a_missing_column(cli, shared_dir):
    result = cli("eval", "reason", "--data", str(shared_dir.joinpath(*LABELLED)), "--label-col", "label")
    assert result.exit_code == 2 and "no column 'label'" in result.output
