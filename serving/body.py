"""The one JSON body parser of the HTTP routes (capabilities, streams, hotline).

Untrusted JSON is bounded twice: in nesting depth (`[[[[...]]]]` 10,000 deep made the C parser
raise RecursionError, a 500, and deep structures make every later walk recursive too) and in the
number of values (a 20 MiB body of `[0,0,0,...]` is ten million Python objects). Both answer 400.

>>> parse_json(b'{"text": "hello"}')
{'text': 'hello'}
"""

from __future__ import annotations

import json
from typing import Any

from hub.errors import InvalidInput

MAX_DEPTH = 32  # the deepest wire model (camera specs with zones of points) needs 5
MAX_VALUES = 100_000  # arrays/objects/scalars in one body; base64 media is one string value


def parse_json(body: bytes, *, max_depth: int = MAX_DEPTH, max_values: int = MAX_VALUES,
               what: str = "body") -> Any:
    """Parse a JSON body; InvalidInput (400) when it is empty, malformed, too deep or too large."""
    if not body or not body.strip():
        raise InvalidInput(f"empty {what}: send a JSON object")
    try:
        value = json.loads(body)
    except RecursionError:
        raise InvalidInput(f"{what} is nested deeper than {max_depth} levels") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{what} is not valid JSON: {exc}") from exc
    check_shape(value, max_depth=max_depth, max_values=max_values, what=what)
    return value


def check_shape(value: Any, *, max_depth: int = MAX_DEPTH, max_values: int = MAX_VALUES, what: str = "body") -> None:
    """Walk the parsed value without recursion; raise InvalidInput past the depth or value limits."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    seen = 0
    while stack:
        node, depth = stack.pop()
        seen += 1
        if seen > max_values:
            raise InvalidInput(f"{what} holds more than {max_values} JSON values")
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > max_depth:
            raise InvalidInput(f"{what} is nested deeper than {max_depth} levels")
        stack.extend((child, depth + 1) for child in children)
