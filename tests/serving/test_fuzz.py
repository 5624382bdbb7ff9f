"""Fuzzing the running hub (the session's real Ray Serve hub, `hub_server`) through its own OpenAPI
with schemathesis: at least 200 generated cases per operation, plus hand-written bad inputs
(corrupt, truncated, huge, wrong type, a decompression bomb, a WAV header only, a 2-hour WAV
header). Zero 5xx answers, every error in the hub's JSON error shape, and no replica died.

The counts per operation are written to `$HUB_FUZZ_REPORT` (default: the pytest tmp dir) and
printed at the end."""

from __future__ import annotations

import io
import json
import os
import struct
import time
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from PIL import Image

from tests.serving.conftest import SERVED

CASES_PER_OPERATION = int(os.environ.get("HUB_FUZZ_CASES", "200"))  # lower only for a quick local look
# The generated cases run in CI (about 5 minutes). tests/conftest.py runs this module last in its
# process: the cameras, cases and webhooks the generated cases manage to add stay in the session's
# hub, and no other test sees them. Hypothesis is derandomized, and the hub's state at this point is
# what the same suite left, so a run repeats the last one's cases. Runs at 200 found three 500s, now
# 400s (a dict as a parking preset, an id beyond SQLite's integer, a NUL in a camera URL; issue 12).
# The live event feed never ends; everything else is fuzzed.
EXCLUDED = {("GET", "/v1/events/stream")}
COUNTS: Counter[str] = Counter()
INPUTS: dict[str, bool] = {}  # operation -> whether its OpenAPI declares anything to generate
STATUSES: Counter[str] = Counter()


@pytest.fixture(scope="session")
def hub_schema(hub_server):
    # Every served capability's route is in /openapi.json once its replica has given its schema.
    expected = {f"/v1/{name}" for name in SERVED}
    deadline = time.monotonic() + 120
    with hub_server.client() as client:
        while not expected <= set(client.get("/openapi.json").json()["paths"]):
            assert time.monotonic() < deadline, "capability routes missing from /openapi.json"
            time.sleep(1)
    return schemathesis.openapi.from_url(f"{hub_server.url}/openapi.json",
                                         headers={"Authorization": f"Bearer {hub_server.key}"})


# Filters go on the lazy schema: the one the fixture returns has its filters replaced by these.
schema = schemathesis.pytest.from_fixture("hub_schema")
for _method, _path in sorted(EXCLUDED):
    schema = schema.exclude(method=_method, path=_path)


def check_error_shape(status: int, text: str, label: str) -> None:
    assert status < 500, f"{label}: {status} {text[:300]}"
    if status >= 400:
        body = json.loads(text)
        assert set(body) == {"error"} and {"code", "message"} <= set(body["error"]), f"{label}: {text[:300]}"


@schema.parametrize()
@settings(max_examples=CASES_PER_OPERATION, deadline=None, derandomize=True, database=None,
          phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
def test_generated_cases_never_get_a_5xx(case, hub_server):
    response = case.call(base_url=hub_server.url, headers={"Authorization": f"Bearer {hub_server.key}"}, timeout=120)
    label = f"{case.operation.method.upper()} {case.operation.path}"
    COUNTS[label] += 1
    op = case.operation
    INPUTS[label] = any(len(part) for part in (op.path_parameters, op.query, op.headers, op.cookies, op.body))
    STATUSES[f"{response.status_code // 100}xx"] += 1
    check_error_shape(response.status_code, response.text, label)


# -- hand-written bad inputs ---------------------------------------------------------------------
def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def _png_bomb(side: int = 30_000) -> bytes:
    """A PNG that claims side x side pixels (900 Mpx) in a few KB: refused from the header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)  # 8-bit greyscale
    rows = zlib.compress(b"\x00" * (side + 1) * 64, 9)  # only the first rows: the header decides
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def _wav_header(seconds: float, data_bytes: int = 0, rate: int = 16_000) -> bytes:
    declared = int(seconds * rate * 2)
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    return (b"RIFF" + struct.pack("<I", 36 + declared) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
            + b"data" + struct.pack("<I", declared) + b"\x00" * data_bytes)


JPEG = _jpeg()
BAD_INPUTS = [
    ("see: corrupt bytes", "/v1/see", "image/jpeg", os.urandom(4096)),
    ("see: truncated jpeg", "/v1/see", "image/jpeg", JPEG[: len(JPEG) // 2]),
    ("see: decompression bomb", "/v1/see", "image/png", _png_bomb()),
    ("see: eps (ghostscript)", "/v1/see", "image/jpeg", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 9 9\n"),
    ("see: wrong type", "/v1/see", "application/json", b'{"image": 12345}'),
    ("see: huge body", "/v1/see", "image/jpeg", b"\xff\xd8\xff" + b"\x00" * (21 << 20)),
    ("see: empty", "/v1/see", "image/jpeg", b""),
    ("read: corrupt bytes", "/v1/read", "image/png", os.urandom(2048)),
    ("read: truncated png", "/v1/read", "image/png", _png_bomb(64)[:30]),
    ("read: wrong type", "/v1/read", "application/json", b'{"image": ["a"], "document_type": 7}'),
    ("listen: wav header only", "/v1/listen", "audio/wav", _wav_header(0)),
    ("listen: 2-hour wav header", "/v1/listen", "audio/wav", _wav_header(7200, data_bytes=32_000)),
    ("listen: truncated wav", "/v1/listen", "audio/wav", _wav_header(60, data_bytes=32_000)),
    ("listen: corrupt bytes", "/v1/listen", "audio/wav", os.urandom(8192)),
    ("listen: wrong type", "/v1/listen", "application/json", b'{"audio": false}'),
    ("speak: wrong type", "/v1/speak", "application/json", b'{"text": {"a": 1}}'),
    ("speak: huge text", "/v1/speak", "application/json", json.dumps({"text": "a" * 200_000}).encode()),
    ("reason: wrong type", "/v1/reason", "application/json", b'{"text": 12}'),
    ("reason: deep json", "/v1/reason", "application/json", b"[" * 100_000 + b"]" * 100_000),
    ("reason: not json", "/v1/reason", "application/json", b"{not json"),
    ("streams: wrong type", "/v1/streams", "application/json", b'{"camera_id": 5, "url": []}'),
    ("streams: huge body", "/v1/streams", "application/json", b'{"x": "' + b"a" * (21 << 20) + b'"}'),
]


@pytest.mark.parametrize("case,path,content_type,body", BAD_INPUTS, ids=[getattr(c, "values", c)[0] for c in BAD_INPUTS])
def test_bad_inputs_are_4xx_in_the_error_shape(hub_server, case, path, content_type, body):
    with hub_server.client() as client:
        reply = client.post(path, content=body, headers={"content-type": content_type})
    assert 400 <= reply.status_code < 500, f"{case}: {reply.status_code} {reply.text[:300]}"
    check_error_shape(reply.status_code, reply.text, case)
    COUNTS["hand-written"] += 1


def _plain(state) -> str:
    return str(getattr(state, "value", state))  # Serve's status schema gives enum members or their values


def serve_replicas() -> tuple[set[str], dict[str, tuple[str, dict[str, int]]]]:
    """The hub's live replicas and each deployment's (status, replica states), from the Serve
    controller and the GCS (Ray's state API would need the dashboard, which the hub keeps off).

    A replica's actor name carries its unique id (`SERVE_REPLICA::hub#<deployment>#<id>`): a replica
    that crashed and was replaced comes back under a new name, even when the counts look the same."""
    from ray import serve
    from ray.util import list_named_actors

    names = {a["name"] for a in list_named_actors(all_namespaces=True)
             if a["name"].startswith("SERVE_REPLICA::hub#")}
    deployments = serve.status().applications["hub"].deployments
    states = {name: (_plain(d.status), {_plain(k): v for k, v in d.replica_states.items()})
              for name, d in deployments.items()}
    return names, states


@pytest.fixture(scope="module", autouse=True)
def replicas_before(hub_server):
    """The replicas before the first fuzz case of this module."""
    return serve_replicas()


def test_no_replica_died_and_every_operation_got_its_cases(hub_server, replicas_before, tmp_path_factory):
    names, states = serve_replicas()
    gone = sorted(replicas_before[0] - names)  # a replica that crashed, even if Serve has replaced it since
    unhealthy = {d: s for d, s in states.items() if s[0] != "HEALTHY" or set(s[1]) != {"RUNNING"}}
    with hub_server.client() as client:
        ready = client.get("/readyz")
    generated = {k: v for k, v in COUNTS.items() if k != "hand-written"}
    report = {"cases_per_operation": dict(sorted(generated.items())), "hand_written": COUNTS["hand-written"],
              "statuses": dict(STATUSES), "operations": len(generated), "replicas": len(names),
              "without_inputs": sorted(k for k in generated if not INPUTS.get(k)),
              "dead_replicas": gone}
    out = Path(os.environ.get("HUB_FUZZ_REPORT") or tmp_path_factory.mktemp("fuzz") / "fuzz.json")
    out.write_text(json.dumps(report, indent=1))
    print("\nfuzz report:", json.dumps(report))
    assert names and not gone, f"replicas died during the fuzzing: {gone} (replicas now: {sorted(names)})"
    assert not unhealthy, f"deployments not healthy after the fuzzing: {unhealthy}"
    assert ready.status_code == 200, ready.text
    if generated:  # the generated tests ran in this session (they may be deselected with -k)
        # A GET that takes no input has nothing to generate (Hypothesis stops after a few cases); a
        # POST that declares no request body in the OpenAPI is not really fuzzed: named as such.
        undeclared = sorted(k for k in generated if not INPUTS.get(k) and not k.startswith("GET "))
        assert not undeclared, f"operations whose OpenAPI declares no input, so nothing is generated: {undeclared}"
        short = {k: v for k, v in generated.items() if v < CASES_PER_OPERATION and INPUTS.get(k)}
        assert not short, f"operations with fewer than {CASES_PER_OPERATION} cases: {short}"
