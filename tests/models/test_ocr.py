"""The `read` capability with the real PP-OCRv4 ONNX models: synthetic certificates (field accuracy,
validation), the real sample photos of ../shared/data/ocr, batching, bad input, privacy."""

from __future__ import annotations

import io
import json
import logging
import random
import shutil
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from hub.contract import ModelInfo, run_batch
from hub.errors import InvalidInput, ModelLoadError, PayloadTooLarge
from models.ocr import OcrReader, ReadRequest, ReadResponse, prepare_default
from models.ocr.geometry import crop_line
from tests.conftest import require_shared
from training.ocr_synth import generate, id_values, render_id_front

# Field-level exact match on the synthetic set below (6 licences = 66 fields, 6 ID cards = 48
# fields) must reach these. bench/ocr_accuracy.py measured 95.8 % (licences) and 99.5 % (ID cards)
# over 50 + 50 documents, and this set reads 63/66 and 48/48 today. A 66-field sample at 96 % has a
# standard deviation of about 2.5 points, so 88 % is three below; losing any one field on every
# document costs 9 points (licence) or 12.5 points (ID card) and fails the test.
MIN_FIELD_ACCURACY = {"business_licence": 0.88, "id_card": 0.92}


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    out = tmp_path_factory.mktemp("ppocr") / "ppocr-v4"
    prepare_default(tmp_path_factory.mktemp("shared"), out)
    return out


@pytest.fixture(scope="module")
def reader(artifact):
    r = OcrReader()
    r.load(artifact, "cpu")
    return r


def _jpeg(image: Image.Image, quality: int = 92) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def test_artifact_is_self_contained(artifact, tmp_path):
    meta = json.loads((artifact / "hub.json").read_text(encoding="utf-8"))
    assert meta["capability"] == "read" and meta["format"] == "ppocr-onnx"
    m = meta["metadata"]
    keys = (artifact / m["dictionary"]).read_text(encoding="utf-8").splitlines()
    assert len(keys) == int(m["dictionary_size"]) == 6623
    assert int(m["ctc_classes"]) == len(keys) + 2  # blank + dictionary + space
    assert all(isinstance(v, str) for v in m.values())
    # A copy somewhere else loads and reads: load() needs nothing outside its directory.
    moved = shutil.copytree(artifact, tmp_path / "elsewhere")
    r = OcrReader()
    r.load(moved, "cpu")
    [resp] = r.predict_batch([r.sample_request()])
    assert "HUB" in "".join(line.text for line in resp.lines)


def test_load_refuses_a_dictionary_that_does_not_fit_the_model(artifact, tmp_path):
    broken = shutil.copytree(artifact, tmp_path / "broken")
    keys = (broken / "ppocr_keys.txt").read_text(encoding="utf-8").splitlines()
    (broken / "ppocr_keys.txt").write_text("\n".join(keys[:-10]) + "\n", encoding="utf-8")
    with pytest.raises(ModelLoadError, match="dictionary"):
        OcrReader().load(broken, "cpu")


# --- synthetic certificates -------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic(reader):
    docs = generate("business_licence", 6, seed=2024) + generate("id_card", 6, seed=2024)
    responses = run_batch(reader, [ReadRequest(image=d.image) for d in docs], ModelInfo(name="ppocr-v4", version="1"))
    return docs, responses


def test_document_types_are_recognised(synthetic):
    docs, responses = synthetic
    assert [r.document_type for r in responses] == [d.document_type for d in docs]
    assert all(r.model.name == "ppocr-v4" for r in responses)


@pytest.mark.parametrize("doc_type", ["business_licence", "id_card"])
def test_field_accuracy_on_synthetic_documents(synthetic, doc_type):
    docs, responses = synthetic
    pairs = [(d, r) for d, r in zip(docs, responses, strict=True) if d.document_type == doc_type]
    checks = [r.fields.get(k) is not None and r.fields[k].value == v for d, r in pairs for k, v in d.fields.items()]
    assert len(checks) >= 40
    assert sum(checks) / len(checks) >= MIN_FIELD_ACCURACY[doc_type]


def test_fields_carry_boxes_scores_and_reading_order(synthetic):
    docs, responses = synthetic
    for doc, resp in zip(docs, responses, strict=True):
        for key in doc.fields:
            field = resp.fields[key]
            if field.status == "missing":
                assert field.value is None and field.box is None
            else:
                assert field.value and 0 < field.score <= 1 and len(field.box) == 4
        tops = [min(y for _, y in line.box) for line in resp.lines]
        assert tops[0] <= np.median(tops) <= tops[-1]  # top to bottom, roughly


def test_a_code_reported_valid_is_the_printed_code(synthetic):
    docs, responses = synthetic
    seen = 0
    for doc, resp in zip(docs, responses, strict=True):
        for key in ("credit_code", "id_number"):
            if key in doc.fields and resp.fields[key].status == "valid":
                assert resp.fields[key].value == doc.fields[key]
                seen += 1
    assert seen >= 12


@pytest.mark.parametrize(
    ("change", "field", "status"),
    [
        ({"birth_date": "1990 年 1 月 1 日"}, "birth_date", "inconsistent"),
        ({"sex": "女"}, "sex", "inconsistent"),
        ({"id_number": "CHECK"}, "id_number", "invalid_checksum"),
    ],
)
def test_id_card_fields_are_cross_checked(reader, change, field, status):
    rng = random.Random(99)
    values = id_values(rng)
    values["birth_date"], values["sex"] = "1987 年 5 月 3 日", "男"
    values["id_number"] = "420704198705031236"  # born 1987-05-03, male, valid check digit
    values.update(change)
    if values["id_number"] == "CHECK":
        values["id_number"] = "420704198705031235"
    image = render_id_front(values, rng, np.random.default_rng(99))
    [resp] = reader.predict_batch([ReadRequest(image=_jpeg(image), document_type="id_card")])
    assert resp.fields[field].status == status
    if status == "inconsistent":
        assert resp.fields["id_number"].status == "inconsistent"


# --- real photos -------------------------------------------------------------------------------

REAL_SAMPLES = [
    ("paddle_00006737.jpg", ["登机牌", "BOARDING", "ZHANGQIWEI", "福州"]),
    ("paddle_00056221.jpg", ["G7512次", "上海虹桥", "杭州东"]),
    ("paddle_00111002.jpg", ["中国工商银行", "持卡人存根", "2012-10-23"]),
    ("paddle_1.jpg", ["土地整治与土壤修复研究中心", "华南农业大学"]),
    ("paddle_11.jpg", ["纯臻营养护发素", "YM-X-3011", "适合所有肤质"]),
    ("paddle_12.jpg", ["打浦路15号", "绿洲仕格维花园公寓"]),
    ("rapid_ch_en_num.jpg", ["正品促销", "极速发货", "5.8"]),
    ("rapid_text_vertical_words.png", ["是非不得問之人要取之"]),
]


@pytest.fixture(scope="module")
def real_responses(reader):
    paths = [require_shared("data", "ocr", name) for name, _ in REAL_SAMPLES]
    return dict(zip([n for n, _ in REAL_SAMPLES], reader.predict_batch([ReadRequest(image=p.read_bytes()) for p in paths]), strict=True))


@pytest.mark.parametrize(("name", "expected"), REAL_SAMPLES)
def test_real_photos_text_is_read(real_responses, name, expected):
    resp = real_responses[name]
    text = "".join(line.text for line in resp.lines)
    for word in expected:
        assert word in text
    assert resp.document_type is None  # tickets, receipts and signs are not certificates
    assert resp.fields == {}


def test_a_forced_type_on_a_non_certificate_invents_nothing(reader):
    image = require_shared("data", "ocr", "paddle_11.jpg").read_bytes()
    [resp] = reader.predict_batch([ReadRequest(image=image, document_type="id_card")])
    assert resp.document_type == "id_card"
    assert resp.fields and all(f.status == "missing" and f.value is None for f in resp.fields.values())


# --- batching ------------------------------------------------------------------------------------


def test_batched_recognition_reads_the_same_text_as_line_by_line(reader, synthetic):
    docs, _ = synthetic
    engine = reader.engine
    crops = []
    for doc in (docs[0], docs[7]):
        bgr = np.asarray(Image.open(io.BytesIO(doc.image)).convert("RGB"))[:, :, ::-1].copy()
        crops += [crop_line(bgr, box) for box in engine.detect([bgr])[0]]
    assert len(crops) > 20
    assert len({engine.bucket_width(c) for c in crops}) > 2  # several buckets in one batch
    assert [r.text for r in engine.recognize(crops)] == [r.text for r in engine.recognize(crops, batched=False)]


def test_a_batch_of_requests_answers_each_as_if_alone(reader, synthetic):
    docs, _ = synthetic
    requests = [ReadRequest(image=d.image) for d in (docs[1], docs[8], docs[9])]
    together = reader.predict_batch(requests)
    reader.batched = False
    try:
        alone = [reader.predict_batch([r])[0] for r in requests]
    finally:
        reader.batched = True
    for a, b in zip(together, alone, strict=True):
        assert [ln.text for ln in a.lines] == [ln.text for ln in b.lines]
        assert {k: f.value for k, f in a.fields.items()} == {k: f.value for k, f in b.fields.items()}


# --- bad input ----------------------------------------------------------------------------------


def _png_header(width: int, height: int) -> bytes:
    """A PNG that claims width x height (no pixel data needed: decoding must stop before that)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    ("payload", "error", "status"),
    [
        (b"this is not an image", InvalidInput, 400),
        (b"", InvalidInput, 400),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 64, InvalidInput, 400),
        (_png_header(20000, 20000), PayloadTooLarge, 413),
    ],
    ids=["text", "empty", "truncated-png", "20000x20000"],
)
def test_bad_images_fail_only_their_own_request(reader, payload, error, status):
    out = reader.predict_batch([ReadRequest(image=payload), reader.sample_request()])
    assert isinstance(out[0], error) and out[0].status_code == status
    assert isinstance(out[1], ReadResponse) and out[1].lines


@pytest.mark.parametrize(
    "image",
    [
        Image.new("RGB", (640, 480), (255, 255, 255)),
        Image.new("RGB", (1, 1), (0, 0, 0)),
        Image.fromarray(np.random.default_rng(0).integers(90, 110, (300, 400, 3), dtype=np.uint8)),
    ],
    ids=["white", "one-pixel", "grey-noise"],
)
def test_an_image_without_text_reads_nothing(reader, image):
    [resp] = reader.predict_batch([ReadRequest(image=_jpeg(image))])
    assert isinstance(resp, ReadResponse), resp
    assert resp.lines == [] and resp.document_type is None and resp.fields == {}


def test_a_non_base64_string_is_refused_at_the_wire():
    with pytest.raises(ValueError):
        ReadRequest.model_validate({"image": "not base64 !!"})
    with pytest.raises(ValueError):
        ReadRequest.model_validate({"image": "", "document_type": "passport"})


# --- privacy ------------------------------------------------------------------------------------


def test_logs_never_hold_an_id_number(reader, synthetic, caplog):
    docs, _ = synthetic
    front = next(d for d in docs if d.side == "front")
    number = front.fields["id_number"]
    with caplog.at_level(logging.DEBUG, logger="models.ocr"):
        [resp] = reader.predict_batch([ReadRequest(image=front.image)])
    assert resp.fields["id_number"].value == number  # it was read ...
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert logged and number not in logged  # ... but not logged
    assert f"{number[:6]}********{number[-4:]}" in logged
