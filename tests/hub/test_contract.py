import base64
import io
import pickle

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from hub.contract import Blob, ModelInfo, Response, WireModel, run_batch, unwrap
from hub.errors import HubError, InvalidInput, ModelNotFound, PayloadTooLarge
from hub.media import decode_image


class EchoRequest(WireModel):
    text: str
    data: Blob = b""


class EchoResponse(Response):
    text: str


class Echo:
    name = "echo"
    request_type = EchoRequest
    response_type = EchoResponse

    def __init__(self, drop: int = 0):
        self.drop = drop

    def predict_batch(self, requests):
        out = [InvalidInput("bad", field="text") if r.text == "bad" else EchoResponse(text=r.text.upper())
               for r in requests]
        return out[: len(out) - self.drop]


INFO = ModelInfo(name="echo-model", version="7", alias="champion")


def test_run_batch_stamps_model_and_keeps_per_item_errors():
    out = run_batch(Echo(), [EchoRequest(text="a"), EchoRequest(text="bad"), EchoRequest(text="c")], INFO)
    assert [o.text if not isinstance(o, HubError) else o.code for o in out] == ["A", "invalid_input", "C"]
    assert out[0].model == INFO
    with pytest.raises(InvalidInput):
        unwrap(out[1])


def test_run_batch_refuses_wrong_length():
    with pytest.raises(HubError, match="returned 1 results for 2"):
        run_batch(Echo(drop=1), [EchoRequest(text="a"), EchoRequest(text="b")], INFO)


@pytest.mark.parametrize(
    ("payload", "ok"),
    [
        ({"text": "x", "data": base64.b64encode(b"\x00\x01").decode()}, True),
        ({"text": "x", "data": "data:image/png;base64," + base64.b64encode(b"zz").decode()}, True),
        ({"text": "x", "data": "not base64!!"}, False),
        ({"text": "x", "unknown": 1}, False),
        ({"data": ""}, False),
    ],
)
def test_wire_validation(payload, ok):
    if ok:
        assert isinstance(EchoRequest.model_validate(payload).data, bytes)
    else:
        with pytest.raises(ValidationError):
            EchoRequest.model_validate(payload)


@pytest.mark.parametrize("cls", [InvalidInput, ModelNotFound, PayloadTooLarge])
def test_errors_survive_pickling(cls):
    err = pickle.loads(pickle.dumps(cls("boom", field="image")))
    assert (type(err), err.message, err.field, err.status_code) == (cls, "boom", "image", cls.status_code)


def _png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (width, height)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", InvalidInput),
        (b"definitely not an image", InvalidInput),
        (_png(20000, 20000), PayloadTooLarge),  # decompression bomb: refused from the header alone
        (_png(64, 48)[:40], InvalidInput),  # truncated
        (_png(64, 48), None),
    ],
)
def test_decode_image(data, error):
    if error is None:
        img = decode_image(data)
        assert img.shape == (48, 64, 3) and img.dtype == np.uint8
    else:
        with pytest.raises(error):
            decode_image(data)


@pytest.mark.parametrize(
    ("payload", "context", "field", "message_start"),
    [
        ({"name": 1, "version": "1"}, None, "name", "name:"),
        ({"version": "1"}, "spec", "name", "spec: name:"),
        ({"name": "m", "version": "1", "extra": 1}, None, "extra", "extra:"),
        ("not a mapping", None, None, "body:"),
    ],
)
def test_validate_as_names_the_field(payload, context, field, message_start):
    from hub.contract import validate_as

    with pytest.raises(InvalidInput) as caught:
        validate_as(ModelInfo, payload, context)
    assert caught.value.field == field
    assert str(caught.value).startswith(message_start)
