"""`hub read IMAGE --json`: the champion from a fresh registry, the same JSON as the API."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from training.ocr_synth import generate


@pytest.fixture
def id_card_back(tmp_path):
    back = generate("id_card", 1, seed=5)[1]
    path = tmp_path / "back.jpg"
    path.write_bytes(back.image)
    return path, back.fields


def test_hub_read_prints_the_api_json(hub_home, id_card_back):
    from cli.main import app
    from serving.local import local_server

    local_server.cache_clear()  # a fresh HUB_HOME: bootstrap the champion into it
    path, truth = id_card_back
    result = CliRunner().invoke(app, ["read", str(path), "--type", "id_card", "--json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert set(body) == {"model", "lines", "document_type", "fields"}
    assert body["model"]["name"] == "ppocr-v4" and body["model"]["alias"] == "champion"
    assert body["document_type"] == "id_card"
    assert body["fields"]["valid_period"]["value"] == truth["valid_period"]
    assert body["fields"]["valid_period"]["status"] == "valid"
    assert {"text", "score", "box"} <= set(body["lines"][0])
    local_server.cache_clear()


@pytest.mark.parametrize(("content", "code"), [(b"not an image", "400"), (b"", "400")])
def test_hub_read_reports_bad_input(hub_home, tmp_path, content, code):
    from cli.main import app
    from serving.local import local_server

    local_server.cache_clear()
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    result = CliRunner().invoke(app, ["read", str(path), "--json"])
    assert result.exit_code == 2
    assert f"error ({code})" in result.output
    local_server.cache_clear()
