"""README.md's shell examples, run as written against the session hub (`hub_server`).

A fenced ```bash block preceded by `<!-- example -->` runs (in README order, one bash per block,
`set -euo pipefail`); `<!-- example expect: TEXT -->` also needs TEXT in its output;
`<!-- example: skip WHY -->` is documented but not run (it starts or stops a server, or trains
for many minutes). Every bash block that calls the hub must carry one of these marks, so that an
example nobody runs cannot hide in the README.

The examples talk to `localhost:8000`; here that is rewritten to the session hub, `curl` sends its
API key, and `hub` commands find it through HUB_URL / HUB_CLIENT_API_KEY / HUB_HOME. They run in a
scratch folder laid out like a checkout (`.venv`, `samples`, `configs` linked in, `../shared` beside it).
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
MARK = re.compile(r"<!--\s*example(?P<rest>[^>]*)-->\s*$")
FENCE = re.compile(r"^```(\w*)\s*$")
CALLS_HUB = re.compile(r"(^|[\s/])hub\s+\w|localhost:8000|127\.0\.0\.1:8000")
# Paths a block reads: curl's @file, and files under samples/ or ../shared/ anywhere.
READS = re.compile(r"@((?:\.\./shared|samples)/[^\s'\"]+)|(?<![\w{}/])((?:\.\./shared|samples)/[\w./-]+)")
LINKED = (".venv", "samples", "configs")


@dataclass(frozen=True)
class Block:
    line: int  # 1-based line of the opening fence
    code: str
    mark: str | None  # None (unmarked), "run" or "skip"
    expect: str = ""

    @property
    def id(self) -> str:
        first = next((ln for ln in self.code.splitlines() if ln.strip() and not ln.startswith("#")), "")
        return f"L{self.line}-" + re.sub(r"[^\w]+", "-", first)[:40].strip("-")


def parse_blocks(text: str) -> list[Block]:
    """Every fenced bash block with the example mark of the line just above it (blank lines allowed)."""
    lines = text.splitlines()
    blocks, i, pending = [], 0, None
    while i < len(lines):
        mark = MARK.match(lines[i].strip())
        if mark:
            pending = mark.group("rest").strip()
        fence = FENCE.match(lines[i])
        if fence and fence.group(1) in ("bash", "sh", "shell"):
            start = i
            i += 1
            body = []
            while i < len(lines) and not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            blocks.append(_block(start + 1, "\n".join(body), pending))
            pending = None
        elif fence:  # another language: skip to its closing fence
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                i += 1
        elif lines[i].strip() and not mark:
            pending = None  # a mark belongs to the block right below it
        i += 1
    return blocks


def _block(line: int, code: str, rest: str | None) -> Block:
    if rest is None:
        return Block(line, code, None)
    if rest.startswith(":") and rest[1:].strip().startswith("skip"):
        return Block(line, code, "skip")
    expect = rest.split("expect:", 1)[1].strip() if "expect:" in rest else ""
    return Block(line, code, "run", expect)


BLOCKS = parse_blocks(README.read_text(encoding="utf-8"))
RUN = [b for b in BLOCKS if b.mark == "run"]


def test_readme_has_runnable_examples():
    assert len(RUN) >= 5, [b.id for b in BLOCKS]


@pytest.mark.parametrize("block", [b for b in BLOCKS if CALLS_HUB.search(b.code)], ids=lambda b: b.id)
def test_every_block_that_calls_the_hub_is_marked(block):
    assert block.mark is not None, f"README.md line {block.line}: mark it <!-- example --> or <!-- example: skip WHY -->"


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.mark is not None], ids=lambda b: b.id)
def test_files_named_by_examples_exist(block, shared_dir):
    for match in READS.finditer(block.code):
        name = match.group(1) or match.group(2)
        path = shared_dir / name.removeprefix("../shared/") if name.startswith("../shared/") else REPO / name
        assert path.exists(), f"README.md line {block.line} names {name}, which does not exist"


@pytest.mark.parametrize(("text", "expected"), [
    ("<!-- example -->\n```bash\nhub see x\n```\n", [("run", "")]),
    ("<!-- example expect: bus -->\n\n```bash\ncurl localhost:8000\n```\n", [("run", "bus")]),
    ("<!-- example: skip starts a server -->\n```bash\nhub serve\n```\n", [("skip", "")]),
    ("<!-- example -->\ntext between\n```bash\nhub see x\n```\n", [(None, "")]),
    ("```python\nhub = 1\n```\n```bash\nls\n```\n", [(None, "")]),
])
def test_parse_blocks_reads_marks(text, expected):
    assert [(b.mark, b.expect) for b in parse_blocks(text)] == expected


@pytest.fixture(scope="module")
def scratch(tmp_path_factory, shared_dir) -> Path:
    root = tmp_path_factory.mktemp("readme")
    checkout = root / "checkout"
    checkout.mkdir()
    for name in LINKED:
        (checkout / name).symlink_to(REPO / name)
    (root / "shared").symlink_to(shared_dir)
    return checkout


def _script(code: str, url: str) -> str:
    host_port = url.removeprefix("http://")
    code = re.sub(r"(https?://)?(localhost|127\.0\.0\.1):8000", f"http://{host_port}", code)
    # Every curl sends the session hub's key and fails on an HTTP error status.
    prelude = 'set -euo pipefail\ncurl() { command curl -sS --fail-with-body ' \
              '-H "Authorization: Bearer $HUB_CLIENT_API_KEY" "$@"; }\n'
    return prelude + code + "\n"


@pytest.mark.serve
@pytest.mark.parametrize("block", RUN, ids=lambda b: b.id)
def test_readme_example_runs(block, hub_server, scratch):
    env = {**os.environ, "HUB_URL": hub_server.url, "HUB_CLIENT_API_KEY": hub_server.key}
    done = subprocess.run(["bash", "-c", _script(block.code, hub_server.url)], cwd=scratch, env=env,
                          capture_output=True, text=True, timeout=600)
    report = f"README.md line {block.line}\n--- stdout\n{done.stdout[-4000:]}\n--- stderr\n{done.stderr[-4000:]}"
    assert done.returncode == 0, report
    assert block.expect in done.stdout, report
