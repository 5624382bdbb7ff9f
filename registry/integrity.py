"""Artifacts are data, never code: what the registry checks before a version may be loaded.

MLflow's registry has no authentication of its own, so whoever can write to it must not be able to
make a replica run a program. Every artifact is checked at registration and again at load:

- **content**: no symlinks; no file that is a pickle, a torch zip checkpoint (pickle inside), an
  executable (ELF, PE, Mach-O) or a script (`#!`), whatever its name says; torch weights travel as
  safetensors only;
- **metadata** (`hub.json`): no key that names a program (`binary`, `command`, `executable`, ...),
  no value that reads like code (`__import__`, `eval(`, `exec(`, `lambda`, `os.system`, `$(`...),
  and every file a value names lies inside the artifact folder (no absolute paths, no `..`);
- **digest**: the sha256 of the whole folder is recorded on the version (`hub.sha256`) at
  registration and compared after download, so an artifact changed behind the registry's back
  (or a version created around `MlflowStore.register`) is refused.

>>> check_artifact(Path("/tmp/yolov8n-coco"))          # raises ModelLoadError naming the problem
>>> artifact_sha256(Path("/tmp/yolov8n-coco"))
'3f1c...'
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from hub.errors import ModelLoadError

DIGEST_TAG = "hub.sha256"
IGNORED = frozenset({".complete"})  # written by the download cache, not part of the artifact
# Keys that would name a program to run or code to import.
_PROGRAM_KEYS = re.compile(r"(^|_)(binary|binaries|executable|exe|command|cmd|program|shell|script|entrypoint|"
                           r"entry_point|loader_module|python_function|callable|hook)s?$", re.IGNORECASE)
# Values that read like code rather than data.
_CODE = re.compile(r"__import__|__class__|__globals__|__builtins__|\beval\s*\(|\bexec\s*\(|\bcompile\s*\(|"
                   r"\blambda\b|\bos\.(system|popen|exec)|\bsubprocess\b|\$\(|`[^`]+`|!!python", re.IGNORECASE)
# Keys whose value is a file inside the artifact.
_FILE_KEYS = re.compile(r"(_file|_model|_path|_dir|_arch|dictionary|vocab|weights|tokenizer)$", re.IGNORECASE)
# First bytes of content that is code or deserialises into code.
_MAGIC = (
    (b"\x7fELF", "an ELF executable"),
    (b"MZ", "a Windows executable"),
    (b"\xcf\xfa\xed\xfe", "a Mach-O executable"),
    (b"\xca\xfe\xba\xbe", "a Mach-O/Java binary"),
    (b"#!", "a script"),
)
_PICKLE_PROTOCOLS = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


def file_sha256(path: Path) -> str:
    """Hex sha256 of one file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _files(artifact_dir: Path) -> list[Path]:
    return sorted(p for p in artifact_dir.rglob("*") if p.name not in IGNORED and (p.is_file() or p.is_symlink()))


def artifact_sha256(artifact_dir: Path) -> str:
    """One digest of the folder: sha256 over every file's relative path and content digest."""
    artifact_dir = Path(artifact_dir)
    outer = hashlib.sha256()
    for path in _files(artifact_dir):
        outer.update(f"{path.relative_to(artifact_dir).as_posix()}\0{file_sha256(path)}\n".encode())
    return outer.hexdigest()


def _content_problem(path: Path) -> str | None:
    with path.open("rb") as handle:
        head = handle.read(4096)
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return what
    if head.startswith(_PICKLE_PROTOCOLS):
        return "a pickle (runs code when loaded; store tensors as safetensors)"
    if head.startswith(b"PK\x03\x04") and (b"data.pkl" in head or b".pkl" in head):
        return "a torch checkpoint (pickle inside; store tensors as safetensors)"
    return None


def check_files(artifact_dir: Path) -> None:
    """Refuse symlinks and files whose content is code (see the module docstring)."""
    artifact_dir = Path(artifact_dir)
    for path in _files(artifact_dir):
        rel = path.relative_to(artifact_dir).as_posix()
        if path.is_symlink():
            raise ModelLoadError(f"artifact file {rel} is a symbolic link; artifacts hold plain files only")
        problem = _content_problem(path)
        if problem:
            raise ModelLoadError(f"artifact file {rel} is {problem}; artifacts are data, never code")


def _walk(node: Any, key: str = ""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield str(k), None
            yield from _walk(v, str(k))
    elif isinstance(node, list | tuple):
        for v in node:
            yield from _walk(v, key)
    elif isinstance(node, str):
        yield key, node


def check_metadata(doc: dict, artifact_dir: Path) -> None:
    """Refuse metadata that names a program, reads like code, or points outside the folder."""
    root = Path(artifact_dir).resolve()
    for key, value in _walk(doc):
        if value is None:
            if _PROGRAM_KEYS.search(key):
                raise ModelLoadError(f"artifact metadata key {key!r} names a program to run; the hub runs only "
                                     "its own, fixed programs")
            continue
        if _CODE.search(value):
            raise ModelLoadError(f"artifact metadata {key or 'value'}={value[:60]!r} reads like code; "
                                 "metadata is data only")
        if _FILE_KEYS.search(key) or "/" in value or "\\" in value:
            _confined(key, value, root)


def _confined(key: str, value: str, root: Path) -> None:
    if not value or value.startswith(("http://", "https://")) or " " in value or len(value) > 255:
        return  # prose, a URL documenting a source, or a list in text: not a path
    parts = value.replace("\\", "/").split("/")
    if value.startswith(("/", "~")) or ".." in parts or not (root / value).resolve().is_relative_to(root):
        raise ModelLoadError(f"artifact metadata {key}={value!r} points outside the artifact folder")


def check_artifact(artifact_dir: Path, expected_sha256: str | None = None) -> str:
    """Every check above; returns the folder's digest (compared with `expected_sha256` if given)."""
    artifact_dir = Path(artifact_dir)
    path = artifact_dir / "hub.json"
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}") from exc
    if not isinstance(doc, dict):
        raise ModelLoadError(f"{path} is not a JSON object")
    check_files(artifact_dir)
    check_metadata(doc, artifact_dir)
    digest = artifact_sha256(artifact_dir)
    if expected_sha256 is not None and digest != expected_sha256:
        raise ModelLoadError(f"artifact digest {digest[:16]}... differs from the sha256 recorded at registration "
                             f"({expected_sha256[:16]}...): the files changed after registration")
    return digest
