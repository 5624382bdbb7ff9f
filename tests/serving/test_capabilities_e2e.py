"""Every capability through the running hub: real Ray Serve, real models, real HTTP."""

from __future__ import annotations

import base64
import io
import struct

import pytest
from PIL import Image

pytestmark = pytest.mark.serve


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _png(width: int, height: int, color: int = 255) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (width, height), color).save(buf, format="PNG")
    return buf.getvalue()


def _assert_alive(c) -> None:
    assert c.get("/readyz").status_code == 200


def test_see_finds_buses_and_people(hub_server, shared_dir):
    with hub_server.client() as c:
        reply = c.post("/v1/see", files={"image": ("bus.jpg", (shared_dir / "data/images/bus.jpg").read_bytes())})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    names = {d["class_name"] for d in body["detections"]}
    assert {"bus", "person"} <= names
    assert all(0 < d["score"] <= 1 for d in body["detections"])
    assert (body["image_width"], body["image_height"]) == (810, 1080)


@pytest.mark.parametrize(
    ("cap", "payload", "status"),
    [
        ("see", {"image": _b64(b"\xff\xd8\xff\xe0 corrupt jpeg")}, 400),
        ("see", {"image": _b64(_png(20000, 20000, 0))}, 413),
        ("see", {"image": _b64(b"")}, 400),
        ("read", {"image": _b64(b"%PDF-1.4 not an image")}, 400),
        ("read", {"image": _b64(_png(20000, 20000, 0))}, 413),
        ("listen", {"audio": _b64(b"")}, 400),
        ("listen", {"audio": _b64(b"RIFF\x00\x00\x00\x00WAVEjunk" * 10)}, 400),
        ("speak", {"text": ""}, 400),
        ("speak", {"text": "长" * 50_000}, 413),
        ("reason", {"text": ""}, 400),
        ("reason", {"text": "x", "top_k": 0}, 400),
    ],
)
def test_bad_input_is_a_clear_4xx_and_the_replica_survives(hub_server, cap, payload, status):
    with hub_server.client() as c:
        reply = c.post(f"/v1/{cap}", json=payload)
        assert reply.status_code == status, reply.text
        assert reply.json()["error"]["message"]
        _assert_alive(c)


def test_read_real_photo_and_blank_page(hub_server, shared_dir):
    with hub_server.client() as c:
        photo = c.post("/v1/read", json={"image": _b64((shared_dir / "data/ocr/paddle_11.jpg").read_bytes())})
        blank = c.post("/v1/read", json={"image": _b64(_png(640, 480))})
    assert photo.status_code == 200, photo.text
    text = "".join(line["text"] for line in photo.json()["lines"])
    assert "纯臻营养护发素" in text
    assert photo.json()["model"]["name"] == "ppocr-v4"
    assert blank.status_code == 200, blank.text
    assert (blank.json()["lines"], blank.json()["document_type"]) == ([], None)


def test_listen_transcribes_an_upload(hub_server, shared_dir):
    wav = (shared_dir / "data/speech/en-librispeech-1995-1837-0001.wav").read_bytes()
    with hub_server.client() as c:
        reply = c.post("/v1/listen", files={"audio": ("call.wav", wav, "audio/wav")})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert "first great sorrow of his life" in body["text"].lower()
    assert body["model"]["name"] == "whisper-base" and body["segments"]


def test_speak_returns_audio_as_json_and_as_file(hub_server):
    with hub_server.client() as c:
        as_json = c.post("/v1/speak", json={"text": "Your request has been received."})
        as_file = c.post("/v1/speak?response=file", json={"text": "市民热线12345为您服务"})
    assert as_json.status_code == 200, as_json.text
    body = as_json.json()
    assert base64.b64decode(body["audio"])[:4] == b"RIFF" and body["duration_s"] > 0.5
    assert as_file.status_code == 200 and as_file.headers["content-type"].startswith("audio/")
    assert as_file.content[:4] == b"RIFF"
    (rate,) = struct.unpack("<I", as_file.content[24:28])
    assert rate > 0


def body_inputs(reply) -> list[str]:
    return reply.json()["inputs"]


def test_reason_classifies_routes_and_finds_cases(hub_server):
    text = "小区门口的道路坑洼不平，下雨天积水严重，居民出行很不方便，希望有关部门尽快修复。"
    with hub_server.client() as c:
        reply = c.post("/v1/reason", json={"text": text, "cases_k": 3})
        weather = c.post("/v1/reason", json={"text": "今天天气怎么样"})
        added = c.post("/v1/reason/cases", json={"cases": [{
            "id": "e2e-1", "subject": "路灯不亮", "text": "幸福路口的三盏路灯已经连续一周不亮了，夜间行人很危险。",
            "reply": "已通知路灯管理所维修。", "category": "城乡建设"}]})
        near_dup = c.post("/v1/reason", json={"text": "幸福路口三盏路灯连续一周不亮，晚上走路很危险", "cases_k": 3})
        titled = c.post("/v1/reason", json={"text": "请相关部门尽快处理，谢谢。", "subject": "出租车拒载"})
        long_title = c.post("/v1/reason", json={"text": "路灯坏了", "subject": "路" * 501})
    assert titled.status_code == 200, titled.text
    assert titled.json()["inputs"] == ["subject", "text"] and body_inputs(reply) == ["text"]
    assert long_title.status_code == 400 and "subject" in long_title.text  # capped at 500 characters
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["category"] and body["department"] and 0 < body["confidence"] <= 1
    assert len(body["similar_cases"]) == 3
    assert weather.json()["needs_review"] is True
    assert added.status_code == 200, added.text
    assert near_dup.json()["similar_cases"][0]["id"] == "e2e-1"


def test_hotline_call_end_to_end(hub_server, shared_dir):
    wav = (shared_dir / "data/speech/en-librispeech-1995-1837-0001.wav").read_bytes()
    with hub_server.client() as c:
        reply = c.post("/v1/hotline/call", files={"audio": ("call.wav", wav, "audio/wav")})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert "sorrow" in body["transcript"].lower()
    assert body["category"] and body["department"] and body["reply_text"]
    assert base64.b64decode(body["reply_audio"])[:4] == b"RIFF"
    assert {body["models"][k]["name"] for k in ("listen", "reason", "speak")} == {
        "whisper-base", "hotline-classifier", "espeak-ng"}  # Mandarin: tests/serving/test_hotline_mandarin_e2e.py
