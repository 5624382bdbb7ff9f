"""The body of POST /v1/events/deadletters/replay: what is refused with a 400 before it reaches the store."""

from __future__ import annotations

import pytest

from hub.contract import validate_as
from hub.errors import InvalidInput
from serving.streams_api import ReplayRequest


@pytest.mark.parametrize(("body", "ok"), [
    ({}, True),
    ({"ids": [3, 4]}, True),
    ({"url": "https://ops.example/hook"}, True),
    ({"ids": [2**63 - 1]}, True),
    ({"ids": [2**63]}, False),  # found by the fuzz suite: a 500 from SQLite ("int too large")
    ({"ids": [0]}, False),
    ({"ids": [-5]}, False),
    ({"ids": ["3"]}, False),
    ({"ids": [1.5]}, False),
    ({"url": "x" * 3000}, False),
])
def test_replay_body(body, ok):
    if ok:
        validate_as(ReplayRequest, body)
    else:
        with pytest.raises(InvalidInput) as caught:
            validate_as(ReplayRequest, body)
        assert caught.value.status_code == 400
