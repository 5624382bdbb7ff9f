import pytest
from pydantic import ValidationError

from hub.errors import InvalidInput, Unauthorized
from serving.auth import KeyRing, digest
from serving.config import AuthConfig, ServingConfig

BASE = {"capabilities": {"see": {"model": "models:/yolov8n-coco@champion"}}}


@pytest.mark.parametrize(
    ("host", "required"),
    [("127.0.0.1", False), ("localhost", False), ("::1", False), ("0.0.0.0", True), ("10.1.2.3", True)],
)
def test_keys_required_beyond_loopback(host, required):
    cfg = ServingConfig.model_validate({**BASE, "http": {"host": host}})
    assert cfg.auth_required is required


@pytest.mark.parametrize(
    "bad",
    [
        {"capabilities": {"see": {"model": "yolov8n"}}},  # not a models:/ reference
        {"capabilities": {"see": {"model": "models:/x@champion", "num_cpus": 0}}},
        {"capabilities": {"see": {"model": "models:/x@champion", "batch": {"max_batch_size": 0}}}},
        {**BASE, "http": {"port": 70000}},
        {**BASE, "surprise": True},
    ],
)
def test_config_rejects(bad):
    with pytest.raises((ValidationError, InvalidInput)):
        ServingConfig.model_validate(bad)


def test_shipped_config_is_valid():
    from hub.settings import get_settings

    cfg = ServingConfig.load(get_settings().config)
    assert cfg.http.loopback and not cfg.auth_required


RING = KeyRing.from_config(
    AuthConfig.model_validate({"keys": [{"name": "ops", "sha256": digest("k-ops")},
                                        {"name": "old", "sha256": digest("k-old"), "revoked": True}]}),
    required=True, env_keys="ci:k-ci")


@pytest.mark.parametrize(
    ("header", "name"),
    [("Bearer k-ops", "ops"), ("bearer k-ci", "ci"), ("Bearer k-old", None), ("Bearer nope", None),
     ("k-ops", None), ("", None), (None, None)],
)
def test_key_ring(header, name):
    if name is None:
        with pytest.raises(Unauthorized):
            RING.check(header)
    else:
        assert RING.check(header) == name


def test_refuses_to_start_unprotected():
    with pytest.raises(InvalidInput):
        KeyRing.from_config(AuthConfig(), required=True)
    assert KeyRing.from_config(AuthConfig(), required=False).check(None) is None
