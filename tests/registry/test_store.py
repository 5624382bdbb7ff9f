import json

import pytest

from hub.errors import InvalidInput, ModelNotFound
from registry.bootstrap import DefaultModel, bootstrap
from registry.ref import ModelRef
from registry.store import MlflowStore


@pytest.mark.parametrize(
    ("text", "name", "alias", "version"),
    [
        ("models:/yolov8n-coco@champion", "yolov8n-coco", "champion", None),
        ("models:/ppocr-v4/3", "ppocr-v4", None, "3"),
        ("models:/a.b_c@challenger", "a.b_c", "challenger", None),
    ],
)
def test_parse_ref(text, name, alias, version):
    ref = ModelRef.parse(text)
    assert (ref.name, ref.alias, ref.version) == (name, alias, version)
    assert str(ref) == text


@pytest.mark.parametrize("text", ["yolo", "models:/", "models:/x@", "models:/x/1a", "models:/x@1bad", "runs:/x/y"])
def test_parse_ref_rejects(text):
    with pytest.raises(InvalidInput):
        ModelRef.parse(text)


def _artifact(tmp_path, tag: str):
    d = tmp_path / f"art-{tag}"
    d.mkdir()
    (d / "hub.json").write_text(json.dumps({"capability": "echo", "format": "text", "metadata": {"tag": tag}}))
    (d / "weights.txt").write_text(tag)
    return d


def test_register_promote_rollback_audit(hub_home, tmp_path):
    store = MlflowStore.from_settings()
    v1 = store.register("echo", _artifact(tmp_path, "one"), metadata={"capability": "echo"})
    v2 = store.register("echo", _artifact(tmp_path, "two"), metadata={"capability": "echo"})
    v3 = store.register("echo", _artifact(tmp_path, "three"), metadata={"capability": "echo"})
    assert (v1, v2, v3) == ("1", "2", "3")
    store.set_alias("echo", "champion", v1)
    store.set_alias("echo", "champion", v2)
    store.set_alias("echo", "champion", v3)
    resolved = store.resolve("models:/echo@champion")
    assert (resolved.version, (resolved.artifact_dir / "weights.txt").read_text()) == ("3", "three")
    assert store.rollback("echo") == "2"
    assert store.rollback("echo") == "1"
    with pytest.raises(InvalidInput):
        store.rollback("echo")
    assert store.resolve("models:/echo@champion").version == "1"
    actions = [(e.version, e.action, e.previous) for e in store.history("echo")]
    assert actions == [("1", "promote", None), ("2", "promote", "1"), ("3", "promote", "2"),
                       ("2", "rollback", "3"), ("1", "rollback", "2")]
    assert store.list_models()[0].aliases == {"champion": "1"}


@pytest.mark.parametrize("ref", ["models:/nope@champion", "models:/echo@nobody", "models:/echo/99"])
def test_unknown_model_is_model_not_found(hub_home, tmp_path, ref):
    store = MlflowStore.from_settings()
    store.register("echo", _artifact(tmp_path, "one"), metadata={})
    with pytest.raises(ModelNotFound):
        store.resolve(ref)


def test_bootstrap_is_idempotent(hub_home, tmp_path):
    store = MlflowStore.from_settings()
    calls = []

    def prepare(shared, out):
        calls.append(out)
        (out / "hub.json").write_text(json.dumps({"capability": "echo", "format": "text", "metadata": {}}))
        return {"kind": "test"}

    defaults = [DefaultModel("echo", "echo-default", prepare)]
    first = bootstrap(store, defaults, tmp_path, hub_home)
    second = bootstrap(store, defaults, tmp_path, hub_home)
    assert [(r.version, r.created) for r in first + second] == [("1", True), ("1", False)]
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("model", "ok"),
    [("models:/echo@champion", True), ("models:/echo/1", True), ("models:/echo/9", False),
     ("models:/echo@challenger", False), ("models:/nope/1", False)],
)
def test_startup_check_names_unresolvable_references(hub_home, tmp_path, model, ok):
    from serving.config import ServingConfig
    from serving.launch import check_models

    store = MlflowStore.from_settings()
    store.set_alias("echo", "champion", store.register("echo", _artifact(tmp_path, "one"), metadata={}))
    config = ServingConfig.model_validate({"capabilities": {"see": {"model": model}}})
    if ok:
        check_models(config, store)
    else:
        with pytest.raises(ModelNotFound, match=model):
            check_models(config, store)
